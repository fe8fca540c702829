//! Persistent sessions (Clean Session 0) and QoS 2's exactly-once delivery, with
//! `mosquitto_sub` and hand-made packets.

use pigeon_test::mqtt::{self, Connect};
use pigeon_test::{Broker, MosquittoSub, RawClient, publish};

const PIGEON: &str = env!("CARGO_BIN_EXE_pigeon");

fn broker() -> Broker {
    Broker::start(pigeon_test::broker_binary(PIGEON), "", &[])
}

/// Connects `id` with Clean Session 0; returns the client and its CONNACK's Session Present.
fn resume(b: &Broker, id: &str) -> (RawClient, bool) {
    let connect = Connect {
        clean_session: false,
        ..Connect::new(id)
    };
    let (c, connack) = RawClient::connect_with(b, &connect);
    let connack = connack.map(|p| p.to_bytes()).unwrap_or_default();
    assert!(
        connack == [0x20, 2, 0, 0] || connack == [0x20, 2, 1, 0],
        "CONNACK accepting {id}: {connack:02x?}; broker log:\n{}",
        b.log()
    );
    (c, connack[2] == 1)
}

/// Asserts nothing else is queued for `c`: a PINGREQ's answer is the next packet.
fn assert_nothing_queued(c: &mut RawClient) {
    c.send(&mqtt::pingreq());
    let next = c.read_packet();
    assert_eq!(
        next.kind(),
        mqtt::PINGRESP,
        "nothing before PINGRESP: {next:02x?}"
    );
}

// A persistent session keeps the subscriptions and queues QoS 1 and 2 messages published
// while the client is away [MQTT-3.1.2-4], [MQTT-3.1.2-5]; on return each arrives exactly
// once. QoS 0 messages are not queued (queue_qos0_messages false, Mosquitto's default).
#[test]
fn persistent_session_with_mosquitto_sub_receives_each_message_once() {
    let b = broker();
    let args = ["-c", "-i", "keeper", "-q", "2", "-t", "ps/#"];
    // -E: subscribe, then disconnect; the session stays.
    let mut first = MosquittoSub::start(&b, &[&args[..], &["-E"]].concat());
    assert_eq!(first.wait_exit(), Some(0), "{}", first.output());

    for n in 1..=5 {
        publish(&b, &["-t", "ps/one", "-q", "1", "-m", &format!("q1 #{n}")]);
        publish(&b, &["-t", "ps/two", "-q", "2", "-m", &format!("q2 #{n}")]);
    }
    publish(&b, &["-t", "ps/zero", "-q", "0", "-m", "not queued"]);

    let back = MosquittoSub::start(&b, &[&args[..], &["-F", "%q %t %p"]].concat());
    // The sentinel goes at QoS 2: libmosquitto hands a QoS 2 message to mosquitto_sub only at
    // PUBREL, so a QoS 1 sentinel could be printed before QoS 2 messages sent ahead of it.
    publish(&b, &["-t", "ps/end", "-q", "2", "-m", "end"]);
    let mut got = back.wait_for_message("2 ps/end end");
    assert_eq!(got.pop().as_deref(), Some("2 ps/end end"));
    // Per topic in order [MQTT-4.6.0-5]; the two topics may interleave.
    let one: Vec<&String> = got.iter().filter(|m| m.contains("ps/one")).collect();
    let two: Vec<&String> = got.iter().filter(|m| m.contains("ps/two")).collect();
    let want_one: Vec<String> = (1..=5).map(|n| format!("1 ps/one q1 #{n}")).collect();
    let want_two: Vec<String> = (1..=5).map(|n| format!("2 ps/two q2 #{n}")).collect();
    assert_eq!(one, want_one.iter().collect::<Vec<_>>(), "all: {got:?}");
    assert_eq!(two, want_two.iter().collect::<Vec<_>>(), "all: {got:?}");
    assert_eq!(
        got.len(),
        10,
        "nothing else, no QoS 0, no duplicates: {got:?}"
    );
}

