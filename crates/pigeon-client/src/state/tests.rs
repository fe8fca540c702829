//! Tests of the state machine, with instants chosen by the test.

use std::num::{NonZeroU16, NonZeroU32};

use pigeon_proto::properties::{PublishProperties, SubscribeProperties};
use pigeon_proto::{PacketType, PingResp, PubRel, TopicName};

use super::*;
use crate::clock;

fn id(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

fn topic(text: &str) -> TopicName {
    TopicName::try_from(text).unwrap()
}

fn filter(text: &str) -> TopicFilter {
    TopicFilter::try_from(text).unwrap()
}

fn at(t0: Instant, secs: u64) -> Instant {
    t0 + Duration::from_secs(secs)
}

fn message(qos: QoS, payload: &'static str) -> Publish {
    Publish {
        qos,
        ..Publish::new(topic("t"), payload.as_bytes())
    }
}

/// A PUBLISH as the server sends it.
fn incoming(qos: QoS, packet_id: Option<u16>, payload: &'static str) -> Packet {
    Packet::Publish(Publish {
        qos,
        packet_id: packet_id.map(id),
        ..Publish::new(topic("in"), payload.as_bytes())
    })
}

fn config(protocol: Protocol) -> SessionConfig {
    SessionConfig {
        protocol,
        client_id: MqttString::from_static("c1"),
        ..SessionConfig::default()
    }
}

fn accepted(session_present: bool) -> ConnAck {
    ConnAck {
        session_present,
        ..ConnAck::default()
    }
}

fn transmit(state: &mut ClientState) -> Vec<Packet> {
    std::iter::from_fn(|| state.poll_transmit()).collect()
}

fn events(state: &mut ClientState) -> Vec<Event> {
    std::iter::from_fn(|| state.poll_event()).collect()
}

/// Opens a connection at `now`, checks the CONNECT, answers `ack`, and returns the CONNECT
/// and what was written after CONNACK. Events are left in place.
fn handshake(state: &mut ClientState, now: Instant, ack: ConnAck) -> (Connect, Vec<Packet>) {
    state.connection_opened(now);
    let mut sent = transmit(state);
    assert_eq!(sent.len(), 1, "only CONNECT before CONNACK: {sent:?}");
    let Packet::Connect(connect) = sent.remove(0) else {
        panic!("not a CONNECT");
    };
    state.handle_packet(Packet::ConnAck(ack), now);
    (*connect, transmit(state))
}

/// A connected client with `config`; events are drained.
fn connected(config: SessionConfig, now: Instant) -> ClientState {
    let mut state = ClientState::new(config);
    handshake(&mut state, now, accepted(false));
    events(&mut state);
    state
}

fn sent_publish(packet: &Packet) -> &Publish {
    match packet {
        Packet::Publish(p) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

fn published(events: &[Event]) -> Vec<(RequestId, Option<PacketId>, ReasonCode)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Published { request, outcome } => {
                Some((*request, outcome.packet_id, outcome.reason))
            }
            _ => None,
        })
        .collect()
}

fn failed(events: &[Event]) -> Vec<(RequestId, RequestError)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Failed { request, error } => Some((*request, error.clone())),
            _ => None,
        })
        .collect()
}

fn disconnected(events: &[Event]) -> Option<&DisconnectReason> {
    events.iter().find_map(|e| match e {
        Event::Disconnected(reason) => Some(reason),
        _ => None,
    })
}

// ---------------------------------------------------------------------------------------------
// Connecting
// ---------------------------------------------------------------------------------------------

#[test]
fn connect_then_connack() {
    let t0 = clock::now();
    let mut state = ClientState::new(config(Protocol::V311));
    let (connect, after) = handshake(&mut state, t0, accepted(false));
    assert_eq!(connect.protocol, Protocol::V311);
    assert!(connect.clean_start);
    assert_eq!(connect.keep_alive, 60);
    assert_eq!(connect.client_id, "c1");
    assert!(after.is_empty());
    assert!(state.is_connected());
    let events = events(&mut state);
    assert!(
        matches!(&events[..], [Event::Connected(c)] if !c.session_present),
        "{events:?}"
    );
}

#[test]
fn refused_connack_ends_the_connection() {
    let t0 = clock::now();
    let mut state = ClientState::new(config(Protocol::V311));
    let refusal = ConnAck {
        reason: ReasonCode::NOT_AUTHORIZED,
        ..ConnAck::default()
    };
    handshake(&mut state, t0, refusal.clone());
    assert_eq!(state.status(), Status::Disconnected);
    assert_eq!(
        events(&mut state),
        vec![Event::Disconnected(DisconnectReason::Refused(Box::new(
            refusal
        )))]
    );
}

#[test]
fn connack_must_come_in_time() {
    let t0 = clock::now();
    let mut state = ClientState::new(SessionConfig {
        connect_timeout: Duration::from_secs(5),
        ..config(Protocol::V311)
    });
    state.connection_opened(t0);
    assert_eq!(state.poll_timeout(), Some(at(t0, 5)));
    state.handle_timeout(at(t0, 4));
    assert_eq!(state.status(), Status::Connecting);
    state.handle_timeout(at(t0, 5));
    assert_eq!(
        disconnected(&events(&mut state)),
        Some(&DisconnectReason::ConnectTimeout)
    );
    assert_eq!(state.poll_timeout(), None);
}

