//! Decoding allocates memory in proportion to the input, never to what the input claims.
//!
//! This test binary installs a counting global allocator: it wraps `std::alloc::System` and,
//! while the current thread has counting switched on, adds up every byte requested (`alloc`,
//! `alloc_zeroed`, and the full new size of every `realloc`). Frees are not subtracted: the
//! bound is on the total requested, the quantity an attacker would try to inflate.

// `unsafe` is not allowed in this workspace, but a `#[global_allocator]` must be an
// `unsafe impl GlobalAlloc`. This file is the test allocator and nothing else in it is unsafe:
// every method forwards its arguments unchanged to `System`. This needs the workspace's
// `unsafe_code` lint at `deny` (which an `allow` can override), not `forbid`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use pigeon_proto::properties::UserProperty;
use pigeon_proto::{
    Bytes, BytesMut, Connect, DecodeError, Decoder, FrameHeader, MqttString, Packet, PacketId,
    Protocol, Publish, QoS, ReasonCode, SubAck, Subscribe, SubscriptionOptions, TopicFilter,
    TopicName, UnsubAck, Unsubscribe, Will,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};

// ---------------------------------------------------------------------------------------------
// The counting allocator
// ---------------------------------------------------------------------------------------------

struct CountingAllocator;

thread_local! {
    // Const-initialised and without destructors: reading them never allocates.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static REQUESTED: Cell<usize> = const { Cell::new(0) };
}

fn record(bytes: usize) {
    // `try_with`: the allocator also runs while thread-locals are being torn down.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = REQUESTED.try_with(|n| n.set(n.get().saturating_add(bytes)));
        }
    });
}

// SAFETY: each method calls the same method of `System` with the arguments it was given, so
// it upholds exactly the contract `System` does; the bookkeeping touches only thread-locals.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` through this allocator with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: as for `dealloc`; the caller upholds `realloc`'s contract on `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Runs `f` and returns its result with the bytes this thread requested meanwhile.
fn measure<R>(f: impl FnOnce() -> R) -> (R, usize) {
    REQUESTED.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    let result = f();
    COUNTING.with(|on| on.set(false));
    (result, REQUESTED.with(Cell::get))
}

// ---------------------------------------------------------------------------------------------
// The bound
// ---------------------------------------------------------------------------------------------

/// Bytes allocated per input byte, at most.
///
/// What decoding an input of n bytes allocates:
/// - the copy of the input into a `BytesMut`: n;
/// - the reservation for an incomplete packet, when the decoder's maximum packet size is n (so
///   that no packet larger than the input is awaited): at most 2n (a `Vec` doubling, or the
///   consumed offset plus the pending packet);
/// - per decoded packet, its `Vec`s. Growing a `Vec` to `count` elements requests in total at
///   most `max(8, 4 * count)` elements (capacities 4, 8, ..., at most twice the count), and
///   each element consumed input bytes: an Unsubscribe filter (40 bytes) at least 3 (two
///   length bytes and a character), a Subscribe filter with options (48 bytes) at least 4, a
///   User Property (64 bytes) at least 5 (identifier, two lengths), a Subscription Identifier
///   (4 bytes) at least 2, a SUBACK/UNSUBACK reason (1 byte) 1. The worst is 4 * 40 / 3 < 54
///   per byte. The minimum capacity of 4 costs at most 4 * 64 = 256 bytes for a packet of at
///   least 11 bytes (a v5 PUBACK with one User Property): < 24 per byte;
/// - per CONNECT, its `Box` (432 bytes) for at least 14 bytes: < 31 per byte, plus its two
///   User Property vectors (512 bytes for at least 31 bytes: < 17 per byte).
///
/// So about 1 + 2 + 54 = 57 per byte at worst; 64 leaves a margin.
const C: usize = 64;

/// Fixed cost, whatever the input: the `Shared` header `bytes` allocates the first time a
/// packet is split off the buffer, and slack. 1 KiB.
const K: usize = 1024;

const MIB: usize = 1 << 20;

/// The most the decoder reserves ahead for a packet whose header has arrived but whose body has
/// not (`RESERVE_LIMIT` in src/frame.rs): it does not take the peer's word for more.
const RESERVE_AHEAD: usize = 64 * 1024;

