//! Codec benchmarks: per-packet cost of decoding and encoding the packets a broker handles
//! most, and of `encoded_len`.
//!
//! Run with `cargo bench -p pigeon-proto --bench codec`. Every benchmark reports the time per
//! packet (`Throughput::Elements`), so the batch benchmark is directly comparable with the
//! single-packet ones.
//!
//! How decode inputs are fed, and why:
//! - Single packets go through `Packet::decode(Bytes, ..)` on a clone of one pre-built
//!   `Bytes`. Cloning a shared `Bytes` is a reference-count increment, and the decoder itself
//!   only slices that buffer (it is zero-copy), so the timed work is the decoder's: fixed
//!   header, validation, property parsing, the `Packet` it builds. Building a fresh `BytesMut`
//!   for each iteration would instead time an allocation and a copy of the input too, which is
//!   the socket layer's cost, not the codec's.
//! - The batch goes through `Decoder::decode(&mut BytesMut)`, the streaming path a connection
//!   uses, which needs an owned `BytesMut` it can split. That buffer is rebuilt for every
//!   batch by `iter_batched`, whose setup is not timed, so its allocation and copy stay out of
//!   the figure while the splitting the streaming decoder really does stays in.

use std::hint::black_box;
use std::num::{NonZeroU16, NonZeroU32};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pigeon_proto::properties::{ConnectProperties, WillProperties};
use pigeon_proto::{
    Bytes, BytesMut, Connect, Decoder, MqttString, Packet, PacketId, PayloadFormat, Protocol,
    Publish, QoS, TopicName, Will,
};

/// Size of the small PUBLISH, fixed header included.
const SMALL_PUBLISH_LEN: usize = 64;
/// Packets in the batch benchmark.
const BATCH: usize = 100;
/// Topic of every PUBLISH (24 bytes).
const TOPIC: &str = "devices/d-0042/telemetry";

/// The versions and QoS levels of the small PUBLISH benchmarks.
const VARIANTS: [(Protocol, QoS, &str); 4] = [
    (Protocol::V311, QoS::AtMostOnce, "v311_qos0"),
    (Protocol::V311, QoS::AtLeastOnce, "v311_qos1"),
    (Protocol::V5, QoS::AtMostOnce, "v5_qos0"),
    (Protocol::V5, QoS::AtLeastOnce, "v5_qos1"),
];

/// A PUBLISH to [`TOPIC`] with `payload_len` bytes of payload and no properties.
fn publish(qos: QoS, payload_len: usize) -> Publish {
    let mut p = Publish::new(
        TopicName::from_static(TOPIC),
        Bytes::from(vec![0xA5; payload_len]),
    );
    p.qos = qos;
    if qos != QoS::AtMostOnce {
        p.packet_id = PacketId::new(0x1234);
    }
    p
}

/// A PUBLISH whose whole encoding in `protocol` is exactly [`SMALL_PUBLISH_LEN`] bytes: the
/// payload fills what the fixed header, topic, packet identifier and (5.0) the empty property
/// block leave.
fn small_publish(protocol: Protocol, qos: QoS) -> Publish {
    let overhead = publish(qos, 0).encoded_len(protocol);
    let p = publish(qos, SMALL_PUBLISH_LEN - overhead);
    assert_eq!(p.encoded_len(protocol), SMALL_PUBLISH_LEN);
    assert_eq!(encode(&p.clone().into(), protocol).len(), SMALL_PUBLISH_LEN);
    p
}

