//! Round-trip properties of the codec: every packet the generators below build, for every
//! protocol version it exists in, encodes to exactly `encoded_len` bytes and decodes back to
//! itself, whether the bytes arrive at once or one at a time.
//!
//! The generators only build packets the decoder must accept: v3 packets carry no
//! properties and only the fields v3 can express, v5 reason codes are drawn from the codes
//! `ReasonCode::is_valid_for` allows, and the single-packet invariants the decoder enforces
//! (packet identifier iff QoS > 0, no DUP at QoS 0, no No Local on shared subscriptions, no
//! Authentication Data without a method, no Session Present on a refused CONNACK, empty
//! PUBLISH topics only with a Topic Alias in v5) hold by construction.

use std::num::{NonZeroU16, NonZeroU32};

use pigeon_proto::properties::*;
use pigeon_proto::{
    Auth, Bytes, BytesMut, ConnAck, Connect, Decoder, Disconnect, MqttString, Packet, PacketId,
    PacketType, PingReq, PingResp, Protocol, PubAck, PubComp, PubRec, PubRel, Publish, QoS,
    ReasonCode, RetainHandling, SubAck, Subscribe, SubscriptionOptions, TopicFilter, TopicName,
    UnsubAck, Unsubscribe, Will,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::Union;
use proptest::test_runner::TestCaseError;

// ---------------------------------------------------------------------------------------------
// Scalars
// ---------------------------------------------------------------------------------------------

fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![
        Just(Protocol::V31),
        Just(Protocol::V311),
        Just(Protocol::V5)
    ]
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

/// A packet identifier, with the boundaries 1 and 65535 drawn often.
fn packet_id() -> impl Strategy<Value = PacketId> {
    prop_oneof![
        1 => Just(1u16),
        1 => Just(u16::MAX),
        6 => 1..=u16::MAX,
    ]
    .prop_map(|v| PacketId::new(v).expect("1..=65535 is never zero"))
}

fn non_zero_u16() -> impl Strategy<Value = NonZeroU16> {
    prop_oneof![Just(1u16), Just(u16::MAX), 1..=u16::MAX]
        .prop_map(|v| NonZeroU16::new(v).expect("drawn from 1.."))
}

fn non_zero_u32() -> impl Strategy<Value = NonZeroU32> {
    prop_oneof![Just(1u32), Just(u32::MAX), 1..=u32::MAX]
        .prop_map(|v| NonZeroU32::new(v).expect("drawn from 1.."))
}

fn any_u32() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), Just(u32::MAX), any::<u32>()]
}

fn any_u16() -> impl Strategy<Value = u16> {
    prop_oneof![Just(0u16), Just(u16::MAX), any::<u16>()]
}

/// A Subscription Identifier over 1..=268,435,455, with every Variable Byte Integer length
/// boundary drawn often.
fn subscription_id() -> impl Strategy<Value = SubscriptionId> {
    prop_oneof![
        1 => select(vec![
            1u32, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, 268_435_455,
        ]),
        3 => 1..=268_435_455u32,
    ]
    .prop_map(|v| SubscriptionId::new(v).expect("1..=268435455 is a subscription id"))
}

fn payload_format() -> impl Strategy<Value = PayloadFormat> {
    prop_oneof![Just(PayloadFormat::Unspecified), Just(PayloadFormat::Utf8)]
}

/// Maximum QoS (0x24) is only ever 0 or 1.
fn maximum_qos() -> impl Strategy<Value = QoS> {
    prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]
}

