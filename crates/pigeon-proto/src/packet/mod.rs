//! The control packets, one module each, and the [`Packet`] enum over them.

mod ack;
mod auth;
mod connack;
mod connect;
mod disconnect;
mod ping;
mod publish;
mod suback;
mod subscribe;
mod unsuback;
mod unsubscribe;

use bytes::{Bytes, BytesMut};

use crate::codec::{MAX_VAR_INT, Reader, var_int_len};
use crate::frame::put_header;
use crate::{DecodeError, EncodeError, PacketId, PacketType, Protocol};

pub use self::ack::{PubAck, PubComp, PubRec, PubRel};
pub use self::auth::Auth;
pub use self::connack::ConnAck;
pub use self::connect::{Connect, Will};
pub use self::disconnect::Disconnect;
pub use self::ping::{PingReq, PingResp};
pub use self::publish::Publish;
pub use self::suback::SubAck;
pub use self::subscribe::{RetainHandling, Subscribe, SubscriptionOptions};
pub use self::unsuback::UnsubAck;
pub use self::unsubscribe::Unsubscribe;

/// Any MQTT control packet, for every protocol version.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)] // each variant holds the packet of the same name
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(PubAck),
    PubRec(PubRec),
    PubRel(PubRel),
    PubComp(PubComp),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq(PingReq),
    PingResp(PingResp),
    Disconnect(Disconnect),
    Auth(Auth),
}

/// What every packet type provides to the shared encoder.
pub(crate) trait Encode {
    const TYPE: PacketType;

    /// The low nibble of the first byte.
    fn flags(&self) -> u8 {
        0
    }

    /// Checks what the type system cannot, before any byte is written.
    fn validate(&self, _protocol: Protocol) -> Result<(), EncodeError> {
        Ok(())
    }

    fn remaining_len(&self, protocol: Protocol) -> usize;

    fn encode_body(&self, protocol: Protocol, buf: &mut BytesMut) -> Result<(), EncodeError>;
}

/// Encodes a packet into `buf`; on error `buf` is left as it was.
pub(crate) fn encode<P: Encode>(
    p: &P,
    protocol: Protocol,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    p.validate(protocol)?;
    let remaining = p.remaining_len(protocol);
    if remaining > MAX_VAR_INT as usize {
        return Err(EncodeError::PacketTooLarge(remaining));
    }
    let start = buf.len();
    put_header(buf, ((P::TYPE as u8) << 4) | p.flags(), remaining);
    if let Err(e) = p.encode_body(protocol, buf) {
        buf.truncate(start);
        return Err(e);
    }
    debug_assert_eq!(buf.len() - start, 1 + var_int_len(remaining) + remaining);
    Ok(())
}

pub(crate) fn encoded_len<P: Encode>(p: &P, protocol: Protocol) -> usize {
    let remaining = p.remaining_len(protocol);
    1 + var_int_len(remaining) + remaining
}

/// Gives each packet struct `encode` and `encoded_len` methods.
macro_rules! encode_methods {
    ($($ty:ty),*) => {$(
        impl $ty {
            /// Appends the encoded packet to `buf`.
            ///
            /// # Errors
            /// An [`EncodeError`] when the packet cannot be expressed on the wire; `buf` is then
            /// unchanged.
            pub fn encode(&self, protocol: Protocol, buf: &mut BytesMut) -> Result<(), EncodeError> {
                encode(self, protocol, buf)
            }

            /// The number of bytes [`encode`](Self::encode) appends, computed without
            /// allocating.
            pub fn encoded_len(&self, protocol: Protocol) -> usize {
                encoded_len(self, protocol)
            }
        }
    )*};
}

encode_methods!(
    Connect,
    ConnAck,
    Publish,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    PingReq,
    PingResp,
    Disconnect,
    Auth
);

