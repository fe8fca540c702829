//! The Debian package: `cargo deb` (cargo-deb) packs this test build's binaries with the
//! files of packaging/, and the package is checked the way an installation would use it,
//! without installing it: `dpkg-deb -x` unpacks it into a temporary directory, the shipped
//! /etc/pigeon/pigeon.conf gets its paths rebased there, the systemd unit's ExecStart line runs
//! with its paths rebased the same way, the unpacked pigeon-sub and pigeon-pub round-trip a
//! message through it, and the unit's ExecReload line reloads it.
//!
//! Cost: cargo-deb only packs here (`--no-build`: the binaries are the ones Cargo built for
//! these tests, copied where cargo-deb looks for release binaries; `--strip --fast` keeps
//! the compression short).

use std::path::{Path, PathBuf};
use std::process::Command;

use pigeon_test::{Background, Broker, PATIENCE, TempDir, wait_until};

const BINARIES: [(&str, &str); 5] = [
    ("pigeon", env!("CARGO_BIN_EXE_pigeon")),
    ("pigeon-pub", env!("CARGO_BIN_EXE_pigeon-pub")),
    ("pigeon-sub", env!("CARGO_BIN_EXE_pigeon-sub")),
    ("pigeon-rr", env!("CARGO_BIN_EXE_pigeon-rr")),
    ("pigeon-passwd", env!("CARGO_BIN_EXE_pigeon-passwd")),
];

/// Builds the .deb into `work` and returns its path.
fn build_deb(work: &Path) -> PathBuf {
    let release = work.join("target/release");
    std::fs::create_dir_all(&release).unwrap();
    for (name, built) in BINARIES {
        let to = release.join(name);
        if std::fs::hard_link(built, &to).is_err() {
            std::fs::copy(built, &to).unwrap();
        }
    }
    let deb = work.join("pigeon.deb");
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // Cargo's variables for this test process are not for cargo-deb's `cargo metadata`.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("CARGO_") && key != "CARGO_HOME" {
            cmd.env_remove(&key);
        }
    }
    let out = cmd
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", work.join("target"))
        .args([
            "deb",
            "-p",
            "pigeon-cli",
            "--no-build",
            "--strip",
            "--fast",
            "-o",
        ])
        .arg(&deb)
        .output()
        .expect("run cargo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("no such command"),
        "cargo-deb is not installed: run scripts/test (ensure_cargo_deb), or `cargo install \
         cargo-deb --locked`"
    );
    assert!(out.status.success(), "cargo deb failed:\n{stderr}");
    deb
}

