//! Fuzzing entry points, compiled in every build so they cannot rot.
//!
//! The oracle: whatever decodes must encode, and decode again to the same packet.

use bytes::BytesMut;

use crate::{Decoder, Protocol, TopicFilter, TopicName};

/// Decodes `data` as a stream of packets for each protocol version; every packet that decodes
/// must re-encode and decode to an equal packet.
///
/// # Panics
/// When the oracle fails: that is the bug the fuzzer looks for.
pub fn decode_roundtrip(data: &[u8]) {
    for protocol in [
        None,
        Some(Protocol::V31),
        Some(Protocol::V311),
        Some(Protocol::V5),
    ] {
        let mut decoder = Decoder::new(protocol, Decoder::MAX_PACKET_SIZE);
        let mut buf = BytesMut::from(data);
        while let Ok(Some(packet)) = decoder.decode(&mut buf) {
            let version = match &packet {
                crate::Packet::Connect(c) => c.protocol,
                _ => decoder.protocol().unwrap_or(Protocol::V311),
            };
            let mut out = BytesMut::new();
            packet
                .encode(version, &mut out)
                .unwrap_or_else(|e| panic!("decoded {packet:?} but cannot encode it: {e}"));
            assert_eq!(
                out.len(),
                packet.encoded_len(version),
                "encoded_len of {packet:?}"
            );
            let mut again = Decoder::new(Some(version), Decoder::MAX_PACKET_SIZE);
            let decoded = again
                .decode(&mut out)
                .unwrap_or_else(|e| panic!("re-encoded {packet:?} does not decode: {e}"));
            assert_eq!(
                decoded.as_ref(),
                Some(&packet),
                "round trip changed the packet"
            );
            assert!(out.is_empty(), "re-encoded {packet:?} left bytes over");
        }
    }
}

/// Parses `data` as a topic name and a topic filter; a valid filter must match consistently.
///
/// # Panics
/// When parsing or matching violates an invariant.
pub fn topic(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let name = TopicName::try_from(s);
    let filter = TopicFilter::try_from(s);
    // A filter without wildcards that is also a valid name matches itself.
    if let (Ok(name), Ok(filter)) = (&name, &filter)
        && !filter.is_shared()
    {
        assert!(filter.matches(name), "{s:?} does not match itself");
    }
}
