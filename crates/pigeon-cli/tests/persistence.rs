//! Persistence (`persistence true`): what the broker keeps across a graceful restart
//! (SIGTERM, then start) and across SIGKILL at random moments, driven by hand-made packets.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use pigeon_test::mqtt::{self, Connect};
use pigeon_test::{Broker, RawClient, run_pigeon, signal};

const PIGEON: &str = env!("CARGO_BIN_EXE_pigeon");

/// The configuration of a persistent broker on `port`, its database under `dir`.
fn config(port: u16, dir: &Path, extra: &str) -> String {
    format!(
        "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
         persistence_location {}/db/\n{extra}\n",
        dir.display()
    )
}

fn broker(extra: &str) -> Broker {
    let extra = extra.to_owned();
    Broker::start_with(Path::new(PIGEON), move |port, dir| {
        let conf = dir.join("pigeon.conf");
        std::fs::write(&conf, config(port, dir, &extra)).expect("write config");
        vec!["-c".to_owned(), conf.display().to_string()]
    })
}

/// Connects `id` with Clean Session 0; returns the client and Session Present.
fn resume(b: &Broker, id: &str) -> (RawClient, bool) {
    try_resume(b, id).unwrap_or_else(|| panic!("no CONNACK for {id}; broker log:\n{}", b.log()))
}

/// As [`resume`], for a broker that may be killed meanwhile: `None` when the connection
/// fails before a CONNACK (a CONNACK refusing the client still fails the test).
fn try_resume(b: &Broker, id: &str) -> Option<(RawClient, bool)> {
    let mut c = RawClient::connect_addr(b.addr()).ok()?;
    let connect = Connect {
        clean_session: false,
        ..Connect::new(id)
    };
    c.try_send(&connect.encode()).ok()?;
    let connack = c.try_read_packet().ok()??.to_bytes();
    assert!(
        connack == [0x20, 2, 0, 0] || connack == [0x20, 2, 1, 0],
        "CONNACK accepting {id}: {connack:02x?}; broker log:\n{}",
        b.log()
    );
    Some((c, connack[2] == 1))
}

// A persistent session's subscriptions and queued messages (QoS 0 included, with
// queue_qos0_messages) and the retained messages survive SIGTERM and a new start: the client
// sees Session Present and everything, in order, as if the broker had never stopped.
#[test]
fn retained_messages_and_sessions_survive_a_graceful_restart() {
    let mut b = broker("queue_qos0_messages true");
    let (mut sub, present) = resume(&b, "keeper");
    assert!(!present);
    assert_eq!(sub.subscribe(&[("g/#", 2)]), [2]);
    sub.send(&mqtt::disconnect());
    drop(sub);

    let mut p = RawClient::connect_v311(&b, "publisher");
    p.publish("r/1", b"retained one", 1, true);
    p.publish("r/2", b"retained two", 2, true);
    p.publish("r/2", b"retained two, again", 0, true);
    p.publish("r/3", b"cleared", 1, true);
    p.publish("r/3", b"", 1, true);
    p.publish("g/0", b"zero", 0, false);
    p.publish("g/1", b"one", 1, false);
    p.publish("g/2", b"two", 2, false);
    p.send(&mqtt::disconnect());
    drop(p);

    assert!(b.stop(), "SIGTERM ends the broker cleanly:\n{}", b.log());
    b.restart();
    assert!(
        b.wait_for_log(
            "Restored 1 sessions (1 subscriptions) holding 3 messages and 2 retained messages"
        ),
        "{}",
        b.log()
    );

    let (mut sub, present) = resume(&b, "keeper");
    assert!(present, "the session is back");
    let got: Vec<(String, Vec<u8>, u8)> = (0..3)
        .map(|_| {
            let m = sub.recv_publish_acked();
            (m.topic, m.payload, m.qos)
        })
        .collect();
    assert_eq!(
        got,
        [
            ("g/0".to_owned(), b"zero".to_vec(), 0),
            ("g/1".to_owned(), b"one".to_vec(), 1),
            ("g/2".to_owned(), b"two".to_vec(), 2),
        ]
    );
    // Nothing more, and the subscription itself is back.
    sub.ping();
    let mut p = RawClient::connect_v311(&b, "publisher");
    p.publish("g/after", b"after", 1, false);
    assert_eq!(sub.recv_publish_acked().payload, b"after");

    let mut fresh = RawClient::connect_v311(&b, "reader");
    fresh.subscribe(&[("r/#", 2)]);
    let mut retained: Vec<(String, Vec<u8>)> = (0..2)
        .map(|_| {
            let m = fresh.recv_publish_acked();
            assert!(m.retain);
            (m.topic, m.payload)
        })
        .collect();
    retained.sort();
    assert_eq!(
        retained,
        [
            ("r/1".to_owned(), b"retained one".to_vec()),
            ("r/2".to_owned(), b"retained two, again".to_vec()),
        ]
    );
    fresh.ping();

    // And a second graceful restart (from the snapshot the first one wrote) keeps it all.
    drop((sub, p, fresh));
    assert!(b.stop());
    b.restart();
    assert!(
        b.wait_for_log("holding 0 messages and 2 retained messages"),
        "{}",
        b.log()
    );
}

