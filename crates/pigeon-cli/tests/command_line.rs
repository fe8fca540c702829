//! The `pigeon` command line: `--test-config`, configuration errors, local-only mode without
//! a configuration file, and shutdown on SIGTERM.

use std::ffi::OsStr;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Output;

use pigeon_test::{Broker, MosquittoSub, TempDir, publish, run_pigeon};

const PIGEON: &str = env!("CARGO_BIN_EXE_pigeon");

fn pigeon(args: &[&OsStr]) -> Output {
    run_pigeon(PIGEON, args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `pigeon -c FILE [--test-config]` and asserts it fails, naming every one of `needles`
/// on standard error.
fn assert_config_error(file: &Path, test_config: bool, needles: &[&str]) {
    let mut args = vec![OsStr::new("-c"), file.as_os_str()];
    if test_config {
        args.push(OsStr::new("--test-config"));
    }
    let out = pigeon(&args);
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "pigeon {args:?} must fail; stdout:\n{}\nstderr:\n{stderr}",
        text(&out.stdout)
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{needle:?} missing from:\n{stderr}"
        );
    }
}

// A configuration in mosquitto.conf syntax passes --test-config; the broker exits 0 at once
// without listening.
#[test]
fn test_config_accepts_a_good_configuration() {
    let dir = TempDir::new("good-config");
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        "# A lab broker\n\
         per_listener_settings false\n\
         allow_anonymous true\n\
         \n\
         listener 1883\n\
         max_qos 2\n\
         listener 8883 127.0.0.1\n\
         max_inflight_messages 20\n\
         max_queued_messages 1000\n\
         retain_available true\n\
         persistence false\n\
         log_type error\n\
         log_type warning\n\
         log_timestamp true\n",
    )
    .unwrap();
    let out = pigeon(&[
        OsStr::new("-c"),
        conf.as_os_str(),
        OsStr::new("--test-config"),
    ]);
    assert!(
        out.status.success(),
        "--test-config failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

// A bad configuration is refused with an error naming the file, the line and the directive,
// by --test-config and by a normal start alike.
#[test]
fn configuration_errors_name_file_line_and_directive() {
    let dir = TempDir::new("bad-config");
    let cases = [
        (
            "bad-number.conf",
            "# comment\nmax_inflight_messages ten\n",
            ":2",
            "max_inflight_messages",
        ),
        (
            "unknown.conf",
            "allow_anonymous true\n\nbogus_option 1\n",
            ":3",
            "bogus_option",
        ),
        ("bad-port.conf", "listener 70000\n", ":1", "listener"),
        (
            "bad-qos.conf",
            "listener 1883\nallow_anonymous true\nmax_qos 3\n",
            ":3",
            "max_qos",
        ),
    ];
    for (name, contents, line, directive) in cases {
        let conf = dir.path().join(name);
        std::fs::write(&conf, contents).unwrap();
        let at = format!("{}{line}", conf.display());
        assert_config_error(&conf, true, &[&at, directive]);
        assert_config_error(&conf, false, &[&at, directive]);
    }
}

// An error in a file read through include_dir names that file.
#[test]
fn configuration_error_in_an_included_file_names_that_file() {
    let dir = TempDir::new("include-config");
    let conf_d = dir.path().join("conf.d");
    std::fs::create_dir(&conf_d).unwrap();
    std::fs::write(conf_d.join("10-ok.conf"), "max_queued_messages 100\n").unwrap();
    std::fs::write(
        conf_d.join("20-bad.conf"),
        "# second\nmax_packet_size lots\n",
    )
    .unwrap();
    let conf = dir.path().join("main.conf");
    std::fs::write(&conf, format!("include_dir {}\n", conf_d.display())).unwrap();
    let at = format!("{}:2", conf_d.join("20-bad.conf").display());
    assert_config_error(&conf, true, &[&at, "max_packet_size"]);
}

// A configuration file that cannot be read is named.
#[test]
fn missing_configuration_file_is_named() {
    let dir = TempDir::new("missing-config");
    let conf = dir.path().join("absent.conf");
    assert_config_error(&conf, true, &[&conf.display().to_string()]);
    assert_config_error(&conf, false, &[&conf.display().to_string()]);
}

fn ipv6_loopback_available() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

// Without a configuration file the broker runs in Mosquitto 2.0's local-only mode: it listens
// on the loopback addresses only (127.0.0.1 and ::1, port 1883 or -p PORT) and lets anonymous
// clients in.
#[test]
fn without_configuration_listens_on_loopback_only() {
    let mut b = Broker::start_local_only(PIGEON, &[]);
    let addrs = b.listening_addrs();
    let port = b.port();
    assert!(
        addrs.contains(&SocketAddr::from(([127, 0, 0, 1], port))),
        "{addrs:?}"
    );
    if ipv6_loopback_available() {
        assert!(
            addrs.contains(&SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port))),
            "{addrs:?}"
        );
    }
    assert!(
        addrs.iter().all(|a| a.ip().is_loopback()),
        "loopback only: {addrs:?}"
    );
    // Mosquitto prints the same line.
    assert!(
        b.wait_for_log(
            "Starting in local only mode. Connections will only be possible from clients \
             running on this machine."
        ),
        "{}",
        b.log()
    );
    // Anonymous clients are welcome.
    let mut sub = MosquittoSub::start(&b, &["-t", "local", "-C", "1"]);
    publish(&b, &["-t", "local", "-m", "hello"]);
    assert_eq!(sub.wait_exit(), Some(0), "{}", sub.output());
    assert_eq!(sub.messages(), ["hello"]);
    assert!(b.stop(), "exits 0 on SIGTERM:\n{}", b.log());
}

