//! MQTT 5.0 against the real broker, with paho-mqtt 2.x clients in `protocol=MQTTv5` mode
//! (and MQTTv311 ones where versions mix). Each test runs one scenario of tests/v5/scenarios.py,
//! which prints what the clients observed as `key=<json>` lines; the assertions are here.
//!
//! The comments cite the normative statements of OASIS MQTT Version 5.0 that decide each
//! behaviour, or the section where the behaviour is described without one.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use pigeon_test::{Background, Broker, python};

const PIGEON: &str = env!("CARGO_BIN_EXE_pigeon");

/// The longest a scenario may run (the script gives up by itself after a minute).
const SCENARIO_PATIENCE: Duration = Duration::from_secs(90);

fn broker(config: &str) -> Broker {
    Broker::start(pigeon_test::broker_binary(PIGEON), config, &[])
}

fn spawn(broker: &Broker, scenario: &str) -> Background {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/v5/scenarios.py");
    let mut cmd = Command::new(python());
    cmd.arg("-u")
        .arg(script)
        .arg("127.0.0.1")
        .arg(broker.port().to_string())
        .arg(scenario);
    Background::spawn(&mut cmd, scenario)
}

/// What a scenario printed.
struct Observed {
    scenario: String,
    output: String,
    log: String,
}

impl Observed {
    /// The JSON printed for `key`.
    fn get(&self, key: &str) -> &str {
        let prefix = format!("{key}=");
        self.output
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("{} printed no {key}:\n{}", self.scenario, self.context()))
    }

    /// Whether a value was printed for `key`.
    fn has(&self, key: &str) -> bool {
        let prefix = format!("{key}=");
        self.output.lines().any(|l| l.starts_with(&prefix))
    }

    /// Asserts that `key` was printed as `expected` (JSON text, as Python's json.dumps
    /// writes it).
    fn expect(&self, key: &str, expected: &str) {
        assert_eq!(
            self.get(key),
            expected,
            "{}: {key}\n{}",
            self.scenario,
            self.context()
        );
    }

    fn context(&self) -> String {
        format!("output:\n{}\nbroker log:\n{}", self.output, self.log)
    }
}

/// Waits for a started scenario to finish and asserts it succeeded.
fn finish(mut p: Background, broker: &Broker) -> Observed {
    let status = p.wait_exit(SCENARIO_PATIENCE);
    let observed = Observed {
        scenario: p.name().to_owned(),
        output: p.output(),
        log: broker.log(),
    };
    assert!(
        status.is_some_and(|s| s.success()) && observed.output.lines().any(|l| l == "done"),
        "scenario {} ended with {status:?}\n{}",
        observed.scenario,
        observed.context()
    );
    observed
}

/// Runs `scenario` against `broker` to completion.
fn run(broker: &Broker, scenario: &str) -> Observed {
    finish(spawn(broker, scenario), broker)
}