macro_rules! each_packet {
    ($self:ident, $p:ident => $e:expr) => {
        match $self {
            Packet::Connect($p) => $e,
            Packet::ConnAck($p) => $e,
            Packet::Publish($p) => $e,
            Packet::PubAck($p) => $e,
            Packet::PubRec($p) => $e,
            Packet::PubRel($p) => $e,
            Packet::PubComp($p) => $e,
            Packet::Subscribe($p) => $e,
            Packet::SubAck($p) => $e,
            Packet::Unsubscribe($p) => $e,
            Packet::UnsubAck($p) => $e,
            Packet::PingReq($p) => $e,
            Packet::PingResp($p) => $e,
            Packet::Disconnect($p) => $e,
            Packet::Auth($p) => $e,
        }
    };
}

impl Packet {
    /// The control packet type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq(_) => PacketType::PingReq,
            Packet::PingResp(_) => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }

    /// Appends the encoded packet to `buf`. A CONNECT is encoded as its own protocol version,
    /// whatever `protocol` says.
    ///
    /// # Errors
    /// An [`EncodeError`] when the packet cannot be expressed on the wire in `protocol`; `buf`
    /// is then unchanged.
    pub fn encode(&self, protocol: Protocol, buf: &mut BytesMut) -> Result<(), EncodeError> {
        each_packet!(self, p => p.encode(protocol, buf))
    }

    /// The number of bytes [`encode`](Self::encode) appends, computed without allocating.
    pub fn encoded_len(&self, protocol: Protocol) -> usize {
        each_packet!(self, p => p.encoded_len(protocol))
    }

    /// Decodes a packet body whose fixed header was already parsed and checked.
    /// Decodes the body that starts at `start` in `frame` and runs to its end.
    pub(crate) fn decode_body(
        packet_type: PacketType,
        flags: u8,
        frame: &Bytes,
        start: usize,
        protocol: Option<Protocol>,
    ) -> Result<Packet, DecodeError> {
        let mut r = Reader::starting_at(frame, start, packet_type);
        // Before CONNECT has told us the version, read as 3.1.1: only a client that sends
        // something else first gets here, and it is closed anyway [MQTT-3.1.0-1]. CONNECT
        // states its own version.
        let protocol = protocol.unwrap_or(Protocol::V311);
        let packet = match packet_type {
            PacketType::Connect => Packet::Connect(Box::new(Connect::decode(&mut r)?)),
            PacketType::ConnAck => Packet::ConnAck(ConnAck::decode(&mut r, protocol)?),
            PacketType::Publish => Packet::Publish(Publish::decode(&mut r, flags, protocol)?),
            PacketType::PubAck => Packet::PubAck(PubAck::decode(&mut r, protocol)?),
            PacketType::PubRec => Packet::PubRec(PubRec::decode(&mut r, protocol)?),
            PacketType::PubRel => Packet::PubRel(PubRel::decode(&mut r, protocol)?),
            PacketType::PubComp => Packet::PubComp(PubComp::decode(&mut r, protocol)?),
            PacketType::Subscribe => Packet::Subscribe(Subscribe::decode(&mut r, protocol)?),
            PacketType::SubAck => Packet::SubAck(SubAck::decode(&mut r, protocol)?),
            PacketType::Unsubscribe => Packet::Unsubscribe(Unsubscribe::decode(&mut r, protocol)?),
            PacketType::UnsubAck => Packet::UnsubAck(UnsubAck::decode(&mut r, protocol)?),
            PacketType::PingReq => Packet::PingReq(PingReq::decode(&mut r)?),
            PacketType::PingResp => Packet::PingResp(PingResp::decode(&mut r)?),
            PacketType::Disconnect => Packet::Disconnect(Disconnect::decode(&mut r, protocol)?),
            PacketType::Auth => Packet::Auth(Auth::decode(&mut r)?),
        };
        r.finish()?;
        Ok(packet)
    }
}

/// Reads a Packet Identifier, which is never zero [MQTT-2.2.1-3] (3.1.1: [MQTT-2.3.1-1]).
pub(crate) fn read_packet_id(r: &mut Reader<'_>) -> Result<PacketId, DecodeError> {
    PacketId::new(r.u16()?).ok_or(DecodeError::ZeroPacketId(r.packet()))
}