/// What decoding `data` as one connection's stream did: bytes requested, the header of the
/// incomplete packet the decoder stopped at (if it stopped for want of bytes), and the result.
#[derive(Debug)]
struct Run {
    requested: usize,
    pending: Option<FrameHeader>,
    error: Option<DecodeError>,
    packets: usize,
}

/// Decodes `data` until the decoder needs more bytes or fails, counting the allocations of
/// copying it into a buffer and of decoding. With `keep`, the packets stay alive (sharing the
/// buffer, which changes how `bytes` reserves); otherwise each is dropped at once.
fn run(protocol: Option<Protocol>, max: u32, data: &[u8], keep: bool) -> Run {
    // Room for every packet (each takes at least 2 bytes), allocated before counting starts.
    let mut kept: Vec<Packet> = Vec::with_capacity(if keep { data.len() / 2 + 1 } else { 0 });
    let ((pending, error, packets), requested) = measure(|| {
        let mut decoder = Decoder::new(protocol, max);
        let mut buf = BytesMut::from(data);
        let mut packets = 0;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(packet)) => {
                    packets += 1;
                    if keep {
                        assert!(kept.len() < kept.capacity(), "would allocate");
                        kept.push(packet);
                    }
                }
                Ok(None) => {
                    let pending = FrameHeader::parse(&buf, decoder.protocol(), max)
                        .ok()
                        .flatten();
                    break (pending, None, packets);
                }
                Err(e) => break (None, Some(e), packets),
            }
        }
    });
    drop(kept);
    Run {
        requested,
        pending,
        error,
        packets,
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs: random bytes, framed noise, and mutations of packets heavy in vectors
// ---------------------------------------------------------------------------------------------

fn s(text: &'static str) -> MqttString {
    MqttString::from_static(text)
}

fn id(v: u16) -> PacketId {
    PacketId::new(v).expect("non-zero")
}

/// Valid packets of `v` whose decoding allocates the most: many filters, user properties,
/// subscription identifiers, reasons, a boxed CONNECT.
fn seeds(v: Protocol) -> Vec<Vec<u8>> {
    let v5 = v.is_v5();
    let users: Vec<UserProperty> = (0..9).map(|_| (s("k"), s(""))).collect();
    let mut packets = Vec::new();

    let mut connect = Connect::new(v, s("c"));
    connect.will = Some(Will {
        topic: TopicName::from_static("w"),
        payload: Bytes::new(),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    });
    if v5 {
        connect.properties.user_properties = users.clone();
        if let Some(will) = &mut connect.will {
            will.properties.user_properties = users.clone();
        }
    }
    packets.push(Packet::from(connect));

    let mut publish = Publish::new(TopicName::from_static("t"), Bytes::new());
    if v5 {
        publish.properties.user_properties = users.clone();
        publish.properties.subscription_identifiers = (1..=17)
            .filter_map(pigeon_proto::properties::SubscriptionId::new)
            .collect();
    }
    packets.push(Packet::from(publish));

    let mut subscribe = Subscribe::new(
        id(1),
        TopicFilter::from_static("a"),
        SubscriptionOptions::new(QoS::AtMostOnce),
    );
    for _ in 0..16 {
        subscribe.filters.push((
            TopicFilter::from_static("+"),
            SubscriptionOptions::new(QoS::AtLeastOnce),
        ));
    }
    if v5 {
        subscribe.properties.user_properties = users.clone();
    }
    packets.push(Packet::from(subscribe));

    let mut unsubscribe = Unsubscribe::new(id(2), vec![TopicFilter::from_static("#"); 17]);
    if v5 {
        unsubscribe.properties.user_properties = users.clone();
    }
    packets.push(Packet::from(unsubscribe));

    packets.push(Packet::from(SubAck::new(id(3), vec![ReasonCode(1); 33])));
    packets.push(Packet::from(UnsubAck::new(
        id(4),
        if v5 {
            vec![ReasonCode::SUCCESS; 33]
        } else {
            Vec::new()
        },
    )));

    packets
        .iter()
        .map(|p| {
            let mut buf = BytesMut::new();
            p.encode(v, &mut buf)
                .unwrap_or_else(|e| panic!("seed {p:?} does not encode: {e}"));
            buf.to_vec()
        })
        .collect()
}

fn put_var_int(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7F) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
}

