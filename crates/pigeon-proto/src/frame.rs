//! Framing: the fixed header, the maximum packet size, and incremental decoding.

use bytes::{Buf, Bytes, BytesMut};

use crate::codec::{put_var_int, var_int_len};
use crate::{DecodeError, Packet, PacketType, Protocol};

/// The fixed header of a packet whose body may not have arrived yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The packet type (high nibble of byte 1).
    pub packet_type: PacketType,
    /// The flags (low nibble of byte 1).
    pub flags: u8,
    /// Bytes of the fixed header: 2 to 5.
    pub header_len: usize,
    /// The Remaining Length.
    pub remaining_len: usize,
}

impl FrameHeader {
    /// Size of the whole packet.
    pub fn total_len(&self) -> usize {
        self.header_len + self.remaining_len
    }

    /// Parses a fixed header from the start of `buf`.
    ///
    /// Returns `Ok(None)` while the header is incomplete. Rejects reserved packet types
    /// (AUTH before MQTT 5.0, or before CONNECT), flags the spec fixes otherwise, a Remaining Length over four
    /// bytes, and packets larger than `max_packet_size`, all before any of the body is
    /// needed. `protocol` is `None` before CONNECT has been decoded.
    ///
    /// # Errors
    /// The [`DecodeError`] for the first rule broken.
    pub fn parse(
        buf: &[u8],
        protocol: Option<Protocol>,
        max_packet_size: u32,
    ) -> Result<Option<FrameHeader>, DecodeError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let type_bits = first >> 4;
        let flags = first & 0x0F;
        let packet_type = match PacketType::from_u8(type_bits) {
            // AUTH exists only in 5.0, and only after CONNECT has said so.
            Some(PacketType::Auth) if !protocol.is_some_and(Protocol::is_v5) => {
                return Err(DecodeError::ReservedPacketType(type_bits));
            }
            Some(t) => t,
            None => return Err(DecodeError::ReservedPacketType(type_bits)),
        };
        check_flags(packet_type, flags)?;

        let mut remaining_len = 0usize;
        let mut header_len = 1;
        loop {
            let Some(&b) = buf.get(header_len) else {
                return Ok(None);
            };
            remaining_len |= usize::from(b & 0x7F) << (7 * (header_len - 1));
            header_len += 1;
            if b & 0x80 == 0 {
                // [MQTT-1.5.5-1]: a final 0 byte after the first is an overlong form.
                if header_len > 2 && b == 0 {
                    return Err(DecodeError::VarIntNotMinimal);
                }
                break;
            }
            if header_len == 5 {
                return Err(DecodeError::VarIntTooLong);
            }
        }
        let header = FrameHeader {
            packet_type,
            flags,
            header_len,
            remaining_len,
        };
        let total = header.total_len() as u64;
        if total > u64::from(max_packet_size) {
            return Err(DecodeError::PacketTooLarge {
                size: total,
                max: max_packet_size,
            });
        }
        Ok(Some(header))
    }
}

/// Flags the spec fixes for every packet type but PUBLISH [MQTT-2.1.3-1] (v3.1.1:
/// [MQTT-2.2.2-1], [MQTT-2.2.2-2]). PUBLISH flags are checked when its body is decoded, since
/// a QoS of 3 is reported as such.
fn check_flags(packet: PacketType, flags: u8) -> Result<(), DecodeError> {
    let expected = match packet {
        PacketType::Publish => return Ok(()),
        PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => 0b0010,
        _ => 0,
    };
    if flags == expected {
        Ok(())
    } else {
        Err(DecodeError::InvalidFlags { packet, flags })
    }
}

/// The most [`Decoder::decode`] reserves ahead for a partly received packet.
const RESERVE_LIMIT: usize = 64 * 1024;

