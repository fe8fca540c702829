//! SIGHUP reloads the configuration, as Mosquitto's reload signal does: the broker keeps its
//! listening sockets and applies the rest of the file again; a file with errors changes
//! nothing.

use std::path::PathBuf;

use pigeon_test::{
    Broker, MosquittoSub, RawClient, free_port, mosquitto_pub, publish, signal, wait_until,
};

const PIGEON: &str = env!("CARGO_BIN_EXE_pigeon");

fn broker(config: &str) -> Broker {
    Broker::start(pigeon_test::broker_binary(PIGEON), config, &[])
}

/// The configuration file [`Broker::start`] wrote.
fn config_file(b: &Broker) -> PathBuf {
    b.dir().join("pigeon.conf")
}

/// Rewrites the configuration with the broker's listener followed by `config`, and sends
/// SIGHUP.
fn reload(b: &Broker, config: &str) {
    let text = format!("listener {} 127.0.0.1\n{config}", b.port());
    reload_with(b, &text);
}

/// Rewrites the configuration file with `text` and sends SIGHUP.
fn reload_with(b: &Broker, text: &str) {
    // Started as root, the broker reads the file as the `mosquitto` user: keep it readable.
    std::fs::write(config_file(b), text).expect("rewrite the configuration");
    signal(b.pid(), "HUP");
}

/// How many times the log says `needle`.
fn count(b: &Broker, needle: &str) -> usize {
    b.log().matches(needle).count()
}

// `allow_anonymous false` on reload: new anonymous clients are refused (CONNACK 5, which
// mosquitto_pub reports as its exit code), and connected ones are disconnected, as Mosquitto
// 2.0 does.
#[test]
fn allow_anonymous_false_refuses_new_and_disconnects_connected_anonymous_clients() {
    let mut b = broker("");
    publish(&b, &["-t", "r/1", "-m", "before"]);
    let mut connected = RawClient::connect_v311(&b, "anon-before");

    reload(&b, "allow_anonymous false\n");
    let (closed, got) = connected.closed();
    assert!(
        closed && got.is_empty(),
        "connected anonymous client closed after the reload ({got:02x?}); broker log:\n{}",
        b.log()
    );
    assert!(
        b.wait_for_log("Client anon-before disconnected."),
        "{}",
        b.log()
    );
    let out = mosquitto_pub(&b, &["-t", "r/1", "-m", "after"]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "anonymous mosquitto_pub refused as not authorised:\n{}\nbroker log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        b.log()
    );
    b.assert_running("after the reload");

    // And back: anonymous clients are welcome again.
    reload(&b, "allow_anonymous true\n");
    assert!(
        wait_until(|| mosquitto_pub(&b, &["-t", "r/1", "-m", "again"])
            .status
            .success()),
        "anonymous clients accepted after the second reload; broker log:\n{}",
        b.log()
    );
}

// log_type, log_timestamp: lines after the reload follow the new settings.
#[test]
fn log_type_and_log_timestamp_change_on_reload() {
    let mut b = broker("log_type error\nlog_type warning\nlog_type notice\n");
    publish(&b, &["-i", "quiet", "-t", "l/1", "-m", "x"]);
    assert!(b.wait_for_log(" as quiet "), "{}", b.log());
    assert!(!b.log().contains("Received PUBLISH from quiet"));

    reload(
        &b,
        "allow_anonymous true\nlog_type all\nlog_timestamp false\n",
    );
    assert!(b.wait_for_log("Reloading config."), "{}", b.log());
    // The reload is applied right after that line; retry until a client falls after it.
    let mut n = 0;
    let applied = wait_until(|| {
        n += 1;
        publish(&b, &["-i", &format!("loud-{n}"), "-t", "l/1", "-m", "x"]);
        b.log()
            .contains(&format!("Received PUBLISH from loud-{n} "))
    });
    assert!(applied, "debug lines after the reload:\n{}", b.log());
    let expected = format!("Received PUBLISH from loud-{n} (d0, q0, r0, m0, 'l/1', ... (1 bytes))");
    assert!(
        b.log().lines().any(|l| l == expected),
        "no timestamp any more: {expected:?} in\n{}",
        b.log()
    );

    // Back to fewer types: debug lines stop.
    reload(&b, "allow_anonymous true\nlog_type notice\n");
    assert!(
        wait_until(|| count(&b, "Reloading config.") == 2),
        "{}",
        b.log()
    );
    let mut n = 0;
    let applied = wait_until(|| {
        n += 1;
        let id = format!("hushed-{n}");
        publish(&b, &["-i", &id, "-t", "l/1", "-m", "x"]);
        b.wait_for_log(&format!(" as {id} "))
            && !b.log().contains(&format!("Received PUBLISH from {id} "))
    });
    assert!(
        applied,
        "debug lines stopped after the reload:\n{}",
        b.log()
    );
    b.assert_running("after two reloads");
}

