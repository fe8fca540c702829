//! MQTT 5.0 features of the per-connection state machine ([`Connection`]) and the outbound
//! window ([`Outbound`]), driven without sockets: packets go in through `handle_packet`, the
//! broker's part is played by hand, and time is a simulated `Instant`.
//!
//! Each test cites the normative statement of the MQTT 5.0 specification that decides it, or
//! the section where the behaviour is described without a numbered statement.

use std::num::{NonZeroU16, NonZeroU32};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use pigeon_proto::properties::{
    AuthProperties, DisconnectProperties, PublishProperties, SubscriptionId,
};
use pigeon_proto::{
    Auth, ConnAck, Connect, Decoder, Disconnect, MqttString, Packet, PacketId, PayloadFormat,
    PingReq, Protocol, PubAck, PubRel, Publish, QoS, ReasonCode, RetainHandling, Subscribe,
    SubscriptionOptions, TopicFilter, TopicName, Will,
};

use super::{
    AuthExchange, AuthMethod, AuthMethods, AuthStep, CloseReason, Connection, ConnectionSettings,
    Event, Link, Outbound, OutboundLimits, Pushed, Session,
};
use crate::message::{Delivery, Message};

fn id(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero")
}

fn t0() -> Instant {
    crate::clock::now()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A v5 CONNECT from `client_id` with this Keep Alive.
fn v5(client_id: &'static str, keep_alive: u16) -> Connect {
    let mut c = Connect::new(Protocol::V5, MqttString::from_static(client_id));
    c.keep_alive = keep_alive;
    c
}

/// A 3.1.1 CONNECT from `client_id` with this Keep Alive.
fn v311(client_id: &'static str, keep_alive: u16) -> Connect {
    let mut c = Connect::new(Protocol::V311, MqttString::from_static(client_id));
    c.keep_alive = keep_alive;
    c
}

/// Takes `connect` through CONNECT / CONNACK at `now` with a new session; returns the
/// connection and the CONNACK it sent.
fn connect_with(
    settings: ConnectionSettings,
    connect: Connect,
    now: Instant,
) -> (Connection, ConnAck) {
    let protocol = connect.protocol;
    let client_id = connect.client_id.detach();
    let mut conn = Connection::new(settings, now);
    conn.handle_packet(Packet::Connect(Box::new(connect)), now);
    let Some(Event::Connect(c)) = conn.poll_event() else {
        panic!("CONNECT not reported");
    };
    let session = Session::new(
        client_id,
        protocol,
        c.clean_start,
        OutboundLimits::default(),
    );
    conn.accept(session, false, now);
    let mut sent = conn.take_transmit();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let Packet::ConnAck(ack) = sent.remove(0) else {
        panic!("not a CONNACK: {sent:?}");
    };
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    (conn, ack)
}

/// A connection with the default settings after CONNECT / CONNACK.
fn connected(connect: Connect, now: Instant) -> Connection {
    connect_with(ConnectionSettings::default(), connect, now).0
}

/// A PUBLISH from a client; an empty `topic` is the empty Topic Name of an aliased PUBLISH.
fn publish(
    topic: &'static str,
    qos: QoS,
    packet_id: Option<u16>,
    payload: &'static [u8],
) -> Publish {
    let topic = if topic.is_empty() {
        TopicName::empty()
    } else {
        TopicName::from_static(topic)
    };
    let mut p = Publish::new(topic, Bytes::from_static(payload));
    p.qos = qos;
    p.packet_id = packet_id.map(id);
    p
}

fn message(topic: &'static str, qos: QoS, payload: &'static [u8]) -> Arc<Message> {
    Arc::new(Message::new(
        TopicName::from_static(topic),
        Bytes::from_static(payload),
        qos,
        false,
    ))
}

/// The reason the connection closed with, skipping other events.
fn close_reason(conn: &mut Connection) -> Option<CloseReason> {
    while let Some(event) = conn.poll_event() {
        if let Event::Close(reason) = event {
            return Some(reason);
        }
    }
    None
}

/// The DISCONNECT packets among `sent`.
fn disconnects(sent: &[Packet]) -> Vec<&Disconnect> {
    sent.iter()
        .filter_map(|p| match p {
            Packet::Disconnect(d) => Some(d),
            _ => None,
        })
        .collect()
}

/// The PUBLISH packets among `sent`.
fn publishes(sent: Vec<Packet>) -> Vec<Publish> {
    sent.into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// Plays the broker for one PUBLISH from the client: returns the routed message, and
/// acknowledges it with `matched`.
fn route_one(conn: &mut Connection, matched: bool) -> Arc<Message> {
    match conn.poll_event() {
        Some(Event::Publish { message, ack }) => {
            conn.routed(ack, matched);
            message
        }
        other => panic!("expected a PUBLISH to route, got {other:?}"),
    }
}

/// Encodes `packet` as `protocol` and decodes it again, as the peer would read it.
fn on_the_wire(packet: &Packet, protocol: Protocol) -> Packet {
    let mut buf = BytesMut::new();
    packet.encode(protocol, &mut buf).expect("encodes");
    let mut decoder = Decoder::new(Some(protocol), Decoder::MAX_PACKET_SIZE);
    let decoded = decoder.decode(&mut buf).expect("decodes").expect("whole");
    assert!(buf.is_empty());
    decoded
}

// ---------------------------------------------------------------------------------------------
// 1. CONNACK properties
// ---------------------------------------------------------------------------------------------

// MQTT 5.0 section 3.2.2.3: the CONNACK tells a v5 client the broker's Receive Maximum,
// Maximum Packet Size, Topic Alias Maximum and Retain Available; [MQTT-3.2.2-9]: a broker
// that does not support QoS 2 sends the Maximum QoS it supports.
#[test]
fn connack_tells_v5_clients_the_brokers_limits() {
    let settings = ConnectionSettings {
        max_qos: QoS::AtLeastOnce,
        retain_available: false,
        max_topic_alias: 7,
        receive_maximum: NonZeroU16::new(5),
        max_packet_size: NonZeroU32::new(4096),
        ..ConnectionSettings::default()
    };
    let (_, ack) = connect_with(settings, v5("c", 30), t0());
    let p = &ack.properties;
    assert_eq!(p.receive_maximum, NonZeroU16::new(5));
    assert_eq!(p.maximum_qos, Some(QoS::AtLeastOnce));
    assert_eq!(p.retain_available, Some(false));
    assert_eq!(p.maximum_packet_size, NonZeroU32::new(4096));
    assert_eq!(p.topic_alias_maximum, Some(7));
    // A Keep Alive within max_keepalive is kept [MQTT-3.2.2-22]; nothing was assigned.
    assert_eq!(p.server_keep_alive, None);
    assert_eq!(p.assigned_client_identifier, None);
}

// MQTT 5.0 section 3.2.2.3: absent properties mean the protocol's defaults (QoS 2, retain
// available), so the default settings leave them out; a Topic Alias Maximum of 0 is not sent.
#[test]
fn connack_leaves_out_what_the_defaults_say() {
    let settings = ConnectionSettings {
        max_topic_alias: 0,
        ..ConnectionSettings::default()
    };
    let (_, ack) = connect_with(settings, v5("c", 30), t0());
    let p = &ack.properties;
    assert_eq!(p.maximum_qos, None);
    assert_eq!(p.retain_available, None);
    assert_eq!(p.topic_alias_maximum, None);
    assert_eq!(p.maximum_packet_size, None);
    assert_eq!(p.receive_maximum, NonZeroU16::new(20));
}

// [MQTT-3.2.2-21]: the client must use the Server Keep Alive; the broker sends one when the
// client asked for none or for more than max_keepalive, and then holds it to that value
// (one and a half times it, [MQTT-3.1.2-22]). [MQTT-3.2.2-22]: otherwise the client's own.
#[test]
fn server_keep_alive_replaces_none_or_too_long() {
    let settings = ConnectionSettings {
        max_keepalive: 60,
        ..ConnectionSettings::default()
    };
    for (asked, told, timeout) in [
        (0, Some(60), 90),
        (120, Some(60), 90),
        (60, None, 90),
        (10, None, 15),
    ] {
        let now = t0();
        let (conn, ack) = connect_with(settings.clone(), v5("c", asked), now);
        assert_eq!(ack.properties.server_keep_alive, told, "keep alive {asked}");
        assert_eq!(
            conn.poll_timeout(),
            Some(now + secs(timeout)),
            "keep alive {asked}"
        );
    }
}

// [MQTT-3.2.2-16]: a v5 client that sent an empty Client Identifier is told the one assigned.
#[test]
fn assigned_client_identifier_goes_to_v5_clients() {
    let now = t0();
    let mut conn = Connection::new(ConnectionSettings::default(), now);
    conn.handle_packet(Packet::Connect(Box::new(v5("", 30))), now);
    assert!(matches!(conn.poll_event(), Some(Event::Connect(_))));
    let assigned = MqttString::from_static("auto-42");
    let session = Session::new(
        assigned.clone(),
        Protocol::V5,
        true,
        OutboundLimits::default(),
    );
    conn.accept_assigned(session, false, Some(assigned.clone()), now);
    let sent = conn.take_transmit();
    let [Packet::ConnAck(ack)] = &sent[..] else {
        panic!("{sent:?}");
    };
    assert_eq!(ack.properties.assigned_client_identifier, Some(assigned));
}

// MQTT 3.1.1 section 3.2: a 3.1.1 CONNACK has no properties, whatever the settings; nor is a
// Server Keep Alive imposed: Keep Alive 0 still turns the mechanism off.
#[test]
fn v311_connack_has_no_properties() {
    let settings = ConnectionSettings {
        max_qos: QoS::AtLeastOnce,
        retain_available: false,
        max_keepalive: 60,
        max_packet_size: NonZeroU32::new(4096),
        ..ConnectionSettings::default()
    };
    let now = t0();
    let mut conn = Connection::new(settings, now);
    conn.handle_packet(Packet::Connect(Box::new(v311("", 0))), now);
    assert!(matches!(conn.poll_event(), Some(Event::Connect(_))));
    let id = MqttString::from_static("auto-1");
    let session = Session::new(id.clone(), Protocol::V311, true, OutboundLimits::default());
    conn.accept_assigned(session, false, Some(id), now);
    let sent = conn.take_transmit();
    let [Packet::ConnAck(ack)] = &sent[..] else {
        panic!("{sent:?}");
    };
    assert!(ack.properties.is_empty(), "{:?}", ack.properties);
    assert_eq!(conn.poll_timeout(), None);
}

// ---------------------------------------------------------------------------------------------
// 2. Session Expiry Interval
// ---------------------------------------------------------------------------------------------

// [MQTT-3.1.2-23]: the session outlives the connection by the Session Expiry Interval of the
// CONNECT; absent means 0 (MQTT 5.0 section 3.1.2.11.2), 0xFFFFFFFF never expires.
#[test]
fn session_expiry_interval_comes_from_connect() {
    for (interval, expiry, clean) in [
        (None, Some(Duration::ZERO), true),
        (Some(0), Some(Duration::ZERO), true),
        (Some(120), Some(secs(120)), false),
        (Some(u32::MAX), None, false),
    ] {
        let mut c = v5("c", 30);
        c.clean_start = false;
        c.properties.session_expiry_interval = interval;
        let conn = connected(c, t0());
        let session = conn.session().expect("connected");
        assert_eq!(session.expiry(), expiry, "{interval:?}");
        assert_eq!(session.clean, clean, "{interval:?}");
        assert_eq!(conn.session_expiry_interval(), interval.unwrap_or(0));
    }
}

// MQTT 5.0 section 3.14.2.2.2: a DISCONNECT may change the Session Expiry Interval set on
// CONNECT (here to 0: the session now ends with the connection, and to a longer one).
#[test]
fn disconnect_changes_session_expiry() {
    for (on_disconnect, expiry, clean) in [
        (0, Some(Duration::ZERO), true),
        (600, Some(secs(600)), false),
    ] {
        let mut c = v5("c", 30);
        c.properties.session_expiry_interval = Some(60);
        let now = t0();
        let mut conn = connected(c, now);
        let mut d = Disconnect::new(ReasonCode::SUCCESS);
        d.properties.session_expiry_interval = Some(on_disconnect);
        conn.handle_packet(Packet::Disconnect(d), now);
        assert_eq!(
            close_reason(&mut conn),
            Some(CloseReason::Disconnected { with_will: false })
        );
        assert_eq!(conn.session_expiry_interval(), on_disconnect);
        let session = conn.take_session().expect("kept for the broker");
        assert_eq!((session.expiry(), session.clean), (expiry, clean));
        assert!(
            conn.take_transmit().is_empty(),
            "nothing answers a DISCONNECT"
        );
    }
}

// MQTT 5.0 section 3.14.2.2.2: "If the Session Expiry Interval in the CONNECT packet was zero,
// then it is a Protocol Error to set a non-zero Session Expiry Interval in the DISCONNECT
// packet sent by the Client" (the broker answers DISCONNECT 0x82). (No numbered statement:
// [MQTT-3.14.2-2] is the rule that the Server never sends the property, checked too.)
#[test]
fn disconnect_cannot_extend_a_session_that_had_no_expiry() {
    let now = t0();
    let mut conn = connected(v5("c", 30), now);
    let mut d = Disconnect::new(ReasonCode::SUCCESS);
    d.properties.session_expiry_interval = Some(30);
    conn.handle_packet(Packet::Disconnect(d), now);
    let Some(CloseReason::Violation(v)) = close_reason(&mut conn) else {
        panic!("not a violation");
    };
    assert_eq!(v.reason, ReasonCode::PROTOCOL_ERROR);
    let sent = conn.take_transmit();
    let [d] = &disconnects(&sent)[..] else {
        panic!("{sent:?}");
    };
    assert_eq!(d.reason, ReasonCode::PROTOCOL_ERROR);
    assert_eq!(d.properties.session_expiry_interval, None);
    // The session still ends with the connection.
    let session = conn.take_session().expect("session");
    assert!(session.clean);
    assert_eq!(session.expiry(), Some(Duration::ZERO));
}

// ---------------------------------------------------------------------------------------------
// 3. Message Expiry Interval
// ---------------------------------------------------------------------------------------------

fn expiring(topic: &'static str, qos: QoS, expiry: u32, now: Instant) -> Arc<Message> {
    let mut p = publish(topic, qos, None, b"soon stale");
    p.properties.message_expiry_interval = Some(expiry);
    Message::from_publish(p, None, now)
}

// [MQTT-3.3.2-5]: a message whose Message Expiry Interval passed before its delivery started
// is deleted for that subscriber: a queued one leaves the queue unsent.
#[test]
fn expired_queued_message_is_not_delivered() {
    let now = t0();
    let mut out = Outbound::new(OutboundLimits {
        max_inflight_messages: 1,
        ..OutboundLimits::default()
    });
    let online = Link::Online { backlog: 0 };
    let first = out.push(
        Delivery::new(
            message("t", QoS::AtLeastOnce, b"1"),
            QoS::AtLeastOnce,
            false,
        ),
        online,
        now,
    );
    assert!(matches!(first, Pushed::Send(_)));
    let stale = Delivery::new(
        expiring("t", QoS::AtLeastOnce, 10, now),
        QoS::AtLeastOnce,
        false,
    );
    assert_eq!(out.push(stale, online, now), Pushed::Queued);
    let later = now + secs(10);
    assert!(out.on_puback(id(1), later).expect("in flight").is_empty());
    assert_eq!(out.expired(), 1);
    assert_eq!(out.queued_len() + out.inflight_len(), 0);
}

// [MQTT-3.3.2-5]: a message that expired before it reached an online client is not sent.
#[test]
fn expired_message_is_not_sent_to_a_connected_client() {
    let now = t0();
    let mut conn = connected(v5("c", 30), now);
    let stale = Delivery::new(
        expiring("t", QoS::AtMostOnce, 5, now),
        QoS::AtMostOnce,
        false,
    );
    assert!(
        !conn.deliver(stale, 0, now + secs(5)),
        "discarded, not dropped"
    );
    assert!(conn.take_transmit().is_empty());
}

// [MQTT-3.3.2-6]: the PUBLISH carries the Message Expiry Interval minus the time the message
// waited in the broker (rounded up, so a live message never says 0).
#[test]
fn delivered_message_carries_the_remaining_interval() {
    let now = t0();
    let m = expiring("t", QoS::AtLeastOnce, 60, now);
    let d = Delivery::new(Arc::clone(&m), QoS::AtLeastOnce, false);
    assert_eq!(
        d.to_publish(None, false, now)
            .properties
            .message_expiry_interval,
        Some(60)
    );
    assert_eq!(
        d.to_publish(None, false, now + secs(25))
            .properties
            .message_expiry_interval,
        Some(35)
    );
    assert_eq!(
        d.to_publish(None, false, now + Duration::from_millis(59_500))
            .properties
            .message_expiry_interval,
        Some(1)
    );
    // Through the window: queued at 0 s, sent at 25 s.
    let mut out = Outbound::new(OutboundLimits {
        max_inflight_messages: 1,
        ..OutboundLimits::default()
    });
    let online = Link::Online { backlog: 0 };
    let first = Delivery::new(
        message("t", QoS::AtLeastOnce, b"1"),
        QoS::AtLeastOnce,
        false,
    );
    assert!(matches!(out.push(first, online, now), Pushed::Send(p)
        if p.properties.message_expiry_interval.is_none()));
    assert_eq!(out.push(d, online, now), Pushed::Queued);
    let sent = out.on_puback(id(1), now + secs(25)).expect("in flight");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].properties.message_expiry_interval, Some(35));
}

