//! The broker driven by Debian's `mosquitto_pub` and `mosquitto_sub` (mosquitto-clients 2.0),
//! as a Mosquitto user would drive it.
//!
//! Absence of a message is never waited for with a timeout: each test publishes a sentinel
//! after the messages that must not arrive, on the same or a later connection, and checks
//! what arrived before it.

use pigeon_test::mqtt::{self, Connect};
use pigeon_test::{Broker, MosquittoSub, RawClient, mosquitto_pub, publish, publish_stdin};

const PIGEON: &str = env!("CARGO_BIN_EXE_pigeon");

fn broker(config: &str) -> Broker {
    Broker::start(pigeon_test::broker_binary(PIGEON), config, &[])
}

// QoS 0, 1 and 2 each deliver every message; mosquitto_sub -C n exits after n.
#[test]
fn delivers_at_qos_0_1_and_2() {
    let b = broker("");
    let mut subs: Vec<MosquittoSub> = (0..=2)
        .map(|qos| {
            let q = qos.to_string();
            let topic = format!("qos/{qos}");
            MosquittoSub::start(&b, &["-t", &topic, "-q", &q, "-C", "3", "-F", "%q %t %p"])
        })
        .collect();
    for qos in 0..=2 {
        let q = qos.to_string();
        let topic = format!("qos/{qos}");
        for n in 1..=3 {
            publish(&b, &["-t", &topic, "-q", &q, "-m", &format!("message {n}")]);
        }
    }
    for (qos, sub) in subs.iter_mut().enumerate() {
        assert_eq!(sub.wait_exit(), Some(0), "{}", sub.output());
        let want: Vec<String> = (1..=3)
            .map(|n| format!("{qos} qos/{qos} message {n}"))
            .collect();
        assert_eq!(sub.messages(), want);
    }
}

// Retained messages: stored [MQTT-3.3.1-5] and sent to new subscribers with RETAIN 1
// [MQTT-3.3.1-6], [MQTT-3.3.1-8]; a new one replaces the old [MQTT-3.3.1-7]; existing
// subscribers get them with RETAIN 0 [MQTT-3.3.1-9]; an empty retained message (-r -n) is
// delivered as usual and clears the topic [MQTT-3.3.1-10], [MQTT-3.3.1-11].
#[test]
fn retained_messages_are_stored_replaced_and_cleared() {
    let b = broker("");
    let live = MosquittoSub::start(&b, &["-t", "r/#", "-F", "%r|%t|%p"]);
    publish(&b, &["-t", "r/a", "-m", "v1", "-r", "-q", "1"]);
    publish(&b, &["-t", "r/b", "-m", "other", "-r"]);

    // A new subscriber gets both, with RETAIN set, before anything live.
    let fresh = |expected: &[&str]| {
        let mut sub = MosquittoSub::start(&b, &["-t", "r/#", "-F", "%r|%t|%p"]);
        publish(&b, &["-t", "r/end", "-m", "end"]);
        let got = sub.wait_for_message("0|r/end|end");
        let (retained, live) = got.split_at(got.len() - 1);
        let mut retained = retained.to_vec();
        retained.sort();
        assert_eq!(retained, expected, "retained part of {got:?}");
        assert_eq!(live, ["0|r/end|end"]);
        sub.process().kill();
    };
    fresh(&["1|r/a|v1", "1|r/b|other"]);

    publish(&b, &["-t", "r/a", "-m", "v2", "-r", "-q", "2"]);
    fresh(&["1|r/a|v2", "1|r/b|other"]);

    // -r -n: a zero-length retained message clears r/a.
    publish(&b, &["-t", "r/a", "-r", "-n"]);
    fresh(&["1|r/b|other"]);
    publish(&b, &["-t", "r/b", "-r", "-n"]);
    fresh(&[]);

    // The subscriber that was there all along got every publication live, RETAIN 0, the
    // clearing ones included, and no retained copies.
    let got = live.wait_for_messages(9);
    assert_eq!(
        got,
        [
            "0|r/a|v1",
            "0|r/b|other",
            "0|r/end|end",
            "0|r/a|v2",
            "0|r/end|end",
            "0|r/a|",
            "0|r/end|end",
            "0|r/b|",
            "0|r/end|end",
        ]
    );
}

