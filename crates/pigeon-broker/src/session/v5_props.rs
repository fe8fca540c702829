//! Property tests of the connection state machine under arbitrary MQTT 5.0 client behaviour:
//! whatever a client sends, in whatever order, with deliveries from the broker and time
//! passing in between, the state machine does not panic, and what it sends obeys the limits
//! the client set:
//!
//! - every packet encodes, and fits the client's Maximum Packet Size [MQTT-3.1.2-24];
//! - QoS 1 and 2 PUBLISHes unacknowledged by the client never exceed its Receive Maximum
//!   [MQTT-3.3.4-9];
//! - Topic Aliases stay within the client's Topic Alias Maximum [MQTT-3.3.2-10];
//! - nothing is sent after the connection closed (DISCONNECT is the last packet
//!   [MQTT-3.14.4-1]).

use std::collections::HashSet;
use std::num::{NonZeroU16, NonZeroU32};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use pigeon_proto::properties::{AuthProperties, DisconnectProperties, SubscriptionId};
use pigeon_proto::{
    Auth, Connect, Disconnect, MqttString, Packet, PacketId, PayloadFormat, PingReq, Protocol,
    PubAck, PubComp, PubRec, PubRel, Publish, QoS, ReasonCode, RetainHandling, Subscribe,
    SubscriptionOptions, TopicFilter, TopicName, Unsubscribe,
};
use proptest::prelude::*;

use super::{Connection, ConnectionSettings, Event, OutboundLimits, Session};
use crate::message::{Delivery, Message};

/// One thing that happens to the connection.
#[derive(Debug, Clone)]
enum Step {
    /// A PUBLISH from the client.
    Publish {
        topic: usize,
        alias: Option<u16>,
        qos: u8,
        id: u16,
        utf8_flag: bool,
        payload_len: usize,
    },
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    Subscribe {
        filter: usize,
        qos: u8,
        no_local: bool,
        shared: bool,
        sub_id: Option<u32>,
        retain_handling: u8,
    },
    Unsubscribe(usize),
    Ping,
    Auth(u8),
    Disconnect(Option<u32>),
    /// The broker delivers a message to the client.
    Deliver {
        topic: usize,
        qos: u8,
        payload_len: usize,
        expiry: Option<u32>,
    },
    /// Time passes.
    Wait(u64),
}

const TOPICS: [&str; 4] = [
    "a",
    "sensors/building-one/room-two/temperature",
    "b/c",
    "$share/g/x",
];
const FILTERS: [&str; 5] = ["a", "sensors/#", "+/c", "#", "b/+"];

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..TOPICS.len(), proptest::option::of(0u16..13), 0u8..3, 1u16..6, any::<bool>(), 0usize..300)
            .prop_map(|(topic, alias, qos, id, utf8_flag, payload_len)| Step::Publish {
                topic, alias, qos, id, utf8_flag, payload_len,
            }),
        2 => (1u16..40).prop_map(Step::PubAck),
        1 => (1u16..40).prop_map(Step::PubRec),
        1 => (1u16..6).prop_map(Step::PubRel),
        1 => (1u16..40).prop_map(Step::PubComp),
        2 => (0..FILTERS.len(), 0u8..3, any::<bool>(), any::<bool>(), proptest::option::of(1u32..5), 0u8..3)
            .prop_map(|(filter, qos, no_local, shared, sub_id, retain_handling)| Step::Subscribe {
                filter, qos, no_local, shared, sub_id, retain_handling,
            }),
        1 => (0..FILTERS.len()).prop_map(Step::Unsubscribe),
        1 => Just(Step::Ping),
        1 => (0u8..3).prop_map(Step::Auth),
        1 => proptest::option::of(0u32..100).prop_map(Step::Disconnect),
        8 => (0..3usize, 0u8..3, 0usize..400, proptest::option::of(0u32..3))
            .prop_map(|(topic, qos, payload_len, expiry)| Step::Deliver { topic, qos, payload_len, expiry }),
        2 => (0u64..5_000).prop_map(Step::Wait),
    ]
}

