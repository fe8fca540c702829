//! MQTT over WebSockets (`protocol websockets`): the server side of RFC 6455, as MQTT needs
//! it (MQTT 3.1.1 and 5.0, section 6), turned back into a byte stream for the connection
//! driver.
//!
//! A connection starts with an HTTP request. A WebSocket upgrade asking for the `mqtt` or
//! `mqttv3.1` subprotocol (or none) is accepted; any other request is answered from
//! `http_dir` when the listener has one, 404 otherwise, and the connection is closed. After
//! the upgrade:
//!
//! - [`WsReader`] parses the client's frames (which must be masked), unmasks the payloads of
//!   binary frames, fragmented or not, and hands them to the driver as one stream: an MQTT
//!   packet may span frames and a frame may hold several packets. Pings are answered with
//!   pongs, a close frame is answered and read as the end of the stream. Text frames,
//!   unmasked frames, reserved bits or opcodes, oversized or fragmented control frames and
//!   frames longer than the largest MQTT packet end the connection with the close code RFC
//!   6455 gives for them; nothing a client sends can make it panic.
//! - [`WsWriter`] makes each write of the driver one binary frame (at most [`MAX_OUT_FRAME`]
//!   bytes of payload), copied with its header into a buffer that is written whole; pongs and
//!   close frames go through the same buffer, so frames never interleave.
//!
//! Written here rather than taken from tokio-tungstenite: the driver batches its output and
//! reads whatever bytes are ready, so a message-oriented WebSocket API would cost an
//! allocation per message and a flush per packet; at this level a frame is a header in front
//! of the driver's own batch, and the read side is a loop over a buffer.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{Buf, BufMut, BytesMut};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::conn::{ReadSide, WriteSide};
use super::http::{HeadError, Request, Response, read_head, serve_static};
use crate::config::LogTypes;
use crate::log::Log;

/// The request head size used when `websockets_headers_size` is not set.
pub const DEFAULT_HEADERS_SIZE: usize = 4096;
/// The most payload one frame written carries; a longer write takes several frames.
const MAX_OUT_FRAME: usize = 64 * 1024;
/// The longest data frame accepted: the largest MQTT packet (a type byte, four length bytes,
/// 268,435,455 bytes). Longer frames are refused with close code 1009. The payload streams
/// through to the MQTT decoder, which applies `max_packet_size`, so memory stays bounded.
const MAX_IN_FRAME: u64 = 268_435_460;
/// RFC 6455's GUID for Sec-WebSocket-Accept.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The subprotocols MQTT clients ask for (MQTT 3.1.1 and 5.0 say `mqtt`; 3.1 clients say
/// `mqttv3.1`).
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Close codes (RFC 6455 section 7.4.1).
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_PROTOCOL_ERROR: u16 = 1002;
const CLOSE_UNSUPPORTED_DATA: u16 = 1003;
const CLOSE_TOO_BIG: u16 = 1009;

/// The WebSocket settings of a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocketSettings {
    /// `http_dir`: where plain HTTP requests are served from; `None` answers them 404.
    pub http_dir: Option<PathBuf>,
    /// `websockets_headers_size`: the longest request head read, in bytes.
    pub headers_size: usize,
}

impl Default for WebSocketSettings {
    fn default() -> Self {
        WebSocketSettings {
            http_dir: None,
            headers_size: DEFAULT_HEADERS_SIZE,
        }
    }
}

