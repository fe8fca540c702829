//! The little HTTP/1.1 the broker speaks: reading a request head, writing a response, and
//! serving static files from a directory (`http_dir`) without leaving it.
//!
//! Only what the WebSockets listeners and the HTTP listener need: `GET` and `HEAD` requests
//! without bodies, one request per connection (every response says `Connection: close`).
//! Everything here is bounded: the head by a size limit, the files by what is on disk.

use std::io;
use std::path::{Component, Path, PathBuf};

use bytes::BytesMut;

use super::conn::{ReadSide, WriteSide};
use tokio::io::AsyncWriteExt;

/// How long, and for how many bytes, a refused request is read on before closing.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    /// `GET`, `HEAD`, ... as sent.
    pub(crate) method: String,
    /// The path, percent-decoded, without the query.
    pub(crate) path: String,
    /// The query (after `?`), as sent; empty without one.
    pub(crate) query: String,
    /// The headers, names in lower case, values trimmed.
    pub(crate) headers: Vec<(String, String)>,
}

impl Request {
    /// The value of header `name` (lower case); the first one when repeated.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether header `name` holds `token` in its comma-separated list (case-insensitive).
    pub(crate) fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Why a request head could not be read.
#[derive(Debug)]
pub(crate) enum HeadError {
    /// The connection ended or failed first.
    Closed,
    /// The head is longer than the limit (answer 431).
    TooLarge,
    /// Not an HTTP/1.x request head (answer 400).
    Malformed(&'static str),
}

/// Reads a request head of at most `limit` bytes. Bytes after it (a client may send its
/// first WebSocket frames at once) stay in `buf`.
pub(crate) async fn read_head<R: ReadSide>(
    reader: &mut R,
    buf: &mut BytesMut,
    limit: usize,
) -> Result<Request, HeadError> {
    let mut searched = 0;
    loop {
        if let Some(end) = find_end(buf, searched) {
            if end > limit {
                return Err(HeadError::TooLarge);
            }
            let head = buf.split_to(end);
            return parse_head(&head);
        }
        searched = buf.len().saturating_sub(3);
        if buf.len() > limit {
            return Err(HeadError::TooLarge);
        }
        match reader.read_some(buf).await {
            Ok(0) | Err(_) => return Err(HeadError::Closed),
            Ok(_) => {}
        }
    }
}

/// The length of the head (through its blank line) if `buf` holds all of it.
fn find_end(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| from + at + 4)
}

/// Parses a request head (request line, headers, blank line).
pub(crate) fn parse_head(head: &[u8]) -> Result<Request, HeadError> {
    let text = std::str::from_utf8(head).map_err(|_| HeadError::Malformed("not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed("bad request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(HeadError::Malformed("not HTTP/1.x"));
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HeadError::Malformed("bad method"));
    }
    // An absolute URI (a proxy's form) is reduced to its path.
    let target = match target.find("://") {
        Some(at) => {
            let rest = &target[at + 3..];
            rest.find('/').map_or("/", |slash| &rest[slash..])
        }
        None => target,
    };
    if !target.starts_with('/') {
        return Err(HeadError::Malformed("bad request target"));
    }
    let (raw_path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = percent_decode(raw_path).ok_or(HeadError::Malformed("bad percent-encoding"))?;
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(HeadError::Malformed("bad header line"))?;
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(HeadError::Malformed("bad header name"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok(Request {
        method: method.to_owned(),
        path,
        query: query.to_owned(),
        headers,
    })
}

/// Decodes `%XX` escapes; `None` for a bad escape or a result that is not UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A response to write.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    /// A response with `body` of type `content_type`.
    pub(crate) fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", content_type.to_owned())],
            body: body.into(),
        }
    }

    /// A plain-text response saying `message`.
    pub(crate) fn text(status: u16, message: &str) -> Response {
        Response::new(status, "text/plain; charset=utf-8", format!("{message}\n"))
    }

    /// Adds a header.
    pub(crate) fn with(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// The bytes on the wire; without the body for a `HEAD` request.
    pub(crate) fn encode(&self, head_only: bool) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (name, value) in &self.headers {
            out.push_str(name);
            out.push_str(": ");
            out.push_str(value);
            out.push_str("\r\n");
        }
        out.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.body.len()
        ));
        let mut bytes = out.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }

    /// Writes the response and closes the writing side.
    ///
    /// # Errors
    /// The write failure.
    pub(crate) async fn send<W: WriteSide>(
        &self,
        writer: &mut W,
        head_only: bool,
    ) -> io::Result<()> {
        writer.write_all(&self.encode(head_only)).await?;
        writer.flush().await?;
        writer.shutdown().await
    }

    /// [`send`](Self::send), then reads and drops what the client still sends (the rest of
    /// a request refused before its end), for a while at most, so that closing with unread
    /// bytes does not reset the connection before the client has read the response.
    pub(crate) async fn send_and_linger<R: ReadSide, W: WriteSide>(
        &self,
        reader: &mut R,
        writer: &mut W,
    ) {
        if self.send(writer, false).await.is_err() {
            return;
        }
        let mut scratch = BytesMut::new();
        let mut total = 0;
        let _ = tokio::time::timeout(LINGER, async {
            while total < LINGER_BYTES {
                scratch.clear();
                match reader.read_some(&mut scratch).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
        })
        .await;
    }
}

