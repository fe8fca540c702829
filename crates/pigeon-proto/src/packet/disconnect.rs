//! DISCONNECT (section 3.14).

use bytes::{BufMut, BytesMut};

use super::Encode;
use crate::codec::Reader;
use crate::properties::DisconnectProperties;
use crate::{DecodeError, EncodeError, PacketType, Protocol, ReasonCode};

/// A DISCONNECT packet. MQTT 3.x DISCONNECT is empty and only the client sends it; MQTT 5.0
/// adds a reason and properties and lets either side send it.
///
/// A Remaining Length of 0 means Normal disconnection without properties, and of 1 a reason
/// without properties (section 3.14.2.1); the encoder uses the shortest form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Disconnect {
    /// Disconnect Reason Code (MQTT 5.0).
    pub reason: ReasonCode,
    /// Properties (MQTT 5.0).
    pub properties: DisconnectProperties,
}

impl Disconnect {
    /// A DISCONNECT with this reason and no properties.
    pub fn new(reason: ReasonCode) -> Self {
        Disconnect {
            reason,
            properties: DisconnectProperties::default(),
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>, protocol: Protocol) -> Result<Self, DecodeError> {
        let mut d = Disconnect::default();
        if !protocol.is_v5() || r.is_empty() {
            return Ok(d);
        }
        let code = r.u8()?;
        d.reason = ReasonCode(code);
        if !d.reason.is_valid_for(PacketType::Disconnect) {
            return Err(DecodeError::InvalidReasonCode {
                packet: PacketType::Disconnect,
                code,
            });
        }
        if !r.is_empty() {
            d.properties = DisconnectProperties::decode(r)?;
        }
        Ok(d)
    }
}

impl Encode for Disconnect {
    const TYPE: PacketType = PacketType::Disconnect;

    fn remaining_len(&self, protocol: Protocol) -> usize {
        if !protocol.is_v5() {
            0
        } else if !self.properties.is_empty() {
            1 + self.properties.encoded_len()
        } else if self.reason != ReasonCode::NORMAL_DISCONNECTION {
            1
        } else {
            0
        }
    }