fn dpkg_deb(args: &[&std::ffi::OsStr]) {
    let out = Command::new("dpkg-deb")
        .args(args)
        .output()
        .expect("run dpkg-deb (Debian's dpkg package)");
    assert!(
        out.status.success(),
        "dpkg-deb {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `root` + `path` for an absolute `path` (the unpacked package's view of it).
fn rebase(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// The value of `Key=` in the unit's text.
fn unit_value<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in the unit:\n{unit}"))
}

#[test]
fn unpacked_deb_serves_clients_with_the_shipped_config() {
    let work = TempDir::new("deb");
    let deb = build_deb(work.path());
    let root = work.path().join("root");
    let control = work.path().join("control");
    dpkg_deb(&["-x".as_ref(), deb.as_os_str(), root.as_os_str()]);
    dpkg_deb(&["-e".as_ref(), deb.as_os_str(), control.as_os_str()]);

    // Control files: the configuration is a conffile; the maintainer scripts create the
    // user and directories, and enable the unit.
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    assert!(
        conffiles.lines().any(|l| l == "/etc/pigeon/pigeon.conf"),
        "{conffiles}"
    );
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    for needle in [
        "adduser --system --group",
        "/var/lib/pigeon /var/log/pigeon",
        "deb-systemd-helper enable pigeon.service",
    ] {
        assert!(
            postinst.contains(needle),
            "postinst lacks {needle:?}:\n{postinst}"
        );
    }
    for bin in [
        "usr/sbin/pigeon",
        "usr/bin/pigeon-pub",
        "usr/bin/pigeon-sub",
        "usr/bin/pigeon-rr",
        "usr/bin/pigeon-passwd",
    ] {
        assert!(root.join(bin).is_file(), "{bin} is not in the package");
    }

    // The unit.
    let unit_path = [
        "usr/lib/systemd/system/pigeon.service",
        "lib/systemd/system/pigeon.service",
    ]
    .iter()
    .map(|p| root.join(p))
    .find(|p| p.is_file())
    .expect("pigeon.service in the package");
    let unit = std::fs::read_to_string(unit_path).unwrap();
    assert_eq!(unit_value(&unit, "User"), "pigeon");
    // Type=notify: the broker's READY=1 is tested in tests/command_line.rs.
    assert_eq!(unit_value(&unit, "Type"), "notify");
    assert_eq!(unit_value(&unit, "NotifyAccess"), "main");
    let exec_start: Vec<&str> = unit_value(&unit, "ExecStart").split_whitespace().collect();
    assert_eq!(
        exec_start,
        ["/usr/sbin/pigeon", "-c", "/etc/pigeon/pigeon.conf"]
    );
    let exec_reload = unit_value(&unit, "ExecReload");
    assert_eq!(exec_reload, "/bin/kill -HUP $MAINPID");

    // The shipped configuration, its paths rebased. The unit runs the broker as pigeon
    // already; this test runs as root on a machine without that user, so `user pigeon`
    // (which only applies when started as root) becomes `user root`. The directories are
    // those the postinst and the unit's StateDirectory=/LogsDirectory= create.
    let conf_path = root.join("etc/pigeon/pigeon.conf");
    let shipped = std::fs::read_to_string(&conf_path).unwrap();
    for directive in [
        "user pigeon",
        "persistence true",
        "persistence_location /var/lib/pigeon/",
        "log_dest file /var/log/pigeon/pigeon.log",
        "include_dir /etc/pigeon/conf.d",
    ] {
        assert!(
            shipped.lines().any(|l| l == directive),
            "no {directive:?} in:\n{shipped}"
        );
    }
    let mut conf = shipped.replace("user pigeon", "user root");
    for dir in ["/etc/pigeon", "/var/lib/pigeon", "/var/log/pigeon"] {
        conf = conf.replace(dir, &rebase(&root, dir).display().to_string());
    }
    std::fs::write(&conf_path, conf).unwrap();
    for dir in ["var/lib/pigeon", "var/log/pigeon"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }

    // ExecStart, rebased; a conf.d drop-in (read through include_dir) opens the listener.
    let conf_d = root.join("etc/pigeon/conf.d");
    let argv: Vec<PathBuf> = exec_start
        .iter()
        .map(|a| {
            if a.starts_with('/') {
                rebase(&root, a)
            } else {
                PathBuf::from(a)
            }
        })
        .collect();
    let mut broker = Broker::start_with(&argv[0], |port, _| {
        std::fs::write(
            conf_d.join("test.conf"),
            format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
        )
        .unwrap();
        argv[1..].iter().map(|a| a.display().to_string()).collect()
    });
    let log_file = root.join("var/log/pigeon/pigeon.log");
    let log = || std::fs::read_to_string(&log_file).unwrap_or_default();
    assert!(
        wait_until(|| log().contains("running")),
        "log file:\n{}",
        log()
    );

    // The unpacked clients round-trip a message through the unpacked broker.
    let port = broker.port().to_string();
    let mut sub_cmd = Command::new(root.join("usr/bin/pigeon-sub"));
    sub_cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-t",
        "deb/test",
        "-C",
        "1",
        "-v",
    ]);
    let mut sub = Background::spawn(&mut sub_cmd, "pigeon-sub");
    assert!(
        wait_until(|| log().contains("Received SUBSCRIBE") || log().contains(" as ")),
        "{}",
        log()
    );
    // The subscription may still be in flight: publish until it arrives.
    let published = wait_until(|| {
        let out = Command::new(root.join("usr/bin/pigeon-pub"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-t",
                "deb/test",
                "-m",
                "from the deb",
                "-q",
                "1",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "pigeon-pub: {out:?}");
        sub.try_status().is_some()
    });
    assert!(
        published,
        "pigeon-sub got nothing:\n{}\nlog:\n{}",
        sub.output(),
        log()
    );
    let status = sub.wait_exit(PATIENCE);
    assert!(status.is_some_and(|s| s.success()), "{}", sub.output());
    assert_eq!(sub.stdout(), "deb/test from the deb\n");

    // ExecReload, with $MAINPID the broker's.
    let reload = exec_reload.replace("$MAINPID", &broker.pid().to_string());
    let out = Command::new("sh").args(["-c", &reload]).output().unwrap();
    assert!(out.status.success(), "{reload}: {out:?}");
    assert!(
        wait_until(|| log().contains("Reloading config.")),
        "{}",
        log()
    );
    broker.assert_running("after ExecReload");
    assert!(broker.stop(), "log:\n{}", log());
}
