//! pigeon-client's examples (crates/pigeon-client/examples), each run against the real broker
//! with its period shortened by its own flags, checked by what it prints and by what a
//! mosquitto_sub sees.
//!
//! Finding the example binaries: Cargo builds a package's examples only for that package's
//! own `cargo test`, and gives integration tests the paths of their own package's binaries
//! only (`CARGO_BIN_EXE_*`). So the first test in each process asks Cargo: `cargo test
//! --no-run --workspace --message-format=json` in the target directory this test binary runs
//! from. After a workspace test build (scripts/test) that is the same build again, nothing to
//! do; run alone (`cargo nextest run -p pigeon-cli --test examples`) it builds what is
//! missing, so a stale example binary is never run. This crate's dev-dependency on
//! pigeon-client turns on its `gpio` feature, so the LED example is built, linted and tested
//! with its GPIO back end.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use pigeon_test::{Background, Broker, MosquittoSub, PATIENCE, TempDir, publish};

const PIGEON: &str = env!("CARGO_BIN_EXE_pigeon");

fn broker() -> Broker {
    Broker::start(pigeon_test::broker_binary(PIGEON), "", &[])
}

/// The example binaries by name, built (or found up to date) by Cargo once per process.
fn examples() -> &'static HashMap<String, PathBuf> {
    static EXAMPLES: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    EXAMPLES.get_or_init(|| {
        // This binary is TARGET/PROFILE/deps/examples-HASH.
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test binary lives in TARGET/PROFILE/deps");
        let target = profile_dir.parent().expect("TARGET");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        // What Cargo and nextest set for a test process (CARGO_PKG_*, CARGO_MANIFEST_DIR,
        // OUT_DIR...) must not reach this build: build scripts that watch such variables
        // (ring's does) would run again, and the outer build would redo them in turn.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            let set_for_tests = [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
            ]
            .iter()
            .any(|p| key.starts_with(p))
                || [
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "OUT_DIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                ]
                .contains(&&*key);
            if set_for_tests {
                cmd.env_remove(&*key);
            }
        }
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["test", "--no-run", "--workspace", "--message-format=json"])
            .arg("--target-dir")
            .arg(target);
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => {}
            Some("release") => {
                cmd.arg("--release");
            }
            Some(other) => {
                cmd.args(["--profile", other]);
            }
        }
        let out = cmd.output().expect("run cargo to build the examples");
        assert!(
            out.status.success(),
            "building pigeon-client's examples failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut found = HashMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // Examples built as programs, not as test harnesses.
            if !line.contains(r#""kind":["example"]"#)
                || !line.contains("pigeon-client")
                || !line.contains(r#""test":false"#)
            {
                continue;
            }
            let Some(name) = json_string(line, "name") else {
                continue;
            };
            let Some(exe) = json_string(line, "executable") else {
                continue;
            };
            found.insert(name, PathBuf::from(exe));
        }
        found
    })
}