/// Reads the opening HTTP request within `patience` and either upgrades the connection to a
/// WebSocket, returning its two halves, or answers the request (a file of `http_dir`, an
/// error) and returns `None`.
pub(super) async fn accept<R: ReadSide, W: WriteSide>(
    log: &Arc<Log>,
    settings: &WebSocketSettings,
    mut reader: R,
    mut writer: W,
    peer: SocketAddr,
    patience: Duration,
) -> Option<(WsReader<R, W>, WsWriter<W>)> {
    let mut buf = BytesMut::new();
    let head = tokio::time::timeout(
        patience,
        read_head(&mut reader, &mut buf, settings.headers_size),
    )
    .await;
    let request = match head {
        Ok(Ok(request)) => request,
        Ok(Err(HeadError::TooLarge)) => {
            log.log(
                LogTypes::WEBSOCKETS,
                format!(
                    "WebSocket request from {} longer than websockets_headers_size ({} bytes).",
                    peer.ip(),
                    settings.headers_size
                ),
            );
            Response::text(431, "Request Header Fields Too Large")
                .send_and_linger(&mut reader, &mut writer)
                .await;
            return None;
        }
        Ok(Err(HeadError::Malformed(why))) => {
            log.log(
                LogTypes::WEBSOCKETS,
                format!("Bad HTTP request from {}: {why}.", peer.ip()),
            );
            Response::text(400, "Bad Request")
                .send_and_linger(&mut reader, &mut writer)
                .await;
            return None;
        }
        Ok(Err(HeadError::Closed)) => return None,
        Err(_) => {
            log.connection(
                LogTypes::NOTICE,
                "Client <unknown> has exceeded timeout, disconnecting.",
            );
            return None;
        }
    };
    let head_only = request.method == "HEAD";
    if !request.has_token("upgrade", "websocket") {
        let response = if request.method != "GET" && !head_only {
            Response::text(405, "Method Not Allowed").with("Allow", "GET, HEAD")
        } else if let Some(dir) = &settings.http_dir {
            serve_static(dir, &request.path).await
        } else {
            Response::text(404, "Not Found")
        };
        log.log(
            LogTypes::WEBSOCKETS,
            format!(
                "HTTP {} {} from {}: {}.",
                request.method,
                request.path,
                peer.ip(),
                response.status
            ),
        );
        let _ = response.send(&mut writer, head_only).await;
        return None;
    }
    match upgrade(&request) {
        Ok(response) => {
            if writer.write_all(response.as_bytes()).await.is_err() || writer.flush().await.is_err()
            {
                return None;
            }
        }
        Err(refusal) => {
            log.log(
                LogTypes::WEBSOCKETS,
                format!(
                    "WebSocket upgrade from {} refused: {}.",
                    peer.ip(),
                    String::from_utf8_lossy(&refusal.body).trim_end()
                ),
            );
            let _ = refusal.send(&mut writer, false).await;
            return None;
        }
    }
    let out = Arc::new(Mutex::new(Outgoing {
        inner: writer,
        pending: BytesMut::new(),
        close_sent: false,
    }));
    let reader = WsReader {
        inner: reader,
        raw: buf,
        frame: FrameState::Header,
        in_message: false,
        closed: false,
        out: Arc::clone(&out),
        log: Arc::clone(log),
        peer,
    };
    Some((reader, WsWriter { out }))
}

/// The 101 response to a valid upgrade request, or the error response to an invalid one.
fn upgrade(request: &Request) -> Result<String, Response> {
    if request.method != "GET" {
        return Err(Response::text(400, "WebSocket upgrades use GET"));
    }
    if !request.has_token("connection", "upgrade") {
        return Err(Response::text(400, "Connection: Upgrade missing"));
    }
    if request.header("sec-websocket-version") != Some("13") {
        return Err(
            Response::text(426, "WebSocket version 13 only").with("Sec-WebSocket-Version", "13")
        );
    }
    let key = request
        .header("sec-websocket-key")
        .filter(|key| BASE64.decode(key).is_ok_and(|k| k.len() == 16))
        .ok_or_else(|| Response::text(400, "bad or missing Sec-WebSocket-Key"))?;
    let offered: Vec<&str> = request
        .headers
        .iter()
        .filter(|(n, _)| n == "sec-websocket-protocol")
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let protocol = offered.iter().find(|p| SUBPROTOCOLS.contains(p));
    if protocol.is_none() && !offered.is_empty() {
        return Err(Response::text(
            400,
            "unsupported WebSocket subprotocol (expected mqtt or mqttv3.1)",
        ));
    }
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        accept_key(key)
    );
    if let Some(protocol) = protocol {
        response.push_str(&format!("Sec-WebSocket-Protocol: {protocol}\r\n"));
    }
    response.push_str("\r\n");
    Ok(response)
}

/// Sec-WebSocket-Accept for a client's Sec-WebSocket-Key.
fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    BASE64.encode(sha.finalize())
}

/// A frame the client broke the protocol with: the close code and what was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fault {
    code: u16,
    reason: &'static str,
}

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    len: u64,
    /// The header's own length in bytes.
    size: usize,
}