// [MQTT-3.2.0-1]: CONNACK comes first. In 5.0 the client says why it closes.
#[test]
fn packet_before_connack_is_a_protocol_error() {
    let t0 = clock::now();
    let mut state = ClientState::new(config(Protocol::V5));
    state.connection_opened(t0);
    transmit(&mut state);
    state.handle_packet(incoming(QoS::AtMostOnce, None, "x"), t0);
    assert_eq!(
        transmit(&mut state),
        vec![Packet::Disconnect(Disconnect::new(
            ReasonCode::PROTOCOL_ERROR
        ))]
    );
    let events = events(&mut state);
    assert!(
        matches!(disconnected(&events), Some(DisconnectReason::ProtocolError(v)) if v.rule == Some("MQTT-3.2.0-1")),
        "{events:?}"
    );
}

// 3.x has no reason codes on DISCONNECT, and a DISCONNECT would suppress the Will: close only.
#[test]
fn protocol_error_in_v311_closes_without_disconnect() {
    let t0 = clock::now();
    let mut state = connected(config(Protocol::V311), t0);
    state.handle_packet(Packet::ConnAck(accepted(false)), t0);
    assert!(transmit(&mut state).is_empty());
    assert!(matches!(
        disconnected(&events(&mut state)),
        Some(DisconnectReason::ProtocolError(v)) if v.rule == Some("MQTT-3.2.0-2")
    ));
}

#[test]
fn decode_error_in_v5_sends_its_reason() {
    let t0 = clock::now();
    let mut state = connected(config(Protocol::V5), t0);
    let error = DecodeError::PacketTooLarge { size: 10, max: 5 };
    state.handle_decode_error(error, t0);
    assert_eq!(
        transmit(&mut state),
        vec![Packet::Disconnect(Disconnect::new(
            ReasonCode::PACKET_TOO_LARGE
        ))]
    );
    assert_eq!(
        disconnected(&events(&mut state)),
        Some(&DisconnectReason::Malformed(error))
    );
}

// [MQTT-3.2.2-2]: Session Present is 0 after Clean Start.
#[test]
fn session_present_after_clean_start_is_refused() {
    let t0 = clock::now();
    let mut state = ClientState::new(config(Protocol::V5));
    handshake(&mut state, t0, accepted(true));
    assert_eq!(state.status(), Status::Disconnected);
    let events = events(&mut state);
    assert!(matches!(
        disconnected(&events),
        Some(DisconnectReason::ProtocolError(v)) if v.rule == Some("MQTT-3.2.2-2")
    ));
}

#[test]
fn server_disconnect_is_reported() {
    let t0 = clock::now();
    let mut state = connected(config(Protocol::V5), t0);
    let d = Disconnect::new(ReasonCode::SESSION_TAKEN_OVER);
    state.handle_packet(Packet::Disconnect(d.clone()), t0);
    assert!(transmit(&mut state).is_empty(), "no answer to DISCONNECT");
    assert_eq!(
        disconnected(&events(&mut state)),
        Some(&DisconnectReason::Server(Box::new(d)))
    );
}

#[test]
fn local_disconnect() {
    let t0 = clock::now();
    let mut state = connected(config(Protocol::V311), t0);
    state
        .disconnect(ReasonCode::NORMAL_DISCONNECTION, Default::default(), t0)
        .unwrap();
    assert_eq!(
        transmit(&mut state),
        vec![Packet::Disconnect(Disconnect::default())]
    );
    assert_eq!(
        events(&mut state),
        vec![Event::Disconnected(DisconnectReason::Local)]
    );
    // Nothing more to do once disconnected.
    state
        .disconnect(ReasonCode::NORMAL_DISCONNECTION, Default::default(), t0)
        .unwrap();
    assert!(transmit(&mut state).is_empty());
    assert!(events(&mut state).is_empty());
}

// [MQTT-3.14.2-2]
#[test]
fn session_expiry_on_disconnect_needs_one_on_connect() {
    let t0 = clock::now();
    let mut state = connected(config(Protocol::V5), t0);
    let mut properties = DisconnectProperties::default();
    properties.session_expiry_interval = Some(30);
    assert_eq!(
        state.disconnect(ReasonCode::NORMAL_DISCONNECTION, properties.clone(), t0),
        Err(RequestError::SessionExpiryNotAllowed)
    );
    assert!(state.is_connected());

    let mut cfg = config(Protocol::V5);
    cfg.properties.session_expiry_interval = Some(10);
    let mut state = connected(cfg, t0);
    state
        .disconnect(ReasonCode::NORMAL_DISCONNECTION, properties, t0)
        .unwrap();
    assert!(!state.is_connected());
}

// ---------------------------------------------------------------------------------------------
// Keep alive
// ---------------------------------------------------------------------------------------------

#[test]
fn keep_alive_pings_then_gives_up() {
    let t0 = clock::now();
    let mut state = connected(
        SessionConfig {
            keep_alive: 10,
            ..config(Protocol::V311)
        },
        t0,
    );
    assert_eq!(state.poll_timeout(), Some(at(t0, 10)));
    state.handle_timeout(at(t0, 9));
    assert!(transmit(&mut state).is_empty());

    state.handle_timeout(at(t0, 10));
    assert_eq!(transmit(&mut state), vec![Packet::PingReq(PingReq)]);
    // The PINGRESP is due one Keep Alive later.
    assert_eq!(state.poll_timeout(), Some(at(t0, 20)));
    state.handle_packet(Packet::PingResp(PingResp), at(t0, 12));
    // Next ping: Keep Alive after the PINGREQ (the last packet sent).
    assert_eq!(state.poll_timeout(), Some(at(t0, 20)));

    state.handle_timeout(at(t0, 20));
    assert_eq!(transmit(&mut state), vec![Packet::PingReq(PingReq)]);
    state.handle_timeout(at(t0, 29));
    assert!(state.is_connected());
    state.handle_timeout(at(t0, 30));
    assert!(transmit(&mut state).is_empty());
    assert_eq!(
        events(&mut state),
        vec![Event::Disconnected(DisconnectReason::KeepAliveTimeout)]
    );
    assert_eq!(state.poll_timeout(), None);
}

