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
