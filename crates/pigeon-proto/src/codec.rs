//! Wire primitives: a reader confined to one packet's bytes, and the matching writers.

use bytes::{BufMut, Bytes};

use crate::{DecodeError, EncodeError, MqttString, PacketType, TopicName};

/// The largest value a Variable Byte Integer holds (section 1.5.5).
pub const MAX_VAR_INT: u32 = 268_435_455;

/// Reads fields of one packet body. Every read is bounded by the body's end, so a field that
/// claims more bytes than the packet has is [`DecodeError::Truncated`], never a read into the
/// next packet. Slices share the input buffer.
pub(crate) struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
    packet: PacketType,
}

impl<'a> Reader<'a> {
    #[cfg(test)]
    pub(crate) fn new(buf: &'a Bytes, packet: PacketType) -> Self {
        Reader::starting_at(buf, 0, packet)
    }

    /// A reader over `buf[start..]`: a packet body read in place in its whole frame, which
    /// saves slicing (a reference count up and down) the body off the frame.
    pub(crate) fn starting_at(buf: &'a Bytes, start: usize, packet: PacketType) -> Self {
        Reader {
            buf,
            pos: start.min(buf.len()),
            end: buf.len(),
            packet,
        }
    }

    pub(crate) fn packet(&self) -> PacketType {
        self.packet
    }

    pub(crate) fn remaining(&self) -> usize {
        self.end - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos == self.end
    }

    /// A reader over the next `len` bytes; this reader moves past them.
    pub(crate) fn sub(&mut self, len: usize) -> Result<Reader<'a>, DecodeError> {
        if len > self.remaining() {
            return Err(DecodeError::Truncated(self.packet));
        }
        let sub = Reader {
            buf: self.buf,
            pos: self.pos,
            end: self.pos + len,
            packet: self.packet,
        };
        self.pos += len;
        Ok(sub)
    }

    /// Fails unless every byte was consumed.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(self.packet))
        }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        match self.buf.get(self.pos) {
            Some(&b) if self.pos < self.end => {
                self.pos += 1;
                Ok(b)
            }
            _ => Err(DecodeError::Truncated(self.packet)),
        }
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let [a, b] = self.array::<2>()?;
        Ok(u16::from_be_bytes([a, b]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array::<4>()?))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes = self.slice_ref(N)?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn slice_ref(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if len > self.remaining() {
            return Err(DecodeError::Truncated(self.packet));
        }
        let s = self
            .buf
            .get(self.pos..self.pos + len)
            .ok_or(DecodeError::Truncated(self.packet))?;
        self.pos += len;
        Ok(s)
    }

    /// The next `len` bytes as a shared slice of the input.
    pub(crate) fn bytes(&mut self, len: usize) -> Result<Bytes, DecodeError> {
        if len > self.remaining() {
            return Err(DecodeError::Truncated(self.packet));
        }
        let b = self.buf.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(b)
    }

    /// Everything up to the end of this reader.
    pub(crate) fn rest(&mut self) -> Bytes {
        let b = self.buf.slice(self.pos..self.end);
        self.pos = self.end;
        b
    }

    /// Binary Data: two-byte length, then that many bytes (section 1.5.6).
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u16()?;
        self.bytes(usize::from(len))
    }

    /// UTF-8 Encoded String (section 1.5.4).
    pub(crate) fn string(&mut self) -> Result<MqttString, DecodeError> {
        let len = usize::from(self.u16()?);
        self.slice_ref(len)?;
        let start = self.pos - len;
        Ok(MqttString::from_bytes(self.buf.slice(start..self.pos))?)
    }

    /// A UTF-8 Encoded String that should be a Topic Name (PUBLISH, will topic). The common
    /// case, a non-empty ASCII name without U+0000 or wildcards, is checked in one pass and
    /// comes back as `Ok(Ok(name))`. Anything else gets the string checks of
    /// [`string`](Reader::string) (same errors, at the same point of decoding) and comes back
    /// as `Ok(Err(string))`, for the caller to apply the Topic Name rules in its own order.
    pub(crate) fn topic_name(&mut self) -> Result<Result<TopicName, MqttString>, DecodeError> {
        let len = usize::from(self.u16()?);
        let raw = self.slice_ref(len)?;
        let start = self.pos - len;
        if TopicName::is_plain(raw) {
            let bytes = self.buf.slice(start..self.pos);
            return Ok(Ok(TopicName::from_checked(MqttString::from_checked(bytes))));
        }
        Ok(Err(MqttString::from_bytes(
            self.buf.slice(start..self.pos),
        )?))
    }

    /// Variable Byte Integer (section 1.5.5).
    pub(crate) fn var_int(&mut self) -> Result<u32, DecodeError> {
        let mut value: u32 = 0;
        for i in 0..4 {
            let b = self.u8()?;
            value |= u32::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                // A last byte of 0 after the first means a longer form than needed.
                if i > 0 && b == 0 {
                    return Err(DecodeError::VarIntNotMinimal);
                }
                return Ok(value);
            }
        }
        Err(DecodeError::VarIntTooLong)
    }
}