/// A CONNECT as an MQTT 5.0 client with a session, flow control, a will and credentials sends
/// it: eight properties, a will with five, user name and password.
fn connect_v5() -> Connect {
    let mut properties = ConnectProperties::default();
    properties.session_expiry_interval = Some(3600);
    properties.receive_maximum = NonZeroU16::new(32);
    properties.maximum_packet_size = NonZeroU32::new(1 << 20);
    properties.topic_alias_maximum = Some(16);
    properties.request_response_information = Some(true);
    properties.request_problem_information = Some(true);
    properties.user_properties = vec![(ms("site"), ms("plant-7")), (ms("fw"), ms("2.4.1"))];

    let mut will_properties = WillProperties::default();
    will_properties.will_delay_interval = Some(30);
    will_properties.payload_format_indicator = Some(PayloadFormat::Utf8);
    will_properties.message_expiry_interval = Some(600);
    will_properties.content_type = Some(ms("text/plain"));
    will_properties.user_properties = vec![(ms("reason"), ms("lost"))];

    let mut c = Connect::new(Protocol::V5, ms("sensor-d-0042"));
    c.keep_alive = 30;
    c.properties = properties;
    c.will = Some(Will {
        topic: TopicName::from_static("devices/d-0042/status"),
        payload: Bytes::from_static(b"offline"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: will_properties,
    });
    c.username = Some(ms("d-0042"));
    c.password = Some(Bytes::from_static(b"0123456789abcdef"));
    c
}

fn ms(s: &'static str) -> MqttString {
    MqttString::from_static(s)
}

/// The encoding of `packet`, as a shared `Bytes` that clones by reference count.
fn encode(packet: &Packet, protocol: Protocol) -> Bytes {
    let mut buf = BytesMut::new();
    packet
        .encode(protocol, &mut buf)
        .expect("benchmark packet encodes");
    buf.freeze()
}

fn bench_publish_small(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish_64B");
    group.throughput(Throughput::Elements(1));
    for (protocol, qos, name) in VARIANTS {
        let packet = Packet::from(small_publish(protocol, qos));
        let wire = encode(&packet, protocol);
        assert_eq!(
            Packet::decode(wire.clone(), Some(protocol)).as_ref(),
            Ok(&packet)
        );

        // See the module comment: a refcount clone in, the decoder's work measured.
        group.bench_with_input(BenchmarkId::new("decode", name), &wire, |b, wire| {
            b.iter(|| Packet::decode(black_box(wire.clone()), black_box(Some(protocol))));
        });

        // The output buffer is reused, as a connection's write buffer is: `clear` keeps its
        // capacity, so no iteration allocates.
        let mut out = BytesMut::with_capacity(4 * SMALL_PUBLISH_LEN);
        group.bench_with_input(BenchmarkId::new("encode", name), &packet, |b, packet| {
            b.iter(|| {
                out.clear();
                black_box(packet)
                    .encode(black_box(protocol), &mut out)
                    .expect("encodes");
                black_box(out.len())
            });
        });
    }
    group.finish();
}

fn bench_decode_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish_64B_batch100");
    group.throughput(Throughput::Elements(BATCH as u64));
    for protocol in [Protocol::V311, Protocol::V5] {
        // Alternate QoS 0 and QoS 1, each exactly 64 bytes.
        let mut stream = BytesMut::new();
        for i in 0..BATCH {
            let qos = if i % 2 == 0 {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            };
            Packet::from(small_publish(protocol, qos))
                .encode(protocol, &mut stream)
                .expect("encodes");
        }
        assert_eq!(stream.len(), BATCH * SMALL_PUBLISH_LEN);
        let stream = stream.freeze();

        let name = if protocol.is_v5() { "v5" } else { "v311" };
        group.bench_with_input(BenchmarkId::new("decode", name), &stream, |b, stream| {
            b.iter_batched(
                // Untimed: a fresh buffer for the decoder to consume.
                || BytesMut::from(&stream[..]),
                |mut buf| {
                    let mut decoder = Decoder::new(Some(protocol), Decoder::MAX_PACKET_SIZE);
                    let mut n = 0;
                    while let Some(packet) = decoder.decode(&mut buf).expect("decodes") {
                        black_box(packet);
                        n += 1;
                    }
                    assert_eq!(n, BATCH);
                    buf
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

fn bench_publish_1k(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish_1KiB");
    group.throughput(Throughput::Elements(1));
    for protocol in [Protocol::V311, Protocol::V5] {
        let packet = Packet::from(publish(QoS::AtLeastOnce, 1024));
        let len = packet.encoded_len(protocol);
        let mut out = BytesMut::with_capacity(2 * len);
        let name = if protocol.is_v5() {
            "v5_qos1"
        } else {
            "v311_qos1"
        };
        group.bench_with_input(BenchmarkId::new("encode", name), &packet, |b, packet| {
            b.iter(|| {
                out.clear();
                black_box(packet)
                    .encode(black_box(protocol), &mut out)
                    .expect("encodes");
                black_box(out.len())
            });
        });
        assert_eq!(out.len(), len);
    }
    group.finish();
}

fn bench_connect(c: &mut Criterion) {
    let mut group = c.benchmark_group("connect_v5_props");
    group.throughput(Throughput::Elements(1));
    let packet = Packet::from(connect_v5());
    let wire = encode(&packet, Protocol::V5);
    assert_eq!(Packet::decode(wire.clone(), None).as_ref(), Ok(&packet));
    // A server decodes CONNECT before it knows the version: protocol `None`.
    group.bench_with_input(BenchmarkId::new("decode", wire.len()), &wire, |b, wire| {
        b.iter(|| Packet::decode(black_box(wire.clone()), black_box(None)));
    });
    group.finish();
}

fn bench_encoded_len(c: &mut Criterion) {
    let mut group = c.benchmark_group("encoded_len");
    group.throughput(Throughput::Elements(1));
    let cases = [
        (
            "publish_64B_v311_qos1",
            Packet::from(small_publish(Protocol::V311, QoS::AtLeastOnce)),
            Protocol::V311,
        ),
        (
            "publish_64B_v5_qos1",
            Packet::from(small_publish(Protocol::V5, QoS::AtLeastOnce)),
            Protocol::V5,
        ),
        ("connect_v5_props", Packet::from(connect_v5()), Protocol::V5),
    ];
    for (name, packet, protocol) in &cases {
        group.bench_with_input(BenchmarkId::from_parameter(name), packet, |b, packet| {
            b.iter(|| black_box(packet).encoded_len(black_box(*protocol)));
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_publish_small,
    bench_decode_batch,
    bench_publish_1k,
    bench_connect,
    bench_encoded_len
);
criterion_main!(benches);