// ---------------------------------------------------------------------------------------------
// 4. Topic aliases
// ---------------------------------------------------------------------------------------------

fn aliased(topic: &'static str, alias: u16, qos: QoS, packet_id: Option<u16>) -> Packet {
    let mut p = publish(topic, qos, packet_id, b"x");
    p.properties.topic_alias = NonZeroU16::new(alias);
    Packet::Publish(p)
}

// [MQTT-3.3.2-9]: a client must not send a Topic Alias above the Topic Alias Maximum the
// broker sent; MQTT 5.0 section 3.3.2.3.4: the broker then disconnects with 0x94 (Topic Alias
// invalid).
#[test]
fn inbound_alias_above_the_maximum_is_topic_alias_invalid() {
    let settings = ConnectionSettings {
        max_topic_alias: 2,
        ..ConnectionSettings::default()
    };
    let now = t0();
    let (mut conn, ack) = connect_with(settings, v5("c", 30), now);
    assert_eq!(ack.properties.topic_alias_maximum, Some(2));
    // [MQTT-3.3.2-12]: aliases up to the maximum are accepted.
    conn.handle_packet(aliased("a", 2, QoS::AtMostOnce, None), now);
    assert!(matches!(conn.poll_event(), Some(Event::Publish { .. })));
    conn.handle_packet(aliased("a", 3, QoS::AtMostOnce, None), now);
    let Some(CloseReason::Violation(v)) = close_reason(&mut conn) else {
        panic!("not closed");
    };
    assert_eq!(v.reason, ReasonCode::TOPIC_ALIAS_INVALID);
    let sent = conn.take_transmit();
    assert!(matches!(&disconnects(&sent)[..], [d] if d.reason == ReasonCode::TOPIC_ALIAS_INVALID));
}