fn binary(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

/// Every reason code MQTT 5.0 allows in `packet`, from the codec's own table.
fn reason_for(packet: PacketType) -> impl Strategy<Value = ReasonCode> {
    let codes: Vec<ReasonCode> = (0..=u8::MAX)
        .map(ReasonCode)
        .filter(|c| c.is_valid_for(packet))
        .collect();
    assert!(!codes.is_empty(), "no reason code is valid for {packet:?}");
    select(codes)
}

/// Like [`reason_for`], with SUCCESS drawn as often as all other codes together, so that the
/// shortest encodings (which leave SUCCESS out) are well covered.
fn reason_or_success(packet: PacketType) -> impl Strategy<Value = ReasonCode> {
    prop_oneof![Just(ReasonCode::SUCCESS), reason_for(packet)]
}

// ---------------------------------------------------------------------------------------------
// Strings and topics
// ---------------------------------------------------------------------------------------------

/// Any character but U+0000, mostly ASCII (including `/`, `+`, `#`, `$`) with some of the
/// whole Unicode range.
fn text_char() -> impl Strategy<Value = char> {
    prop_oneof![
        5 => prop::char::range('a', 'z'),
        3 => prop::char::range(' ', '~'),
        1 => prop::char::range('\u{1}', '\u{1f}'),
        2 => any::<char>().prop_filter("U+0000 is not allowed", |c| *c != '\0'),
    ]
}

fn text(max: usize) -> impl Strategy<Value = String> {
    vec(text_char(), 0..=max).prop_map(|cs| cs.into_iter().collect())
}

fn mqtt_string(max: usize) -> impl Strategy<Value = MqttString> {
    text(max).prop_map(|s| MqttString::try_from(s).expect("no U+0000, short"))
}

/// Text for one level of a topic: no `/`, `+` or `#`; may be empty.
fn level_text(max: usize) -> impl Strategy<Value = String> {
    vec(
        text_char().prop_filter("not a separator or wildcard", |c| {
            !matches!(c, '/' | '+' | '#')
        }),
        0..=max,
    )
    .prop_map(|cs| cs.into_iter().collect())
}

/// A valid Topic Name: 1 to 5 levels (possibly empty, as in `a//b` or `/`), sometimes under
/// `$SYS`, never empty.
fn topic_name() -> impl Strategy<Value = TopicName> {
    (any::<bool>(), vec(level_text(8), 1..=5))
        .prop_map(|(sys, levels)| {
            let mut s = levels.join("/");
            if sys {
                s.insert_str(0, "$SYS/");
            }
            if s.is_empty() {
                s.push('t');
            }
            TopicName::try_from(s.as_str())
                .unwrap_or_else(|e| panic!("generated an invalid topic name {s:?}: {e}"))
        })
        .no_shrink()
}

/// A valid filter proper (no `$share` prefix): literal levels and whole-level `+`, optionally
/// ended by `#`.
fn filter_text() -> impl Strategy<Value = String> {
    let level = prop_oneof![3 => level_text(6), 1 => Just("+".to_string())];
    (vec(level, 0..=4), any::<bool>()).prop_map(|(mut levels, hash)| {
        // A first level of exactly "$share" would make a shared subscription.
        if levels.first().is_some_and(|l| l == "$share") {
            levels[0].push('x');
        }
        if hash {
            levels.push("#".to_string());
        }
        let s = levels.join("/");
        if s.is_empty() { "+".to_string() } else { s }
    })
}

/// A valid Topic Filter: a plain one, or `$share/{group}/{filter}` with a non-empty group free
/// of `/`, `+` and `#`.
fn topic_filter() -> impl Strategy<Value = TopicFilter> {
    let group = vec(
        text_char().prop_filter("valid share name", |c| !matches!(c, '/' | '+' | '#')),
        1..=6,
    )
    .prop_map(|cs| cs.into_iter().collect::<String>());
    prop_oneof![
        3 => filter_text(),
        1 => (group, filter_text()).prop_map(|(g, f)| format!("$share/{g}/{f}")),
    ]
    .prop_map(|s| {
        TopicFilter::try_from(s.as_str())
            .unwrap_or_else(|e| panic!("generated an invalid topic filter {s:?}: {e}"))
    })
    .no_shrink()
}

/// The empty topic of a v5 PUBLISH that names its topic by Topic Alias.
///
/// The public API has no way to build it (`TopicName::empty` is `pub(crate)` and
/// `TopicName::from_string` refuses ""), so it is taken from a decoded PUBLISH: empty topic,
/// Topic Alias 1, no payload.
fn empty_topic() -> TopicName {
    let frame = Bytes::from_static(&[0x30, 0x06, 0x00, 0x00, 0x03, 0x23, 0x00, 0x01]);
    match Packet::decode(frame, Some(Protocol::V5)) {
        Ok(Packet::Publish(p)) if p.topic.is_empty() => p.topic,
        other => panic!("a v5 PUBLISH with an empty topic and an alias decoded as {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Properties (MQTT 5.0 only)
// ---------------------------------------------------------------------------------------------

/// User properties: 0 to 4 pairs, names often repeated.
fn user_properties() -> impl Strategy<Value = Vec<UserProperty>> {
    let name = prop_oneof![
        1 => Just(MqttString::from_static("k")),
        2 => mqtt_string(12),
    ];
    vec((name, mqtt_string(16)), 0..=4)
}

/// Authentication Method and Data, the data only with a method.
fn authentication() -> impl Strategy<Value = (Option<MqttString>, Option<Bytes>)> {
    option::of((mqtt_string(12), option::of(binary(16)))).prop_map(|auth| match auth {
        Some((method, data)) => (Some(method), data),
        None => (None, None),
    })
}

fn connect_properties() -> impl Strategy<Value = ConnectProperties> {
    (
        option::of(any_u32()),
        option::of(non_zero_u16()),
        option::of(non_zero_u32()),
        option::of(any_u16()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        authentication(),
        user_properties(),
    )
        .prop_map(|(sei, rm, mps, tam, rri, rpi, (method, data), user)| {
            let mut p = ConnectProperties::default();
            p.session_expiry_interval = sei;
            p.receive_maximum = rm;
            p.maximum_packet_size = mps;
            p.topic_alias_maximum = tam;
            p.request_response_information = rri;
            p.request_problem_information = rpi;
            p.authentication_method = method;
            p.authentication_data = data;
            p.user_properties = user;
            p
        })
}

fn will_properties() -> impl Strategy<Value = WillProperties> {
    (
        option::of(any_u32()),
        option::of(payload_format()),
        option::of(any_u32()),
        option::of(mqtt_string(12)),
        option::of(topic_name()),
        option::of(binary(16)),
        user_properties(),
    )
        .prop_map(|(wdi, pfi, mei, ct, rt, cd, user)| {
            let mut p = WillProperties::default();
            p.will_delay_interval = wdi;
            p.payload_format_indicator = pfi;
            p.message_expiry_interval = mei;
            p.content_type = ct;
            p.response_topic = rt;
            p.correlation_data = cd;
            p.user_properties = user;
            p
        })
}

fn connack_properties() -> impl Strategy<Value = ConnAckProperties> {
    (
        (
            option::of(any_u32()),
            option::of(non_zero_u16()),
            option::of(maximum_qos()),
            option::of(any::<bool>()),
            option::of(non_zero_u32()),
            option::of(mqtt_string(12)),
            option::of(any_u16()),
            option::of(mqtt_string(16)),
        ),
        (
            option::of(any::<bool>()),
            option::of(any::<bool>()),
            option::of(any::<bool>()),
            option::of(any_u16()),
            option::of(mqtt_string(12)),
            option::of(mqtt_string(12)),
            authentication(),
        ),
        user_properties(),
    )
        .prop_map(
            |((sei, rm, mq, ra, mps, aci, tam, rs), (wsa, sia, ssa, ska, ri, sr, auth), user)| {
                let mut p = ConnAckProperties::default();
                p.session_expiry_interval = sei;
                p.receive_maximum = rm;
                p.maximum_qos = mq;
                p.retain_available = ra;
                p.maximum_packet_size = mps;
                p.assigned_client_identifier = aci;
                p.topic_alias_maximum = tam;
                p.reason_string = rs;
                p.wildcard_subscription_available = wsa;
                p.subscription_identifiers_available = sia;
                p.shared_subscription_available = ssa;
                p.server_keep_alive = ska;
                p.response_information = ri;
                p.server_reference = sr;
                (p.authentication_method, p.authentication_data) = auth;
                p.user_properties = user;
                p
            },
        )
}

fn publish_properties() -> impl Strategy<Value = PublishProperties> {
    (
        option::of(payload_format()),
        option::of(any_u32()),
        option::of(non_zero_u16()),
        option::of(topic_name()),
        option::of(binary(16)),
        option::of(mqtt_string(12)),
        vec(subscription_id(), 0..=4),
        user_properties(),
    )
        .prop_map(|(pfi, mei, alias, rt, cd, ct, ids, user)| {
            let mut p = PublishProperties::default();
            p.payload_format_indicator = pfi;
            p.message_expiry_interval = mei;
            p.topic_alias = alias;
            p.response_topic = rt;
            p.correlation_data = cd;
            p.content_type = ct;
            p.subscription_identifiers = ids;
            p.user_properties = user;
            p
        })
}

fn ack_properties() -> impl Strategy<Value = AckProperties> {
    (option::of(mqtt_string(16)), user_properties()).prop_map(|(rs, user)| {
        let mut p = AckProperties::default();
        p.reason_string = rs;
        p.user_properties = user;
        p
    })
}

fn subscribe_properties() -> impl Strategy<Value = SubscribeProperties> {
    (option::of(subscription_id()), user_properties()).prop_map(|(id, user)| {
        let mut p = SubscribeProperties::default();
        p.subscription_identifier = id;
        p.user_properties = user;
        p
    })
}

fn unsubscribe_properties() -> impl Strategy<Value = UnsubscribeProperties> {
    user_properties().prop_map(|user| {
        let mut p = UnsubscribeProperties::default();
        p.user_properties = user;
        p
    })
}

fn disconnect_properties() -> impl Strategy<Value = DisconnectProperties> {
    (
        option::of(any_u32()),
        option::of(mqtt_string(16)),
        option::of(mqtt_string(12)),
        user_properties(),
    )
        .prop_map(|(sei, rs, sr, user)| {
            let mut p = DisconnectProperties::default();
            p.session_expiry_interval = sei;
            p.reason_string = rs;
            p.server_reference = sr;
            p.user_properties = user;
            p
        })
}

fn auth_properties() -> impl Strategy<Value = AuthProperties> {
    (
        authentication(),
        option::of(mqtt_string(16)),
        user_properties(),
    )
        .prop_map(|((method, data), rs, user)| {
            let mut p = AuthProperties::default();
            p.authentication_method = method;
            p.authentication_data = data;
            p.reason_string = rs;
            p.user_properties = user;
            p
        })
}

/// `props` in MQTT 5.0, the empty set in 3.x.
fn props_for<T, S>(v: Protocol, props: S) -> BoxedStrategy<T>
where
    T: Default + Clone + std::fmt::Debug + 'static,
    S: Strategy<Value = T> + 'static,
{
    if v.is_v5() {
        props.boxed()
    } else {
        Just(T::default()).boxed()
    }
}

// ---------------------------------------------------------------------------------------------
// Packets, per protocol version
// ---------------------------------------------------------------------------------------------

fn will(v: Protocol) -> impl Strategy<Value = Will> {
    (
        topic_name(),
        binary(24),
        qos(),
        any::<bool>(),
        props_for(v, will_properties()),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        })
}

fn connect(v: Protocol) -> impl Strategy<Value = Connect> {
    (
        (any::<bool>(), any::<bool>(), any_u16()),
        props_for(v, connect_properties()),
        mqtt_string(23),
        option::of(will(v)),
        option::of(mqtt_string(12)),
        option::of(binary(16)),
    )
        .prop_map(
            move |(
                (bridge, clean_start, keep_alive),
                properties,
                client_id,
                will,
                username,
                password,
            )| {
                // MQTT 3.x has no password without a user name [MQTT-3.1.2-22].
                let password = if v.is_v5() || username.is_some() {
                    password
                } else {
                    None
                };
                Connect {
                    protocol: v,
                    bridge,
                    clean_start,
                    keep_alive,
                    properties,
                    client_id,
                    will,
                    username,
                    password,
                }
            },
        )
}

/// The six reasons a 3.x CONNACK return code maps to (codes 0 to 5).
fn v3_connack_reason() -> impl Strategy<Value = ReasonCode> {
    select(
        (0..=5)
            .map(|c| ReasonCode::from_v3_connack(c).expect("0..=5 are return codes"))
            .collect::<Vec<_>>(),
    )
}

fn connack(v: Protocol) -> impl Strategy<Value = ConnAck> {
    let reason = if v.is_v5() {
        reason_or_success(PacketType::ConnAck).boxed()
    } else {
        v3_connack_reason().boxed()
    };
    (any::<bool>(), reason, props_for(v, connack_properties())).prop_map(
        |(session_present, reason, properties)| ConnAck {
            // A refused connection has no session.
            session_present: session_present && reason == ReasonCode::SUCCESS,
            reason,
            properties,
        },
    )
}

fn publish(v: Protocol) -> impl Strategy<Value = Publish> {
    (
        (qos(), any::<bool>(), any::<bool>(), packet_id()),
        // In v5 a fifth of the topics are empty, named by the Topic Alias.
        prop_oneof![4 => topic_name().prop_map(Some), 1 => Just(None)],
        props_for(v, publish_properties()),
        non_zero_u16(),
        binary(48),
    )
        .prop_map(
            move |((qos, dup, retain, id), topic, mut properties, alias, payload)| {
                let topic = match topic {
                    Some(t) => t,
                    None if v.is_v5() => {
                        properties.topic_alias.get_or_insert(alias);
                        empty_topic()
                    }
                    None => TopicName::from_static("a/b"),
                };
                let qos0 = qos == QoS::AtMostOnce;
                Publish {
                    dup: dup && !qos0,
                    qos,
                    retain,
                    topic,
                    packet_id: if qos0 { None } else { Some(id) },
                    properties,
                    payload,
                }
            },
        )
}

/// Packet id, reason and properties of PUBACK, PUBREC, PUBREL or PUBCOMP.
fn ack_parts(
    v: Protocol,
    kind: PacketType,
) -> impl Strategy<Value = (PacketId, ReasonCode, AckProperties)> {
    let reason = if v.is_v5() {
        reason_or_success(kind).boxed()
    } else {
        Just(ReasonCode::SUCCESS).boxed()
    };
    (packet_id(), reason, props_for(v, ack_properties()))
}

fn puback(v: Protocol) -> impl Strategy<Value = PubAck> {
    ack_parts(v, PacketType::PubAck).prop_map(|(packet_id, reason, properties)| PubAck {
        packet_id,
        reason,
        properties,
    })
}

fn pubrec(v: Protocol) -> impl Strategy<Value = PubRec> {
    ack_parts(v, PacketType::PubRec).prop_map(|(packet_id, reason, properties)| PubRec {
        packet_id,
        reason,
        properties,
    })
}

fn pubrel(v: Protocol) -> impl Strategy<Value = PubRel> {
    ack_parts(v, PacketType::PubRel).prop_map(|(packet_id, reason, properties)| PubRel {
        packet_id,
        reason,
        properties,
    })
}

fn pubcomp(v: Protocol) -> impl Strategy<Value = PubComp> {
    ack_parts(v, PacketType::PubComp).prop_map(|(packet_id, reason, properties)| PubComp {
        packet_id,
        reason,
        properties,
    })
}

fn retain_handling() -> impl Strategy<Value = RetainHandling> {
    prop_oneof![
        Just(RetainHandling::SendAtSubscribe),
        Just(RetainHandling::SendAtSubscribeIfNew),
        Just(RetainHandling::DoNotSend)
    ]
}

/// A filter and its options: only the QoS in 3.x; no No Local on a shared filter.
fn subscription(v: Protocol) -> impl Strategy<Value = (TopicFilter, SubscriptionOptions)> {
    (
        topic_filter(),
        qos(),
        any::<bool>(),
        any::<bool>(),
        retain_handling(),
    )
        .prop_map(move |(filter, qos, no_local, rap, rh)| {
            let options = if v.is_v5() {
                SubscriptionOptions {
                    qos,
                    no_local: no_local && !filter.is_shared(),
                    retain_as_published: rap,
                    retain_handling: rh,
                }
            } else {
                SubscriptionOptions::new(qos)
            };
            (filter, options)
        })
}

fn subscribe(v: Protocol) -> impl Strategy<Value = Subscribe> {
    (
        packet_id(),
        props_for(v, subscribe_properties()),
        vec(subscription(v), 1..=5),
    )
        .prop_map(|(packet_id, properties, filters)| Subscribe {
            packet_id,
            properties,
            filters,
        })
}

fn suback(v: Protocol) -> impl Strategy<Value = SubAck> {
    let reason = if v.is_v5() {
        reason_for(PacketType::SubAck).boxed()
    } else {
        // 3.x return codes: granted QoS 0, 1, 2 or failure.
        select(vec![
            ReasonCode(0x00),
            ReasonCode(0x01),
            ReasonCode(0x02),
            ReasonCode(0x80),
        ])
        .boxed()
    };
    (
        packet_id(),
        props_for(v, ack_properties()),
        vec(reason, 1..=6),
    )
        .prop_map(|(packet_id, properties, reasons)| SubAck {
            packet_id,
            properties,
            reasons,
        })
}

fn unsubscribe(v: Protocol) -> impl Strategy<Value = Unsubscribe> {
    (
        packet_id(),
        props_for(v, unsubscribe_properties()),
        vec(topic_filter(), 1..=5),
    )
        .prop_map(|(packet_id, properties, filters)| Unsubscribe {
            packet_id,
            properties,
            filters,
        })
}

fn unsuback(v: Protocol) -> impl Strategy<Value = UnsubAck> {
    // 3.x UNSUBACK has no payload: no reasons.
    let reasons = if v.is_v5() {
        vec(reason_for(PacketType::UnsubAck), 1..=6).boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    (packet_id(), props_for(v, ack_properties()), reasons).prop_map(
        |(packet_id, properties, reasons)| UnsubAck {
            packet_id,
            properties,
            reasons,
        },
    )
}

fn disconnect(v: Protocol) -> impl Strategy<Value = Disconnect> {
    let reason = if v.is_v5() {
        reason_or_success(PacketType::Disconnect).boxed()
    } else {
        Just(ReasonCode::SUCCESS).boxed()
    };
    (reason, props_for(v, disconnect_properties()))
        .prop_map(|(reason, properties)| Disconnect { reason, properties })
}

/// AUTH exists in MQTT 5.0 only. Either the empty form (Success, no properties) or one that
/// carries an Authentication Method (section 3.15.2.2.2).
fn auth() -> impl Strategy<Value = Auth> {
    prop_oneof![
        1 => Just(Auth::default()),
        6 => (
            reason_or_success(PacketType::Auth),
            auth_properties(),
            mqtt_string(12),
        )
            .prop_map(|(reason, mut properties, method)| {
                properties.authentication_method.get_or_insert(method);
                Auth { reason, properties }
            }),
    ]
}

/// Any packet that exists in `v`.
fn any_packet(v: Protocol) -> impl Strategy<Value = Packet> {
    let mut packets: Vec<BoxedStrategy<Packet>> = vec![
        connect(v).prop_map(Packet::from).boxed(),
        connack(v).prop_map(Packet::from).boxed(),
        publish(v).prop_map(Packet::from).boxed(),
        puback(v).prop_map(Packet::from).boxed(),
        pubrec(v).prop_map(Packet::from).boxed(),
        pubrel(v).prop_map(Packet::from).boxed(),
        pubcomp(v).prop_map(Packet::from).boxed(),
        subscribe(v).prop_map(Packet::from).boxed(),
        suback(v).prop_map(Packet::from).boxed(),
        unsubscribe(v).prop_map(Packet::from).boxed(),
        unsuback(v).prop_map(Packet::from).boxed(),
        Just(Packet::PingReq(PingReq)).boxed(),
        Just(Packet::PingResp(PingResp)).boxed(),
        disconnect(v).prop_map(Packet::from).boxed(),
    ];
    if v.is_v5() {
        packets.push(auth().prop_map(Packet::from).boxed());
    }
    Union::new(packets)
}

/// A protocol version and a packet of that version from `packet`.
fn versioned<S, F>(packet: F) -> impl Strategy<Value = (Protocol, Packet)>
where
    S: Strategy + 'static,
    S::Value: Into<Packet>,
    F: Fn(Protocol) -> S + 'static,
{
    protocol().prop_flat_map(move |v| (Just(v), packet(v).prop_map(Into::into)))
}

// ---------------------------------------------------------------------------------------------
// The round-trip check
// ---------------------------------------------------------------------------------------------

/// Encodes `packet` as `v` and checks that `encoded_len` is exact, that it decodes back whole,
/// as one frame, and when fed one byte at a time.
fn check_roundtrip(packet: &Packet, v: Protocol) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::new();
    packet
        .encode(v, &mut buf)
        .map_err(|e| TestCaseError::fail(format!("encoding as {v:?} failed: {e}")))?;
    prop_assert_eq!(buf.len(), packet.encoded_len(v), "encoded_len is not exact");
    let wire = buf.clone().freeze();

    let mut decoder = Decoder::new(Some(v), Decoder::MAX_PACKET_SIZE);
    prop_assert_eq!(decoder.decode(&mut buf), Ok(Some(packet.clone())));
    prop_assert!(buf.is_empty(), "{} bytes left over", buf.len());

    prop_assert_eq!(Packet::decode(wire.clone(), Some(v)), Ok(packet.clone()));

    let mut decoder = Decoder::new(Some(v), Decoder::MAX_PACKET_SIZE);
    let mut partial = BytesMut::new();
    for (i, &byte) in wire.iter().enumerate() {
        partial.extend_from_slice(&[byte]);
        let got = decoder.decode(&mut partial);
        if i + 1 < wire.len() {
            prop_assert_eq!(got, Ok(None), "after {} of {} bytes", i + 1, wire.len());
            prop_assert_eq!(
                partial.len(),
                i + 1,
                "bytes consumed before the packet is whole"
            );
        } else {
            prop_assert_eq!(got, Ok(Some(packet.clone())), "after the last byte");
            prop_assert!(partial.is_empty());
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn connect_roundtrips((v, p) in versioned(connect)) {
        check_roundtrip(&p, v)?;
        // A server's decoder learns the version from the CONNECT.
        let mut buf = BytesMut::new();
        p.encode(v, &mut buf).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut decoder = Decoder::new(None, Decoder::MAX_PACKET_SIZE);
        prop_assert_eq!(decoder.decode(&mut buf), Ok(Some(p)));
        prop_assert_eq!(decoder.protocol(), Some(v));
    }

    #[test]
    fn connack_roundtrips((v, p) in versioned(connack)) {
        check_roundtrip(&p, v)?;
    }

    #[test]
    fn publish_roundtrips((v, p) in versioned(publish)) {
        check_roundtrip(&p, v)?;
    }

    #[test]
    fn puback_roundtrips((v, p) in versioned(puback)) {
        check_roundtrip(&p, v)?;
    }

    #[test]
    fn pubrec_roundtrips((v, p) in versioned(pubrec)) {
        check_roundtrip(&p, v)?;
    }

    #[test]
    fn pubrel_roundtrips((v, p) in versioned(pubrel)) {
        check_roundtrip(&p, v)?;
    }

    #[test]
    fn pubcomp_roundtrips((v, p) in versioned(pubcomp)) {
        check_roundtrip(&p, v)?;
    }

    #[test]
    fn subscribe_roundtrips((v, p) in versioned(subscribe)) {
        check_roundtrip(&p, v)?;
    }

    #[test]
    fn suback_roundtrips((v, p) in versioned(suback)) {
        check_roundtrip(&p, v)?;
    }

    #[test]
    fn unsubscribe_roundtrips((v, p) in versioned(unsubscribe)) {
        check_roundtrip(&p, v)?;
    }

    #[test]
    fn unsuback_roundtrips((v, p) in versioned(unsuback)) {
        check_roundtrip(&p, v)?;
    }

    #[test]
    fn pingreq_roundtrips(v in protocol()) {
        check_roundtrip(&Packet::PingReq(PingReq), v)?;
    }

    #[test]
    fn pingresp_roundtrips(v in protocol()) {
        check_roundtrip(&Packet::PingResp(PingResp), v)?;
    }

    #[test]
    fn disconnect_roundtrips((v, p) in versioned(disconnect)) {
        check_roundtrip(&p, v)?;
    }

    #[test]
    fn auth_roundtrips(p in auth()) {
        check_roundtrip(&Packet::Auth(p), Protocol::V5)?;
    }

    /// Several packets in one buffer, delivered in chunks of a random size: each decode takes
    /// exactly one packet, in order, and nothing is left over.
    #[test]
    fn packet_streams_roundtrip(
        (v, packets, chunk) in protocol().prop_flat_map(|v| {
            (Just(v), vec(any_packet(v), 1..=8), 1usize..=64)
        })
    ) {
        let mut wire = BytesMut::new();
        for p in &packets {
            p.encode(v, &mut wire)
                .map_err(|e| TestCaseError::fail(format!("encoding {p:?} failed: {e}")))?;
        }
        let total: usize = packets.iter().map(|p| p.encoded_len(v)).sum();
        prop_assert_eq!(wire.len(), total);

        // All at once.
        let mut buf = wire.clone();
        let mut decoder = Decoder::new(Some(v), Decoder::MAX_PACKET_SIZE);
        for p in &packets {
            prop_assert_eq!(decoder.decode(&mut buf), Ok(Some(p.clone())));
        }
        prop_assert_eq!(decoder.decode(&mut buf), Ok(None));
        prop_assert!(buf.is_empty());

        // In chunks.
        let mut decoder = Decoder::new(Some(v), Decoder::MAX_PACKET_SIZE);
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for piece in wire.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(p) = decoder
                .decode(&mut buf)
                .map_err(|e| TestCaseError::fail(format!("stream decode failed: {e}")))?
            {
                decoded.push(p);
            }
        }
        prop_assert_eq!(decoded, packets);
        prop_assert!(buf.is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// The generators reach what they should
// ---------------------------------------------------------------------------------------------

/// `n` values of `strategy`, from a fixed seed.
fn sample<S: Strategy>(strategy: S, n: usize) -> Vec<S::Value> {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    (0..n)
        .map(|_| {
            strategy
                .new_tree(&mut runner)
                .expect("the generators do not reject")
                .current()
        })
        .collect()
}

/// Panics unless some item satisfies `pred`.
fn seen<T>(items: &[T], what: &str, pred: impl Fn(&T) -> bool) {
    assert!(
        items.iter().any(pred),
        "the generator never produced {what}"
    );
}

/// Panics unless every code valid in `packet` is among `got`.
fn every_code(packet: PacketType, got: impl IntoIterator<Item = ReasonCode>) {
    let got: Vec<ReasonCode> = got.into_iter().collect();
    for code in (0..=u8::MAX).map(ReasonCode) {
        if code.is_valid_for(packet) {
            assert!(
                got.contains(&code),
                "{packet:?} reason {code} never generated"
            );
        }
    }
}

/// Over a fixed-seed sample, every property of every set, every reason code of every packet,
/// and the edge cases (empty topic with alias, shared filters, several subscription
/// identifiers and user properties, v5 password without user name) are generated.
#[test]
fn generators_cover_every_field() {
    use Protocol::V5;
    let n = 400;

    let c = sample(connect(V5), n);
    let p = |f: fn(&ConnectProperties) -> bool| move |c: &Connect| f(&c.properties);
    seen(
        &c,
        "session_expiry_interval",
        p(|p| p.session_expiry_interval.is_some()),
    );
    seen(&c, "receive_maximum", p(|p| p.receive_maximum.is_some()));
    seen(
        &c,
        "maximum_packet_size",
        p(|p| p.maximum_packet_size.is_some()),
    );
    seen(
        &c,
        "topic_alias_maximum",
        p(|p| p.topic_alias_maximum.is_some()),
    );
    seen(
        &c,
        "request_response_information",
        p(|p| p.request_response_information == Some(true)),
    );
    seen(
        &c,
        "request_problem_information",
        p(|p| p.request_problem_information == Some(false)),
    );
    seen(
        &c,
        "authentication_data",
        p(|p| p.authentication_data.is_some()),
    );
    seen(
        &c,
        "method without data",
        p(|p| p.authentication_method.is_some() && p.authentication_data.is_none()),
    );
    seen(
        &c,
        "2+ user properties",
        p(|p| p.user_properties.len() >= 2),
    );
    seen(&c, "bridge", |c| c.bridge);
    seen(&c, "v5 password without user name", |c| {
        c.password.is_some() && c.username.is_none()
    });
    let w = |f: fn(&WillProperties) -> bool| {
        move |c: &Connect| c.will.as_ref().is_some_and(|w| f(&w.properties))
    };
    seen(
        &c,
        "will_delay_interval",
        w(|p| p.will_delay_interval.is_some()),
    );
    seen(
        &c,
        "payload_format_indicator",
        w(|p| p.payload_format_indicator == Some(PayloadFormat::Utf8)),
    );
    seen(
        &c,
        "message_expiry_interval",
        w(|p| p.message_expiry_interval.is_some()),
    );
    seen(&c, "content_type", w(|p| p.content_type.is_some()));
    seen(&c, "response_topic", w(|p| p.response_topic.is_some()));
    seen(&c, "correlation_data", w(|p| p.correlation_data.is_some()));
    seen(
        &c,
        "will user properties",
        w(|p| p.user_properties.len() >= 2),
    );
    seen(&c, "will QoS 2 retained", |c| {
        c.will
            .as_ref()
            .is_some_and(|w| w.qos == QoS::ExactlyOnce && w.retain)
    });

    let ca = sample(connack(V5), n);
    let p = |f: fn(&ConnAckProperties) -> bool| move |c: &ConnAck| f(&c.properties);
    seen(
        &ca,
        "session_expiry_interval",
        p(|p| p.session_expiry_interval.is_some()),
    );
    seen(&ca, "receive_maximum", p(|p| p.receive_maximum.is_some()));
    seen(
        &ca,
        "maximum_qos 0",
        p(|p| p.maximum_qos == Some(QoS::AtMostOnce)),
    );
    seen(
        &ca,
        "maximum_qos 1",
        p(|p| p.maximum_qos == Some(QoS::AtLeastOnce)),
    );
    seen(&ca, "retain_available", p(|p| p.retain_available.is_some()));
    seen(
        &ca,
        "maximum_packet_size",
        p(|p| p.maximum_packet_size.is_some()),
    );
    seen(
        &ca,
        "assigned_client_identifier",
        p(|p| p.assigned_client_identifier.is_some()),
    );
    seen(
        &ca,
        "topic_alias_maximum",
        p(|p| p.topic_alias_maximum.is_some()),
    );
    seen(&ca, "reason_string", p(|p| p.reason_string.is_some()));
    seen(
        &ca,
        "wildcard_subscription_available",
        p(|p| p.wildcard_subscription_available.is_some()),
    );
    seen(
        &ca,
        "subscription_identifiers_available",
        p(|p| p.subscription_identifiers_available.is_some()),
    );
    seen(
        &ca,
        "shared_subscription_available",
        p(|p| p.shared_subscription_available.is_some()),
    );
    seen(
        &ca,
        "server_keep_alive",
        p(|p| p.server_keep_alive.is_some()),
    );
    seen(
        &ca,
        "response_information",
        p(|p| p.response_information.is_some()),
    );
    seen(&ca, "server_reference", p(|p| p.server_reference.is_some()));
    seen(
        &ca,
        "authentication_data",
        p(|p| p.authentication_data.is_some()),
    );
    seen(
        &ca,
        "2+ user properties",
        p(|p| p.user_properties.len() >= 2),
    );
    seen(&ca, "session present", |c| c.session_present);
    every_code(PacketType::ConnAck, ca.iter().map(|c| c.reason));

    let pb = sample(publish(V5), n);
    let p = |f: fn(&PublishProperties) -> bool| move |x: &Publish| f(&x.properties);
    seen(
        &pb,
        "payload_format_indicator",
        p(|p| p.payload_format_indicator == Some(PayloadFormat::Unspecified)),
    );
    seen(
        &pb,
        "message_expiry_interval",
        p(|p| p.message_expiry_interval.is_some()),
    );
    seen(&pb, "topic_alias", p(|p| p.topic_alias.is_some()));
    seen(&pb, "response_topic", p(|p| p.response_topic.is_some()));
    seen(&pb, "correlation_data", p(|p| p.correlation_data.is_some()));
    seen(&pb, "content_type", p(|p| p.content_type.is_some()));
    seen(
        &pb,
        "3+ subscription identifiers",
        p(|p| p.subscription_identifiers.len() >= 3),
    );
    seen(
        &pb,
        "subscription identifier 268435455",
        p(|p| {
            p.subscription_identifiers
                .iter()
                .any(|i| i.get() == 268_435_455)
        }),
    );
    seen(
        &pb,
        "2+ user properties",
        p(|p| p.user_properties.len() >= 2),
    );
    seen(&pb, "empty topic with alias", |x| x.topic.is_empty());
    seen(&pb, "$SYS topic", |x| x.topic.starts_with("$SYS/"));
    seen(&pb, "QoS 2 dup retain", |x| {
        x.qos == QoS::ExactlyOnce && x.dup && x.retain
    });
    seen(&pb, "QoS 0", |x| x.qos == QoS::AtMostOnce);

    let sb = sample(subscribe(V5), n);
    let opts = |f: fn(&TopicFilter, &SubscriptionOptions) -> bool| {
        move |s: &Subscribe| s.filters.iter().any(|(t, o)| f(t, o))
    };
    seen(&sb, "subscription_identifier", |s| {
        s.properties.subscription_identifier.is_some()
    });
    seen(&sb, "user properties", |s| {
        s.properties.user_properties.len() >= 2
    });
    seen(&sb, "shared filter", opts(|t, _| t.is_shared()));
    seen(
        &sb,
        "shared filter with wildcards",
        opts(|t, _| t.is_shared() && t.has_wildcards()),
    );
    seen(&sb, "# filter", opts(|t, _| t.as_str().ends_with('#')));
    seen(&sb, "no local", opts(|_, o| o.no_local));
    seen(
        &sb,
        "retain as published",
        opts(|_, o| o.retain_as_published),
    );
    seen(
        &sb,
        "retain handling 1",
        opts(|_, o| o.retain_handling == RetainHandling::SendAtSubscribeIfNew),
    );
    seen(
        &sb,
        "retain handling 2",
        opts(|_, o| o.retain_handling == RetainHandling::DoNotSend),
    );
    seen(&sb, "several filters", |s| s.filters.len() >= 3);

    let us = sample(unsubscribe(V5), n);
    seen(&us, "user properties", |u| {
        !u.properties.user_properties.is_empty()
    });

    every_code(
        PacketType::PubAck,
        sample(puback(V5), n).iter().map(|a| a.reason),
    );
    every_code(
        PacketType::PubRec,
        sample(pubrec(V5), n).iter().map(|a| a.reason),
    );
    every_code(
        PacketType::PubRel,
        sample(pubrel(V5), n).iter().map(|a| a.reason),
    );
    let pc = sample(pubcomp(V5), n);
    every_code(PacketType::PubComp, pc.iter().map(|a| a.reason));
    seen(&pc, "reason string", |a| {
        a.properties.reason_string.is_some()
    });
    seen(&pc, "short form", |a| {
        a.reason == ReasonCode::SUCCESS && a.properties.is_empty()
    });
    every_code(
        PacketType::SubAck,
        sample(suback(V5), n).iter().flat_map(|a| a.reasons.clone()),
    );
    every_code(
        PacketType::UnsubAck,
        sample(unsuback(V5), n)
            .iter()
            .flat_map(|a| a.reasons.clone()),
    );

    let d = sample(disconnect(V5), n);
    every_code(PacketType::Disconnect, d.iter().map(|d| d.reason));
    seen(&d, "session_expiry_interval", |d| {
        d.properties.session_expiry_interval.is_some()
    });
    seen(&d, "reason_string", |d| {
        d.properties.reason_string.is_some()
    });
    seen(&d, "server_reference", |d| {
        d.properties.server_reference.is_some()
    });
    seen(&d, "user properties", |d| {
        d.properties.user_properties.len() >= 2
    });

    let a = sample(auth(), n);
    every_code(PacketType::Auth, a.iter().map(|a| a.reason));
    seen(&a, "empty AUTH", |a| *a == Auth::default());
    seen(&a, "authentication_data", |a| {
        a.properties.authentication_data.is_some()
    });
    seen(&a, "reason_string", |a| {
        a.properties.reason_string.is_some()
    });
    seen(&a, "user properties", |a| {
        a.properties.user_properties.len() >= 2
    });

    for v in [Protocol::V31, Protocol::V311] {
        let ca = sample(connack(v), n);
        for code in 0..=5 {
            let reason = ReasonCode::from_v3_connack(code).expect("0..=5");
            seen(&ca, "every v3 CONNACK return code", |c| c.reason == reason);
        }
        let sa = sample(suback(v), n);
        for code in [0x00, 0x01, 0x02, 0x80] {
            seen(&sa, "every v3 SUBACK return code", |s| {
                s.reasons.contains(&ReasonCode(code))
            });
        }
        let c = sample(connect(v), n);
        seen(&c, "v3 password", |c| c.password.is_some());
        seen(&c, "v3 will", |c| c.will.is_some());
        seen(&sample(subscribe(v), n), "v3 shared filter", |s| {
            s.filters.iter().any(|(t, _)| t.is_shared())
        });
    }
}