#[test]
fn a_second_broker_on_the_same_directory_is_refused() {
    let b = broker("");
    let port = pigeon_test::free_port();
    let conf = b.dir().join("second.conf");
    std::fs::write(&conf, config(port, b.dir(), "")).expect("write config");
    let out = run_pigeon(PIGEON, &[OsStr::new("-c"), conf.as_os_str()]);
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("in use by another broker"), "{text}");
}

// A record damaged in the middle of the log (not a torn tail) stops the start with the file
// and offset; a torn tail is cut off with a warning and the broker starts.
#[test]
fn damage_stops_the_start_and_a_torn_tail_is_cut() {
    let mut b = broker("");
    let mut p = RawClient::connect_v311(&b, "publisher");
    for n in 0..20 {
        p.publish(&format!("r/{n}"), format!("value {n}").as_bytes(), 1, true);
    }
    drop(p);
    b.kill();
    let db = b.dir().join("db");
    let segment = std::fs::read_dir(&db)
        .expect("db dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .expect("a log segment");
    let data = std::fs::read(&segment).expect("segment");
    assert!(data.len() > 200, "records were written: {}", data.len());

    // A torn tail: half a record appended.
    let mut torn = data.clone();
    torn.extend_from_slice(&data[..13]);
    std::fs::write(&segment, &torn).expect("write");
    b.restart();
    assert!(b.wait_for_log("Truncated"), "{}", b.log());
    assert!(b.wait_for_log("and 20 retained messages"), "{}", b.log());
    b.kill();

    // A flipped bit in the middle.
    let mut bad = std::fs::read(&segment).expect("segment");
    let middle = bad.len() / 2;
    bad[middle] ^= 0x40;
    std::fs::write(&segment, &bad).expect("write");
    let conf = b.dir().join("pigeon.conf");
    let out = run_pigeon(PIGEON, &[OsStr::new("-c"), conf.as_os_str()]);
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("{} is damaged at offset", segment.display())),
        "{text}"
    );
}

// ---- Crash tests ---------------------------------------------------------------------------

/// How far one numbered message got with the publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Sent, no acknowledgement seen.
    Sent,
    /// QoS 2: PUBREC seen (the broker has it), PUBCOMP not yet.
    Received,
    /// PUBACK or PUBCOMP seen.
    Done,
}

fn qos_of(n: u32) -> u8 {
    if n.is_multiple_of(2) { 1 } else { 2 }
}

fn id_of(n: u32) -> u16 {
    u16::try_from(n % 65_535).expect("below 65535") + 1
}