/// Parses the frame header at the start of `raw`: `Ok(None)` when more bytes are needed.
fn parse_header(raw: &[u8]) -> Result<Option<Header>, Fault> {
    let (Some(&b0), Some(&b1)) = (raw.first(), raw.get(1)) else {
        return Ok(None);
    };
    let fault = |code, reason| Err(Fault { code, reason });
    if b0 & 0x70 != 0 {
        return fault(CLOSE_PROTOCOL_ERROR, "reserved bits set");
    }
    if b1 & 0x80 == 0 {
        return fault(CLOSE_PROTOCOL_ERROR, "unmasked client frame");
    }
    let (len, at) = match b1 & 0x7f {
        126 => {
            let Some(b) = raw.get(2..4) else {
                return Ok(None);
            };
            (u64::from(u16::from_be_bytes([b[0], b[1]])), 4)
        }
        127 => {
            let Some(b) = raw.get(2..10) else {
                return Ok(None);
            };
            let mut bytes = [0; 8];
            bytes.copy_from_slice(b);
            (u64::from_be_bytes(bytes), 10)
        }
        n => (u64::from(n), 2),
    };
    let Some(m) = raw.get(at..at + 4) else {
        return Ok(None);
    };
    let header = Header {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0f,
        mask: [m[0], m[1], m[2], m[3]],
        len,
        size: at + 4,
    };
    match header.opcode {
        OP_CONTINUATION | OP_BINARY => {
            if len > MAX_IN_FRAME {
                return fault(CLOSE_TOO_BIG, "frame longer than the largest MQTT packet");
            }
        }
        OP_TEXT => return fault(CLOSE_UNSUPPORTED_DATA, "text frame (MQTT data is binary)"),
        OP_CLOSE | OP_PING | OP_PONG => {
            if !header.fin {
                return fault(CLOSE_PROTOCOL_ERROR, "fragmented control frame");
            }
            if len > 125 {
                return fault(CLOSE_PROTOCOL_ERROR, "control frame longer than 125 bytes");
            }
        }
        _ => return fault(CLOSE_PROTOCOL_ERROR, "reserved opcode"),
    }
    Ok(Some(header))
}

/// XORs `data` with `mask`, starting at byte `offset` of the masked payload.
fn unmask(data: &mut [u8], mask: [u8; 4], offset: u64) {
    let mut m = mask;
    // The offset only matters modulo 4.
    m.rotate_left((offset % 4) as usize);
    let wide = u64::from_ne_bytes([m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (byte, m) in chunks.into_remainder().iter_mut().zip(m.iter().cycle()) {
        *byte ^= m;
    }
}

/// Appends a server frame (unmasked) to `out`.
fn put_frame(out: &mut BytesMut, opcode: u8, payload: &[u8]) {
    out.reserve(payload.len() + 10);
    out.put_u8(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.put_u8(n as u8),
        n @ 126..=0xffff => {
            out.put_u8(126);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(127);
            out.put_u64(n as u64);
        }
    }
    out.put_slice(payload);
}

/// Where the reader is in the frame stream.
#[derive(Debug, Clone, Copy)]
enum FrameState {
    /// At a frame header.
    Header,
    /// In the payload of a data frame: `remaining` bytes to go, `offset` bytes done.
    Data {
        mask: [u8; 4],
        remaining: u64,
        offset: u64,
    },
}

/// The writing side, shared by [`WsWriter`] and [`WsReader`] (which answers pings and
/// closes). Both are driven by the connection's one task, so the lock is never contended;
/// it is never held across an `.await`.
struct Outgoing<W> {
    inner: W,
    /// Whole frames not written yet.
    pending: BytesMut,
    close_sent: bool,
}

impl<W: WriteSide> Outgoing<W> {
    /// Writes the pending frames.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.advance(n);
        }
        Poll::Ready(Ok(()))
    }

    /// Writes the pending frames and flushes what is below.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        // Drained: an idle connection keeps no buffer.
        self.pending = BytesMut::new();
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    /// Queues a close frame with `code`, unless one was sent.
    fn close(&mut self, code: u16) {
        if !self.close_sent {
            self.close_sent = true;
            put_frame(&mut self.pending, OP_CLOSE, &code.to_be_bytes());
        }
    }
}

/// Writes the frames the reader queued (pongs, close).
async fn drain<W: WriteSide>(out: &Mutex<Outgoing<W>>) -> io::Result<()> {
    poll_fn(|cx| {
        let mut out = lock(out);
        if out.pending.is_empty() {
            return Poll::Ready(Ok(()));
        }
        out.poll_flush(cx)
    })
    .await
}

fn lock<W>(out: &Mutex<Outgoing<W>>) -> MutexGuard<'_, Outgoing<W>> {
    // A panic elsewhere while holding it leaves whole frames: carry on.
    out.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The reading half of a WebSocket connection: the payload of the client's binary frames.