// -v prints "topic payload"; a retained message arrives that way on subscribe too.
#[test]
fn retained_message_with_verbose_output() {
    let b = broker("");
    publish(&b, &["-t", "sensors/temp", "-m", "21.5", "-r"]);
    let mut sub = MosquittoSub::start(&b, &["-t", "sensors/+", "-v", "-C", "1"]);
    assert_eq!(sub.wait_exit(), Some(0), "{}", sub.output());
    assert_eq!(sub.messages(), ["sensors/temp 21.5"]);
}

// mosquitto_pub -l sends each line of its standard input as a message, in order.
#[test]
fn line_mode_publishes_each_line() {
    let b = broker("");
    let mut sub = MosquittoSub::start(&b, &["-t", "lines", "-q", "1", "-C", "4"]);
    publish_stdin(
        &b,
        &["-t", "lines", "-l", "-q", "1"],
        b"first line\nsecond line\n  indented third\nfourth, last\n",
    );
    assert_eq!(sub.wait_exit(), Some(0), "{}", sub.output());
    assert_eq!(
        sub.messages(),
        [
            "first line",
            "second line",
            "  indented third",
            "fourth, last"
        ]
    );
}

/// Starts a subscriber to `filter` and to the sentinel topic `done`.
fn sub_with_sentinel(b: &Broker, filter: &str) -> MosquittoSub {
    MosquittoSub::start(b, &["-t", filter, "-t", "done", "-F", "%t"])
}

/// Waits for the sentinel and returns the topics received before it.
fn topics_before_sentinel(sub: &MosquittoSub) -> Vec<String> {
    let mut got = sub.wait_for_message("done");
    assert_eq!(got.pop().as_deref(), Some("done"), "sentinel last: {got:?}");
    got
}

// `+` matches exactly one level, `#` any number including none (3.1.1 section 4.7.1).
#[test]
fn wildcards_match_levels() {
    let b = broker("");
    let filters = [
        "sport/tennis/+",
        "sport/#",
        "+/+",
        "+",
        "#",
        "sport/+/player1",
        "/+",
        "sport/tennis/player1/#",
    ];
    let subs: Vec<MosquittoSub> = filters.iter().map(|f| sub_with_sentinel(&b, f)).collect();
    let topics = [
        "sport",
        "sport/tennis",
        "sport/tennis/player1",
        "sport/tennis/player2",
        "sport/golf/player1",
        "sport/tennis/player1/ranking",
        "/finance",
        "finance",
    ];
    for t in topics {
        publish(&b, &["-t", t, "-m", "x", "-q", "1"]);
    }
    publish(&b, &["-t", "done", "-m", "x", "-q", "1"]);
    let expected: [&[&str]; 8] = [
        &["sport/tennis/player1", "sport/tennis/player2"],
        &[
            "sport",
            "sport/tennis",
            "sport/tennis/player1",
            "sport/tennis/player2",
            "sport/golf/player1",
            "sport/tennis/player1/ranking",
        ],
        &["sport/tennis", "/finance"],
        &["sport", "finance"],
        &topics,
        &["sport/tennis/player1", "sport/golf/player1"],
        &["/finance"],
        &["sport/tennis/player1", "sport/tennis/player1/ranking"],
    ];
    for ((filter, sub), want) in filters.iter().zip(&subs).zip(expected) {
        assert_eq!(topics_before_sentinel(sub), want, "filter {filter}");
    }
}

