//! UNSUBACK (section 3.11).

use bytes::{BufMut, BytesMut};

use super::{Encode, read_packet_id};
use crate::codec::Reader;
use crate::properties::AckProperties;
use crate::{DecodeError, EncodeError, PacketId, PacketType, Protocol, ReasonCode};

/// An UNSUBACK packet. MQTT 3.x UNSUBACK has no payload, so `reasons` is empty there (and
/// not written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// Packet Identifier of the UNSUBSCRIBE.
    pub packet_id: PacketId,
    /// Properties (MQTT 5.0).
    pub properties: AckProperties,
    /// One code per filter of the UNSUBSCRIBE (MQTT 5.0).
    pub reasons: Vec<ReasonCode>,
}

impl UnsubAck {
    /// An UNSUBACK with these codes and no properties.
    pub fn new(packet_id: PacketId, reasons: Vec<ReasonCode>) -> Self {
        UnsubAck {
            packet_id,
            properties: AckProperties::default(),
            reasons,
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>, protocol: Protocol) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(r)?;
        let mut ack = UnsubAck::new(packet_id, Vec::new());
        if !protocol.is_v5() {
            return Ok(ack);
        }
        ack.properties = AckProperties::decode_for(r, PacketType::UnsubAck)?;
        while !r.is_empty() {
            let code = r.u8()?;
            if !ReasonCode(code).is_valid_for(PacketType::UnsubAck) {
                return Err(DecodeError::InvalidReasonCode {
                    packet: PacketType::UnsubAck,
                    code,
                });
            }
            ack.reasons.push(ReasonCode(code));
        }
        Ok(ack)
    }
}

impl Encode for UnsubAck {
    const TYPE: PacketType = PacketType::UnsubAck;

    fn remaining_len(&self, protocol: Protocol) -> usize {
        if protocol.is_v5() {
            2 + self.properties.encoded_len() + self.reasons.len()
        } else {
            2
        }
    }

    fn encode_body(&self, protocol: Protocol, buf: &mut BytesMut) -> Result<(), EncodeError> {
        buf.put_u16(self.packet_id.get());
        if protocol.is_v5() {
            self.properties.encode(buf)?;
            for r in &self.reasons {
                buf.put_u8(r.0);
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

    fn id(value: u16) -> PacketId {
        PacketId::new(value).unwrap()
    }

    // 3.1.1 section 3.11: the packet identifier and nothing else.
    #[test]
    fn v3() {
        let bytes = [
            0xB0, 0x02, // UNSUBACK, remaining length 2
            0x00, 0x0A, // packet identifier 10
        ];
        let unsuback = UnsubAck::new(id(10), Vec::new());
        assert_vector(Protocol::V31, &bytes, unsuback.clone());
        assert_vector(Protocol::V311, &bytes, unsuback);
    }

    // 3.x UNSUBACK has no payload: the v5 reasons and properties are not written.
    #[test]
    fn v3_encoder_drops_reasons_and_properties() {
        let unsuback = UnsubAck {
            properties: AckProperties {
                reason_string: Some(MqttString::from_static("x")),
                ..AckProperties::default()
            },
            ..UnsubAck::new(id(10), vec![ReasonCode::NO_SUBSCRIPTION_EXISTED])
        };
        assert_encodes(
            Protocol::V311,
            &Packet::UnsubAck(unsuback),
            &[0xB0, 0x02, 0x00, 0x0A],
        );
    }

    #[test]
    fn v5_minimal() {
        let bytes = [
            0xB0, 0x04, // UNSUBACK, remaining length 4
            0x00, 0x0A, // packet identifier 10
            0x00, // property length 0
            0x00, // success
        ];
        let unsuback = UnsubAck::new(id(10), vec![ReasonCode::SUCCESS]);
        assert_vector(Protocol::V5, &bytes, unsuback);
    }

    // Section 3.11.2.1 (Reason String, User Property) and every reason code of 3.11.3.
    #[test]
    fn v5_properties_and_every_reason_code() {
        let bytes = [
            0xB0, 0x14, // UNSUBACK, remaining length 20
            0x00, 0x0A, // packet identifier 10
            0x0A, // property length 10
            0x1F, 0x00, 0x01, b'r', // reason string "r"
            0x26, 0x00, 0x01, b'k', 0x00, 0x00, // user property ("k", "")
            0x00, // success
            0x11, // no subscription existed
            0x80, // unspecified error
            0x83, // implementation specific error
            0x87, // not authorized
            0x8F, // topic filter invalid
            0x91, // packet identifier in use
        ];
        let unsuback = UnsubAck {
            packet_id: id(10),
            properties: AckProperties {
                reason_string: Some(MqttString::from_static("r")),
                user_properties: vec![(MqttString::from_static("k"), MqttString::new())],
            },
            reasons: [0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91]
                .into_iter()
                .map(ReasonCode)
                .collect(),
        };
        assert_vector(Protocol::V5, &bytes, unsuback);
    }

    // 3.1.1 section 3.11.1: the Remaining Length is 2.
    #[test]
    fn v3_trailing_bytes() {
        let err = decode_err(
            Some(Protocol::V311),
            &[
                0xB0, 0x03, // UNSUBACK, remaining length 3
                0x00, 0x0A, // packet identifier 10
                0x00, // a reason code, which 3.1.1 does not have
            ],
        );
        assert_eq!(err, DecodeError::TrailingBytes(PacketType::UnsubAck));
        assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
    }

    // [MQTT-2.1.3-1] (3.1.1: [MQTT-2.2.2-2]): UNSUBACK's flags are 0000.
    #[test]
    fn reserved_fixed_header_flags() {
        assert_eq!(
            decode_err(Some(Protocol::V311), &[0xB2, 0x02, 0x00, 0x0A]),
            DecodeError::InvalidFlags {
                packet: PacketType::UnsubAck,
                flags: 0x2
            }
        );
    }

    // 5.0 [MQTT-2.2.1-3], 3.1.1 [MQTT-2.3.1-1].
    #[test]
    fn zero_packet_id() {
        assert_eq!(
            decode_err(Some(Protocol::V311), &[0xB0, 0x02, 0x00, 0x00]),
            DecodeError::ZeroPacketId(PacketType::UnsubAck)
        );
    }

    // [MQTT-3.11.3-2]: only the UNSUBACK reason codes.
    #[test]
    fn invalid_reason_codes() {
        for code in [0x01, 0x02, 0x10, 0x97] {
            let err = decode_err(Some(Protocol::V5), &[0xB0, 0x04, 0x00, 0x01, 0x00, code]);
            assert_eq!(
                err,
                DecodeError::InvalidReasonCode {
                    packet: PacketType::UnsubAck,
                    code
                }
            );
            assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
        }
    }

    // Section 2.2.2.2: Server Reference is a CONNACK/DISCONNECT property.
    #[test]
    fn property_not_valid_in_unsuback() {
        assert_eq!(
            decode_err(
                Some(Protocol::V5),
                &[
                    0xB0, 0x08, // UNSUBACK, remaining length 8
                    0x00, 0x01, // packet identifier 1
                    0x04, // property length 4
                    0x1C, 0x00, 0x01, b's', // server reference "s"
                    0x00, // success
                ]
            ),
            DecodeError::InvalidProperty {
                packet: PacketType::UnsubAck,
                id: 0x1C
            }
        );
    }

    // In 5.0 the Property Length is not optional.
    #[test]
    fn v5_without_property_length() {
        assert_eq!(
            decode_err(Some(Protocol::V5), &[0xB0, 0x02, 0x00, 0x0A]),
            DecodeError::Truncated(PacketType::UnsubAck)
        );
    }
}