// 1. CONNACK properties. The broker tells a v5 client its limits: Receive Maximum
// (section 3.2.2.3.3; the default max_inflight_messages 20), Topic Alias Maximum (3.2.2.3.8;
// max_topic_alias 10), Maximum Packet Size (3.2.2.3.6; max_packet_size), and Retain
// Available only when false (absent means available, 3.2.2.3.5). A Keep Alive above
// max_keepalive is replaced by Server Keep Alive, which the client must use [MQTT-3.2.2-21];
// one within it is left alone and no Server Keep Alive is sent [MQTT-3.2.2-22]. A zero-length
// Client Identifier gets an Assigned Client Identifier [MQTT-3.2.2-16], [MQTT-3.1.3-7].
#[test]
fn connack_carries_the_broker_limits_and_an_assigned_identifier() {
    let b = broker("max_keepalive 10\nmax_packet_size 100000");
    let o = run(&b, "connack");
    o.expect("connack.reason", "0");
    o.expect("connack.session_present", "false");
    o.expect("connack.ReceiveMaximum", "20");
    o.expect("connack.TopicAliasMaximum", "10");
    o.expect("connack.MaximumPacketSize", "100000");
    o.expect("connack.ServerKeepAlive", "10");
    assert!(!o.has("connack.RetainAvailable"), "{}", o.context());
    assert!(!o.has("connack.MaximumQoS"), "{}", o.context());
    assert!(
        !o.has("connack.AssignedClientIdentifier"),
        "{}",
        o.context()
    );
    assert!(!o.has("short.ServerKeepAlive"), "{}", o.context());
    o.expect("anon.reason", "0");
    let assigned = o.get("anon.AssignedClientIdentifier");
    assert!(
        assigned.len() > 2 && assigned.starts_with('"'),
        "assigned identifier {assigned}"
    );
    o.expect("anon.received", r#"["hi"]"#);
}

// 2. Session expiry. A session with a Session Expiry Interval above 0 outlives its connection
// [MQTT-3.1.2-23], and keeps the QoS 1 messages matching its subscriptions (section 4.1);
// Clean Start 0 resumes it [MQTT-3.1.2-5] with Session Present 1 [MQTT-3.2.2-3], and the
// queued message is delivered. With 0 the session ends with the connection, so the next
// Clean Start 0 connection finds none: a new session [MQTT-3.1.2-6], Session Present 0
// [MQTT-3.2.2-3], no subscription (the publish meanwhile matched nobody: PUBACK 0x10).
#[test]
fn session_expiry_keeps_or_ends_the_session() {
    let b = broker("");
    let o = run(&b, "session_expiry");
    o.expect("first.session_present", "false");
    o.expect("offline.puback", "0");
    o.expect("resumed.session_present", "true");
    o.expect("resumed.messages", r#"[["se/t", "queued", 1]]"#);
    o.expect("zero.offline_puback", "16");
    o.expect("zero.session_present", "false");
    o.expect("zero.messages", r#"["marker"]"#);
}

// 3. Message expiry. A message whose Message Expiry Interval passed before onward delivery
// started is deleted for that subscriber [MQTT-3.3.2-5]; one delivered later carries the
// interval minus the time it waited in the server [MQTT-3.3.2-6]; one without stays without.
#[test]
fn message_expiry_drops_stale_messages_and_counts_down() {
    let b = broker("");
    let o = run(&b, "message_expiry");
    o.expect("session_present", "true");
    o.expect("payloads", r#"["long", "forever"]"#);
    let left: u32 = o.get("expiry.long").parse().unwrap_or_else(|_| {
        panic!("expiry.long is a number\n{}", o.context());
    });
    // Published with 60 and held for about 2.5 s; any value in 1..=60 is what the rule
    // allows, and a countdown never adds time.
    assert!((1..=60).contains(&left), "Message Expiry Interval {left}");
    o.expect("expiry.forever", "null");
}

// 4. Request / response. The server forwards unaltered the Payload Format Indicator
// [MQTT-3.3.2-4], the Response Topic [MQTT-3.3.2-15], the Correlation Data [MQTT-3.3.2-16],
// every User Property [MQTT-3.3.2-17] in order [MQTT-3.3.2-18] (a repeated name included),
// and the Content Type [MQTT-3.3.2-20]; the responder's answer on the Response Topic comes
// back with the Correlation Data (section 4.10).
#[test]
fn request_response_properties_are_forwarded_unchanged() {
    let b = broker("");
    let o = run(&b, "request_response");
    o.expect("request.payload", r#""{\"op\":\"ping\"}""#);
    o.expect("request.PayloadFormatIndicator", "1");
    o.expect("request.ContentType", r#""application/json""#);
    o.expect("request.ResponseTopic", r#""rr/response/requester""#);
    o.expect("request.CorrelationData", r#""0001636f7272ff""#);
    o.expect(
        "request.UserProperty",
        r#"[["a", "1"], ["b", "2"], ["a", "3"]]"#,
    );
    o.expect("response.topic", r#""rr/response/requester""#);
    o.expect("response.payload", r#""pong""#);
    o.expect("response.CorrelationData", r#""0001636f7272ff""#);
    assert!(!o.has("response.ResponseTopic"), "{}", o.context());
}

// 5. Subscription Identifiers. Overlapping subscriptions of one client: the broker (like
// Mosquitto 2.0, allow_duplicate_messages true by default) sends one copy per matching
// subscription, each with the identifier of its own subscription [MQTT-3.3.4-3],
// [MQTT-3.3.4-5], at that subscription's QoS (section 3.3.4), and none on the copy for the
// subscription that has no identifier.
#[test]
fn subscription_identifiers_mark_each_copy() {
    let b = broker("");
    let o = run(&b, "subscription_ids");
    o.expect(
        "copies",
        r#"[["both", [], 0], ["both", [7], 1], ["both", [9], 1], ["one", [], 0], ["one", [7], 1]]"#,
    );
}

// 6. No Local: a subscription with No Local does not get the messages its own client
// publishes [MQTT-3.8.3-3]; other clients' messages it gets, and other subscribers get the
// client's own.
#[test]
fn no_local_holds_back_the_clients_own_messages() {
    let b = broker("");
    let o = run(&b, "no_local");
    // Matched (the watcher), so Success.
    o.expect("mine.puback", "0");
    o.expect("me.received", r#"["theirs"]"#);
    o.expect("watcher.received", r#"["mine", "theirs"]"#);
}

// 7. Retain As Published and Retain Handling. Retained messages sent because of a new
// subscription have RETAIN 1 (section 3.3.1.3). A live message is forwarded with RETAIN 0
// unless the subscription asked for Retain As Published [MQTT-3.3.1-12], then as published
// [MQTT-3.3.1-13]. Retain Handling 0 sends the retained messages on every SUBSCRIBE
// [MQTT-3.3.1-9]; 1 only when the subscription is new [MQTT-3.3.1-10]; 2 never
// [MQTT-3.3.1-11].
#[test]
fn retain_as_published_and_retain_handling() {
    let b = broker("");
    let o = run(&b, "retain");
    o.expect("rap.seen", r#"[["kept", true], ["live", true]]"#);
    o.expect("plain.seen", r#"[["kept", true], ["live", false]]"#);
    o.expect(
        "rh.seen",
        r#"[["kept", true], ["m1", false], ["m2", false], ["kept", true], ["m3", false]]"#,
    );
    o.expect("never.seen", r#"[["m4", false]]"#);
}

// 8. Shared subscriptions: `$share/{ShareName}/{filter}` [MQTT-4.8.2-1], [MQTT-4.8.2-2];
// each message goes to one session of the group (section 4.8.2), so the members get every
// message exactly once between them, each at its granted QoS [MQTT-4.8.2-3]. A 3.1.1 client
// may be a member too (the broker, like Mosquitto, accepts the filter from 3.1.1 clients). The
// broker deals round-robin, so with three members each gets some.
#[test]
fn shared_subscription_splits_messages_without_duplicates() {
    let b = broker("");
    let o = run(&b, "shared");
    for member in ["v5-sh-1", "v5-sh-2", "v311-sh-3"] {
        o.expect(&format!("suback.{member}"), "[1]");
        let got = o.get(&format!("got.{member}"));
        assert_ne!(got, "[]", "{member} got nothing\n{}", o.context());
    }
    let all: Vec<String> = (0..12).map(|i| format!("\"m{i}\"")).collect();
    o.expect("all", &format!("[{}]", all.join(", ")));
}

// 9. Will Delay Interval. After a connection ends without DISCONNECT the will is published
// once the Will Delay Interval has passed or the session ended, whichever comes first
// [MQTT-3.1.2-8]; section 3.1.3.2.2. A new connection to the session before the delay
// passed means no will [MQTT-3.1.3-9].
#[test]
fn will_delay_postpones_the_will_and_a_reconnection_cancels_it() {
    let b = broker("");
    let o = run(&b, "will_delay");
    // Delay 2 s: nothing in the first half second after the drop, then the will.
    o.expect("early", "[]");
    o.expect("will.topic", r#""will/dying""#);
    o.expect("back.session_present", "true");
    // Four seconds past the second drop the reconnected client's will never came.
    o.expect("watcher.payloads", r#"["gone", "marker"]"#);
}

// 9b. Will delay and takeover. A connection that takes the session over and resumes it is a
// new Network Connection to the session before the Will Delay Interval passed: no will
// [MQTT-3.1.3-9] (Mosquitto 2.0 clears it too). One with Clean Start ends the old session, and
// the will is published when the session ends [MQTT-3.1.2-8].
#[test]
fn takeover_within_the_will_delay_cancels_the_will_unless_the_session_ends() {
    let b = broker("");
    let o = run(&b, "will_takeover");
    o.expect("resumed.session_present", "true");
    o.expect("resumed.first_disconnects", "[142]");
    o.expect("clean.session_present", "false");
    o.expect("watcher.payloads", r#"["clean will", "marker"]"#);
}

// 10. Topic Aliases. The broker may replace the topic of the messages it sends by an alias up
// to the Topic Alias Maximum the client gave in CONNECT [MQTT-3.3.2-11] (section 3.3.2.3.4);
// paho 2.x does not resolve aliases on receipt (it hands over an empty topic), so the script
// does, from the alias's first use, which carries the topic. The broker accepts the aliases a
// client sets up to the maximum it sent in CONNACK [MQTT-3.3.2-12], and routes a PUBLISH with
// an empty topic and a known alias to the alias's topic.
#[test]
fn topic_aliases_both_ways() {
    let b = broker("");
    let o = run(&b, "topic_alias");
    o.expect(
        "resolved",
        r#"[[true, "m0"], [true, "m1"], [true, "m2"], [true, "m3"], [true, "m4"]]"#,
    );
    // The first message set the alias up with the topic; the rest used the alias alone.
    o.expect("raw_topic_empty", "[false, true, true, true, true]");
    o.expect("aliases", "[1, 1, 1, 1, 1]");
    o.expect("mine", r#"[[true, "with topic"], [true, "alias only"]]"#);
}

// 11a. A second connection with the same Client Identifier takes the session over: the first
// gets DISCONNECT 0x8E (Session taken over) and is closed [MQTT-3.1.4-3].
#[test]
fn second_connection_takes_the_session_over() {
    let b = broker("");
    let o = run(&b, "takeover");
    o.expect("first.disconnects", "[142]");
    o.expect("second.disconnects", "[]");
}

// 11b. A broker shutting down tells its v5 clients with DISCONNECT 0x8B (Server shutting
// down), a Reason Code the server may send (section 3.14.2.1) [MQTT-3.14.2-1].
#[test]
fn shutdown_disconnects_with_server_shutting_down() {
    let mut b = broker("");
    let p = spawn(&b, "shutdown");
    assert!(
        p.wait_for_text("ready"),
        "client did not connect:\n{}\nbroker log:\n{}",
        p.output(),
        b.log()
    );
    assert!(b.stop(), "pigeon did not exit cleanly:\n{}", b.log());
    let o = finish(p, &b);
    o.expect("disconnects", "[139]");
}

// 12. Payload Format Indicator 1 promises UTF-8 (section 3.3.2.3.2); a receiver may check and
// refuse a payload that is not with 0x99 (Payload format invalid) in PUBACK (section 3.4.2.1,
// [MQTT-3.4.2-1]). The refused message is not forwarded; indicator 0 is binary and not
// checked; valid UTF-8 with indicator 1 is forwarded with the indicator [MQTT-3.3.2-4].
#[test]
fn payload_format_invalid_is_refused_with_0x99() {
    let b = broker("");
    let o = run(&b, "payload_format");
    o.expect("invalid.puback", "153");
    o.expect("binary.puback", "0");
    o.expect("valid.puback", "0");
    o.expect(
        "received",
        r#"[["\ufffd\ufffd binary", 0], ["caf\u00e9", 1]]"#,
    );
}

// 13. Versions mix: a message crosses between v5 and 3.1.1 clients (3.1.1 receivers get no
// properties, having no way to read them); a retained message keeps its properties — User
// Properties in order [MQTT-3.3.2-17], [MQTT-3.3.2-18], Content Type [MQTT-3.3.2-20], Payload
// Format Indicator [MQTT-3.3.2-4] — for a later v5 subscriber, with RETAIN 1 (section 3.3.1.3).
#[test]
fn versions_mix_and_retained_properties_survive() {
    let b = broker("");
    let o = run(&b, "mixed");
    o.expect("v5.puback", "0");
    o.expect("v311.puback", "0");
    o.expect("v311_sub.got", r#"["mx/from5", "from five", 1]"#);
    o.expect("v5_sub.got", r#"["mx/from311", "from three", 1]"#);
    o.expect("v5_sub.props", "{}");
    o.expect("late.got", r#"["mx/retained", "stored", true]"#);
    o.expect("late.UserProperty", r#"[["origin", "v5"], ["n", "1"]]"#);
    o.expect("late.ContentType", r#""text/plain""#);
    o.expect("late.PayloadFormatIndicator", "1");
    o.expect("late311.got", r#"["mx/retained", "stored", true]"#);
}

// 14. Receive Maximum: the server sends no more unacknowledged QoS 1 and 2 PUBLISH packets
// than the client's Receive Maximum [MQTT-3.3.4-9]; each PUBACK lets one more through.
#[test]
fn receive_maximum_bounds_unacknowledged_deliveries() {
    let b = broker("");
    let o = run(&b, "receive_maximum");
    o.expect("most_unacked", "2");
    o.expect("windows", "[2, 2, 2, 2, 2, 1]");
    o.expect("payloads", r#"["m0", "m1", "m2", "m3", "m4", "m5"]"#);
}

// 15. PUBACK 0x10 (No matching subscribers): the message was accepted but nobody subscribes
// (section 3.4.2.1; [MQTT-3.4.2-1] limits PUBACK to its listed codes); 0x00 once somebody
// does.
#[test]
fn puback_says_no_matching_subscribers() {
    let b = broker("");
    let o = run(&b, "no_subscribers");
    o.expect("nobody.puback", "16");
    o.expect("somebody.puback", "0");
    o.expect("nobody_qos2.pubcomp_seen", "true");
}

// 16. Enhanced authentication with a method the server does not support: CONNACK 0x8C (Bad
// authentication method) or 0x87, and the connection closed [MQTT-4.12.0-1]. Pigeon, like
// Mosquitto without plugins, supports none and answers 0x8C.
#[test]
fn unknown_authentication_method_is_refused() {
    let b = broker("");
    let o = run(&b, "auth_method");
    o.expect("connack.reason", "140");
    o.expect("closed", "true");
}
