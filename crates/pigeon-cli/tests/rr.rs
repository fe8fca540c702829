//! `pigeon-rr` next to Debian's `mosquitto_rr` (2.0.11): the same flags give the same
//! standard output and exit status, against Pigeon's broker and against Mosquitto. A
//! responder written with pigeon-client answers every request on its Response Topic with
//! `answer:<request>`, QoS 1.

use std::process::{Command, Output};
use std::sync::mpsc;
use std::thread::JoinHandle;

use pigeon_client::{Client, ConnectOptions, Event, Protocol, Publish, QoS};
use pigeon_test::Broker;

const PIGEON: &str = env!("CARGO_BIN_EXE_pigeon");
const PIGEON_RR: &str = env!("CARGO_BIN_EXE_pigeon-rr");

fn brokers() -> Vec<(&'static str, Broker)> {
    vec![
        (
            "pigeon",
            Broker::start(pigeon_test::broker_binary(PIGEON), "", &[]),
        ),
        ("mosquitto", Broker::start("/usr/sbin/mosquitto", "", &[])),
    ]
}

/// Answers `count` requests on `req`, then leaves; returns once subscribed.
fn responder(port: u16, count: usize) -> JoinHandle<()> {
    let (ready, subscribed) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let options = ConnectOptions::new("127.0.0.1", port).protocol(Protocol::V5);
            let (client, mut events) = Client::connect(options).await.expect("connect");
            client
                .subscribe("req", QoS::AtLeastOnce)
                .await
                .expect("subscribe");
            ready.send(()).expect("ready");
            let mut answered = 0;
            while answered < count {
                let Some(event) = events.recv().await else {
                    break;
                };
                let Event::Message(m) = event else { continue };
                let Some(topic) = m.properties.response_topic.clone() else {
                    continue;
                };
                let mut payload = b"answer:".to_vec();
                payload.extend_from_slice(&m.payload);
                let answer = Publish {
                    qos: QoS::AtLeastOnce,
                    ..Publish::new(topic, bytes::Bytes::from(payload))
                };
                client
                    .send(answer)
                    .await
                    .expect("send")
                    .await
                    .expect("answer");
                answered += 1;
            }
            let _ = client.disconnect().await;
        });
    });
    subscribed.recv().expect("responder subscribed");
    handle
}