// Session Present is 1 when a stored session is resumed [MQTT-3.2.2-2], and 0 for a new one
// [MQTT-3.2.2-3]; Clean Session 1 discards the stored session and reports 0 [MQTT-3.1.2-6],
// [MQTT-3.2.2-1]. A resumed session holds what was queued, once.
#[test]
fn session_present_and_queued_messages_with_a_raw_client() {
    let b = broker();
    let (mut c, present) = resume(&b, "resumer");
    assert!(!present, "no session stored yet");
    assert_eq!(c.subscribe(&[("queued/#", 2)]), [2]);
    c.send(&mqtt::disconnect());
    assert!(c.closed().0);

    publish(&b, &["-t", "queued/a", "-q", "1", "-m", "one"]);
    publish(&b, &["-t", "queued/b", "-q", "2", "-m", "two"]);

    let (mut c, present) = resume(&b, "resumer");
    assert!(present, "stored session resumed; broker log:\n{}", b.log());
    let mut got: Vec<(String, Vec<u8>, u8)> = (0..2)
        .map(|_| {
            let p = c.recv_publish_acked();
            (p.topic, p.payload, p.qos)
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("queued/a".to_owned(), b"one".to_vec(), 1),
            ("queued/b".to_owned(), b"two".to_vec(), 2)
        ]
    );
    assert_nothing_queued(&mut c);
    c.send(&mqtt::disconnect());
    assert!(c.closed().0);

    // Everything was acknowledged: nothing comes again.
    let (mut c, present) = resume(&b, "resumer");
    assert!(present);
    assert_nothing_queued(&mut c);
    c.send(&mqtt::disconnect());
    assert!(c.closed().0);

    // Clean Session 1 discards it...
    let mut clean = RawClient::connect_v311(&b, "resumer");
    clean.send(&mqtt::disconnect());
    assert!(clean.closed().0);
    publish(&b, &["-t", "queued/a", "-q", "1", "-m", "lost"]);
    // ...so the next Clean Session 0 connection starts afresh, without subscriptions.
    let (mut c, present) = resume(&b, "resumer");
    assert!(!present, "the clean session discarded the stored one");
    assert_nothing_queued(&mut c);
}

// Messages unacknowledged when the connection dropped are sent again on resumption, QoS 1
// with DUP set, and a QoS 2 message already answered with PUBREC continues with PUBREL, not
// a second PUBLISH [MQTT-4.4.0-1], [MQTT-3.3.1-1].
#[test]
fn unacknowledged_messages_are_resent_on_resumption() {
    let b = broker();
    let (mut c, _) = resume(&b, "forgetful");
    assert_eq!(c.subscribe(&[("resend/#", 2)]), [2]);
    publish(&b, &["-t", "resend/q1", "-q", "1", "-m", "ack me"]);
    let q1 = c.recv_publish();
    assert_eq!((q1.qos, q1.dup), (1, false));
    publish(&b, &["-t", "resend/q2", "-q", "2", "-m", "exactly once"]);
    let q2 = c.recv_publish();
    assert_eq!((q2.qos, q2.dup), (2, false));
    let q2_id = q2.packet_id.expect("QoS 2 has an identifier");
    c.send(&mqtt::ack(mqtt::PUBREC, q2_id));
    assert_eq!(
        c.expect(mqtt::PUBREL).to_bytes(),
        mqtt::ack(mqtt::PUBREL, q2_id)
    );
    // The connection drops: no PUBACK for q1, no PUBCOMP for q2.
    drop(c);

    let (mut c, present) = resume(&b, "forgetful");
    assert!(present);
    let again = c.recv_publish();
    assert_eq!(
        (
            again.topic.as_str(),
            again.payload.as_slice(),
            again.qos,
            again.dup
        ),
        ("resend/q1", &b"ack me"[..], 1, true),
        "QoS 1 resent with DUP"
    );
    assert_eq!(again.packet_id, q1.packet_id);
    c.send(&mqtt::ack(mqtt::PUBACK, again.packet_id.unwrap()));
    assert_eq!(
        c.expect(mqtt::PUBREL).to_bytes(),
        mqtt::ack(mqtt::PUBREL, q2_id),
        "QoS 2 continues with PUBREL"
    );
    c.send(&mqtt::ack(mqtt::PUBCOMP, q2_id));
    assert_nothing_queued(&mut c);
}

