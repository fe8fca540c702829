//! The decoder never panics, whatever bytes it is given, and whatever it accepts is a packet
//! the encoder can write back and the decoder reads again as the same packet.
//!
//! Inputs: uniformly random bytes; "framed noise" (valid fixed headers with random bodies,
//! which gets past framing into every packet body decoder); and mutations (bit flips,
//! overwrites, insertions, deletions, truncations) of a corpus of valid packets of every
//! type with every property set, for every protocol version.

use std::num::{NonZeroU16, NonZeroU32};

use pigeon_proto::properties::*;
use pigeon_proto::{
    Auth, Bytes, BytesMut, ConnAck, Connect, Decoder, Disconnect, MqttString, Packet, PacketId,
    PacketType, PayloadFormat, PingReq, PingResp, Protocol, PubAck, PubComp, PubRec, PubRel,
    Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, SubscriptionOptions, TopicFilter,
    TopicName, UnsubAck, Unsubscribe, Will,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::TestCaseError;

// ---------------------------------------------------------------------------------------------
// Corpus of valid packets
// ---------------------------------------------------------------------------------------------

fn s(text: &'static str) -> MqttString {
    MqttString::from_static(text)
}

fn id(v: u16) -> PacketId {
    PacketId::new(v).expect("non-zero")
}

fn user_properties() -> Vec<UserProperty> {
    vec![(s("k"), s("v")), (s("k"), s("w")), (s("ü"), s(""))]
}

/// Valid packets of every type that exists in `v`, with every property of v5 set (and the
/// short forms too).
fn corpus(v: Protocol) -> Vec<Packet> {
    let v5 = v.is_v5();
    let mut out = Vec::new();

    let mut connect = Connect::new(v, s("client-1"));
    connect.bridge = true;
    connect.username = Some(s("user"));
    connect.password = Some(Bytes::from_static(b"\x00pw\xff"));
    let mut will_props = WillProperties::default();
    if v5 {
        let p = &mut connect.properties;
        p.session_expiry_interval = Some(3600);
        p.receive_maximum = NonZeroU16::new(20);
        p.maximum_packet_size = NonZeroU32::new(65_536);
        p.topic_alias_maximum = Some(10);
        p.request_response_information = Some(true);
        p.request_problem_information = Some(false);
        p.authentication_method = Some(s("SCRAM-SHA-1"));
        p.authentication_data = Some(Bytes::from_static(b"data"));
        p.user_properties = user_properties();
        will_props.will_delay_interval = Some(5);
        will_props.payload_format_indicator = Some(PayloadFormat::Utf8);
        will_props.message_expiry_interval = Some(60);
        will_props.content_type = Some(s("text/plain"));
        will_props.response_topic = Some(TopicName::from_static("reply/to"));
        will_props.correlation_data = Some(Bytes::from_static(b"\x01\x02"));
        will_props.user_properties = user_properties();
    }
    connect.will = Some(Will {
        topic: TopicName::from_static("last/will"),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::ExactlyOnce,
        retain: true,
        properties: will_props,
    });
    out.push(Packet::from(connect));
    out.push(Packet::from(Connect::new(v, MqttString::new())));

    let mut connack = ConnAck {
        session_present: true,
        ..ConnAck::default()
    };
    if v5 {
        let p = &mut connack.properties;
        p.session_expiry_interval = Some(0);
        p.receive_maximum = NonZeroU16::new(u16::MAX);
        p.maximum_qos = Some(QoS::AtLeastOnce);
        p.retain_available = Some(false);
        p.maximum_packet_size = NonZeroU32::new(1024);
        p.assigned_client_identifier = Some(s("auto-1"));
        p.topic_alias_maximum = Some(0);
        p.reason_string = Some(s("ok"));
        p.wildcard_subscription_available = Some(true);
        p.subscription_identifiers_available = Some(true);
        p.shared_subscription_available = Some(false);
        p.server_keep_alive = Some(30);
        p.response_information = Some(s("resp"));
        p.server_reference = Some(s("other:1883"));
        p.authentication_method = Some(s("m"));
        p.authentication_data = Some(Bytes::from_static(b"d"));
        p.user_properties = user_properties();
    }
    out.push(Packet::from(connack));
    out.push(Packet::from(ConnAck {
        reason: ReasonCode::NOT_AUTHORIZED,
        ..ConnAck::default()
    }));

    let mut publish = Publish::new(TopicName::from_static("a/b/c"), &b"payload"[..]);
    out.push(Packet::from(publish.clone()));
    publish.qos = QoS::AtLeastOnce;
    publish.packet_id = Some(id(1));
    publish.dup = true;
    publish.retain = true;
    if v5 {
        let p = &mut publish.properties;
        p.payload_format_indicator = Some(PayloadFormat::Unspecified);
        p.message_expiry_interval = Some(u32::MAX);
        p.topic_alias = NonZeroU16::new(3);
        p.response_topic = Some(TopicName::from_static("r"));
        p.correlation_data = Some(Bytes::from_static(b"c"));
        p.content_type = Some(s("json"));
        p.subscription_identifiers = [1, 300, 268_435_455]
            .into_iter()
            .filter_map(SubscriptionId::new)
            .collect();
        p.user_properties = user_properties();
    }
    out.push(Packet::from(publish.clone()));
    publish.qos = QoS::ExactlyOnce;
    publish.packet_id = Some(id(u16::MAX));
    publish.payload = Bytes::new();
    out.push(Packet::from(publish));

    let mut ack_props = AckProperties::default();
    let reason = |code: ReasonCode| if v5 { code } else { ReasonCode::SUCCESS };
    if v5 {
        ack_props.reason_string = Some(s("why"));
        ack_props.user_properties = user_properties();
    }
    out.push(Packet::from(PubAck::new(id(2))));
    out.push(Packet::from(PubAck {
        packet_id: id(3),
        reason: reason(ReasonCode::NO_MATCHING_SUBSCRIBERS),
        properties: ack_props.clone(),
    }));
    out.push(Packet::from(PubRec {
        packet_id: id(4),
        reason: reason(ReasonCode::QUOTA_EXCEEDED),
        properties: AckProperties::default(),
    }));
    out.push(Packet::from(PubRel {
        packet_id: id(5),
        reason: reason(ReasonCode::PACKET_IDENTIFIER_NOT_FOUND),
        properties: ack_props.clone(),
    }));
    out.push(Packet::from(PubComp {
        packet_id: id(6),
        reason: ReasonCode::SUCCESS,
        properties: ack_props.clone(),
    }));

    let mut subscribe = Subscribe::new(
        id(7),
        TopicFilter::from_static("sport/+/score/#"),
        SubscriptionOptions::new(QoS::AtLeastOnce),
    );
    let options = |qos, no_local, rap, rh| {
        if v5 {
            SubscriptionOptions {
                qos,
                no_local,
                retain_as_published: rap,
                retain_handling: rh,
            }
        } else {
            SubscriptionOptions::new(qos)
        }
    };
    subscribe.filters.push((
        TopicFilter::from_static("$share/group/a/+"),
        options(QoS::ExactlyOnce, false, true, RetainHandling::DoNotSend),
    ));
    subscribe.filters.push((
        TopicFilter::from_static("x"),
        options(
            QoS::AtMostOnce,
            true,
            false,
            RetainHandling::SendAtSubscribeIfNew,
        ),
    ));
    if v5 {
        subscribe.properties.subscription_identifier = SubscriptionId::new(16_384);
        subscribe.properties.user_properties = user_properties();
    }
    out.push(Packet::from(subscribe));

    let suback_codes = if v5 {
        vec![
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::TOPIC_FILTER_INVALID,
            ReasonCode::SUCCESS,
        ]
    } else {
        vec![ReasonCode(0x01), ReasonCode(0x80), ReasonCode(0x02)]
    };
    out.push(Packet::from(SubAck {
        packet_id: id(7),
        properties: ack_props.clone(),
        reasons: suback_codes,
    }));

    let mut unsubscribe = Unsubscribe::new(
        id(8),
        vec![
            TopicFilter::from_static("a/#"),
            TopicFilter::from_static("$share/g/b"),
        ],
    );
    if v5 {
        unsubscribe.properties.user_properties = user_properties();
    }
    out.push(Packet::from(unsubscribe));
    out.push(Packet::from(UnsubAck {
        packet_id: id(8),
        properties: ack_props,
        reasons: if v5 {
            vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]
        } else {
            Vec::new()
        },
    }));

    out.push(Packet::PingReq(PingReq));
    out.push(Packet::PingResp(PingResp));

    let mut disconnect = Disconnect::new(reason(ReasonCode::SERVER_SHUTTING_DOWN));
    if v5 {
        disconnect.properties.session_expiry_interval = Some(10);
        disconnect.properties.reason_string = Some(s("bye"));
        disconnect.properties.server_reference = Some(s("elsewhere"));
        disconnect.properties.user_properties = user_properties();
    }
    out.push(Packet::from(disconnect));
    out.push(Packet::from(Disconnect::default()));

    if v5 {
        let mut auth = Auth {
            reason: ReasonCode::CONTINUE_AUTHENTICATION,
            ..Auth::default()
        };
        auth.properties.authentication_method = Some(s("SCRAM-SHA-1"));
        auth.properties.authentication_data = Some(Bytes::from_static(b"challenge"));
        auth.properties.reason_string = Some(s("more"));
        auth.properties.user_properties = user_properties();
        out.push(Packet::from(auth));
        out.push(Packet::from(Auth::default()));
        // An empty topic named by its Topic Alias.
        out.push(raw_packet(&[
            0x30, 0x06, 0x00, 0x00, 0x03, 0x23, 0x00, 0x01,
        ]));
    }
    out
}