macro_rules! from_packets {
    ($($name:ident),*) => {$(
        impl From<$name> for Packet {
            fn from(p: $name) -> Packet {
                Packet::$name(p)
            }
        }
    )*};
}

from_packets!(
    ConnAck,
    Publish,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    PingReq,
    PingResp,
    Disconnect,
    Auth
);

impl From<Connect> for Packet {
    fn from(p: Connect) -> Packet {
        Packet::Connect(Box::new(p))
    }
}

/// Helpers for the hand-written test vectors of the packet modules.
#[cfg(test)]
pub(crate) mod test_vectors {
    use bytes::{Bytes, BytesMut};

    use crate::{DecodeError, Decoder, Packet, Protocol};

    /// Decodes `bytes` both as one whole frame and byte by byte through a stream [`Decoder`],
    /// and checks that each gives `expected` and consumes every byte. A CONNECT is decoded the
    /// way a server sees it, before the protocol version is known.
    #[track_caller]
    pub(crate) fn assert_decodes(protocol: Protocol, bytes: &[u8], expected: &Packet) {
        let known = match expected {
            Packet::Connect(_) => None,
            _ => Some(protocol),
        };
        let frame = Bytes::copy_from_slice(bytes);
        assert_eq!(
            Packet::decode(frame, known).as_ref(),
            Ok(expected),
            "whole-frame decode of {bytes:02X?}"
        );

        let mut decoder = Decoder::new(known, Decoder::MAX_PACKET_SIZE);
        let mut buf = BytesMut::new();
        for (i, &b) in bytes.iter().enumerate() {
            buf.extend_from_slice(&[b]);
            let got = decoder.decode(&mut buf).expect("stream decode");
            if i + 1 < bytes.len() {
                assert_eq!(got, None, "decoded a packet after only {} bytes", i + 1);
            } else {
                assert_eq!(
                    got.as_ref(),
                    Some(expected),
                    "stream decode of {bytes:02X?}"
                );
            }
        }
        assert!(buf.is_empty(), "stream decode left {buf:02X?}");
        assert_eq!(decoder.protocol(), Some(protocol));
    }

    /// Checks that `packet` encodes to exactly `bytes` and that `encoded_len` agrees.
    #[track_caller]
    pub(crate) fn assert_encodes(protocol: Protocol, packet: &Packet, bytes: &[u8]) {
        let mut out = BytesMut::new();
        packet.encode(protocol, &mut out).expect("encode");
        assert_eq!(&out[..], bytes, "encoding of {packet:?}");
        assert_eq!(
            packet.encoded_len(protocol),
            bytes.len(),
            "encoded_len of {packet:?}"
        );
    }

    /// A vector that holds both ways: `bytes` decode to `expected`, which encodes to `bytes`.
    #[track_caller]
    pub(crate) fn assert_vector(protocol: Protocol, bytes: &[u8], expected: impl Into<Packet>) {
        let expected = expected.into();
        assert_decodes(protocol, bytes, &expected);
        assert_encodes(protocol, &expected, bytes);
    }

    /// `len` as the one byte a Variable Byte Integer below 128 takes, for vectors whose lengths
    /// depend on a parameter.
    pub(crate) fn short_len(len: usize) -> u8 {
        match u8::try_from(len) {
            Ok(byte) if byte < 0x80 => byte,
            _ => panic!("{len} does not fit a one-byte length"),
        }
    }

    /// The error decoding the whole packet `bytes` gives, checked to be the same whether the
    /// packet arrives as one frame or through a stream [`Decoder`].
    #[track_caller]
    pub(crate) fn decode_err(protocol: Option<Protocol>, bytes: &[u8]) -> DecodeError {
        let whole = Packet::decode(Bytes::copy_from_slice(bytes), protocol)
            .expect_err("decoding should fail");
        let mut buf = BytesMut::from(bytes);
        let streamed = Decoder::new(protocol, Decoder::MAX_PACKET_SIZE)
            .decode(&mut buf)
            .expect_err("stream decoding should fail");
        assert_eq!(whole, streamed, "frame and stream decoders disagree");
        whole
    }
}