// A QoS 2 PUBLISH sent again (DUP) before PUBREL is answered with PUBREC and not delivered a
// second time [MQTT-4.3.3-2]; after PUBREL the identifier can carry a new message.
#[test]
fn qos2_publish_sent_twice_before_pubrel_is_delivered_once() {
    let b = broker();
    let sub = MosquittoSub::start(&b, &["-t", "eo/#", "-q", "2", "-F", "%q %t %p"]);
    let mut c = RawClient::connect_v311(&b, "twice");
    c.send(&mqtt::publish("eo/x", b"once", 2, Some(7), false, false));
    assert_eq!(
        c.expect(mqtt::PUBREC).to_bytes(),
        mqtt::ack(mqtt::PUBREC, 7)
    );
    c.send(&mqtt::publish("eo/x", b"once", 2, Some(7), true, false));
    assert_eq!(
        c.expect(mqtt::PUBREC).to_bytes(),
        mqtt::ack(mqtt::PUBREC, 7)
    );
    // A third time with DUP clear: a client must set DUP on a resend [MQTT-3.3.1-1], but
    // [MQTT-4.3.3-2] asks for PUBREC to any PUBLISH under the identifier until PUBREL, and
    // Pigeon answers it. (Mosquitto 2.0.11 closes the connection here instead.)
    c.send(&mqtt::publish("eo/x", b"once", 2, Some(7), false, false));
    assert_eq!(
        c.expect(mqtt::PUBREC).to_bytes(),
        mqtt::ack(mqtt::PUBREC, 7)
    );
    c.send(&mqtt::ack(mqtt::PUBREL, 7));
    assert_eq!(
        c.expect(mqtt::PUBCOMP).to_bytes(),
        mqtt::ack(mqtt::PUBCOMP, 7)
    );
    // A PUBREL repeated after PUBCOMP (the PUBCOMP was lost, say) is answered with PUBCOMP
    // again.
    c.send(&mqtt::ack(mqtt::PUBREL, 7));
    assert_eq!(
        c.expect(mqtt::PUBCOMP).to_bytes(),
        mqtt::ack(mqtt::PUBCOMP, 7)
    );

    // Identifier 7 is free again: a new message under it is delivered.
    c.send(&mqtt::publish("eo/x", b"new", 2, Some(7), false, false));
    assert_eq!(
        c.expect(mqtt::PUBREC).to_bytes(),
        mqtt::ack(mqtt::PUBREC, 7)
    );
    c.send(&mqtt::ack(mqtt::PUBREL, 7));
    assert_eq!(
        c.expect(mqtt::PUBCOMP).to_bytes(),
        mqtt::ack(mqtt::PUBCOMP, 7)
    );

    // At QoS 2 like the rest: mosquitto_sub prints a QoS 2 message only at PUBREL.
    c.publish("eo/end", b"end", 2, false);
    let got = sub.wait_for_message("2 eo/end end");
    assert_eq!(got, ["2 eo/x once", "2 eo/x new", "2 eo/end end"]);
}