fn raw_packet(bytes: &'static [u8]) -> Packet {
    Packet::decode(Bytes::from_static(bytes), Some(Protocol::V5)).expect("valid v5 packet")
}

/// The corpus of each version, encoded: one frame per packet.
fn encoded_corpus(v: Protocol) -> Vec<Vec<u8>> {
    corpus(v)
        .iter()
        .map(|p| {
            let mut buf = BytesMut::new();
            p.encode(v, &mut buf)
                .unwrap_or_else(|e| panic!("corpus packet {p:?} does not encode: {e}"));
            buf.to_vec()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

fn raw_bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=512)
}

/// First bytes of fixed headers that pass the flag checks: every PUBLISH flag combination,
/// the fixed flags of the others.
fn valid_first_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        (0u8..16).prop_map(|flags| 0x30 | flags),
        select(vec![
            0x10, 0x20, 0x40, 0x50, 0x62, 0x70, 0x82, 0x90, 0xA2, 0xB0, 0xC0, 0xD0, 0xE0, 0xF0,
        ]),
    ]
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

/// Frames with a valid fixed header and a random body (a CONNECT body often starts with a
/// valid protocol name and level), the last one sometimes cut short.
fn framed_noise() -> impl Strategy<Value = Vec<u8>> {
    let prefix = select(vec![
        &b""[..],
        b"\x00\x04MQTT\x05",
        b"\x00\x04MQTT\x04",
        b"\x00\x06MQIsdp\x03",
    ]);
    let frame =
        (valid_first_byte(), prefix, vec(any::<u8>(), 0..=48)).prop_map(|(first, prefix, body)| {
            let mut body_all = Vec::new();
            if first == 0x10 {
                body_all.extend_from_slice(prefix);
            }
            body_all.extend_from_slice(&body);
            let mut out = vec![first];
            put_var_int(&mut out, body_all.len());
            out.extend_from_slice(&body_all);
            out
        });
    (vec(frame, 1..=6), any::<Index>(), any::<bool>()).prop_map(|(frames, cut, do_cut)| {
        let mut out = frames.concat();
        if do_cut {
            out.truncate(cut.index(out.len() + 1));
        }
        out
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    Set(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
}

fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => any::<u8>(),
        1 => select(vec![0x00u8, 0x01, 0x7F, 0x80, 0xFF, b'+', b'#', b'/']),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, bit)| Mutation::FlipBit(i, bit)),
        3 => (any::<Index>(), interesting_byte()).prop_map(|(i, b)| Mutation::Set(i, b)),
        2 => (any::<Index>(), interesting_byte()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => any::<Index>().prop_map(Mutation::Delete),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn apply(data: &mut Vec<u8>, m: &Mutation) {
    let len = data.len();
    match *m {
        Mutation::FlipBit(ref i, bit) if len > 0 => data[i.index(len)] ^= 1 << bit,
        Mutation::Set(ref i, b) if len > 0 => data[i.index(len)] = b,
        Mutation::Insert(ref i, b) => data.insert(i.index(len + 1), b),
        Mutation::Delete(ref i) if len > 0 => {
            data.remove(i.index(len));
        }
        Mutation::Truncate(ref i) => data.truncate(i.index(len + 1)),
        _ => {}
    }
}

/// 1 to 4 corpus frames of version `v`, behind the corpus CONNECT of `v` when `with_connect`
/// (so a decoder that starts without a version learns it), then 1 to 6 mutations (mostly 1 or
/// 2, so that much of the stream stays valid and the decoder gets past the first error).
fn mutated(v: Protocol, with_connect: bool) -> impl Strategy<Value = Vec<u8>> {
    let frames = encoded_corpus(v);
    let connect = frames[0].clone();
    (
        vec(select(frames), 1..=4),
        prop_oneof![3 => vec(mutation(), 1..=2), 1 => vec(mutation(), 1..=6)],
    )
        .prop_map(move |(picked, mutations)| {
            let mut data = if with_connect {
                connect.clone()
            } else {
                Vec::new()
            };
            data.extend(picked.concat());
            for m in &mutations {
                apply(&mut data, m);
            }
            data
        })
}

fn any_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => raw_bytes(),
        2 => framed_noise(),
        3 => prop_oneof![Just(Protocol::V31), Just(Protocol::V311), Just(Protocol::V5)]
            .prop_flat_map(|v| mutated(v, true)),
    ]
}

