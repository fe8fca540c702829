//! `pigeon-bench` against the real `pigeon` broker: every command runs briefly, and the tests
//! check what the tool reports (message counts, no loss at QoS 1, valid JSON), never how fast.
//!
//! The broker binary belongs to `pigeon-cli`, so Cargo does not build it for this package's
//! tests: it is looked for beside `pigeon-bench` in the target directory (a workspace build or
//! test run puts it there) and built with Cargo when it is missing. `$PIGEON_TEST_BROKER`
//! names another broker to run the same tests against (`/usr/sbin/mosquitto`).

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use pigeon_test::{Background, Broker, broker_binary, wait_until_for};
use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_pigeon-bench");

/// The `pigeon` broker binary of this build, built first if needed.
fn pigeon() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let bench = PathBuf::from(BENCH);
        let dir = bench.parent().expect("binary directory");
        let path = dir.join("pigeon");
        if !path.exists() {
            let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
            let mut cmd = Command::new(option_env!("CARGO").unwrap_or("cargo"));
            cmd.args([
                "build",
                "-p",
                "pigeon-cli",
                "--bin",
                "pigeon",
                "--manifest-path",
            ])
            .arg(&manifest);
            if dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo to build the pigeon broker");
            assert!(status.success(), "cargo could not build the pigeon broker");
        }
        assert!(path.exists(), "no broker binary at {}", path.display());
        path
    })
    .clone()
}

fn broker(config: &str) -> Broker {
    let binary = broker_binary(&pigeon().display().to_string());
    // The same socket option for every broker measured (see bench/compare.sh).
    Broker::start(binary, &format!("set_tcp_nodelay true\n{config}"), &[])
}

