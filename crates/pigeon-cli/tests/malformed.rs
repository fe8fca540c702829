//! Hand-made malformed and out-of-order input over raw TCP sockets.
//!
//! Each case checks two things: the offending connection is closed (after the answer the
//! spec asks for, if any), and the broker survives: a client connected before the offence
//! keeps receiving messages afterwards ([`Witness`]).

use std::time::Duration;

use pigeon_test::mqtt::{self, Connect, Will};
use pigeon_test::{Broker, RawClient, Stopwatch};

const PIGEON: &str = env!("CARGO_BIN_EXE_pigeon");

fn broker(config: &str) -> Broker {
    Broker::start(pigeon_test::broker_binary(PIGEON), config, &[])
}

/// A subscriber connected before the misbehaving client; [`Witness::check`] proves the broker
/// still routes messages to it.
struct Witness {
    sub: RawClient,
    count: u32,
}

impl Witness {
    fn new(broker: &Broker) -> Witness {
        let mut sub = RawClient::connect_v311(broker, "witness");
        assert_eq!(sub.subscribe(&[("witness/#", 1)]), [1]);
        Witness { sub, count: 0 }
    }

    /// The broker is running and routes a fresh QoS 1 message to the witness.
    fn check(&mut self, broker: &mut Broker, after: &str) {
        broker.assert_running(after);
        self.count += 1;
        let payload = format!("alive {}", self.count);
        let mut publisher = RawClient::connect_v311(broker, &format!("witness-pub-{}", self.count));
        publisher.publish("witness/alive", payload.as_bytes(), 1, false);
        let got = self.sub.recv_publish_acked();
        assert_eq!(
            (got.topic.as_str(), got.payload.as_slice()),
            ("witness/alive", payload.as_bytes()),
            "witness after {after}; broker log:\n{}",
            broker.log()
        );
    }
}

/// Asserts the broker closes `client`'s connection; returns what it sent before closing.
fn assert_closed(client: &mut RawClient, broker: &Broker, what: &str) -> Vec<u8> {
    let (closed, got) = client.closed();
    assert!(
        closed,
        "{what}: connection not closed (received {got:02x?}); broker log:\n{}",
        broker.log()
    );
    got
}

/// Opens a connection, sends `bytes` and asserts it is closed without a word.
fn assert_rejected_before_connect(broker: &Broker, bytes: &[u8], what: &str) {
    let mut c = RawClient::connect(broker);
    let _ = c.try_send(bytes);
    let got = assert_closed(&mut c, broker, what);
    assert!(
        got.is_empty(),
        "{what}: nothing is answered, got {got:02x?}"
    );
}

/// Connects (id `id`), sends `bytes` and asserts the connection is closed without an answer.
fn assert_rejected_after_connect(broker: &Broker, id: &str, bytes: &[u8], what: &str) {
    let mut c = RawClient::connect_v311(broker, id);
    let _ = c.try_send(bytes);
    let got = assert_closed(&mut c, broker, what);
    assert!(
        got.is_empty(),
        "{what}: nothing is answered, got {got:02x?}"
    );
}

