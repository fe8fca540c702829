//! SUBACK (section 3.9).

use bytes::{BufMut, BytesMut};

use super::{Encode, read_packet_id};
use crate::codec::Reader;
use crate::properties::AckProperties;
use crate::{DecodeError, EncodeError, PacketId, PacketType, Protocol, ReasonCode};

/// A SUBACK packet: one reason code per topic filter of the SUBSCRIBE, in order.
///
/// MQTT 3.x return codes are 0, 1, 2 (granted QoS) and 0x80 (failure); any MQTT 5.0 error code
/// is written as 0x80 there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// Packet Identifier of the SUBSCRIBE.
    pub packet_id: PacketId,
    /// Properties (MQTT 5.0).
    pub properties: AckProperties,
    /// One code per filter.
    pub reasons: Vec<ReasonCode>,
}

impl SubAck {
    /// A SUBACK with these codes and no properties.
    pub fn new(packet_id: PacketId, reasons: Vec<ReasonCode>) -> Self {
        SubAck {
            packet_id,
            properties: AckProperties::default(),
            reasons,
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>, protocol: Protocol) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(r)?;
        let properties = if protocol.is_v5() {
            AckProperties::decode_for(r, PacketType::SubAck)?
        } else {
            AckProperties::default()
        };
        let mut reasons = Vec::new();
        while !r.is_empty() {
            let code = r.u8()?;
            let valid = if protocol.is_v5() {
                ReasonCode(code).is_valid_for(PacketType::SubAck)
            } else {
                matches!(code, 0x00..=0x02 | 0x80)
            };
            if !valid {
                return Err(DecodeError::InvalidReasonCode {
                    packet: PacketType::SubAck,
                    code,
                });
            }
            reasons.push(ReasonCode(code));
        }
        Ok(SubAck {
            packet_id,
            properties,
            reasons,
        })
    }
}

impl Encode for SubAck {
    const TYPE: PacketType = PacketType::SubAck;

    fn remaining_len(&self, protocol: Protocol) -> usize {
        let props = if protocol.is_v5() {
            self.properties.encoded_len()
        } else {
            0
        };
        2 + props + self.reasons.len()
    }

