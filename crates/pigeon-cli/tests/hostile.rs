//! Hostile input and load, bounded in time and count: connections that never finish their
//! CONNECT, more connections than `max_connections` allows, subscribers that never read, and
//! a Remaining Length announcing 256 MB. Each case checks that the broker keeps serving a
//! well-behaved client and, where memory is at stake, that its resident set stays bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use pigeon_test::mqtt::Connect;
use pigeon_test::{Broker, RawClient};

const PIGEON: &str = env!("CARGO_BIN_EXE_pigeon");

const MIB: u64 = 1024 * 1024;

fn broker(config: &str) -> Broker {
    Broker::start(pigeon_test::broker_binary(PIGEON), config, &[])
}

/// The broker's resident set size in bytes, from `/proc/PID/status`.
fn rss(broker: &Broker) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", broker.pid()))
        .expect("read /proc/PID/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib * 1024
}

/// A QoS 1 round trip through the broker to `sub` (subscribed to `check/#`), published by a
/// fresh client `publisher`.
fn assert_routes(broker: &Broker, sub: &mut RawClient, publisher: &mut RawClient, payload: &str) {
    publisher.publish("check/alive", payload.as_bytes(), 1, false);
    let got = sub.recv_publish_acked();
    assert_eq!(
        (got.topic.as_str(), got.payload.as_slice()),
        ("check/alive", payload.as_bytes()),
        "broker log:\n{}",
        broker.log()
    );
}

/// Connections that send only part of a CONNECT are dropped after `connect_timeout`, while a
/// client connected before them keeps working, also past that timeout.
#[test]
fn slowloris_connections_are_dropped_after_connect_timeout() {
    const SLOW: usize = 50;
    let mut broker = broker("connect_timeout 1");
    let mut sub = RawClient::connect_v311(&broker, "patient-sub");
    assert_eq!(sub.subscribe(&[("check/#", 1)]), [1]);

    let connect = Connect::new("slowloris").encode();
    let mut slow: Vec<RawClient> = (0..SLOW)
        .map(|i| {
            let mut c = RawClient::connect(&broker);
            // A few bytes more for each, never the whole packet.
            c.send(&connect[..2 + i % (connect.len() - 3)]);
            c.set_read_timeout(Duration::from_secs(5));
            c
        })
        .collect();

    // Meanwhile the broker still serves others.
    let mut publisher = RawClient::connect_v311(&broker, "patient-pub");
    assert_routes(&broker, &mut sub, &mut publisher, "during");

    for (i, c) in slow.iter_mut().enumerate() {
        let (closed, got) = c.closed();
        assert!(
            closed && got.is_empty(),
            "slow connection {i} still open (received {got:02x?}); broker log:\n{}",
            broker.log()
        );
    }
    assert!(
        broker.wait_for_log("has exceeded timeout"),
        "{}",
        broker.log()
    );

    // The connected clients are past the connect timeout and unaffected by it.
    broker.assert_running("slowloris");
    sub.ping();
    assert_routes(&broker, &mut sub, &mut publisher, "after");
}

/// Connection `max_connections + 1` is closed without a CONNACK; the clients already
/// connected keep exchanging messages; once some leave, new clients are accepted again.
#[test]
fn connection_flood_stops_at_max_connections() {
    const MAX: usize = 50;
    let mut broker = broker(&format!("max_connections {MAX}"));
    let mut sub = RawClient::connect_v311(&broker, "flood-sub");
    assert_eq!(sub.subscribe(&[("check/#", 1)]), [1]);
    let mut publisher = RawClient::connect_v311(&broker, "flood-pub");
    let mut others: Vec<RawClient> = (2..MAX)
        .map(|i| RawClient::connect_v311(&broker, &format!("flood-{i}")))
        .collect();

    // Over the limit: closed without a word, however often it is tried.
    for i in 0..5 {
        let (mut extra, first) = RawClient::connect_with(&broker, &Connect::new("one-too-many"));
        assert!(
            first.is_none(),
            "connection {} over max_connections {MAX} answered {first:?} (try {i})",
            MAX + 1
        );
        assert!(extra.closed().0, "connection over the limit left open");
    }
    assert!(
        broker.wait_for_log("max_connections exceeded"),
        "{}",
        broker.log()
    );

    // Those inside the limit are served as before.
    assert_routes(&broker, &mut sub, &mut publisher, "at the limit");
    others[0].ping();

    // Five leave; five newcomers get in (once the broker has seen the others go).
    others.truncate(others.len() - 5);
    let mut newcomers = Vec::new();
    for i in 0..5 {
        let id = format!("newcomer-{i}");
        let mut accepted = None;
        assert!(
            pigeon_test::wait_until(|| {
                let (c, first) = RawClient::connect_with(&broker, &Connect::new(&id));
                let ok = first.is_some_and(|p| p.to_bytes() == [0x20, 0x02, 0x00, 0x00]);
                if ok {
                    accepted = Some(c);
                }
                ok
            }),
            "{id} not accepted after clients left; broker log:\n{}",
            broker.log()
        );
        newcomers.extend(accepted);
    }
    // Full again.
    let (_, first) = RawClient::connect_with(&broker, &Connect::new("one-too-many-again"));
    assert!(first.is_none(), "over the limit again: {first:?}");
    broker.assert_running("connection flood");
    assert_routes(&broker, &mut sub, &mut publisher, "after the flood");
    newcomers[4].ping();
}

