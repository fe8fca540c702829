//! MQTT 5.0 with Debian's `mosquitto_pub` / `mosquitto_sub` (`-V 5`), run the same way against
//! Pigeon and against Debian's Mosquitto broker: what the subscriber prints must be the same.
//! Where the specification leaves a choice, Mosquitto's behaviour is the tie-breaker; these
//! tests are how Pigeon's choices were made and how they stay made.

use std::process::Command;

use pigeon_test::{Background, Broker, PATIENCE, tool};

const PIGEON: &str = env!("CARGO_BIN_EXE_pigeon");
const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// The subscriber's output format: topic, QoS, retain, user properties, content type,
/// correlation data, message expiry, payload format, response topic, subscription
/// identifiers, payload.
const FORMAT: &str = "%t q%q r%r P[%P] C[%C] D[%D] E[%E] F[%F] R[%R] S[%S] %p";

fn brokers() -> [(&'static str, Broker); 2] {
    [
        ("pigeon", Broker::start(PIGEON, "", &[])),
        ("mosquitto", Broker::start(MOSQUITTO, "", &[])),
    ]
}

fn mosquitto(program: &str, broker: &Broker, args: &[&str]) -> Command {
    let mut cmd = Command::new(tool("stdbuf"));
    cmd.arg("-oL")
        .arg(tool(program))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port().to_string(),
            "-V",
            "5",
        ])
        .args(args)
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .env("HOME", "/nonexistent");
    cmd
}

fn publish(broker: &Broker, args: &[&str]) {
    let out = mosquitto("mosquitto_pub", broker, args)
        .output()
        .expect("mosquitto_pub runs");
    assert!(
        out.status.success(),
        "mosquitto_pub {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `mosquitto_sub -V 5 -C count -F FORMAT args` against `broker` while `publish` runs,
/// and returns what it printed, lines sorted (copies of one message may come in either
/// order).
fn receive(
    broker: &Broker,
    sub_args: &[&str],
    count: usize,
    publish_all: impl Fn(&Broker),
) -> Vec<String> {
    let count = count.to_string();
    let mut args = vec!["-C", &count, "-F", FORMAT, "-d"];
    args.extend_from_slice(sub_args);
    let mut sub = Background::spawn(
        &mut mosquitto("mosquitto_sub", broker, &args),
        "mosquitto_sub",
    );
    assert!(
        sub.wait_for_text("received SUBACK"),
        "no SUBACK:\n{}",
        sub.output()
    );
    publish_all(broker);
    let status = sub.wait_exit(PATIENCE);
    assert!(
        status.is_some_and(|s| s.success()),
        "mosquitto_sub ended with {status:?}:\n{}\nbroker log:\n{}",
        sub.output(),
        broker.log()
    );
    let mut lines: Vec<String> = sub
        .stdout()
        .lines()
        // Not the -d lines (used to wait for the SUBACK).
        .filter(|l| !l.starts_with("Client ") && !l.starts_with("Subscribed "))
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// Runs the scenario against both brokers and asserts the outputs are equal; returns Pigeon's.
fn same_on_both(scenario: impl Fn(&Broker) -> Vec<String>) -> Vec<String> {
    let [(_, pigeon), (_, mosquitto)] = brokers();
    let ours = scenario(&pigeon);
    let theirs = scenario(&mosquitto);
    assert_eq!(ours, theirs, "Pigeon (left) and Mosquitto (right) differ");
    ours
}

// Overlapping subscriptions of an MQTT 5.0 client [MQTT-3.3.4-2..5]: the spec allows one copy
// or one per subscription; Mosquitto 2.0 sends one per matching subscription, each with its
// own Subscription Identifier, and so does Pigeon by default (allow_duplicate_messages).
#[test]
fn overlapping_subscriptions_match_mosquitto() {
    let got = same_on_both(|b| {
        receive(
            b,
            &[
                "-t",
                "diff/#",
                "-t",
                "diff/+/x",
                "-D",
                "subscribe",
                "subscription-identifier",
                "7",
            ],
            2,
            |b| publish(b, &["-t", "diff/a/x", "-m", "both", "-q", "1"]),
        )
    });
    assert_eq!(got.len(), 2, "{got:?}");
}

// Request/response and the other PUBLISH properties pass through unaltered [MQTT-3.3.2-4],
// [MQTT-3.3.2-15], [MQTT-3.3.2-16] (user properties and content type, section 3.3.2.3);
// the Message Expiry Interval is the remaining one [MQTT-3.3.2-6].
#[test]
fn publish_properties_match_mosquitto() {
    let got = same_on_both(|b| {
        receive(b, &["-t", "props/#", "-q", "1"], 1, |b| {
            publish(
                b,
                &[
                    "-t",
                    "props/req",
                    "-m",
                    "question",
                    "-q",
                    "1",
                    "-D",
                    "publish",
                    "user-property",
                    "lab",
                    "4",
                    "-D",
                    "publish",
                    "content-type",
                    "text/plain",
                    "-D",
                    "publish",
                    "correlation-data",
                    "corr-1",
                    "-D",
                    "publish",
                    "response-topic",
                    "props/reply",
                    "-D",
                    "publish",
                    "message-expiry-interval",
                    "3600",
                    "-D",
                    "publish",
                    "payload-format-indicator",
                    "1",
                ],
            );
        })
    });
    assert_eq!(
        got,
        [
            "props/req q1 r0 P[lab:4] C[text/plain] D[corr-1] E[3600] F[1] R[props/reply] S[] question"
        ]
    );
}

// A retained message keeps its properties for later subscribers (MQTT 5.0 section 3.3.1.3),
// and a subscription made with Retain As Published sees the RETAIN flag [MQTT-3.3.1-12]
// while an ordinary one sees it set too on a retained message sent at subscribe time
// [MQTT-3.3.1-9].
#[test]
fn retained_messages_keep_their_properties_like_mosquitto() {
    let got = same_on_both(|b| {
        publish(
            b,
            &[
                "-t",
                "keep/it",
                "-m",
                "stored",
                "-r",
                "-q",
                "1",
                "-D",
                "publish",
                "user-property",
                "room",
                "2",
                "-D",
                "publish",
                "content-type",
                "text/plain",
            ],
        );
        let lines = receive(b, &["-t", "keep/#", "--retain-as-published"], 1, |_| {});
        // Clear it, so that the broker is left as found.
        publish(b, &["-t", "keep/it", "-r", "-n"]);
        lines
    });
    assert_eq!(
        got,
        ["keep/it q0 r1 P[room:2] C[text/plain] D[] E[] F[] R[] S[] stored"]
    );
}
