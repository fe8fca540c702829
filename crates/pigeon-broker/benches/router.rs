//! Broker hot-path benchmarks: matching a topic against 100,000 subscriptions, and encoding
//! one message for many subscribers (fan-out).
//!
//! Run with `cargo bench -p pigeon-broker --bench router`. PUBLISH decoding has its own
//! benchmark in `pigeon-proto` (`--bench codec`).
//!
//! The subscription set is shaped like a fleet: 100 sites of 900 devices, each device
//! subscribed to its own telemetry topic (90,000 exact filters), plus 9,000 `+` filters (a
//! status watcher per device number across sites) and 1,000 `#` filters (dashboards per site
//! and per site section). A topic therefore meets exact, `+` and `#` nodes on its way down.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pigeon_broker::message::{Delivery, Message};
use pigeon_broker::router::SubscriptionTree;
use pigeon_proto::{Bytes, BytesMut, Packet, PacketId, Protocol, Publish, QoS, TopicName};

const SITES: u32 = 100;
const DEVICES: u32 = 900;

/// The 100,000 filters, each with a distinct subscriber key.
fn filters() -> Vec<String> {
    let mut out = Vec::with_capacity(100_000);
    for s in 0..SITES {
        for d in 0..DEVICES {
            out.push(format!("site/{s}/device/{d}/telemetry"));
        }
    }
    for d in 0..9_000 {
        out.push(format!("site/+/device/{d}/status"));
    }
    for s in 0..SITES {
        out.push(format!("site/{s}/#"));
        for section in 0..9 {
            out.push(format!("site/{s}/device/{section}/#"));
        }
    }
    assert_eq!(out.len(), 100_000);
    out
}

fn build_tree(filters: &[String]) -> SubscriptionTree<u32, QoS> {
    let mut tree = SubscriptionTree::new();
    for (key, f) in (0u32..).zip(filters) {
        tree.insert(f, key, QoS::AtMostOnce);
    }
    tree
}

fn matching(c: &mut Criterion) {
    let filters = filters();
    let tree = build_tree(&filters);
    assert_eq!(tree.len(), 100_000);
    let mut g = c.benchmark_group("match_100k");
    g.throughput(Throughput::Elements(1));
    for (name, topic, expected) in [
        // The device's exact filter and its site's `#`.
        ("exact_hit", "site/42/device/417/telemetry", 2),
        // The `+` status watcher of device 417 and the site's `#`.
        ("plus_hit", "site/42/device/417/status", 2),
        // Only the site's `#`, and its section's `#` (device 3).
        ("hash_only", "site/42/device/3/firmware", 2),
        // Nothing at all: a site that does not exist.
        ("miss", "plant/7/line/2/speed", 0),
    ] {
        let mut n = 0;
        tree.for_each_match(topic, |_, _| n += 1);
        assert_eq!(n, expected, "{topic}");
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut n = 0u32;
                tree.for_each_match(black_box(topic), |k, _| n = n.wrapping_add(*k));
                n
            });
        });
    }
    g.finish();

    let mut g = c.benchmark_group("subscribe_100k");
    g.sample_size(10);
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("insert_all", |b| {
        b.iter(|| build_tree(black_box(&filters)).len());
    });
    g.finish();
}

/// The broker's fan-out path per subscriber: a `Delivery` sharing the message, turned into a
/// PUBLISH with the subscriber's packet identifier, encoded into the connection's write buffer.
fn fan_out(c: &mut Criterion) {
    let mut g = c.benchmark_group("fan_out_encode");
    for (qos, qname) in [(QoS::AtMostOnce, "q0"), (QoS::AtLeastOnce, "q1")] {
        for payload in [16usize, 1024] {
            let mut publish = Publish::new(
                TopicName::from_static("site/42/device/417/telemetry"),
                Bytes::from(vec![0x5A; payload]),
            );
            publish.qos = qos;
            publish.packet_id = PacketId::new(1).filter(|_| qos != QoS::AtMostOnce);
            let now = pigeon_broker::clock::now();
            let message = Message::from_publish(publish, None, now);
            for subscribers in [1u64, 50, 500] {
                g.throughput(Throughput::Elements(subscribers));
                let id = BenchmarkId::new(format!("{qname}_{payload}B"), subscribers);
                let mut wbuf = BytesMut::with_capacity(64 * 1024);
                g.bench_with_input(id, &subscribers, |b, &n| {
                    b.iter(|| {
                        wbuf.clear();
                        let mut pid = PacketId::FIRST;
                        for _ in 0..n {
                            let delivery = Delivery::new(Arc::clone(&message), qos, false);
                            let packet_id = (qos != QoS::AtMostOnce).then_some(pid);
                            pid = pid.next();
                            Packet::Publish(delivery.to_publish(packet_id, false, now))
                                .encode(Protocol::V311, &mut wbuf)
                                .expect("encodable");
                        }
                        wbuf.len()
                    });
                });
            }
        }
    }
    g.finish();
}

criterion_group!(benches, matching, fan_out);
criterion_main!(benches);