/// A client subscribed to `filter` at `qos` that, past its SUBACK, never reads a byte.
fn deaf_subscriber(broker: &Broker, id: &str, filter: &str, qos: u8) -> RawClient {
    let mut c = RawClient::connect_v311(broker, id);
    assert_eq!(c.subscribe(&[(filter, qos)]), [qos]);
    c
}

/// Subscribers that never read, at QoS 0 and 1, while 50 MB go by: the broker's memory stays
/// within what its limits allow (queue, write buffer), and a reading subscriber gets every
/// message.
#[test]
fn subscribers_that_never_read_do_not_grow_memory() {
    const PAYLOAD: usize = 64 * 1024;
    const COUNT: usize = 800; // 50 MiB in all
    const WINDOW: usize = 32;
    // Per deaf client: the queue (max_queued_bytes) plus the in-flight window (20 x 64 KiB)
    // plus the 256 KiB write buffer, about 5.5 MiB; two of them is 11 MiB, and a generous
    // margin for the allocator and the reading subscriber's window. Keeping the 50 MiB
    // would overshoot it.
    const BOUND: u64 = 32 * MIB;
    let broker = broker("max_queued_messages 1000\nmax_queued_bytes 4194304\n");

    let deaf0 = deaf_subscriber(&broker, "deaf-0", "flood/#", 0);
    let deaf1 = deaf_subscriber(&broker, "deaf-1", "flood/#", 1);
    let mut reader = RawClient::connect_v311(&broker, "reader");
    assert_eq!(reader.subscribe(&[("flood/#", 1)]), [1]);
    let mut publisher = RawClient::connect_v311(&broker, "publisher");
    publisher.publish("flood/warmup", b"x", 1, false);
    assert_eq!(reader.recv_publish_acked().topic, "flood/warmup");

    let received = Arc::new(AtomicUsize::new(0));
    let reading = {
        let received = Arc::clone(&received);
        thread::spawn(move || {
            for i in 0..COUNT {
                let p = reader.recv_publish_acked();
                assert_eq!(p.payload.len(), PAYLOAD, "message {i}");
                assert_eq!(
                    p.payload[..8],
                    (i as u64).to_be_bytes(),
                    "message {i} in order"
                );
                received.fetch_add(1, Ordering::Release);
            }
        })
    };

    let before = rss(&broker);
    let mut peak = before;
    let mut payload = vec![0x5A; PAYLOAD];
    for i in 0..COUNT {
        // Keep the reader within a window, so that its own queue never overflows.
        assert!(
            pigeon_test::wait_until(|| received.load(Ordering::Acquire) + WINDOW >= i),
            "reader stuck at {} of {i}; broker log:\n{}",
            received.load(Ordering::Acquire),
            broker.log()
        );
        payload[..8].copy_from_slice(&(i as u64).to_be_bytes());
        publisher.publish(&format!("flood/{}", i % 4), &payload, 1, false);
        if i % 16 == 0 {
            peak = peak.max(rss(&broker));
        }
    }
    reading.join().expect("reader got every message");
    peak = peak.max(rss(&broker));
    let growth = peak.saturating_sub(before);
    eprintln!(
        "deaf subscribers: RSS before {} KiB, peak {} KiB, growth {} KiB (bound {} KiB)",
        before / 1024,
        peak / 1024,
        growth / 1024,
        BOUND / 1024
    );
    assert!(
        growth < BOUND,
        "RSS grew by {} KiB with subscribers that never read (bound {} KiB)",
        growth / 1024,
        BOUND / 1024
    );
    drop((deaf0, deaf1));
}