/// Incremental decoder for one connection's byte stream.
///
/// Feed it the connection's read buffer; it splits off and decodes each complete packet,
/// leaving partial ones in place. The protocol version starts unknown for a server (set by the
/// CONNECT it decodes) or is set by a client before it reads CONNACK.
///
/// ```
/// use pigeon_proto::{BytesMut, Decoder, Packet, Protocol};
///
/// let mut decoder = Decoder::new(Some(Protocol::V311), 1024);
/// let mut buf = BytesMut::from(&[0xD0, 0x00, 0xC0][..]); // PINGRESP, then half a PINGREQ
/// assert!(matches!(decoder.decode(&mut buf), Ok(Some(Packet::PingResp(_)))));
/// assert!(matches!(decoder.decode(&mut buf), Ok(None)));
/// buf.extend_from_slice(&[0x00]);
/// assert!(matches!(decoder.decode(&mut buf), Ok(Some(Packet::PingReq(_)))));
/// ```
#[derive(Debug, Clone)]
pub struct Decoder {
    protocol: Option<Protocol>,
    max_packet_size: u32,
}

impl Decoder {
    /// The largest packet MQTT can express: a 5-byte fixed header and 268,435,455 bytes.
    pub const MAX_PACKET_SIZE: u32 = 268_435_460;

    /// A decoder for `protocol` (`None` until a CONNECT says which) that refuses packets
    /// larger than `max_packet_size` bytes, fixed header included.
    pub fn new(protocol: Option<Protocol>, max_packet_size: u32) -> Self {
        Decoder {
            protocol,
            max_packet_size,
        }
    }

    /// The protocol version packets are decoded as.
    pub fn protocol(&self) -> Option<Protocol> {
        self.protocol
    }

    /// Sets the protocol version (a client does this when it sends CONNECT).
    pub fn set_protocol(&mut self, protocol: Protocol) {
        self.protocol = Some(protocol);
    }

    /// The maximum packet size in bytes.
    pub fn max_packet_size(&self) -> u32 {
        self.max_packet_size
    }

    /// Changes the maximum packet size.
    pub fn set_max_packet_size(&mut self, max: u32) {
        self.max_packet_size = max;
    }

    /// Decodes the next complete packet at the front of `buf`, removing its bytes.
    ///
    /// Returns `Ok(None)` when `buf` holds no complete packet; nothing is consumed then. A
    /// decoded CONNECT sets the decoder's protocol version. Payloads and strings of the packet
    /// share `buf`'s memory.
    ///
    /// # Errors
    /// A [`DecodeError`] when the stream is not valid MQTT. The connection cannot be resumed
    /// after one: the caller closes it (with the error's reason code, in MQTT 5.0).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let Some(header) = FrameHeader::parse(buf, self.protocol, self.max_packet_size)? else {
            return Ok(None);
        };
        if buf.len() < header.total_len() {
            // Make room for more of the body, but never on the peer's word alone: a header
            // announcing 256 MB costs nothing until the bytes actually arrive.
            buf.reserve((header.total_len() - buf.len()).min(RESERVE_LIMIT));
            return Ok(None);
        }
        buf.advance(header.header_len);
        let body = buf.split_to(header.remaining_len).freeze();
        let packet =
            Packet::decode_body(header.packet_type, header.flags, &body, 0, self.protocol)?;
        if let Packet::Connect(connect) = &packet {
            self.protocol = Some(connect.protocol);
        }
        Ok(Some(packet))
    }
}

impl Packet {
    /// Decodes one whole packet, fixed header included, from `frame`.
    ///
    /// # Errors
    /// A [`DecodeError`] when `frame` is not exactly one valid packet; an incomplete frame is
    /// [`DecodeError::Truncated`].
    pub fn decode(frame: Bytes, protocol: Option<Protocol>) -> Result<Packet, DecodeError> {
        let header = FrameHeader::parse(&frame, protocol, Decoder::MAX_PACKET_SIZE)?;
        let Some(header) = header else {
            let packet = frame
                .first()
                .and_then(|b| PacketType::from_u8(b >> 4))
                .unwrap_or(PacketType::Connect);
            return Err(DecodeError::Truncated(packet));
        };
        if frame.len() < header.total_len() {
            return Err(DecodeError::Truncated(header.packet_type));
        }
        if frame.len() > header.total_len() {
            return Err(DecodeError::TrailingBytes(header.packet_type));
        }
        Packet::decode_body(
            header.packet_type,
            header.flags,
            &frame,
            header.header_len,
            protocol,
        )
    }
}

