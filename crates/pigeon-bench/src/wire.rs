//! The client side of the wire, kept as thin as possible so that the load generator costs far
//! less per message than the broker it measures.
//!
//! Control packets (CONNECT, SUBSCRIBE, CONNACK, SUBACK) go through `pigeon-proto`'s encoder
//! and decoder. The hot path does not build a `Packet` per message: PUBLISH is written straight
//! into a batch buffer ([`put_publish`], checked against the codec in the tests below), and
//! incoming bytes are framed with [`FrameHeader::parse`] and read in place ([`Frames`]), so a
//! received message costs a header parse and a few loads, with no allocation.
//!
//! Every bench connection speaks MQTT 3.1.1 with keep-alive 0 (no PINGREQ traffic while idle),
//! which Mosquitto and Pigeon both handle the same way; `conns --keep-alive` asks for one.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use pigeon_proto::{
    Connect, Decoder, Disconnect, FrameHeader, MqttString, Packet, PacketId, PacketType, Protocol,
    QoS, ReasonCode, Subscribe, SubscriptionOptions, TopicFilter,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};

/// Bytes at the start of every payload the bench sends: publisher id (u32), sequence number
/// (u32) and send time in nanoseconds since the run started (u64), all big-endian.
pub(crate) const STAMP_LEN: usize = 16;

/// The largest packet a bench client accepts.
const MAX_PACKET: u32 = Decoder::MAX_PACKET_SIZE;

/// How long a handshake (CONNACK, SUBACK) may take before the connection counts as failed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a bench payload carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// Which publisher sent it (dense, from 0).
    pub(crate) publisher: u32,
    /// The publisher's sequence number, from 0.
    pub(crate) seq: u32,
    /// Send time, nanoseconds since the run's start.
    pub(crate) sent_ns: u64,
}

impl Stamp {
    /// Reads the stamp at the start of `payload`, if it is long enough.
    pub(crate) fn read(payload: &[u8]) -> Option<Stamp> {
        let b: &[u8; STAMP_LEN] = payload.get(..STAMP_LEN)?.try_into().ok()?;
        let [p0, p1, p2, p3, s0, s1, s2, s3, t @ ..] = *b;
        Some(Stamp {
            publisher: u32::from_be_bytes([p0, p1, p2, p3]),
            seq: u32::from_be_bytes([s0, s1, s2, s3]),
            sent_ns: u64::from_be_bytes(t),
        })
    }
}

/// Appends one MQTT 3.1.1 PUBLISH to `buf`: `topic`, `qos`, packet id `pid` (ignored at QoS 0),
/// the retain flag, and a payload of `payload_len` bytes that starts with `stamp` (when the
/// payload has room for it) and is zero-filled after.
pub(crate) fn put_publish(
    buf: &mut BytesMut,
    topic: &[u8],
    qos: QoS,
    retain: bool,
    pid: u16,
    stamp: Stamp,
    payload_len: usize,
) {
    let id_len = if qos == QoS::AtMostOnce { 0 } else { 2 };
    let remaining = 2 + topic.len() + id_len + payload_len;
    buf.reserve(5 + remaining);
    buf.put_u8(0x30 | ((qos as u8) << 1) | u8::from(retain));
    put_var_int(buf, remaining);
    // Topics are built by the bench from templates and are far below 64 KiB (checked when the
    // template is expanded), so the cast cannot truncate.
    buf.put_u16(topic.len() as u16);
    buf.put_slice(topic);
    if id_len != 0 {
        buf.put_u16(pid);
    }
    if payload_len >= STAMP_LEN {
        buf.put_u32(stamp.publisher);
        buf.put_u32(stamp.seq);
        buf.put_u64(stamp.sent_ns);
        buf.put_bytes(0, payload_len - STAMP_LEN);
    } else {
        buf.put_bytes(0, payload_len);
    }
}

/// Appends a PUBACK for `pid`.
pub(crate) fn put_puback(buf: &mut BytesMut, pid: u16) {
    buf.put_slice(&[0x40, 0x02]);
    buf.put_u16(pid);
}