// Topic filters starting with a wildcard do not match topic names starting with `$`
// [MQTT-4.7.2-1]; a filter that starts with the `$` level does. `$SYS` is the broker's: a
// client's PUBLISH there is dropped.
#[test]
fn dollar_topics_are_not_matched_by_leading_wildcards() {
    let b = broker("");
    let hash = sub_with_sentinel(&b, "#");
    let plus = sub_with_sentinel(&b, "+/info");
    let plus_hash = sub_with_sentinel(&b, "+/#");
    let dollar = sub_with_sentinel(&b, "$private/#");
    let dollar_plus = sub_with_sentinel(&b, "$private/+");
    let sys = sub_with_sentinel(&b, "$SYS/pigeon-test/#");
    publish(&b, &["-t", "$private/info", "-m", "secret", "-q", "1"]);
    // Clients cannot publish under $SYS, the broker's own topics (Mosquitto acknowledges such
    // a PUBLISH and drops it).
    publish(
        &b,
        &["-t", "$SYS/pigeon-test/spoof", "-m", "fake", "-q", "1"],
    );
    publish(&b, &["-t", "public/info", "-m", "hello", "-q", "1"]);
    publish(&b, &["-t", "done", "-m", "x", "-q", "1"]);
    assert_eq!(topics_before_sentinel(&hash), ["public/info"]);
    assert_eq!(topics_before_sentinel(&plus), ["public/info"]);
    assert_eq!(topics_before_sentinel(&plus_hash), ["public/info"]);
    assert_eq!(topics_before_sentinel(&dollar), ["$private/info"]);
    assert_eq!(topics_before_sentinel(&dollar_plus), ["$private/info"]);
    assert!(topics_before_sentinel(&sys).is_empty());
    // Whatever the broker itself publishes under $SYS, `#` never shows it.
    assert!(
        hash.messages().iter().all(|t| !t.starts_with('$')),
        "{:?}",
        hash.messages()
    );
}

// A client whose subscriptions overlap gets a matching message once, at the highest QoS of
// the matching subscriptions [MQTT-3.3.5-1]. (Mosquitto 2.0.11 also sends one copy to a 3.1.1
// client, but at the QoS of whichever matching subscription it meets first: `first` arrives
// at QoS 1 there.)
#[test]
fn overlapping_subscriptions_deliver_once_at_the_highest_qos() {
    let b = broker("");
    let mut c = RawClient::connect_v311(&b, "overlap");
    assert_eq!(
        c.subscribe(&[("ov/#", 0), ("ov/+", 2), ("ov/a", 1)]),
        [0, 2, 1]
    );
    publish(&b, &["-t", "ov/a", "-q", "2", "-m", "first"]);
    publish(&b, &["-t", "ov/a", "-q", "1", "-m", "second"]);
    publish(&b, &["-t", "ov/b/c", "-q", "2", "-m", "third"]);
    publish(&b, &["-t", "ov/end", "-q", "0", "-m", "end"]);
    let mut got = Vec::new();
    loop {
        let p = c.recv_publish_acked();
        let done = p.topic == "ov/end";
        got.push((p.topic, String::from_utf8(p.payload).unwrap(), p.qos));
        if done {
            break;
        }
    }
    let want = [
        ("ov/a", "first", 2),
        ("ov/a", "second", 1),
        ("ov/b/c", "third", 0),
        ("ov/end", "end", 0),
    ];
    let want: Vec<(String, String, u8)> = want
        .iter()
        .map(|(t, p, q)| ((*t).to_owned(), (*p).to_owned(), *q))
        .collect();
    assert_eq!(got, want);
}

// A message is delivered at the lower of its QoS and the subscription's [MQTT-3.8.4-6]; never
// upgraded (upgrade_outgoing_qos is off by default).
#[test]
fn qos_is_downgraded_to_the_subscription() {
    let b = broker("");
    let mut subs: Vec<MosquittoSub> = (0..=2)
        .map(|q| {
            MosquittoSub::start(
                &b,
                &["-t", "down", "-q", &q.to_string(), "-C", "3", "-F", "%q %p"],
            )
        })
        .collect();
    for published in ["2", "1", "0"] {
        publish(
            &b,
            &[
                "-t",
                "down",
                "-q",
                published,
                "-m",
                &format!("at {published}"),
            ],
        );
    }
    // Sorted: mosquitto_sub prints a QoS 2 message only at PUBREL, so with mixed QoS the
    // printed order need not be the order of delivery.
    let want: [&[&str]; 3] = [
        &["0 at 0", "0 at 1", "0 at 2"],
        &["0 at 0", "1 at 1", "1 at 2"],
        &["0 at 0", "1 at 1", "2 at 2"],
    ];
    for (sub, want) in subs.iter_mut().zip(want) {
        assert_eq!(sub.wait_exit(), Some(0), "{}", sub.output());
        let mut got = sub.messages();
        got.sort();
        assert_eq!(got, want);
    }
}