#[test]
fn sending_alone_does_not_postpone_the_ping() {
    let t0 = clock::now();
    let mut state = connected(
        SessionConfig {
            keep_alive: 10,
            ..config(Protocol::V311)
        },
        t0,
    );
    for s in [3, 6, 9] {
        state
            .publish(message(QoS::AtMostOnce, "x"), at(t0, s))
            .unwrap();
    }
    assert_eq!(transmit(&mut state).len(), 3);
    // Nothing received since t0: the server may be gone.
    assert_eq!(state.poll_timeout(), Some(at(t0, 10)));
    state.handle_timeout(at(t0, 10));
    assert_eq!(transmit(&mut state), vec![Packet::PingReq(PingReq)]);
}

#[test]
fn receiving_alone_does_not_postpone_the_ping() {
    let t0 = clock::now();
    let mut state = connected(
        SessionConfig {
            keep_alive: 10,
            ..config(Protocol::V311)
        },
        t0,
    );
    state.handle_packet(incoming(QoS::AtMostOnce, None, "x"), at(t0, 8));
    // Nothing sent since t0 [MQTT-3.1.2-23].
    assert_eq!(state.poll_timeout(), Some(at(t0, 10)));
}

#[test]
fn ping_timeout_and_keep_alive_zero() {
    let t0 = clock::now();
    let mut state = connected(
        SessionConfig {
            keep_alive: 10,
            ping_timeout: Some(Duration::from_secs(2)),
            ..config(Protocol::V311)
        },
        t0,
    );
    state.handle_timeout(at(t0, 10));
    assert_eq!(state.poll_timeout(), Some(at(t0, 12)));

    let mut state = connected(
        SessionConfig {
            keep_alive: 0,
            ..config(Protocol::V311)
        },
        t0,
    );
    assert_eq!(state.poll_timeout(), None);
    state.handle_timeout(at(t0, 1000));
    assert!(transmit(&mut state).is_empty());
    // A ping on demand still works.
    assert!(state.ping(at(t0, 1000)));
    assert!(!state.ping(at(t0, 1000)), "one PINGREQ at a time");
    assert_eq!(transmit(&mut state), vec![Packet::PingReq(PingReq)]);
}

// [MQTT-3.2.2-21]
#[test]
fn server_keep_alive_replaces_the_clients() {
    let t0 = clock::now();
    let mut state = ClientState::new(SessionConfig {
        keep_alive: 60,
        ..config(Protocol::V5)
    });
    let mut ack = accepted(false);
    ack.properties.server_keep_alive = Some(5);
    handshake(&mut state, t0, ack);
    assert_eq!(state.keep_alive(), Some(Duration::from_secs(5)));
    assert_eq!(state.poll_timeout(), Some(at(t0, 5)));
}

#[test]
fn paused_reads_suspend_the_pingresp_deadline() {
    let t0 = clock::now();
    let mut state = connected(
        SessionConfig {
            keep_alive: 10,
            ..config(Protocol::V311)
        },
        t0,
    );
    state.handle_timeout(at(t0, 10));
    transmit(&mut state);
    state.set_reads_paused(true, at(t0, 11));
    assert_eq!(state.poll_timeout(), None);
    state.handle_timeout(at(t0, 25));
    assert!(state.is_connected(), "the PINGRESP may be unread");
    state.set_reads_paused(false, at(t0, 40));
    assert_eq!(state.poll_timeout(), Some(at(t0, 50)));
    state.handle_timeout(at(t0, 50));
    assert_eq!(
        disconnected(&events(&mut state)),
        Some(&DisconnectReason::KeepAliveTimeout)
    );
}

// ---------------------------------------------------------------------------------------------
// Outgoing messages
// ---------------------------------------------------------------------------------------------

#[test]
fn qos0_completes_when_written() {
    let t0 = clock::now();
    let mut state = connected(config(Protocol::V311), t0);
    let request = state.publish(message(QoS::AtMostOnce, "a"), t0).unwrap();
    let sent = transmit(&mut state);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent_publish(&sent[0]).packet_id, None);
    assert_eq!(
        published(&events(&mut state)),
        vec![(request, None, ReasonCode::SUCCESS)]
    );
}

#[test]
fn qos1_flow() {
    let t0 = clock::now();
    let mut state = connected(config(Protocol::V311), t0);
    let request = state.publish(message(QoS::AtLeastOnce, "a"), t0).unwrap();
    let sent = transmit(&mut state);
    let p = sent_publish(&sent[0]);
    assert_eq!(
        (p.packet_id, p.dup, p.qos),
        (Some(id(1)), false, QoS::AtLeastOnce)
    );
    assert!(events(&mut state).is_empty());
    assert_eq!(state.inflight_len(), 1);

    state.handle_packet(Packet::PubAck(PubAck::new(id(1))), t0);
    assert_eq!(
        published(&events(&mut state)),
        vec![(request, Some(id(1)), ReasonCode::SUCCESS)]
    );
    assert_eq!(state.inflight_len(), 0);
    // A second PUBACK for the same identifier is ignored.
    state.handle_packet(Packet::PubAck(PubAck::new(id(1))), t0);
    assert!(events(&mut state).is_empty());
}