/// A Remaining Length of 268,435,455 (0xFF 0xFF 0xFF 0x7F) over `max_packet_size` closes the
/// connection at once; within it, nothing is allocated on the header's word alone. Either way
/// the resident set does not jump by 256 MB, and the broker goes on serving.
#[test]
fn huge_remaining_length_is_refused_before_allocation() {
    const HUGE: [u8; 4] = [0xFF, 0xFF, 0xFF, 0x7F];
    const BOUND: u64 = 16 * MIB;
    let mut broker = broker("max_packet_size 1048576\nconnect_timeout 1");
    let mut sub = RawClient::connect_v311(&broker, "huge-sub");
    assert_eq!(sub.subscribe(&[("check/#", 1)]), [1]);
    let mut publisher = RawClient::connect_v311(&broker, "huge-pub");
    let before = rss(&broker);

    // As the first packet: a CONNECT, and a PUBLISH (which is no CONNECT).
    for first in [0x10u8, 0x30] {
        let mut c = RawClient::connect(&broker);
        c.send(&[first]);
        c.send(&HUGE);
        let (closed, got) = c.closed();
        assert!(
            closed,
            "huge first packet {first:#04x}: still open, got {got:02x?}"
        );
    }
    // After CONNECT: a PUBLISH announcing 256 MB, and a few bytes of it.
    let mut c = RawClient::connect_v311(&broker, "huge-after-connect");
    c.send(&[0x30]);
    c.send(&HUGE);
    let _ = c.try_send(&[0u8; 1024]);
    let (closed, got) = c.closed();
    assert!(closed, "huge PUBLISH: still open, got {got:02x?}");

    let after = rss(&broker);
    eprintln!(
        "huge over max_packet_size: RSS {} KiB -> {} KiB",
        before / 1024,
        after / 1024
    );
    assert!(
        after.saturating_sub(before) < BOUND,
        "RSS went from {} KiB to {} KiB",
        before / 1024,
        after / 1024
    );
    broker.assert_running("huge remaining length");
    assert_routes(&broker, &mut sub, &mut publisher, "after huge");
}

/// Without a `max_packet_size`, a header announcing 256 MB is within the protocol's limit:
/// the broker waits for the body but does not reserve it, so the resident set stays flat; the
/// connection is dropped by `connect_timeout` (before CONNECT) or when the client goes away.
#[test]
fn huge_remaining_length_within_limits_allocates_nothing_upfront() {
    const HUGE: [u8; 4] = [0xFF, 0xFF, 0xFF, 0x7F];
    const BOUND: u64 = 16 * MIB;
    const CLIENTS: usize = 8;
    let mut broker = broker("connect_timeout 1");
    let mut sub = RawClient::connect_v311(&broker, "huge-sub");
    assert_eq!(sub.subscribe(&[("check/#", 1)]), [1]);
    let mut publisher = RawClient::connect_v311(&broker, "huge-pub");
    let before = rss(&broker);

    let mut huge: Vec<RawClient> = (0..CLIENTS)
        .map(|i| {
            let mut c = RawClient::connect_v311(&broker, &format!("huge-{i}"));
            c.send(&[0x30]);
            c.send(&HUGE);
            let _ = c.try_send(&[0u8; 4096]);
            c
        })
        .collect();
    let mut connect = RawClient::connect(&broker);
    connect.send(&[0x10]);
    connect.send(&HUGE);
    connect.set_read_timeout(Duration::from_secs(5));

    // The broker is still responsive with eight 256 MB packets announced.
    assert_routes(&broker, &mut sub, &mut publisher, "during huge");
    let during = rss(&broker);
    eprintln!(
        "huge within limits: RSS {} KiB -> {} KiB",
        before / 1024,
        during / 1024
    );
    assert!(
        during.saturating_sub(before) < BOUND,
        "RSS went from {} KiB to {} KiB with {CLIENTS} huge packets announced",
        before / 1024,
        during / 1024
    );
    let (closed, _) = connect.closed();
    assert!(closed, "huge CONNECT outlived connect_timeout 1");
    huge.clear();
    broker.assert_running("huge remaining length");
    assert_routes(&broker, &mut sub, &mut publisher, "after huge");
}
