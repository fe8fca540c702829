//! The IoT labs' scripts written for paho-mqtt 1.6 (`mqtt.Client("P1")`, the old callback
//! signatures: tests/labs/classic_*.py), run unchanged under paho-mqtt 1.6.1 against the broker.
//! (paho_labs.rs runs the 2.x-style scripts under paho-mqtt 2.x.)
//!
//! The interpreter is `$PIGEON_PYTHON16`, else `.venv-paho16/bin/python` at the repository
//! root: scripts/test creates that venv (ensure_python16_venv).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use pigeon_test::{Background, Broker, MosquittoSub, PATIENCE, publish};

const PIGEON: &str = env!("CARGO_BIN_EXE_pigeon");

fn broker() -> Broker {
    Broker::start(pigeon_test::broker_binary(PIGEON), "", &[])
}

/// The paho-mqtt 1.6.1 interpreter, checked once per process.
fn python16() -> PathBuf {
    static CHECKED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let py = std::env::var_os("PIGEON_PYTHON16").map_or_else(
                || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv-paho16/bin/python"),
                PathBuf::from,
            );
            let out = Command::new(&py)
                .args([
                    "-c",
                    "import importlib.metadata as m; import paho.mqtt.client; \
                     print(m.version('paho-mqtt'))",
                ])
                .output()
                .map_err(|e| {
                    format!(
                        "no Python with paho-mqtt 1.6.1 at {} ({e}): run scripts/test, which \
                         creates that venv",
                        py.display()
                    )
                })?;
            let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if version != "1.6.1" {
                return Err(format!(
                    "{} has paho-mqtt {version:?}, not 1.6.1 ({}): run scripts/test",
                    py.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Ok(py)
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Starts lab script `name` (`python -u SCRIPT 127.0.0.1 PORT`) with the extra environment
/// `env`.
fn lab(name: &str, broker: &Broker, env: &[(&str, &str)]) -> Background {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/labs")
        .join(name);
    let mut cmd = Command::new(python16());
    cmd.arg("-u")
        .arg(script)
        .arg("127.0.0.1")
        .arg(broker.port().to_string())
        .envs(env.iter().copied());
    Background::spawn(&mut cmd, name)
}

fn expect_success(p: &mut Background, broker: &Broker) -> String {
    let status = p.wait_exit(PATIENCE);
    assert!(
        status.is_some_and(|s| s.success()),
        "{} ended with {status:?}:\n{}\nbroker log:\n{}",
        p.name(),
        p.output(),
        broker.log()
    );
    assert!(
        !p.stderr().contains("Traceback"),
        "{}: {}",
        p.name(),
        p.stderr()
    );
    p.output()
}

fn expect_text(p: &Background, needle: &str, broker: &Broker) {
    assert!(
        p.wait_for_text(needle),
        "{} did not print {needle:?}:\n{}\nbroker log:\n{}",
        p.name(),
        p.output(),
        broker.log()
    );
}

// The classic pair: P2 subscribes, P1 publishes OFF; the broker log names both client ids.
#[test]
fn classic_publisher_reaches_classic_subscriber() {
    let b = broker();
    let mut sub = lab("classic_subscriber.py", &b, &[]);
    expect_text(&sub, "Subscribed with QoS (0,)", &b);
    let mut publisher = lab("classic_publisher.py", &b, &[]);
    let out = expect_success(&mut publisher, &b);
    for line in [
        "creating new instance",
        "connecting to broker",
        "Connected with result code 0",
        "Publishing message to topic house/bulbs/bulb1",
        "Published message id 1",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    let got = expect_success(&mut sub, &b);
    for line in [
        "Connected with result code 0",
        "message received  OFF",
        "message topic= house/bulbs/bulb1",
        "message qos= 0",
        "message retain flag= 0",
    ] {
        assert!(got.contains(line), "missing {line:?} in:\n{got}");
    }
    // Client ids "P1" and "P2", as given positionally to mqtt.Client().
    let log = b.log();
    assert!(log.contains(" as P1 ") || log.contains(" as P1 ("), "{log}");
    assert!(log.contains(" as P2 ") || log.contains(" as P2 ("), "{log}");
}

#[test]
fn classic_led_bulb_follows_commands() {
    let b = broker();
    let mut bulb = lab("classic_led_bulb.py", &b, &[("COUNT", "3")]);
    expect_text(&bulb, "Bulb ready", &b);
    for command in ["ON", "DIM", "OFF"] {
        publish(&b, &["-t", "house/bulbs/bulb1", "-m", command, "-q", "1"]);
    }
    let out = expect_success(&mut bulb, &b);
    let lines: Vec<&str> = out.lines().skip(2).collect();
    assert_eq!(
        lines,
        ["Bulb is ON", "Unknown command DIM", "Bulb is OFF"],
        "{out}"
    );
    let mut state = MosquittoSub::spawn(&b, &["-t", "house/bulbs/bulb1/state", "-C", "1"]);
    assert_eq!(state.wait_exit(), Some(0), "{}", state.output());
    assert_eq!(state.messages(), ["OFF"], "the last state is retained");
}

#[test]
fn classic_sensor_average_averages_every_room() {
    let b = broker();
    let mut avg = lab("classic_sensor_average.py", &b, &[("N", "4")]);
    expect_text(&avg, "Waiting for readings", &b);
    let watcher = MosquittoSub::start(&b, &["-t", "sensors/average/temperature"]);
    for (room, value) in [
        ("kitchen", "21.5"),
        ("hall", "19"),
        ("hall", "cold"),
        ("attic", "25.25"),
        ("kitchen", "22"),
    ] {
        let topic = format!("sensors/{room}/temperature");
        publish(&b, &["-t", &topic, "-m", value, "-q", "1"]);
    }
    let out = expect_success(&mut avg, &b);
    assert!(
        out.contains("Ignoring cold on sensors/hall/temperature"),
        "{out}"
    );
    assert!(out.contains("Reading 25.25 from attic"), "{out}");
    assert!(out.contains("Average of 4 readings: 21.94"), "{out}");
    assert_eq!(watcher.wait_for_messages(1), ["21.94"]);
}