pub(super) struct WsReader<R, W> {
    inner: R,
    /// Bytes read from below and not parsed yet.
    raw: BytesMut,
    frame: FrameState,
    /// Inside a fragmented message (a continuation frame is expected).
    in_message: bool,
    /// The stream has ended: a close frame came, or a fault.
    closed: bool,
    out: Arc<Mutex<Outgoing<W>>>,
    log: Arc<Log>,
    peer: SocketAddr,
}

/// The writing half of a WebSocket connection.
pub(super) struct WsWriter<W> {
    out: Arc<Mutex<Outgoing<W>>>,
}

impl<R: ReadSide, W: WriteSide> WsReader<R, W> {
    /// Parses what `raw` holds: data payloads go to `buf`, control frames are handled. The
    /// number of bytes added to `buf`.
    fn process(&mut self, buf: &mut BytesMut) -> Result<usize, Fault> {
        let mut produced = 0;
        while !self.closed && !self.raw.is_empty() {
            match self.frame {
                FrameState::Data {
                    mask,
                    remaining,
                    offset,
                } => {
                    let n = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(self.raw.len());
                    let start = buf.len();
                    buf.extend_from_slice(&self.raw[..n]);
                    self.raw.advance(n);
                    if let Some(payload) = buf.get_mut(start..) {
                        unmask(payload, mask, offset);
                    }
                    produced += n;
                    let remaining = remaining - n as u64;
                    self.frame = if remaining == 0 {
                        FrameState::Header
                    } else {
                        FrameState::Data {
                            mask,
                            remaining,
                            offset: offset + n as u64,
                        }
                    };
                }
                FrameState::Header => {
                    let Some(header) = parse_header(&self.raw)? else {
                        break;
                    };
                    match header.opcode {
                        OP_BINARY | OP_CONTINUATION => {
                            let continuation = header.opcode == OP_CONTINUATION;
                            if continuation != self.in_message {
                                return Err(Fault {
                                    code: CLOSE_PROTOCOL_ERROR,
                                    reason: if continuation {
                                        "continuation frame outside a message"
                                    } else {
                                        "new message inside a fragmented one"
                                    },
                                });
                            }
                            self.in_message = !header.fin;
                            self.raw.advance(header.size);
                            if header.len > 0 {
                                self.frame = FrameState::Data {
                                    mask: header.mask,
                                    remaining: header.len,
                                    offset: 0,
                                };
                            }
                        }
                        _ => {
                            // A control frame is handled whole (at most 125 bytes).
                            let len = header.len as usize;
                            let Some(payload) = self.raw.get(header.size..header.size + len) else {
                                break;
                            };
                            let mut payload = payload.to_vec();
                            self.raw.advance(header.size + len);
                            unmask(&mut payload, header.mask, 0);
                            self.control(header.opcode, &payload)?;
                        }
                    }
                }
            }
        }
        if self.raw.is_empty() {
            // An idle connection keeps no buffer.
            self.raw = BytesMut::new();
        }
        Ok(produced)
    }

    /// Answers a ping, notes a close.
    fn control(&mut self, opcode: u8, payload: &[u8]) -> Result<(), Fault> {
        match opcode {
            OP_PING => {
                let mut out = lock(&self.out);
                if !out.close_sent {
                    put_frame(&mut out.pending, OP_PONG, payload);
                }
            }
            OP_CLOSE => {
                let code = match payload {
                    [] => CLOSE_NORMAL,
                    [_] => {
                        return Err(Fault {
                            code: CLOSE_PROTOCOL_ERROR,
                            reason: "close frame with a one-byte payload",
                        });
                    }
                    [a, b, ..] => u16::from_be_bytes([*a, *b]),
                };
                // Echo a code that may be sent back; answer the others as normal.
                let echo = match code {
                    1000..=1003 | 1007..=1011 | 3000..=4999 => code,
                    _ => CLOSE_NORMAL,
                };
                lock(&self.out).close(echo);
                self.closed = true;
            }
            // A pong answers nothing here; it only keeps the connection busy.
            _ => {}
        }
        Ok(())
    }
}

