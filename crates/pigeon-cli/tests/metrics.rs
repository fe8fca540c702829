//! The HTTP listener (`http_listener`): `/metrics` read by the Prometheus project's own
//! text-format parser (Python `prometheus_client.parser`, in the venv scripts/test makes), the
//! JSON API, access through the MQTT listeners' password file and ACL, and HTTPS with the
//! `http_certfile`... directives (Python's `ssl` as the client). Traffic comes from Debian's
//! `mosquitto_pub` and `mosquitto_sub`. Only 127.0.0.1 is used.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use pigeon_test::{
    Broker, MosquittoSub, PATIENCE, TempDir, free_port, publish, python, wait_until, write_readable,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

const PIGEON: &str = env!("CARGO_BIN_EXE_pigeon");
const PIGEON_PASSWD: &str = env!("CARGO_BIN_EXE_pigeon-passwd");

/// Fetches `/metrics` and parses it with `prometheus_client.parser`: sample name (with its
/// labels, as `name{k="v"}`) to value. Fails on anything the parser refuses.
/// Over HTTPS, argv[2] is the CA file, and argv[3] and argv[4] the client's certificate and key
/// if any.
const PARSE: &str = r#"
import ssl, sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
context = None
if len(sys.argv) > 2:
    context = ssl.create_default_context(cafile=sys.argv[2])
    if len(sys.argv) > 4:
        context.load_cert_chain(sys.argv[3], sys.argv[4])
text = urllib.request.urlopen(sys.argv[1], timeout=10, context=context).read().decode()
for family in text_string_to_metric_families(text):
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        name = s.name + ("{" + labels + "}" if labels else "")
        print(family.type, name, repr(float(s.value)))
"#;

fn http_broker(extra: &str) -> (Broker, u16) {
    let http = free_port();
    let broker = Broker::start(PIGEON, &format!("http_listener {http}\n{extra}"), &[]);
    assert!(
        wait_until(|| broker.listening_addrs().iter().any(|a| a.port() == http)),
        "no HTTP listener on {http}:\n{}",
        broker.log()
    );
    (broker, http)
}

/// The samples of `/metrics`: name to (type, value).
fn scrape(http: u16) -> HashMap<String, (String, f64)> {
    scrape_url(&format!("http://127.0.0.1:{http}/metrics"), &[])
}

/// The samples at `url`, with [`PARSE`]'s further arguments `tls`.
fn scrape_url(url: &str, tls: &[&str]) -> HashMap<String, (String, f64)> {
    let out = Command::new(python())
        .args(["-c", PARSE, url])
        .args(tls)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "prometheus_client could not read /metrics (pip install prometheus-client into the \
         venv: scripts/test does):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let mut parts = line.split(' ');
            let kind = parts.next().unwrap().to_owned();
            let name = parts.next().unwrap().to_owned();
            let value: f64 = parts.next().unwrap().parse().unwrap();
            (name, (kind, value))
        })
        .collect()
}

fn value(samples: &HashMap<String, (String, f64)>, name: &str) -> f64 {
    samples
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {samples:?}"))
        .1
}

