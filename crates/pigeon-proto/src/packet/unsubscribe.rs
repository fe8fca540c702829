//! UNSUBSCRIBE (section 3.10).

use bytes::{BufMut, BytesMut};

use super::{Encode, read_packet_id};
use crate::codec::{Reader, prefixed_len, put_string};
use crate::properties::UnsubscribeProperties;
use crate::{DecodeError, EncodeError, PacketId, PacketType, Protocol, TopicFilter};

/// An UNSUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet Identifier.
    pub packet_id: PacketId,
    /// Properties (MQTT 5.0).
    pub properties: UnsubscribeProperties,
    /// The topic filters to remove; never empty on the wire.
    pub filters: Vec<TopicFilter>,
}

impl Unsubscribe {
    /// An UNSUBSCRIBE from these filters.
    pub fn new(packet_id: PacketId, filters: Vec<TopicFilter>) -> Self {
        Unsubscribe {
            packet_id,
            properties: UnsubscribeProperties::default(),
            filters,
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>, protocol: Protocol) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(r)?;
        let properties = if protocol.is_v5() {
            UnsubscribeProperties::decode(r)?
        } else {
            UnsubscribeProperties::default()
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            filters.push(
                TopicFilter::from_string(r.string()?).map_err(DecodeError::InvalidTopicFilter)?,
            );
        }
        // At least one filter [MQTT-3.10.3-2].
        if filters.is_empty() {
            return Err(DecodeError::NoTopicFilters(PacketType::Unsubscribe));
        }
        Ok(Unsubscribe {
            packet_id,
            properties,
            filters,
        })
    }
}

impl Encode for Unsubscribe {
    const TYPE: PacketType = PacketType::Unsubscribe;

    fn flags(&self) -> u8 {
        0b0010
    }

    fn validate(&self, _: Protocol) -> Result<(), EncodeError> {
        if self.filters.is_empty() {
            return Err(EncodeError::NoTopicFilters(PacketType::Unsubscribe));
        }
        Ok(())
    }

    fn remaining_len(&self, protocol: Protocol) -> usize {
        let mut n = 2;
        if protocol.is_v5() {
            n += self.properties.encoded_len();
        }
        for filter in &self.filters {
            n += prefixed_len(filter.as_str().len());
        }
        n
    }

