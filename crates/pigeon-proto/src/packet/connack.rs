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