// A file with an error, or one the broker would refuse to start with, changes nothing: the
// error is logged and the broker runs on with the settings it had.
#[test]
fn a_configuration_with_errors_is_not_applied() {
    let mut b = broker("");
    let kept = "The configuration file has errors: the broker keeps running with the old one.";

    reload(&b, "allow_anonymous false\nno_such_directive 1\n");
    assert!(b.wait_for_log(kept), "{}", b.log());
    assert!(b.log().contains("no_such_directive"), "{}", b.log());
    publish(&b, &["-t", "e/1", "-m", "still anonymous"]);

    // Valid, but not something the broker runs with yet.
    reload(&b, "allow_anonymous false\nmount_point m/\n");
    assert!(wait_until(|| count(&b, kept) == 2), "{}", b.log());
    assert!(
        b.log().contains("mount_point: not supported yet"),
        "{}",
        b.log()
    );
    publish(&b, &["-t", "e/1", "-m", "still anonymous"]);

    // A file that cannot be read.
    std::fs::remove_file(config_file(&b)).expect("remove the configuration");
    signal(b.pid(), "HUP");
    assert!(wait_until(|| count(&b, kept) == 3), "{}", b.log());
    publish(&b, &["-t", "e/1", "-m", "still anonymous"]);
    b.assert_running("after three bad reloads");
}

// sys_interval: a reload turns the $SYS updates on.
#[test]
fn sys_interval_set_by_a_reload_starts_the_sys_updates() {
    let b = broker("sys_interval 0\n");
    let sub = MosquittoSub::start(&b, &["-t", "$SYS/broker/uptime", "-F", "%p"]);
    assert!(sub.messages().is_empty(), "no $SYS with sys_interval 0");

    reload(&b, "allow_anonymous true\nsys_interval 1\n");
    let messages = sub.wait_for_messages(1);
    assert!(
        messages.first().is_some_and(|m| m.ends_with(" seconds")),
        "uptime published after the reload: {messages:?}; broker log:\n{}",
        b.log()
    );
}

// The listening sockets stay as they are (Mosquitto does not reopen them either): a changed
// `listener` line is logged and waits for a restart, while the rest of its block applies.
#[test]
fn a_changed_listener_waits_for_a_restart() {
    let mut b = broker("");
    let other = free_port();
    reload_with(
        &b,
        &format!("listener {other} 127.0.0.1\nallow_anonymous true\nmax_connections 1\n"),
    );
    let expected = format!(
        "The address of the listener on 127.0.0.1:{} changed from 127.0.0.1:{} to \
         127.0.0.1:{other}: this takes effect when the broker restarts.",
        b.port(),
        b.port()
    );
    assert!(b.wait_for_log(&expected), "{}", b.log());
    // Logged right after; the log is collected asynchronously, so wait for it too.
    assert!(
        b.wait_for_log("max_connections of the listener on 127.0.0.1:"),
        "{}",
        b.log()
    );
    // Still on the old port, and not on the new one; max_connections waits too.
    let _first = RawClient::connect_v311(&b, "first");
    publish(&b, &["-t", "p/1", "-m", "old port"]);
    assert!(!b.listening_addrs().iter().any(|a| a.port() == other));
    b.assert_running("after the reload");
}

// check_retain_source (on by default, as in Mosquitto): when a reload takes away the write
// access of the client that published a retained message, new subscribers no longer get it;
// with `check_retain_source false` they do.
#[test]
fn check_retain_source_withholds_retained_messages_whose_publisher_lost_write_access() {
    let dir = pigeon_test::TempDir::new("retain-source");
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "topic readwrite r/#\ntopic readwrite s/#\n").expect("write acl");
    let b = broker(&format!(
        "allow_anonymous true\nacl_file {}\n",
        acl.display()
    ));
    publish(&b, &["-t", "r/kept", "-m", "v", "-r"]);

    // What a new subscriber to r/# and s/# gets, up to a live sentinel on s/end.
    let first_messages = |b: &Broker| {
        let sub = MosquittoSub::start(b, &["-t", "r/#", "-t", "s/#", "-v"]);
        publish(b, &["-t", "s/end", "-m", "end"]);
        sub.wait_for_message("s/end end")
    };
    assert_eq!(first_messages(&b), ["r/kept v", "s/end end"]);

    // Anonymous clients may still read r/#, but no longer write there.
    std::fs::write(&acl, "topic read r/#\ntopic readwrite s/#\n").expect("rewrite acl");
    reload(
        &b,
        &format!("allow_anonymous true\nacl_file {}\n", acl.display()),
    );
    assert!(
        wait_until(|| first_messages(&b) == ["s/end end"]),
        "retained message withheld after the reload; broker log:\n{}",
        b.log()
    );

    reload(
        &b,
        &format!(
            "allow_anonymous true\nacl_file {}\ncheck_retain_source false\n",
            acl.display()
        ),
    );
    assert!(
        wait_until(|| first_messages(&b) == ["r/kept v", "s/end end"]),
        "delivered again without check_retain_source; broker log:\n{}",
        b.log()
    );
}