fn qos(n: u8) -> QoS {
    QoS::from_u8(n).unwrap_or(QoS::AtMostOnce)
}

fn packet_id(n: u16) -> PacketId {
    PacketId::new(n).unwrap_or(PacketId::FIRST)
}

/// The packet a client step sends, if it is one.
fn client_packet(step: &Step) -> Option<Packet> {
    Some(match step {
        Step::Publish {
            topic,
            alias,
            qos: q,
            id,
            utf8_flag,
            payload_len,
        } => {
            let topic = match alias {
                Some(_) if *topic == 0 => TopicName::empty(),
                _ => TopicName::from_static(TOPICS[*topic]),
            };
            let mut p = Publish::new(topic, Bytes::from(vec![0xC3; *payload_len]));
            p.qos = qos(*q);
            p.packet_id = (p.qos != QoS::AtMostOnce).then(|| packet_id(*id));
            p.properties.topic_alias = alias.and_then(NonZeroU16::new);
            if *utf8_flag {
                p.properties.payload_format_indicator = Some(PayloadFormat::Utf8);
            }
            Packet::Publish(p)
        }
        Step::PubAck(id) => Packet::PubAck(PubAck::new(packet_id(*id))),
        Step::PubRec(id) => Packet::PubRec(PubRec::new(packet_id(*id))),
        Step::PubRel(id) => Packet::PubRel(PubRel::new(packet_id(*id))),
        Step::PubComp(id) => Packet::PubComp(PubComp::new(packet_id(*id))),
        Step::Subscribe {
            filter,
            qos: q,
            no_local,
            shared,
            sub_id,
            retain_handling,
        } => {
            let text = if *shared {
                format!("$share/g/{}", FILTERS[*filter])
            } else {
                FILTERS[*filter].to_owned()
            };
            let filter = TopicFilter::from_string(MqttString::try_from(text).ok()?).ok()?;
            let mut options = SubscriptionOptions::new(qos(*q));
            options.no_local = *no_local;
            options.retain_handling = match retain_handling {
                0 => RetainHandling::SendAtSubscribe,
                1 => RetainHandling::SendAtSubscribeIfNew,
                _ => RetainHandling::DoNotSend,
            };
            let mut s = Subscribe::new(packet_id(7), filter, options);
            s.properties.subscription_identifier = sub_id.and_then(SubscriptionId::new);
            Packet::Subscribe(s)
        }
        Step::Unsubscribe(filter) => Packet::Unsubscribe(Unsubscribe::new(
            packet_id(8),
            vec![TopicFilter::from_static(FILTERS[*filter])],
        )),
        Step::Ping => Packet::PingReq(PingReq),
        Step::Auth(reason) => {
            let mut properties = AuthProperties::default();
            properties.authentication_method = Some(MqttString::from_static("X"));
            Packet::Auth(Auth {
                reason: [
                    ReasonCode::SUCCESS,
                    ReasonCode::CONTINUE_AUTHENTICATION,
                    ReasonCode::RE_AUTHENTICATE,
                ][usize::from(*reason)],
                properties,
            })
        }
        Step::Disconnect(expiry) => {
            let mut d = Disconnect::new(ReasonCode::SUCCESS);
            d.properties = DisconnectProperties::default();
            d.properties.session_expiry_interval = *expiry;
            Packet::Disconnect(d)
        }
        Step::Deliver { .. } | Step::Wait(_) => return None,
    })
}

/// What the property checks keep track of about the client's side.
#[derive(Default)]
struct Client {
    /// QoS 1 / 2 PUBLISH identifiers the broker sent and the client has not finished.
    unacked: HashSet<u16>,
}

