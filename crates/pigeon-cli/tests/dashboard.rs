//! The dashboard in a real browser: Debian's `chromium`, headless, with a fresh profile,
//! driven by `playwright-core` from Node (tests/js/dashboard_check.js). The page is served by
//! the broker's HTTP listener, logs in with an MQTT username and password (a wrong one is
//! refused), renders thousands of retained topics published before it loaded, shows a topic a
//! TCP client (`mosquitto_pub`) publishes with its value (and not one its ACL hides), publishes
//! from its form to a TCP subscriber (`mosquitto_sub`; a topic the ACL does not let it write
//! never arrives), subscribes from its form, charts a topic, keeps up with thousands of live
//! topics, and lists the connected clients with their protocol versions, queues and
//! subscriptions. A second test serves it over HTTPS, where it connects over `wss://`. The screenshot is saved as
//! `target/test-artifacts/dashboard.png`. Only 127.0.0.1 is used.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use pigeon_test::{
    Background, Broker, MosquittoSub, PATIENCE, TempDir, free_port, publish, python, wait_until,
    wait_until_for, write_readable,
};

const PIGEON: &str = env!("CARGO_BIN_EXE_pigeon");
const PIGEON_PASSWD: &str = env!("CARGO_BIN_EXE_pigeon-passwd");
/// Distinct topics published at once while the page is open.
const LOAD_TOPICS: usize = 3000;
/// Distinct retained topics published before the page loads.
const RETAINED_TOPICS: usize = 5000;
/// Publishes N = argv[2] topics PREFIX/I/J (I < N/100, PREFIX = argv[3]) with payload
/// I*100+J at QoS 1 as alice, to port argv[1], retained when argv[4] is "retain".
const LOAD: &str = r"
import sys
import paho.mqtt.client as mqtt
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id='loader')
c.username_pw_set('alice', 'apass')
c.connect('127.0.0.1', int(sys.argv[1]))
c.loop_start()
prefix, retain = sys.argv[3], sys.argv[4] == 'retain'
infos = [c.publish(f'{prefix}/{i // 100}/{i % 100}', str(i), qos=1, retain=retain)
         for i in range(int(sys.argv[2]))]
for info in infos:
    info.wait_for_publish(30)
c.disconnect()
c.loop_stop()
";

fn js_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed in {}: run scripts/test (ensure_node_packages), or \
         `npm ci` there",
        dir.display()
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        Path::new(&chromium).is_file(),
        "no Chromium at {chromium}: apt-get install chromium (scripts/test does)"
    );
    dir
}

#[test]
fn dashboard_in_chromium_shows_topics_and_publishes() {
    let js = js_dir();
    let dir = TempDir::new("dashboard");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let pw = pigeon_test::password_file(
        PIGEON_PASSWD,
        dir.path(),
        "pw",
        &[("alice", "apass"), ("bob", "bpass")],
    );
    // The dashboard logs in as alice, who may not read secret/.
    let acl = write_readable(
        dir.path(),
        "acl",
        "user alice\ntopic readwrite dash/#\ntopic readwrite load/#\ntopic readwrite retained/#\n\n\
         user bob\ntopic readwrite #\n",
    );
    let (ws, http) = (free_port(), free_port());
    let broker = Broker::start(
        PIGEON,
        &format!(
            "allow_anonymous false\npassword_file {}\nacl_file {acl}\nhttp_listener {http}\n\
             listener {ws} 127.0.0.1\nprotocol websockets\n",
            pw.display()
        ),
        &[],
    );
    for port in [ws, http] {
        assert!(
            wait_until(|| broker.listening_addrs().iter().any(|a| a.port() == port)),
            "nothing listens on {port}:\n{}",
            broker.log()
        );
    }
    // Bob may read everything: what the page publishes where alice may not write must not
    // reach him.
    let sub = MosquittoSub::start(
        &broker,
        &[
            "-t",
            "dash/from-browser",
            "-t",
            "secret/from-browser",
            "-i",
            "tcp-watcher",
            "-u",
            "bob",
            "-P",
            "bpass",
        ],
    );
    load(&broker, RETAINED_TOPICS, "retained", true);
    let screenshot =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts/dashboard.png");
    let _ = fs::remove_file(&screenshot);
    let mut node = Background::spawn(
        Command::new("node")
            .current_dir(&js)
            .arg("dashboard_check.js")
            .arg(format!("http://127.0.0.1:{http}/"))
            .args(["alice", "apass", "wrong"])
            .arg(&screenshot)
            .env("LOAD_TOPICS", LOAD_TOPICS.to_string())
            .env("RETAINED_TOPICS", RETAINED_TOPICS.to_string())
            .env("CLIENT_ID", "tcp-watcher"),
        "node dashboard_check.js",
    );
    // Chromium may take a while to start on a busy machine.
    let ready = wait_until_for(PATIENCE * 6, || {
        let out = node.output();
        out.contains("ready ") || out.contains("error ")
    });
    assert!(
        ready && node.output().contains("ready connected to ws://127.0.0.1"),
        "{}\nbroker:\n{}",
        node.output(),
        broker.log()
    );
    assert!(
        node.output()
            .contains("refused Cannot connect: login refused"),
        "{}",
        node.output()
    );
    publish(
        &broker,
        &["-t", "secret/x", "-m", "42", "-u", "bob", "-P", "bpass"],
    );
    publish(
        &broker,
        &[
            "-t",
            "dash/temp",
            "-m",
            "21.5",
            "-u",
            "alice",
            "-P",
            "apass",
        ],
    );
    // Thousands of topics at once, from paho-mqtt.
    assert!(
        wait_until_for(PATIENCE * 6, || {
            let out = node.output();
            out.contains("waiting-load") || out.contains("error ")
        }),
        "{}",
        node.output()
    );
    load(&broker, LOAD_TOPICS, "load", false);
    let status = node.wait_exit(PATIENCE * 9);
    let out = node.output();
    assert_eq!(
        status.map(|s| s.success()),
        Some(true),
        "{out}\nbroker:\n{}",
        broker.log()
    );
    assert!(out.contains("seen dash/temp 21.5"), "{out}");
    assert!(out.contains("secret-rows 0"), "{out}");
    assert!(
        out.contains("published published to dash/from-browser at QoS 1 (acknowledged)"),
        "{out}"
    );
    assert!(out.contains(&format!("load {LOAD_TOPICS}")), "{out}");
    // Thousands of retained topics at once: every level counted, rows with their values, and
    // the filter narrows to one branch.
    let levels: usize = line_after(&out, "retained-levels ").parse().unwrap();
    assert!(levels > RETAINED_TOPICS, "{out}");
    assert_eq!(line_after(&out, "retained-first "), "0", "{out}");
    assert_eq!(
        line_after(&out, "retained-narrowed "),
        format!("100 {}", RETAINED_TOPICS - 1),
        "{out}"
    );
    // The forbidden message went first on the same connection at the same QoS: had the ACL
    // let it through, it would have arrived before this one.
    assert!(
        out.contains("published-forbidden published to secret/from-browser at QoS 1"),
        "{out}"
    );
    assert_eq!(sub.wait_for_messages(1), ["hello from chromium"]);
    // The clients panel: versions, queues and subscriptions.
    assert!(
        out.contains("client-row tcp-watcher|connected|3.1.1|0|dash/from-browser (q0), secret/from-browser (q0)"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("client-row pigeon-dashboard-")
                && l.contains("|connected|3.1.1|")
                && l.contains("# (q0)")
                && l.contains("dash/# (q2)")),
        "{out}"
    );
    assert!(out.contains("chart dash/temp\n"), "{out}");
    assert!(
        out.contains("subscribed subscribed to dash/# (granted QoS 2)"),
        "{out}"
    );
    let png = fs::read(&screenshot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG"),
        "not a PNG: {}",
        screenshot.display()
    );
    // The page logged in over MQTT as alice, through the WebSocket listener.
    assert!(broker.log().contains("u'alice'") || broker.log().contains("as pigeon-dashboard-"));
}