    fn encode_body(&self, protocol: Protocol, buf: &mut BytesMut) -> Result<(), EncodeError> {
        if protocol.is_v5() {
            if !self.properties.is_empty() {
                buf.put_u8(self.reason.0);
                self.properties.encode(buf)?;
            } else if self.reason != ReasonCode::NORMAL_DISCONNECTION {
                buf.put_u8(self.reason.0);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MqttString;
    use crate::packet::test_vectors::{assert_decodes, assert_vector, decode_err};

    fn s(text: &'static str) -> MqttString {
        MqttString::from_static(text)
    }

    // 3.1.1 section 3.14: no variable header, no payload.
    #[test]
    fn v3() {
        for protocol in [Protocol::V31, Protocol::V311] {
            assert_vector(
                protocol,
                &[
                    0xE0, 0x00, // DISCONNECT, remaining length 0
                ],
                Disconnect::default(),
            );
        }
    }

    // 5.0 section 3.14.2.1: a Remaining Length of 0 is Normal disconnection...
    #[test]
    fn v5_remaining_length_0() {
        assert_vector(
            Protocol::V5,
            &[
                0xE0, 0x00, // DISCONNECT, remaining length 0
            ],
            Disconnect::new(ReasonCode::NORMAL_DISCONNECTION),
        );
    }

    // ...and of 1 a reason code without properties.
    #[test]
    fn v5_remaining_length_1() {
        assert_vector(
            Protocol::V5,
            &[
                0xE0, 0x01, // DISCONNECT, remaining length 1
                0x04, // disconnect with will message
            ],
            Disconnect::new(ReasonCode::DISCONNECT_WITH_WILL_MESSAGE),
        );
    }

    // Normal disconnection with an empty property list is accepted; the encoder writes the
    // short form.
    #[test]
    fn v5_explicit_normal_disconnection() {
        assert_decodes(
            Protocol::V5,
            &[
                0xE0, 0x02, // DISCONNECT, remaining length 2
                0x00, // normal disconnection
                0x00, // property length 0
            ],
            &Disconnect::default().into(),
        );
    }

    // Every property of section 3.14.2.2.
    #[test]
    fn v5_every_property() {
        let bytes = [
            0xE0, 0x1A, // DISCONNECT, remaining length 26
            0x9C, // use another server
            0x18, // property length 24
            0x11, 0x00, 0x00, 0x00, 0x00, // session expiry interval 0
            0x1F, 0x00, 0x04, b'b', b'y', b'e', b'!', // reason string "bye!"
            0x1C, 0x00, 0x02, b's', b'2', // server reference "s2"
            0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'b', // user property ("a", "b")
        ];
        let disconnect = Disconnect {
            reason: ReasonCode::USE_ANOTHER_SERVER,
            properties: DisconnectProperties {
                session_expiry_interval: Some(0),
                reason_string: Some(s("bye!")),
                server_reference: Some(s("s2")),
                user_properties: vec![(s("a"), s("b"))],
            },
        };
        assert_vector(Protocol::V5, &bytes, disconnect);
    }

    // Properties with Normal disconnection still need the reason code byte.
    #[test]
    fn v5_normal_disconnection_with_properties() {
        let bytes = [
            0xE0, 0x07, // DISCONNECT, remaining length 7
            0x00, // normal disconnection
            0x05, // property length 5
            0x11, 0x00, 0x00, 0x01, 0x2C, // session expiry interval 300
        ];
        let disconnect = Disconnect {
            properties: DisconnectProperties {
                session_expiry_interval: Some(300),
                ..DisconnectProperties::default()
            },
            ..Disconnect::default()
        };
        assert_vector(Protocol::V5, &bytes, disconnect);
    }

    // 3.x has no reason code: the encoder writes an empty DISCONNECT.
    #[test]
    fn v3_encoder_drops_reason() {
        let mut out = BytesMut::new();
        Disconnect::new(ReasonCode::SERVER_SHUTTING_DOWN)
            .encode(Protocol::V311, &mut out)
            .unwrap();
        assert_eq!(&out[..], [0xE0, 0x00]);
    }

    // 5.0 [MQTT-3.14.1-1], 3.1.1 [MQTT-3.14.1-1]: the flags are 0000.
    #[test]
    fn reserved_fixed_header_flags() {
        for protocol in [Protocol::V311, Protocol::V5] {
            let err = decode_err(Some(protocol), &[0xE1, 0x00]);
            assert_eq!(
                err,
                DecodeError::InvalidFlags {
                    packet: PacketType::Disconnect,
                    flags: 0x1
                }
            );
            assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
        }
    }

    // 3.1.1 section 3.14.1: the Remaining Length is 0.
    #[test]
    fn v3_trailing_bytes() {
        for protocol in [Protocol::V31, Protocol::V311] {
            let err = decode_err(
                Some(protocol),
                &[
                    0xE0, 0x01, // DISCONNECT, remaining length 1
                    0x00, // a reason code, which 3.x does not have
                ],
            );
            assert_eq!(err, DecodeError::TrailingBytes(PacketType::Disconnect));
            assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
        }
    }

    // [MQTT-3.14.2-1]: only the DISCONNECT reason codes.
    #[test]
    fn invalid_reason_codes() {
        for code in [0x01, 0x05, 0x84, 0x91, 0xFF] {
            let err = decode_err(Some(Protocol::V5), &[0xE0, 0x01, code]);
            assert_eq!(
                err,
                DecodeError::InvalidReasonCode {
                    packet: PacketType::Disconnect,
                    code
                }
            );
            assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
        }
    }

    // Section 2.2.2.2: Receive Maximum does not belong in DISCONNECT.
    #[test]
    fn property_not_valid_in_disconnect() {
        let err = decode_err(
            Some(Protocol::V5),
            &[
                0xE0, 0x05, // DISCONNECT, remaining length 5
                0x00, // normal disconnection
                0x03, // property length 3
                0x21, 0x00, 0x01, // receive maximum 1
            ],
        );
        assert_eq!(
            err,
            DecodeError::InvalidProperty {
                packet: PacketType::Disconnect,
                id: 0x21
            }
        );
        assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
    }

    // Section 3.14.2.2.2: "It is a Protocol Error to include the Session Expiry Interval more
    // than once."
    #[test]
    fn duplicate_property() {
        let err = decode_err(
            Some(Protocol::V5),
            &[
                0xE0, 0x0C, // DISCONNECT, remaining length 12
                0x00, // normal disconnection
                0x0A, // property length 10
                0x11, 0x00, 0x00, 0x00, 0x01, // session expiry interval 1
                0x11, 0x00, 0x00, 0x00, 0x02, // session expiry interval 2
            ],
        );
        assert_eq!(err, DecodeError::DuplicateProperty(0x11));
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
    }

    #[test]
    fn truncated() {
        // The property length says 4; 2 bytes follow.
        assert_eq!(
            decode_err(Some(Protocol::V5), &[0xE0, 0x04, 0x00, 0x04, 0x11, 0x00]),
            DecodeError::Truncated(PacketType::Disconnect)
        );
        // The reason string runs past the packet.
        assert_eq!(
            decode_err(
                Some(Protocol::V5),
                &[0xE0, 0x06, 0x80, 0x04, 0x1F, 0x00, 0x09, b'x']
            ),
            DecodeError::Truncated(PacketType::Disconnect)
        );
    }
}