// The same across a reconnection: a publisher with a persistent session that lost its
// connection after PUBREC sends the PUBLISH again with DUP; the broker remembers the
// identifier in the session and does not deliver it twice [MQTT-4.3.3-2], [MQTT-4.4.0-1].
#[test]
fn qos2_publish_resent_after_reconnecting_is_delivered_once() {
    let b = broker();
    let sub = MosquittoSub::start(&b, &["-t", "eo/#", "-q", "2", "-F", "%q %t %p"]);
    let (mut c, _) = resume(&b, "reconnecting-publisher");
    c.send(&mqtt::publish(
        "eo/y",
        b"survives",
        2,
        Some(42),
        false,
        false,
    ));
    assert_eq!(
        c.expect(mqtt::PUBREC).to_bytes(),
        mqtt::ack(mqtt::PUBREC, 42)
    );
    drop(c);

    let (mut c, present) = resume(&b, "reconnecting-publisher");
    assert!(present);
    c.send(&mqtt::publish(
        "eo/y",
        b"survives",
        2,
        Some(42),
        true,
        false,
    ));
    assert_eq!(
        c.expect(mqtt::PUBREC).to_bytes(),
        mqtt::ack(mqtt::PUBREC, 42)
    );
    c.send(&mqtt::ack(mqtt::PUBREL, 42));
    assert_eq!(
        c.expect(mqtt::PUBCOMP).to_bytes(),
        mqtt::ack(mqtt::PUBCOMP, 42)
    );
    c.publish("eo/end", b"end", 2, false);
    let got = sub.wait_for_message("2 eo/end end");
    assert_eq!(got, ["2 eo/y survives", "2 eo/end end"]);
}

// A client that takes over a connected persistent session (same identifier, Clean Session 0)
// gets that session: Session Present 1 [MQTT-3.2.2-2], its subscriptions and what was in
// flight; the old connection is closed [MQTT-3.1.4-2].
#[test]
fn takeover_of_a_persistent_session_keeps_it() {
    let b = broker();
    let (mut old, _) = resume(&b, "roaming");
    assert_eq!(old.subscribe(&[("roam/#", 1)]), [1]);
    publish(&b, &["-t", "roam/a", "-q", "1", "-m", "unacknowledged"]);
    let first = old.recv_publish();
    assert_eq!(first.payload, b"unacknowledged");

    let (mut new, present) = resume(&b, "roaming");
    assert!(present, "the session moved over; broker log:\n{}", b.log());
    assert!(old.closed().0, "old connection closed");
    let again = new.recv_publish_acked();
    assert_eq!(
        (again.payload.as_slice(), again.dup, again.packet_id),
        (&b"unacknowledged"[..], true, first.packet_id),
        "the unacknowledged message is resent with DUP"
    );
    publish(&b, &["-t", "roam/b", "-q", "1", "-m", "after"]);
    let p = new.recv_publish_acked();
    assert_eq!(p.payload, b"after", "the subscription came along");
}

// MQTT 3.1.1 does not say whether a taken-over connection's will is published; Mosquitto's
// behaviour decides (checked against Debian's mosquitto 2.0.11): published when the new
// connection ends the session (Clean Session 1), dropped when it resumes the session.
#[test]
fn takeover_publishes_a_v311_will_only_when_the_session_ends() {
    let b = broker();
    let mut watcher = RawClient::connect_v311(&b, "will-watcher");
    assert_eq!(watcher.subscribe(&[("wills/#", 1)]), [1]);
    let with_will = |id: &'static str, payload: &'static [u8], clean: bool| Connect {
        clean_session: clean,
        will: Some(mqtt::Will {
            topic: "wills/takeover",
            payload,
            qos: 1,
            retain: false,
        }),
        ..Connect::new(id)
    };

    // Resumed: the old connection's will is dropped.
    let (mut old, _) = RawClient::connect_with(&b, &with_will("keeper", b"resumed", false));
    let (_new, present) = resume(&b, "keeper");
    assert!(present, "the session moved over; broker log:\n{}", b.log());
    assert!(old.closed().0, "old connection closed");

    // Ended: the old connection's will is published.
    let (mut old, _) = RawClient::connect_with(&b, &with_will("ender", b"ended", false));
    let (_new, connack) = RawClient::connect_with(&b, &Connect::new("ender"));
    assert_eq!(connack.map(|p| p.to_bytes()), Some(vec![0x20, 2, 0, 0]));
    assert!(old.closed().0, "old connection closed");

    let will = watcher.recv_publish_acked();
    assert_eq!(
        will.payload,
        b"ended",
        "the first will published is the ended session's; broker log:\n{}",
        b.log()
    );
    assert_nothing_queued(&mut watcher);
}