/// Valid fixed headers with random bodies.
fn framed_noise() -> impl Strategy<Value = Vec<u8>> {
    let first = prop_oneof![
        (0u8..16).prop_map(|flags| 0x30 | flags),
        select(vec![
            0x10u8, 0x20, 0x40, 0x50, 0x62, 0x70, 0x82, 0x90, 0xA2, 0xB0, 0xC0, 0xD0, 0xE0, 0xF0,
        ]),
    ];
    let frame = (first, vec(any::<u8>(), 0..=64)).prop_map(|(first, body)| {
        let mut out = vec![first];
        put_var_int(&mut out, body.len());
        out.extend_from_slice(&body);
        out
    });
    vec(frame, 1..=6).prop_map(|frames| frames.concat())
}

/// 1 to 4 seeds of a version, behind its CONNECT, with 1 to 4 byte mutations (which may turn
/// a length into a huge one).
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let mutation = (0u8..4, any::<Index>(), any::<u8>());
    prop_oneof![
        Just(Protocol::V31),
        Just(Protocol::V311),
        Just(Protocol::V5)
    ]
    .prop_flat_map(move |v| {
        let frames = seeds(v);
        let connect = frames[0].clone();
        (vec(select(frames), 1..=4), vec(mutation.clone(), 0..=4)).prop_map(
            move |(picked, mutations)| {
                let mut data = connect.clone();
                data.extend(picked.concat());
                for (kind, at, byte) in mutations {
                    let len = data.len();
                    match kind {
                        0 if len > 0 => data[at.index(len)] = byte,
                        1 => data.insert(at.index(len + 1), byte),
                        2 if len > 0 => {
                            data.remove(at.index(len));
                        }
                        _ => data.truncate(at.index(len + 1)),
                    }
                }
                data
            },
        )
    })
}

/// `data` followed by the fixed header of a PUBLISH announcing up to the largest Remaining
/// Length MQTT allows, and a few bytes of its body.
fn with_large_announcement(data: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        data,
        prop_oneof![
            0usize..=200_000,
            0usize..=pigeon_proto::MAX_VAR_INT as usize
        ],
        vec(any::<u8>(), 0..=16),
    )
        .prop_map(|(mut data, remaining, body)| {
            data.push(0x30);
            put_var_int(&mut data, remaining);
            data.extend_from_slice(&body);
            data
        })
}

fn any_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => vec(any::<u8>(), 0..=512),
        2 => framed_noise(),
        6 => mutated(),
        1 => with_large_announcement(framed_noise()),
        1 => with_large_announcement(mutated()),
    ]
}

fn protocol_option() -> impl Strategy<Value = Option<Protocol>> {
    select(vec![
        None,
        Some(Protocol::V31),
        Some(Protocol::V311),
        Some(Protocol::V5),
    ])
}

/// Bytes of a fixed header announcing a packet of `total` bytes in all, then `body` bytes.
fn announcing(total: usize, body: &[u8]) -> Vec<u8> {
    let mut remaining = total - 2;
    // The header grows with the length it encodes; shrink the length to keep `total` exact.
    while 1 + var_int_len(remaining) + remaining > total {
        remaining -= 1;
    }
    let mut out = vec![0x30];
    put_var_int(&mut out, remaining);
    assert_eq!(out.len() + remaining, total);
    out.extend_from_slice(body);
    out
}

fn var_int_len(value: usize) -> usize {
    let mut out = Vec::new();
    put_var_int(&mut out, value);
    out.len()
}

fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// The allocator really counts: otherwise every bound below would pass vacuously.
#[test]
fn counter_sees_allocations() {
    let (v, requested) = measure(|| vec![7u8; 1000]);
    assert_eq!(v.len(), 1000);
    assert!(requested >= 1000, "counted {requested}");
    let (_, requested) = measure(|| 1 + 1);
    assert_eq!(requested, 0);
}