fn run(program: &str, port: u16, args: &[&str]) -> Output {
    let program = if program == "mosquitto_rr" {
        pigeon_test::tool("mosquitto_rr")
    } else {
        program.into()
    };
    Command::new(program)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("run")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Both tools' (status, stdout, stderr), the program's name in stderr made `TOOL`.
fn both(port: u16, args: &[&str], answers: bool) -> [(Option<i32>, String, String); 2] {
    ["mosquitto_rr", PIGEON_RR].map(|program| {
        let r = answers.then(|| responder(port, 1));
        let out = run(program, port, args);
        if let Some(r) = r {
            r.join().expect("responder");
        }
        (
            out.status.code(),
            text(&out.stdout),
            text(&out.stderr)
                .replace("mosquitto_rr", "TOOL")
                .replace("pigeon-rr", "TOOL"),
        )
    })
}

#[test]
fn request_and_response_like_mosquitto_rr() {
    for (name, b) in brokers() {
        for (args, want) in [
            (&[][..], "answer:hello\n"),
            (&["-v"][..], "resp answer:hello\n"),
            (&["-N"][..], "answer:hello"),
            (
                &["-q", "1", "-F", "%t|%p|%q|%r"][..],
                "resp|answer:hello|1|0\n",
            ),
            (&["-q", "2", "-v"][..], "resp answer:hello\n"),
            (&["-V", "5", "-F", "%j"][..], ""),
        ] {
            let mut all = vec!["-t", "req", "-e", "resp", "-m", "hello", "-W", "5"];
            all.extend_from_slice(args);
            let [m, p] = both(b.port(), &all, true);
            assert_eq!(p.0, Some(0), "{name} {args:?}: {p:?}");
            assert_eq!(m.0, p.0, "{name} {args:?}");
            if args.contains(&"%j") {
                // The JSON has a timestamp: compare from the topic on.
                let tail = |s: &str| s[s.find("\"topic\"").unwrap_or(0)..].to_owned();
                assert_eq!(tail(&m.1), tail(&p.1), "{name} {args:?}");
            } else {
                assert_eq!(m.1, want, "{name} {args:?} (mosquitto_rr)");
                assert_eq!(p.1, want, "{name} {args:?} (pigeon-rr)");
            }
        }
    }
}

#[test]
fn file_stdin_and_empty_requests() {
    let (_, b) = brokers().remove(0);
    let dir = tempfile_dir();
    let file = dir.join("request");
    std::fs::write(&file, "from a file").expect("write");
    let f = file.display().to_string();
    for args in [["-f", f.as_str()], ["-n", "-v"]] {
        let mut all = vec!["-t", "req", "-e", "resp", "-W", "5"];
        all.extend_from_slice(&args);
        let [m, p] = both(b.port(), &all, true);
        assert_eq!(p.0, Some(0));
        if args[0] == "-f" {
            // mosquitto_rr 2.0.11 sends an empty request for -f; pigeon-rr sends the file.
            assert_eq!(m.1, "answer:\n");
            assert_eq!(p.1, "answer:from a file\n");
        } else {
            assert_eq!(m, p, "{args:?}");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pigeon-rr-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

// No answer: "Timed out" on standard error, exit status 27; --quiet silences it.
#[test]
fn timeout() {
    for (name, b) in brokers() {
        let args = ["-t", "req", "-e", "resp", "-m", "x", "-W", "1"];
        for result in both(b.port(), &args, false) {
            assert_eq!(
                result,
                (Some(27), String::new(), "Timed out\n".into()),
                "{name}"
            );
        }
        let mut quiet = args.to_vec();
        quiet.push("--quiet");
        for result in both(b.port(), &quiet, false) {
            assert_eq!(result, (Some(27), String::new(), String::new()), "{name}");
        }
    }
}

// -d: the same lines (client identifiers aside), DISCONNECT only after a time-out.
#[test]
fn debug_lines() {
    let (_, b) = brokers().remove(1);
    let strip = |s: &str| {
        s.lines()
            .map(
                |l| match l.split_once(" sending ").or(l.split_once(" received ")) {
                    Some(_) => {
                        let rest = l.split_once(' ').map_or(l, |x| x.1);
                        rest.split_once(' ').map_or(rest, |x| x.1).to_owned()
                    }
                    None => l.to_owned(),
                },
            )
            .collect::<Vec<_>>()
    };
    for (args, answers) in [
        (&["-d", "-q", "1", "-W", "5"][..], true),
        (&["-d", "-q", "2", "-W", "5"][..], true),
        (&["-d", "-W", "1"][..], false),
    ] {
        let mut all = vec!["-t", "req", "-e", "resp", "-m", "hi"];
        all.extend_from_slice(args);
        let [m, p] = both(b.port(), &all, answers);
        assert_eq!(m.0, p.0, "{args:?}");
        assert_eq!(strip(&m.1), strip(&p.1), "{args:?}");
    }
}

// -V 311 is accepted (mosquitto_rr 2.0.11 connects with MQTT 3.1.1 and the request has no
// Response Topic, so nothing answers); an unknown version is a command-line error.
#[test]
fn protocol_versions() {
    let (_, b) = brokers().remove(0);
    let args = ["-t", "req", "-e", "resp", "-m", "x", "-W", "1", "-V", "311"];
    for result in both(b.port(), &args, false) {
        assert_eq!(result, (Some(27), String::new(), "Timed out\n".into()));
    }
    let [m, p] = both(
        b.port(),
        &["-t", "req", "-e", "resp", "-m", "x", "-V", "4"],
        false,
    );
    assert_eq!(p.0, Some(1));
    assert_eq!((&m.0, &m.1), (&p.0, &p.1));
    assert!(
        p.2.starts_with("Error: Invalid protocol version argument given.\n"),
        "{p:?}"
    );
}

#[test]
fn bad_command_lines() {
    let port = pigeon_test::free_port();
    let base = ["-t", "req", "-e", "resp", "-m", "x"];
    for extra in [
        &["-C", "3"][..],
        &["-r"][..],
        &["-l"][..],
        &["-E"][..],
        &["--bogus"][..],
        &["-q", "3"][..],
        &["-F", "%Z"][..],
        &["-D", "publish", "response-topic", "x"][..],
    ] {
        let mut all = base.to_vec();
        all.extend_from_slice(extra);
        let [m, p] = both(port, &all, false);
        assert_eq!(m, p, "{extra:?}");
        assert_eq!(p.0, Some(1));
    }
    for args in [
        &["-t", "req", "-m", "x"][..],
        &["-e", "resp", "-m", "x"][..],
        &["-t", "req", "-e", "resp"][..],
        &["-t", "req", "-e", "resp/#", "-m", "x"][..],
        &["-t", "req/+", "-e", "resp", "-m", "x"][..],
    ] {
        let [m, p] = both(port, args, false);
        assert_eq!(m, p, "{args:?}");
        assert_eq!(p.0, Some(1));
    }
}

// Nothing listening: "Error: Connection refused", exit status 1.
#[test]
fn unreachable_broker() {
    let port = pigeon_test::free_port();
    let [m, p] = both(port, &["-t", "req", "-e", "resp", "-m", "x"], false);
    assert_eq!(m, p);
    assert_eq!(
        p,
        (Some(1), String::new(), "Error: Connection refused\n".into())
    );
}