/// Takes message `n` from `stage` to done; `None` when the connection fails on the way.
fn complete(c: &mut RawClient, n: u32, stage: &mut Option<Stage>) -> Option<()> {
    let (qos, id) = (qos_of(n), id_of(n));
    loop {
        match *stage {
            Some(Stage::Done) => return Some(()),
            None | Some(Stage::Sent) => {
                let dup = stage.is_some();
                let publish = mqtt::publish(
                    "crash/n",
                    n.to_string().as_bytes(),
                    qos,
                    Some(id),
                    dup,
                    false,
                );
                c.try_send(&publish).ok()?;
                *stage = Some(Stage::Sent);
                let ack = c.try_read_packet().ok()??;
                let want = if qos == 1 { mqtt::PUBACK } else { mqtt::PUBREC };
                assert_eq!(ack.to_bytes(), mqtt::ack(want, id), "ack of {n}");
                *stage = Some(if qos == 1 {
                    Stage::Done
                } else {
                    Stage::Received
                });
            }
            Some(Stage::Received) => {
                c.try_send(&mqtt::ack(mqtt::PUBREL, id)).ok()?;
                let comp = c.try_read_packet().ok()??;
                assert_eq!(
                    comp.to_bytes(),
                    mqtt::ack(mqtt::PUBCOMP, id),
                    "PUBCOMP of {n}"
                );
                *stage = Some(Stage::Done);
            }
        }
    }
}

/// A small deterministic generator (xorshift), seeded per run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What a subscriber received: per message number, its QoS and how many times it was
/// delivered to the application (a QoS 2 PUBLISH resent under an identifier still awaiting
/// PUBREL is not delivered again: the receiver's side of method B).
type Received = Arc<Mutex<HashMap<u32, (u8, u32)>>>;

/// A persistent subscriber that stays connected through the crashes: it reconnects (Clean
/// Session 0) whenever the broker comes back, acknowledging everything, and keeps its QoS 2
/// identifiers awaiting PUBREL across connections, as a client's session does.
fn live_subscriber(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    got: Received,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut awaiting: HashSet<u16> = HashSet::new();
        while !stop.load(Ordering::Relaxed) {
            let Ok(mut c) = RawClient::connect_addr(addr) else {
                thread::sleep(Duration::from_millis(20));
                continue;
            };
            let connect = Connect {
                clean_session: false,
                ..Connect::new("live")
            };
            if c.try_send(&connect.encode()).is_err() {
                continue;
            }
            c.set_read_timeout(Duration::from_millis(200));
            loop {
                let packet = match c.try_read_packet() {
                    Ok(Some(p)) => p,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        continue;
                    }
                    _ => break,
                };
                let sent = match packet.kind() {
                    mqtt::PUBLISH => {
                        let m = packet.publish().expect("PUBLISH");
                        let n: u32 = String::from_utf8_lossy(&m.payload).parse().expect("number");
                        let id = m.packet_id.expect("QoS 1 or 2");
                        let new = m.qos == 1 || awaiting.insert(id);
                        if new {
                            let mut got = got.lock().expect("lock");
                            got.entry(n).or_insert((m.qos, 0)).1 += 1;
                        }
                        let kind = if m.qos == 1 {
                            mqtt::PUBACK
                        } else {
                            mqtt::PUBREC
                        };
                        c.try_send(&mqtt::ack(kind, id))
                    }
                    mqtt::PUBREL => {
                        let id = packet.packet_id().expect("id");
                        awaiting.remove(&id);
                        c.try_send(&mqtt::ack(mqtt::PUBCOMP, id))
                    }
                    _ => Ok(()),
                };
                if sent.is_err() {
                    break;
                }
            }
        }
    })
}

/// Asserts that every acknowledged message (numbers `acked`) is in `got`, and QoS 2 ones once.
fn check_received(who: &str, acked: &[u32], got: &HashMap<u32, (u8, u32)>, b: &Broker) {
    let missing: Vec<u32> = acked
        .iter()
        .copied()
        .filter(|n| !got.contains_key(n))
        .collect();
    assert!(
        missing.is_empty(),
        "{who}: {} acknowledged but lost, from {:?} (of {}); log:\n{}",
        missing.len(),
        &missing[..missing.len().min(20)],
        acked.len(),
        b.log()
    );
    let twice: Vec<u32> = got
        .iter()
        .filter(|(_, (qos, count))| *qos == 2 && *count > 1)
        .map(|(n, _)| *n)
        .collect();
    assert!(
        twice.is_empty(),
        "{who}: QoS 2 delivered more than once: {twice:?}; log:\n{}",
        b.log()
    );
}

