//! AUTH (section 3.15): extended authentication exchanges, MQTT 5.0 only.

use bytes::{BufMut, BytesMut};

use super::Encode;
use crate::codec::Reader;
use crate::properties::AuthProperties;
use crate::{DecodeError, EncodeError, PacketType, Protocol, ReasonCode};

/// An AUTH packet. A Remaining Length of 0 means Success without properties (section
/// 3.15.2.1); otherwise the reason code and the properties both follow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Auth {
    /// Authenticate Reason Code: Success, Continue authentication or Re-authenticate.
    pub reason: ReasonCode,
    /// Properties.
    pub properties: AuthProperties,
}

impl Auth {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut auth = Auth::default();
        if r.is_empty() {
            return Ok(auth);
        }
        let code = r.u8()?;
        auth.reason = ReasonCode(code);
        if !auth.reason.is_valid_for(PacketType::Auth) {
            return Err(DecodeError::InvalidReasonCode {
                packet: PacketType::Auth,
                code,
            });
        }
        auth.properties = AuthProperties::decode(r)?;
        // Only the empty form (Success, nothing else) may leave the method out
        // (section 3.15.2.2.2).
        if auth.properties.authentication_method.is_none() {
            return Err(if auth.properties.authentication_data.is_some() {
                DecodeError::AuthDataWithoutMethod
            } else {
                DecodeError::AuthWithoutMethod
            });
        }
        Ok(auth)
    }
}

impl Encode for Auth {
    const TYPE: PacketType = PacketType::Auth;

    fn validate(&self, protocol: Protocol) -> Result<(), EncodeError> {
        if protocol.is_v5() {
            Ok(())
        } else {
            Err(EncodeError::NotInProtocol(PacketType::Auth))
        }
    }

    fn remaining_len(&self, _: Protocol) -> usize {
        if self.reason == ReasonCode::SUCCESS && self.properties.is_empty() {
            0
        } else {
            1 + self.properties.encoded_len()
        }
    }