// After UNSUBACK the broker stops sending the unsubscribed filter's messages
// [MQTT-3.10.4-2], [MQTT-3.10.4-4]; other subscriptions stay.
#[test]
fn unsubscribe_stops_delivery() {
    let b = broker("");
    let mut c = RawClient::connect_v311(&b, "unsub");
    assert_eq!(c.subscribe(&[("u/a", 1), ("u/b", 1)]), [1, 1]);
    publish(&b, &["-t", "u/a", "-q", "1", "-m", "before"]);
    let p = c.recv_publish_acked();
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice()),
        ("u/a", &b"before"[..])
    );
    c.unsubscribe(&["u/a"]);
    // Unsubscribing from a filter that is not subscribed still gets UNSUBACK [MQTT-3.10.4-5].
    c.unsubscribe(&["u/never"]);
    publish(&b, &["-t", "u/a", "-q", "1", "-m", "after"]);
    publish(&b, &["-t", "u/b", "-q", "1", "-m", "still"]);
    let p = c.recv_publish_acked();
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice()),
        ("u/b", &b"still"[..])
    );
}

// mosquitto_sub -U removes a subscription from a persistent session: messages published
// afterwards are not queued for the client.
#[test]
fn unsubscribe_with_mosquitto_sub_u_from_a_persistent_session() {
    let b = broker("");
    let mut sub = MosquittoSub::start(
        &b,
        &[
            "-c", "-i", "unsub-u", "-q", "1", "-t", "pu/a", "-t", "pu/b", "-E",
        ],
    );
    assert_eq!(sub.wait_exit(), Some(0), "{}", sub.output());
    let mut unsub = MosquittoSub::spawn(
        &b,
        &[
            "-c", "-i", "unsub-u", "-U", "pu/a", "-t", "pu/c", "-q", "1", "-E",
        ],
    );
    assert_eq!(unsub.wait_exit(), Some(0), "{}", unsub.output());
    publish(&b, &["-t", "pu/a", "-q", "1", "-m", "unsubscribed"]);
    publish(&b, &["-t", "pu/b", "-q", "1", "-m", "subscribed"]);
    let (mut c, connack) = RawClient::connect_with(
        &b,
        &Connect {
            clean_session: false,
            ..Connect::new("unsub-u")
        },
    );
    assert_eq!(connack.map(|p| p.to_bytes()), Some(vec![0x20, 2, 1, 0]));
    let p = c.recv_publish_acked();
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice()),
        ("pu/b", &b"subscribed"[..])
    );
    // Nothing else was queued: the PINGRESP comes next.
    c.send(&mqtt::pingreq());
    assert_eq!(c.read_packet().kind(), mqtt::PINGRESP);
}

// The will is published when the connection closes without DISCONNECT [MQTT-3.1.2-8], and
// discarded when the client disconnects properly [MQTT-3.14.4-3]; a retained will is kept as
// the topic's retained message.
#[test]
fn will_is_published_on_abnormal_disconnect_only() {
    let b = broker("");
    let watcher = MosquittoSub::start(&b, &["-t", "will/#", "-q", "1", "-F", "%r|%t|%p"]);

    // mosquitto_sub -E sends DISCONNECT once subscribed: no will.
    let mut polite = MosquittoSub::start(
        &b,
        &[
            "-i",
            "polite",
            "--will-topic",
            "will/polite",
            "--will-payload",
            "gone",
            "-t",
            "x",
            "-E",
        ],
    );
    assert_eq!(polite.wait_exit(), Some(0), "{}", polite.output());

    // SIGKILL: the kernel closes the socket, no DISCONNECT.
    let mut rude = MosquittoSub::start(
        &b,
        &[
            "-i",
            "rude",
            "--will-topic",
            "will/rude",
            "--will-payload",
            "gone",
            "--will-qos",
            "1",
            "--will-retain",
            "-t",
            "x",
        ],
    );
    rude.process().kill();
    let got = watcher.wait_for_message("0|will/rude|gone");
    assert_eq!(got, ["0|will/rude|gone"], "only the rude client's will");

    // The will was retained: a new subscriber gets it with RETAIN set.
    let mut later = MosquittoSub::start(&b, &["-t", "will/#", "-C", "1", "-F", "%r|%t|%p"]);
    assert_eq!(later.wait_exit(), Some(0), "{}", later.output());
    assert_eq!(later.messages(), ["1|will/rude|gone"]);
}

