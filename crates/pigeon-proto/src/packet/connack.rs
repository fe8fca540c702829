//! CONNACK (section 3.2): the server's answer to CONNECT.

use bytes::{BufMut, BytesMut};

use super::Encode;
use crate::codec::Reader;
use crate::properties::ConnAckProperties;
use crate::{DecodeError, EncodeError, PacketType, Protocol, ReasonCode};

/// A CONNACK packet.
///
/// The reason is an MQTT 5.0 reason code for every version; in MQTT 3.x it is written as the
/// nearest return code ([`ReasonCode::to_v3_connack`]) and read back from one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnAck {
    /// Session Present.
    pub session_present: bool,
    /// The Connect Reason Code (5.0) or Return Code (3.x).
    pub reason: ReasonCode,
    /// Properties (MQTT 5.0).
    pub properties: ConnAckProperties,
}

impl ConnAck {
    pub(crate) fn decode(r: &mut Reader<'_>, protocol: Protocol) -> Result<Self, DecodeError> {
        let flags = r.u8()?;
        // Bits 7-1 are reserved [MQTT-3.2.2-1].
        if flags & 0xFE != 0 {
            return Err(DecodeError::ConnAckReservedFlags);
        }
        let session_present = flags & 0x01 != 0;
        let code = r.u8()?;
        let invalid = DecodeError::InvalidReasonCode {
            packet: PacketType::ConnAck,
            code,
        };
        let reason = if protocol.is_v5() {
            let reason = ReasonCode(code);
            if !reason.is_valid_for(PacketType::ConnAck) {
                return Err(invalid);
            }
            reason
        } else {
            ReasonCode::from_v3_connack(code).ok_or(invalid)?
        };
        // A refused connection has no session [MQTT-3.2.2-4] (5.0: [MQTT-3.2.2-6]).
        if session_present && reason != ReasonCode::SUCCESS {
            return Err(DecodeError::SessionPresentOnError);
        }
        let properties = if protocol.is_v5() {
            let p = ConnAckProperties::decode(r)?;
            if p.authentication_data.is_some() && p.authentication_method.is_none() {
                return Err(DecodeError::AuthDataWithoutMethod);
            }
            p
        } else {
            ConnAckProperties::default()
        };
        Ok(ConnAck {
            session_present,
            reason,
            properties,
        })
    }
}

impl Encode for ConnAck {
    const TYPE: PacketType = PacketType::ConnAck;

    fn validate(&self, protocol: Protocol) -> Result<(), EncodeError> {
        if self.session_present && self.reason != ReasonCode::SUCCESS {
            return Err(EncodeError::Invalid("session present on a refused CONNACK"));
        }
        if protocol.is_v5() && self.properties.maximum_qos == Some(crate::QoS::ExactlyOnce) {
            return Err(EncodeError::Invalid("Maximum QoS property of 2"));
        }
        Ok(())
    }

    fn remaining_len(&self, protocol: Protocol) -> usize {
        if protocol.is_v5() {
            2 + self.properties.encoded_len()
        } else {
            2
        }
    }