    fn encode_body(&self, _: Protocol, buf: &mut BytesMut) -> Result<(), EncodeError> {
        if self.reason != ReasonCode::SUCCESS || !self.properties.is_empty() {
            buf.put_u8(self.reason.0);
            self.properties.encode(buf)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::packet::test_vectors::{assert_vector, decode_err};
    use crate::{Decoder, MqttString};

    fn s(text: &'static str) -> MqttString {
        MqttString::from_static(text)
    }

    // Section 3.15.2.1: a Remaining Length of 0 means Success without properties.
    #[test]
    fn remaining_length_0() {
        assert_vector(
            Protocol::V5,
            &[
                0xF0, 0x00, // AUTH, remaining length 0
            ],
            Auth::default(),
        );
    }

    // Every property of section 3.15.2.2.
    #[test]
    fn continue_with_every_property() {
        let bytes = [
            0xF0, 0x1D, // AUTH, remaining length 29
            0x18, // continue authentication
            0x1B, // property length 27
            0x15, 0x00, 0x05, b'S', b'C', b'R', b'A', b'M', // authentication method "SCRAM"
            0x16, 0x00, 0x04, 0x01, 0x02, 0x03, 0x04, // authentication data 01 02 03 04
            0x1F, 0x00, 0x02, b'g', b'o', // reason string "go"
            0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'b', // user property ("a", "b")
        ];
        let auth = Auth {
            reason: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: AuthProperties {
                authentication_method: Some(s("SCRAM")),
                authentication_data: Some(Bytes::from_static(&[1, 2, 3, 4])),
                reason_string: Some(s("go")),
                user_properties: vec![(s("a"), s("b"))],
            },
        };
        assert_vector(Protocol::V5, &bytes, auth);
    }

    #[test]
    fn re_authenticate() {
        let bytes = [
            0xF0, 0x0A, // AUTH, remaining length 10
            0x19, // re-authenticate
            0x08, // property length 8
            0x15, 0x00, 0x05, b'S', b'C', b'R', b'A', b'M', // authentication method "SCRAM"
        ];
        let auth = Auth {
            reason: ReasonCode::RE_AUTHENTICATE,
            properties: AuthProperties {
                authentication_method: Some(s("SCRAM")),
                ..AuthProperties::default()
            },
        };
        assert_vector(Protocol::V5, &bytes, auth);
    }

    // Success with properties keeps the reason code byte.
    #[test]
    fn success_with_properties() {
        let bytes = [
            0xF0, 0x0A, // AUTH, remaining length 10
            0x00, // success
            0x08, // property length 8
            0x15, 0x00, 0x05, b'S', b'C', b'R', b'A', b'M', // authentication method "SCRAM"
        ];
        let auth = Auth {
            properties: AuthProperties {
                authentication_method: Some(s("SCRAM")),
                ..AuthProperties::default()
            },
            ..Auth::default()
        };
        assert_vector(Protocol::V5, &bytes, auth);
    }

    // AUTH is packet type 15, reserved before 5.0 (3.1.1 section 2.2.1): it is refused from
    // the fixed header, before its body has arrived.
    #[test]
    fn reserved_before_v5() {
        for protocol in [Protocol::V31, Protocol::V311] {
            let err = decode_err(Some(protocol), &[0xF0, 0x00]);
            assert_eq!(err, DecodeError::ReservedPacketType(15));
            assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
            let mut buf = BytesMut::from(&[0xF0][..]);
            assert_eq!(
                Decoder::new(Some(protocol), 1024).decode(&mut buf),
                Err(DecodeError::ReservedPacketType(15))
            );
        }
        let mut out = BytesMut::new();
        assert_eq!(
            Auth::default().encode(Protocol::V311, &mut out),
            Err(EncodeError::NotInProtocol(PacketType::Auth))
        );
        assert!(out.is_empty());
    }

    // [MQTT-3.15.1-1]: the flags are 0000.
    #[test]
    fn reserved_fixed_header_flags() {
        let err = decode_err(Some(Protocol::V5), &[0xF1, 0x00]);
        assert_eq!(
            err,
            DecodeError::InvalidFlags {
                packet: PacketType::Auth,
                flags: 0x1
            }
        );
        assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
    }

    // [MQTT-3.15.2-1]: only 0x00, 0x18 and 0x19.
    #[test]
    fn invalid_reason_codes() {
        for code in [0x01, 0x04, 0x87, 0x8C] {
            let err = decode_err(Some(Protocol::V5), &[0xF0, 0x02, code, 0x00]);
            assert_eq!(
                err,
                DecodeError::InvalidReasonCode {
                    packet: PacketType::Auth,
                    code
                }
            );
            assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
        }
    }

    // Authentication Data (3.15.2.2.3) is defined by the method (section 4.12); the codec
    // applies CONNECT's rule of section 3.1.2.11.10.
    #[test]
    fn auth_data_without_method() {
        let err = decode_err(
            Some(Protocol::V5),
            &[
                0xF0, 0x07, // AUTH, remaining length 7
                0x18, // continue authentication
                0x05, // property length 5
                0x16, 0x00, 0x02, 0x01, 0x02, // authentication data 01 02
            ],
        );
        assert_eq!(err, DecodeError::AuthDataWithoutMethod);
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
    }

    // Section 3.15.2.2.2: "It is a Protocol Error to omit the Authentication Method or to
    // include it more than once."
    #[test]
    fn duplicate_method() {
        let err = decode_err(
            Some(Protocol::V5),
            &[
                0xF0, 0x0A, // AUTH, remaining length 10
                0x18, // continue authentication
                0x08, // property length 8
                0x15, 0x00, 0x01, b'A', // authentication method "A"
                0x15, 0x00, 0x01, b'B', // authentication method "B"
            ],
        );
        assert_eq!(err, DecodeError::DuplicateProperty(0x15));
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
    }

    // Section 2.2.2.2: Session Expiry Interval does not belong in AUTH.
    #[test]
    fn property_not_valid_in_auth() {
        let err = decode_err(
            Some(Protocol::V5),
            &[
                0xF0, 0x07, // AUTH, remaining length 7
                0x18, // continue authentication
                0x05, // property length 5
                0x11, 0x00, 0x00, 0x00, 0x01, // session expiry interval 1
            ],
        );
        assert_eq!(
            err,
            DecodeError::InvalidProperty {
                packet: PacketType::Auth,
                id: 0x11
            }
        );
        assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
    }

    // Section 3.15.2.1 allows leaving out both the reason code and the Property Length, not
    // the Property Length alone; Mosquitto reads a missing one as malformed too.
    #[test]
    fn reason_code_without_property_length() {
        assert_eq!(
            decode_err(Some(Protocol::V5), &[0xF0, 0x01, 0x18]),
            DecodeError::Truncated(PacketType::Auth)
        );
    }

    // Section 3.15.2.2.2: only the empty AUTH may leave the Authentication Method out.
    #[test]
    fn reason_code_without_method() {
        let err = decode_err(Some(Protocol::V5), &[0xF0, 0x02, 0x18, 0x00]);
        assert_eq!(err, DecodeError::AuthWithoutMethod);
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
    }

    #[test]
    fn trailing_bytes() {
        assert_eq!(
            decode_err(
                Some(Protocol::V5),
                &[
                    0xF0, 0x08, // AUTH, remaining length 8
                    0x18, // continue authentication
                    0x05, // property length 5
                    0x15, 0x00, 0x02, b'a', b'b', // authentication method "ab"
                    0x00, // a byte after the properties
                ]
            ),
            DecodeError::TrailingBytes(PacketType::Auth)
        );
    }
}