fn run(receive_maximum: u16, max_packet_size: u32, alias_max: u16, steps: &[Step]) {
    let mut now: Instant = crate::clock::now();
    let mut connect = Connect::new(Protocol::V5, MqttString::from_static("prop"));
    connect.keep_alive = 30;
    connect.properties.receive_maximum = NonZeroU16::new(receive_maximum);
    connect.properties.maximum_packet_size = NonZeroU32::new(max_packet_size);
    connect.properties.topic_alias_maximum = Some(alias_max);
    connect.properties.session_expiry_interval = Some(60);
    let settings = ConnectionSettings {
        receive_maximum: NonZeroU16::new(3),
        ..ConnectionSettings::default()
    };
    let mut conn = Connection::new(settings, now);
    conn.handle_packet(Packet::Connect(Box::new(connect)), now);
    assert!(matches!(conn.poll_event(), Some(Event::Connect(_))));
    let session = Session::new(
        MqttString::from_static("prop"),
        Protocol::V5,
        false,
        OutboundLimits::default(),
    );
    conn.accept(session, false, now);

    let mut client = Client::default();
    let mut closed_seen = false;
    for step in steps {
        match step {
            Step::Deliver {
                topic,
                qos: q,
                payload_len,
                expiry,
            } => {
                let mut message = Message::new(
                    TopicName::from_static(TOPICS[*topic]),
                    Bytes::from(vec![b'p'; *payload_len]),
                    qos(*q),
                    false,
                );
                message.expires_at = expiry.map(|secs| now + Duration::from_secs(u64::from(secs)));
                conn.deliver(Delivery::new(Arc::new(message), qos(*q), false), 0, now);
            }
            Step::Wait(ms) => {
                now += Duration::from_millis(*ms);
                conn.handle_timeout(now);
            }
            other => {
                if let Some(packet) = client_packet(other) {
                    // The client's side of the flow: acknowledgements it sends finish the
                    // broker's PUBLISHes.
                    match &packet {
                        Packet::PubAck(a) => {
                            client.unacked.remove(&a.packet_id.get());
                        }
                        Packet::PubComp(c) => {
                            client.unacked.remove(&c.packet_id.get());
                        }
                        Packet::PubRec(r) if r.reason.is_error() => {
                            client.unacked.remove(&r.packet_id.get());
                        }
                        _ => {}
                    }
                    conn.handle_packet(packet, now);
                }
            }
        }
        // The broker's part: route what the client published, matched or not.
        while let Some(event) = conn.poll_event() {
            if let Event::Publish { message, ack } = event {
                conn.routed(ack, message.payload.len() % 2 == 0);
            }
        }
        for packet in conn.take_transmit() {
            assert!(!closed_seen, "{packet:?} sent after the connection closed");
            let mut buf = BytesMut::new();
            packet
                .encode(Protocol::V5, &mut buf)
                .unwrap_or_else(|e| panic!("{packet:?} does not encode: {e}"));
            assert!(
                buf.len() <= max_packet_size as usize,
                "{} bytes over the client's maximum {max_packet_size}: {packet:?}",
                buf.len()
            );
            if let Packet::Publish(p) = &packet {
                if let Some(alias) = p.properties.topic_alias {
                    assert!(alias.get() <= alias_max, "alias {alias} > {alias_max}");
                }
                if let Some(id) = p.packet_id
                    && !p.dup
                {
                    client.unacked.insert(id.get());
                }
                assert!(
                    client.unacked.len() <= usize::from(receive_maximum),
                    "{} unacknowledged > Receive Maximum {receive_maximum}",
                    client.unacked.len()
                );
            }
            if matches!(packet, Packet::Disconnect(_)) {
                closed_seen = true;
            }
        }
        if conn.is_closed() {
            closed_seen = true;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_v5_clients_never_break_the_connection_invariants(
        receive_maximum in 1u16..5,
        max_packet_size in 20u32..400,
        alias_max in 0u16..3,
        steps in proptest::collection::vec(step(), 1..80),
    ) {
        run(receive_maximum, max_packet_size, alias_max, &steps);
    }
}
