//! MQTT over WebSockets (MQTT 5.0 section 6, 3.1.1 section 6): the client's side of RFC 6455,
//! just what MQTT needs, adapted to a byte stream.
//!
//! The handshake asks for the `mqtt` subprotocol (or another, such as `mqttv3.1`) on a path
//! (`/mqtt` by default, as Paho and MQTT.js use). Then every write becomes one masked binary
//! frame (at most [`MAX_FRAME`] bytes of payload), and the payloads of the server's binary
//! frames, fragmented or not, are read as one stream of bytes: MQTT packets may be split
//! across frames or share one. Pings are answered, a close is answered and read as the end of
//! the stream, and text frames are a protocol error (MQTT data is binary).
//!
//! Written here rather than taken from a WebSocket library: the client side of the protocol
//! as a byte stream is small, and it needs only SHA-1 beyond what the workspace already has.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{Buf, BufMut, BytesMut};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// The most payload one frame written carries; longer writes take several calls.
pub(crate) const MAX_FRAME: usize = 64 * 1024;
/// The longest handshake response accepted.
const MAX_RESPONSE: usize = 16 * 1024;
/// RFC 6455's GUID for Sec-WebSocket-Accept.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// WebSocket options: the path and subprotocol of the handshake.
///
/// ```
/// use pigeon_client::{ConnectOptions, Transport, WebSocketOptions};
///
/// let ws = WebSocketOptions::new().path("/mqtt").subprotocol("mqttv3.1");
/// let options = ConnectOptions::new("broker.example", 8080).transport(Transport::WebSocket(ws));
/// # let _ = options;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocketOptions {
    path: String,
    subprotocol: String,
    headers: Vec<(String, String)>,
}

impl Default for WebSocketOptions {
    /// Path `/mqtt`, subprotocol `mqtt`.
    fn default() -> Self {
        WebSocketOptions {
            path: "/mqtt".to_owned(),
            subprotocol: "mqtt".to_owned(),
            headers: Vec::new(),
        }
    }
}

impl WebSocketOptions {
    /// The defaults: path `/mqtt`, subprotocol `mqtt`.
    pub fn new() -> Self {
        WebSocketOptions::default()
    }

    /// The path (and query) of the request: `/mqtt` by default. A path not starting with `/`
    /// gets one.
    #[must_use]
    pub fn path(mut self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        self
    }

    /// The subprotocol asked for: `mqtt` (the standard's, the default) or `mqttv3.1` (older
    /// brokers, MQTT 3.1).
    #[must_use]
    pub fn subprotocol(mut self, subprotocol: impl Into<String>) -> Self {
        self.subprotocol = subprotocol.into();
        self
    }

    /// Adds a header to the handshake request (an `Authorization` token, say).
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The request's path.
    pub fn request_path(&self) -> &str {
        &self.path
    }

    /// The subprotocol asked for.
    pub fn requested_subprotocol(&self) -> &str {
        &self.subprotocol
    }

    /// The handshake request for `host_header` and this key.
    fn request(&self, host_header: &str, key: &str) -> io::Result<String> {
        let bad = |s: &str| s.bytes().any(|b| b.is_ascii_control() || b == b' ');
        if bad(&self.path) || bad(&self.subprotocol) || self.subprotocol.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                HandshakeError("invalid path or subprotocol".to_owned()),
            ));
        }
        let mut request = format!(
            "GET {} HTTP/1.1\r\nHost: {host_header}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: {}\r\n",
            self.path, self.subprotocol
        );
        for (name, value) in &self.headers {
            if bad(name) || name.is_empty() || value.bytes().any(|b| b == b'\r' || b == b'\n') {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    HandshakeError(format!("invalid header {name:?}")),
                ));
            }
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        Ok(request)
    }
}

/// The WebSocket handshake failed (carried inside an [`io::Error`] to the client's task).
#[derive(Debug, Clone)]
pub(crate) struct HandshakeError(pub(crate) String);

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebSocket handshake failed: {}", self.0)
    }
}

impl std::error::Error for HandshakeError {}

fn handshake_error(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, HandshakeError(message.into()))
}

fn protocol_error(message: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("WebSocket protocol error: {message}"),
    )
}

/// Sec-WebSocket-Accept for a key.
fn accept_for(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    BASE64.encode(sha.finalize())
}

fn random<const N: usize>() -> io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(io::Error::other)?;
    Ok(bytes)
}