fn bench(broker: &Broker, args: &[&str]) -> Output {
    Command::new(BENCH)
        .args(["--port", &broker.port().to_string(), "--no-progress"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run pigeon-bench")
}

/// Runs the bench with `--json` and returns its results object.
fn results(broker: &Broker, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = bench(broker, &all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pigeon-bench {args:?} failed: {stderr}\n{stdout}\nbroker log:\n{}",
        broker.log()
    );
    let json: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    assert!(json["scenario"].is_string(), "{json}");
    json["results"].clone()
}

fn int(r: &Value, key: &str) -> u64 {
    r[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no integer {key} in {r}"))
}

fn num(r: &Value, key: &str) -> f64 {
    r[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no number {key} in {r}"))
}

/// Checks that every message published reached every subscriber that should see it, once.
fn assert_complete(r: &Value, deliveries_per_message: u64) {
    let sent = int(r, "sent");
    assert!(sent > 0, "nothing published: {r}");
    assert_eq!(int(r, "expected"), sent * deliveries_per_message, "{r}");
    assert_eq!(int(r, "received"), int(r, "expected"), "{r}");
    assert_eq!(int(r, "lost"), 0, "{r}");
    assert_eq!(int(r, "duplicates"), 0, "{r}");
}

#[test]
fn fanin_at_qos1_loses_nothing_and_counts_acks() {
    let b = broker("");
    let r = results(
        &b,
        &[
            "--pid",
            &b.pid().to_string(),
            "fanin",
            "--publishers",
            "4",
            "-q",
            "1",
            "-d",
            "1",
            "--backlog",
            "100",
        ],
    );
    assert_complete(&r, 1);
    assert_eq!(int(&r, "acked"), int(&r, "sent"), "{r}");
    assert_eq!(int(&r, "publishers"), 4);
    assert!(num(&r, "throughput") > 0.0, "{r}");
    // Broker and bench CPU are read from /proc.
    assert!(num(&r, "broker_cpu_s") >= 0.0, "{r}");
    assert!(num(&r, "bench_cpu_percent") >= 0.0, "{r}");
}

#[test]
fn fanout_delivers_each_message_to_every_subscriber() {
    let b = broker("");
    let r = results(
        &b,
        &[
            "fanout",
            "--subscribers",
            "5",
            "--rate",
            "300",
            "-d",
            "1",
            "-s",
            "1024",
        ],
    );
    assert_complete(&r, 5);
    assert_eq!(int(&r, "payload"), 1024);
}

#[test]
fn pairs_at_qos1_each_subscriber_gets_its_publisher() {
    let b = broker("");
    // A backlog far below the broker's default queue of 1,000 per client, even if a stall made
    // the bench write some of it off and send as much again.
    let r = results(
        &b,
        &[
            "pairs",
            "--pairs",
            "10",
            "-q",
            "1",
            "-d",
            "1",
            "--backlog",
            "100",
        ],
    );
    assert_complete(&r, 1);
    assert_eq!(int(&r, "acked"), int(&r, "sent"), "{r}");
}

#[test]
fn latency_reports_ordered_percentiles_at_a_fixed_rate() {
    let b = broker("");
    let r = results(&b, &["latency", "--rate", "200", "-d", "1"]);
    assert_complete(&r, 1);
    // A fixed rate: about 200 messages in one second, not a flood.
    let sent = int(&r, "sent");
    assert!((150..=250).contains(&sent), "{r}");
    let (p50, p99, p999, max) = (
        num(&r, "latency_p50_us"),
        num(&r, "latency_p99_us"),
        num(&r, "latency_p999_us"),
        num(&r, "latency_max_us"),
    );
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= p999 && p999 <= max, "{r}");
}

#[test]
fn retained_subscriber_receives_every_stored_message() {
    let b = broker("max_queued_messages 0");
    let r = results(&b, &["retained", "--topics", "2000", "--filter", "bench/#"]);
    assert_eq!(int(&r, "topics"), 2000);
    assert_eq!(int(&r, "received"), 2000, "{r}");
    assert_eq!(int(&r, "missing"), 0, "{r}");
    assert!(num(&r, "receive_all_ms") > 0.0, "{r}");
}

#[test]
fn conns_measures_the_brokers_memory_and_cpu_per_connection() {
    let b = broker("");
    let pid = b.pid().to_string();
    let r = results(
        &b,
        &["--pid", &pid, "conns", "-c", "300", "--settle", "0.2"],
    );
    assert_eq!(int(&r, "connected"), 300, "{r}");
    assert_eq!(int(&r, "failed"), 0, "{r}");
    assert!(int(&r, "broker_rss_after") > 0, "{r}");
    assert!(r["broker_rss_per_conn"].is_number(), "{r}");
    assert!(num(&r, "broker_cpu_us_per_connect") >= 0.0, "{r}");
    assert!(num(&r, "connects_per_s") > 0.0, "{r}");
    // Connections came from the four source addresses.
    for last in 1..=4 {
        let from = format!("from 127.0.0.{last}:");
        assert!(b.log().contains(&from), "no connection {from}\n{}", b.log());
    }
}

#[test]
fn conn_holds_connections_and_prints_a_table() {
    let b = broker("");
    let out = bench(&b, &["conn", "-c", "20", "--rate", "200", "--hold", "0.3"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("connected"))
        .unwrap_or_else(|| panic!("no connected line: {text}"));
    assert!(line.contains(" 20 "), "{text}");
}

#[test]
fn pub_and_sub_count_the_same_messages() {
    let b = broker("log_type all");
    let mut sub = Background::spawn(
        Command::new(BENCH).args([
            "--port",
            &b.port().to_string(),
            "--json",
            "sub",
            "-c",
            "2",
            "-t",
            "bench/x/#",
            "-q",
            "1",
            "-d",
            "20",
            "--limit",
            "100",
        ]),
        "pigeon-bench sub",
    );
    assert!(
        wait_until_for(Duration::from_secs(20), || b
            .log()
            .matches("Sending SUBACK to bench-sub")
            .count()
            == 2),
        "subscribers did not subscribe:\n{}",
        b.log()
    );
    let r = results(
        &b,
        &[
            "pub",
            "-c",
            "2",
            "--limit",
            "50",
            "-t",
            "bench/x/%i",
            "-q",
            "1",
        ],
    );
    assert_eq!(int(&r, "sent"), 100, "{r}");
    assert_eq!(int(&r, "acked"), 100, "{r}");
    let status = sub.wait_exit(Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "{}", sub.output());
    let json: Value = serde_json::from_str(sub.stdout().trim()).expect("sub JSON");
    // Each subscriber sees both publishers' 50 messages.
    assert_eq!(int(&json["results"], "received"), 200, "{json}");
}

#[test]
fn refuses_a_broker_that_is_not_on_this_machine() {
    let out = Command::new(BENCH)
        .args(["--host", "192.0.2.1", "conns", "-c", "1"])
        .output()
        .expect("run pigeon-bench");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a loopback address"), "{err}");
}

#[test]
fn refuses_payloads_too_small_for_the_stamp() {
    let b = broker("");
    let out = bench(&b, &["fanin", "-s", "8"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 16 bytes"), "{err}");
}