#[test]
fn qos1_refusal_reason_is_reported() {
    let t0 = clock::now();
    let mut state = connected(config(Protocol::V5), t0);
    let request = state.publish(message(QoS::AtLeastOnce, "a"), t0).unwrap();
    transmit(&mut state);
    let mut ack = PubAck::new(id(1));
    ack.reason = ReasonCode::NOT_AUTHORIZED;
    state.handle_packet(Packet::PubAck(ack), t0);
    assert_eq!(
        published(&events(&mut state)),
        vec![(request, Some(id(1)), ReasonCode::NOT_AUTHORIZED)]
    );
}

#[test]
fn qos2_flow() {
    let t0 = clock::now();
    let mut state = connected(config(Protocol::V311), t0);
    let request = state.publish(message(QoS::ExactlyOnce, "a"), t0).unwrap();
    let sent = transmit(&mut state);
    assert_eq!(sent_publish(&sent[0]).packet_id, Some(id(1)));

    state.handle_packet(Packet::PubRec(PubRec::new(id(1))), t0);
    assert_eq!(
        transmit(&mut state),
        vec![Packet::PubRel(PubRel::new(id(1)))]
    );
    // A repeated PUBREC gets the PUBREL again.
    state.handle_packet(Packet::PubRec(PubRec::new(id(1))), t0);
    assert_eq!(
        transmit(&mut state),
        vec![Packet::PubRel(PubRel::new(id(1)))]
    );
    assert!(events(&mut state).is_empty());
    // PUBACK does not finish a QoS 2 message.
    state.handle_packet(Packet::PubAck(PubAck::new(id(1))), t0);
    assert!(events(&mut state).is_empty());

    state.handle_packet(Packet::PubComp(PubComp::new(id(1))), t0);
    assert_eq!(
        published(&events(&mut state)),
        vec![(request, Some(id(1)), ReasonCode::SUCCESS)]
    );
    assert_eq!(state.inflight_len(), 0);
}

#[test]
fn qos2_pubrec_reasons() {
    let t0 = clock::now();
    let mut state = connected(config(Protocol::V5), t0);
    // 0x10 No matching subscribers is a success, and survives a plain PUBCOMP.
    let first = state.publish(message(QoS::ExactlyOnce, "a"), t0).unwrap();
    // A failing PUBREC ends the exchange without PUBREL.
    let second = state.publish(message(QoS::ExactlyOnce, "b"), t0).unwrap();
    transmit(&mut state);
    let mut rec = PubRec::new(id(1));
    rec.reason = ReasonCode::NO_MATCHING_SUBSCRIBERS;
    state.handle_packet(Packet::PubRec(rec), t0);
    let mut rec = PubRec::new(id(2));
    rec.reason = ReasonCode::QUOTA_EXCEEDED;
    state.handle_packet(Packet::PubRec(rec), t0);
    assert_eq!(
        transmit(&mut state),
        vec![Packet::PubRel(PubRel::new(id(1)))]
    );
    state.handle_packet(Packet::PubComp(PubComp::new(id(1))), t0);
    assert_eq!(
        published(&events(&mut state)),
        vec![
            (second, Some(id(2)), ReasonCode::QUOTA_EXCEEDED),
            (first, Some(id(1)), ReasonCode::NO_MATCHING_SUBSCRIBERS),
        ]
    );
    // An unknown PUBREC is released all the same, saying so in 5.0.
    state.handle_packet(Packet::PubRec(PubRec::new(id(9))), t0);
    let mut rel = PubRel::new(id(9));
    rel.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
    assert_eq!(transmit(&mut state), vec![Packet::PubRel(rel)]);
}

#[test]
fn window_queue_and_backpressure() {
    let t0 = clock::now();
    let mut state = connected(
        SessionConfig {
            max_inflight: 2,
            max_queued: 2,
            ..config(Protocol::V311)
        },
        t0,
    );
    let requests: Vec<RequestId> = (0..4)
        .map(|_| state.publish(message(QoS::AtLeastOnce, "m"), t0).unwrap())
        .collect();
    let sent = transmit(&mut state);
    assert_eq!(sent.len(), 2, "the window holds two");
    assert_eq!((state.inflight_len(), state.queued_len()), (2, 2));
    assert!(!state.can_publish());

    // The fifth is refused and given back.
    let refused = state
        .publish(message(QoS::AtMostOnce, "fifth"), t0)
        .unwrap_err();
    assert_eq!(refused.error, RequestError::QueueFull);
    assert_eq!(refused.publish.payload, "fifth".as_bytes());

    // A PUBACK frees a slot: the oldest queued message goes, under the next identifier.
    state.handle_packet(Packet::PubAck(PubAck::new(id(1))), t0);
    let sent = transmit(&mut state);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent_publish(&sent[0]).packet_id, Some(id(3)));
    assert_eq!(
        published(&events(&mut state)),
        vec![(requests[0], Some(id(1)), ReasonCode::SUCCESS)]
    );
    assert!(state.can_publish());
}