/// A publisher sends numbered QoS 1 and 2 messages to an offline persistent subscriber; the
/// broker is SIGKILLed at a random moment each round and started again, the publisher
/// resuming its session and completing the exchange it was in. At the end the subscriber
/// gets every message the publisher saw acknowledged (PUBACK, PUBREC), QoS 2 exactly once.
///
/// With `online`, a second persistent subscriber stays connected throughout (reconnecting
/// after each crash), so crashes also catch messages in flight to it, with their packet
/// identifiers and QoS 2 states.
fn crash_rounds(rounds: u32, online: bool) {
    let seed = std::env::var("PIGEON_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        // A fresh random seed each run (std's randomly keyed hasher), printed to replay it.
        .unwrap_or_else(|| {
            std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), 0u8) | 1
        });
    eprintln!("crash test: {rounds} rounds, PIGEON_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let mut b = broker(&format!(
        "max_queued_messages 0\nautosave_interval 1\n{}",
        std::env::var("PIGEON_CRASH_CONF").unwrap_or_default()
    ));
    let (mut sub, _) = resume(&b, "subscriber");
    assert_eq!(sub.subscribe(&[("crash/#", 2)]), [2]);
    sub.send(&mqtt::disconnect());
    drop(sub);
    let stop = Arc::new(AtomicBool::new(false));
    let live_got: Received = Arc::default();
    let live = online.then(|| {
        let (mut c, _) = resume(&b, "live");
        assert_eq!(c.subscribe(&[("crash/#", 2)]), [2]);
        c.send(&mqtt::disconnect());
        drop(c);
        live_subscriber(b.addr(), Arc::clone(&stop), Arc::clone(&live_got))
    });

    let mut stages: Vec<Option<Stage>> = Vec::new();
    for round in 0..rounds {
        let pid = b.pid();
        let delay = Duration::from_millis(5 + rng.below(200));
        let killer = thread::spawn(move || {
            thread::sleep(delay);
            signal(pid, "KILL");
        });
        // The kill may come before the CONNACK: then this round sends nothing.
        if let Some((mut c, _)) = try_resume(&b, "publisher") {
            // First the exchange a crash interrupted, then new messages until the next crash.
            let mut n = stages.len().saturating_sub(1) as u32;
            loop {
                let i = n as usize;
                if i == stages.len() {
                    stages.push(None);
                }
                if complete(&mut c, n, &mut stages[i]).is_none() {
                    break;
                }
                n += 1;
            }
        }
        killer.join().expect("killer");
        b.kill();
        eprintln!("round {round}: {} messages so far", stages.len());
        b.restart();
    }
    // The last one interrupted is completed.
    let (mut c, present) = resume(&b, "publisher");
    assert!(present || stages.is_empty());
    if let Some(last) = stages.len().checked_sub(1) {
        complete(&mut c, last as u32, &mut stages[last]).expect("completes after restart");
    }
    let acked: Vec<u32> = (0..stages.len() as u32)
        .filter(|&n| matches!(stages[n as usize], Some(Stage::Done | Stage::Received)))
        .collect();
    assert_eq!(acked.len(), stages.len(), "all acknowledged in the end");

    let (mut sub, present) = resume(&b, "subscriber");
    assert!(present, "the subscriber's session survived:\n{}", b.log());
    sub.set_read_timeout(Duration::from_secs(3));
    let mut got: HashMap<u32, (u8, u32)> = HashMap::new();
    while let Ok(Some(packet)) = sub.try_read_packet() {
        match packet.kind() {
            mqtt::PUBLISH => {
                let m = packet.publish().expect("PUBLISH");
                let n: u32 = String::from_utf8_lossy(&m.payload)
                    .parse()
                    .expect("a number");
                let entry = got.entry(n).or_insert((m.qos, 0));
                entry.1 += 1;
                match (m.qos, m.packet_id) {
                    (1, Some(id)) => sub.send(&mqtt::ack(mqtt::PUBACK, id)),
                    (2, Some(id)) => sub.send(&mqtt::ack(mqtt::PUBREC, id)),
                    _ => {}
                }
            }
            mqtt::PUBREL => {
                let id = packet.packet_id().expect("id");
                sub.send(&mqtt::ack(mqtt::PUBCOMP, id));
            }
            other => panic!("unexpected packet type {other}"),
        }
    }
    check_received("offline subscriber", &acked, &got, &b);
    if let Some(live) = live {
        let complete = pigeon_test::wait_until_for(Duration::from_secs(60), || {
            let got = live_got.lock().expect("lock");
            acked.iter().all(|n| got.contains_key(n))
        });
        // A moment more, for anything delivered twice to show.
        thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        live.join().expect("live subscriber");
        let got = live_got.lock().expect("lock").clone();
        assert!(
            complete || !got.is_empty(),
            "the live subscriber got nothing"
        );
        check_received("live subscriber", &acked, &got, &b);
    }
    eprintln!(
        "crash test: {rounds} rounds, {} messages acknowledged, none lost, QoS 2 once each",
        acked.len()
    );
}

