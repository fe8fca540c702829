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