#[test]
fn qos0_waits_behind_queued_messages() {
    let t0 = clock::now();
    let mut state = connected(
        SessionConfig {
            max_inflight: 1,
            ..config(Protocol::V311)
        },
        t0,
    );
    state.publish(message(QoS::AtLeastOnce, "1"), t0).unwrap();
    state.publish(message(QoS::AtLeastOnce, "2"), t0).unwrap();
    state.publish(message(QoS::AtMostOnce, "3"), t0).unwrap();
    assert_eq!(transmit(&mut state).len(), 1);
    state.handle_packet(Packet::PubAck(PubAck::new(id(1))), t0);
    let payloads: Vec<_> = transmit(&mut state)
        .iter()
        .map(|p| sent_publish(p).payload.clone())
        .collect();
    assert_eq!(payloads, ["2".as_bytes(), "3".as_bytes()]);
}

// [MQTT-3.3.4-7]: the server's Receive Maximum lowers the window.
#[test]
fn receive_maximum_limits_the_window() {
    let t0 = clock::now();
    let mut state = ClientState::new(config(Protocol::V5));
    let mut ack = accepted(false);
    ack.properties.receive_maximum = NonZeroU16::new(1);
    handshake(&mut state, t0, ack);
    state.publish(message(QoS::ExactlyOnce, "1"), t0).unwrap();
    state.publish(message(QoS::AtLeastOnce, "2"), t0).unwrap();
    assert_eq!(transmit(&mut state).len(), 1);
    state.handle_packet(Packet::PubRec(PubRec::new(id(1))), t0);
    // PUBREL still counts until PUBCOMP.
    assert_eq!(
        transmit(&mut state),
        vec![Packet::PubRel(PubRel::new(id(1)))]
    );
    state.handle_packet(Packet::PubComp(PubComp::new(id(1))), t0);
    let sent = transmit(&mut state);
    assert_eq!(sent_publish(&sent[0]).payload, "2".as_bytes());
}

// [MQTT-2.2.1-3]: a new identifier is one not in use; SUBSCRIBE shares the space.
#[test]
fn packet_ids_skip_those_in_use_and_reuse_freed_ones() {
    let t0 = clock::now();
    let mut state = connected(config(Protocol::V311), t0);
    for _ in 0..3 {
        state.publish(message(QoS::AtLeastOnce, "m"), t0).unwrap();
    }
    let ids: Vec<_> = transmit(&mut state)
        .iter()
        .map(|p| sent_publish(p).packet_id)
        .collect();
    assert_eq!(ids, [Some(id(1)), Some(id(2)), Some(id(3))]);
    state.handle_packet(Packet::PubAck(PubAck::new(id(2))), t0);

    // As after a wrap from 65535: 1 is in use, 2 is free again, 3 is in use.
    state.outbound.set_next_id(id(1));
    state.publish(message(QoS::AtLeastOnce, "m"), t0).unwrap();
    let sent = transmit(&mut state);
    assert_eq!(sent_publish(&sent[0]).packet_id, Some(id(2)));
    state
        .subscribe(
            vec![(filter("a/#"), SubscriptionOptions::new(QoS::AtLeastOnce))],
            SubscribeProperties::default(),
            t0,
        )
        .unwrap();
    let sent = transmit(&mut state);
    assert!(matches!(&sent[..], [Packet::Subscribe(s)] if s.packet_id == id(4)));

    // The wrap itself: 65535 is followed by 1, which is in use, and 2 (in use), 3, 4 (in
    // use), then 5.
    state.outbound.set_next_id(id(u16::MAX));
    state.publish(message(QoS::AtLeastOnce, "m"), t0).unwrap();
    state.publish(message(QoS::AtLeastOnce, "m"), t0).unwrap();
    let ids: Vec<_> = transmit(&mut state)
        .iter()
        .map(|p| sent_publish(p).packet_id)
        .collect();
    assert_eq!(ids, [Some(id(u16::MAX)), Some(id(5))]);
}

// ---------------------------------------------------------------------------------------------
// Sessions across connections
// ---------------------------------------------------------------------------------------------

/// A persistent 3.1.1 session with, at `t0`: a QoS 1 message in flight (id 1), a QoS 2
/// message past PUBREC (id 2), and one queued behind a window of 2. Returns the requests.
fn session_with_inflight(t0: Instant) -> (ClientState, [RequestId; 3]) {
    let mut state = connected(
        SessionConfig {
            clean_start: false,
            max_inflight: 2,
            ..config(Protocol::V311)
        },
        t0,
    );
    let a = state.publish(message(QoS::AtLeastOnce, "a"), t0).unwrap();
    let b = state.publish(message(QoS::ExactlyOnce, "b"), t0).unwrap();
    let c = state.publish(message(QoS::AtLeastOnce, "c"), t0).unwrap();
    state.handle_packet(Packet::PubRec(PubRec::new(id(2))), t0);
    assert_eq!(transmit(&mut state).len(), 3, "two PUBLISH and a PUBREL");
    (state, [a, b, c])
}

