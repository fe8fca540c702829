//! PUBACK, PUBREC, PUBREL and PUBCOMP (sections 3.4 to 3.7): the QoS 1 and 2 handshakes.
//!
//! All four share one layout: a Packet Identifier, then in MQTT 5.0 an optional Reason Code and
//! optional properties. A Remaining Length of 2 means Success without properties, and of 3 a
//! reason without properties (sections 3.4.2.1, 3.5.2.1, 3.6.2.1, 3.7.2.1). The encoder uses the
//! shortest form, as Mosquitto does.

use bytes::{BufMut, BytesMut};

use super::{Encode, read_packet_id};
use crate::codec::Reader;
use crate::properties::AckProperties;
use crate::{DecodeError, EncodeError, PacketId, PacketType, Protocol, ReasonCode};

macro_rules! ack_packet {
    ($(#[$doc:meta])* $name:ident, $kind:ident, $flags:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            /// Packet Identifier of the PUBLISH (or PUBREC, PUBREL) acknowledged.
            pub packet_id: PacketId,
            /// Reason Code (MQTT 5.0); `SUCCESS` in MQTT 3.x.
            pub reason: ReasonCode,
            /// Properties (MQTT 5.0).
            pub properties: AckProperties,
        }

        impl $name {
            /// A successful acknowledgement of `packet_id`.
            pub fn new(packet_id: PacketId) -> Self {
                $name {
                    packet_id,
                    reason: ReasonCode::SUCCESS,
                    properties: AckProperties::default(),
                }
            }

            pub(crate) fn decode(
                r: &mut Reader<'_>,
                protocol: Protocol,
            ) -> Result<Self, DecodeError> {
                let packet_id = read_packet_id(r)?;
                let mut ack = $name::new(packet_id);
                if protocol.is_v5() && !r.is_empty() {
                    let code = r.u8()?;
                    ack.reason = ReasonCode(code);
                    if !ack.reason.is_valid_for(PacketType::$kind) {
                        return Err(DecodeError::InvalidReasonCode {
                            packet: PacketType::$kind,
                            code,
                        });
                    }
                    if !r.is_empty() {
                        ack.properties = AckProperties::decode_for(r, PacketType::$kind)?;
                    }
                }
                Ok(ack)
            }
        }

        impl Encode for $name {
            const TYPE: PacketType = PacketType::$kind;

            fn flags(&self) -> u8 {
                $flags
            }

            fn remaining_len(&self, protocol: Protocol) -> usize {
                if !protocol.is_v5() {
                    2
                } else if !self.properties.is_empty() {
                    3 + self.properties.encoded_len()
                } else if self.reason != ReasonCode::SUCCESS {
                    3
                } else {
                    2
                }
            }

            fn encode_body(&self, protocol: Protocol, buf: &mut BytesMut) -> Result<(), EncodeError> {
                buf.put_u16(self.packet_id.get());
                if protocol.is_v5() {
                    if !self.properties.is_empty() {
                        buf.put_u8(self.reason.0);
                        self.properties.encode(buf)?;
                    } else if self.reason != ReasonCode::SUCCESS {
                        buf.put_u8(self.reason.0);
                    }
                }
                Ok(())
            }
        }
    };
}