#[test]
fn acknowledged_messages_survive_sigkill() {
    crash_rounds(4, false);
}

#[test]
fn acknowledged_messages_survive_sigkill_with_a_subscriber_online() {
    crash_rounds(4, true);
}

#[test]
#[ignore = "long: run on purpose (cargo test --test persistence -- --ignored)"]
fn acknowledged_messages_survive_many_sigkills() {
    let rounds = std::env::var("PIGEON_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    crash_rounds(rounds, true);
}

// Messages in flight to a connected persistent subscriber when the broker is killed are sent
// again, with DUP and their packet identifiers, when it reconnects after the restart; and
// messages published after the restart reach it too.
#[test]
fn messages_in_flight_to_a_connected_subscriber_survive_sigkill() {
    let mut b = broker("");
    let (mut live, _) = resume(&b, "live");
    assert_eq!(live.subscribe(&[("f/#", 2)]), [2]);
    let mut p = RawClient::connect_v311(&b, "publisher");
    p.publish("f/1", b"one", 1, false);
    p.publish("f/2", b"two", 2, false);
    let first = live.recv_publish();
    let second = live.recv_publish();
    assert_eq!((first.qos, second.qos), (1, 2));
    // Neither is acknowledged: both in flight.
    drop(p);
    b.kill();
    b.restart();
    let (mut live, present) = resume(&b, "live");
    assert!(present);
    let again = [live.recv_publish(), live.recv_publish()];
    assert!(again.iter().all(|m| m.dup), "{again:?}");
    assert_eq!(again[0].packet_id, first.packet_id);
    assert_eq!(again[1].packet_id, second.packet_id);
    live.ack(&again[0]);
    live.ack(&again[1]);
    let mut p = RawClient::connect_v311(&b, "publisher");
    p.publish("f/3", b"three", 1, false);
    assert_eq!(live.recv_publish_acked().payload, b"three");
}

#[test]
fn a_connected_subscriber_keeps_its_subscription_across_sigkill_and_snapshots() {
    let mut b = broker("autosave_interval 1");
    let (mut live, _) = resume(&b, "live");
    assert_eq!(live.subscribe(&[("k/#", 2)]), [2]);
    live.send(&mqtt::disconnect());
    let (mut live, _) = resume(&b, "live");
    let mut p = RawClient::connect_v311(&b, "publisher");
    p.publish("k/1", b"one", 2, false);
    assert_eq!(live.recv_publish_acked().payload, b"one");
    thread::sleep(Duration::from_millis(1500));
    p.publish("k/2", b"two", 2, false);
    assert_eq!(live.recv_publish_acked().payload, b"two");
    b.kill();
    b.restart();
    let (mut live, present) = resume(&b, "live");
    assert!(present);
    let mut p = RawClient::connect_v311(&b, "publisher");
    p.publish("k/3", b"three", 2, false);
    // The PUBCOMP for "two" may not have been recorded before the kill: the broker sends its
    // PUBREL again, which the client answers (section 4.4).
    loop {
        let packet = live.read_packet();
        match packet.kind() {
            mqtt::PUBREL => live.send(&mqtt::ack(mqtt::PUBCOMP, packet.packet_id().expect("id"))),
            mqtt::PUBLISH => {
                let m = packet.publish().expect("PUBLISH");
                assert_eq!(m.payload, b"three", "{}", b.log());
                break;
            }
            other => panic!("unexpected {other}"),
        }
    }
}

// ---- A full disk ---------------------------------------------------------------------------

/// Unmounts a file system when dropped.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

fn mount_tmpfs(at: &Path, size: &str) -> bool {
    std::fs::create_dir_all(at).expect("mount point");
    std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(at)
        .status()
        .is_ok_and(|s| s.success())
}

/// An MQTT 5.0 CONNECT (Clean Start 0, no properties) for `id`.
fn connect_v5(id: &str) -> Vec<u8> {
    let mut body = mqtt::string(b"MQTT");
    body.extend_from_slice(&[5, 0x00, 0, 0, 0x00]);
    body.extend(mqtt::string(id.as_bytes()));
    mqtt::packet(0x10, &body)
}

/// An MQTT 5.0 QoS 1 PUBLISH without properties.
fn publish_v5(topic: &str, id: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = mqtt::string(topic.as_bytes());
    body.extend_from_slice(&id.to_be_bytes());
    body.push(0x00);
    body.extend_from_slice(payload);
    mqtt::packet(0x32, &body)
}

// With the persistence directory full, QoS 1 messages are refused rather than acknowledged:
// MQTT 5.0 gets PUBACK 0x97 (Quota exceeded), MQTT 3.1.1 is disconnected; the broker goes on,
// takes messages again once there is room, and every message it acknowledged is delivered
// after a restart. Needs a small tmpfs (mount, as root): skipped where that is not allowed.
#[test]
fn a_full_disk_refuses_qos_1_and_recovers() {
    let mut mounted = None;
    let mut b = Broker::start_with(Path::new(PIGEON), |port, dir| {
        let db = dir.join("db");
        if mount_tmpfs(&db, "256k") {
            mounted = Some(Mounted(db));
        }
        let conf = dir.join("pigeon.conf");
        std::fs::write(&conf, config(port, dir, "max_queued_messages 0")).expect("config");
        vec!["-c".to_owned(), conf.display().to_string()]
    });
    let Some(mount) = mounted else {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    };
    let (mut keeper, _) = resume(&b, "keeper");
    assert_eq!(keeper.subscribe(&[("full/#", 1)]), [1]);
    keeper.send(&mqtt::disconnect());
    drop(keeper);

    // MQTT 5.0: acknowledged while there is room, then 0x97.
    let mut v5 = RawClient::connect(&b);
    v5.send(&connect_v5("filler"));
    assert_eq!(v5.read_packet().kind(), mqtt::CONNACK);
    let payload = vec![b'x'; 8 * 1024];
    let mut acked = Vec::new();
    let mut refused = false;
    for n in 1..=200u16 {
        let mut body = format!("{n:05} ").into_bytes();
        body.extend_from_slice(&payload);
        v5.send(&publish_v5("full/v5", n, &body));
        let ack = v5.expect(mqtt::PUBACK).to_bytes();
        assert_eq!(&ack[2..4], &n.to_be_bytes(), "PUBACK for {n}");
        match ack.get(4).copied().unwrap_or(0) {
            0x00 => acked.push(n),
            0x97 => {
                refused = true;
                break;
            }
            other => panic!("PUBACK reason {other:#x}"),
        }
    }
    assert!(
        refused,
        "a 256 KiB disk fills: {} acknowledged\n{}",
        acked.len(),
        b.log()
    );
    assert!(!acked.is_empty());
    assert!(
        b.wait_for_log("refusing new QoS 1 and 2 messages"),
        "{}",
        b.log()
    );

    // MQTT 3.1.1: no acknowledgement can refuse, so the connection is closed.
    let mut v3 = RawClient::connect_v311(&b, "v3");
    v3.send(&mqtt::publish(
        "full/v3",
        b"no room",
        1,
        Some(1),
        false,
        false,
    ));
    let (closed, got) = v3.closed();
    assert!(
        closed && got.is_empty(),
        "closed without PUBACK: {got:02x?}"
    );
    // QoS 0 goes on.
    let mut q0 = RawClient::connect_v311(&b, "q0");
    q0.publish("elsewhere", b"q0", 0, false);
    q0.ping();

    // Room again: the broker writes again and acknowledges.
    assert!(
        std::process::Command::new("mount")
            .args(["-o", "remount,size=64m"])
            .arg(&mount.0)
            .status()
            .is_ok_and(|s| s.success())
    );
    assert!(
        pigeon_test::wait_until(|| {
            let (mut c, _) = RawClient::connect_with(&b, &Connect::new("again"));
            c.try_send(&mqtt::publish(
                "full/again",
                b"room",
                1,
                Some(1),
                false,
                false,
            ))
            .is_ok()
                && matches!(c.try_read_packet(), Ok(Some(p)) if p.kind() == mqtt::PUBACK)
        }),
        "{}",
        b.log()
    );

    // Everything acknowledged is there after a restart.
    drop((v5, v3, q0));
    assert!(b.stop(), "{}", b.log());
    b.restart();
    let (mut keeper, present) = resume(&b, "keeper");
    assert!(present);
    let mut got = HashSet::new();
    keeper.set_read_timeout(Duration::from_secs(3));
    while let Ok(Some(packet)) = keeper.try_read_packet() {
        if let Some(m) = packet.publish() {
            if let Some(id) = m.packet_id {
                keeper.send(&mqtt::ack(mqtt::PUBACK, id));
            }
            if m.topic == "full/v5" {
                let n: u16 = String::from_utf8_lossy(&m.payload[..5]).parse().expect("n");
                got.insert(n);
            }
        }
    }
    let lost: Vec<u16> = acked.iter().copied().filter(|n| !got.contains(n)).collect();
    assert!(lost.is_empty(), "acknowledged, then lost: {lost:?}");
    b.stop();
    drop(mount);
}

// An MQTT 5.0 session opened with Clean Start 1 and a Session Expiry Interval outlives its
// connection, and a restart too (Mosquitto 2.0 does not restore such a session; see
// docs/differences.md).
#[test]
fn a_v5_session_with_an_expiry_interval_survives_a_restart() {
    let mut b = broker("");
    // CONNECT: Clean Start 1, Session Expiry Interval 3600.
    let mut body = mqtt::string(b"MQTT");
    body.extend_from_slice(&[5, 0x02, 0, 60, 5, 0x11, 0, 0, 0x0E, 0x10]);
    body.extend(mqtt::string(b"v5-keeper"));
    let mut c = RawClient::connect(&b);
    c.send(&mqtt::packet(0x10, &body));
    assert_eq!(c.read_packet().kind(), mqtt::CONNACK);
    // SUBSCRIBE (no properties) to v5/# at QoS 1.
    let mut sub = vec![0, 1, 0];
    sub.extend(mqtt::string(b"v5/#"));
    sub.push(1);
    c.send(&mqtt::packet(0x82, &sub));
    assert_eq!(c.read_packet().kind(), mqtt::SUBACK);
    c.send(&[0xE0, 0x00]);
    drop(c);

    let mut p = RawClient::connect_v311(&b, "publisher");
    p.publish("v5/x", b"kept for v5", 1, false);
    drop(p);
    assert!(b.stop());
    b.restart();

    // Clean Start 0: the session is there, with the message.
    let mut body = mqtt::string(b"MQTT");
    body.extend_from_slice(&[5, 0x00, 0, 60, 5, 0x11, 0, 0, 0x0E, 0x10]);
    body.extend(mqtt::string(b"v5-keeper"));
    let mut c = RawClient::connect(&b);
    c.send(&mqtt::packet(0x10, &body));
    let connack = c.read_packet();
    assert_eq!(connack.kind(), mqtt::CONNACK);
    assert_eq!(
        connack.body.first(),
        Some(&1),
        "Session Present: {connack:02x?}"
    );
    let m = c.recv_publish();
    // (The raw reader knows 3.1.1: the properties' length byte, 0, heads the payload.)
    assert!(m.payload.ends_with(b"kept for v5"), "{m:?}");
}
