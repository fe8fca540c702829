//! PINGREQ and PINGRESP (sections 3.12 and 3.13): no variable header, no payload.

use bytes::BytesMut;

use super::Encode;
use crate::codec::Reader;
use crate::{DecodeError, EncodeError, PacketType, Protocol};

/// PINGREQ: the client is alive and asks for a PINGRESP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PingReq;

/// PINGRESP: the server's answer to PINGREQ.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PingResp;

impl PingReq {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.finish()?;
        Ok(PingReq)
    }
}

impl PingResp {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.finish()?;
        Ok(PingResp)
    }
}

impl Encode for PingReq {
    const TYPE: PacketType = PacketType::PingReq;
    fn remaining_len(&self, _: Protocol) -> usize {
        0
    }
    fn encode_body(&self, _: Protocol, _: &mut BytesMut) -> Result<(), EncodeError> {
        Ok(())
    }
}

impl Encode for PingResp {
    const TYPE: PacketType = PacketType::PingResp;
    fn remaining_len(&self, _: Protocol) -> usize {
        0
    }
    fn encode_body(&self, _: Protocol, _: &mut BytesMut) -> Result<(), EncodeError> {
        Ok(())
    }
}
