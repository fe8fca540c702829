//! PUBLISH (section 3.3): an application message.

use bytes::{BufMut, Bytes, BytesMut};

use super::{Encode, read_packet_id};
use crate::codec::{Reader, prefixed_len, put_string};
use crate::properties::PublishProperties;
use crate::{DecodeError, EncodeError, PacketId, PacketType, Protocol, QoS, TopicError, TopicName};

/// A PUBLISH packet.
///
/// `packet_id` is `Some` exactly when `qos` is 1 or 2; the encoder refuses anything else. The
/// topic is empty only in an MQTT 5.0 PUBLISH that names its topic by Topic Alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// DUP: this may be a re-delivery.
    pub dup: bool,
    /// QoS.
    pub qos: QoS,
    /// RETAIN.
    pub retain: bool,
    /// Topic Name.
    pub topic: TopicName,
    /// Packet Identifier, for QoS 1 and 2.
    pub packet_id: Option<PacketId>,
    /// Properties (MQTT 5.0).
    pub properties: PublishProperties,
    /// The Application Message, shared with the buffer it was decoded from.
    pub payload: Bytes,
}

impl Publish {
    /// A QoS 0 message, not retained, without properties.
    pub fn new(topic: TopicName, payload: impl Into<Bytes>) -> Self {
        Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic,
            packet_id: None,
            properties: PublishProperties::default(),
            payload: payload.into(),
        }
    }

    pub(crate) fn decode(
        r: &mut Reader<'_>,
        flags: u8,
        protocol: Protocol,
    ) -> Result<Self, DecodeError> {
        let dup = flags & 0x08 != 0;
        let qos = QoS::from_u8((flags >> 1) & 0x03).ok_or(DecodeError::InvalidQoS)?;
        let retain = flags & 0x01 != 0;
        if dup && qos == QoS::AtMostOnce {
            return Err(DecodeError::DupWithQoS0);
        }
        let topic = r.topic_name()?;
        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            Some(read_packet_id(r)?)
        };
        let properties = if protocol.is_v5() {
            PublishProperties::decode(r)?
        } else {
            PublishProperties::default()
        };
        let topic = match topic.map_or_else(TopicName::from_string, Ok) {
            Ok(t) => t,
            // An empty topic is allowed when a Topic Alias names it (MQTT 5.0, 3.3.2.3.4).
            Err(TopicError::Empty) if protocol.is_v5() => {
                if properties.topic_alias.is_none() {
                    return Err(DecodeError::EmptyTopicWithoutAlias);
                }
                TopicName::empty()
            }
            Err(e) => return Err(DecodeError::InvalidTopicName(e)),
        };
        let payload = r.rest();
        Ok(Publish {
            dup,
            qos,
            retain,
            topic,
            packet_id,
            properties,
            payload,
        })
    }
}

impl Encode for Publish {
    const TYPE: PacketType = PacketType::Publish;

    fn flags(&self) -> u8 {
        (u8::from(self.dup) << 3) | ((self.qos as u8) << 1) | u8::from(self.retain)
    }

    fn validate(&self, protocol: Protocol) -> Result<(), EncodeError> {
        if (self.qos == QoS::AtMostOnce) != self.packet_id.is_none() {
            return Err(EncodeError::PacketIdMismatch);
        }
        if self.topic.is_empty() && !(protocol.is_v5() && self.properties.topic_alias.is_some()) {
            return Err(EncodeError::EmptyTopicWithoutAlias);
        }
        Ok(())
    }

    fn remaining_len(&self, protocol: Protocol) -> usize {
        let mut n = prefixed_len(self.topic.len()) + self.payload.len();
        if self.packet_id.is_some() {
            n += 2;
        }
        if protocol.is_v5() {
            n += self.properties.encoded_len();
        }
        n
    }

