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
        if auth.properties.authentication_data.is_some()
            && auth.properties.authentication_method.is_none()
        {
            return Err(DecodeError::AuthDataWithoutMethod);
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