/// The string value of the first `"key":"..."` in a line of Cargo's JSON (the values read
/// here, target names and paths, hold no escapes).
fn json_string(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!(r#""{key}":""#))? + key.len() + 4;
    let len = line[start..].find('"')?;
    Some(line[start..start + len].to_owned())
}

/// `example --host 127.0.0.1 --port PORT args...` (flags before a subcommand's own).
fn example_cmd(name: &str, broker: &Broker, args: &[&str]) -> Command {
    let exe = examples()
        .get(name)
        .unwrap_or_else(|| panic!("Cargo built no example {name:?}: {:?}", examples().keys()));
    let mut cmd = Command::new(exe);
    cmd.args(["--host", "127.0.0.1", "--port", &broker.port().to_string()])
        .args(args);
    cmd
}

fn start(name: &str, broker: &Broker, args: &[&str]) -> Background {
    Background::spawn(&mut example_cmd(name, broker, args), name)
}

/// Waits for `p` to print `needle`, failing with its output and the broker's log.
fn expect_text(p: &Background, needle: &str, broker: &Broker) {
    assert!(
        p.wait_for_text(needle),
        "{} did not print {needle:?}:\n{}\nbroker log:\n{}",
        p.name(),
        p.output(),
        broker.log()
    );
}

/// Waits for `p` to exit successfully; returns its output.
fn expect_success(p: &mut Background, broker: &Broker) -> String {
    let status = p.wait_exit(PATIENCE);
    assert!(
        status.is_some_and(|s| s.success()),
        "{} ended with {status:?}:\n{}\nbroker log:\n{}",
        p.name(),
        p.output(),
        broker.log()
    );
    p.output()
}

/// Runs an example to completion, asserting success; returns its output.
fn run(name: &str, broker: &Broker, args: &[&str]) -> String {
    expect_success(&mut start(name, broker, args), broker)
}

#[test]
fn hello_publisher_reaches_hello_subscriber() {
    let b = broker();
    let mut sub = start("hello_subscriber", &b, &["--count", "2"]);
    expect_text(&sub, "Subscribed to 'test/topic'", &b);
    let watcher = MosquittoSub::start(&b, &["-t", "test/topic", "-F", "%t %p"]);
    let out = run(
        "hello_publisher",
        &b,
        &["--interval", "0.1", "--count", "2"],
    );
    assert_eq!(
        out.matches("Published 'Hello, MQTT!' to topic 'test/topic'")
            .count(),
        2,
        "{out}"
    );
    let got = expect_success(&mut sub, &b);
    assert_eq!(
        got.matches("Received message 'Hello, MQTT!' on topic 'test/topic'\n")
            .count(),
        2,
        "{got}"
    );
    assert_eq!(
        watcher.wait_for_messages(2),
        ["test/topic Hello, MQTT!", "test/topic Hello, MQTT!"]
    );
}

#[test]
fn temperature_sensor_publishes_simulated_readings() {
    let b = broker();
    let sub = MosquittoSub::start(&b, &["-t", "building1/#", "-F", "%t %p"]);
    let out = run(
        "temperature_sensor",
        &b,
        &["--interval", "0.05", "--count", "3", "--qos", "1"],
    );
    let printed: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("Published "))
        .filter_map(|l| l.strip_suffix(" to building1/room2/temperature3"))
        .collect();
    assert_eq!(printed.len(), 3, "{out}");
    for reading in &printed {
        let celsius: f64 = reading.parse().unwrap_or_else(|_| panic!("{reading:?}"));
        assert!((15.0..=30.0).contains(&celsius), "{celsius}");
    }
    let expected: Vec<String> = printed
        .iter()
        .map(|r| format!("building1/room2/temperature3 {r}"))
        .collect();
    assert_eq!(sub.wait_for_messages(3), expected);
}

#[test]
fn temperature_sensor_reads_a_one_wire_sensor_file() {
    let b = broker();
    let dir = TempDir::new("w1");
    let file = dir.path().join("w1_slave");
    std::fs::write(
        &file,
        "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=21437\n",
    )
    .unwrap();
    let sub = MosquittoSub::start(&b, &["-t", "building1/room2/temperature3"]);
    let file = file.display().to_string();
    let out = run(
        "temperature_sensor",
        &b,
        &["--sensor-file", &file, "--interval", "0.05", "--count", "1"],
    );
    assert!(
        out.contains("Published 21.44 to building1/room2/temperature3"),
        "{out}"
    );
    assert_eq!(sub.wait_for_messages(1), ["21.44"]);
}

#[test]
fn led_actuator_follows_commands_and_drives_gpio() {
    let b = broker();
    // A stand-in for /sys/class/gpio with pins 17 and 27 already exported.
    let gpio = TempDir::new("gpio");
    for pin in ["gpio17", "gpio27"] {
        std::fs::create_dir(gpio.path().join(pin)).unwrap();
    }
    let value = |pin: &str| std::fs::read_to_string(gpio.path().join(pin).join("value")).unwrap();
    let root = gpio.path().display().to_string();
    let mut led = start(
        "led_actuator",
        &b,
        &[
            "--count",
            "4",
            "--gpio-root",
            &root,
            "--green-pin",
            "17",
            "--red-pin",
            "27",
        ],
    );
    expect_text(&led, "Waiting for GREEN, RED or OFF on 'home/led'", &b);
    for pin in ["gpio17", "gpio27"] {
        let direction = std::fs::read_to_string(gpio.path().join(pin).join("direction"));
        assert_eq!(direction.unwrap(), "out");
    }

    publish(&b, &["-t", "home/led", "-m", "GREEN", "-q", "1"]);
    expect_text(&led, "LED is GREEN", &b);
    assert_eq!((value("gpio17"), value("gpio27")), ("1".into(), "0".into()));
    publish(&b, &["-t", "home/led", "-m", "RED", "-q", "1"]);
    expect_text(&led, "LED is RED", &b);
    assert_eq!((value("gpio17"), value("gpio27")), ("0".into(), "1".into()));
    publish(&b, &["-t", "home/led", "-m", "BLUE", "-q", "1"]);
    expect_text(&led, "Ignoring unknown command 'BLUE'", &b);
    publish(&b, &["-t", "home/led", "-m", "OFF", "-q", "1"]);
    let out = expect_success(&mut led, &b);
    assert!(out.contains("LED is OFF"), "{out}");
    assert_eq!((value("gpio17"), value("gpio27")), ("0".into(), "0".into()));

    // The last state is retained for late subscribers.
    let mut state = MosquittoSub::spawn(&b, &["-t", "home/led/state", "-C", "1", "-v"]);
    assert_eq!(state.wait_exit(), Some(0), "{}", state.output());
    assert_eq!(state.messages(), ["home/led/state OFF"]);
}