// MQTT 5.0 section 3.3.2.3.4: a PUBLISH with an empty Topic Name and an alias never set names
// no topic: a Protocol Error (0x82).
#[test]
fn inbound_unknown_alias_without_topic_is_a_protocol_error() {
    let now = t0();
    let mut conn = connected(v5("c", 30), now);
    let mut p = Publish::new(TopicName::empty(), Bytes::from_static(b"x"));
    p.properties.topic_alias = NonZeroU16::new(1);
    conn.handle_packet(Packet::Publish(p), now);
    let Some(CloseReason::Violation(v)) = close_reason(&mut conn) else {
        panic!("not closed");
    };
    assert_eq!(v.reason, ReasonCode::PROTOCOL_ERROR);
    let sent = conn.take_transmit();
    assert!(matches!(&disconnects(&sent)[..], [d] if d.reason == ReasonCode::PROTOCOL_ERROR));
}

// MQTT 5.0 section 3.3.2.3.4: a PUBLISH with a topic and an alias sets the alias; one with the
// alias and an empty topic means that topic; a new topic replaces the alias's topic. The alias
// itself is not forwarded (it belongs to the connection).
#[test]
fn inbound_alias_maps_to_the_topic_it_was_set_with() {
    let now = t0();
    let mut conn = connected(v5("c", 30), now);
    conn.handle_packet(
        aliased("sensors/kitchen/temperature", 1, QoS::AtLeastOnce, Some(1)),
        now,
    );
    let first = route_one(&mut conn, true);
    assert_eq!(first.topic, "sensors/kitchen/temperature");
    assert_eq!(first.properties.topic_alias, None);
    conn.handle_packet(aliased("", 1, QoS::AtLeastOnce, Some(2)), now);
    let second = route_one(&mut conn, true);
    assert_eq!(second.topic, "sensors/kitchen/temperature");
    assert_eq!(second.properties.topic_alias, None);
    conn.handle_packet(
        aliased("sensors/hall/humidity", 1, QoS::AtMostOnce, None),
        now,
    );
    conn.handle_packet(aliased("", 1, QoS::AtMostOnce, None), now);
    route_one(&mut conn, true);
    assert_eq!(route_one(&mut conn, true).topic, "sensors/hall/humidity");
    assert!(!conn.is_closed());
}

// [MQTT-3.3.2-7]: Topic Alias mappings are not carried from one network connection to the
// next.
#[test]
fn inbound_aliases_do_not_outlive_the_connection() {
    let now = t0();
    let mut first = connected(v5("c", 30), now);
    first.handle_packet(aliased("t", 1, QoS::AtMostOnce, None), now);
    assert!(matches!(first.poll_event(), Some(Event::Publish { .. })));
    let mut second = connected(v5("c", 30), now);
    second.handle_packet(aliased("", 1, QoS::AtMostOnce, None), now);
    assert!(matches!(
        close_reason(&mut second),
        Some(CloseReason::Violation(v)) if v.reason == ReasonCode::PROTOCOL_ERROR
    ));
}