// A client connecting with the identifier of a connected client takes over: the first
// connection is closed [MQTT-3.1.4-2] and the second works.
#[test]
fn second_client_with_the_same_id_takes_over() {
    let b = broker("");
    let mut first = RawClient::connect_v311(&b, "twin");
    assert_eq!(first.subscribe(&[("twin/#", 1)]), [1]);
    let mut second = RawClient::connect_v311(&b, "twin");
    let (closed, got) = first.closed();
    assert!(
        closed,
        "first connection closed; got {got:02x?}\n{}",
        b.log()
    );
    assert!(
        got.is_empty(),
        "nothing sent to a 3.1.1 client taken over: {got:02x?}"
    );
    assert_eq!(second.subscribe(&[("twin/#", 1)]), [1]);
    publish(&b, &["-t", "twin/x", "-q", "1", "-m", "to the second"]);
    let p = second.recv_publish_acked();
    assert_eq!(p.payload, b"to the second");

    // mosquitto_pub with the same id takes over as well; the raw client is closed.
    publish(&b, &["-i", "twin", "-t", "twin/y", "-m", "from pub"]);
    let (closed, _) = second.closed();
    assert!(closed, "second connection closed by the third");
}

/// Publishes 1..=100 with `mosquitto_pub -l` at `qos` and checks a subscriber at `qos` gets
/// them in order [MQTT-4.6.0-5], [MQTT-4.6.0-6].
fn check_order(qos: &str) {
    let b = broker("");
    let topic = format!("order/{qos}");
    let mut sub = MosquittoSub::start(&b, &["-t", &topic, "-q", qos, "-C", "100"]);
    let lines: String = (1..=100).map(|n| format!("{n}\n")).collect();
    publish_stdin(&b, &["-t", &topic, "-q", qos, "-l"], lines.as_bytes());
    assert_eq!(sub.wait_exit(), Some(0), "{}", sub.output());
    let want: Vec<String> = (1..=100).map(|n| n.to_string()).collect();
    assert_eq!(sub.messages(), want);
}

#[test]
fn order_is_kept_per_topic_at_qos_1() {
    check_order("1");
}

#[test]
fn order_is_kept_per_topic_at_qos_2() {
    check_order("2");
}

// A payload of exactly message_size_limit bytes is delivered; one byte more is acknowledged
// (mosquitto_pub succeeds) and dropped, as Mosquitto does.
#[test]
fn payload_at_message_size_limit() {
    const LIMIT: usize = 256 * 1024;
    let b = broker(&format!("message_size_limit {LIMIT}\n"));
    let sub = MosquittoSub::start(&b, &["-t", "size/#", "-q", "1", "-F", "%l %t"]);
    let at_limit: Vec<u8> = (0..LIMIT).map(|i| b'a' + (i % 26) as u8).collect();
    publish_stdin(&b, &["-t", "size/at", "-q", "1", "-s"], &at_limit);
    let mut over = at_limit.clone();
    over.push(b'!');
    publish_stdin(&b, &["-t", "size/over", "-q", "1", "-s"], &over);
    publish_stdin(&b, &["-t", "size/over0", "-q", "0", "-s"], &over);
    publish(&b, &["-t", "size/end", "-q", "1", "-m", "end"]);
    let got = sub.wait_for_message("3 size/end");
    assert_eq!(got, [format!("{LIMIT} size/at"), "3 size/end".to_owned()]);
}

// The payload arrives byte for byte, whatever it holds.
#[test]
fn binary_payload_arrives_intact() {
    let b = broker("");
    let mut c = RawClient::connect_v311(&b, "binary");
    assert_eq!(c.subscribe(&[("bin", 2)]), [2]);
    let payload: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let file = b.dir().join("payload.bin");
    std::fs::write(&file, &payload).unwrap();
    publish(&b, &["-t", "bin", "-q", "2", "-f", file.to_str().unwrap()]);
    let p = c.recv_publish_acked();
    assert_eq!(p.qos, 2);
    assert!(p.payload == payload, "payload differs");
}