/// Width and height from a PNG's IHDR.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // The IEND chunk and its CRC, which is the same in every PNG: checks the encoder's CRC-32.
    assert!(png.ends_with(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82]));
    assert_eq!(&png[12..16], b"IHDR");
    let be = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    (be(16), be(20))
}

// 1280 x 1366 RGB pixels stored uncompressed: a message of more than 5 MB at QoS 1.
#[test]
fn image_request_system_carries_a_five_megabyte_picture() {
    let b = broker();
    let mut camera = start(
        "camera_service",
        &b,
        &[
            "--source",
            "test-pattern",
            "--width",
            "1280",
            "--height",
            "1366",
            "--count",
            "1",
        ],
    );
    expect_text(&camera, "Waiting for requests on 'camera/request'", &b);
    let dir = TempDir::new("image");
    let photo = dir.path().join("photo.png");
    let out = run(
        "image_requester",
        &b,
        &[
            "--output",
            &photo.display().to_string(),
            "--message",
            "photo-1",
        ],
    );
    let image = std::fs::read(&photo).expect("the requester saved the picture");
    assert!(image.len() > 5_000_000, "{} bytes", image.len());
    assert_eq!(png_size(&image), (1280, 1366));
    assert!(
        out.contains(&format!(
            "Saved {}-byte PNG image to '{}'",
            image.len(),
            photo.display()
        )),
        "{out}"
    );
    let served = expect_success(&mut camera, &b);
    assert!(
        served.contains(&format!(
            "Sent {}-byte PNG test pattern to 'camera/image' (request 'photo-1')",
            image.len()
        )),
        "{served}"
    );
}

// With no usable webcam (a device path that does not exist), `--source auto` falls back to
// the test pattern.
#[test]
fn camera_service_falls_back_to_a_test_pattern() {
    let b = broker();
    let mut camera = start(
        "camera_service",
        &b,
        &[
            "--device",
            "/nonexistent/video0",
            "--width",
            "64",
            "--height",
            "48",
            "--count",
            "1",
        ],
    );
    expect_text(&camera, "Waiting for requests", &b);
    let dir = TempDir::new("image");
    let photo = dir.path().join("photo.png");
    run(
        "image_requester",
        &b,
        &["--output", &photo.display().to_string()],
    );
    assert_eq!(png_size(&std::fs::read(&photo).unwrap()), (64, 48));
    let out = expect_success(&mut camera, &b);
    assert!(
        out.contains("cannot capture from /nonexistent/video0"),
        "{out}"
    );
    assert!(out.contains("sending a test pattern instead"), "{out}");
}

// Windows are short and their boundaries fall wherever the scheduler puts them, so the test
// does not assume which window a reading lands in: it checks that every reading is counted
// once and the averages, weighted by their counts, add up to the readings' sum.
#[test]
fn aggregator_averages_every_group_per_window() {
    let b = broker();
    let mut agg = start("aggregator", &b, &["--window", "0.3"]);
    expect_text(&agg, "Averaging 'groups/+/temperature'", &b);
    let summary = MosquittoSub::start(&b, &["-t", "summary/temperature"]);
    for (topic, value) in [
        ("groups/g1/temperature", "20"),
        ("groups/g2/temperature", "23.5"),
        ("groups/g3/temperature", "warm"),
        ("groups/g2/temperature", "22.5"),
        ("other/g4/temperature", "99"),
    ] {
        publish(&b, &["-t", topic, "-m", value, "-q", "1"]);
    }
    let windows = |out: &str| -> Vec<(u64, f64)> {
        out.lines()
            .filter_map(|l| l.strip_prefix("Average of "))
            .filter_map(|l| {
                let (count, rest) = l.split_once(" readings from ")?;
                let (_, avg) = rest.rsplit_once(": ")?;
                Some((count.parse().ok()?, avg.parse().ok()?))
            })
            .collect()
    };
    assert!(
        agg.wait_for(|out| windows(out).iter().map(|w| w.0).sum::<u64>() >= 3),
        "aggregator:\n{}",
        agg.output()
    );
    let out = agg.output();
    let seen = windows(&out);
    assert_eq!(seen.iter().map(|w| w.0).sum::<u64>(), 3, "{out}");
    let total: f64 = seen.iter().map(|&(n, avg)| n as f64 * avg).sum();
    assert!((total - 66.0).abs() < 0.02 * seen.len() as f64, "{out}");
    assert!(
        out.contains("Ignoring 'warm' on 'groups/g3/temperature': not a number"),
        "{out}"
    );
    let published: Vec<f64> = summary
        .wait_for_messages(seen.len())
        .iter()
        .map(|m| m.parse().unwrap())
        .collect();
    assert_eq!(published, seen.iter().map(|w| w.1).collect::<Vec<_>>());
    agg.signal("INT");
    expect_success(&mut agg, &b);
}