ack_packet!(
    /// PUBACK: acknowledges a QoS 1 PUBLISH.
    PubAck, PubAck, 0b0000
);
ack_packet!(
    /// PUBREC: first acknowledgement of a QoS 2 PUBLISH.
    PubRec, PubRec, 0b0000
);
ack_packet!(
    /// PUBREL: answers PUBREC; its fixed header flags are 0010 [MQTT-3.6.1-1].
    PubRel, PubRel, 0b0010
);
ack_packet!(
    /// PUBCOMP: completes a QoS 2 exchange.
    PubComp, PubComp, 0b0000
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::test_vectors::{assert_decodes, assert_encodes, assert_vector, decode_err};
    use crate::{MqttString, Packet};

    fn s(text: &'static str) -> MqttString {
        MqttString::from_static(text)
    }

    fn id(value: u16) -> PacketId {
        PacketId::new(value).unwrap()
    }

    /// The four packets, each with its first byte and a way to build it from its fields.
    struct Kind {
        packet: PacketType,
        first_byte: u8,
        build: fn(PacketId, ReasonCode, AckProperties) -> Packet,
        /// A reason code other than Success that the packet may carry.
        other_reason: u8,
        /// A reason code it may not carry.
        invalid_reason: u8,
    }

    const KINDS: [Kind; 4] = [
        Kind {
            packet: PacketType::PubAck,
            first_byte: 0x40, // PUBACK, flags 0000
            build: |packet_id, reason, properties| {
                Packet::PubAck(PubAck {
                    packet_id,
                    reason,
                    properties,
                })
            },
            other_reason: 0x10, // No matching subscribers
            invalid_reason: 0x05,
        },
        Kind {
            packet: PacketType::PubRec,
            first_byte: 0x50, // PUBREC, flags 0000
            build: |packet_id, reason, properties| {
                Packet::PubRec(PubRec {
                    packet_id,
                    reason,
                    properties,
                })
            },
            other_reason: 0x97, // Quota exceeded
            invalid_reason: 0x92,
        },
        Kind {
            packet: PacketType::PubRel,
            first_byte: 0x62, // PUBREL, flags 0010 [MQTT-3.6.1-1]
            build: |packet_id, reason, properties| {
                Packet::PubRel(PubRel {
                    packet_id,
                    reason,
                    properties,
                })
            },
            other_reason: 0x92, // Packet Identifier not found
            invalid_reason: 0x10,
        },
        Kind {
            packet: PacketType::PubComp,
            first_byte: 0x70, // PUBCOMP, flags 0000
            build: |packet_id, reason, properties| {
                Packet::PubComp(PubComp {
                    packet_id,
                    reason,
                    properties,
                })
            },
            other_reason: 0x92, // Packet Identifier not found
            invalid_reason: 0x80,
        },
    ];

    // 3.1.1 sections 3.4 to 3.7: the packet identifier and nothing else.
    #[test]
    fn v3() {
        for kind in &KINDS {
            let bytes = [
                &[kind.first_byte][..],
                &[
                    0x02, // remaining length 2
                    0x00, 0x0A, // packet identifier 10
                ],
            ]
            .concat();
            let packet = (kind.build)(id(10), ReasonCode::SUCCESS, AckProperties::default());
            assert_vector(Protocol::V31, &bytes, packet.clone());
            assert_vector(Protocol::V311, &bytes, packet);
        }
    }

    // 5.0 sections 3.4.2.1, 3.5.2.1, 3.6.2.1, 3.7.2.1: with a Remaining Length of 2 the reason
    // is Success and there are no properties.
    #[test]
    fn v5_remaining_length_2() {
        for kind in &KINDS {
            let bytes = [
                &[kind.first_byte][..],
                &[
                    0x02, // remaining length 2
                    0x12, 0x34, // packet identifier 0x1234
                ],
            ]
            .concat();
            let packet = (kind.build)(id(0x1234), ReasonCode::SUCCESS, AckProperties::default());
            assert_vector(Protocol::V5, &bytes, packet);
        }
    }

    // With a Remaining Length of 3, a reason code and no Property Length.
    #[test]
    fn v5_remaining_length_3() {
        for kind in &KINDS {
            let bytes = [
                &[kind.first_byte][..],
                &[
                    0x03, // remaining length 3
                    0x00, 0x0A, // packet identifier 10
                ],
                &[kind.other_reason], // reason code
            ]
            .concat();
            let reason = ReasonCode(kind.other_reason);
            let packet = (kind.build)(id(10), reason, AckProperties::default());
            assert_vector(Protocol::V5, &bytes, packet);
        }
    }

    // Success can also be sent explicitly, with or without an empty property list; the encoder
    // uses the short form, as Mosquitto does.
    #[test]
    fn v5_explicit_success_decodes() {
        for kind in &KINDS {
            let packet = (kind.build)(id(10), ReasonCode::SUCCESS, AckProperties::default());
            let three = [kind.first_byte, 0x03, 0x00, 0x0A, 0x00];
            let four = [kind.first_byte, 0x04, 0x00, 0x0A, 0x00, 0x00];
            assert_decodes(Protocol::V5, &three, &packet);
            assert_decodes(Protocol::V5, &four, &packet);
            assert_encodes(Protocol::V5, &packet, &[kind.first_byte, 0x02, 0x00, 0x0A]);
        }
    }

    // Both properties of the acks (Reason String, User Property), user properties repeated.
    #[test]
    fn v5_with_properties() {
        for kind in &KINDS {
            let bytes = [
                &[kind.first_byte][..],
                &[
                    0x18, // remaining length 24
                    0x00, 0x0A, // packet identifier 10
                ],
                &[kind.other_reason], // reason code
                &[
                    0x14, // property length 20
                    0x1F, 0x00, 0x03, b'b', b'a', b'd', // reason string "bad"
                    0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property ("k", "v")
                    0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'w', // user property ("k", "w")
                ],
            ]
            .concat();
            let properties = AckProperties {
                reason_string: Some(s("bad")),
                user_properties: vec![(s("k"), s("v")), (s("k"), s("w"))],
            };
            let packet = (kind.build)(id(10), ReasonCode(kind.other_reason), properties);
            assert_vector(Protocol::V5, &bytes, packet);
        }
    }

    // Properties with Success still need the reason code byte in front of them.
    #[test]
    fn v5_success_with_properties() {
        let bytes = [
            0x40, 0x09, // PUBACK, remaining length 9
            0x00, 0x01, // packet identifier 1
            0x00, // reason code: success
            0x05, // property length 5
            0x1F, 0x00, 0x02, b'o', b'k', // reason string "ok"
        ];
        let puback = PubAck {
            properties: AckProperties {
                reason_string: Some(s("ok")),
                ..AckProperties::default()
            },
            ..PubAck::new(id(1))
        };
        assert_vector(Protocol::V5, &bytes, puback);
    }

    // MQTT 3.x cannot carry a reason or properties: the encoder drops them.
    #[test]
    fn v3_encoder_drops_reason_and_properties() {
        for kind in &KINDS {
            let properties = AckProperties {
                reason_string: Some(s("x")),
                ..AckProperties::default()
            };
            let packet = (kind.build)(id(10), ReasonCode(kind.other_reason), properties);
            assert_encodes(
                Protocol::V311,
                &packet,
                &[kind.first_byte, 0x02, 0x00, 0x0A],
            );
        }
    }

    // PUBACK, PUBREC and PUBCOMP flags are reserved 0000 ([MQTT-2.1.3-1], 3.1.1
    // [MQTT-2.2.2-2]); PUBREL's are 0010 [MQTT-3.6.1-1].
    #[test]
    fn reserved_flags() {
        for kind in &KINDS {
            for flags in [0x0, 0x1, 0x2, 0x8] {
                let first = (kind.first_byte & 0xF0) | flags;
                if first == kind.first_byte {
                    continue;
                }
                let err = decode_err(Some(Protocol::V311), &[first, 0x02, 0x00, 0x01]);
                assert_eq!(
                    err,
                    DecodeError::InvalidFlags {
                        packet: kind.packet,
                        flags
                    }
                );
                assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
            }
        }
        let err = decode_err(Some(Protocol::V5), &[0x60, 0x02, 0x00, 0x01]);
        assert_eq!(err.rule(Protocol::V5), Some("MQTT-3.6.1-1"));
    }

    // 5.0 [MQTT-2.2.1-3], 3.1.1 [MQTT-2.3.1-1].
    #[test]
    fn zero_packet_id() {
        for kind in &KINDS {
            for protocol in [Protocol::V311, Protocol::V5] {
                let err = decode_err(Some(protocol), &[kind.first_byte, 0x02, 0x00, 0x00]);
                assert_eq!(err, DecodeError::ZeroPacketId(kind.packet));
                assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
            }
        }
    }

    // [MQTT-3.4.2-1], [MQTT-3.5.2-1], [MQTT-3.6.2-1], [MQTT-3.7.2-1]: only the packet's own
    // reason codes.
    #[test]
    fn invalid_reason_codes() {
        for kind in &KINDS {
            let code = kind.invalid_reason;
            let err = decode_err(
                Some(Protocol::V5),
                &[kind.first_byte, 0x03, 0x00, 0x01, code],
            );
            assert_eq!(
                err,
                DecodeError::InvalidReasonCode {
                    packet: kind.packet,
                    code
                }
            );
            assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
        }
    }

    // 3.1.1: the Remaining Length is 2.
    #[test]
    fn v3_trailing_bytes() {
        for kind in &KINDS {
            assert_eq!(
                decode_err(
                    Some(Protocol::V311),
                    &[kind.first_byte, 0x03, 0x00, 0x01, 0x00]
                ),
                DecodeError::TrailingBytes(kind.packet)
            );
        }
    }

    // Section 2.2.2.2: only Reason String and User Property; the error names the packet.
    #[test]
    fn property_not_valid_in_ack() {
        for kind in &KINDS {
            let err = decode_err(
                Some(Protocol::V5),
                &[
                    &[kind.first_byte][..],
                    &[
                        0x06, // remaining length 6
                        0x00, 0x01, // packet identifier 1
                        0x00, // reason code: success
                        0x02, // property length 2
                        0x01, 0x01, // payload format indicator: a PUBLISH property
                    ],
                ]
                .concat(),
            );
            assert_eq!(
                err,
                DecodeError::InvalidProperty {
                    packet: kind.packet,
                    id: 0x01
                }
            );
            assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
        }
    }

    // "It is a Protocol Error to include the Reason String more than once."
    #[test]
    fn duplicate_reason_string() {
        let err = decode_err(
            Some(Protocol::V5),
            &[
                0x50, 0x0C, // PUBREC, remaining length 12
                0x00, 0x01, // packet identifier 1
                0x80, // reason code: unspecified error
                0x08, // property length 8
                0x1F, 0x00, 0x01, b'a', // reason string "a"
                0x1F, 0x00, 0x01, b'b', // reason string "b"
            ],
        );
        assert_eq!(err, DecodeError::DuplicateProperty(0x1F));
        assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
    }

    #[test]
    fn truncated() {
        // The property length says 5 bytes; 2 follow.
        assert_eq!(
            decode_err(
                Some(Protocol::V5),
                &[0x70, 0x06, 0x00, 0x01, 0x00, 0x05, 0x1F, 0x00]
            ),
            DecodeError::Truncated(PacketType::PubComp)
        );
        // A Remaining Length of 1 cannot hold the packet identifier.
        assert_eq!(
            decode_err(Some(Protocol::V5), &[0x40, 0x01, 0x00]),
            DecodeError::Truncated(PacketType::PubAck)
        );
    }
}