// ---------------------------------------------------------------------------------------------
// The oracle
// ---------------------------------------------------------------------------------------------

/// Decodes `data` as one connection's stream until the decoder needs more bytes or fails. Every
/// packet it returns must have been at most `max` bytes on the wire, must re-encode (in the
/// version it was decoded as) to `encoded_len` bytes, no more than it took on the wire, and
/// must decode from those bytes to itself. `Ok(None)` must consume nothing.
fn check_stream(protocol: Option<Protocol>, max: u32, data: &[u8]) -> Result<(), TestCaseError> {
    let mut decoder = Decoder::new(protocol, max);
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        let packet = match decoder.decode(&mut buf) {
            Ok(Some(packet)) => packet,
            Ok(None) => {
                prop_assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                return Ok(());
            }
            Err(_) => return Ok(()),
        };
        let wire_len = before - buf.len();
        prop_assert!(
            wire_len as u64 <= u64::from(max),
            "{wire_len}-byte packet returned with a maximum of {max}: {packet:?}"
        );
        // The version the decoder read the packet as (a CONNECT states its own).
        let version = match &packet {
            Packet::Connect(c) => c.protocol,
            _ => decoder.protocol().unwrap_or(Protocol::V311),
        };
        let mut out = BytesMut::new();
        if let Err(e) = packet.encode(version, &mut out) {
            return Err(TestCaseError::fail(format!(
                "decoded (decoder protocol {protocol:?}) {packet:?} but cannot encode it as \
                 {version:?}: {e}"
            )));
        }
        prop_assert_eq!(
            out.len(),
            packet.encoded_len(version),
            "encoded_len of {:?}",
            packet
        );
        prop_assert!(
            out.len() <= wire_len,
            "re-encoding {packet:?} takes {} bytes, the wire form {wire_len}",
            out.len()
        );
        let mut again = Decoder::new(Some(version), Decoder::MAX_PACKET_SIZE);
        prop_assert_eq!(
            again.decode(&mut out),
            Ok(Some(packet)),
            "re-decoding changed it"
        );
        prop_assert!(out.is_empty());
    }
}