/// Writes a fixed header.
pub(crate) fn put_header(buf: &mut BytesMut, first: u8, remaining_len: usize) {
    buf.reserve(1 + var_int_len(remaining_len) + remaining_len);
    bytes::BufMut::put_u8(buf, first);
    put_var_int(buf, remaining_len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_needs_more_bytes() {
        assert_eq!(FrameHeader::parse(&[], None, 100), Ok(None));
        assert_eq!(FrameHeader::parse(&[0x30], None, 100), Ok(None));
        assert_eq!(FrameHeader::parse(&[0x30, 0x80], None, 1000), Ok(None));
    }

    #[test]
    fn too_large_is_refused_before_the_body() {
        // PUBLISH announcing 16384 bytes, none of them sent yet.
        assert_eq!(
            FrameHeader::parse(&[0x30, 0x80, 0x80, 0x01], None, 1000),
            Err(DecodeError::PacketTooLarge {
                size: 16_388,
                max: 1000
            })
        );
        let h = FrameHeader::parse(&[0x30, 0x80, 0x80, 0x01], None, 16_388)
            .unwrap()
            .unwrap();
        assert_eq!((h.header_len, h.remaining_len), (4, 16_384));
    }

    #[test]
    fn announced_size_is_not_reserved_up_front() {
        // A PUBLISH header announcing 200,000,000 bytes, followed by 3 of them.
        let mut buf = BytesMut::from(&[0x30, 0x80, 0x84, 0xAF, 0x5F, 0, 1, b'a'][..]);
        let mut decoder = Decoder::new(Some(Protocol::V311), Decoder::MAX_PACKET_SIZE);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert!(
            buf.capacity() <= 8 + RESERVE_LIMIT,
            "reserved {}",
            buf.capacity()
        );
        assert_eq!(buf.len(), 8, "nothing is consumed while incomplete");
    }

    #[test]
    fn remaining_length_in_overlong_form_is_malformed() {
        assert_eq!(
            FrameHeader::parse(&[0xC0, 0x80, 0x00], None, 100),
            Err(DecodeError::VarIntNotMinimal)
        );
    }

    #[test]
    fn remaining_length_over_four_bytes_is_malformed() {
        assert_eq!(
            FrameHeader::parse(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], None, u32::MAX),
            Err(DecodeError::VarIntTooLong)
        );
    }

    // [MQTT-2.1.3-1]: flags of all but PUBLISH are fixed.
    #[test]
    fn fixed_flags_are_checked() {
        assert_eq!(
            FrameHeader::parse(&[0x60, 0x02], None, 100),
            Err(DecodeError::InvalidFlags {
                packet: PacketType::PubRel,
                flags: 0
            })
        );
        assert_eq!(
            FrameHeader::parse(&[0x83, 0x02], None, 100),
            Err(DecodeError::InvalidFlags {
                packet: PacketType::Subscribe,
                flags: 3
            })
        );
        assert_eq!(
            FrameHeader::parse(&[0xC1, 0x00], None, 100),
            Err(DecodeError::InvalidFlags {
                packet: PacketType::PingReq,
                flags: 1
            })
        );
        assert!(FrameHeader::parse(&[0x62, 0x02], None, 100).is_ok());
    }

    #[test]
    fn reserved_types_are_refused() {
        assert_eq!(
            FrameHeader::parse(&[0x00, 0x00], None, 100),
            Err(DecodeError::ReservedPacketType(0))
        );
        // AUTH (15) is reserved in MQTT 3.1.1 and exists in 5.0.
        assert_eq!(
            FrameHeader::parse(&[0xF0, 0x00], Some(Protocol::V311), 100),
            Err(DecodeError::ReservedPacketType(15))
        );
        assert!(FrameHeader::parse(&[0xF0, 0x00], Some(Protocol::V5), 100).is_ok());
        // Before CONNECT the version is unknown, and AUTH cannot come first [MQTT-3.1.0-1].
        assert_eq!(
            FrameHeader::parse(&[0xF0, 0x00], None, 100),
            Err(DecodeError::ReservedPacketType(15))
        );
    }
}