    fn encode_body(&self, protocol: Protocol, buf: &mut BytesMut) -> Result<(), EncodeError> {
        buf.put_u16(self.packet_id.get());
        if protocol.is_v5() {
            self.properties.encode(buf)?;
            for r in &self.reasons {
                buf.put_u8(r.0);
            }
        } else {
            for r in &self.reasons {
                buf.put_u8(if r.is_error() { 0x80 } else { r.0 });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::test_vectors::{assert_encodes, assert_vector, decode_err};
    use crate::{MqttString, Packet};

    fn s(text: &'static str) -> MqttString {
        MqttString::from_static(text)
    }

    fn id(value: u16) -> PacketId {
        PacketId::new(value).unwrap()
    }

    /// MQTT 3.1.1 section 3.9.3.1 (Figure 3.27): granted QoS 0, granted QoS 2, failure.
    #[test]
    fn v311_spec_example() {
        let bytes = [
            0x90, 0x05, // SUBACK, remaining length 5
            0x00, 0x0A, // packet identifier 10
            0x00, // success, maximum QoS 0
            0x02, // success, maximum QoS 2
            0x80, // failure
        ];
        let suback = SubAck::new(
            id(10),
            vec![
                ReasonCode::GRANTED_QOS_0,
                ReasonCode::GRANTED_QOS_2,
                ReasonCode::UNSPECIFIED_ERROR,
            ],
        );
        assert_vector(Protocol::V311, &bytes, suback.clone());
        assert_vector(Protocol::V31, &bytes, suback);
    }

    #[test]
    fn v5_minimal() {
        let bytes = [
            0x90, 0x04, // SUBACK, remaining length 4
            0x00, 0x01, // packet identifier 1
            0x00, // property length 0
            0x01, // granted QoS 1
        ];
        let suback = SubAck::new(id(1), vec![ReasonCode::GRANTED_QOS_1]);
        assert_vector(Protocol::V5, &bytes, suback);
    }

    // Section 3.9.2.1 (Reason String, User Property) and every reason code of section 3.9.3.
    #[test]
    fn v5_properties_and_every_reason_code() {
        let bytes = [
            0x90, 0x1B, // SUBACK, remaining length 27
            0x00, 0x0A, // packet identifier 10
            0x0C, // property length 12
            0x1F, 0x00, 0x02, b'n', b'o', // reason string "no"
            0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property ("k", "v")
            0x00, // granted QoS 0
            0x01, // granted QoS 1
            0x02, // granted QoS 2
            0x80, // unspecified error
            0x83, // implementation specific error
            0x87, // not authorized
            0x8F, // topic filter invalid
            0x91, // packet identifier in use
            0x97, // quota exceeded
            0x9E, // shared subscriptions not supported
            0xA1, // subscription identifiers not supported
            0xA2, // wildcard subscriptions not supported
        ];
        let reasons = [
            0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
        ];
        let suback = SubAck {
            packet_id: id(10),
            properties: AckProperties {
                reason_string: Some(s("no")),
                user_properties: vec![(s("k"), s("v"))],
            },
            reasons: reasons.into_iter().map(ReasonCode).collect(),
        };
        assert_vector(Protocol::V5, &bytes, suback);
    }

    // MQTT 3.x has one failure code, 0x80 [MQTT-3.9.3-2]: every v5 error is written as it.
    #[test]
    fn v3_encoder_maps_errors_to_0x80() {
        let suback = SubAck {
            properties: AckProperties {
                reason_string: Some(s("x")),
                ..AckProperties::default()
            },
            ..SubAck::new(
                id(3),
                vec![
                    ReasonCode::GRANTED_QOS_1,
                    ReasonCode::NOT_AUTHORIZED,
                    ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
                ],
            )
        };
        assert_encodes(
            Protocol::V311,
            &Packet::SubAck(suback),
            &[
                0x90, 0x05, // SUBACK, remaining length 5
                0x00, 0x03, // packet identifier 3
                0x01, // granted QoS 1
                0x80, // failure
                0x80, // failure
            ],
        );
    }

    // [MQTT-3.9.3-2] (both versions): only the listed codes.
    #[test]
    fn invalid_reason_codes() {
        for code in [0x03, 0x81, 0x87] {
            let err = decode_err(Some(Protocol::V311), &[0x90, 0x03, 0x00, 0x01, code]);
            assert_eq!(
                err,
                DecodeError::InvalidReasonCode {
                    packet: PacketType::SubAck,
                    code
                }
            );
            assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
        }
        for code in [0x03, 0x10, 0x11, 0x81, 0x92] {
            assert_eq!(
                decode_err(Some(Protocol::V5), &[0x90, 0x04, 0x00, 0x01, 0x00, code]),
                DecodeError::InvalidReasonCode {
                    packet: PacketType::SubAck,
                    code
                }
            );
        }
    }

    // [MQTT-2.1.3-1] (3.1.1: [MQTT-2.2.2-2]): SUBACK's flags are 0000.
    #[test]
    fn reserved_fixed_header_flags() {
        assert_eq!(
            decode_err(Some(Protocol::V311), &[0x92, 0x03, 0x00, 0x01, 0x00]),
            DecodeError::InvalidFlags {
                packet: PacketType::SubAck,
                flags: 0x2
            }
        );
    }

    // 5.0 [MQTT-2.2.1-3], 3.1.1 [MQTT-2.3.1-1].
    #[test]
    fn zero_packet_id() {
        assert_eq!(
            decode_err(Some(Protocol::V311), &[0x90, 0x03, 0x00, 0x00, 0x00]),
            DecodeError::ZeroPacketId(PacketType::SubAck)
        );
    }

    // Section 2.2.2.2: a Subscription Identifier does not belong in SUBACK.
    #[test]
    fn property_not_valid_in_suback() {
        assert_eq!(
            decode_err(
                Some(Protocol::V5),
                &[
                    0x90, 0x06, // SUBACK, remaining length 6
                    0x00, 0x01, // packet identifier 1
                    0x02, // property length 2
                    0x0B, 0x01, // subscription identifier 1
                    0x00, // granted QoS 0
                ]
            ),
            DecodeError::InvalidProperty {
                packet: PacketType::SubAck,
                id: 0x0B
            }
        );
    }

    // In 5.0 the Property Length is not optional.
    #[test]
    fn v5_without_property_length() {
        assert_eq!(
            decode_err(Some(Protocol::V5), &[0x90, 0x02, 0x00, 0x01]),
            DecodeError::Truncated(PacketType::SubAck)
        );
    }
}