/// Bytes a Variable Byte Integer of `value` takes.
pub(crate) const fn var_int_len(value: usize) -> usize {
    if value < 128 {
        1
    } else if value < 16_384 {
        2
    } else if value < 2_097_152 {
        3
    } else {
        4
    }
}

/// Writes a Variable Byte Integer. The caller checked `value <= MAX_VAR_INT`.
pub(crate) fn put_var_int(buf: &mut impl BufMut, value: usize) {
    let mut v = value;
    loop {
        // Truncation to the low seven bits is the encoding.
        let mut byte = (v & 0x7F) as u8;
        v >>= 7;
        if v > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if v == 0 {
            break;
        }
    }
}

/// Length prefix for a two-byte-length field.
pub(crate) fn field_len(len: usize) -> Result<u16, EncodeError> {
    u16::try_from(len).map_err(|_| EncodeError::FieldTooLong(len))
}

pub(crate) fn put_binary(buf: &mut impl BufMut, data: &[u8]) -> Result<(), EncodeError> {
    buf.put_u16(field_len(data.len())?);
    buf.put_slice(data);
    Ok(())
}

pub(crate) fn put_string(buf: &mut impl BufMut, s: &MqttString) {
    // MqttString guarantees at most 65,535 bytes, so the cast is exact.
    buf.put_u16(s.as_bytes().len() as u16);
    buf.put_slice(s.as_bytes());
}

/// Bytes a string or binary field takes on the wire.
pub(crate) fn prefixed_len(len: usize) -> usize {
    2 + len
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;

    fn decode_var_int(bytes: &'static [u8]) -> Result<u32, DecodeError> {
        let b = Bytes::from_static(bytes);
        Reader::new(&b, PacketType::Publish).var_int()
    }

    // Table 1-1 of MQTT 5.0 section 1.5.5 (2.2.3 in 3.1.1): the boundaries of each length.
    #[test]
    fn var_int_boundaries() {
        let cases: [(u32, &'static [u8]); 8] = [
            (0, &[0x00]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xFF, 0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
        ];
        for (value, bytes) in cases {
            assert_eq!(decode_var_int(bytes), Ok(value));
            let mut out = BytesMut::new();
            put_var_int(&mut out, value as usize);
            assert_eq!(&out[..], bytes);
            assert_eq!(var_int_len(value as usize), bytes.len());
        }
    }

    // [MQTT-1.5.5-1]: the shortest form only.
    #[test]
    fn var_int_overlong_forms_are_malformed() {
        assert_eq!(
            decode_var_int(&[0x80, 0x00]),
            Err(DecodeError::VarIntNotMinimal)
        );
        assert_eq!(
            decode_var_int(&[0xFF, 0x80, 0x00]),
            Err(DecodeError::VarIntNotMinimal)
        );
        assert_eq!(decode_var_int(&[0x00]), Ok(0));
    }

    #[test]
    fn var_int_over_four_bytes_is_malformed() {
        assert_eq!(
            decode_var_int(&[0xFF, 0xFF, 0xFF, 0xFF, 0x7F]),
            Err(DecodeError::VarIntTooLong)
        );
        assert_eq!(
            decode_var_int(&[0x80, 0x80]),
            Err(DecodeError::Truncated(PacketType::Publish))
        );
    }

    #[test]
    fn reads_stay_inside_sub_reader() {
        let b = Bytes::from_static(&[0, 3, b'a', b'b', b'c', 9]);
        let mut r = Reader::new(&b, PacketType::Publish);
        let mut sub = r.sub(4).unwrap();
        assert_eq!(
            sub.string(),
            Err(DecodeError::Truncated(PacketType::Publish))
        );
        assert_eq!(r.u8(), Ok(b'c'));
        assert_eq!(r.u8(), Ok(9));
        assert!(r.finish().is_ok());
    }

    #[test]
    fn strings_are_slices_of_the_input() {
        let b = Bytes::from_static(&[0, 2, b'h', b'i']);
        let s = Reader::new(&b, PacketType::Publish).string().unwrap();
        assert_eq!(s, "hi");
        assert_eq!(s.as_bytes().as_ptr(), b[2..].as_ptr());
    }
}