    fn encode_body(&self, protocol: Protocol, buf: &mut BytesMut) -> Result<(), EncodeError> {
        buf.put_u16(self.packet_id.get());
        if protocol.is_v5() {
            self.properties.encode(buf)?;
        }
        for filter in &self.filters {
            put_string(buf, filter.as_mqtt_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::test_vectors::{assert_vector, decode_err};
    use crate::{MqttString, ReasonCode, StringError, TopicError};

    fn s(text: &'static str) -> MqttString {
        MqttString::from_static(text)
    }

    fn filter(text: &str) -> TopicFilter {
        TopicFilter::try_from(text).unwrap()
    }

    fn id(value: u16) -> PacketId {
        PacketId::new(value).unwrap()
    }

    /// MQTT 3.1.1 section 3.10.3.1 (Figure 3.30): "a/b" and "c/d"; packet identifier 10.
    #[test]
    fn v311_spec_example() {
        let bytes = [
            0xA2, 0x0C, // UNSUBSCRIBE, flags 0010; remaining length 12
            0x00, 0x0A, // packet identifier 10
            0x00, 0x03, b'a', b'/', b'b', // topic filter "a/b"
            0x00, 0x03, b'c', b'/', b'd', // topic filter "c/d"
        ];
        let unsubscribe = Unsubscribe::new(id(10), vec![filter("a/b"), filter("c/d")]);
        assert_vector(Protocol::V311, &bytes, unsubscribe.clone());
        assert_vector(Protocol::V31, &bytes, unsubscribe);
    }

    // Section 3.10.2.1: User Properties only; a wildcard filter and a shared one.
    #[test]
    fn v5_user_properties() {
        let bytes = [
            0xA2, 0x22, // UNSUBSCRIBE, flags 0010; remaining length 34
            0x00, 0x0A, // packet identifier 10
            0x0E, // property length 14
            0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'b', // user property ("a", "b")
            0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'b', // user property ("a", "b") again
            0x00, 0x03, b'a', b'/', b'+', // topic filter "a/+"
            0x00, 0x0A, b'$', b's', b'h', b'a', b'r', b'e', b'/', b'g', b'/',
            b'x', // topic filter "$share/g/x"
        ];
        let unsubscribe = Unsubscribe {
            packet_id: id(10),
            properties: UnsubscribeProperties {
                user_properties: vec![(s("a"), s("b")), (s("a"), s("b"))],
            },
            filters: vec![filter("a/+"), filter("$share/g/x")],
        };
        assert_vector(Protocol::V5, &bytes, unsubscribe);
    }

    #[test]
    fn v5_minimal() {
        let bytes = [
            0xA2, 0x06, // UNSUBSCRIBE, flags 0010; remaining length 6
            0x00, 0x01, // packet identifier 1
            0x00, // property length 0
            0x00, 0x01, b'#', // topic filter "#"
        ];
        assert_vector(
            Protocol::V5,
            &bytes,
            Unsubscribe::new(id(1), vec![filter("#")]),
        );
    }

    // [MQTT-3.10.1-1]: the flags are 0010.
    #[test]
    fn reserved_fixed_header_flags() {
        let err = decode_err(
            Some(Protocol::V311),
            &[0xA0, 0x05, 0x00, 0x01, 0x00, 0x01, b'a'],
        );
        assert_eq!(
            err,
            DecodeError::InvalidFlags {
                packet: PacketType::Unsubscribe,
                flags: 0x0
            }
        );
        assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
        assert_eq!(err.rule(Protocol::V5), Some("MQTT-3.10.1-1"));
    }

    // 5.0 [MQTT-2.2.1-3], 3.1.1 [MQTT-2.3.1-1].
    #[test]
    fn zero_packet_id() {
        let err = decode_err(
            Some(Protocol::V5),
            &[0xA2, 0x06, 0x00, 0x00, 0x00, 0x00, 0x01, b'a'],
        );
        assert_eq!(err, DecodeError::ZeroPacketId(PacketType::Unsubscribe));
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
    }

    // [MQTT-3.10.3-2]: at least one topic filter.
    #[test]
    fn empty_payload() {
        let err = decode_err(Some(Protocol::V311), &[0xA2, 0x02, 0x00, 0x01]);
        assert_eq!(err, DecodeError::NoTopicFilters(PacketType::Unsubscribe));
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
        assert_eq!(err.rule(Protocol::V311), Some("MQTT-3.10.3-2"));
        assert_eq!(
            decode_err(Some(Protocol::V5), &[0xA2, 0x03, 0x00, 0x01, 0x00]),
            DecodeError::NoTopicFilters(PacketType::Unsubscribe)
        );

        let mut out = BytesMut::new();
        assert_eq!(
            Unsubscribe::new(id(1), Vec::new()).encode(Protocol::V311, &mut out),
            Err(EncodeError::NoTopicFilters(PacketType::Unsubscribe))
        );
    }

    // Section 2.2.2.2: only User Properties.
    #[test]
    fn property_not_valid_in_unsubscribe() {
        let err = decode_err(
            Some(Protocol::V5),
            &[
                0xA2, 0x08, // UNSUBSCRIBE, remaining length 8
                0x00, 0x01, // packet identifier 1
                0x02, // property length 2
                0x0B, 0x01, // subscription identifier 1
                0x00, 0x01, b'a', // topic filter "a"
            ][..],
        );
        assert_eq!(
            err,
            DecodeError::InvalidProperty {
                packet: PacketType::Unsubscribe,
                id: 0x0B
            }
        );
        assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
    }

    // [MQTT-3.10.3-1]: the topic filters are UTF-8 strings.
    #[test]
    fn invalid_topic_filters() {
        assert_eq!(
            decode_err(
                Some(Protocol::V311),
                &[0xA2, 0x05, 0x00, 0x01, 0x00, 0x01, 0xFF]
            ),
            DecodeError::InvalidString(StringError::InvalidUtf8)
        );
        assert_eq!(
            decode_err(
                Some(Protocol::V311),
                &[0xA2, 0x06, 0x00, 0x01, 0x00, 0x02, b'a', b'+']
            ),
            DecodeError::InvalidTopicFilter(TopicError::SingleLevelNotWholeLevel)
        );
    }

    #[test]
    fn truncated() {
        // A topic filter of 3 bytes with 1 left.
        assert_eq!(
            decode_err(
                Some(Protocol::V311),
                &[0xA2, 0x05, 0x00, 0x01, 0x00, 0x03, b'a']
            ),
            DecodeError::Truncated(PacketType::Unsubscribe)
        );
    }
}