fn put_var_int(buf: &mut BytesMut, mut n: usize) {
    loop {
        // The low seven bits of `n`, so the cast keeps every bit that matters.
        let mut b = (n & 0x7F) as u8;
        n >>= 7;
        if n > 0 {
            b |= 0x80;
        }
        buf.put_u8(b);
        if n == 0 {
            break;
        }
    }
}

/// One packet received, borrowed from the read buffer.
#[derive(Debug)]
pub(crate) enum Frame<'a> {
    /// A PUBLISH: QoS, retain flag, packet id (0 at QoS 0), topic and payload.
    Publish {
        qos: u8,
        retain: bool,
        pid: u16,
        topic: &'a [u8],
        payload: &'a [u8],
    },
    /// A PUBACK (publishers only count them: the broker acknowledges in order).
    PubAck,
    /// Anything else, whole (fixed header included): decoded by the codec when needed.
    Other(PacketType, &'a [u8]),
}

/// Incoming bytes of one connection, parsed in place.
#[derive(Debug)]
pub(crate) struct Frames {
    buf: BytesMut,
}

impl Frames {
    pub(crate) fn new() -> Frames {
        Frames {
            buf: BytesMut::new(),
        }
    }

    /// Reads what the socket has; `Ok(false)` at end of stream.
    pub(crate) async fn fill(&mut self, rd: &mut OwnedReadHalf) -> Result<bool> {
        if self.buf.capacity() - self.buf.len() < 16 * 1024 {
            self.buf.reserve(64 * 1024);
        }
        let n = rd.read_buf(&mut self.buf).await?;
        Ok(n > 0)
    }

    /// Calls `f` on every complete packet in the buffer, then drops their bytes.
    ///
    /// # Errors
    /// When the broker sent something that is not MQTT 3.1.1, or `f` fails.
    pub(crate) fn drain(&mut self, mut f: impl FnMut(Frame<'_>) -> Result<()>) -> Result<()> {
        let mut pos = 0;
        let data = &self.buf[..];
        while let Some(h) = FrameHeader::parse(&data[pos..], Some(Protocol::V311), MAX_PACKET)
            .context("the broker sent a malformed packet")?
        {
            let end = pos + h.total_len();
            let Some(whole) = data.get(pos..end) else {
                break;
            };
            let body = &whole[h.header_len..];
            pos = end;
            match h.packet_type {
                PacketType::Publish => f(parse_publish(h.flags, body)?)?,
                PacketType::PubAck if body.len() >= 2 => f(Frame::PubAck)?,
                t => f(Frame::Other(t, whole))?,
            }
        }
        self.buf.advance(pos);
        Ok(())
    }
}

fn parse_publish(flags: u8, body: &[u8]) -> Result<Frame<'_>> {
    let qos = (flags >> 1) & 0x03;
    let retain = flags & 1 == 1;
    let Some((len, rest)) = body.split_first_chunk::<2>() else {
        bail!("PUBLISH without a topic");
    };
    let len = usize::from(u16::from_be_bytes(*len));
    let (topic, rest) = rest
        .split_at_checked(len)
        .context("PUBLISH topic longer than the packet")?;
    let (pid, payload) = if qos == 0 {
        (0, rest)
    } else {
        let (id, payload) = rest
            .split_first_chunk::<2>()
            .context("PUBLISH without a packet id")?;
        (u16::from_be_bytes(*id), payload)
    };
    Ok(Frame::Publish {
        qos,
        retain,
        pid,
        topic,
        payload,
    })
}

/// An open MQTT connection whose CONNACK has been received.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) rd: OwnedReadHalf,
    pub(crate) wr: OwnedWriteHalf,
    pub(crate) frames: Frames,
}

/// The source address for connection number `n` when connections are spread over
/// 127.0.0.1 to 127.0.0.`sources` (each source address has its own ephemeral port range, so
/// tens of thousands of connections do not make the kernel's port search the bottleneck).
pub(crate) fn source_addr(target: SocketAddr, n: usize, sources: u8) -> Option<IpAddr> {
    if !target.ip().is_ipv4() || sources <= 1 {
        return None;
    }
    // `n % sources` is below 255, so the cast is exact.
    let last = 1 + (n % usize::from(sources)) as u8;
    Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
}