    fn encode_body(&self, protocol: Protocol, buf: &mut BytesMut) -> Result<(), EncodeError> {
        put_string(buf, self.topic.as_mqtt_string());
        if let Some(id) = self.packet_id {
            buf.put_u16(id.get());
        }
        if protocol.is_v5() {
            self.properties.encode(buf)?;
        }
        buf.put_slice(&self.payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU16;

    use super::*;
    use crate::packet::test_vectors::{assert_vector, decode_err, short_len};
    use crate::properties::{PayloadFormat, SubscriptionId};
    use crate::{MqttString, ReasonCode, StringError};

    fn s(text: &'static str) -> MqttString {
        MqttString::from_static(text)
    }

    fn topic(text: &str) -> TopicName {
        TopicName::try_from(text).unwrap()
    }

    fn id(value: u16) -> Option<PacketId> {
        PacketId::new(value)
    }

    /// The variable header of MQTT 3.1.1 section 3.3.2.3 (Figure 3.11): topic "a/b", packet
    /// identifier 10; sent at QoS 1 with payload "hi".
    #[test]
    fn v311_spec_example() {
        let bytes = [
            0x32, 0x09, // PUBLISH, QoS 1; remaining length 9
            0x00, 0x03, b'a', b'/', b'b', // topic name "a/b"
            0x00, 0x0A, // packet identifier 10
            b'h', b'i', // payload
        ];
        let publish = Publish {
            qos: QoS::AtLeastOnce,
            packet_id: id(10),
            ..Publish::new(topic("a/b"), &b"hi"[..])
        };
        assert_vector(Protocol::V311, &bytes, publish.clone());
        assert_vector(Protocol::V31, &bytes, publish);
    }

    /// The same message in MQTT 5.0: an empty property list after the packet identifier.
    #[test]
    fn v5_spec_example() {
        let bytes = [
            0x32, 0x0A, // PUBLISH, QoS 1; remaining length 10
            0x00, 0x03, b'a', b'/', b'b', // topic name "a/b"
            0x00, 0x0A, // packet identifier 10
            0x00, // property length 0
            b'h', b'i', // payload
        ];
        let publish = Publish {
            qos: QoS::AtLeastOnce,
            packet_id: id(10),
            ..Publish::new(topic("a/b"), &b"hi"[..])
        };
        assert_vector(Protocol::V5, &bytes, publish);
    }

    // QoS 0 has no packet identifier (section 3.3.2.2); RETAIN is bit 0.
    #[test]
    fn qos0_retained() {
        let bytes = [
            0x31, 0x06, // PUBLISH, QoS 0, RETAIN; remaining length 6
            0x00, 0x03, b'a', b'/', b'b', // topic name "a/b"
            b'x', // payload
        ];
        let publish = Publish {
            retain: true,
            ..Publish::new(topic("a/b"), &b"x"[..])
        };
        assert_vector(Protocol::V31, &bytes, publish.clone());
        assert_vector(Protocol::V311, &bytes, publish);
    }

    // DUP is bit 3, QoS bits 2-1; the payload may be empty (3.1.1 section 3.3.3).
    #[test]
    fn qos2_dup_empty_payload() {
        let bytes = [
            0x3C, 0x07, // PUBLISH, DUP, QoS 2; remaining length 7
            0x00, 0x03, b'a', b'/', b'b', // topic name "a/b"
            0xFF, 0xFF, // packet identifier 65535
        ];
        let publish = Publish {
            dup: true,
            qos: QoS::ExactlyOnce,
            packet_id: id(0xFFFF),
            ..Publish::new(topic("a/b"), Bytes::new())
        };
        assert_vector(Protocol::V311, &bytes, publish);
    }

    // A payload of 200 bytes takes the Remaining Length to two bytes (section 2.2.3).
    #[test]
    fn two_byte_remaining_length() {
        let mut bytes = vec![
            0x30, 0xCB, 0x01, // PUBLISH, QoS 0; remaining length 203 (0x4B + 1 * 128)
            0x00, 0x01, b'a', // topic name "a"
        ];
        bytes.extend_from_slice(&[0xAA; 200]); // payload: 200 bytes of AA
        let publish = Publish::new(topic("a"), vec![0xAA; 200]);
        assert_vector(Protocol::V311, &bytes, publish.clone());
        bytes.insert(6, 0x00); // property length 0
        bytes[1] = 0xCC; // remaining length 204
        assert_vector(Protocol::V5, &bytes, publish);
    }

    // Every property of section 3.3.2.3, three Subscription Identifiers (one, two and four byte
    // Variable Byte Integers, [MQTT-3.3.4-4]) and repeated user properties in order
    // ([MQTT-3.3.2-18]).
    #[test]
    fn v5_every_property() {
        let bytes = [
            0x33, 0x47, // PUBLISH, QoS 1, RETAIN; remaining length 71
            0x00, 0x03, b't', b'/', b'1', // topic name "t/1"
            0x01, 0x02, // packet identifier 258
            0x3D, // property length 61
            0x01, 0x01, // payload format indicator: UTF-8
            0x02, 0x00, 0x00, 0x00, 0x1E, // message expiry interval 30
            0x23, 0x00, 0x07, // topic alias 7
            0x08, 0x00, 0x05, b'r', b'e', b'p', b'l', b'y', // response topic "reply"
            0x09, 0x00, 0x03, 0x01, 0x02, 0x03, // correlation data 01 02 03
            0x03, 0x00, 0x0A, b't', b'e', b'x', b't', b'/', b'p', b'l', b'a', b'i',
            b'n', // content type "text/plain"
            0x0B, 0x01, // subscription identifier 1
            0x0B, 0x80, 0x01, // subscription identifier 128
            0x0B, 0xFF, 0xFF, 0xFF, 0x7F, // subscription identifier 268435455
            0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'1', // user property ("a", "1")
            0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'2', // user property ("a", "2")
            b'{', b'}', // payload
        ];
        let publish = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: topic("t/1"),
            packet_id: id(258),
            properties: PublishProperties {
                payload_format_indicator: Some(PayloadFormat::Utf8),
                message_expiry_interval: Some(30),
                topic_alias: NonZeroU16::new(7),
                response_topic: Some(topic("reply")),
                correlation_data: Some(Bytes::from_static(&[1, 2, 3])),
                content_type: Some(s("text/plain")),
                subscription_identifiers: [1, 128, 268_435_455]
                    .into_iter()
                    .map(|v| SubscriptionId::new(v).unwrap())
                    .collect(),
                user_properties: vec![(s("a"), s("1")), (s("a"), s("2"))],
            },
            payload: Bytes::from_static(b"{}"),
        };
        assert_vector(Protocol::V5, &bytes, publish);
    }

    // Section 3.3.2.3.4: an empty topic name with a Topic Alias uses the alias's topic.
    #[test]
    fn v5_empty_topic_with_alias() {
        let bytes = [
            0x30, 0x07, // PUBLISH, QoS 0; remaining length 7
            0x00, 0x00, // topic name "" (zero length)
            0x03, // property length 3
            0x23, 0x00, 0x01, // topic alias 1
            b'z', // payload
        ];
        let publish = Publish {
            properties: PublishProperties {
                topic_alias: NonZeroU16::new(1),
                ..PublishProperties::default()
            },
            ..Publish::new(TopicName::empty(), &b"z"[..])
        };
        assert_vector(Protocol::V5, &bytes, publish);
    }

    // MQTT 3.x encoders leave the properties out.
    #[test]
    fn v3_encoder_drops_properties() {
        let publish = Publish {
            properties: PublishProperties {
                message_expiry_interval: Some(5),
                ..PublishProperties::default()
            },
            ..Publish::new(topic("a"), &b"x"[..])
        };
        let mut out = BytesMut::new();
        publish.encode(Protocol::V311, &mut out).unwrap();
        assert_eq!(
            &out[..],
            [
                0x30, 0x04, // PUBLISH, QoS 0; remaining length 4
                0x00, 0x01, b'a', // topic name "a"
                b'x', // payload
            ]
        );
    }

    // [MQTT-3.3.1-4]: both QoS bits set is malformed.
    #[test]
    fn qos_3() {
        for protocol in [Protocol::V31, Protocol::V311, Protocol::V5] {
            let err = decode_err(
                Some(protocol),
                &[
                    0x36, 0x07, // PUBLISH, QoS 3; remaining length 7
                    0x00, 0x03, b'a', b'/', b'b', // topic name "a/b"
                    0x00, 0x01, // packet identifier 1
                ],
            );
            assert_eq!(err, DecodeError::InvalidQoS);
            assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
            assert_eq!(err.rule(protocol), Some("MQTT-3.3.1-4"));
        }
    }

    // [MQTT-3.3.1-2]: DUP is 0 for QoS 0.
    #[test]
    fn dup_on_qos_0() {
        let err = decode_err(
            Some(Protocol::V311),
            &[
                0x38, 0x05, // PUBLISH, DUP, QoS 0; remaining length 5
                0x00, 0x03, b'a', b'/', b'b', // topic name "a/b"
            ],
        );
        assert_eq!(err, DecodeError::DupWithQoS0);
        assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
    }

    // 5.0 [MQTT-2.2.1-3], 3.1.1 [MQTT-2.3.1-1]: packet identifiers are non-zero.
    #[test]
    fn zero_packet_id() {
        for protocol in [Protocol::V311, Protocol::V5] {
            let err = decode_err(
                Some(protocol),
                &[
                    0x34, 0x08, // PUBLISH, QoS 2; remaining length 8
                    0x00, 0x03, b'a', b'/', b'b', // topic name "a/b"
                    0x00, 0x00, // packet identifier 0
                    0x00, // (property length 0 in v5, payload in 3.1.1)
                ],
            );
            assert_eq!(err, DecodeError::ZeroPacketId(PacketType::Publish));
            assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
        }
    }

    // 5.0 [MQTT-1.5.4-1], 3.1.1 [MQTT-1.5.3-1]: ill-formed UTF-8 is malformed.
    #[test]
    fn invalid_utf8_topic() {
        let err = decode_err(
            Some(Protocol::V311),
            &[
                0x30, 0x04, // PUBLISH, QoS 0; remaining length 4
                0x00, 0x02, 0xC3, 0x28, // topic name: C3 then 28, not a continuation byte
            ],
        );
        assert_eq!(err, DecodeError::InvalidString(StringError::InvalidUtf8));
        assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
        assert_eq!(err.rule(Protocol::V5), Some("MQTT-1.5.4-1"));
        // An encoded surrogate, U+D800.
        assert_eq!(
            decode_err(
                Some(Protocol::V5),
                &[0x30, 0x06, 0x00, 0x03, 0xED, 0xA0, 0x80, 0x00]
            ),
            DecodeError::InvalidString(StringError::InvalidUtf8)
        );
    }

    // [MQTT-3.3.2-2]: no wildcards in a Topic Name.
    #[test]
    fn wildcard_topic() {
        let err = decode_err(
            Some(Protocol::V311),
            &[
                0x30, 0x05, // PUBLISH, QoS 0; remaining length 5
                0x00, 0x03, b'a', b'/', b'+', // topic name "a/+"
            ],
        );
        assert_eq!(err, DecodeError::InvalidTopicName(TopicError::Wildcard));
        assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
    }

    // [MQTT-4.7.3-1]: in 3.x every topic name is at least one character long.
    #[test]
    fn v3_empty_topic() {
        for protocol in [Protocol::V31, Protocol::V311] {
            assert_eq!(
                decode_err(
                    Some(protocol),
                    &[
                        0x30, 0x03, // PUBLISH, QoS 0; remaining length 3
                        0x00, 0x00, // topic name "" (zero length)
                        b'x', // payload
                    ]
                ),
                DecodeError::InvalidTopicName(TopicError::Empty)
            );
        }
        // The encoder refuses one too.
        let publish = Publish::new(TopicName::empty(), &b"x"[..]);
        let mut out = BytesMut::new();
        assert_eq!(
            publish.encode(Protocol::V311, &mut out),
            Err(EncodeError::EmptyTopicWithoutAlias)
        );
        assert_eq!(
            publish.encode(Protocol::V5, &mut out),
            Err(EncodeError::EmptyTopicWithoutAlias)
        );
        assert!(out.is_empty());
    }

    // Section 3.3.2.1: "It is a Protocol Error if the Topic Name is zero length and there is no
    // Topic Alias."
    #[test]
    fn v5_empty_topic_without_alias() {
        let err = decode_err(
            Some(Protocol::V5),
            &[
                0x30, 0x04, // PUBLISH, QoS 0; remaining length 4
                0x00, 0x00, // topic name "" (zero length)
                0x00, // property length 0
                b'x', // payload
            ],
        );
        assert_eq!(err, DecodeError::EmptyTopicWithoutAlias);
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
    }

    /// A v5 QoS 0 PUBLISH to "a" with these properties (at most 123 bytes) and no payload.
    fn v5_with_properties(props: &[u8]) -> Vec<u8> {
        // PUBLISH, QoS 0; remaining length
        let mut bytes = vec![0x30, short_len(4 + props.len())];
        bytes.extend_from_slice(&[0x00, 0x01, b'a']); // topic name "a"
        bytes.push(short_len(props.len())); // property length
        bytes.extend_from_slice(props);
        bytes
    }

    // [MQTT-3.3.2-8]: a Topic Alias of 0 is a Protocol Error.
    #[test]
    fn topic_alias_zero() {
        let err = decode_err(
            Some(Protocol::V5),
            &v5_with_properties(&[
                0x23, 0x00, 0x00, // topic alias 0
            ]),
        );
        assert_eq!(err, DecodeError::InvalidPropertyValue(0x23));
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
        assert_eq!(err.rule(Protocol::V5), Some("MQTT-3.3.2-8"));
    }

    // Section 3.3.2.3.8: a Subscription Identifier of 0 is a Protocol Error. Section 3.3.2.3.2
    // defines Payload Format Indicator values 0 and 1 only; the codec refuses others as a
    // Protocol Error (Mosquitto lets them through).
    #[test]
    fn property_values_out_of_range() {
        let cases: [(&[u8], u8); 2] = [
            (&[0x01, 0x02], 0x01), // payload format indicator 2
            (&[0x0B, 0x00], 0x0B), // subscription identifier 0
        ];
        for (props, id) in cases {
            let err = decode_err(Some(Protocol::V5), &v5_with_properties(props));
            assert_eq!(err, DecodeError::InvalidPropertyValue(id));
            assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
        }
    }

    // [MQTT-3.3.2-14]: the Response Topic is a Topic Name, without wildcards.
    #[test]
    fn wildcard_response_topic() {
        assert_eq!(
            decode_err(
                Some(Protocol::V5),
                &v5_with_properties(&[0x08, 0x00, 0x01, b'#'])
            ),
            DecodeError::InvalidTopicName(TopicError::Wildcard)
        );
    }

    // Section 3.3.2.3.4: "It is a Protocol Error to include the Topic Alias value more than
    // once."
    #[test]
    fn duplicate_property() {
        let err = decode_err(
            Some(Protocol::V5),
            &v5_with_properties(&[
                0x23, 0x00, 0x01, // topic alias 1
                0x23, 0x00, 0x02, // topic alias 2
            ]),
        );
        assert_eq!(err, DecodeError::DuplicateProperty(0x23));
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
    }

    // Section 2.2.2.2: Session Expiry Interval does not belong in PUBLISH.
    #[test]
    fn property_not_valid_in_publish() {
        let err = decode_err(
            Some(Protocol::V5),
            &v5_with_properties(&[0x11, 0x00, 0x00, 0x00, 0x01]),
        );
        assert_eq!(
            err,
            DecodeError::InvalidProperty {
                packet: PacketType::Publish,
                id: 0x11
            }
        );
        assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
    }

    #[test]
    fn truncated() {
        // The topic name claims 5 bytes; the packet has 1 left.
        let err = decode_err(Some(Protocol::V311), &[0x30, 0x03, 0x00, 0x05, b'a']);
        assert_eq!(err, DecodeError::Truncated(PacketType::Publish));
        assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
        // The packet identifier is cut short.
        assert_eq!(
            decode_err(Some(Protocol::V311), &[0x32, 0x04, 0x00, 0x01, b'a', 0x00]),
            DecodeError::Truncated(PacketType::Publish)
        );
        // The property length runs past the packet.
        let mut bytes = v5_with_properties(&[0x01, 0x01]);
        bytes[5] = 0x05;
        assert_eq!(
            decode_err(Some(Protocol::V5), &bytes),
            DecodeError::Truncated(PacketType::Publish)
        );
    }

    // The packet identifier is present exactly for QoS 1 and 2 (section 3.3.2.2).
    #[test]
    fn encoder_checks_packet_id_against_qos() {
        let mut out = BytesMut::new();
        let without = Publish {
            qos: QoS::AtLeastOnce,
            ..Publish::new(topic("a"), &b"x"[..])
        };
        assert_eq!(
            without.encode(Protocol::V311, &mut out),
            Err(EncodeError::PacketIdMismatch)
        );
        let with = Publish {
            packet_id: id(1),
            ..Publish::new(topic("a"), &b"x"[..])
        };
        assert_eq!(
            with.encode(Protocol::V5, &mut out),
            Err(EncodeError::PacketIdMismatch)
        );
        assert!(out.is_empty());
    }
}