// [MQTT-4.4.0-1], [MQTT-3.3.1-1], [MQTT-4.6.0-1]
#[test]
fn resumed_session_resends_with_dup_in_order() {
    let t0 = clock::now();
    let (mut state, [a, _, c]) = session_with_inflight(t0);
    state.connection_lost(at(t0, 1));
    assert_eq!(
        events(&mut state),
        vec![Event::Disconnected(DisconnectReason::ConnectionLost)]
    );
    // Published while offline: queued.
    let d = state
        .publish(message(QoS::AtMostOnce, "d"), at(t0, 2))
        .unwrap();
    assert!(transmit(&mut state).is_empty());

    let (connect, after) = handshake(&mut state, at(t0, 3), accepted(true));
    assert!(!connect.clean_start);
    let p = sent_publish(&after[0]);
    assert_eq!(
        (p.packet_id, p.dup, &p.payload[..]),
        (Some(id(1)), true, &b"a"[..])
    );
    assert_eq!(after[1], Packet::PubRel(PubRel::new(id(2))));
    assert_eq!(after.len(), 2, "the window is full: c and d wait");
    assert!(
        events(&mut state)
            .iter()
            .all(|e| matches!(e, Event::Connected(_)))
    );

    state.handle_packet(Packet::PubAck(PubAck::new(id(1))), at(t0, 4));
    let sent = transmit(&mut state);
    let p = sent_publish(&sent[0]);
    assert_eq!(
        (p.packet_id, p.dup, &p.payload[..]),
        (Some(id(3)), false, &b"c"[..])
    );
    assert_eq!(sent_publish(&sent[1]).payload, "d".as_bytes());
    assert_eq!(
        published(&events(&mut state)),
        vec![
            (a, Some(id(1)), ReasonCode::SUCCESS),
            (d, None, ReasonCode::SUCCESS)
        ]
    );
    // Lost again with c in flight: it goes out once more, still with DUP.
    state.connection_lost(at(t0, 5));
    let (_, after) = handshake(&mut state, at(t0, 6), accepted(true));
    let p = sent_publish(&after[1]);
    assert_eq!((p.packet_id, p.dup), (Some(id(3)), true));
    let _ = c;
}

// [MQTT-3.2.2-5]: no session on the server, so the client's in-flight state is void; queued
// messages were never sent and go out on the new session.
#[test]
fn session_not_present_discards_inflight_messages() {
    let t0 = clock::now();
    let (mut state, [a, b, c]) = session_with_inflight(t0);
    state.connection_lost(at(t0, 1));
    events(&mut state);
    let (_, after) = handshake(&mut state, at(t0, 2), accepted(false));
    assert_eq!(after.len(), 1);
    let p = sent_publish(&after[0]);
    assert_eq!((&p.payload[..], p.dup), (&b"c"[..], false));
    assert_eq!(p.packet_id, Some(id(3)));
    let events = events(&mut state);
    assert_eq!(
        failed(&events),
        vec![
            (a, RequestError::SessionDiscarded),
            (b, RequestError::SessionDiscarded)
        ]
    );
    assert_eq!(state.inflight_len(), 1);
    let _ = c;
}

// [MQTT-3.1.2-6]: a 3.1.1 Clean Session lasts one connection; the next CONNECT discards it.
#[test]
fn clean_session_reconnect_discards_at_connect() {
    let t0 = clock::now();
    let mut state = connected(config(Protocol::V311), t0);
    let a = state.publish(message(QoS::AtLeastOnce, "a"), t0).unwrap();
    transmit(&mut state);
    state.connection_lost(t0);
    events(&mut state);
    state.connection_opened(at(t0, 1));
    assert_eq!(
        failed(&events(&mut state)),
        vec![(a, RequestError::SessionDiscarded)]
    );
    let sent = transmit(&mut state);
    assert!(matches!(&sent[..], [Packet::Connect(c)] if c.clean_start));
}

// MQTT 3.1 has no Session Present flag: Clean Session 0 means the session is resumed.
#[test]
fn v31_assumes_the_session_is_present_without_clean_session() {
    let t0 = clock::now();
    let mut state = connected(
        SessionConfig {
            clean_start: false,
            ..config(Protocol::V31)
        },
        t0,
    );
    state.publish(message(QoS::AtLeastOnce, "a"), t0).unwrap();
    transmit(&mut state);
    state.connection_lost(t0);
    let (_, after) = handshake(&mut state, t0, accepted(false));
    assert!(sent_publish(&after[0]).dup);
    let events = events(&mut state);
    assert!(matches!(&events[1], Event::Connected(c) if c.session_present));
}

// MQTT 5.0 reconnections ask to resume; the server's assigned identifier is kept.
#[test]
fn v5_reconnects_without_clean_start_under_the_assigned_id() {
    let t0 = clock::now();
    let mut state = ClientState::new(SessionConfig {
        client_id: MqttString::new(),
        ..config(Protocol::V5)
    });
    let mut ack = accepted(false);
    ack.properties.assigned_client_identifier = Some(MqttString::from_static("auto-1"));
    let (first, _) = handshake(&mut state, t0, ack);
    assert!(first.clean_start);
    assert_eq!(first.client_id, "");
    state.connection_lost(t0);
    let (second, _) = handshake(&mut state, t0, accepted(true));
    assert!(!second.clean_start);
    assert_eq!(second.client_id, "auto-1");
    assert_eq!(
        first.properties.topic_alias_maximum,
        Some(DEFAULT_TOPIC_ALIAS_MAXIMUM)
    );
}