fn check_all_protocols(data: &[u8]) -> Result<(), TestCaseError> {
    for protocol in [
        None,
        Some(Protocol::V31),
        Some(Protocol::V311),
        Some(Protocol::V5),
    ] {
        check_stream(protocol, Decoder::MAX_PACKET_SIZE, data)?;
    }
    Ok(())
}

fn config() -> ProptestConfig {
    ProptestConfig {
        // Failures are reported with their minimal input; no regression files are written.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_input_before_connect(data in any_input()) {
        check_stream(None, Decoder::MAX_PACKET_SIZE, &data)?;
    }

    #[test]
    fn random_input_v31(data in any_input()) {
        check_stream(Some(Protocol::V31), Decoder::MAX_PACKET_SIZE, &data)?;
    }

    #[test]
    fn random_input_v311(data in any_input()) {
        check_stream(Some(Protocol::V311), Decoder::MAX_PACKET_SIZE, &data)?;
    }

    #[test]
    fn random_input_v5(data in any_input()) {
        check_stream(Some(Protocol::V5), Decoder::MAX_PACKET_SIZE, &data)?;
    }

    /// A decoder that has not seen CONNECT yet, fed a mutated CONNECT and what follows it.
    #[test]
    fn mutated_packets_before_connect(
        data in prop_oneof![
            Just(Protocol::V31), Just(Protocol::V311), Just(Protocol::V5)
        ].prop_flat_map(|v| mutated(v, true))
    ) {
        check_stream(None, Decoder::MAX_PACKET_SIZE, &data)?;
    }

    #[test]
    fn mutated_packets_v31(data in mutated(Protocol::V31, false)) {
        check_all_protocols(&data)?;
    }

    #[test]
    fn mutated_packets_v311(data in mutated(Protocol::V311, false)) {
        check_all_protocols(&data)?;
    }

    #[test]
    fn mutated_packets_v5(data in mutated(Protocol::V5, false)) {
        check_all_protocols(&data)?;
    }

    /// The crate's fuzzing entry point holds on the same inputs.
    #[test]
    fn fuzz_decode_roundtrip_holds(data in any_input()) {
        pigeon_proto::fuzz::decode_roundtrip(&data);
    }

    /// With a small maximum packet size, nothing larger is ever returned, neither on the wire
    /// nor re-encoded.
    #[test]
    fn small_max_packet_size_is_enforced(
        data in any_input(),
        max in prop_oneof![0u32..=8, 0u32..=128],
        protocol in select(vec![
            None, Some(Protocol::V31), Some(Protocol::V311), Some(Protocol::V5),
        ]),
    ) {
        check_stream(protocol, max, &data)?;
    }
}

/// The corpus is valid: every frame decodes to its packet in its version.
#[test]
fn corpus_is_valid() {
    for v in [Protocol::V31, Protocol::V311, Protocol::V5] {
        for (packet, frame) in corpus(v).into_iter().zip(encoded_corpus(v)) {
            let mut buf = BytesMut::from(&frame[..]);
            let got = Decoder::new(Some(v), Decoder::MAX_PACKET_SIZE).decode(&mut buf);
            assert_eq!(got, Ok(Some(packet)), "{v:?}");
            assert!(buf.is_empty());
        }
    }
    // Every packet type is in the v5 corpus.
    let types: Vec<PacketType> = corpus(Protocol::V5)
        .iter()
        .map(Packet::packet_type)
        .collect();
    for t in 1..=15 {
        let t = PacketType::from_u8(t).expect("1..=15 are packet types");
        assert!(types.contains(&t), "{t:?} missing from the corpus");
    }
}