    fn encode_body(&self, protocol: Protocol, buf: &mut BytesMut) -> Result<(), EncodeError> {
        buf.put_u8(u8::from(self.session_present));
        if protocol.is_v5() {
            buf.put_u8(self.reason.0);
            self.properties.encode(buf)?;
        } else {
            buf.put_u8(self.reason.to_v3_connack());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::num::{NonZeroU16, NonZeroU32};

    use bytes::Bytes;

    use super::*;
    use crate::packet::test_vectors::{assert_encodes, assert_vector, decode_err, short_len};
    use crate::{MqttString, Packet, QoS};

    fn s(text: &'static str) -> MqttString {
        MqttString::from_static(text)
    }

    fn refused(reason: ReasonCode) -> ConnAck {
        ConnAck {
            reason,
            ..ConnAck::default()
        }
    }

    // MQTT 3.1.1 Table 3.1: return codes 0 to 5, each with the reason code it maps to.
    #[test]
    fn v3_return_codes() {
        let reasons = [
            ReasonCode::SUCCESS,
            ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            ReasonCode::SERVER_UNAVAILABLE,
            ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            ReasonCode::NOT_AUTHORIZED,
        ];
        for protocol in [Protocol::V31, Protocol::V311] {
            for (code, reason) in (0u8..).zip(reasons) {
                let bytes = [
                    0x20, 0x02, // CONNACK, remaining length 2
                    0x00, // acknowledge flags: no session present
                    code, // connect return code
                ];
                assert_vector(protocol, &bytes, refused(reason));
            }
        }
    }

    // MQTT 3.1.1 section 3.2.2.2.
    #[test]
    fn v311_session_present() {
        let bytes = [
            0x20, 0x02, // CONNACK, remaining length 2
            0x01, // acknowledge flags: session present
            0x00, // return code 0: accepted
        ];
        let connack = ConnAck {
            session_present: true,
            ..ConnAck::default()
        };
        assert_vector(Protocol::V311, &bytes, connack);
    }

    // The codes MQTT 5.0 added have no 3.x return code: they are sent as the nearest one.
    #[test]
    fn v3_encodes_v5_reasons_as_nearest_return_code() {
        for (reason, code) in [
            (ReasonCode::BANNED, 0x05),
            (ReasonCode::BAD_AUTHENTICATION_METHOD, 0x04),
            (ReasonCode::QUOTA_EXCEEDED, 0x03),
        ] {
            let packet = Packet::from(refused(reason));
            assert_encodes(Protocol::V311, &packet, &[0x20, 0x02, 0x00, code]);
        }
    }

    #[test]
    fn v5_success_without_properties() {
        let bytes = [
            0x20, 0x03, // CONNACK, remaining length 3
            0x00, // acknowledge flags
            0x00, // reason code: success
            0x00, // property length 0
        ];
        assert_vector(Protocol::V5, &bytes, ConnAck::default());
    }

    #[test]
    fn v5_refused_with_reason_string() {
        let bytes = [
            0x20, 0x0B, // CONNACK, remaining length 11
            0x00, // acknowledge flags
            0x87, // reason code: not authorized
            0x08, // property length 8
            0x1F, 0x00, 0x05, b'b', b'a', b'n', b'n', b'd', // reason string "bannd"
        ];
        let connack = ConnAck {
            reason: ReasonCode::NOT_AUTHORIZED,
            properties: ConnAckProperties {
                reason_string: Some(s("bannd")),
                ..ConnAckProperties::default()
            },
            ..ConnAck::default()
        };
        assert_vector(Protocol::V5, &bytes, connack);
    }

    // Every property of section 3.2.2.3.
    #[test]
    fn v5_every_property() {
        let bytes = [
            0x20, 0x4A, // CONNACK, remaining length 74
            0x01, // acknowledge flags: session present
            0x00, // reason code: success
            0x47, // property length 71
            // Mosquitto's order first (as Debian's mosquitto 2.0.11 sends them), then the rest.
            0x22, 0x00, 0x05, // topic alias maximum 5
            0x13, 0x00, 0x1E, // server keep alive 30
            0x12, 0x00, 0x04, b'a', b'u', b't', b'o', // assigned client identifier "auto"
            0x15, 0x00, 0x05, b'S', b'C', b'R', b'A', b'M', // authentication method "SCRAM"
            0x16, 0x00, 0x02, 0xAB, 0xCD, // authentication data AB CD
            0x25, 0x00, // retain available 0
            0x27, 0x00, 0x01, 0x00, 0x00, // maximum packet size 65536
            0x21, 0x00, 0x0A, // receive maximum 10
            0x24, 0x01, // maximum QoS 1
            0x11, 0x00, 0x00, 0x00, 0x78, // session expiry interval 120
            0x1F, 0x00, 0x02, b'o', b'k', // reason string "ok"
            0x28, 0x00, // wildcard subscription available 0
            0x29, 0x01, // subscription identifiers available 1
            0x2A, 0x00, // shared subscription available 0
            0x1A, 0x00, 0x02, b'r', b'i', // response information "ri"
            0x1C, 0x00, 0x02, b's', b'2', // server reference "s2"
            0x26, 0x00, 0x01, b'x', 0x00, 0x01, b'y', // user property ("x", "y")
        ];
        let connack = ConnAck {
            session_present: true,
            reason: ReasonCode::SUCCESS,
            properties: ConnAckProperties {
                session_expiry_interval: Some(120),
                receive_maximum: NonZeroU16::new(10),
                maximum_qos: Some(QoS::AtLeastOnce),
                retain_available: Some(false),
                maximum_packet_size: NonZeroU32::new(65_536),
                assigned_client_identifier: Some(s("auto")),
                topic_alias_maximum: Some(5),
                reason_string: Some(s("ok")),
                wildcard_subscription_available: Some(false),
                subscription_identifiers_available: Some(true),
                shared_subscription_available: Some(false),
                server_keep_alive: Some(30),
                response_information: Some(s("ri")),
                server_reference: Some(s("s2")),
                authentication_method: Some(s("SCRAM")),
                authentication_data: Some(Bytes::from_static(&[0xAB, 0xCD])),
                user_properties: vec![(s("x"), s("y"))],
            },
        };
        assert_vector(Protocol::V5, &bytes, connack);
    }

    // 5.0 [MQTT-3.2.2-1]; 3.1.1 section 3.2.2.1 (not numbered there): bits 7-1 are reserved.
    #[test]
    fn reserved_acknowledge_flags() {
        let err = decode_err(Some(Protocol::V311), &[0x20, 0x02, 0x02, 0x00]);
        assert_eq!(err, DecodeError::ConnAckReservedFlags);
        assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
        assert_eq!(
            decode_err(Some(Protocol::V5), &[0x20, 0x03, 0x80, 0x00, 0x00]),
            DecodeError::ConnAckReservedFlags
        );
    }

    // 3.1.1 [MQTT-3.2.2-4], 5.0 [MQTT-3.2.2-6]: a refused connection has no session.
    #[test]
    fn session_present_on_refused_connection() {
        let err = decode_err(
            Some(Protocol::V311),
            &[
                0x20, 0x02, // CONNACK, remaining length 2
                0x01, // session present
                0x05, // return code 5: not authorized
            ],
        );
        assert_eq!(err, DecodeError::SessionPresentOnError);
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
        assert_eq!(err.rule(Protocol::V311), Some("MQTT-3.2.2-4"));
        let err = decode_err(Some(Protocol::V5), &[0x20, 0x03, 0x01, 0x80, 0x00]);
        assert_eq!(err, DecodeError::SessionPresentOnError);
        assert_eq!(err.rule(Protocol::V5), Some("MQTT-3.2.2-6"));
    }

    // 3.1.1 Table 3.1: 6-255 are reserved. 5.0 section 3.2.2.2 lists the CONNACK reason codes.
    #[test]
    fn invalid_reason_codes() {
        for code in [0x06, 0x80, 0xFF] {
            assert_eq!(
                decode_err(Some(Protocol::V311), &[0x20, 0x02, 0x00, code]),
                DecodeError::InvalidReasonCode {
                    packet: PacketType::ConnAck,
                    code
                }
            );
        }
        // Valid in other packets, but not in CONNACK.
        for code in [0x01, 0x04, 0x18, 0x8B, 0x8E, 0x92] {
            let err = decode_err(Some(Protocol::V5), &[0x20, 0x03, 0x00, code, 0x00]);
            assert_eq!(
                err,
                DecodeError::InvalidReasonCode {
                    packet: PacketType::ConnAck,
                    code
                }
            );
            assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
        }
    }

    // [MQTT-2.1.3-1] (3.1.1: [MQTT-2.2.2-2]): CONNACK's fixed header flags are 0000.
    #[test]
    fn reserved_fixed_header_flags() {
        assert_eq!(
            decode_err(Some(Protocol::V311), &[0x21, 0x02, 0x00, 0x00]),
            DecodeError::InvalidFlags {
                packet: PacketType::ConnAck,
                flags: 0x1
            }
        );
    }

    // 3.1.1 section 3.2.1: the Remaining Length is 2.
    #[test]
    fn v3_trailing_bytes() {
        assert_eq!(
            decode_err(Some(Protocol::V311), &[0x20, 0x03, 0x00, 0x00, 0x00]),
            DecodeError::TrailingBytes(PacketType::ConnAck)
        );
    }

    // In 5.0 the Property Length is not optional in CONNACK (section 3.2.2.3.1).
    #[test]
    fn v5_without_property_length() {
        assert_eq!(
            decode_err(Some(Protocol::V5), &[0x20, 0x02, 0x00, 0x00]),
            DecodeError::Truncated(PacketType::ConnAck)
        );
    }

    /// A v5 CONNACK, success, with these properties (at most 125 bytes).
    fn v5_with_properties(props: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0x20, short_len(3 + props.len())]; // CONNACK, remaining length
        bytes.extend_from_slice(&[
            0x00, // acknowledge flags
            0x00, // reason code: success
        ]);
        bytes.push(short_len(props.len())); // property length
        bytes.extend_from_slice(props);
        bytes
    }

    // Sections 3.2.2.3.3 to 3.2.2.3.6, 3.2.2.3.11 and 3.2.2.3.13: Protocol Errors.
    #[test]
    fn property_values_out_of_range() {
        let cases: [(&[u8], u8); 6] = [
            (&[0x21, 0x00, 0x00], 0x21),             // receive maximum 0
            (&[0x24, 0x02], 0x24),                   // maximum QoS 2
            (&[0x25, 0x02], 0x25),                   // retain available 2
            (&[0x27, 0x00, 0x00, 0x00, 0x00], 0x27), // maximum packet size 0
            (&[0x28, 0x02], 0x28),                   // wildcard subscription available 2
            (&[0x2A, 0xFF], 0x2A),                   // shared subscription available 255
        ];
        for (props, id) in cases {
            let err = decode_err(Some(Protocol::V5), &v5_with_properties(props));
            assert_eq!(err, DecodeError::InvalidPropertyValue(id));
            assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
        }
    }

    #[test]
    fn duplicate_property() {
        let err = decode_err(
            Some(Protocol::V5),
            &v5_with_properties(&[
                0x1F, 0x00, 0x01, b'a', // reason string "a"
                0x1F, 0x00, 0x01, b'b', // reason string "b"
            ]),
        );
        assert_eq!(err, DecodeError::DuplicateProperty(0x1F));
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
    }

    // Section 2.2.2.2: Request Problem Information belongs to CONNECT.
    #[test]
    fn property_not_valid_in_connack() {
        let err = decode_err(Some(Protocol::V5), &v5_with_properties(&[0x17, 0x01]));
        assert_eq!(
            err,
            DecodeError::InvalidProperty {
                packet: PacketType::ConnAck,
                id: 0x17
            }
        );
        assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
    }

    // Authentication Data (3.2.2.3.18) is defined by the Authentication Method (3.2.2.3.17);
    // the codec applies CONNECT's rule of section 3.1.2.11.10 to CONNACK too.
    #[test]
    fn auth_data_without_method() {
        assert_eq!(
            decode_err(
                Some(Protocol::V5),
                &v5_with_properties(&[0x16, 0x00, 0x01, 0x00])
            ),
            DecodeError::AuthDataWithoutMethod
        );
    }

    // The encoder refuses what every decoder would: [MQTT-3.2.2-6] and a Maximum QoS of 2.
    #[test]
    fn encoder_refuses_impossible_connacks() {
        let mut buf = BytesMut::new();
        let refused = ConnAck {
            session_present: true,
            reason: ReasonCode::NOT_AUTHORIZED,
            ..ConnAck::default()
        };
        assert!(matches!(
            refused.encode(Protocol::V5, &mut buf),
            Err(EncodeError::Invalid(_))
        ));
        let mut qos2 = ConnAck::default();
        qos2.properties.maximum_qos = Some(QoS::ExactlyOnce);
        assert!(matches!(
            qos2.encode(Protocol::V5, &mut buf),
            Err(EncodeError::Invalid(_))
        ));
        assert!(buf.is_empty());
    }
}