#[test]
fn requests_made_offline_or_unanswered_are_sent_on_connect() {
    let t0 = clock::now();
    let mut state = ClientState::new(config(Protocol::V311));
    let sub = state
        .subscribe(
            vec![(filter("a/+"), SubscriptionOptions::new(QoS::ExactlyOnce))],
            SubscribeProperties::default(),
            t0,
        )
        .unwrap();
    assert!(!state.has_transmit());
    let (_, after) = handshake(&mut state, t0, accepted(false));
    assert!(matches!(&after[..], [Packet::Subscribe(s)] if s.packet_id == id(1)));
    // Lost before the SUBACK: asked again on the next connection.
    state.connection_lost(t0);
    let (_, after) = handshake(&mut state, t0, accepted(false));
    assert!(matches!(&after[..], [Packet::Subscribe(s)] if s.packet_id == id(1)));
    events(&mut state);

    let ack = SubAck::new(id(1), vec![ReasonCode::GRANTED_QOS_2]);
    state.handle_packet(Packet::SubAck(ack.clone()), t0);
    assert_eq!(
        events(&mut state),
        vec![Event::Subscribed { request: sub, ack }]
    );

    let unsub = state
        .unsubscribe(vec![filter("a/+")], Default::default(), t0)
        .unwrap();
    assert!(matches!(&transmit(&mut state)[..], [Packet::Unsubscribe(u)] if u.packet_id == id(2)));
    let ack = UnsubAck::new(id(2), vec![]);
    state.handle_packet(Packet::UnsubAck(ack.clone()), t0);
    assert_eq!(
        events(&mut state),
        vec![Event::Unsubscribed {
            request: unsub,
            ack
        }]
    );
    assert_eq!(
        state.subscribe(vec![], SubscribeProperties::default(), t0),
        Err(RequestError::NoTopicFilters)
    );
}

// ---------------------------------------------------------------------------------------------
// The server's limits (MQTT 5.0)
// ---------------------------------------------------------------------------------------------

#[test]
fn server_limits_refuse_messages() {
    let t0 = clock::now();
    let mut state = ClientState::new(config(Protocol::V5));
    // Queued before CONNACK: checked when it leaves the queue.
    let early = state.publish(message(QoS::ExactlyOnce, "q2"), t0).unwrap();
    let mut ack = accepted(false);
    ack.properties.maximum_qos = Some(QoS::AtLeastOnce);
    ack.properties.retain_available = Some(false);
    ack.properties.maximum_packet_size = NonZeroU32::new(64);
    let (_, after) = handshake(&mut state, t0, ack);
    assert!(after.is_empty());
    assert_eq!(
        failed(&events(&mut state)),
        vec![(
            early,
            RequestError::QosNotSupported {
                maximum: QoS::AtLeastOnce
            }
        )]
    );
    // Connected: refused at once.
    let e = state
        .publish(message(QoS::ExactlyOnce, "q2"), t0)
        .unwrap_err();
    assert_eq!(
        e.error,
        RequestError::QosNotSupported {
            maximum: QoS::AtLeastOnce
        }
    );
    let retained = Publish {
        retain: true,
        ..message(QoS::AtMostOnce, "r")
    };
    assert_eq!(
        state.publish(retained, t0).unwrap_err().error,
        RequestError::RetainNotSupported
    );
    let big = Publish {
        qos: QoS::AtLeastOnce,
        ..Publish::new(topic("t"), vec![0u8; 60])
    };
    // 2 (fixed header) + 3 (topic) + 2 (identifier) + 1 (properties) + 60 = 68 bytes.
    assert_eq!(
        state.publish(big, t0).unwrap_err().error,
        RequestError::PacketTooLarge {
            size: 68,
            maximum: 64
        }
    );
    assert!(state.publish(message(QoS::AtLeastOnce, "ok"), t0).is_ok());
}

#[test]
fn topic_aliases_are_not_sent() {
    let t0 = clock::now();
    let mut state = connected(config(Protocol::V5), t0);
    let mut p = message(QoS::AtMostOnce, "x");
    p.properties = PublishProperties::default();
    p.properties.topic_alias = NonZeroU16::new(1);
    assert_eq!(
        state.publish(p, t0).unwrap_err().error,
        RequestError::TopicAliasNotSupported
    );
}

// ---------------------------------------------------------------------------------------------
// Incoming messages
// ---------------------------------------------------------------------------------------------

fn messages(events: &[Event]) -> Vec<&Publish> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(p) => Some(p),
            _ => None,
        })
        .collect()
}

#[test]
fn incoming_qos0_and_qos1() {
    let t0 = clock::now();
    let mut state = connected(config(Protocol::V311), t0);
    state.handle_packet(incoming(QoS::AtMostOnce, None, "zero"), t0);
    assert!(transmit(&mut state).is_empty());
    state.handle_packet(incoming(QoS::AtLeastOnce, Some(7), "one"), t0);
    assert_eq!(
        transmit(&mut state),
        vec![Packet::PubAck(PubAck::new(id(7)))]
    );
    let events = events(&mut state);
    let got: Vec<_> = messages(&events)
        .iter()
        .map(|p| p.payload.clone())
        .collect();
    assert_eq!(got, ["zero".as_bytes(), "one".as_bytes()]);
}