#[test]
fn air_purifier_switches_on_above_the_threshold() {
    let b = broker();
    let mut purifier = start(
        "air_purifier",
        &b,
        &["--threshold", "1000", "--hysteresis", "100", "--count", "2"],
    );
    expect_text(&purifier, "Purifier OFF; on above 1000 ppm", &b);
    let sensor = run(
        "air_quality_sensor",
        &b,
        &["--values", "800,1200,950,850", "--interval", "0.05"],
    );
    assert!(
        sensor.contains("Published CO2 1200 ppm to home/livingroom/co2"),
        "{sensor}"
    );
    let out = expect_success(&mut purifier, &b);
    let lines: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(
        lines,
        [
            "CO2 800 ppm: purifier stays OFF",
            "CO2 1200 ppm > 1000 ppm: purifier ON",
            "CO2 950 ppm: purifier stays ON",
            "CO2 850 ppm <= 900 ppm: purifier OFF",
        ],
        "{out}"
    );
    let mut state = MosquittoSub::spawn(&b, &["-t", "home/livingroom/purifier", "-C", "1"]);
    assert_eq!(state.wait_exit(), Some(0), "{}", state.output());
    assert_eq!(state.messages(), ["OFF"]);
}

#[test]
fn air_quality_sensor_simulates_a_rising_co2_level() {
    let b = broker();
    let help = example_cmd("air_quality_sensor", &b, &["--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("[default: 30]"),
        "every 30 s by default:\n{help}"
    );

    let sub = MosquittoSub::start(&b, &["-t", "home/livingroom/co2"]);
    run(
        "air_quality_sensor",
        &b,
        &["--interval", "0.05", "--count", "3"],
    );
    let ppm: Vec<u32> = sub
        .wait_for_messages(3)
        .iter()
        .map(|m| m.parse().unwrap())
        .collect();
    assert_eq!(ppm.len(), 3);
    assert!((470..=570).contains(&ppm[0]), "{ppm:?}");
    assert!(ppm[0] < ppm[1] && ppm[1] < ppm[2], "{ppm:?}");
}

#[test]
fn request_response_matches_answers_by_correlation_data() {
    let b = broker();
    let mut responder = start("request_response", &b, &["responder", "--count", "3"]);
    expect_text(&responder, "Answering requests on 'service/uppercase'", &b);
    let out = run("request_response", &b, &["requester", "hello", "world"]);
    assert!(
        out.contains("Response 'HELLO' to request 'hello' (correlation data 'req-1')"),
        "{out}"
    );
    assert!(
        out.contains("Response 'WORLD' to request 'world' (correlation data 'req-2')"),
        "{out}"
    );
    // pigeon-rr asks the same responder from the shell.
    let rr = Command::new(env!("CARGO_BIN_EXE_pigeon-rr"))
        .args(["-h", "127.0.0.1", "-p", &b.port().to_string()])
        .args([
            "-t",
            "service/uppercase",
            "-e",
            "replies/shell",
            "-m",
            "from the shell",
        ])
        .output()
        .unwrap();
    assert!(rr.status.success(), "{rr:?}");
    assert_eq!(String::from_utf8_lossy(&rr.stdout).trim(), "FROM THE SHELL");
    let served = expect_success(&mut responder, &b);
    assert!(
        served.contains("Request 'hello' (correlation data 'req-1'): answering on 'replies/"),
        "{served}"
    );
}

// Two requests at once: the second may arrive while the first picture is in flight, and is
// served after it, not lost.
#[test]
fn camera_service_serves_requests_that_arrive_together() {
    let b = broker();
    let mut camera = start(
        "camera_service",
        &b,
        &[
            "--source",
            "test-pattern",
            "--width",
            "800",
            "--height",
            "600",
            "--count",
            "2",
        ],
    );
    expect_text(&camera, "Waiting for requests", &b);
    let dir = TempDir::new("image");
    let mut requesters: Vec<Background> = ["a", "b"]
        .iter()
        .map(|name| {
            let output = dir.path().join(format!("{name}.png"));
            let output = output.display().to_string();
            start(
                "image_requester",
                &b,
                &["--output", &output, "--message", name],
            )
        })
        .collect();
    for r in &mut requesters {
        expect_success(r, &b);
    }
    for name in ["a", "b"] {
        let png = std::fs::read(dir.path().join(format!("{name}.png"))).unwrap();
        assert_eq!(png_size(&png), (800, 600));
    }
    let served = expect_success(&mut camera, &b);
    for request in ["(request 'a')", "(request 'b')"] {
        assert!(served.contains(request), "{served}");
    }
}