// A listener defined in the configuration refuses anonymous clients unless
// allow_anonymous true (Mosquitto 2.0's default): CONNACK 0x05, not authorized.
#[test]
fn configured_listener_refuses_anonymous_clients_by_default() {
    let b = Broker::start_with(pigeon_test::broker_binary(PIGEON).as_ref(), |port, dir| {
        let conf = dir.join("pigeon.conf");
        std::fs::write(&conf, format!("listener {port} 127.0.0.1\n")).unwrap();
        vec!["-c".to_owned(), conf.display().to_string()]
    });
    let (mut c, connack) = RawClient::connect_with(&b, &Connect::new("anonymous"));
    assert_eq!(connack.map(|p| p.to_bytes()), Some(vec![0x20, 2, 0, 5]));
    assert!(c.closed().0, "closed after the refusal");
    let out = mosquitto_pub(&b, &["-t", "x", "-m", "x"]);
    assert!(!out.status.success(), "mosquitto_pub is refused");
}

// `$SYS/broker/...` as Mosquitto publishes it: retained (a subscriber that arrives later gets
// the last values with RETAIN 1), the version once, the counters every `sys_interval`.
#[test]
fn sys_topics_are_published_and_retained() {
    let b = broker("sys_interval 1\n");
    // Something to count: a persistent subscriber that leaves, and a retained message.
    let mut away = MosquittoSub::start(&b, &["-t", "x/#", "-c", "-i", "away", "-q", "1"]);
    away.process().kill();
    publish(&b, &["-t", "x/retained", "-m", "kept", "-r"]);

    let mut sub = MosquittoSub::start(&b, &["-t", "$SYS/broker/#", "-F", "%r %t %p", "-W", "10"]);
    let wanted = [
        "$SYS/broker/version",
        "$SYS/broker/uptime",
        "$SYS/broker/clients/connected",
        "$SYS/broker/clients/disconnected",
        "$SYS/broker/clients/total",
        "$SYS/broker/retained messages/count",
        "$SYS/broker/subscriptions/count",
        "$SYS/broker/messages/received",
        "$SYS/broker/load/messages/received/1min",
    ];
    // The last value seen of `topic`: `retained` picks the copies sent on subscribing (RETAIN 1)
    // or the live updates (RETAIN 0) [MQTT-3.3.1-8], [MQTT-3.3.1-9].
    let value = |topic: &str, retained: bool| -> Option<String> {
        let prefix = format!("{} {topic} ", u8::from(retained));
        sub.messages()
            .iter()
            .rev()
            .find_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
    };
    assert!(
        pigeon_test::wait_until(|| wanted.iter().all(|t| value(t, true).is_some())),
        "missing retained $SYS topics in {:?}",
        sub.messages()
    );
    assert!(
        value("$SYS/broker/version", true)
            .unwrap()
            .starts_with("pigeon version ")
    );
    // Live updates follow every second; the $SYS subscriber itself is connected and "away" is
    // disconnected with its session kept.
    assert!(
        pigeon_test::wait_until(
            || value("$SYS/broker/clients/connected", false).as_deref() == Some("1")
        ),
        "{:?}",
        sub.messages()
    );
    assert!(
        value("$SYS/broker/uptime", false)
            .unwrap()
            .ends_with(" seconds")
    );
    assert_eq!(
        value("$SYS/broker/clients/disconnected", false)
            .or_else(|| value("$SYS/broker/clients/disconnected", true))
            .as_deref(),
        Some("1")
    );
    // x/retained, and (as Mosquitto counts them) the retained $SYS topics themselves.
    let retained: usize = value("$SYS/broker/retained messages/count", false)
        .expect("a live retained count")
        .parse()
        .expect("a number");
    assert!(retained > wanted.len(), "{retained}");
    // Load averages are printed with two decimals, as Mosquitto's "%.2f".
    let load = value("$SYS/broker/load/messages/received/1min", true).unwrap();
    assert!(
        load.split_once('.').is_some_and(|(_, d)| d.len() == 2),
        "{load}"
    );
    sub.process().kill();
}
