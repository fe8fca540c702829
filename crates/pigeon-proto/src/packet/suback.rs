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