impl<R: ReadSide, W: WriteSide> ReadSide for WsReader<R, W> {
    /// Cancel-safe, as the driver's `select!` needs: all state lives in `self`, and once
    /// payload bytes are in `buf` nothing is awaited before returning.
    async fn read_some(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            if self.closed {
                drain(&self.out).await?;
                return Ok(0);
            }
            match self.process(buf) {
                Ok(0) => {}
                Ok(n) => return Ok(n),
                Err(fault) => {
                    self.log.log(
                        LogTypes::WEBSOCKETS,
                        format!(
                            "WebSocket protocol error from {}:{}: {}.",
                            self.peer.ip(),
                            self.peer.port(),
                            fault.reason
                        ),
                    );
                    self.closed = true;
                    lock(&self.out).close(fault.code);
                    let _ = drain(&self.out).await;
                    return Err(io::Error::new(io::ErrorKind::InvalidData, fault.reason));
                }
            }
            if self.closed {
                continue;
            }
            // Pongs go out before waiting for more.
            drain(&self.out).await?;
            if self.inner.read_some(&mut self.raw).await? == 0 {
                return Ok(0);
            }
        }
    }
}

impl<W: WriteSide> AsyncWrite for WsWriter<W> {
    /// Frames up to [`MAX_OUT_FRAME`] bytes of `data` as one binary frame, once the frames
    /// before it are written.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut out = lock(&self.out);
        ready!(out.poll_drain(cx))?;
        if out.close_sent {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = data.len().min(MAX_OUT_FRAME);
        put_frame(&mut out.pending, OP_BINARY, &data[..n]);
        // Start writing now; what is left goes with the next write or the flush.
        if let Poll::Ready(Err(e)) = out.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        lock(&self.out).poll_flush(cx)
    }

    /// Sends a close frame (normal closure) unless one was sent, then shuts the stream down.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut out = lock(&self.out);
        out.close(CLOSE_NORMAL);
        ready!(out.poll_flush(cx))?;
        Pin::new(&mut out.inner).poll_shutdown(cx)
    }
}