// The Remaining Length is at most four bytes (3.1.1 section 2.2.3); a fifth is malformed, a
// protocol violation that closes the connection [MQTT-4.8.0-1].
#[test]
fn remaining_length_of_five_bytes_closes_the_connection() {
    let mut b = broker("");
    let mut witness = Witness::new(&b);
    assert_rejected_before_connect(
        &b,
        &[0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        "CONNECT with a 5-byte remaining length",
    );
    witness.check(&mut b, "5-byte remaining length before CONNECT");
    assert_rejected_after_connect(
        &b,
        "varint",
        &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        "PUBLISH with a 5-byte remaining length",
    );
    // Continuation bits on every byte, then silence: the fifth byte never comes, but the
    // fourth already says it is malformed. (Mosquitto 2.0.11 waits for a fifth byte.)
    assert_rejected_after_connect(
        &b,
        "varint2",
        &[0x30, 0x80, 0x80, 0x80, 0x80],
        "PUBLISH whose remaining length continues past 4 bytes",
    );
    witness.check(&mut b, "5-byte remaining length after CONNECT");
}

// Reserved fixed-header flags must hold the values of table 2.2; other values close the
// connection [MQTT-2.2.2-1], [MQTT-2.2.2-2].
#[test]
fn reserved_flag_bits_close_the_connection() {
    let mut b = broker("");
    let mut witness = Witness::new(&b);

    // CONNECT's low nibble is reserved (0000) [MQTT-2.2.2-2].
    let connect = Connect {
        first_byte: 0x11,
        ..Connect::new("flags")
    };
    assert_rejected_before_connect(&b, &connect.encode(), "CONNECT with flags 0001");
    // The reserved bit of the Connect Flags must be 0 [MQTT-3.1.2-3].
    let connect = Connect {
        extra_flags: 0x01,
        ..Connect::new("flags")
    };
    assert_rejected_before_connect(&b, &connect.encode(), "CONNECT flags with bit 0 set");
    witness.check(&mut b, "bad CONNECT flags");

    let mut subscribe = mqtt::subscribe(1, &[("a/b", 0)]);
    subscribe[0] = 0x80;
    let mut unsubscribe = mqtt::unsubscribe(1, &["a/b"]);
    unsubscribe[0] = 0xA0;
    let cases: [(&str, Vec<u8>); 6] = [
        // SUBSCRIBE must be 0010 [MQTT-3.8.1-1].
        ("SUBSCRIBE with flags 0000", subscribe),
        // UNSUBSCRIBE must be 0010 [MQTT-3.10.1-1].
        ("UNSUBSCRIBE with flags 0000", unsubscribe),
        // PUBREL must be 0010 [MQTT-3.6.1-1].
        ("PUBREL with flags 0000", vec![0x60, 0x02, 0x00, 0x01]),
        // PINGREQ and DISCONNECT are 0000 [MQTT-2.2.2-2] (Mosquitto 2.0.11 answers this
        // PINGREQ all the same).
        ("PINGREQ with flags 0001", vec![0xC1, 0x00]),
        ("DISCONNECT with flags 1000", vec![0xE8, 0x00]),
        // Both QoS bits set [MQTT-3.3.1-4].
        ("PUBLISH with QoS 3", {
            let mut p = mqtt::publish("a/b", b"x", 1, Some(1), false, false);
            p[0] = 0x36;
            p
        }),
    ];
    for (i, (what, bytes)) in cases.iter().enumerate() {
        assert_rejected_after_connect(&b, &format!("flags-{i}"), bytes, what);
        witness.check(&mut b, what);
    }
}

// A second CONNECT is a protocol violation: the connection closes [MQTT-3.1.0-2]. The close
// is not a DISCONNECT, so the will is published [MQTT-3.1.2-8] (Mosquitto 2.0.11 drops it
// here).
#[test]
fn second_connect_closes_the_connection_and_publishes_the_will() {
    let mut b = broker("");
    let mut witness = Witness::new(&b);
    let mut will_watcher = RawClient::connect_v311(&b, "will-watcher");
    assert_eq!(will_watcher.subscribe(&[("wills/#", 1)]), [1]);

    let connect = Connect {
        will: Some(Will {
            topic: "wills/twice",
            payload: b"connected twice",
            qos: 1,
            retain: false,
        }),
        ..Connect::new("twice")
    };
    let (mut c, connack) = RawClient::connect_with(&b, &connect);
    assert_eq!(connack.map(|p| p.to_bytes()), Some(vec![0x20, 2, 0, 0]));
    c.send(&Connect::new("twice").encode());
    let got = assert_closed(&mut c, &b, "second CONNECT");
    assert!(
        got.is_empty(),
        "no CONNACK for a second CONNECT: {got:02x?}"
    );

    let will = will_watcher.recv_publish_acked();
    assert_eq!(
        (will.topic.as_str(), will.payload.as_slice()),
        ("wills/twice", &b"connected twice"[..])
    );
    witness.check(&mut b, "second CONNECT");
}

// The first packet on a connection must be CONNECT [MQTT-3.1.0-1]; anything else closes it
// unanswered.
#[test]
fn packet_before_connect_closes_the_connection() {
    let mut b = broker("");
    let mut witness = Witness::new(&b);
    let cases: [(&str, Vec<u8>); 5] = [
        ("PINGREQ", mqtt::pingreq()),
        (
            "PUBLISH",
            mqtt::publish("witness/sneaky", b"x", 0, None, false, false),
        ),
        ("SUBSCRIBE", mqtt::subscribe(1, &[("#", 0)])),
        ("DISCONNECT", mqtt::disconnect()),
        ("CONNACK", vec![0x20, 0x02, 0x00, 0x00]),
    ];
    for (what, bytes) in &cases {
        assert_rejected_before_connect(&b, bytes, &format!("{what} before CONNECT"));
    }
    // The PUBLISH before CONNECT was not routed: the next message the witness sees is its
    // own check.
    witness.check(&mut b, "packets before CONNECT");
}

// `max_packet_size` bounds every packet, fixed header included: one byte more closes the
// connection, and a header announcing a huge packet closes it at once, before any body
// arrives (nothing is buffered for it). (Mosquitto 2.0.11 counts the remaining length plus
// one byte, leaving out the remaining length's own bytes, so it lets this 1001-byte packet
// through and refuses from 1003 bytes on.)
#[test]
fn packet_above_max_packet_size_closes_the_connection() {
    let mut b = broker("max_packet_size 1000\n");
    let mut witness = Witness::new(&b);

    // PUBLISH of exactly 1000 bytes: 1 + 2 (remaining length 997) + 2 + 9 ("witness/x") + 2
    // (packet id) + 984 payload.
    let fits = mqtt::publish("witness/x", &[b'a'; 984], 1, Some(1), false, false);
    assert_eq!(fits.len(), 1000);
    let mut c = RawClient::connect_v311(&b, "fits");
    c.send(&fits);
    assert_eq!(
        c.expect(mqtt::PUBACK).to_bytes(),
        mqtt::ack(mqtt::PUBACK, 1)
    );
    let got = witness.sub.recv_publish_acked();
    assert_eq!((got.topic.as_str(), got.payload.len()), ("witness/x", 984));

    let too_big = mqtt::publish("witness/x", &[b'a'; 985], 1, Some(2), false, false);
    assert_eq!(too_big.len(), 1001);
    c.send(&too_big);
    let got = assert_closed(&mut c, &b, "PUBLISH of 1001 bytes");
    assert!(
        got.is_empty(),
        "no PUBACK for a packet over the limit: {got:02x?}"
    );
    witness.check(&mut b, "packet over max_packet_size");

    // A header announcing 2 MiB, and no body: closed without waiting for it.
    let mut c = RawClient::connect_v311(&b, "huge");
    c.send(&[0x30, 0x80, 0x80, 0x80, 0x01]);
    // Closed rather than left waiting for a body that is never sent (`closed` reads until
    // the end of the stream, within the test's patience).
    assert_closed(&mut c, &b, "header announcing 2 MiB");
    witness.check(&mut b, "huge header");
    // The same before CONNECT.
    assert_rejected_before_connect(&b, &[0x10, 0xFF, 0xFF, 0xFF, 0x7F], "CONNECT of 256 MiB");
    witness.check(&mut b, "huge CONNECT");
}

// `message_size_limit` (Mosquitto's older directive) bounds the payload: a larger PUBLISH is
// acknowledged and dropped, and the connection stays open, as Mosquitto does.
#[test]
fn payload_above_message_size_limit_is_acknowledged_and_dropped() {
    let mut b = broker("message_size_limit 500\n");
    let mut witness = Witness::new(&b);
    let mut c = RawClient::connect_v311(&b, "big-payloads");
    c.send(&mqtt::publish(
        "witness/big",
        &[b'x'; 501],
        1,
        Some(1),
        false,
        false,
    ));
    assert_eq!(
        c.expect(mqtt::PUBACK).to_bytes(),
        mqtt::ack(mqtt::PUBACK, 1)
    );
    c.send(&mqtt::publish(
        "witness/big",
        &[b'y'; 501],
        2,
        Some(2),
        false,
        false,
    ));
    assert_eq!(
        c.expect(mqtt::PUBREC).to_bytes(),
        mqtt::ack(mqtt::PUBREC, 2)
    );
    c.send(&mqtt::ack(mqtt::PUBREL, 2));
    assert_eq!(
        c.expect(mqtt::PUBCOMP).to_bytes(),
        mqtt::ack(mqtt::PUBCOMP, 2)
    );
    // Exactly at the limit: delivered.
    c.publish("witness/big", &[b'z'; 500], 1, false);
    let got = witness.sub.recv_publish_acked();
    assert_eq!(got.payload, [b'z'; 500], "the 501-byte ones were dropped");
    c.ping();
    witness.check(&mut b, "payloads over message_size_limit");
}

// A connection that never completes its CONNECT must not hold anything up; the broker drops
// it after its connect timeout (see `half_open_connection_is_dropped_eventually`).
#[test]
fn half_open_connection_does_not_disturb_others() {
    let mut b = broker("");
    let mut witness = Witness::new(&b);
    let mut partial = RawClient::connect(&b);
    partial.send(&Connect::new("partial").encode()[..7]);
    let mut silent = RawClient::connect(&b);
    partial.set_read_timeout(Duration::from_millis(500));
    silent.set_read_timeout(Duration::from_millis(500));
    for round in 0..3 {
        witness.check(&mut b, &format!("half-open connections, round {round}"));
    }
    let (closed, got) = partial.closed();
    assert!(
        !closed && got.is_empty(),
        "not dropped within a second: {got:02x?}"
    );
    let (closed, _) = silent.closed();
    assert!(!closed, "not dropped within a second");
}

// Pigeon closes a connection that has not completed CONNECT `connect_timeout` seconds (a
// Pigeon directive, default 60) after it was accepted; Mosquitto 2.0.11 closes such
// connections after about 90 s. The test shortens the timeout to 2 s.
#[test]
fn half_open_connection_is_dropped_after_connect_timeout() {
    let mut b = broker("connect_timeout 2\n");
    let mut witness = Witness::new(&b);
    let mut partial = RawClient::connect(&b);
    partial.send(&Connect::new("partial").encode()[..7]);
    let mut silent = RawClient::connect(&b);
    partial.set_read_timeout(Duration::from_secs(20));
    silent.set_read_timeout(Duration::from_secs(20));
    assert_closed(&mut partial, &b, "partial CONNECT");
    assert_closed(&mut silent, &b, "silent connection");
    witness.check(&mut b, "connect timeout");
}

// A protocol name other than "MQTT" (or 3.1's "MQIsdp"): the broker may close the connection
// and must not go on as an MQTT 3.1.1 server [MQTT-3.1.2-1]. Mosquitto closes it without a
// CONNACK; so does Pigeon.
#[test]
fn wrong_protocol_name_closes_the_connection() {
    let mut b = broker("");
    let mut witness = Witness::new(&b);
    for name in [&b"MQTX"[..], b"mqtt", b"", b"MQTT\0"] {
        let connect = Connect {
            protocol_name: name,
            ..Connect::new("wrong-name")
        };
        assert_rejected_before_connect(&b, &connect.encode(), &format!("protocol name {name:?}"));
    }
    witness.check(&mut b, "wrong protocol names");
}

// An unsupported Protocol Level gets CONNACK 0x01 (unacceptable protocol level), then the
// connection is closed [MQTT-3.1.2-2]; likewise a level that does not go with the name
// ("MQTT" is 4 or 5, "MQIsdp" is 3), as Mosquitto answers.
#[test]
fn unacceptable_protocol_level_gets_connack_1_and_close() {
    let mut b = broker("");
    let mut witness = Witness::new(&b);
    let cases: [(&[u8], u8); 6] = [
        (b"MQTT", 0),
        (b"MQTT", 2),
        (b"MQTT", 6),
        (b"MQTT", 255),
        (b"MQTT", 3),
        (b"MQIsdp", 4),
    ];
    for (name, level) in cases {
        let what = format!("{} level {level}", String::from_utf8_lossy(name));
        let connect = Connect {
            protocol_name: name,
            level,
            ..Connect::new("level")
        };
        let (mut c, connack) = RawClient::connect_with(&b, &connect);
        assert_eq!(
            connack.map(|p| p.to_bytes()),
            Some(vec![0x20, 0x02, 0x00, 0x01]),
            "{what}: CONNACK 0x01; broker log:\n{}",
            b.log()
        );
        assert_closed(&mut c, &b, &what);
    }
    witness.check(&mut b, "unacceptable protocol levels");
}

// A zero-byte Client Identifier with Clean Session 0 gets CONNACK 0x02 (identifier rejected),
// then the connection is closed [MQTT-3.1.3-8]; with Clean Session 1 the broker assigns an
// identifier and accepts it [MQTT-3.1.3-6].
#[test]
fn empty_client_id_needs_clean_session() {
    let mut b = broker("");
    let mut witness = Witness::new(&b);
    let connect = Connect {
        clean_session: false,
        ..Connect::new("")
    };
    let (mut c, connack) = RawClient::connect_with(&b, &connect);
    assert_eq!(
        connack.map(|p| p.to_bytes()),
        Some(vec![0x20, 0x02, 0x00, 0x02]),
        "CONNACK 0x02; broker log:\n{}",
        b.log()
    );
    assert_closed(&mut c, &b, "empty client id with clean session 0");
    witness.check(&mut b, "empty client id, clean session 0");

    let mut c = RawClient::connect_v311(&b, "");
    assert_eq!(c.subscribe(&[("witness/#", 0)]), [0]);
    c.ping();
    witness.check(&mut b, "empty client id, clean session 1");
}

// Strings must be well-formed UTF-8 without U+0000 [MQTT-1.5.3-1], [MQTT-1.5.3-2], and a
// PUBLISH topic must not hold wildcards [MQTT-3.3.2-2]; a SUBSCRIBE needs at least one filter
// [MQTT-3.8.3-3] with a QoS of 0, 1 or 2 [MQTT-3-8.3-4]. Each closes the connection.
#[test]
fn malformed_contents_close_the_connection() {
    let mut b = broker("");
    let mut witness = Witness::new(&b);
    let mut bad_utf8 = mqtt::publish("witness/\u{e9}", b"x", 0, None, false, false);
    // Make the two-byte é into an invalid sequence (0xC3 0x28).
    let pos = bad_utf8.iter().position(|&x| x == 0xC3).expect("é");
    bad_utf8[pos + 1] = 0x28;
    let cases: [(&str, Vec<u8>); 6] = [
        ("PUBLISH topic with invalid UTF-8", bad_utf8),
        (
            "PUBLISH topic with U+0000",
            mqtt::publish("witness/\0", b"x", 0, None, false, false),
        ),
        (
            "PUBLISH topic with +",
            mqtt::publish("witness/+", b"x", 0, None, false, false),
        ),
        (
            "PUBLISH topic with #",
            mqtt::publish("witness/#", b"x", 0, None, false, false),
        ),
        (
            "SUBSCRIBE without filters",
            mqtt::packet(0x82, &[0x00, 0x01]),
        ),
        (
            "SUBSCRIBE with QoS 3",
            mqtt::subscribe(1, &[("witness/#", 3)]),
        ),
    ];
    for (i, (what, bytes)) in cases.iter().enumerate() {
        assert_rejected_after_connect(&b, &format!("contents-{i}"), bytes, what);
    }
    // None of the bad PUBLISH packets was routed.
    witness.check(&mut b, "malformed contents");
}

// A client silent for one and a half times its Keep Alive is disconnected [MQTT-3.1.2-24],
// and since it did not send DISCONNECT its will is published [MQTT-3.1.2-8]. A client that
// keeps pinging stays.
#[test]
fn keep_alive_expiry_closes_the_connection_and_publishes_the_will() {
    let mut b = broker("");
    let mut witness = Witness::new(&b);
    let mut will_watcher = RawClient::connect_v311(&b, "will-watcher");
    assert_eq!(will_watcher.subscribe(&[("wills/#", 1)]), [1]);
    let connect = |id| Connect {
        keep_alive: 1,
        will: Some(Will {
            topic: "wills/silent",
            payload: b"timed out",
            qos: 1,
            retain: false,
        }),
        ..Connect::new(id)
    };
    let (mut silent, connack) = RawClient::connect_with(&b, &connect("silent"));
    assert_eq!(connack.map(|p| p.to_bytes()), Some(vec![0x20, 2, 0, 0]));
    let (mut pinging, connack) = RawClient::connect_with(&b, &connect("pinging"));
    assert_eq!(connack.map(|p| p.to_bytes()), Some(vec![0x20, 2, 0, 0]));
    let started = Stopwatch::start();
    // The pinging client pings every half second meanwhile (Pigeon closes the silent one
    // after 1.5 s; Mosquitto, which checks keep alive on a coarser clock, may take longer).
    while started.elapsed() < Duration::from_millis(2000) {
        pinging.ping();
        std::thread::sleep(Duration::from_millis(500));
    }
    silent.set_read_timeout(Duration::from_secs(3));
    assert_closed(&mut silent, &b, "silent for 1.5 x keep alive");
    let will = will_watcher.recv_publish_acked();
    assert_eq!(
        (will.topic.as_str(), will.payload.as_slice()),
        ("wills/silent", &b"timed out"[..])
    );
    pinging.ping();
    witness.check(&mut b, "keep alive expiry");
}
