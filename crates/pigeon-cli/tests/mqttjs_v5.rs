//! MQTT.js (npm `mqtt`, in Node) in MQTT 5.0 mode against the broker over TCP on 127.0.0.1:
//! tests/js/mqttjs_v5.js runs the steps and prints what MQTT.js saw, one `key json` line
//! each (JSON.stringify's output, so the comparison is of exact text).
//!
//! MQTT.js lives in `tests/js`; scripts/test installs it with `npm ci`.

use std::path::Path;
use std::process::Command;

use pigeon_test::{Background, Broker, PATIENCE};

const PIGEON: &str = env!("CARGO_BIN_EXE_pigeon");

/// Runs the script against a fresh broker; returns its `key json` lines as pairs.
fn run() -> (Vec<(String, String)>, Broker) {
    let broker = Broker::start(pigeon_test::broker_binary(PIGEON), "", &[]);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        dir.join("node_modules/mqtt").is_dir(),
        "MQTT.js is not installed in {}: run scripts/test, or `npm ci` there",
        dir.display()
    );
    let mut cmd = Command::new("node");
    cmd.current_dir(&dir)
        .arg("mqttjs_v5.js")
        .arg(format!("mqtt://127.0.0.1:{}", broker.port()));
    let mut node = Background::spawn(&mut cmd, "node mqttjs_v5.js");
    let status = node.wait_exit(PATIENCE * 2);
    let out = node.output();
    assert!(
        status.is_some_and(|s| s.success()) && out.lines().any(|l| l == "done"),
        "MQTT.js ended with {status:?}:\n{out}\nbroker log:\n{}",
        broker.log()
    );
    let lines = out
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    (lines, broker)
}

fn value<'a>(lines: &'a [(String, String)], key: &str) -> &'a str {
    lines
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in {lines:#?}"))
}

// One run covers the features a v5 client library exercises; each assertion cites the
// statements that decide it.
#[test]
fn mqtt_js_v5_features_against_the_broker() {
    let (lines, broker) = run();
    let v = |key: &str| value(&lines, key);

    // CONNACK: Success, no session yet, and the broker's limits as properties: Topic Alias
    // Maximum (section 3.2.2.3.8) and Receive Maximum (section 3.2.2.3.3).
    assert_eq!(v("connack.reason"), "0");
    assert_eq!(v("connack.session_present"), "false");
    assert_eq!(
        v("connack.properties"),
        r#"{"topicAliasMaximum":10,"receiveMaximum":20}"#
    );

    // Request/response: Response Topic [MQTT-3.3.2-15], Correlation Data [MQTT-3.3.2-16],
    // Payload Format Indicator [MQTT-3.3.2-4], User Properties and Content Type (section
    // 3.3.2.3) reach the subscriber unaltered; the
    // Message Expiry Interval is the received value less the time it waited [MQTT-3.3.2-6]
    // (delivered at once: still 120); the Subscription Identifier of the matching
    // subscription comes with it [MQTT-3.3.4-3].
    assert_eq!(
        v("request.received"),
        r#"{"topic":"js5/req/time","payload":"what time is it","qos":1,"responseTopic":"js5/resp/time","correlationData":"corr-17","userProperties":{"app":"lab","step":"4"},"contentType":"text/plain","payloadFormatIndicator":true,"messageExpiryInterval":120,"subscriptionIdentifier":42}"#
    );
    assert_eq!(v("request.puback"), "0");
    assert_eq!(
        v("reply.received"),
        r#"{"topic":"js5/resp/time","payload":"noon","correlationData":"corr-17"}"#
    );

    // PUBACK reason codes: 0x10 No matching subscribers (section 3.4.2.1), 0x99 Payload
    // format invalid for a payload that is not the UTF-8 it claims (section 3.3.2.3.2).
    assert_eq!(v("nobody.puback"), "16");
    assert_eq!(v("bad_utf8.puback"), "153");

    // Topic aliases both ways (section 3.3.2.3.4): MQTT.js sends its own, the broker maps
    // them; the broker assigns one towards the responder (it allowed 10)
    // and sends the topic once, then only the alias. MQTT.js resolves them all.
    let long = "js5/alias/building1/room2/temperature3/readings/celsius";
    assert_eq!(
        v("alias.received"),
        format!(
            r#"[{{"topic":"{long}","payload":"reading 1"}},{{"topic":"{long}","payload":"reading 2"}},{{"topic":"{long}","payload":"reading 3"}}]"#
        )
    );
    for key in ["alias.sent_wire", "alias.received_wire"] {
        let wire = v(key);
        // The last three PUBLISHes on the wire: topic and alias, then the alias alone.
        let tail: Vec<&str> = wire.trim_matches(['[', ']']).split("},{").collect();
        let tail = &tail[tail.len() - 3..];
        assert!(
            tail[0].contains(r#""topic":true"#)
                && tail[1..].iter().all(|t| t.contains(r#""topic":false"#))
                && tail.iter().all(|t| !t.contains(r#""alias":null"#)),
            "{key}: {wire}"
        );
    }

    // Session Expiry Interval 300: the session outlives the connection, a QoS 1 message is
    // kept for it [MQTT-3.1.2-23], and the client resumes it with Session Present 1
    // [MQTT-3.2.2-3], subscription identifier included.
    assert_eq!(v("offline.puback"), "0");
    assert_eq!(v("resumed.session_present"), "true");
    assert_eq!(
        v("resumed.received"),
        r#"{"topic":"js5/req/queued","payload":"while away","subscriptionIdentifier":42}"#
    );

    // Takeover: the old connection is sent DISCONNECT 0x8E [MQTT-3.1.4-3].
    assert_eq!(v("takeover.reason"), "142", "broker log:\n{}", broker.log());
}