/// The reason phrase of the statuses Pigeon sends.
fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// The file under `root` that `path` (a decoded URL path) names, or `None` when the path
/// would leave `root` (`..`, a symbolic link pointing outside) or names nothing readable. A
/// directory gives its `index.html`.
pub(crate) fn resolve_static(root: &Path, path: &str) -> Option<PathBuf> {
    if path.contains('\0') || path.contains('\\') {
        return None;
    }
    let mut relative = PathBuf::new();
    for component in Path::new(path.trim_start_matches('/')).components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            // `..`, or anything absolute after trimming: refused rather than normalised.
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    let root = root.canonicalize().ok()?;
    let mut file = root.join(&relative).canonicalize().ok()?;
    // A symbolic link may still lead out.
    if !file.starts_with(&root) {
        return None;
    }
    if file.is_dir() {
        file = file.join("index.html");
    }
    file.is_file().then_some(file)
}

/// The `Content-Type` of a file, from its extension.
pub(crate) fn content_type(path: &Path) -> &'static str {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("ico") => "image/x-icon",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// The response to a `GET` or `HEAD` of `path` under `root`.
pub(crate) async fn serve_static(root: &Path, path: &str) -> Response {
    let root = root.to_owned();
    let path = path.to_owned();
    let found = tokio::task::spawn_blocking(move || {
        let file = resolve_static(&root, &path)?;
        let body = std::fs::read(&file).ok()?;
        Some((content_type(&file), body))
    })
    .await
    .ok()
    .flatten();
    match found {
        Some((content_type, body)) => Response::new(200, content_type, body),
        None => Response::text(404, "Not Found"),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn parses_a_websocket_upgrade() {
        let head = b"GET /mqtt?x=1%202 HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket\r\n\
                     Connection: keep-alive, Upgrade\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n";
        let r = parse_head(head).unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/mqtt");
        assert_eq!(r.query, "x=1%202");
        assert!(r.has_token("upgrade", "websocket"));
        assert!(r.has_token("connection", "upgrade"));
        assert_eq!(r.header("sec-websocket-protocol"), Some("mqtt"));
    }

    #[test]
    fn refuses_garbage() {
        for head in [
            &b"\x10\x20\r\n\r\n"[..],
            b"GET /\r\n\r\n",
            b"GET / HTTP/2\r\n\r\n",
            b"get / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nNo colon\r\n\r\n",
            b"GET /%zz HTTP/1.1\r\n\r\n",
            b"GET /%ff HTTP/1.1\r\n\r\n",
            b"GET x HTTP/1.1\r\n\r\n",
        ] {
            assert!(parse_head(head).is_err(), "{head:?}");
        }
    }

    #[test]
    fn static_files_stay_under_the_root() {
        let dir = std::env::temp_dir().join(format!("pigeon-http-{}", std::process::id()));
        let root = dir.join("www");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("index.html"), "home").unwrap();
        fs::write(root.join("sub/a.js"), "js").unwrap();
        fs::write(dir.join("secret"), "no").unwrap();
        std::os::unix::fs::symlink(dir.join("secret"), root.join("link")).unwrap();
        assert_eq!(
            resolve_static(&root, "/"),
            Some(root.canonicalize().unwrap().join("index.html"))
        );
        assert!(resolve_static(&root, "/sub/a.js").is_some());
        assert!(resolve_static(&root, "/./sub/./a.js").is_some());
        for bad in [
            "/../secret",
            "/sub/../../secret",
            "/link",
            "/missing",
            "/sub",
            "//etc/passwd",
            "/a\0b",
        ] {
            assert_eq!(resolve_static(&root, bad), None, "{bad}");
        }
        assert_eq!(
            content_type(Path::new("a.JS")),
            "text/javascript; charset=utf-8"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
