//! The broker confined to one CPU (`taskset -c 0`), as a Raspberry Pi Zero or a container
//! with one CPU runs it. `pigeon` then runs on tokio's current-thread scheduler (see
//! `bin/pigeon.rs`), which the rest of the suite, on a machine with more cores, never reaches:
//! here a persistent session's connection parks, is resumed by a delivery from the parker's
//! thread, completes QoS 2, and queues while away; and the broker stops cleanly.

use std::path::Path;

use pigeon_test::mqtt::{self, Connect};
use pigeon_test::{Broker, RawClient, publish, tool};

const PIGEON: &str = env!("CARGO_BIN_EXE_pigeon");

fn one_core_broker() -> Broker {
    Broker::start_with(&tool("taskset"), |port, dir: &Path| {
        let conf = dir.join("pigeon.conf");
        let text = format!("listener {port} 127.0.0.1\nallow_anonymous true\n");
        std::fs::write(&conf, text).expect("write config");
        ["-c", "0", PIGEON, "-c", &conf.display().to_string()]
            .map(str::to_owned)
            .to_vec()
    })
}

/// The CPUs the process may run on, as `/proc/PID/status` lists them.
fn cpus_allowed(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

fn resume(b: &Broker, id: &str) -> (RawClient, bool) {
    let connect = Connect {
        clean_session: false,
        ..Connect::new(id)
    };
    let (c, connack) = RawClient::connect_with(b, &connect);
    let connack = connack.map(|p| p.to_bytes()).unwrap_or_default();
    assert!(
        connack == [0x20, 2, 0, 0] || connack == [0x20, 2, 1, 0],
        "CONNACK accepting {id}: {connack:02x?}; broker log:\n{}",
        b.log()
    );
    (c, connack[2] == 1)
}

// QoS 2 exactly once [MQTT-4.3.3-2], a persistent session's queue [MQTT-3.1.2-5] and its
// Session Present [MQTT-3.2.2-2], on one CPU.
#[test]
fn a_broker_on_one_cpu_parks_resumes_queues_and_stops() {
    let mut b = one_core_broker();
    assert_eq!(cpus_allowed(b.pid()), "0", "taskset confined the broker");

    let (mut c, present) = resume(&b, "one-core");
    assert!(!present);
    assert_eq!(c.subscribe(&[("oc/#", 2)]), [2]);
    // Idle for longer than a connection waits before it parks (one second).
    std::thread::sleep(std::time::Duration::from_millis(1500));

    publish(&b, &["-t", "oc/q2", "-q", "2", "-m", "after parking"]);
    let q2 = c.recv_publish();
    assert_eq!(
        (q2.topic.as_str(), q2.payload.as_slice(), q2.qos),
        ("oc/q2", &b"after parking"[..], 2)
    );
    let id = q2.packet_id.expect("QoS 2 has an identifier");
    c.send(&mqtt::ack(mqtt::PUBREC, id));
    assert_eq!(
        c.expect(mqtt::PUBREL).to_bytes(),
        mqtt::ack(mqtt::PUBREL, id)
    );
    c.send(&mqtt::ack(mqtt::PUBCOMP, id));
    c.send(&mqtt::disconnect());
    drop(c);

    publish(&b, &["-t", "oc/q1", "-q", "1", "-m", "while away"]);
    let (mut c, present) = resume(&b, "one-core");
    assert!(present, "the session was kept");
    let q1 = c.recv_publish();
    assert_eq!(
        (q1.topic.as_str(), q1.payload.as_slice(), q1.qos),
        ("oc/q1", &b"while away"[..], 1)
    );
    c.send(&mqtt::ack(
        mqtt::PUBACK,
        q1.packet_id.expect("QoS 1 has an identifier"),
    ));
    c.send(&mqtt::pingreq());
    assert_eq!(
        c.read_packet().kind(),
        mqtt::PINGRESP,
        "nothing else queued"
    );

    assert!(b.stop(), "a clean stop on SIGTERM; log:\n{}", b.log());
}
