//! `password_file` and `acl_file`: Pigeon authenticates clients and checks topic access as
//! Debian's Mosquitto 2.0.11 does. Most tests run the same scenario against both brokers,
//! started with the same files, and compare.
//!
//! Needs Debian's `mosquitto` package (the broker and `mosquitto_passwd`) besides
//! `mosquitto-clients`. Started as root, both brokers read the files as the `mosquitto` user:
//! the temporary directories are 0755 and the files 0644.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pigeon_test::{Broker, MosquittoSub, TempDir, mosquitto_pub, publish, signal, wait_until};

const PIGEON: &str = env!("CARGO_BIN_EXE_pigeon");
const PIGEON_PASSWD: &str = env!("CARGO_BIN_EXE_pigeon-passwd");

/// A program from Debian's `mosquitto` package, on `PATH` or in /usr/sbin.
fn mosquitto_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed: `apt-get install mosquitto` (Debian's broker package)")
        })
}

/// The two brokers, by name.
fn brokers() -> [(&'static str, PathBuf); 2] {
    [
        ("pigeon", pigeon_test::broker_binary(PIGEON)),
        ("mosquitto", mosquitto_tool("mosquitto")),
    ]
}

/// Runs `program ARGS`, asserting success.
fn run_ok(program: impl AsRef<Path>, args: &[&str]) {
    let out = Command::new(program.as_ref())
        .args(args)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{} {args:?}: {}\n{}",
        program.as_ref().display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes a password file with `users` (name, password) using `tool` (`mosquitto_passwd` or
/// `pigeon-passwd`, which take the same arguments).
fn password_file(tool: impl AsRef<Path>, path: &Path, users: &[(&str, &str)]) {
    for (i, (user, password)) in users.iter().enumerate() {
        let p = path.to_str().unwrap();
        if i == 0 {
            run_ok(&tool, &["-c", "-b", p, user, password]);
        } else {
            run_ok(&tool, &["-b", p, user, password]);
        }
    }
    // `mosquitto_passwd -c` makes the file 0600: readable by root only.
    let mut perms = fs::metadata(path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    fs::set_permissions(path, perms).unwrap();
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// How a CONNECT with `args` (`-u`, `-P`, `-V 5`...) ends: mosquitto_pub's exit code (the
/// CONNACK return code in 3.1.1, the reason code in 5.0) and its error line.
fn connect_result(b: &Broker, args: &[&str]) -> (Option<i32>, String) {
    let mut all = vec!["-t", "t", "-m", "x"];
    all.extend_from_slice(args);
    let out = mosquitto_pub(b, &all);
    let error = text(&out)
        .lines()
        .find(|l| l.starts_with("Connection error"))
        .unwrap_or_default()
        .to_owned();
    (out.status.code(), error)
}

#[test]
fn passwords_are_checked_with_mosquittos_codes_and_log_lines() {
    let dir = TempDir::new("auth-pw");
    let pw = dir.path().join("pw");
    password_file(
        mosquitto_tool("mosquitto_passwd"),
        &pw,
        &[("alice", "apass"), ("bob", "b p:ss")],
    );
    let config = format!("allow_anonymous false\npassword_file {}\n", pw.display());
    let cases: &[(&str, &[&str])] = &[
        ("good", &["-u", "alice", "-P", "apass"]),
        ("spaces", &["-u", "bob", "-P", "b p:ss"]),
        ("wrong password", &["-u", "alice", "-P", "wrong"]),
        ("unknown user", &["-u", "zed", "-P", "apass"]),
        ("no password", &["-u", "alice"]),
        ("anonymous", &[]),
    ];
    let mut results = Vec::new();
    for (name, binary) in brokers() {
        let b = Broker::start(&binary, &config, &["-v"]);
        let mut got = Vec::new();
        for (case, args) in cases {
            for v5 in [false, true] {
                let mut args = args.to_vec();
                if v5 {
                    args.extend(["-V", "5"]);
                }
                got.push((*case, v5, connect_result(&b, &args)));
            }
        }
        // Never the password in the log.
        let log = b.log();
        assert!(!log.contains("apass") && !log.contains("wrong"), "{log}");
        assert!(
            log.contains("Client <unknown> disconnected, not authorised."),
            "{name}: {log}"
        );
        results.push((name, got, log));
    }
    let (pigeon, mosquitto) = (&results[0], &results[1]);
    assert_eq!(pigeon.1, mosquitto.1, "pigeon vs mosquitto");
    // What Mosquitto 2.0.11 answers: success, or Not authorized (5, 0x87) for every failure.
    for (case, v5, (code, error)) in &pigeon.1 {
        let expected = match (*case, *v5) {
            ("good" | "spaces", _) => 0,
            (_, false) => 5,
            (_, true) => 0x87,
        };
        assert_eq!(*code, Some(expected), "{case} v5={v5}: {error}");
    }
    // The same log lines for a refusal.
    for (_, _, log) in &results {
        assert!(log.contains("Sending CONNACK to 127.0.0.1 (0, 5)"), "{log}");
        assert!(
            log.contains("Sending CONNACK to 127.0.0.1 (0, 135)"),
            "{log}"
        );
    }
}

#[test]
fn files_from_pigeon_passwd_and_mosquitto_passwd_both_work() {
    let dir = TempDir::new("auth-tools");
    let from_pigeon = dir.path().join("pigeon-pw");
    let from_mosquitto = dir.path().join("mosquitto-pw");
    password_file(PIGEON_PASSWD, &from_pigeon, &[("p", "pp"), ("q", "qq")]);
    password_file(
        mosquitto_tool("mosquitto_passwd"),
        &from_mosquitto,
        &[("m", "mm")],
    );
    for (name, binary) in brokers() {
        for (file, user, password) in [(&from_pigeon, "q", "qq"), (&from_mosquitto, "m", "mm")] {
            let config = format!("allow_anonymous false\npassword_file {}\n", file.display());
            let b = Broker::start(&binary, &config, &[]);
            let ok = connect_result(&b, &["-u", user, "-P", password]);
            assert_eq!(
                ok.0,
                Some(0),
                "{name} {}: {ok:?}\n{}",
                file.display(),
                b.log()
            );
            let bad = connect_result(&b, &["-u", user, "-P", "nope"]);
            assert_eq!(bad.0, Some(5), "{name} {}: {bad:?}", file.display());
        }
    }
}

#[test]
fn an_authentication_method_is_refused_as_mosquitto_does() {
    for (name, binary) in brokers() {
        let b = Broker::start(&binary, "", &["-v"]);
        let (code, error) = connect_result(
            &b,
            &["-V", "5", "-D", "connect", "authentication-method", "SCRAM"],
        );
        assert_eq!(code, Some(0x8C), "{name}: {error}\n{}", b.log());
        assert!(
            b.wait_for_log("disconnected due to QoS too high or retain not supported."),
            "{name}: {}",
            b.log()
        );
    }
}

#[test]
fn an_unreadable_password_file_stops_the_start_and_a_reload_keeps_the_old_one() {
    let dir = TempDir::new("auth-missing");
    let missing = dir.path().join("missing");
    let conf = dir.path().join("pigeon.conf");
    fs::write(
        &conf,
        format!(
            "listener 0 127.0.0.1\npassword_file {}\n",
            missing.display()
        ),
    )
    .unwrap();
    let out = Command::new(PIGEON).arg("-c").arg(&conf).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains(&format!(
            "Error: Unable to open pwfile \"{}\"",
            missing.display()
        )),
        "{}",
        text(&out)
    );

    // Running, the file disappears: the reload is refused, the users stay.
    let pw = dir.path().join("pw");
    password_file(PIGEON_PASSWD, &pw, &[("alice", "apass")]);
    let b = Broker::start(
        PIGEON,
        &format!("allow_anonymous false\npassword_file {}\n", pw.display()),
        &[],
    );
    fs::remove_file(&pw).unwrap();
    signal(b.pid(), "HUP");
    assert!(b.wait_for_log("Unable to open pwfile"), "{}", b.log());
    assert_eq!(
        connect_result(&b, &["-u", "alice", "-P", "apass"]).0,
        Some(0)
    );
    // A new file is read by the next reload.
    password_file(PIGEON_PASSWD, &pw, &[("alice", "new")]);
    signal(b.pid(), "HUP");
    assert!(wait_until(|| connect_result(
        &b,
        &["-u", "alice", "-P", "new"]
    )
    .0 == Some(0)));
    assert_eq!(
        connect_result(&b, &["-u", "alice", "-P", "apass"]).0,
        Some(5)
    );
}

// ---------------------------------------------------------------------------------------------
// The ACL matrix
// ---------------------------------------------------------------------------------------------

const ACL: &str = "\
# Anonymous clients
topic read public/#
topic deny public/secret
topic write anon/in

user alice
topic readwrite a/#
topic deny a/secret
topic read $SYS/broker/version
topic pd/#

user we+ird
topic readwrite w/#

user admin
topic readwrite #

pattern readwrite pc/%c/#
pattern read sync/%c
pattern deny pd/x
pattern readwrite pu/%u/#
pattern write a/secret
pattern read public/secret
";

/// The clients of the matrix: (username, client id). The password is the username twice.
const CLIENTS: &[(Option<&str>, &str)] = &[
    (None, "anon1"),
    (None, "c+d"),
    (Some("alice"), "alice-c"),
    (Some("alice"), "al#c"),
    (Some("bob"), "bob-c"),
    (Some("we+ird"), "w"),
];

/// The topics checked for each client, read and write.
const TOPICS: &[&str] = &[
    "public/x",
    "public/secret",
    "anon/in",
    "a/x",
    "a/secret",
    "pd/x",
    "pd/y",
    "pc/anon1/t",
    "pc/alice-c/t",
    "pu/alice/t",
    "pu/bob/t",
    "w/t",
    "other/t",
    "$SYS/broker/version",
];

/// Whether the username or client id has `+` or `#`, which patterns refuse.
fn dangerous((user, id): (Option<&str>, &str)) -> bool {
    user.unwrap_or_default().contains(['+', '#']) || id.contains(['+', '#'])
}

fn credentials(user: Option<&str>) -> Vec<String> {
    match user {
        None => Vec::new(),
        Some(u) => vec!["-u".into(), u.into(), "-P".into(), format!("{u}{u}")],
    }
}

/// Whether `client` may publish to `topic`: the reason code of the PUBACK to a QoS 1 PUBLISH
/// in 5.0 (0x87 when refused).
fn may_write(b: &Broker, (user, id): (Option<&str>, &str), topic: &str) -> bool {
    let creds = credentials(user);
    let mut args: Vec<&str> = vec!["-d", "-V", "5", "-q", "1", "-i", id, "-t", topic, "-m", "w"];
    args.extend(creds.iter().map(String::as_str));
    let out = mosquitto_pub(b, &args);
    let out = text(&out);
    if out.contains("received PUBACK (Mid: 1, RC:135)") {
        false
    } else {
        assert!(
            out.contains("received PUBACK"),
            "{user:?} {id} {topic}: {out}"
        );
        true
    }
}

/// Runs the whole matrix against one broker; returns every (client, topic, what) allowed,
/// what being `write`, `read retained` or `read live`.
fn matrix(binary: &Path, dir: &Path) -> (BTreeSet<String>, String) {
    let config = format!(
        "allow_anonymous true\npassword_file {}\nacl_file {}\n",
        dir.join("pw").display(),
        dir.join("acl").display()
    );
    let b = Broker::start(binary, &config, &[]);
    let mut allowed = BTreeSet::new();
    // Writes first, while nobody listens.
    for &client in CLIENTS {
        for topic in TOPICS {
            if topic.contains(['+', '#']) {
                continue;
            }
            if may_write(&b, client, topic) {
                allowed.insert(format!(
                    "{} {} {topic} write",
                    client.0.unwrap_or("-"),
                    client.1
                ));
            }
        }
    }
    // Reads: each topic retained, then every client subscribes to everything, then each topic
    // again, live.
    let admin = credentials(Some("admin"));
    let admin: Vec<&str> = admin.iter().map(String::as_str).collect();
    let send = |topic: &str, payload: &str, retain: bool| {
        let mut args = vec!["-q", "1", "-t", topic, "-m", payload];
        if retain {
            args.push("-r");
        }
        args.extend(&admin);
        publish(&b, &args);
    };
    for topic in TOPICS.iter().filter(|t| !t.starts_with('$')) {
        send(topic, "retained", true);
    }
    let subs: Vec<MosquittoSub> = CLIENTS
        .iter()
        .map(|&(user, id)| {
            let creds = credentials(user);
            let mut args = vec![
                "-v",
                "-q",
                "1",
                "-i",
                id,
                "-t",
                "#",
                "-t",
                "$SYS/broker/version",
            ];
            args.extend(creds.iter().map(String::as_str));
            MosquittoSub::start(&b, &args)
        })
        .collect();
    for topic in TOPICS.iter().filter(|t| !t.starts_with('$')) {
        send(topic, "live", false);
    }
    for &(_, id) in CLIENTS.iter().filter(|c| !dangerous(**c)) {
        send(&format!("sync/{id}"), "sync", false);
    }
    for (sub, &(user, id)) in subs.iter().zip(CLIENTS) {
        // Clients with a dangerous name cannot read their sync topic: give them time instead.
        if dangerous((user, id)) {
            std::thread::sleep(std::time::Duration::from_millis(300));
        } else {
            sub.wait_for_message(&format!("sync/{id} sync"));
        }
        for line in sub.messages() {
            let Some((topic, payload)) = line.split_once(' ') else {
                continue;
            };
            if topic.starts_with("sync/") {
                continue;
            }
            let what = match (topic, payload) {
                ("$SYS/broker/version", _) => "read retained",
                (_, "retained") => "read retained",
                _ => "read live",
            };
            allowed.insert(format!("{} {id} {topic} {what}", user.unwrap_or("-")));
        }
    }
    (allowed, b.log())
}

#[test]
fn the_acl_matrix_is_mosquittos() {
    let dir = TempDir::new("auth-acl");
    let mut users: Vec<(String, String)> = CLIENTS
        .iter()
        .filter_map(|(u, _)| u.map(|u| (u.to_owned(), format!("{u}{u}"))))
        .collect();
    users.push(("admin".into(), "adminadmin".into()));
    users.dedup();
    let users: Vec<(&str, &str)> = users
        .iter()
        .map(|(u, p)| (u.as_str(), p.as_str()))
        .collect();
    password_file(
        mosquitto_tool("mosquitto_passwd"),
        &dir.path().join("pw"),
        &users,
    );
    fs::write(dir.path().join("acl"), ACL).unwrap();

    let (pigeon, pigeon_log) = matrix(&pigeon_test::broker_binary(PIGEON), dir.path());
    let (mosquitto, mosquitto_log) = matrix(&mosquitto_tool("mosquitto"), dir.path());
    let checks = CLIENTS.len() * TOPICS.len() * 3;
    println!(
        "ACL matrix: {} clients x {} topics x 3 (write, read retained, read live) = {checks} \
         checks; allowed on mosquitto: {}, on pigeon: {}",
        CLIENTS.len(),
        TOPICS.len(),
        mosquitto.len(),
        pigeon.len()
    );
    let only_pigeon: Vec<_> = pigeon.difference(&mosquitto).collect();
    let only_mosquitto: Vec<_> = mosquitto.difference(&pigeon).collect();
    assert!(
        only_pigeon.is_empty() && only_mosquitto.is_empty(),
        "allowed by pigeon only: {only_pigeon:#?}\nallowed by mosquitto only: \
         {only_mosquitto:#?}\npigeon log:\n{pigeon_log}\nmosquitto log:\n{mosquitto_log}"
    );
    // The matrix is not trivial: both kinds of answer, for reads and writes.
    assert!(pigeon.iter().any(|l| l.ends_with("write")));
    assert!(pigeon.iter().any(|l| l.ends_with("read live")));
    assert!(pigeon.len() < checks / 2, "{pigeon:#?}");
    // Mosquitto's warnings about patterns without substitution, word for word.
    for log in [&pigeon_log, &mosquitto_log] {
        assert!(
            log.contains("Warning: ACL pattern 'pd/x' does not contain '%c' or '%u'."),
            "{log}"
        );
    }
}

#[test]
fn denied_publishes_are_logged_and_answered_as_mosquitto_does() {
    let dir = TempDir::new("auth-denied");
    fs::write(dir.path().join("acl"), "topic read r/#\n").unwrap();
    let config = format!("acl_file {}\n", dir.path().join("acl").display());
    for (name, binary) in brokers() {
        let b = Broker::start(&binary, &config, &["-v"]);
        for (qos, v5) in [("1", false), ("1", true), ("2", false), ("2", true)] {
            let mut args = vec!["-d", "-q", qos, "-i", "den", "-t", "r/x", "-m", "x"];
            if v5 {
                args.extend(["-V", "5"]);
            }
            let out = mosquitto_pub(&b, &args);
            let out = text(&out);
            if v5 {
                assert!(out.contains("Not authorized"), "{name} q{qos}: {out}");
            }
        }
        let log = b.log();
        for line in [
            "Denied PUBLISH from den (d0, q1, r0, m1, 'r/x', ... (1 bytes))",
            "Sending PUBACK to den (m1, rc135)",
            "Denied PUBLISH from den (d0, q2, r0, m1, 'r/x', ... (1 bytes))",
            "Sending PUBREC to den (m1, rc135)",
        ] {
            assert!(log.contains(line), "{name}: {line}\n{log}");
        }
    }
}

#[test]
fn acl_subscribe_check_refuses_filters_with_nothing_readable() {
    let dir = TempDir::new("auth-subcheck");
    fs::write(
        dir.path().join("acl"),
        "topic read r/#\ntopic deny r/secret\n",
    )
    .unwrap();
    let config = format!(
        "acl_file {}\nacl_subscribe_check true\n",
        dir.path().join("acl").display()
    );
    let b = Broker::start(pigeon_test::broker_binary(PIGEON), &config, &[]);
    for (v5, refused) in [(false, "128"), (true, "135")] {
        let mut args = vec![
            "-t", "r/x", "-t", "other/#", "-t", "r/secret", "-t", "#", "-W", "1",
        ];
        if v5 {
            args.extend(["-V", "5"]);
        }
        let mut sub = MosquittoSub::start(&b, &args);
        let out = sub.output();
        assert!(
            out.contains(&format!("Subscribed (mid: 1): 0, {refused}, {refused}, 0")),
            "v5={v5}: {out}"
        );
        let _ = sub.wait_exit();
    }
}

#[test]
fn a_reload_applies_a_new_acl_to_connected_clients() {
    let dir = TempDir::new("auth-reload");
    let acl = dir.path().join("acl");
    fs::write(&acl, "topic read r/a\ntopic write r/#\n").unwrap();
    let b = Broker::start(
        pigeon_test::broker_binary(PIGEON),
        &format!("acl_file {}\n", acl.display()),
        &[],
    );
    let sub = MosquittoSub::start(&b, &["-v", "-t", "r/#"]);
    publish(&b, &["-t", "r/a", "-m", "1"]);
    publish(&b, &["-t", "r/b", "-m", "1"]);
    sub.wait_for_message("r/a 1");
    fs::write(&acl, "topic read r/b\ntopic write r/#\n").unwrap();
    signal(b.pid(), "HUP");
    assert!(b.wait_for_log("Reloading config."));
    assert!(wait_until(|| {
        publish(&b, &["-t", "r/b", "-m", "2"]);
        sub.messages().iter().any(|m| m == "r/b 2")
    }));
    publish(&b, &["-t", "r/a", "-m", "2"]);
    publish(&b, &["-t", "r/b", "-m", "end"]);
    let messages = sub.wait_for_message("r/b end");
    assert!(!messages.iter().any(|m| m == "r/a 2"), "{messages:?}");
    assert!(!messages.iter().any(|m| m == "r/b 1"), "{messages:?}");
}

// Refused logins are counted in `$SYS/broker/clients/auth_failures` (a Pigeon topic; Mosquitto
// 2.0 has no such count), published with the other `$SYS` values.
#[test]
fn failed_logins_are_counted_in_sys() {
    let dir = TempDir::new("auth-sys");
    let file = dir.path().join("pw");
    password_file(PIGEON_PASSWD, &file, &[("u", "right")]);
    let config = format!(
        "allow_anonymous false\npassword_file {}\nsys_interval 1\n",
        file.display()
    );
    let b = Broker::start(pigeon_test::broker_binary(PIGEON), &config, &[]);
    for password in ["wrong", "also wrong"] {
        assert_eq!(connect_result(&b, &["-u", "u", "-P", password]).0, Some(5));
    }
    assert_eq!(connect_result(&b, &[]).0, Some(5), "anonymous");
    let sub = MosquittoSub::start(
        &b,
        &[
            "-u",
            "u",
            "-P",
            "right",
            "-t",
            "$SYS/broker/clients/auth_failures",
            "-v",
        ],
    );
    assert!(
        wait_until(|| sub
            .messages()
            .iter()
            .any(|m| m == "$SYS/broker/clients/auth_failures 3")),
        "{:?}\n{}",
        sub.messages(),
        b.log()
    );
    // The passwords never reach the log.
    assert!(!b.log().contains("also wrong"));
}