/// Opens a WebSocket over `stream` (TCP or TLS) with the server at `host_header` (the `Host`
/// header: host, and `:port` unless it is the scheme's default).
pub(crate) async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host_header: &str,
    options: &WebSocketOptions,
) -> io::Result<WsStream<S>> {
    let key = BASE64.encode(random::<16>()?);
    let request = options.request(host_header, &key)?;
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;

    let mut response = BytesMut::with_capacity(1024);
    let end = loop {
        if let Some(i) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if response.len() > MAX_RESPONSE {
            return Err(handshake_error("the server's response is too long"));
        }
        let read = stream.read_buf(&mut response).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                HandshakeError(format!("{e} (is it a WebSocket listener?)")),
            )
        })?;
        if read == 0 {
            return Err(handshake_error(
                "the server closed the connection (is it a WebSocket listener?)",
            ));
        }
    };
    let head = response.split_to(end);
    check_response(&head, &accept_for(&key), &options.subprotocol)?;
    Ok(WsStream {
        inner: stream,
        rbuf: response,
        payload_left: 0,
        in_message: false,
        wbuf: BytesMut::new(),
        closed: false,
        close_queued: false,
    })
}

/// Checks the server's handshake response: 101, the upgrade, the accept key, the subprotocol.
fn check_response(head: &[u8], accept: &str, subprotocol: &str) -> io::Result<()> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let mut parts = status.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or_default(), parts.next());
    if !version.starts_with("HTTP/") || code.is_none() {
        return Err(handshake_error(format!(
            "the server did not answer in HTTP (is it a WebSocket listener?): {status:?}"
        )));
    }
    if code != Some("101") {
        return Err(handshake_error(format!("the server answered {status:?}")));
    }
    let header = |name: &str| {
        text.split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    };
    if !header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
        return Err(handshake_error(
            "the response does not upgrade to websocket",
        ));
    }
    if header("sec-websocket-accept") != Some(accept) {
        return Err(handshake_error("wrong Sec-WebSocket-Accept"));
    }
    match header("sec-websocket-protocol") {
        Some(p) if p == subprotocol => Ok(()),
        Some(p) => Err(handshake_error(format!(
            "the server chose the subprotocol {p:?}, not {subprotocol:?}"
        ))),
        None => Err(handshake_error(format!(
            "the server did not accept the subprotocol {subprotocol:?}"
        ))),
    }
}

/// A WebSocket as a byte stream: see the module's documentation.
#[derive(Debug)]
pub(crate) struct WsStream<S> {
    inner: S,
    /// Bytes read, not yet parsed or handed out.
    rbuf: BytesMut,
    /// Payload bytes of the current data frame not yet handed out.
    payload_left: u64,
    /// Inside a fragmented binary message (continuation frames expected).
    in_message: bool,
    /// Whole frames waiting to be written.
    wbuf: BytesMut,
    /// The server closed the WebSocket: reads end.
    closed: bool,
    /// A close frame has been queued.
    close_queued: bool,
}

/// What parsing the buffered bytes gave.
enum Parsed {
    /// More bytes are needed.
    NeedMore,
    /// A frame was handled; look again.
    Again,
    /// The server closed the WebSocket.
    Closed,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    /// Queues one masked frame.
    fn queue_frame(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let mask: [u8; 4] = random()?;
        self.wbuf.reserve(payload.len() + 14);
        self.wbuf.put_u8(0x80 | opcode);
        match payload.len() {
            n @ 0..=125 => self.wbuf.put_u8(0x80 | n as u8),
            n @ 126..=0xFFFF => {
                self.wbuf.put_u8(0x80 | 126);
                self.wbuf.put_u16(n as u16);
            }
            n => {
                self.wbuf.put_u8(0x80 | 127);
                self.wbuf.put_u64(n as u64);
            }
        }
        self.wbuf.put_slice(&mask);
        self.wbuf.extend(
            payload
                .iter()
                .zip(mask.iter().cycle())
                .map(|(byte, mask)| byte ^ mask),
        );
        Ok(())
    }