// [MQTT-4.3.3-9]: delivered once, however often it is sent before PUBREL.
#[test]
fn incoming_qos2_is_delivered_once() {
    let t0 = clock::now();
    let mut state = connected(
        SessionConfig {
            clean_start: false,
            ..config(Protocol::V311)
        },
        t0,
    );
    state.handle_packet(incoming(QoS::ExactlyOnce, Some(5), "m"), t0);
    assert_eq!(
        transmit(&mut state),
        vec![Packet::PubRec(PubRec::new(id(5)))]
    );
    assert_eq!(messages(&events(&mut state)).len(), 1);

    let mut again = incoming(QoS::ExactlyOnce, Some(5), "m");
    if let Packet::Publish(p) = &mut again {
        p.dup = true;
    }
    state.handle_packet(again.clone(), t0);
    assert_eq!(
        transmit(&mut state),
        vec![Packet::PubRec(PubRec::new(id(5)))]
    );
    assert!(events(&mut state).is_empty(), "not delivered twice");

    // Across a resumed session too.
    state.connection_lost(t0);
    handshake(&mut state, t0, accepted(true));
    events(&mut state);
    state.handle_packet(again, t0);
    assert_eq!(
        transmit(&mut state),
        vec![Packet::PubRec(PubRec::new(id(5)))]
    );
    assert!(events(&mut state).is_empty());

    state.handle_packet(Packet::PubRel(PubRel::new(id(5))), t0);
    assert_eq!(
        transmit(&mut state),
        vec![Packet::PubComp(PubComp::new(id(5)))]
    );
    // After PUBREL the identifier carries a new message.
    state.handle_packet(incoming(QoS::ExactlyOnce, Some(5), "new"), t0);
    assert_eq!(messages(&events(&mut state)).len(), 1);

    // A new session forgets the held identifier.
    state.connection_lost(t0);
    handshake(&mut state, t0, accepted(false));
    events(&mut state);
    state.handle_packet(incoming(QoS::ExactlyOnce, Some(5), "newer"), t0);
    assert_eq!(messages(&events(&mut state)).len(), 1);
}

#[test]
fn unknown_pubrel_is_completed() {
    let t0 = clock::now();
    let mut state = connected(config(Protocol::V5), t0);
    state.handle_packet(Packet::PubRel(PubRel::new(id(3))), t0);
    let mut comp = PubComp::new(id(3));
    comp.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
    assert_eq!(transmit(&mut state), vec![Packet::PubComp(comp)]);

    let mut state = connected(config(Protocol::V311), t0);
    state.handle_packet(Packet::PubRel(PubRel::new(id(3))), t0);
    assert_eq!(
        transmit(&mut state),
        vec![Packet::PubComp(PubComp::new(id(3)))]
    );
}

// [MQTT-3.3.4-9]
#[test]
fn incoming_qos2_beyond_receive_maximum_is_an_error() {
    let t0 = clock::now();
    let mut cfg = config(Protocol::V5);
    cfg.properties.receive_maximum = NonZeroU16::new(1);
    let mut state = connected(cfg, t0);
    state.handle_packet(incoming(QoS::ExactlyOnce, Some(1), "a"), t0);
    state.handle_packet(incoming(QoS::ExactlyOnce, Some(2), "b"), t0);
    let sent = transmit(&mut state);
    assert_eq!(
        sent.last(),
        Some(&Packet::Disconnect(Disconnect::new(
            ReasonCode::RECEIVE_MAXIMUM_EXCEEDED
        )))
    );
}

fn aliased(topic_text: &str, alias: u16) -> Packet {
    let mut p = Publish::new(
        TopicName::try_from(topic_text).unwrap_or_else(|_| {
            // The empty topic of an aliased PUBLISH only comes from the decoder.
            // PUBLISH QoS 0, empty topic, properties: Topic Alias 1; no payload.
            let bytes = [0x30, 0x06, 0x00, 0x00, 0x03, 0x23, 0x00, 0x01];
            let Ok(Packet::Publish(p)) =
                Packet::decode(Bytes::copy_from_slice(&bytes[..]), Some(Protocol::V5))
            else {
                panic!("aliased PUBLISH vector");
            };
            p.topic
        }),
        &b"x"[..],
    );
    p.properties.topic_alias = NonZeroU16::new(alias);
    Packet::Publish(p)
}

// Section 3.3.2.3.4, [MQTT-3.3.2-7], [MQTT-3.3.2-11].
#[test]
fn incoming_topic_aliases_are_resolved() {
    let t0 = clock::now();
    let mut state = connected(config(Protocol::V5), t0);
    state.handle_packet(aliased("a/b", 3), t0);
    state.handle_packet(aliased("", 3), t0);
    let delivered = events(&mut state);
    let got = messages(&delivered);
    assert_eq!(got.len(), 2);
    for p in got {
        assert_eq!(p.topic, "a/b");
        assert_eq!(p.properties.topic_alias, None);
    }

    // Mappings do not survive the connection.
    state.connection_lost(t0);
    handshake(&mut state, t0, accepted(false));
    let _ = events(&mut state);
    state.handle_packet(aliased("", 3), t0);
    assert_eq!(
        transmit(&mut state),
        vec![Packet::Disconnect(Disconnect::new(
            ReasonCode::PROTOCOL_ERROR
        ))]
    );

    // Above the maximum sent in CONNECT.
    let mut state = connected(config(Protocol::V5), t0);
    state.handle_packet(aliased("a/b", DEFAULT_TOPIC_ALIAS_MAXIMUM + 1), t0);
    assert_eq!(
        transmit(&mut state),
        vec![Packet::Disconnect(Disconnect::new(
            ReasonCode::TOPIC_ALIAS_INVALID
        ))]
    );
    assert!(matches!(
        disconnected(&events(&mut state)),
        Some(DisconnectReason::ProtocolError(v)) if v.rule == Some("MQTT-3.3.2-11")
    ));
}

#[test]
fn packet_types_a_server_does_not_send() {
    let t0 = clock::now();
    let mut state = connected(config(Protocol::V5), t0);
    state.handle_packet(Packet::PingReq(PingReq), t0);
    let sent = transmit(&mut state);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].packet_type(), PacketType::Disconnect);
    assert!(!state.is_connected());
    // Once closed, packets are ignored.
    state.handle_packet(incoming(QoS::AtLeastOnce, Some(1), "late"), t0);
    assert!(transmit(&mut state).is_empty());
}