/// A GET with optional Basic credentials: (status, body).
fn get(http: u16, path: &str, credentials: Option<(&str, &str)>) -> (u16, String) {
    use base64::Engine as _;
    let mut stream = TcpStream::connect(("127.0.0.1", http)).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let auth = credentials.map_or(String::new(), |(u, p)| {
        format!(
            "Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    });
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let status = reply
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad reply {reply:?}"));
    let body = reply
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[test]
fn metrics_parse_and_follow_the_traffic() {
    let (broker, http) = http_broker("");
    let before = scrape(http);
    for (name, kind) in [
        ("pigeon_messages_received_total", "counter"),
        ("pigeon_clients_connected", "gauge"),
        ("pigeon_retained_messages", "gauge"),
        ("pigeon_subscriptions", "gauge"),
        ("pigeon_bytes_received_total", "counter"),
        ("pigeon_auth_failures_total", "counter"),
        ("pigeon_queued_messages{client=\"connected\"}", "gauge"),
        ("process_resident_memory_bytes", "gauge"),
        ("pigeon_connections_parked", "gauge"),
    ] {
        assert_eq!(
            before.get(name).map(|(k, _)| k.as_str()),
            Some(kind),
            "{name}"
        );
    }
    assert!(value(&before, "process_resident_memory_bytes") > 0.0);
    let received = value(&before, "pigeon_messages_received_total");

    // Two messages at each QoS, to a subscriber granted QoS 2 (so each goes out at its own
    // QoS), and a retained one at QoS 0.
    let sub = MosquittoSub::start(&broker, &["-t", "m/#", "-v", "-q", "2"]);
    for i in 0..6 {
        let qos = (i % 3).to_string();
        publish(&broker, &["-t", "m/a", "-m", &format!("p{i}"), "-q", &qos]);
    }
    publish(&broker, &["-t", "m/kept", "-m", "21.5", "-r"]);
    sub.wait_for_messages(7);
    let after = scrape(http);
    assert!(value(&after, "pigeon_messages_received_total") >= received + 7.0);
    assert!(value(&after, "pigeon_messages_sent_total") >= 7.0);
    assert!(value(&after, "pigeon_clients_connected") >= 1.0);
    // The subscriber, idle between messages, parks (see ARCHITECTURE.md).
    let mut parked = value(&after, "pigeon_connections_parked");
    for _ in 0..100 {
        if parked >= 1.0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        parked = value(&scrape(http), "pigeon_connections_parked");
    }
    assert!(parked >= 1.0, "{parked} connections parked");
    assert!(value(&after, "pigeon_subscriptions") >= 1.0);
    assert!(value(&after, "pigeon_retained_messages") >= 1.0);
    assert!(
        value(&after, "pigeon_bytes_received_total")
            > value(&before, "pigeon_bytes_received_total")
    );
    assert!(value(&after, "pigeon_connections_total") >= 8.0);

    // By QoS: counters labelled qos="0|1|2", which add up to the totals.
    let by_qos = |samples: &HashMap<String, (String, f64)>, name: &str, qos: u8| {
        let sample = format!("pigeon_{name}_by_qos_total{{qos=\"{qos}\"}}");
        assert_eq!(
            samples.get(&sample).map(|(k, _)| k.as_str()),
            Some("counter"),
            "{sample}"
        );
        value(samples, &sample)
    };
    for (name, at_least) in [
        ("messages_received", [3.0, 2.0, 2.0]),
        ("messages_sent", [3.0, 2.0, 2.0]),
        // "p0".."p5" and "21.5": 2 bytes each, 4 for the retained one.
        ("payload_bytes_received", [8.0, 4.0, 4.0]),
        ("payload_bytes_sent", [8.0, 4.0, 4.0]),
    ] {
        let mut sum = 0.0;
        for qos in 0..3u8 {
            let grown = by_qos(&after, name, qos) - by_qos(&before, name, qos);
            assert!(
                grown >= at_least[usize::from(qos)],
                "{name} at QoS {qos} grew by {grown}"
            );
            sum += by_qos(&after, name, qos);
        }
        assert_eq!(
            sum,
            value(&after, &format!("pigeon_{name}_total")),
            "{name}"
        );
    }
    // The rest of the issue's list.
    for name in [
        "pigeon_messages_dropped_total",
        "pigeon_queued_messages{client=\"disconnected\"}",
        "pigeon_auth_failures_total",
        "pigeon_clients_total",
    ] {
        assert!(value(&after, name) >= 0.0, "{name}");
    }
    let (_, stats) = get(http, "/api/stats", None);
    assert!(
        stats.contains("\"messages_received_by_qos_total\":["),
        "{stats}"
    );
}

#[test]
fn json_api_lists_clients_subscriptions_retained_and_stats() {
    let (broker, http) = http_broker("");
    let _sub = MosquittoSub::start(&broker, &["-t", "j/#", "-i", "watcher", "-q", "1"]);
    let _v5 = MosquittoSub::start(
        &broker,
        &["-t", "j/a", "-t", "j/b", "-i", "five", "-V", "mqttv5"],
    );
    publish(&broker, &["-t", "j/temp", "-m", "19 \"C\"", "-r"]);
    // Connected clients show their protocol version, subscriptions and queue.
    let (status, clients) = get(http, "/api/clients", None);
    assert_eq!(status, 200);
    for expected in [
        "{\"client_id\":\"five\",\"connected\":true,\"queued\":0,\"protocol\":\"5.0\",\
         \"subscriptions\":2,\"offline_subscriptions\":0}",
        "{\"client_id\":\"watcher\",\"connected\":true,\"queued\":0,\"protocol\":\"3.1.1\",\
         \"subscriptions\":1,\"offline_subscriptions\":0}",
    ] {
        assert!(clients.contains(expected), "{clients}");
    }
    let (status, subs) = get(http, "/api/subscriptions", None);
    assert_eq!(status, 200);
    assert!(
        subs.contains("{\"filter\":\"j/#\",\"client_id\":\"watcher\",\"qos\":1}"),
        "{subs}"
    );
    let (_, retained) = get(http, "/api/retained?filter=j%2F%23", None);
    assert_eq!(
        retained,
        "[{\"topic\":\"j/temp\",\"qos\":0,\"size\":6,\"payload\":\"19 \\\"C\\\"\"}]"
    );
    let (_, stats) = get(http, "/api/stats", None);
    assert!(stats.contains("\"clients_connected\":2"), "{stats}");
    assert!(stats.contains("\"retained_messages\":"), "{stats}");
    let (_, info) = get(http, "/api/info", None);
    assert!(info.starts_with("{\"version\":"), "{info}");
    assert_eq!(get(http, "/api/nothing", None).0, 404);
    assert_eq!(get(http, "/api/retained?filter=a/%23/b", None).0, 400);
    // The dashboard is on by default.
    let (status, page) = get(http, "/", None);
    assert_eq!(status, 200);
    assert!(page.contains("<title>Pigeon"), "{page}");
}

#[test]
fn dashboard_can_be_turned_off() {
    let (_broker, http) = http_broker("http_dashboard false");
    assert_eq!(get(http, "/", None).0, 404);
    assert_eq!(get(http, "/metrics", None).0, 200);
}

#[test]
fn password_file_and_acl_guard_the_api() {
    let dir = TempDir::new("http-auth");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let pw = pigeon_test::password_file(
        PIGEON_PASSWD,
        dir.path(),
        "pw",
        &[("alice", "apass"), ("bob", "bpass")],
    );
    let acl = write_readable(
        dir.path(),
        "acl",
        "user alice\ntopic readwrite #\n\nuser bob\ntopic read bob/#\n",
    );
    let (broker, http) = http_broker(&format!(
        "allow_anonymous false\npassword_file {}\nacl_file {acl}\n",
        pw.display()
    ));
    for path in ["/metrics", "/api/clients", "/api/retained"] {
        assert_eq!(get(http, path, None).0, 401, "{path}");
        assert_eq!(get(http, path, Some(("alice", "wrong"))).0, 401, "{path}");
        assert_eq!(get(http, path, Some(("nobody", "x"))).0, 401, "{path}");
        assert_eq!(get(http, path, Some(("alice", "apass"))).0, 200, "{path}");
    }
    for topic in ["bob/x", "alice/y"] {
        publish(
            &broker,
            &["-t", topic, "-m", "v", "-r", "-u", "alice", "-P", "apass"],
        );
    }
    // mosquitto_pub (QoS 0) is gone before the broker has necessarily stored both.
    let mut all = String::new();
    assert!(
        wait_until(|| {
            all = get(http, "/api/retained", Some(("alice", "apass"))).1;
            all.contains("alice/y") && all.contains("bob/x")
        }),
        "{all}"
    );
    let (_, bobs) = get(http, "/api/retained", Some(("bob", "bpass")));
    assert!(
        bobs.contains("bob/x") && !bobs.contains("alice/y"),
        "{bobs}"
    );
    // The dashboard's files need no login: the page asks for one.
    assert_eq!(get(http, "/", None).0, 200);
}

/// A GET over HTTPS from Python's `ssl`, trusting argv[2]; argv[3] is `user:password` for
/// Basic authentication or empty. Prints the status, a newline and the body; a failed
/// handshake prints "tls-error".
const HTTPS_GET: &str = r"
import base64, ssl, sys, urllib.error, urllib.request
context = ssl.create_default_context(cafile=sys.argv[2])
request = urllib.request.Request(sys.argv[1])
if sys.argv[3]:
    request.add_header('Authorization', 'Basic ' + base64.b64encode(sys.argv[3].encode()).decode())
try:
    response = urllib.request.urlopen(request, timeout=10, context=context)
    print(response.status)
    sys.stdout.write(response.read().decode())
except urllib.error.HTTPError as e:
    print(e.code)
except (ssl.SSLError, urllib.error.URLError, ConnectionError) as e:
    print('tls-error', e)
";

/// (status line or "tls-error ...", body) of a GET of `url` over HTTPS.
fn https_get(url: &str, ca: &str, credentials: &str) -> (String, String) {
    let out = Command::new(python())
        .args(["-c", HTTPS_GET, url, ca, credentials])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (status, body) = text.split_once('\n').unwrap_or((&text, ""));
    (status.to_owned(), body.to_owned())
}

#[test]
fn https_with_the_http_tls_directives() {
    let pki = Pki::new();
    let dir = TempDir::new("https-auth");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let pw = dir.path().join("pw");
    let out = Command::new(PIGEON_PASSWD)
        .args(["-c", "-b", pw.to_str().unwrap(), "alice", "apass"])
        .output()
        .unwrap();
    assert!(out.status.success());
    fs::set_permissions(&pw, fs::Permissions::from_mode(0o644)).unwrap();
    let (broker, http) = http_broker(&format!(
        "http_certfile {}\nhttp_keyfile {}\nhttp_tls_version tlsv1.2\n\
         allow_anonymous false\npassword_file {}\n",
        pki.cert_file,
        pki.key_file,
        pw.display()
    ));
    let base = format!("https://127.0.0.1:{http}");
    // /metrics, through the Prometheus parser, with credentials in the URL's stead: a
    // request without them is refused.
    let (status, _) = https_get(&format!("{base}/metrics"), &pki.ca_file, "");
    assert_eq!(status, "401");
    let (status, text) = https_get(&format!("{base}/metrics"), &pki.ca_file, "alice:apass");
    assert_eq!(status, "200");
    assert!(
        text.contains("# TYPE pigeon_clients_connected gauge"),
        "{text}"
    );
    publish(
        &broker,
        &[
            "-t", "s/kept", "-m", "1", "-r", "-q", "2", "-u", "alice", "-P", "apass",
        ],
    );
    let (status, retained) = https_get(
        &format!("{base}/api/retained?filter=s/%23"),
        &pki.ca_file,
        "alice:apass",
    );
    assert_eq!(status, "200");
    assert_eq!(
        retained,
        "[{\"topic\":\"s/kept\",\"qos\":2,\"size\":1,\"payload\":\"1\"}]"
    );
    // The dashboard's page needs no login.
    let (status, page) = https_get(&format!("{base}/"), &pki.ca_file, "");
    assert_eq!(status, "200");
    assert!(page.contains("<title>Pigeon"), "{page}");
    // A certificate the client does not trust: no answer.
    let (status, _) = https_get(&format!("{base}/"), &pki.other_ca_file, "");
    assert!(status.starts_with("tls-error"), "{status}");
    // Plain HTTP on the HTTPS port gets no HTTP answer.
    let mut stream = TcpStream::connect(("127.0.0.1", http)).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    assert!(!reply.starts_with(b"HTTP/"), "{reply:?}");
}

#[test]
fn https_can_require_a_client_certificate() {
    let pki = Pki::new();
    let (_broker, http) = http_broker(&format!(
        "http_certfile {}\nhttp_keyfile {}\nhttp_cafile {}\nhttp_require_certificate true\n",
        pki.cert_file, pki.key_file, pki.ca_file
    ));
    let url = format!("https://127.0.0.1:{http}/metrics");
    // The MQTT listener allows anonymous clients, and so does the HTTP listener: only the
    // certificate stands in the way.
    let samples = scrape_url(
        &url,
        &[&pki.ca_file, &pki.client_cert_file, &pki.client_key_file],
    );
    assert!(
        samples.contains_key("pigeon_clients_connected"),
        "{samples:?}"
    );
    let (status, _) = https_get(&url, &pki.ca_file, "");
    assert!(status.starts_with("tls-error"), "{status}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate signed by it, and
/// another CA, in files the broker (running as `mosquitto`) can read.
struct Pki {
    _dir: TempDir,
    ca_file: String,
    other_ca_file: String,
    cert_file: String,
    key_file: String,
    client_cert_file: String,
    client_key_file: String,
}

impl Pki {
    fn new() -> Pki {
        let dir = TempDir::new("https");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let ca = |name: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
        };
        let (issuer, other) = (ca("Pigeon HTTPS test CA"), ca("Another CA"));
        let leaf = |names: Vec<String>, cn: &str| {
            let mut params = CertificateParams::new(names).unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(vec!["127.0.0.1".to_owned()], "127.0.0.1");
        let (client_cert, client_key) = leaf(Vec::new(), "prometheus");
        let dir_path = dir.path().to_owned();
        let write = |name: &str, text: &str| write_readable(&dir_path, name, text);
        Pki {
            ca_file: write("ca.pem", &issuer.pem()),
            other_ca_file: write("other.pem", &other.pem()),
            cert_file: write("server.pem", &server_cert),
            key_file: write("server.key", &server_key),
            client_cert_file: write("client.pem", &client_cert),
            client_key_file: write("client.key", &client_key),
            _dir: dir,
        }
    }
}

// With persistence, /metrics carries the store's latency as a Prometheus summary: batches
// written and synced (group commit) and the time they took, which grow as QoS 1 messages are
// stored; without persistence both stay 0.
#[test]
fn persistence_latency_is_a_summary() {
    let (plain, plain_http) = http_broker("");
    publish(&plain, &["-t", "p/x", "-m", "v", "-q", "1"]);
    let samples = scrape(plain_http);
    assert_eq!(
        samples
            .get("pigeon_persistence_sync_seconds_count")
            .map(|(k, v)| (k.as_str(), *v)),
        Some(("summary", 0.0))
    );

    let dir = TempDir::new("metrics-store");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let (broker, http) = http_broker(&format!(
        "persistence true\npersistence_location {}/\n",
        dir.path().display()
    ));
    let before = scrape(http);
    let count = value(&before, "pigeon_persistence_sync_seconds_count");
    let sum = value(&before, "pigeon_persistence_sync_seconds_sum");
    // QoS 1 messages retained: each one is stored before its PUBACK.
    for i in 0..3 {
        publish(
            &broker,
            &["-t", &format!("p/{i}"), "-m", "v", "-q", "1", "-r"],
        );
    }
    let after = scrape(http);
    assert!(
        value(&after, "pigeon_persistence_sync_seconds_count") > count,
        "{after:?}\nbroker log:\n{}",
        broker.log()
    );
    assert!(value(&after, "pigeon_persistence_sync_seconds_sum") > sum);
}