// MQTT 5.0 section 3.3.2.3.4 and [MQTT-3.1.2-26]: towards a client whose CONNECT allowed
// aliases, the broker sets one with the first PUBLISH to a topic and later sends the alias with
// an empty topic, never using more aliases than the client's Topic Alias Maximum.
#[test]
fn outbound_aliases_up_to_the_clients_maximum() {
    let now = t0();
    let mut c = v5("c", 30);
    c.properties.topic_alias_maximum = Some(2);
    let mut conn = connected(c, now);
    for topic in [
        "a/long/topic",
        "a/long/topic",
        "b/topic",
        "c/topic",
        "b/topic",
    ] {
        let m = Arc::new(Message::new(
            TopicName::from_static(topic),
            Bytes::from_static(b"p"),
            QoS::AtLeastOnce,
            false,
        ));
        conn.deliver(Delivery::new(m, QoS::AtLeastOnce, false), 0, now);
    }
    let sent = publishes(conn.take_transmit());
    let seen: Vec<(&str, Option<u16>)> = sent
        .iter()
        .map(|p| {
            (
                p.topic.as_str(),
                p.properties.topic_alias.map(NonZeroU16::get),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("a/long/topic", Some(1)),
            ("", Some(1)),
            ("b/topic", Some(2)),
            // The maximum is reached: the topic goes in full, without an alias.
            ("c/topic", None),
            ("", Some(2)),
        ]
    );
    // Each encodes and reads back as it was sent.
    for p in sent {
        let packet = Packet::Publish(p);
        assert_eq!(on_the_wire(&packet, Protocol::V5), packet);
    }
}

// [MQTT-3.1.2-27]: a client that sent no Topic Alias Maximum, or 0, gets no aliases.
#[test]
fn no_outbound_aliases_without_a_client_maximum() {
    for maximum in [None, Some(0)] {
        let now = t0();
        let mut c = v5("c", 30);
        c.properties.topic_alias_maximum = maximum;
        let mut conn = connected(c, now);
        for _ in 0..2 {
            conn.deliver(
                Delivery::new(
                    message("a/topic", QoS::AtMostOnce, b"p"),
                    QoS::AtMostOnce,
                    false,
                ),
                0,
                now,
            );
        }
        for p in publishes(conn.take_transmit()) {
            assert_eq!(p.topic, "a/topic");
            assert_eq!(p.properties.topic_alias, None);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Flow control
// ---------------------------------------------------------------------------------------------

// [MQTT-3.3.4-9]: the broker sends no more unacknowledged QoS 1 and 2 PUBLISH packets than
// the client's Receive Maximum; [MQTT-4.9.0-2]: the quota comes back with each PUBACK.
#[test]
fn clients_receive_maximum_limits_what_is_in_flight() {
    let now = t0();
    let mut c = v5("c", 30);
    c.properties.receive_maximum = NonZeroU16::new(2);
    let mut conn = connected(c, now);
    for _ in 0..4 {
        conn.deliver(
            Delivery::new(
                message("t", QoS::AtLeastOnce, b"p"),
                QoS::AtLeastOnce,
                false,
            ),
            0,
            now,
        );
    }
    let sent = publishes(conn.take_transmit());
    assert_eq!(sent.len(), 2);
    let session = conn.session().expect("connected");
    assert_eq!(
        (
            session.outbound.inflight_len(),
            session.outbound.queued_len()
        ),
        (2, 2)
    );
    conn.handle_packet(
        Packet::PubAck(PubAck::new(sent[0].packet_id.expect("QoS 1"))),
        now,
    );
    assert_eq!(publishes(conn.take_transmit()).len(), 1);
    assert_eq!(
        conn.session().expect("connected").outbound.inflight_len(),
        2
    );
}

// [MQTT-3.3.4-7]: a client sends no more unacknowledged QoS 2 PUBLISH packets than the broker's
// Receive Maximum; MQTT 5.0 section 3.3.4: the broker disconnects one that does with 0x93
// (Receive Maximum exceeded). A retransmission of one in progress does not count, and PUBREL
// frees the slot.
#[test]
fn brokers_receive_maximum_exceeded_disconnects() {
    let settings = ConnectionSettings {
        receive_maximum: NonZeroU16::new(2),
        ..ConnectionSettings::default()
    };
    let now = t0();
    let (mut conn, _) = connect_with(settings, v5("c", 30), now);
    for n in [1, 2] {
        conn.handle_packet(
            Packet::Publish(publish("t", QoS::ExactlyOnce, Some(n), b"x")),
            now,
        );
        route_one(&mut conn, true);
    }
    let mut again = publish("t", QoS::ExactlyOnce, Some(2), b"x");
    again.dup = true;
    conn.handle_packet(Packet::Publish(again), now);
    assert!(
        conn.poll_event().is_none(),
        "a retransmission is not routed again"
    );
    conn.handle_packet(Packet::PubRel(PubRel::new(id(1))), now);
    conn.handle_packet(
        Packet::Publish(publish("t", QoS::ExactlyOnce, Some(3), b"x")),
        now,
    );
    route_one(&mut conn, true);
    assert!(!conn.is_closed());
    conn.take_transmit();
    // Two now wait for PUBREL (2 and 3): a third is one too many.
    conn.handle_packet(
        Packet::Publish(publish("t", QoS::ExactlyOnce, Some(4), b"x")),
        now,
    );
    let Some(CloseReason::Violation(v)) = close_reason(&mut conn) else {
        panic!("not closed");
    };
    assert_eq!(v.reason, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED);
    let sent = conn.take_transmit();
    assert!(
        matches!(&disconnects(&sent)[..], [d] if d.reason == ReasonCode::RECEIVE_MAXIMUM_EXCEEDED),
        "{sent:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Maximum Packet Size
// ---------------------------------------------------------------------------------------------

// [MQTT-3.1.2-24]: the broker never sends a packet larger than the client's Maximum Packet
// Size; [MQTT-3.1.2-25]: it discards it and behaves as if it had completed sending it (a QoS 1
// message does not hold a slot of the window).
#[test]
fn packets_larger_than_the_clients_maximum_are_discarded() {
    let now = t0();
    let mut c = v5("c", 30);
    c.properties.maximum_packet_size = NonZeroU32::new(64);
    c.properties.receive_maximum = NonZeroU16::new(1);
    let mut conn = connected(c, now);
    let big = Arc::new(Message::new(
        TopicName::from_static("t"),
        Bytes::from(vec![b'x'; 100]),
        QoS::AtLeastOnce,
        false,
    ));
    assert!(!conn.deliver(Delivery::new(big, QoS::AtLeastOnce, false), 0, now));
    assert!(conn.take_transmit().is_empty());
    let session = conn.session().expect("connected");
    assert_eq!(session.outbound.oversize(), 1);
    assert_eq!(session.outbound.inflight_len(), 0);
    conn.deliver(
        Delivery::new(
            message("t", QoS::AtLeastOnce, b"small"),
            QoS::AtLeastOnce,
            false,
        ),
        0,
        now,
    );
    let sent = conn.take_transmit();
    assert_eq!(publishes(sent.clone()).len(), 1);
    assert!(sent.iter().all(|p| p.encoded_len(Protocol::V5) <= 64));
}

// [MQTT-3.1.2-25] on resumption: a message left in flight by an earlier connection that the
// new connection's Maximum Packet Size does not let through is discarded as if delivered, not
// resent; the window fills from the queue behind it.
#[test]
fn messages_in_flight_too_large_for_the_new_connection_are_discarded() {
    let now = t0();
    let mut outbound = Outbound::new(OutboundLimits::default());
    outbound.set_receive_maximum(Some(1));
    let big = Arc::new(Message::new(
        TopicName::from_static("t"),
        Bytes::from(vec![b'x'; 100]),
        QoS::AtLeastOnce,
        false,
    ));
    outbound.push(
        Delivery::new(big, QoS::AtLeastOnce, false),
        Link::Online { backlog: 0 },
        now,
    );
    outbound.push(
        Delivery::new(
            message("t", QoS::AtLeastOnce, b"small"),
            QoS::AtLeastOnce,
            false,
        ),
        Link::Online { backlog: 0 },
        now,
    );
    assert_eq!((outbound.inflight_len(), outbound.queued_len()), (1, 1));
    // The client comes back with a Maximum Packet Size of 64 bytes.
    outbound.set_max_packet_size(Some(64));
    let resent = outbound.resume(now);
    let payloads: Vec<Vec<u8>> = resent
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.payload.to_vec()),
            _ => None,
        })
        .collect();
    assert_eq!(payloads, [b"small".to_vec()]);
    assert!(resent.iter().all(|p| p.encoded_len(Protocol::V5) <= 64));
    assert_eq!(outbound.oversize(), 1);
    assert_eq!(outbound.inflight_len(), 1);
}

// [MQTT-3.1.2-24]: the limit holds for the packet as written, Topic Alias included: a PUBLISH
// that fits without an alias must still fit once the broker gives it one.
#[test]
fn topic_alias_never_pushes_a_packet_over_the_clients_maximum() {
    let now = t0();
    let d = || {
        Delivery::new(
            message("some/topic", QoS::AtMostOnce, b"payload"),
            QoS::AtMostOnce,
            false,
        )
    };
    let exact = d().to_publish(None, false, now).encoded_len(Protocol::V5);
    let mut c = v5("c", 30);
    c.properties.maximum_packet_size = u32::try_from(exact).ok().and_then(NonZeroU32::new);
    c.properties.topic_alias_maximum = Some(5);
    let mut conn = connected(c, now);
    for _ in 0..3 {
        conn.deliver(d(), 0, now);
    }
    let sent = conn.take_transmit();
    assert_eq!(publishes(sent.clone()).len(), 3, "{sent:?}");
    for p in &sent {
        assert!(
            p.encoded_len(Protocol::V5) <= exact,
            "{p:?} exceeds {exact}"
        );
    }

    // An alias set with a small message, then used for a topic of two bytes with a payload
    // that fits only with the topic in full (the alias costs three bytes, the topic two).
    let small = || Delivery::new(message("ab", QoS::AtMostOnce, b"p"), QoS::AtMostOnce, false);
    let large = Arc::new(Message::new(
        TopicName::from_static("ab"),
        Bytes::from(vec![b'x'; 40]),
        QoS::AtMostOnce,
        false,
    ));
    let large = || Delivery::new(Arc::clone(&large), QoS::AtMostOnce, false);
    let max = large()
        .to_publish(None, false, now)
        .encoded_len(Protocol::V5);
    let mut c = v5("c", 30);
    c.properties.maximum_packet_size = u32::try_from(max).ok().and_then(NonZeroU32::new);
    c.properties.topic_alias_maximum = Some(5);
    let mut conn = connected(c, now);
    for d in [small(), large(), small()] {
        conn.deliver(d, 0, now);
    }
    let sent = publishes(conn.take_transmit());
    let seen: Vec<(&str, Option<u16>)> = sent
        .iter()
        .map(|p| {
            (
                p.topic.as_str(),
                p.properties.topic_alias.map(NonZeroU16::get),
            )
        })
        .collect();
    assert_eq!(seen, [("ab", Some(1)), ("ab", None), ("", Some(1))]);
    for p in sent {
        assert!(Packet::Publish(p).encoded_len(Protocol::V5) <= max);
    }
}

// MQTT 5.0 section 3.2.2.3.6: a packet larger than the broker's Maximum Packet Size is
// refused with DISCONNECT 0x95 (Packet too large). The decoder enforces the limit on the
// fixed header, before the body is read; the connection reports it.
#[test]
fn inbound_packet_larger_than_the_brokers_maximum_is_packet_too_large() {
    let now = t0();
    let mut conn = connected(v5("c", 30), now);
    let mut buf = BytesMut::new();
    let mut big = publish("t", QoS::AtMostOnce, None, b"");
    big.payload = Bytes::from(vec![0u8; 100]);
    Packet::Publish(big)
        .encode(Protocol::V5, &mut buf)
        .expect("encodes");
    let mut decoder = Decoder::new(Some(Protocol::V5), 64);
    let error = decoder.decode(&mut buf).expect_err("too large");
    assert_eq!(error.reason_code(), ReasonCode::PACKET_TOO_LARGE);
    conn.handle_decode_error(error);
    assert!(matches!(
        close_reason(&mut conn),
        Some(CloseReason::Violation(v)) if v.reason == ReasonCode::PACKET_TOO_LARGE
    ));
    let sent = conn.take_transmit();
    assert!(matches!(&disconnects(&sent)[..], [d] if d.reason == ReasonCode::PACKET_TOO_LARGE));
}

// ---------------------------------------------------------------------------------------------
// 8. Subscription options (connection side; routing in broker_v5_tests)
// ---------------------------------------------------------------------------------------------

// [MQTT-3.8.3-4]: No Local on a Shared Subscription is a Protocol Error.
#[test]
fn no_local_on_a_shared_subscription_is_a_protocol_error() {
    let now = t0();
    let mut conn = connected(v5("c", 30), now);
    let mut options = SubscriptionOptions::new(QoS::AtLeastOnce);
    options.no_local = true;
    conn.handle_packet(
        Packet::Subscribe(Subscribe::new(
            id(1),
            TopicFilter::from_static("$share/g/t"),
            options,
        )),
        now,
    );
    let Some(CloseReason::Violation(v)) = close_reason(&mut conn) else {
        panic!("not closed");
    };
    assert_eq!(v.reason, ReasonCode::PROTOCOL_ERROR);
    let sent = conn.take_transmit();
    assert!(
        !sent.iter().any(|p| matches!(p, Packet::SubAck(_))),
        "{sent:?}"
    );
    assert!(matches!(&disconnects(&sent)[..], [d] if d.reason == ReasonCode::PROTOCOL_ERROR));
    assert!(conn.session().expect("session").subscriptions.is_empty());
}

// [MQTT-3.3.1-10]: Retain Handling 1 sends retained messages only for a subscription that did
// not exist: the connection tells the broker which subscriptions are new, and keeps the options
// and Subscription Identifier for routing (MQTT 5.0 section 3.8.2.1.2).
#[test]
fn subscribe_reports_whether_each_subscription_is_new() {
    let now = t0();
    let mut conn = connected(v5("c", 30), now);
    let mut options = SubscriptionOptions::new(QoS::AtLeastOnce);
    options.retain_handling = RetainHandling::SendAtSubscribeIfNew;
    options.retain_as_published = true;
    for (n, new) in [(1, true), (2, false)] {
        let mut sub = Subscribe::new(id(n), TopicFilter::from_static("r/#"), options);
        sub.properties.subscription_identifier = SubscriptionId::new(u32::from(n) * 10);
        conn.handle_packet(Packet::Subscribe(sub), now);
        let Some(Event::Subscribe(granted)) = conn.poll_event() else {
            panic!("no subscribe event");
        };
        let [(subscription, is_new)] = &granted[..] else {
            panic!("{granted:?}");
        };
        assert_eq!(*is_new, new);
        assert_eq!(subscription.options, options);
        assert_eq!(subscription.id, SubscriptionId::new(u32::from(n) * 10));
    }
}

// ---------------------------------------------------------------------------------------------
// 10. Will message (connection side; the delay in broker_v5_tests)
// ---------------------------------------------------------------------------------------------

// MQTT 5.0 section 3.1.3.2: the will keeps its properties for when it is published;
// [MQTT-3.1.3-10]: its User Properties in order.
#[test]
fn will_properties_are_kept_for_publication() {
    let now = t0();
    let mut c = v5("c", 30);
    let mut will = Will {
        topic: TopicName::from_static("status/c"),
        payload: Bytes::from_static(b"offline"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Default::default(),
    };
    will.properties.will_delay_interval = Some(30);
    will.properties.payload_format_indicator = Some(PayloadFormat::Utf8);
    will.properties.message_expiry_interval = Some(3600);
    will.properties.content_type = Some(MqttString::from_static("text/plain"));
    will.properties.response_topic = Some(TopicName::from_static("status/reply"));
    will.properties.correlation_data = Some(Bytes::from_static(b"\x00\x01"));
    will.properties.user_properties = vec![
        (MqttString::from_static("b"), MqttString::from_static("2")),
        (MqttString::from_static("a"), MqttString::from_static("1")),
        (MqttString::from_static("b"), MqttString::from_static("3")),
    ];
    c.will = Some(will.clone());
    let mut conn = connected(c, now);
    conn.handle_timeout(now + secs(45));
    assert_eq!(close_reason(&mut conn), Some(CloseReason::KeepAliveTimeout));
    assert!(CloseReason::KeepAliveTimeout.publishes_will());
    assert_eq!(conn.take_will(), Some(will));
}

// [MQTT-3.14.4-3]: DISCONNECT 0x00 discards the will; MQTT 5.0 section 3.14.2.1: 0x04
// (Disconnect with Will Message) asks for it to be published.
#[test]
fn disconnect_with_will_message_keeps_the_will() {
    for (reason, kept) in [
        (ReasonCode::SUCCESS, false),
        (ReasonCode::DISCONNECT_WITH_WILL_MESSAGE, true),
    ] {
        let now = t0();
        let mut c = v5("c", 30);
        c.will = Some(Will {
            topic: TopicName::from_static("w"),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
        });
        let mut conn = connected(c, now);
        conn.handle_packet(Packet::Disconnect(Disconnect::new(reason)), now);
        let close = close_reason(&mut conn).expect("closed");
        assert_eq!(close.publishes_will(), kept);
        assert_eq!(conn.take_will().is_some(), kept);
    }
}

// ---------------------------------------------------------------------------------------------
// 11. Request / response and payload format properties
// ---------------------------------------------------------------------------------------------

fn request_properties() -> PublishProperties {
    let mut p = PublishProperties::default();
    p.payload_format_indicator = Some(PayloadFormat::Utf8);
    p.content_type = Some(MqttString::from_static("application/json"));
    p.response_topic = Some(TopicName::from_static("replies/c1"));
    p.correlation_data = Some(Bytes::from_static(b"\xde\xad\xbe\xef"));
    p.user_properties = vec![
        (MqttString::from_static("z"), MqttString::from_static("1")),
        (MqttString::from_static("a"), MqttString::from_static("2")),
        (MqttString::from_static("z"), MqttString::from_static("3")),
    ];
    p
}

// [MQTT-3.3.2-4], [MQTT-3.3.2-15], [MQTT-3.3.2-16], [MQTT-3.3.2-17], [MQTT-3.3.2-18],
// [MQTT-3.3.2-20]: Payload Format Indicator, Response Topic, Correlation Data, User Properties
// (in order) and Content Type reach the subscriber unaltered.
#[test]
fn request_response_properties_are_forwarded_unaltered() {
    let now = t0();
    let mut publisher = connected(v5("pub", 30), now);
    let mut p = publish("requests/get", QoS::AtLeastOnce, Some(1), b"{\"id\":1}");
    p.properties = request_properties();
    publisher.handle_packet(Packet::Publish(p), now);
    let m = route_one(&mut publisher, true);
    let mut subscriber = connected(v5("sub", 30), now);
    let mut d = Delivery::new(m, QoS::AtLeastOnce, false);
    d.subscription_ids
        .push(SubscriptionId::new(7).expect("valid"));
    subscriber.deliver(d, 0, now);
    let sent = subscriber.take_transmit();
    let [packet] = &sent[..] else {
        panic!("{sent:?}");
    };
    let Packet::Publish(got) = on_the_wire(packet, Protocol::V5) else {
        panic!("not a PUBLISH");
    };
    let mut expected = request_properties();
    expected.subscription_identifiers = vec![SubscriptionId::new(7).expect("valid")];
    assert_eq!(got.properties, expected);
    assert_eq!(&got.payload[..], b"{\"id\":1}");
}

// MQTT 5.0 section 3.3.2.3.2: a PUBLISH whose Payload Format Indicator says UTF-8 but whose
// payload is not may be answered with 0x99 (Payload format invalid): the broker acknowledges
// QoS 1 and 2 with it and does not route the message; a QoS 0 one is dropped silently. The
// connection stays open.
#[test]
fn invalid_utf8_payload_is_payload_format_invalid() {
    let now = t0();
    let mut conn = connected(v5("c", 30), now);
    for (qos, packet_id) in [
        (QoS::AtMostOnce, None),
        (QoS::AtLeastOnce, Some(1)),
        (QoS::ExactlyOnce, Some(2)),
    ] {
        let mut p = publish("t", qos, packet_id, b"\xff\xfe not UTF-8");
        p.properties.payload_format_indicator = Some(PayloadFormat::Utf8);
        conn.handle_packet(Packet::Publish(p), now);
        assert!(conn.poll_event().is_none(), "{qos:?} not routed");
        let sent = conn.take_transmit();
        match qos {
            QoS::AtMostOnce => assert!(sent.is_empty(), "{sent:?}"),
            QoS::AtLeastOnce => assert!(
                matches!(&sent[..], [Packet::PubAck(a)] if a.reason == ReasonCode::PAYLOAD_FORMAT_INVALID),
                "{sent:?}"
            ),
            QoS::ExactlyOnce => assert!(
                matches!(&sent[..], [Packet::PubRec(r)] if r.reason == ReasonCode::PAYLOAD_FORMAT_INVALID),
                "{sent:?}"
            ),
        }
    }
    assert!(!conn.is_closed());
    // Valid UTF-8 with the same indicator is routed.
    let mut p = publish("t", QoS::AtLeastOnce, Some(3), "π ok".as_bytes());
    p.properties.payload_format_indicator = Some(PayloadFormat::Utf8);
    conn.handle_packet(Packet::Publish(p), now);
    route_one(&mut conn, true);
    let sent = conn.take_transmit();
    assert!(matches!(&sent[..], [Packet::PubAck(a)] if a.reason == ReasonCode::SUCCESS));
}

/// What a connection from `connect` answers to an invalid UTF-8 QoS 1 PUBLISH.
fn refusal_to(connect: Connect) -> PubAck {
    let now = t0();
    let mut conn = connected(connect, now);
    let mut p = publish("t", QoS::AtLeastOnce, Some(1), b"\xff not UTF-8");
    p.properties.payload_format_indicator = Some(PayloadFormat::Utf8);
    conn.handle_packet(Packet::Publish(p), now);
    match conn.take_transmit().pop() {
        Some(Packet::PubAck(ack)) => ack,
        other => panic!("a PUBACK, got {other:?}"),
    }
}

// A refusal says why in a Reason String, unless the client set Request Problem Information
// to 0: then no Reason String on anything but PUBLISH, CONNACK and DISCONNECT
// [MQTT-3.1.2-29]; nor when it would take the PUBACK over the client's Maximum Packet Size
// [MQTT-3.4.2-2].
#[test]
fn refusals_carry_a_reason_string_unless_the_client_declined_them() {
    let ack = refusal_to(v5("c", 30));
    assert_eq!(ack.reason, ReasonCode::PAYLOAD_FORMAT_INVALID);
    assert!(
        ack.properties
            .reason_string
            .as_ref()
            .is_some_and(|r| r.as_str().contains("UTF-8")),
        "{ack:?}"
    );

    let mut quiet = v5("c", 30);
    quiet.properties.request_problem_information = Some(false);
    let ack = refusal_to(quiet);
    assert_eq!(ack.reason, ReasonCode::PAYLOAD_FORMAT_INVALID);
    assert_eq!(ack.properties.reason_string, None);

    let mut small = v5("c", 30);
    small.properties.maximum_packet_size = NonZeroU32::new(16);
    let ack = refusal_to(small);
    assert_eq!(ack.reason, ReasonCode::PAYLOAD_FORMAT_INVALID);
    assert_eq!(
        ack.properties.reason_string, None,
        "would not fit in 16 bytes"
    );

    // 3.1.1 has no properties at all.
    let now = t0();
    let mut conn = connected(v311("c", 30), now);
    conn.handle_packet(
        Packet::Publish(publish("t", QoS::AtLeastOnce, Some(1), b"x")),
        now,
    );
    route_one(&mut conn, true);
    let sent = conn.take_transmit();
    assert!(
        matches!(&sent[..], [Packet::PubAck(a)] if a.properties.reason_string.is_none()),
        "{sent:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 12. Server-initiated DISCONNECT
// ---------------------------------------------------------------------------------------------

/// The DISCONNECT a connection of `protocol` sends when `end` ends it.
fn disconnect_on(protocol: Protocol, end: impl FnOnce(&mut Connection, Instant)) -> Vec<Packet> {
    let now = t0();
    let connect = match protocol {
        Protocol::V5 => v5("c", 10),
        _ => v311("c", 10),
    };
    let mut conn = connected(connect, now);
    end(&mut conn, now);
    assert!(conn.is_closed());
    conn.take_transmit()
}

// [MQTT-3.1.4-3]: a client whose session another connection takes over is sent DISCONNECT
// 0x8E (Session taken over); [MQTT-3.14.2-2]: without a Session Expiry Interval.
#[test]
fn takeover_sends_session_taken_over() {
    let sent = disconnect_on(Protocol::V5, |conn, _| conn.take_over());
    let [d] = &disconnects(&sent)[..] else {
        panic!("{sent:?}");
    };
    assert_eq!(d.reason, ReasonCode::SESSION_TAKEN_OVER);
    assert_eq!(d.properties.session_expiry_interval, None);
}

// [MQTT-3.1.2-22]: a client silent for one and a half times its Keep Alive is disconnected;
// MQTT 5.0 section 4.13: a v5 client is told why with 0x8D (Keep Alive timeout).
#[test]
fn keep_alive_timeout_sends_keep_alive_timeout() {
    let sent = disconnect_on(Protocol::V5, |conn, now| {
        conn.handle_packet(Packet::PingReq(PingReq), now + secs(10));
        conn.handle_timeout(now + secs(24));
        assert!(!conn.is_closed(), "the PINGREQ restarted the clock");
        conn.handle_timeout(now + secs(25));
    });
    let [d] = &disconnects(&sent)[..] else {
        panic!("{sent:?}");
    };
    assert_eq!(d.reason, ReasonCode::KEEP_ALIVE_TIMEOUT);
    assert_eq!(d.properties, DisconnectProperties::default());
}

// MQTT 5.0 section 3.14.2.1: a broker shutting down tells v5 clients with 0x8B (Server
// shutting down); the will is not published.
#[test]
fn shutdown_sends_server_shutting_down() {
    let sent = disconnect_on(Protocol::V5, |conn, _| conn.shut_down());
    let [d] = &disconnects(&sent)[..] else {
        panic!("{sent:?}");
    };
    assert_eq!(d.reason, ReasonCode::SERVER_SHUTTING_DOWN);
    assert!(!CloseReason::ServerShutdown.publishes_will());
}

// MQTT 3.1.1 section 3.14: DISCONNECT only goes from client to server; a 3.1.1 client is never
// sent one, whatever ends its connection.
#[test]
fn v311_clients_get_no_disconnect() {
    let takeover = disconnect_on(Protocol::V311, |conn, _| conn.take_over());
    let timeout = disconnect_on(Protocol::V311, |conn, now| {
        conn.handle_timeout(now + secs(15));
    });
    let shutdown = disconnect_on(Protocol::V311, |conn, _| conn.shut_down());
    let violation = disconnect_on(Protocol::V311, |conn, now| {
        conn.handle_packet(Packet::Connect(Box::new(v311("c", 10))), now);
    });
    for sent in [takeover, timeout, shutdown, violation] {
        assert!(sent.is_empty(), "{sent:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// 13. Mixed protocol versions
// ---------------------------------------------------------------------------------------------

// MQTT 3.1.1 section 3.3: a 3.1.1 PUBLISH has no properties: a v5 publisher's message reaches
// a 3.1.1 subscriber with its topic, payload, QoS and flags, and without the properties (nor
// Subscription Identifiers, nor Topic Alias).
#[test]
fn v311_subscriber_gets_a_v5_message_without_properties() {
    let now = t0();
    let mut publisher = connected(v5("pub", 30), now);
    let mut p = publish("requests/get", QoS::AtLeastOnce, Some(1), b"hello");
    p.properties = request_properties();
    p.properties.message_expiry_interval = Some(60);
    publisher.handle_packet(Packet::Publish(p), now);
    let m = route_one(&mut publisher, true);
    let mut subscriber = connected(v311("sub", 30), now);
    let mut d = Delivery::new(m, QoS::AtLeastOnce, false);
    d.subscription_ids
        .push(SubscriptionId::new(3).expect("valid"));
    subscriber.deliver(d, 0, now);
    let sent = subscriber.take_transmit();
    let [packet] = &sent[..] else {
        panic!("{sent:?}");
    };
    let Packet::Publish(got) = on_the_wire(packet, Protocol::V311) else {
        panic!("not a PUBLISH");
    };
    assert!(got.properties.is_empty(), "{:?}", got.properties);
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("requests/get", &b"hello"[..])
    );
    assert_eq!((got.qos, got.packet_id), (QoS::AtLeastOnce, Some(id(1))));
}

// MQTT 5.0 section 3.3.2.3: a 3.1.1 publisher's message has no properties to forward; a v5
// subscriber gets it as a plain v5 PUBLISH.
#[test]
fn v5_subscriber_gets_a_v311_message() {
    let now = t0();
    let mut publisher = connected(v311("pub", 30), now);
    publisher.handle_packet(
        Packet::Publish(publish("a/b", QoS::ExactlyOnce, Some(4), b"old")),
        now,
    );
    let m = route_one(&mut publisher, true);
    assert_eq!(m.origin.as_ref().map(MqttString::as_str), Some("pub"));
    let mut subscriber = connected(v5("sub", 30), now);
    subscriber.deliver(Delivery::new(m, QoS::AtLeastOnce, false), 0, now);
    let sent = subscriber.take_transmit();
    let [packet] = &sent[..] else {
        panic!("{sent:?}");
    };
    let Packet::Publish(got) = on_the_wire(packet, Protocol::V5) else {
        panic!("not a PUBLISH");
    };
    assert!(got.properties.is_empty(), "{:?}", got.properties);
    assert_eq!((got.topic.as_str(), &got.payload[..]), ("a/b", &b"old"[..]));
    assert_eq!(got.qos, QoS::AtLeastOnce);
}

// ---------------------------------------------------------------------------------------------
// 14. No matching subscribers
// ---------------------------------------------------------------------------------------------

// MQTT 5.0 sections 3.4.2.1 and 3.5.2.1: a v5 PUBLISH no subscription matched is acknowledged
// with 0x10 (No matching subscribers), a success code; 3.1.1 has no such code.
#[test]
fn unmatched_publish_is_acknowledged_with_no_matching_subscribers() {
    let now = t0();
    let mut conn = connected(v5("c", 30), now);
    conn.handle_packet(
        Packet::Publish(publish("t", QoS::AtLeastOnce, Some(1), b"x")),
        now,
    );
    route_one(&mut conn, false);
    conn.handle_packet(
        Packet::Publish(publish("t", QoS::ExactlyOnce, Some(2), b"x")),
        now,
    );
    route_one(&mut conn, false);
    conn.handle_packet(
        Packet::Publish(publish("t", QoS::AtLeastOnce, Some(3), b"x")),
        now,
    );
    route_one(&mut conn, true);
    let sent = conn.take_transmit();
    let reasons: Vec<ReasonCode> = sent
        .iter()
        .map(|p| match p {
            Packet::PubAck(a) => a.reason,
            Packet::PubRec(r) => r.reason,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        reasons,
        [
            ReasonCode::NO_MATCHING_SUBSCRIBERS,
            ReasonCode::NO_MATCHING_SUBSCRIBERS,
            ReasonCode::SUCCESS
        ]
    );
    assert!(!ReasonCode::NO_MATCHING_SUBSCRIBERS.is_error());

    let mut old = connected(v311("c", 30), now);
    old.handle_packet(
        Packet::Publish(publish("t", QoS::AtLeastOnce, Some(1), b"x")),
        now,
    );
    route_one(&mut old, false);
    assert_eq!(
        old.take_transmit(),
        vec![Packet::PubAck(PubAck::new(id(1)))]
    );
}

// ---------------------------------------------------------------------------------------------
// 15. AUTH
// ---------------------------------------------------------------------------------------------

// [MQTT-4.12.0-1]: a broker that does not support the Authentication Method a client gave may
// answer CONNACK 0x8C (Bad authentication method), and must close the connection. With no
// method offered (the default, as Mosquitto without plugins), any method is refused, before
// the broker hears of the CONNECT, and the will goes with the refusal.
#[test]
fn authentication_method_is_refused_with_bad_authentication_method() {
    let now = t0();
    let mut c = v5("c", 30);
    c.properties.authentication_method = Some(MqttString::from_static("SCRAM-SHA-256"));
    c.properties.authentication_data = Some(Bytes::from_static(b"client-first"));
    c.will = Some(Will {
        topic: TopicName::from_static("w"),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    });
    let mut conn = Connection::new(ConnectionSettings::default(), now);
    conn.handle_packet(Packet::Connect(Box::new(c)), now);
    let sent = conn.take_transmit();
    assert!(
        matches!(&sent[..], [Packet::ConnAck(a)]
            if a.reason == ReasonCode::BAD_AUTHENTICATION_METHOD
                && !a.session_present
                && a.properties.authentication_method.is_none()),
        "{sent:?}"
    );
    assert_eq!(
        close_reason(&mut conn),
        Some(CloseReason::Refused(ReasonCode::BAD_AUTHENTICATION_METHOD)),
        "closed without reporting the CONNECT"
    );
    assert!(conn.is_closed());
    assert!(conn.take_will().is_none());
}

/// A challenge-response method for the tests: the challenge is `challenge:` and the
/// client's first data; the right answer is `response:` and the same; it names the client
/// `alice` and has a last word, `welcome`.
#[derive(Debug)]
struct Challenge;

#[derive(Debug)]
struct ChallengeExchange {
    expected: Vec<u8>,
}

impl AuthMethod for Challenge {
    fn name(&self) -> &str {
        "TEST-CHALLENGE"
    }

    fn start(
        &self,
        _client_id: &str,
        _username: Option<&str>,
        data: Option<&[u8]>,
    ) -> (Box<dyn AuthExchange>, AuthStep) {
        let nonce = data.unwrap_or_default();
        let expected = [b"response:", nonce].concat();
        let challenge = Bytes::from([b"challenge:", nonce].concat());
        (
            Box::new(ChallengeExchange { expected }),
            AuthStep::Continue(challenge),
        )
    }
}

impl AuthExchange for ChallengeExchange {
    fn step(&mut self, data: Option<&[u8]>) -> AuthStep {
        if data == Some(&self.expected[..]) {
            AuthStep::Success {
                data: Some(Bytes::from_static(b"welcome")),
                username: Some("alice".to_owned()),
            }
        } else {
            AuthStep::Failed(ReasonCode::NOT_AUTHORIZED)
        }
    }
}

fn challenge_settings() -> ConnectionSettings {
    ConnectionSettings {
        auth_methods: AuthMethods::new(vec![Arc::new(Challenge)]),
        ..ConnectionSettings::default()
    }
}

fn auth_packet(reason: ReasonCode, method: &'static str, data: &'static [u8]) -> Packet {
    let mut properties = AuthProperties::default();
    properties.authentication_method = Some(MqttString::from_static(method));
    properties.authentication_data = Some(Bytes::from_static(data));
    Packet::Auth(Auth { reason, properties })
}

/// A connection whose CONNECT named TEST-CHALLENGE with data `n1`; asserts the challenge.
fn challenged(now: Instant) -> Connection {
    let mut c = v5("c", 30);
    c.properties.authentication_method = Some(MqttString::from_static("TEST-CHALLENGE"));
    c.properties.authentication_data = Some(Bytes::from_static(b"n1"));
    let mut conn = Connection::new(challenge_settings(), now);
    conn.handle_packet(Packet::Connect(Box::new(c)), now);
    assert!(
        conn.poll_event().is_none(),
        "CONNECT held back during the exchange"
    );
    let sent = conn.take_transmit();
    assert!(
        matches!(&sent[..], [Packet::Auth(a)]
            if a.reason == ReasonCode::CONTINUE_AUTHENTICATION
                && a.properties.authentication_method.as_ref().map(MqttString::as_str)
                    == Some("TEST-CHALLENGE")
                && a.properties.authentication_data.as_deref() == Some(&b"challenge:n1"[..])),
        "{sent:?}"
    );
    conn
}

// Section 4.12: an offered method runs its exchange with AUTH Continue authentication
// (0x18) packets naming the CONNECT's method [MQTT-4.12.0-5]; on success the broker hears of
// the CONNECT, and the CONNACK names the method [MQTT-4.12.0-5] and carries the method's last
// data. The identity the method established is available to the broker for ACLs.
#[test]
fn enhanced_authentication_exchange_succeeds() {
    let now = t0();
    let mut conn = challenged(now);
    conn.handle_packet(
        auth_packet(
            ReasonCode::CONTINUE_AUTHENTICATION,
            "TEST-CHALLENGE",
            b"response:n1",
        ),
        now,
    );
    assert!(conn.take_transmit().is_empty(), "nothing before CONNACK");
    let Some(Event::Connect(connect)) = conn.poll_event() else {
        panic!("the CONNECT is reported once authenticated");
    };
    assert_eq!(connect.client_id.as_str(), "c");
    let (method, user) = conn.authenticated_by().expect("authenticated by a method");
    assert_eq!((method.as_str(), user), ("TEST-CHALLENGE", Some("alice")));
    let session = Session::new(
        MqttString::from_static("c"),
        Protocol::V5,
        true,
        OutboundLimits::default(),
    );
    conn.accept(session, false, now);
    let sent = conn.take_transmit();
    let [Packet::ConnAck(ack)] = &sent[..] else {
        panic!("a CONNACK: {sent:?}");
    };
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert_eq!(
        ack.properties
            .authentication_method
            .as_ref()
            .map(MqttString::as_str),
        Some("TEST-CHALLENGE")
    );
    assert_eq!(
        ack.properties.authentication_data.as_deref(),
        Some(&b"welcome"[..])
    );
}

// A failed exchange is answered with CONNACK and the method's reason, then the connection
// closes [MQTT-3.2.2-7]; the broker never hears of the CONNECT.
#[test]
fn enhanced_authentication_failure_is_refused_with_its_reason() {
    let now = t0();
    let mut conn = challenged(now);
    conn.handle_packet(
        auth_packet(
            ReasonCode::CONTINUE_AUTHENTICATION,
            "TEST-CHALLENGE",
            b"guess",
        ),
        now,
    );
    let sent = conn.take_transmit();
    assert!(
        matches!(&sent[..], [Packet::ConnAck(a)] if a.reason == ReasonCode::NOT_AUTHORIZED),
        "{sent:?}"
    );
    assert_eq!(
        close_reason(&mut conn),
        Some(CloseReason::Refused(ReasonCode::NOT_AUTHORIZED))
    );
}

// During the exchange only AUTH (or DISCONNECT) may come, with the same method
// [MQTT-4.12.0-5]; anything else is a Protocol Error. The connect timeout still runs.
#[test]
fn enhanced_authentication_is_strict_about_what_comes_during_it() {
    let now = t0();
    let mut conn = challenged(now);
    conn.handle_packet(Packet::PingReq(PingReq), now);
    assert!(matches!(
        close_reason(&mut conn),
        Some(CloseReason::Violation(v)) if v.reason == ReasonCode::PROTOCOL_ERROR
    ));

    let mut conn = challenged(now);
    conn.handle_packet(
        auth_packet(ReasonCode::CONTINUE_AUTHENTICATION, "OTHER", b"response:n1"),
        now,
    );
    assert!(matches!(
        close_reason(&mut conn),
        Some(CloseReason::Violation(v)) if v.reason == ReasonCode::PROTOCOL_ERROR
    ));

    let mut conn = challenged(now);
    conn.handle_timeout(now + secs(3600));
    assert_eq!(close_reason(&mut conn), Some(CloseReason::ConnectTimeout));
}

/// A connection that authenticated with TEST-CHALLENGE and was accepted.
fn authenticated(now: Instant) -> Connection {
    let mut conn = challenged(now);
    conn.handle_packet(
        auth_packet(
            ReasonCode::CONTINUE_AUTHENTICATION,
            "TEST-CHALLENGE",
            b"response:n1",
        ),
        now,
    );
    assert!(matches!(conn.poll_event(), Some(Event::Connect(_))));
    let session = Session::new(
        MqttString::from_static("c"),
        Protocol::V5,
        true,
        OutboundLimits::default(),
    );
    conn.accept(session, false, now);
    conn.take_transmit();
    conn
}

// Section 4.12.1: a connected client re-authenticates with AUTH Re-authenticate (0x19) and
// the same method [MQTT-4.12.1-1]; the exchange runs as at CONNECT and ends with AUTH
// Success. A failed one ends the connection with DISCONNECT and the reason [MQTT-4.12.1-2].
#[test]
fn re_authentication_succeeds_or_disconnects() {
    let now = t0();
    let mut conn = authenticated(now);
    conn.handle_packet(
        auth_packet(ReasonCode::RE_AUTHENTICATE, "TEST-CHALLENGE", b"n2"),
        now,
    );
    let sent = conn.take_transmit();
    assert!(
        matches!(&sent[..], [Packet::Auth(a)]
            if a.reason == ReasonCode::CONTINUE_AUTHENTICATION
                && a.properties.authentication_data.as_deref() == Some(&b"challenge:n2"[..])),
        "{sent:?}"
    );
    // Other packets carry on meanwhile.
    conn.handle_packet(Packet::PingReq(PingReq), now);
    conn.handle_packet(
        auth_packet(
            ReasonCode::CONTINUE_AUTHENTICATION,
            "TEST-CHALLENGE",
            b"response:n2",
        ),
        now,
    );
    let sent = conn.take_transmit();
    assert!(
        matches!(&sent[..], [Packet::PingResp(_), Packet::Auth(a)]
            if a.reason == ReasonCode::SUCCESS
                && a.properties.authentication_data.as_deref() == Some(&b"welcome"[..])),
        "{sent:?}"
    );
    assert!(!conn.is_closed());

    // A wrong answer the second time round.
    conn.handle_packet(
        auth_packet(ReasonCode::RE_AUTHENTICATE, "TEST-CHALLENGE", b"n3"),
        now,
    );
    conn.take_transmit();
    conn.handle_packet(
        auth_packet(
            ReasonCode::CONTINUE_AUTHENTICATION,
            "TEST-CHALLENGE",
            b"nope",
        ),
        now,
    );
    let sent = conn.take_transmit();
    assert_eq!(
        disconnects(&sent)
            .iter()
            .map(|d| d.reason)
            .collect::<Vec<_>>(),
        [ReasonCode::NOT_AUTHORIZED],
        "{sent:?}"
    );
    assert!(conn.is_closed());

    // Another method is a Protocol Error [MQTT-4.12.1-1].
    let mut conn = authenticated(now);
    conn.handle_packet(
        auth_packet(ReasonCode::RE_AUTHENTICATE, "OTHER", b"n2"),
        now,
    );
    assert!(matches!(
        close_reason(&mut conn),
        Some(CloseReason::Violation(v)) if v.reason == ReasonCode::PROTOCOL_ERROR
    ));
}

// A client that named no method in CONNECT may not send AUTH (section 4.12): Protocol Error.
#[test]
fn auth_without_a_method_in_connect_is_a_protocol_error() {
    let now = t0();
    let mut conn = connected(v5("c", 30), now);
    conn.handle_packet(
        auth_packet(ReasonCode::RE_AUTHENTICATE, "TEST-CHALLENGE", b"n"),
        now,
    );
    let sent = conn.take_transmit();
    assert_eq!(
        disconnects(&sent)
            .iter()
            .map(|d| d.reason)
            .collect::<Vec<_>>(),
        [ReasonCode::PROTOCOL_ERROR]
    );
}

// Persistence with a full disk: a message that cannot be stored is refused rather than
// acknowledged. MQTT 5.0 says so with 0x97 Quota exceeded (PUBACK and PUBREC may carry it);
// MQTT 3.1.1 acknowledgements cannot refuse, so the connection is closed instead and the
// client sends the message again later. Either way a QoS 2 message is not held as received:
// sent again, it is routed.
#[test]
fn a_message_that_cannot_be_stored_is_refused_not_acknowledged() {
    for (protocol, connect) in [(Protocol::V5, v5("c", 0)), (Protocol::V311, v311("c", 0))] {
        for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let mut conn = connected(connect.clone(), t0());
            let _ = conn.take_transmit();
            conn.handle_packet(Packet::Publish(publish("t", qos, Some(7), b"x")), t0());
            let Some(Event::Publish { ack, .. }) = conn.poll_event() else {
                panic!("a PUBLISH to route");
            };
            conn.refuse_publish(ack);
            let sent = conn.take_transmit();
            if protocol.is_v5() {
                let reason = match sent.as_slice() {
                    [Packet::PubAck(a)] => a.reason,
                    [Packet::PubRec(r)] => r.reason,
                    other => panic!("one refusing acknowledgement: {other:?}"),
                };
                assert_eq!(reason, ReasonCode::QUOTA_EXCEEDED);
            } else {
                assert!(sent.is_empty(), "no acknowledgement in 3.1.1: {sent:?}");
                assert_eq!(close_reason(&mut conn), Some(CloseReason::Unstorable));
                continue;
            }
            // Sent again, the message is routed again: nothing of it was kept.
            conn.handle_packet(Packet::Publish(publish("t", qos, Some(7), b"x")), t0());
            assert!(
                matches!(conn.poll_event(), Some(Event::Publish { .. })),
                "{protocol:?} {qos:?}"
            );
        }
    }
}
