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
