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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReasonCode;
    use crate::packet::test_vectors::{assert_vector, decode_err};

    const ALL: [Protocol; 3] = [Protocol::V31, Protocol::V311, Protocol::V5];

    // Sections 3.12 and 3.13 (both versions): a fixed header and nothing else.
    #[test]
    fn pingreq_every_version() {
        for protocol in ALL {
            assert_vector(
                protocol,
                &[
                    0xC0, 0x00, // PINGREQ, remaining length 0
                ],
                PingReq,
            );
        }
    }

    #[test]
    fn pingresp_every_version() {
        for protocol in ALL {
            assert_vector(
                protocol,
                &[
                    0xD0, 0x00, // PINGRESP, remaining length 0
                ],
                PingResp,
            );
        }
    }

    // [MQTT-2.1.3-1] (3.1.1: [MQTT-2.2.2-2]): the flags of both are reserved 0000.
    #[test]
    fn reserved_flags_are_malformed() {
        for protocol in ALL {
            let err = decode_err(Some(protocol), &[0xC1, 0x00]);
            assert_eq!(
                err,
                DecodeError::InvalidFlags {
                    packet: PacketType::PingReq,
                    flags: 0x1
                }
            );
            assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
            assert_eq!(
                decode_err(Some(protocol), &[0xD8, 0x00]),
                DecodeError::InvalidFlags {
                    packet: PacketType::PingResp,
                    flags: 0x8
                }
            );
        }
    }

    // Neither packet has a variable header or payload: a Remaining Length of 1 is malformed.
    #[test]
    fn trailing_bytes_are_malformed() {
        for protocol in ALL {
            let err = decode_err(
                Some(protocol),
                &[
                    0xC0, 0x01, // PINGREQ, remaining length 1
                    0x00, // a byte PINGREQ cannot have
                ],
            );
            assert_eq!(err, DecodeError::TrailingBytes(PacketType::PingReq));
            assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
            assert_eq!(
                decode_err(Some(protocol), &[0xD0, 0x01, 0x00]),
                DecodeError::TrailingBytes(PacketType::PingResp)
            );
        }
    }
}