    /// Writes the queued frames.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.wbuf.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.wbuf))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wbuf.advance(n);
        }
        Poll::Ready(Ok(()))
    }

    /// Parses one frame header (or whole control frame) from the read buffer.
    fn parse(&mut self) -> io::Result<Parsed> {
        let Some(&[b0, b1]) = self.rbuf.get(..2) else {
            return Ok(Parsed::NeedMore);
        };
        let (fin, opcode) = (b0 & 0x80 != 0, b0 & 0x0F);
        if b0 & 0x70 != 0 {
            return Err(protocol_error(
                "reserved bits set (no extension was agreed)",
            ));
        }
        if b1 & 0x80 != 0 {
            return Err(protocol_error("the server masked a frame"));
        }
        let (header, len) = match b1 & 0x7F {
            126 => match self.rbuf.get(2..4) {
                Some(b) => (4, u64::from(u16::from_be_bytes([b[0], b[1]]))),
                None => return Ok(Parsed::NeedMore),
            },
            127 => match self.rbuf.get(2..10) {
                Some(b) => (10, u64::from_be_bytes(b.try_into().expect("8 bytes"))),
                None => return Ok(Parsed::NeedMore),
            },
            n => (2, u64::from(n)),
        };
        match opcode {
            OP_BINARY | OP_CONTINUATION => {
                if (opcode == OP_BINARY) == self.in_message {
                    return Err(protocol_error("unexpected continuation or data frame"));
                }
                self.in_message = !fin;
                self.payload_left = len;
                self.rbuf.advance(header);
                Ok(Parsed::Again)
            }
            OP_TEXT => Err(protocol_error(
                "a text frame (MQTT over WebSockets uses binary frames)",
            )),
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin || len > 125 {
                    return Err(protocol_error("a fragmented or long control frame"));
                }
                let total = header + len as usize;
                if self.rbuf.len() < total {
                    return Ok(Parsed::NeedMore);
                }
                let frame = self.rbuf.split_to(total);
                let payload = &frame[header..];
                match opcode {
                    OP_PING => self.queue_frame(OP_PONG, payload)?,
                    OP_CLOSE => {
                        if !self.close_queued {
                            // Echo the status code, as RFC 6455 section 5.5.1 asks.
                            self.queue_frame(OP_CLOSE, payload.get(..2).unwrap_or_default())?;
                            self.close_queued = true;
                        }
                        self.closed = true;
                        return Ok(Parsed::Closed);
                    }
                    _ => {}
                }
                Ok(Parsed::Again)
            }
            other => Err(protocol_error(&format!("unknown opcode {other:#x}"))),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.wbuf.is_empty() {
                // Answers to pings and closes go out as soon as the transport takes them;
                // a failure shows on the next write.
                let _ = this.poll_drain(cx);
            }
            if this.closed || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if this.payload_left > 0 && !this.rbuf.is_empty() {
                let n =
                    (this.payload_left.min(this.rbuf.len() as u64) as usize).min(buf.remaining());
                buf.put_slice(&this.rbuf[..n]);
                this.rbuf.advance(n);
                this.payload_left -= n as u64;
                return Poll::Ready(Ok(()));
            }
            if this.payload_left == 0 {
                match this.parse()? {
                    Parsed::Again => continue,
                    Parsed::Closed => {
                        let _ = this.poll_drain(cx);
                        return Poll::Ready(Ok(()));
                    }
                    Parsed::NeedMore => {}
                }
            }
            let mut chunk = [0u8; 8 * 1024];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                if this.payload_left > 0 || !this.rbuf.is_empty() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the connection ended inside a WebSocket frame",
                    )));
                }
                // Closed without a close frame: the end of the stream all the same.
                this.closed = true;
                return Poll::Ready(Ok(()));
            }
            this.rbuf.extend_from_slice(read.filled());
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        if this.close_queued {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the WebSocket is closed",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(MAX_FRAME);
        this.queue_frame(OP_BINARY, &buf[..n])?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_queued {
            // 1000: normal closure.
            this.queue_frame(OP_CLOSE, &1000u16.to_be_bytes())?;
            this.close_queued = true;
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    #[test]
    fn accept_key_of_rfc_6455() {
        // The example of RFC 6455 section 1.3.
        assert_eq!(
            accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    /// A server frame (unmasked).
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n @ 0..=125 => out.push(n as u8),
            n @ 126..=0xFFFF => {
                out.push(126);
                out.extend((n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend((n as u64).to_be_bytes());
            }
        }
        out.extend(payload);
        out
    }

    /// Reads one client frame: (fin, opcode, unmasked payload).
    async fn read_client_frame(server: &mut DuplexStream) -> (bool, u8, Vec<u8>) {
        let mut head = [0u8; 2];
        server.read_exact(&mut head).await.unwrap();
        assert!(head[1] & 0x80 != 0, "client frames are masked");
        let len = match head[1] & 0x7F {
            126 => u64::from(server.read_u16().await.unwrap()),
            127 => server.read_u64().await.unwrap(),
            n => u64::from(n),
        };
        let mut mask = [0u8; 4];
        server.read_exact(&mut mask).await.unwrap();
        let mut payload = vec![0u8; len as usize];
        server.read_exact(&mut payload).await.unwrap();
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        (head[0] & 0x80 != 0, head[0] & 0x0F, payload)
    }

    /// A client connected over a duplex pipe to a scripted server that accepts the handshake.
    async fn pair(extra: &[u8]) -> (WsStream<DuplexStream>, DuplexStream) {
        let (client, mut server) = duplex(256 * 1024);
        let extra = extra.to_vec();
        let server_side = tokio::spawn(async move {
            let mut request = Vec::new();
            while !request.ends_with(b"\r\n\r\n") {
                request.push(server.read_u8().await.unwrap());
            }
            let request = String::from_utf8(request).unwrap();
            assert!(request.starts_with("GET /mqtt HTTP/1.1\r\n"), "{request}");
            assert!(request.contains("Sec-WebSocket-Protocol: mqtt\r\n"));
            let key = request
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap()
                .to_owned();
            let mut response = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\
                 Sec-WebSocket-Protocol: mqtt\r\n\r\n",
                accept_for(&key)
            )
            .into_bytes();
            response.extend(extra);
            server.write_all(&response).await.unwrap();
            server
        });
        let ws = connect(client, "localhost:8080", &WebSocketOptions::new())
            .await
            .unwrap();
        (ws, server_side.await.unwrap())
    }

    #[tokio::test]
    async fn frames_are_joined_and_split_into_a_byte_stream() {
        // Bytes right behind the handshake response, a fragmented message, a ping in the
        // middle of it, one frame holding the end of a packet and the next.
        let mut script = frame(true, OP_BINARY, b"\x20\x02");
        script.extend(frame(false, OP_BINARY, b"\x00"));
        script.extend(frame(true, OP_PING, b"hi"));
        script.extend(frame(true, OP_CONTINUATION, b"\x00\xd0"));
        script.extend(frame(true, OP_BINARY, b"\x00"));
        script.extend(frame(true, OP_BINARY, &[7u8; 70_000]));
        let (mut ws, mut server) = pair(&script).await;
        let mut got = vec![0u8; 6 + 70_000];
        ws.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..6], b"\x20\x02\x00\x00\xd0\x00");
        assert!(got[6..].iter().all(|&b| b == 7));
        ws.write_all(b"").await.unwrap();
        ws.flush().await.unwrap();
        assert_eq!(
            read_client_frame(&mut server).await,
            (true, OP_PONG, b"hi".to_vec())
        );

        // Writes become binary frames, long ones several.
        ws.write_all(&[1u8; MAX_FRAME + 10]).await.unwrap();
        ws.flush().await.unwrap();
        let (fin, op, first) = read_client_frame(&mut server).await;
        assert!(fin && op == OP_BINARY && first.len() == MAX_FRAME);
        let (_, _, second) = read_client_frame(&mut server).await;
        assert_eq!(second, [1u8; 10]);

        // A close is answered and ends the stream.
        server
            .write_all(&frame(true, OP_CLOSE, &1000u16.to_be_bytes()))
            .await
            .unwrap();
        assert_eq!(ws.read(&mut [0u8; 8]).await.unwrap(), 0);
        assert_eq!(
            read_client_frame(&mut server).await,
            (true, OP_CLOSE, 1000u16.to_be_bytes().to_vec())
        );
    }

    #[tokio::test]
    async fn text_frames_are_refused() {
        let (mut ws, _server) = pair(&frame(true, OP_TEXT, b"hello")).await;
        let err = ws.read(&mut [0u8; 8]).await.unwrap_err();
        assert!(err.to_string().contains("text frame"), "{err}");
    }

    #[tokio::test]
    async fn shutdown_sends_a_close() {
        let (mut ws, mut server) = pair(b"").await;
        ws.shutdown().await.unwrap();
        let (_, op, payload) = read_client_frame(&mut server).await;
        assert_eq!((op, payload), (OP_CLOSE, 1000u16.to_be_bytes().to_vec()));
    }

    #[test]
    fn responses_are_checked() {
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\n\
                  Sec-WebSocket-Accept: abc\r\nsec-websocket-protocol: mqtt\r\n\r\n";
        assert!(check_response(ok.as_bytes(), "abc", "mqtt").is_ok());
        let err = check_response(ok.as_bytes(), "abd", "mqtt").unwrap_err();
        assert!(err.to_string().contains("Accept"), "{err}");
        let err = check_response(ok.as_bytes(), "abc", "mqttv3.1").unwrap_err();
        assert!(err.to_string().contains("subprotocol"), "{err}");
        let err = check_response(b"HTTP/1.1 404 Not Found\r\n\r\n", "abc", "mqtt").unwrap_err();
        assert!(err.to_string().contains("404 Not Found"), "{err}");
        let err = check_response(b"\x20\x02\x00\x00\r\n\r\n", "abc", "mqtt").unwrap_err();
        assert!(err.to_string().contains("HTTP"), "{err}");
    }
}