/// Publishes `count` topics `PREFIX/I/J` from paho-mqtt as alice (see [`LOAD`]).
fn load(broker: &Broker, count: usize, prefix: &str, retain: bool) {
    let out = Command::new(python())
        .args([
            "-c",
            LOAD,
            &broker.port().to_string(),
            &count.to_string(),
            prefix,
            if retain { "retain" } else { "live" },
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The rest of the first line of `out` that starts with `prefix`.
fn line_after<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{out}"))
}

/// The dashboard served over HTTPS (`http_certfile`, `http_keyfile`): the page picks the
/// `wss://` listener over the plain one listed before it (a secure page may not open `ws://`),
/// shows a topic a TCP client publishes and publishes to a TCP subscriber. The certificate
/// is self-signed, for 127.0.0.1; Chromium is told to accept it. Anonymous clients are
/// allowed here.
#[test]
fn dashboard_over_https_and_wss() {
    let js = js_dir();
    let dir = TempDir::new("dashboard-https");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = write_readable(dir.path(), "cert.pem", &certified.cert.pem());
    let key = write_readable(
        dir.path(),
        "key.pem",
        &certified.signing_key.serialize_pem(),
    );
    let (ws, wss, https) = (free_port(), free_port(), free_port());
    let broker = Broker::start(
        PIGEON,
        &format!(
            "http_listener {https}\nhttp_certfile {cert}\nhttp_keyfile {key}\n\
             listener {ws} 127.0.0.1\nprotocol websockets\n\
             listener {wss} 127.0.0.1\nprotocol websockets\ncertfile {cert}\nkeyfile {key}\n"
        ),
        &[],
    );
    for port in [ws, wss, https] {
        assert!(
            wait_until(|| broker.listening_addrs().iter().any(|a| a.port() == port)),
            "nothing listens on {port}:\n{}",
            broker.log()
        );
    }
    let sub = MosquittoSub::start(&broker, &["-t", "dash/from-browser"]);
    let screenshot = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/test-artifacts/dashboard-https.png");
    let _ = fs::remove_file(&screenshot);
    let mut node = Background::spawn(
        Command::new("node")
            .current_dir(&js)
            .arg("dashboard_check.js")
            .arg(format!("https://127.0.0.1:{https}/"))
            .args(["", "", ""])
            .arg(&screenshot)
            .env("IGNORE_TLS_ERRORS", "1"),
        "node dashboard_check.js",
    );
    let ready = wait_until_for(PATIENCE * 6, || {
        let out = node.output();
        out.contains("ready ") || out.contains("error ")
    });
    assert!(
        ready
            && node
                .output()
                .contains(&format!("ready connected to wss://127.0.0.1:{wss}/mqtt")),
        "{}\nbroker:\n{}",
        node.output(),
        broker.log()
    );
    publish(&broker, &["-t", "dash/temp", "-m", "21.5"]);
    let status = node.wait_exit(PATIENCE * 9);
    let out = node.output();
    assert_eq!(
        status.map(|s| s.success()),
        Some(true),
        "{out}\nbroker:\n{}",
        broker.log()
    );
    assert!(out.contains("seen dash/temp 21.5"), "{out}");
    assert_eq!(sub.wait_for_messages(1), ["hello from chromium"]);
    assert!(fs::read(&screenshot).unwrap().starts_with(b"\x89PNG"));
}
