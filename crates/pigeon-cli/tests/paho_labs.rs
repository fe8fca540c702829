//! The IoT labs' paho-mqtt 2.x scripts (tests/labs/*.py), unchanged but for the broker address
//! they take from the command line, run against the broker.

use std::path::PathBuf;
use std::process::Command;

use pigeon_test::{Background, Broker, MosquittoSub, PATIENCE, python};

const PIGEON: &str = env!("CARGO_BIN_EXE_pigeon");

fn broker() -> Broker {
    Broker::start(pigeon_test::broker_binary(PIGEON), "", &[])
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/labs")
        .join(name)
}

/// Starts lab script `name` against `broker` (`python -u SCRIPT 127.0.0.1 PORT`) with the
/// extra environment `env`.
fn lab(name: &str, broker: &Broker, env: &[(&str, &str)]) -> Background {
    let mut cmd = Command::new(python());
    cmd.arg("-u")
        .arg(script(name))
        .arg("127.0.0.1")
        .arg(broker.port().to_string())
        .envs(env.iter().copied());
    Background::spawn(&mut cmd, name)
}

/// Runs lab script `name` to completion and asserts it succeeded; returns its output.
fn run_lab(name: &str, broker: &Broker) -> String {
    let mut p = lab(name, broker, &[]);
    let status = p.wait_exit(PATIENCE);
    assert!(
        status.is_some_and(|s| s.success()),
        "{name} ended with {status:?}:\n{}\nbroker log:\n{}",
        p.output(),
        broker.log()
    );
    p.output()
}

// led_publisher.py publishes ON, OFF, ON... to home/led every LED_INTERVAL seconds (2 by
// default; shortened here, the loop is the same) until interrupted, then disconnects.
#[test]
fn led_publisher_toggles_home_led() {
    let b = broker();
    let sub = MosquittoSub::start(&b, &["-t", "home/led", "-F", "%t %p"]);
    let mut led = lab("led_publisher.py", &b, &[("LED_INTERVAL", "0.2")]);
    let got = sub.wait_for_messages(4);
    assert!(
        got.len() >= 4,
        "led_publisher:\n{}\nsubscriber:\n{}",
        led.output(),
        sub.output()
    );
    assert_eq!(
        got[..4],
        ["home/led ON", "home/led OFF", "home/led ON", "home/led OFF"]
    );
    // Ctrl-C: the script's KeyboardInterrupt path disconnects and exits 0.
    led.signal("INT");
    let status = led.wait_exit(PATIENCE);
    assert!(
        status.is_some_and(|s| s.success()),
        "led_publisher ended with {status:?}:\n{}",
        led.output()
    );
    let out = led.output();
    assert!(out.contains("Connected with result code Success"), "{out}");
    assert!(out.contains("Published ON to home/led"), "{out}");
}

// With its real period (2 s, no LED_INTERVAL) the publisher runs as the lab has it: ON, then
// OFF. (How long the period is, is not asserted: tests make no timing claims.)
#[test]
fn led_publisher_runs_with_its_default_period() {
    let b = broker();
    let sub = MosquittoSub::start(&b, &["-t", "home/led"]);
    let led = lab("led_publisher.py", &b, &[]);
    let got = sub.wait_for_messages(2);
    assert_eq!(
        got[..2],
        ["ON", "OFF"],
        "led_publisher:\n{}\nbroker log:\n{}",
        led.output(),
        b.log()
    );
}

// hello_subscriber.py prints what hello_publisher.py sends to test/topic.
#[test]
fn hello_publisher_reaches_hello_subscriber() {
    let b = broker();
    let subscriber = lab("hello_subscriber.py", &b, &[]);
    assert!(
        subscriber.wait_for_text("Subscribed to test/topic"),
        "hello_subscriber:\n{}\nbroker log:\n{}",
        subscriber.output(),
        b.log()
    );
    let out = run_lab("hello_publisher.py", &b);
    assert!(out.contains("Message published to test/topic"), "{out}");
    assert!(
        subscriber.wait_for_text("Received message 'Hello, MQTT!' on topic 'test/topic'"),
        "hello_subscriber:\n{}",
        subscriber.output()
    );
    assert!(
        subscriber.stderr().is_empty(),
        "no traceback: {}",
        subscriber.stderr()
    );
}

// bulb_client.py subscribes to house/bulbs/bulb1, publishes OFF there (and sees it come back
// once), unsubscribes and disconnects.
#[test]
fn bulb_client_switches_bulb_off() {
    let b = broker();
    let watcher = MosquittoSub::start(&b, &["-t", "house/#", "-F", "%t %p"]);
    let out = run_lab("bulb_client.py", &b);
    for line in [
        "Connected with result code Success",
        "Subscribed to house/bulbs/bulb1 with ['Granted QoS 1']",
        "Published OFF to house/bulbs/bulb1",
        "Received message 'OFF' on topic 'house/bulbs/bulb1'",
        "Unsubscribed from house/bulbs/bulb1",
        "Disconnected with result code Normal disconnection",
    ] {
        // Not whole lines: print() from the main thread and from paho's network thread may
        // interleave a text and another's newline.
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert_eq!(watcher.wait_for_messages(1), ["house/bulbs/bulb1 OFF"]);
}