proptest! {
    #![proptest_config(config())]

    /// With the maximum packet size set to the input's length, decoding n bytes requests at
    /// most C * n + K bytes, whatever the bytes are.
    #[test]
    fn decoding_allocates_linearly_in_the_input(
        data in any_input(),
        protocol in protocol_option(),
        keep in any::<bool>(),
    ) {
        let n = data.len();
        let max = u32::try_from(n).expect("small input");
        let r = run(protocol, max, &data, keep);
        prop_assert!(
            r.requested <= C * n + K,
            "{} bytes requested for {n} bytes of input: {r:?}", r.requested
        );
    }

    /// With the largest maximum packet size, the only allocation beyond C * n + K is the
    /// reservation for the packet whose fixed header has arrived but whose body has not: at
    /// most the size that header announces, and at most 64 KiB however much it announces.
    #[test]
    fn only_the_awaited_packet_is_reserved_beyond_linear(
        data in any_input(),
        protocol in protocol_option(),
        keep in any::<bool>(),
    ) {
        let n = data.len();
        let r = run(protocol, Decoder::MAX_PACKET_SIZE, &data, keep);
        let awaited = r.pending.map_or(0, |h| h.total_len());
        prop_assert!(
            r.requested <= C * n + K + awaited.min(RESERVE_AHEAD),
            "{} bytes requested for {n} bytes of input awaiting a {awaited}-byte packet: {r:?}",
            r.requested
        );
    }

    /// A header announcing anything up to 2 MiB, a few body bytes, a 1 MiB maximum: larger
    /// packets are refused without allocating; smaller ones reserve at most their own size.
    #[test]
    fn reservation_never_exceeds_the_maximum_packet_size(
        total in 2usize..=2 * MIB,
        body in vec(any::<u8>(), 0..=16),
    ) {
        let data = announcing(total, &body);
        let n = data.len();
        let r = run(Some(Protocol::V5), MIB as u32, &data, false);
        if total > MIB {
            prop_assert!(
                matches!(r.error, Some(DecodeError::PacketTooLarge { .. })),
                "{r:?}"
            );
            prop_assert!(r.requested <= C * n + K, "{r:?}");
        } else {
            prop_assert!(r.requested <= total.min(RESERVE_AHEAD) + C * n + K, "{r:?}");
        }
    }
}

/// A fixed header announcing a 200 MB packet, 10 body bytes, a 1 MiB maximum: refused from
/// the header alone, having allocated little more than the copy of the input.
#[test]
fn announced_200_mb_packet_over_1_mib_max_allocates_nothing_large() {
    let data = announcing(200_000_000, &[0; 10]);
    let n = data.len();
    let r = run(Some(Protocol::V311), MIB as u32, &data, false);
    assert!(
        matches!(r.error, Some(DecodeError::PacketTooLarge { .. })),
        "{r:?}"
    );
    assert!(r.requested <= C * n + K, "{r:?}");
}

/// A fixed header announcing a packet of exactly the 1 MiB maximum, 10 body bytes: the decoder
/// waits, having reserved at most 1 MiB plus the linear allowance (in fact at most 64 KiB).
#[test]
fn awaited_packet_at_1_mib_max_reserves_at_most_1_mib() {
    let data = announcing(MIB, &[0; 10]);
    let n = data.len();
    let r = run(Some(Protocol::V311), MIB as u32, &data, false);
    assert!(r.error.is_none() && r.packets == 0, "{r:?}");
    assert_eq!(r.pending.map(|h| h.total_len()), Some(MIB));
    assert!(r.requested <= MIB + C * n + K, "{r:?}");
    assert!(r.requested <= RESERVE_AHEAD + C * n + K, "{r:?}");
    eprintln!(
        "1 MiB maximum, header announcing 1 MiB, {n} bytes of input: {} bytes requested",
        r.requested
    );
}

/// With `Decoder::MAX_PACKET_SIZE` the same 15 bytes announcing 200 MB are accepted as the
/// start of a packet, but the decoder does not reserve 200 MB on the peer's word: at most
/// 64 KiB ahead, far below 1 MiB.
#[test]
fn announced_200_mb_packet_under_default_max_allocates_nothing_large() {
    let data = announcing(200_000_000, &[0; 10]);
    let n = data.len();
    let r = run(None, Decoder::MAX_PACKET_SIZE, &data, false);
    assert!(r.error.is_none() && r.packets == 0, "{r:?}");
    assert_eq!(r.pending.map(|h| h.total_len()), Some(200_000_000));
    assert!(r.requested <= RESERVE_AHEAD + C * n + K, "{r:?}");
    assert!(r.requested < MIB, "{r:?}");
    eprintln!(
        "Decoder::MAX_PACKET_SIZE, header announcing 200,000,000 bytes, {n} bytes of input: \
         {} bytes requested",
        r.requested
    );
}