/// Opens a TCP connection to `target` (from `source` when given) and performs the MQTT
/// handshake as `client_id` with a clean session and `keep_alive` (seconds; 0 for none).
///
/// # Errors
/// When the connection fails, the broker refuses it or does not answer in time.
pub(crate) async fn connect(
    target: SocketAddr,
    source: Option<IpAddr>,
    client_id: &str,
    keep_alive: u16,
) -> Result<Conn> {
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .with_context(|| format!("bind {ip}"))?;
    }
    let stream: TcpStream = socket
        .connect(target)
        .await
        .with_context(|| format!("connect to {target}"))?;
    stream.set_nodelay(true)?;
    let (rd, mut wr) = stream.into_split();
    let mut connect = Connect::new(
        Protocol::V311,
        MqttString::from_bytes(Bytes::copy_from_slice(client_id.as_bytes()))
            .context("client id")?,
    );
    connect.clean_start = true;
    connect.keep_alive = keep_alive;
    let mut out = BytesMut::with_capacity(64);
    Packet::from(connect).encode(Protocol::V311, &mut out)?;
    wr.write_all(&out).await?;
    let mut conn = Conn {
        rd,
        wr,
        frames: Frames::new(),
    };
    let ack = conn.expect(PacketType::ConnAck).await?;
    if let Packet::ConnAck(ack) = ack
        && ack.reason.is_error()
    {
        bail!("connection refused: {:?}", ack.reason);
    }
    Ok(conn)
}

