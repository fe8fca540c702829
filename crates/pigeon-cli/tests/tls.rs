//! TLS listeners: `certfile`, `keyfile`, `cafile`, `require_certificate`,
//! `use_identity_as_username`, certificates read again on SIGHUP; with Debian's
//! `mosquitto_pub`/`mosquitto_sub` and paho-mqtt as clients. Every certificate is made here
//! with rcgen. Only 127.0.0.1 is used.
//!
//! Started as root, the broker reads the files as the `mosquitto` user: the directory is
//! 0755 and the files 0644.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use pigeon_test::{
    Background, Broker, MosquittoSub, PATIENCE, TempDir, mosquitto_pub, publish, python,
    run_pigeon, signal, wait_until, write_readable,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType,
    IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams, SerialNumber,
    date_time_ymd,
};

const PIGEON: &str = env!("CARGO_BIN_EXE_pigeon");

fn pigeon() -> PathBuf {
    pigeon_test::broker_binary(PIGEON)
}

/// A certificate authority made for a test.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate and its key (PEM) for `names` (SANs) with Common Name `cn`.
    fn issue(&self, cn: &str, names: &[&str]) -> (String, String) {
        self.issue_with(cn, names, |_| {})
    }

    /// As [`Ca::issue`], with the parameters changed by `edit` (validity, serial number).
    fn issue_with(
        &self,
        cn: &str,
        names: &[&str],
        edit: impl FnOnce(&mut CertificateParams),
    ) -> (String, String) {
        let names: Vec<String> = names.iter().map(|&n| n.to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        edit(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// The files of a test: a CA, the server's certificate for 127.0.0.1 and localhost signed by
/// it, and client certificates.
struct Pki {
    dir: TempDir,
    ca: Ca,
    ca_file: String,
    cert_file: String,
    key_file: String,
}

impl Pki {
    fn new() -> Pki {
        let dir = TempDir::new("tls");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let ca = Ca::new("Pigeon test CA");
        let ca_file = write_readable(dir.path(), "ca.pem", &ca.pem());
        let (cert, key) = ca.issue("localhost", &["localhost", "127.0.0.1"]);
        let cert_file = write_readable(dir.path(), "server.pem", &cert);
        let key_file = write_readable(dir.path(), "server.key", &key);
        Pki {
            dir,
            ca,
            ca_file,
            cert_file,
            key_file,
        }
    }

    /// A client certificate with Common Name `cn`, signed by `ca`: (cert file, key file).
    fn client(&self, ca: &Ca, cn: &str) -> (String, String) {
        self.client_with(ca, cn, |_| {})
    }

    /// As [`Pki::client`], with the parameters changed by `edit`.
    fn client_with(
        &self,
        ca: &Ca,
        cn: &str,
        edit: impl FnOnce(&mut CertificateParams),
    ) -> (String, String) {
        let (cert, key) = ca.issue_with(cn, &[], edit);
        (
            write_readable(self.dir.path(), &format!("{cn}.pem"), &cert),
            write_readable(self.dir.path(), &format!("{cn}.key"), &key),
        )
    }

    /// The listener's TLS lines.
    fn server_config(&self) -> String {
        format!("certfile {}\nkeyfile {}\n", self.cert_file, self.key_file)
    }
}

#[test]
fn mosquitto_clients_round_trip_over_tls() {
    let pki = Pki::new();
    let broker = Broker::start(pigeon(), &pki.server_config(), &[]);
    let sub = MosquittoSub::start(&broker, &["--cafile", &pki.ca_file, "-t", "tls/#", "-v"]);
    publish(
        &broker,
        &[
            "--cafile",
            &pki.ca_file,
            "-t",
            "tls/a",
            "-m",
            "secret",
            "-q",
            "1",
        ],
    );
    sub.wait_for_message("tls/a secret");
    // Plain MQTT on the TLS listener is refused, and said so.
    let plain = mosquitto_pub(&broker, &["-t", "tls/a", "-m", "x"]);
    assert!(!plain.status.success());
    assert!(
        broker.wait_for_log("TLS handshake with 127.0.0.1:"),
        "{}",
        broker.log()
    );
    assert!(
        broker
            .log()
            .contains("Client <unknown> disconnected: Protocol error.")
    );
}

#[test]
fn a_server_certificate_from_another_ca_is_refused_by_the_client() {
    let pki = Pki::new();
    let broker = Broker::start(pigeon(), &pki.server_config(), &[]);
    let other = Ca::new("Another CA");
    let other_file = write_readable(pki.dir.path(), "other-ca.pem", &other.pem());
    let out = mosquitto_pub(&broker, &["--cafile", &other_file, "-t", "t", "-m", "x"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        broker.wait_for_log("TLS handshake with"),
        "{}",
        broker.log()
    );
}

#[test]
fn require_certificate_accepts_signed_clients_only() {
    let pki = Pki::new();
    let config = format!(
        "{}cafile {}\nrequire_certificate true\n",
        pki.server_config(),
        pki.ca_file
    );
    let broker = Broker::start(pigeon(), &config, &[]);
    let (cert, key) = pki.client(&pki.ca, "client-1");
    publish(
        &broker,
        &[
            "--cafile",
            &pki.ca_file,
            "--cert",
            &cert,
            "--key",
            &key,
            "-t",
            "t",
            "-m",
            "ok",
        ],
    );
    let out = mosquitto_pub(&broker, &["--cafile", &pki.ca_file, "-t", "t", "-m", "x"]);
    assert!(!out.status.success(), "accepted without a certificate");
    assert!(
        broker.wait_for_log("peer did not return a certificate"),
        "{}",
        broker.log()
    );
    let rogue = Ca::new("Rogue CA");
    let (cert, key) = pki.client(&rogue, "mallory");
    let out = mosquitto_pub(
        &broker,
        &[
            "--cafile",
            &pki.ca_file,
            "--cert",
            &cert,
            "--key",
            &key,
            "-t",
            "t",
            "-m",
            "x",
        ],
    );
    assert!(
        !out.status.success(),
        "accepted a certificate of another CA"
    );
    assert!(
        broker.wait_for_log("certificate verify failed"),
        "{}",
        broker.log()
    );
}

#[test]
fn use_identity_as_username_names_the_client_for_the_acl() {
    let pki = Pki::new();
    let acl = write_readable(
        pki.dir.path(),
        "acl",
        "user sensor-1\ntopic readwrite sensors/1/#\n",
    );
    let config = format!(
        "{}cafile {}\nrequire_certificate true\nuse_identity_as_username true\n\
         allow_anonymous false\nacl_file {acl}\n",
        pki.server_config(),
        pki.ca_file
    );
    let broker = Broker::start(pigeon(), &config, &[]);
    let (cert, key) = pki.client(&pki.ca, "sensor-1");
    let tls = ["--cafile", &pki.ca_file, "--cert", &cert, "--key", &key];
    let sub_args: Vec<&str> = tls.iter().copied().chain(["-t", "#", "-v"]).collect();
    let sub = MosquittoSub::start(&broker, &sub_args);
    for topic in ["other/t", "sensors/1/t"] {
        let args: Vec<&str> = tls
            .iter()
            .copied()
            .chain(["-t", topic, "-m", "v"])
            .collect();
        publish(&broker, &args);
    }
    assert_eq!(sub.wait_for_message("sensors/1/t v"), ["sensors/1/t v"]);
    assert!(broker.log().contains("u'sensor-1'"), "{}", broker.log());
    // Another certificate of the same CA connects, but the ACL grants its name nothing.
    let (cert, key) = pki.client(&pki.ca, "sensor-2");
    let out = mosquitto_pub(
        &broker,
        &[
            "--cafile",
            &pki.ca_file,
            "--cert",
            &cert,
            "--key",
            &key,
            "-t",
            "sensors/1/t",
            "-m",
            "intruder",
        ],
    );
    assert!(out.status.success());
    assert!(broker.wait_for_log("u'sensor-2'"), "{}", broker.log());
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(sub.messages(), ["sensors/1/t v"]);
}

#[test]
fn paho_connects_with_tls_set() {
    let pki = Pki::new();
    let broker = Broker::start(pigeon(), &pki.server_config(), &[]);
    let script = r#"
import sys, threading
import paho.mqtt.client as mqtt
ca, port = sys.argv[1], int(sys.argv[2])
got = threading.Event()
def on_message(client, userdata, msg):
    print("message", msg.topic, msg.payload.decode())
    got.set()
def on_connect(client, userdata, flags, reason, properties):
    print("connected", reason)
    client.subscribe("paho/t", 1)
def on_subscribe(client, userdata, mid, reasons, properties):
    client.publish("paho/t", "over tls", qos=1)
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-tls")
c.tls_set(ca_certs=ca)
c.on_connect = on_connect
c.on_message = on_message
c.on_subscribe = on_subscribe
c.connect("127.0.0.1", port)
c.loop_start()
ok = got.wait(10)
c.disconnect()
c.loop_stop()
sys.exit(0 if ok else 1)
"#;
    let mut cmd = Command::new(python());
    cmd.arg("-u")
        .arg("-c")
        .arg(script)
        .arg(&pki.ca_file)
        .arg(broker.port().to_string());
    let mut p = Background::spawn(&mut cmd, "paho");
    let status = p.wait_exit(PATIENCE);
    assert!(
        status.is_some_and(|s| s.success()),
        "{}\nbroker log:\n{}",
        p.output(),
        broker.log()
    );
    assert!(
        p.output().contains("message paho/t over tls"),
        "{}",
        p.output()
    );
}

#[test]
fn sighup_reads_the_certificates_again() {
    let pki = Pki::new();
    let broker = Broker::start(pigeon(), &pki.server_config(), &[]);
    publish(&broker, &["--cafile", &pki.ca_file, "-t", "t", "-m", "1"]);
    // A new CA and server certificate in the same files.
    let renewed = Ca::new("Renewed CA");
    let renewed_file = write_readable(pki.dir.path(), "renewed-ca.pem", &renewed.pem());
    let (cert, key) = renewed.issue("localhost", &["localhost", "127.0.0.1"]);
    write_readable(pki.dir.path(), "server.pem", &cert);
    write_readable(pki.dir.path(), "server.key", &key);
    signal(broker.pid(), "HUP");
    assert!(wait_until(|| {
        mosquitto_pub(&broker, &["--cafile", &renewed_file, "-t", "t", "-m", "2"])
            .status
            .success()
    }));
    let old = mosquitto_pub(&broker, &["--cafile", &pki.ca_file, "-t", "t", "-m", "3"]);
    assert!(!old.status.success(), "the old certificate is still served");
}

#[test]
fn tls_version_is_the_lowest_version_accepted() {
    let pki = Pki::new();
    let config = format!("{}tls_version tlsv1.3\n", pki.server_config());
    let broker = Broker::start(pigeon(), &config, &[]);
    publish(&broker, &["--cafile", &pki.ca_file, "-t", "t", "-m", "x"]);
    // OpenSSL's client limited to one version: only 1.3 gets through.
    let handshake = |version: &str| {
        Command::new("openssl")
            .args(["s_client", "-connect", &broker.addr().to_string(), version])
            .args(["-CAfile", &pki.ca_file])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl")
            .status
            .success()
    };
    assert!(handshake("-tls1_3"));
    assert!(!handshake("-tls1_2"), "TLS 1.2 accepted");
}

#[test]
fn the_handshake_is_bounded_by_connect_timeout() {
    let pki = Pki::new();
    let config = format!("{}connect_timeout 1\n", pki.server_config());
    let broker = Broker::start(pigeon(), &config, &[]);
    // A client that never starts its handshake does not hold the accept loop: another
    // connects meanwhile.
    let idle = std::net::TcpStream::connect(broker.addr()).unwrap();
    publish(&broker, &["--cafile", &pki.ca_file, "-t", "t", "-m", "x"]);
    assert!(
        broker.wait_for_log("Client <unknown> has exceeded timeout, disconnecting."),
        "{}",
        broker.log()
    );
    drop(idle);
}

#[test]
fn use_subject_as_username_takes_the_whole_subject() {
    let pki = Pki::new();
    let config = format!(
        "{}cafile {}\nrequire_certificate true\nuse_subject_as_username true\n\
         allow_anonymous false\n",
        pki.server_config(),
        pki.ca_file
    );
    let broker = Broker::start(pigeon(), &config, &[]);
    let (cert, key) = pki.client(&pki.ca, "sensor-9");
    publish(
        &broker,
        &[
            "--cafile",
            &pki.ca_file,
            "--cert",
            &cert,
            "--key",
            &key,
            "-t",
            "t",
            "-m",
            "x",
        ],
    );
    assert!(broker.wait_for_log("u'CN=sensor-9'"), "{}", broker.log());
}

/// Runs `pigeon -c FILE` with `config` and returns its standard error; it must fail.
fn refused(dir: &Path, config: &str) -> String {
    let conf = write_readable(dir, "bad.conf", config);
    let out = run_pigeon(pigeon(), &[OsStr::new("-c"), OsStr::new(&conf)]);
    assert!(!out.status.success(), "{config} was accepted");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn inconsistent_tls_settings_are_configuration_errors() {
    let pki = Pki::new();
    let dir = pki.dir.path();
    let conf = dir.join("bad.conf").display().to_string();
    let e = refused(
        dir,
        &format!("listener 18883 127.0.0.1\ncertfile {}\n", pki.cert_file),
    );
    assert!(
        e.contains(&format!(
            "{conf}:2: certfile: a TLS listener needs keyfile as well"
        )),
        "{e}"
    );
    let e = refused(
        dir,
        &format!(
            "listener 18883 127.0.0.1\n{}require_certificate true\n",
            pki.server_config()
        ),
    );
    assert!(
        e.contains(&format!("{conf}:4: require_certificate: needs cafile")),
        "{e}"
    );
    let encrypted = write_readable(
        dir,
        "enc.key",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    let e = refused(
        dir,
        &format!(
            "listener 18883 127.0.0.1\ncertfile {}\nkeyfile {encrypted}\n",
            pki.cert_file
        ),
    );
    assert!(
        e.contains(":3: keyfile: ") && e.contains("encrypted"),
        "{e}"
    );
    let e = refused(
        dir,
        &format!(
            "listener 18883 127.0.0.1\n{}ciphers RC4-MD5\n",
            pki.server_config()
        ),
    );
    assert!(
        e.contains(":4: ciphers: no cipher suite rustls offers"),
        "{e}"
    );
}

/// Valid in 2020 only: long expired.
fn expired(params: &mut CertificateParams) {
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2021, 1, 1);
}

/// `mosquitto_pub` with a client certificate, over TLS checked against `ca_file`.
fn pub_with_cert(broker: &Broker, ca_file: &str, cert: &str, key: &str) -> std::process::Output {
    mosquitto_pub(
        broker,
        &[
            "--cafile", ca_file, "--cert", cert, "--key", key, "-t", "t", "-m", "x",
        ],
    )
}

#[test]
fn an_expired_client_certificate_is_refused() {
    let pki = Pki::new();
    let config = format!(
        "{}cafile {}\nrequire_certificate true\n",
        pki.server_config(),
        pki.ca_file
    );
    let broker = Broker::start(pigeon(), &config, &[]);
    let (cert, key) = pki.client_with(&pki.ca, "stale", expired);
    let out = pub_with_cert(&broker, &pki.ca_file, &cert, &key);
    assert!(!out.status.success(), "an expired certificate was accepted");
    assert!(
        broker.wait_for_log("certificate verify failed: certificate has expired"),
        "{}",
        broker.log()
    );
    // The same CA's current certificates still get through.
    let (cert, key) = pki.client(&pki.ca, "fresh");
    let out = pub_with_cert(&broker, &pki.ca_file, &cert, &key);
    assert!(out.status.success(), "{out:?}\n{}", broker.log());
}

#[test]
fn an_expired_server_certificate_is_refused_by_the_client() {
    let pki = Pki::new();
    let (cert, key) = pki
        .ca
        .issue_with("localhost", &["localhost", "127.0.0.1"], expired);
    let cert_file = write_readable(pki.dir.path(), "expired-server.pem", &cert);
    let key_file = write_readable(pki.dir.path(), "expired-server.key", &key);
    let config = format!("certfile {cert_file}\nkeyfile {key_file}\n");
    let broker = Broker::start(pigeon(), &config, &[]);
    let out = mosquitto_pub(&broker, &["--cafile", &pki.ca_file, "-t", "t", "-m", "x"]);
    assert!(
        !out.status.success(),
        "the client accepted an expired server certificate: {out:?}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("A TLS error occurred"),
        "{out:?}"
    );
    // OpenSSL's client ends the handshake with an alert that says why.
    assert!(
        broker.wait_for_log("failed: the client sent the alert CertificateExpired."),
        "{}",
        broker.log()
    );
    // --insecure skips only the host name check: expiry is still part of chain verification.
    let out = mosquitto_pub(
        &broker,
        &["--cafile", &pki.ca_file, "--insecure", "-t", "t", "-m", "x"],
    );
    assert!(!out.status.success(), "{out:?}");
}

#[test]
fn crlfile_refuses_revoked_client_certificates() {
    let pki = Pki::new();
    let (revoked_cert, revoked_key) = pki.client_with(&pki.ca, "revoked", |p| {
        p.serial_number = Some(SerialNumber::from(0x1001_u64));
    });
    let (good_cert, good_key) = pki.client_with(&pki.ca, "good", |p| {
        p.serial_number = Some(SerialNumber::from(0x1002_u64));
    });
    let crl = CertificateRevocationListParams {
        this_update: date_time_ymd(2024, 1, 1),
        next_update: date_time_ymd(2099, 1, 1),
        crl_number: SerialNumber::from(1_u64),
        issuing_distribution_point: None,
        revoked_certs: vec![RevokedCertParams {
            serial_number: SerialNumber::from(0x1001_u64),
            revocation_time: date_time_ymd(2024, 1, 1),
            reason_code: Some(RevocationReason::KeyCompromise),
            invalidity_date: None,
        }],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&pki.ca.issuer)
    .unwrap();
    let crl_file = write_readable(pki.dir.path(), "ca.crl", &crl.pem().unwrap());
    let config = format!(
        "{}cafile {}\nrequire_certificate true\ncrlfile {crl_file}\n",
        pki.server_config(),
        pki.ca_file
    );
    let broker = Broker::start(pigeon(), &config, &[]);
    let out = pub_with_cert(&broker, &pki.ca_file, &revoked_cert, &revoked_key);
    assert!(!out.status.success(), "a revoked certificate was accepted");
    assert!(
        broker.wait_for_log("certificate verify failed: certificate revoked"),
        "{}",
        broker.log()
    );
    let out = pub_with_cert(&broker, &pki.ca_file, &good_cert, &good_key);
    assert!(out.status.success(), "{out:?}\n{}", broker.log());
}

#[test]
fn capath_reads_every_certificate_in_the_directory() {
    let pki = Pki::new();
    let capath = pki.dir.path().join("cas");
    fs::create_dir(&capath).unwrap();
    fs::set_permissions(&capath, fs::Permissions::from_mode(0o755)).unwrap();
    // Plain names, not OpenSSL's `<subject hash>.0`: Pigeon parses every regular file of
    // the directory and skips what holds no certificate.
    write_readable(&capath, "test-ca.pem", &pki.ca.pem());
    write_readable(&capath, "README", "not a certificate\n");
    let config = format!(
        "{}capath {}\nrequire_certificate true\n",
        pki.server_config(),
        capath.display()
    );
    let broker = Broker::start(pigeon(), &config, &[]);
    let (cert, key) = pki.client(&pki.ca, "by-capath");
    let out = pub_with_cert(&broker, &pki.ca_file, &cert, &key);
    assert!(out.status.success(), "{out:?}\n{}", broker.log());
    let rogue = Ca::new("Rogue CA");
    let (rogue_cert, rogue_key) = pki.client(&rogue, "mallory");
    let out = pub_with_cert(&broker, &pki.ca_file, &rogue_cert, &rogue_key);
    assert!(
        !out.status.success(),
        "accepted a certificate of another CA"
    );
    assert!(
        broker.wait_for_log("certificate verify failed: unable to get local issuer"),
        "{}",
        broker.log()
    );
    // OpenSSL (mosquitto_pub's --capath, and Mosquitto's capath) looks CAs up by subject
    // hash only: the same directory does not verify the server for it until hashed.
    let capath_str = capath.display().to_string();
    let by_capath = || {
        mosquitto_pub(
            &broker,
            &[
                "--capath",
                &capath_str,
                "--cert",
                &cert,
                "--key",
                &key,
                "-t",
                "t",
                "-m",
                "x",
            ],
        )
    };
    let out = by_capath();
    assert!(
        !out.status.success(),
        "OpenSSL found a CA under a plain name"
    );
    assert!(
        broker.wait_for_log("failed: the client sent the alert UnknownCA."),
        "{}",
        broker.log()
    );
    let rehash = Command::new("openssl")
        .args(["rehash", &capath_str])
        .status()
        .expect("openssl");
    assert!(rehash.success());
    let out = by_capath();
    assert!(
        out.status.success(),
        "OpenSSL did not find the hashed CA: {out:?}\n{}",
        broker.log()
    );
}

#[test]
fn capath_without_a_certificate_is_a_configuration_error() {
    let pki = Pki::new();
    let dir = pki.dir.path();
    let empty = dir.join("empty");
    fs::create_dir(&empty).unwrap();
    write_readable(&empty, "README", "nothing here\n");
    let e = refused(
        dir,
        &format!(
            "listener 18883 127.0.0.1\n{}capath {}\nrequire_certificate true\n",
            pki.server_config(),
            empty.display()
        ),
    );
    assert!(
        e.contains(":4: capath: ") && e.contains("no CA certificate"),
        "{e}"
    );
}

// pigeon-pub and pigeon-sub over TLS with --cafile, and with --cert/--key where the listener
// requires a client certificate; a CA that did not sign the server is refused.
#[test]
fn pigeon_tools_round_trip_over_tls() {
    let pki = Pki::new();
    let config = format!(
        "{}cafile {}\nrequire_certificate true\n",
        pki.server_config(),
        pki.ca_file
    );
    let broker = Broker::start(pigeon(), &config, &[]);
    let (cert, key) = pki.client(&pki.ca, "tool");
    let port = broker.port().to_string();
    let tls = [
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "--cafile",
        &pki.ca_file,
        "--cert",
        &cert,
        "--key",
        &key,
    ];
    let publish_ok = || {
        Command::new(env!("CARGO_BIN_EXE_pigeon-pub"))
            .args(tls)
            .args(["-t", "tls/1", "-m", "secret", "-q", "1", "-r"])
            .env("XDG_CONFIG_HOME", "/nonexistent")
            .status()
            .expect("pigeon-pub")
            .success()
    };
    // Retained, so that the subscriber started next gets it whenever it subscribes.
    assert!(publish_ok(), "{}", broker.log());
    let sub = Command::new(env!("CARGO_BIN_EXE_pigeon-sub"))
        .args(tls)
        .args(["-t", "tls/#", "-v", "-C", "1", "-W", "10"])
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("pigeon-sub");
    let out = sub.wait_with_output().expect("pigeon-sub output");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "tls/1 secret\n");

    // A CA that did not sign the server's certificate: the client refuses the broker.
    let rogue = Ca::new("Rogue CA");
    let rogue_file = write_readable(pki.dir.path(), "rogue.pem", &rogue.pem());
    let status = Command::new(env!("CARGO_BIN_EXE_pigeon-pub"))
        .args(["-h", "127.0.0.1", "-p", &port, "--cafile", &rogue_file])
        .args(["--cert", &cert, "--key", &key, "-t", "tls/1", "-m", "x"])
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .status()
        .expect("pigeon-pub");
    assert!(!status.success());
}