// SIGTERM stops the broker with exit status 0, as it does Mosquitto, even with clients
// connected.
#[test]
fn sigterm_stops_the_broker_cleanly() {
    let mut b = Broker::start(PIGEON, "", &[]);
    let _sub = MosquittoSub::start(&b, &["-t", "#"]);
    assert!(b.stop(), "exits 0 on SIGTERM:\n{}", b.log());
}

// Under systemd (Type=notify, NOTIFY_SOCKET set) the broker says READY=1 once its listeners
// accept connections, RELOADING=1 then READY=1 around a SIGHUP reload, and STOPPING=1 on
// SIGTERM (sd_notify(3)); packaging/pigeon.service relies on it.
#[test]
fn systemd_is_told_ready_reloading_and_stopping() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixDatagram;
    use std::process::Command;

    let dir = TempDir::new("notify");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    // Written to after the broker gives up root for `mosquitto`, as systemd's own socket
    // allows.
    for path in [dir.path(), socket_path.as_path()] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    socket
        .set_read_timeout(Some(pigeon_test::PATIENCE))
        .unwrap();
    let next = || {
        let mut buf = [0u8; 512];
        let n = socket
            .recv(&mut buf)
            .expect("a notification within the test's patience");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let port = pigeon_test::free_port();
    let mut cmd = Command::new(PIGEON);
    cmd.args(["-p", &port.to_string()])
        .env("NOTIFY_SOCKET", &socket_path);
    let mut broker = pigeon_test::Background::spawn(&mut cmd, "pigeon");

    let ready = next();
    assert_eq!(
        ready,
        format!("READY=1\nMAINPID={}", broker.pid()),
        "{}",
        broker.output()
    );
    // Ready means accepting.
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("listening once READY=1");

    broker.signal("HUP");
    let reloading = next();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading:?}"
    );
    assert_eq!(next(), "READY=1");

    broker.signal("TERM");
    assert_eq!(next(), "STOPPING=1");
    let status = broker.wait_exit(pigeon_test::PATIENCE);
    assert!(status.is_some_and(|s| s.success()), "{}", broker.output());
}