impl<W: WriteSide> WriteSide for WsWriter<W> {
    const BUFFERED: bool = true;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(opcode_byte: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = BytesMut::new();
        put_frame(&mut out, 0, payload);
        let mut frame = out.to_vec();
        frame[0] = opcode_byte;
        frame[1] |= 0x80;
        let at = frame.len() - payload.len();
        frame.splice(at..at, mask);
        let body_at = at + 4;
        unmask(&mut frame[body_at..], mask, 0);
        frame
    }

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn unmask_at_any_offset_and_length() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let data: Vec<u8> = (0..=255).collect();
        let mut whole = data.clone();
        unmask(&mut whole, mask, 0);
        for split in [0, 1, 3, 7, 8, 9, 100] {
            let mut parts = data.clone();
            let (a, b) = parts.split_at_mut(split);
            unmask(a, mask, 0);
            unmask(b, mask, split as u64);
            assert_eq!(parts, whole, "split at {split}");
        }
        for (i, (&m, &d)) in whole.iter().zip(&data).enumerate() {
            assert_eq!(m, d ^ mask[i % 4]);
        }
    }

    #[test]
    fn headers_of_every_length_form() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let frame = masked(0x82, &vec![7; len], [1, 2, 3, 4]);
            let header = parse_header(&frame).unwrap().unwrap();
            assert_eq!(header.len, len as u64);
            assert_eq!(header.size + len, frame.len());
            assert!(header.fin);
            assert_eq!(header.opcode, OP_BINARY);
            // Any shorter prefix of the header asks for more.
            for cut in 0..header.size {
                assert_eq!(parse_header(&frame[..cut]), Ok(None), "{len} cut at {cut}");
            }
        }
    }

    #[test]
    fn bad_frames_get_their_close_codes() {
        let code = |frame: &[u8]| parse_header(frame).unwrap_err().code;
        // Unmasked.
        assert_eq!(code(&[0x82, 0x01, 0x00]), CLOSE_PROTOCOL_ERROR);
        // Text.
        assert_eq!(code(&masked(0x81, b"hi", [0; 4])), CLOSE_UNSUPPORTED_DATA);
        // Reserved bit, reserved opcode.
        assert_eq!(code(&masked(0xc2, b"", [0; 4])), CLOSE_PROTOCOL_ERROR);
        assert_eq!(code(&masked(0x83, b"", [0; 4])), CLOSE_PROTOCOL_ERROR);
        // Fragmented or long control frames.
        assert_eq!(code(&masked(0x09, b"", [0; 4])), CLOSE_PROTOCOL_ERROR);
        assert_eq!(code(&masked(0x89, &[0; 126], [0; 4])), CLOSE_PROTOCOL_ERROR);
        // Longer than any MQTT packet (and a length with the top bit set).
        let mut huge = vec![0x82, 0xff];
        huge.extend_from_slice(&(MAX_IN_FRAME + 1).to_be_bytes());
        huge.extend_from_slice(&[0; 4]);
        assert_eq!(code(&huge), CLOSE_TOO_BIG);
        huge[2] = 0x80;
        assert_eq!(code(&huge), CLOSE_TOO_BIG);
    }

    #[test]
    fn upgrade_checks_the_request() {
        let request = |extra: &str| {
            let head = format!(
                "GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
            );
            super::super::http::parse_head(head.as_bytes()).unwrap()
        };
        let ok = upgrade(&request(
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: foo, mqttv3.1\r\n",
        ))
        .unwrap();
        assert!(ok.starts_with("HTTP/1.1 101 "));
        assert!(ok.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(ok.contains("Sec-WebSocket-Protocol: mqttv3.1\r\n"));
        let none = upgrade(&request("Sec-WebSocket-Version: 13\r\n")).unwrap();
        assert!(!none.contains("Sec-WebSocket-Protocol"));
        assert_eq!(
            upgrade(&request("Sec-WebSocket-Version: 8\r\n"))
                .unwrap_err()
                .status,
            426
        );
        assert_eq!(
            upgrade(&request(
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat\r\n"
            ))
            .unwrap_err()
            .status,
            400
        );
    }

    /// A connection whose reads give these chunks, then the end of the stream.
    struct Chunks(std::collections::VecDeque<Vec<u8>>);

    impl ReadSide for Chunks {
        async fn read_some(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
            Ok(self.0.pop_front().map_or(0, |chunk| {
                buf.extend_from_slice(&chunk);
                chunk.len()
            }))
        }
    }

    impl WriteSide for tokio::io::Sink {
        const BUFFERED: bool = false;
    }

    /// Reads everything `chunks` give through a [`WsReader`]: the data, and whether the
    /// stream ended in an error.
    fn read_all(chunks: Vec<Vec<u8>>) -> (Vec<u8>, bool) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let out = Arc::new(Mutex::new(Outgoing {
                inner: tokio::io::sink(),
                pending: BytesMut::new(),
                close_sent: false,
            }));
            let mut reader = WsReader {
                inner: Chunks(chunks.into()),
                raw: BytesMut::new(),
                frame: FrameState::Header,
                in_message: false,
                closed: false,
                out,
                log: Arc::new(Log::open(crate::log::LogSettings {
                    dest: crate::config::LogDest::none(),
                    ..Default::default()
                })),
                peer: SocketAddr::from(([127, 0, 0, 1], 1)),
            };
            let mut data = BytesMut::new();
            loop {
                match reader.read_some(&mut data).await {
                    Ok(0) => return (data.to_vec(), false),
                    Ok(_) => {}
                    Err(_) => return (data.to_vec(), true),
                }
            }
        })
    }

    proptest::proptest! {
        /// Any bytes at all: no panic, and the reader ends.
        #[test]
        fn arbitrary_bytes_never_panic(
            chunks in proptest::collection::vec(proptest::collection::vec(0u8.., 0..64), 0..16),
        ) {
            let _ = read_all(chunks);
        }

        /// A payload cut into fragments (with pings between), the stream cut anywhere: the
        /// payload comes out whole and in order.
        #[test]
        fn fragments_come_out_as_one_stream(
            payload in proptest::collection::vec(0u8.., 0..3000),
            cuts in proptest::collection::vec(0usize..3000, 0..8),
            splits in proptest::collection::vec(1usize..200, 1..8),
            mask in proptest::array::uniform4(0u8..),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(payload.len())).collect();
            cuts.sort_unstable();
            cuts.dedup();
            let mut bounds = vec![0];
            bounds.extend(cuts);
            bounds.push(payload.len());
            bounds.dedup();
            let mut wire = Vec::new();
            let parts = bounds.len().saturating_sub(1).max(1);
            for i in 0..parts {
                let (a, b) = (bounds[i], bounds.get(i + 1).copied().unwrap_or(bounds[i]));
                let opcode = if i == 0 { OP_BINARY } else { OP_CONTINUATION };
                let fin = if i + 1 == parts { 0x80 } else { 0 };
                wire.extend(masked(fin | opcode, &payload[a..b], mask));
                wire.extend(masked(0x89, b"ping", mask));
            }
            let mut chunks = Vec::new();
            let mut rest = &wire[..];
            for split in splits.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (chunk, tail) = rest.split_at((*split).min(rest.len()));
                chunks.push(chunk.to_vec());
                rest = tail;
            }
            let (data, failed) = read_all(chunks);
            proptest::prop_assert!(!failed);
            proptest::prop_assert_eq!(data, payload);
        }
    }
}