impl Conn {
    /// Subscribes to `filters` at `qos` and waits for the SUBACK. Messages that arrive first
    /// (retained ones) stay in the read buffer for the caller.
    ///
    /// # Errors
    /// When a filter is invalid or refused, or the connection fails.
    pub(crate) async fn subscribe(&mut self, filters: &[String], qos: QoS) -> Result<()> {
        let mut list = Vec::with_capacity(filters.len());
        for f in filters {
            let filter = MqttString::from_bytes(Bytes::copy_from_slice(f.as_bytes()))
                .ok()
                .and_then(|s| TopicFilter::from_string(s).ok())
                .with_context(|| format!("invalid topic filter {f:?}"))?;
            list.push((filter, SubscriptionOptions::new(qos)));
        }
        let Some(((first, options), rest)) = list.split_first() else {
            bail!("no topic filter to subscribe to");
        };
        let mut sub = Subscribe::new(PacketId::FIRST, first.clone(), *options);
        sub.filters.extend(rest.iter().cloned());
        let mut out = BytesMut::new();
        Packet::from(sub).encode(Protocol::V311, &mut out)?;
        self.wr.write_all(&out).await?;
        // Retained messages may come before the SUBACK is read: leave them in the buffer by
        // looking for the SUBACK without consuming anything else.
        loop {
            if let Some(reasons) = self.take_suback()? {
                if let Some(bad) = reasons.iter().find(|r| r.is_error()) {
                    bail!("subscription refused: {bad:?}");
                }
                return Ok(());
            }
            let filled = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.frames.fill(&mut self.rd))
                .await
                .context("no SUBACK in time")??;
            if !filled {
                bail!("the broker closed the connection before SUBACK");
            }
        }
    }

    /// Removes the first SUBACK from the buffer, if one has fully arrived, keeping the
    /// packets around it in order.
    fn take_suback(&mut self) -> Result<Option<Vec<ReasonCode>>> {
        let buf = &self.frames.buf;
        let mut pos = 0;
        while let Some(h) = FrameHeader::parse(&buf[pos..], Some(Protocol::V311), MAX_PACKET)? {
            let end = pos + h.total_len();
            if buf.len() < end {
                return Ok(None);
            }
            if h.packet_type == PacketType::SubAck {
                let whole = Bytes::copy_from_slice(&buf[pos..end]);
                let Packet::SubAck(ack) = Packet::decode(whole, Some(Protocol::V311))? else {
                    bail!("SUBACK did not decode as one");
                };
                let mut rest = self.frames.buf.split_off(pos);
                rest.advance(end - pos);
                self.frames.buf.unsplit(rest);
                return Ok(Some(ack.reasons));
            }
            pos = end;
        }
        Ok(None)
    }

    /// Reads until a packet of type `want` arrives (nothing else is expected first).
    pub(crate) async fn expect(&mut self, want: PacketType) -> Result<Packet> {
        loop {
            let mut found = None;
            self.frames.drain(|f| {
                if found.is_some() {
                    bail!("unexpected packet after {want:?}");
                }
                match f {
                    Frame::Other(t, whole) if t == want => {
                        found = Some(Packet::decode(
                            Bytes::copy_from_slice(whole),
                            Some(Protocol::V311),
                        )?);
                        Ok(())
                    }
                    other => bail!("expected {want:?}, got {other:?}"),
                }
            })?;
            if let Some(p) = found {
                return Ok(p);
            }
            let filled = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.frames.fill(&mut self.rd))
                .await
                .with_context(|| format!("no {want:?} in time"))??;
            if !filled {
                bail!("the broker closed the connection before {want:?}");
            }
        }
    }

    /// Sends DISCONNECT and closes the connection.
    pub(crate) async fn disconnect(mut self) {
        let mut out = BytesMut::new();
        if Packet::from(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION))
            .encode(Protocol::V311, &mut out)
            .is_ok()
        {
            let _ = self.wr.write_all(&out).await;
        }
        let _ = self.wr.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use pigeon_proto::{Publish, TopicName};

    use super::*;

    fn encode_with_codec(qos: QoS, retain: bool, pid: u16, payload: Vec<u8>) -> BytesMut {
        let mut p = Publish::new(TopicName::from_static("bench/7"), payload);
        p.qos = qos;
        p.retain = retain;
        p.packet_id = PacketId::new(pid);
        let mut buf = BytesMut::new();
        Packet::from(p).encode(Protocol::V311, &mut buf).unwrap();
        buf
    }

    #[test]
    fn hand_encoded_publish_equals_the_codec_output() {
        let stamp = Stamp {
            publisher: 3,
            seq: 0x0102_0304,
            sent_ns: 0x1122_3344_5566_7788,
        };
        for (qos, pid, len) in [
            (QoS::AtMostOnce, 0, 16),
            (QoS::AtLeastOnce, 513, 16),
            (QoS::AtLeastOnce, 1, 1024),
            (QoS::AtMostOnce, 0, 200_000),
            (QoS::AtMostOnce, 0, 4),
        ] {
            let mut ours = BytesMut::new();
            put_publish(&mut ours, b"bench/7", qos, true, pid, stamp, len);
            let mut payload = vec![0; len];
            if len >= STAMP_LEN {
                payload[..4].copy_from_slice(&3u32.to_be_bytes());
                payload[4..8].copy_from_slice(&0x0102_0304u32.to_be_bytes());
                payload[8..16].copy_from_slice(&0x1122_3344_5566_7788u64.to_be_bytes());
            }
            assert_eq!(
                ours,
                encode_with_codec(qos, true, pid, payload),
                "{qos:?} {len}"
            );
        }
    }

    #[test]
    fn frames_parse_publishes_and_acks_in_place() {
        let stamp = Stamp {
            publisher: 9,
            seq: 42,
            sent_ns: 7,
        };
        let mut frames = Frames::new();
        put_publish(
            &mut frames.buf,
            b"a/b",
            QoS::AtLeastOnce,
            false,
            5,
            stamp,
            20,
        );
        put_puback(&mut frames.buf, 77);
        // Half of a second PUBLISH stays for later.
        let mut next = BytesMut::new();
        put_publish(&mut next, b"a/b", QoS::AtMostOnce, false, 0, stamp, 20);
        frames.buf.extend_from_slice(&next[..10]);
        let mut seen = Vec::new();
        frames
            .drain(|f| {
                match f {
                    Frame::Publish {
                        qos,
                        pid,
                        topic,
                        payload,
                        ..
                    } => {
                        assert_eq!(topic, b"a/b");
                        seen.push((qos, pid, Stamp::read(payload)));
                    }
                    Frame::PubAck => seen.push((9, 77, None)),
                    Frame::Other(..) => panic!("unexpected"),
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, vec![(1, 5, Some(stamp)), (9, 77, None)]);
        assert_eq!(frames.buf.len(), 10);
    }
}
