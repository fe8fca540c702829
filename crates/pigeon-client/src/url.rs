//! Server URLs: `mqtt://`, `mqtts://`, `ws://` and `wss://` (with Paho's `tcp://` and
//! `ssl://` as aliases), `user:password@host:port/path`.

use std::fmt;

use crate::error::Error;
use crate::options::ConnectOptions;
use crate::tls::TlsOptions;
use crate::transport::Transport;
use crate::websocket::WebSocketOptions;

/// A URL's scheme: which transport it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// `mqtt://` (or `tcp://`): plain TCP, port 1883 by default.
    Mqtt,
    /// `mqtts://` (or `ssl://`, `tls://`): TLS, port 8883 by default.
    Mqtts,
    /// `ws://`: WebSocket, port 80 by default.
    Ws,
    /// `wss://`: WebSocket over TLS, port 443 by default.
    Wss,
}

impl Scheme {
    /// The scheme's default port.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Mqtt => 1883,
            Scheme::Mqtts => 8883,
            Scheme::Ws => 80,
            Scheme::Wss => 443,
        }
    }

    /// Whether the scheme uses TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Scheme::Mqtts | Scheme::Wss)
    }

    /// Whether the scheme is a WebSocket.
    pub fn is_websocket(self) -> bool {
        matches!(self, Scheme::Ws | Scheme::Wss)
    }

    fn parse(name: &str) -> Option<Scheme> {
        Some(match name.to_ascii_lowercase().as_str() {
            "mqtt" | "tcp" => Scheme::Mqtt,
            "mqtts" | "ssl" | "tls" => Scheme::Mqtts,
            "ws" => Scheme::Ws,
            "wss" => Scheme::Wss,
            _ => return None,
        })
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scheme::Mqtt => "mqtt",
            Scheme::Mqtts => "mqtts",
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
        })
    }
}

/// A parsed server URL: `scheme://[user[:password]@]host[:port][/path]`.
///
/// ```
/// use pigeon_client::{Scheme, ServerUrl};
///
/// let url = ServerUrl::parse("wss://alice:s%40cret@[::1]:8081/mqtt").unwrap();
/// assert_eq!(url.scheme, Scheme::Wss);
/// assert_eq!((url.host.as_str(), url.port), ("::1", 8081));
/// assert_eq!(url.username.as_deref(), Some("alice"));
/// assert_eq!(url.password.as_deref(), Some("s@cret"));
/// assert_eq!(url.path, "/mqtt");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerUrl {
    /// The transport named by the scheme.
    pub scheme: Scheme,
    /// The host: a name or an address (an IPv6 address without its brackets).
    pub host: String,
    /// The port, or the scheme's default.
    pub port: u16,
    /// The user name, percent-decoded.
    pub username: Option<String>,
    /// The password, percent-decoded.
    pub password: Option<String>,
    /// Everything from the `/` after the authority on, as written (empty when absent). The
    /// WebSocket path for `ws://` and `wss://`; `mosquitto_pub -L` takes the topic from it.
    pub path: String,
}

impl ServerUrl {
    /// Parses a URL.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] for an unknown scheme, a missing host, a bad port or bad
    /// percent-encoding.
    pub fn parse(url: &str) -> Result<ServerUrl, Error> {
        let invalid = |why: &str| Error::InvalidUrl(why.to_owned());
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("expected scheme://host"))?;
        let scheme = Scheme::parse(scheme).ok_or_else(|| {
            Error::InvalidUrl(format!(
                "unknown scheme {scheme:?} (expected mqtt, mqtts, ws or wss)"
            ))
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(info) => match info.split_once(':') {
                Some((user, password)) => (Some(decode(user)?), Some(decode(password)?)),
                None => (Some(decode(info)?), None),
            },
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| invalid("unclosed '[' in the host"))?;
            match after {
                "" => (host, None),
                _ => (
                    host,
                    Some(
                        after
                            .strip_prefix(':')
                            .ok_or_else(|| invalid("unexpected text after ']'"))?,
                    ),
                ),
            }
        } else {
            match hostport.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let port = match port {
            None | Some("") => scheme.default_port(),
            Some(port) => port
                .parse()
                .map_err(|_| Error::InvalidUrl(format!("invalid port {port:?}")))?,
        };
        Ok(ServerUrl {
            scheme,
            host: host.to_owned(),
            port,
            username,
            password,
            path: path.to_owned(),
        })
    }

    /// The transport the URL names, with default TLS options and, for WebSockets, the URL's
    /// path (`/mqtt` when it has none).
    pub fn transport(&self) -> Transport {
        let websocket = || {
            if self.path.is_empty() {
                WebSocketOptions::new()
            } else {
                WebSocketOptions::new().path(self.path.clone())
            }
        };
        match self.scheme {
            Scheme::Mqtt => Transport::Tcp,
            Scheme::Mqtts => Transport::Tls(TlsOptions::new()),
            Scheme::Ws => Transport::WebSocket(websocket()),
            Scheme::Wss => Transport::SecureWebSocket(TlsOptions::new(), websocket()),
        }
    }

    /// Connect options for the URL: its host, port, transport and credentials (a password
    /// without a user name is sent alone, which only MQTT 5.0 allows).
    pub fn connect_options(&self) -> ConnectOptions {
        let options = ConnectOptions::new(self.host.clone(), self.port).transport(self.transport());
        match (&self.username, &self.password) {
            (Some(user), password) if !user.is_empty() => {
                options.credentials(user.clone(), password.clone())
            }
            (_, Some(password)) => options.password(password.clone()),
            _ => options,
        }
    }
}

/// Percent-decodes a URL component.
fn decode(text: &str) -> Result<String, Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Error::InvalidUrl("bad percent-encoding".to_owned()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| Error::InvalidUrl("percent-encoding is not UTF-8".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_and_default_ports() {
        for (url, scheme, port) in [
            ("mqtt://h", Scheme::Mqtt, 1883),
            ("tcp://h:1", Scheme::Mqtt, 1),
            ("MQTTS://h", Scheme::Mqtts, 8883),
            ("ssl://h", Scheme::Mqtts, 8883),
            ("ws://h/", Scheme::Ws, 80),
            ("wss://h:8081/x", Scheme::Wss, 8081),
        ] {
            let parsed = ServerUrl::parse(url).unwrap();
            assert_eq!((parsed.scheme, parsed.port), (scheme, port), "{url}");
            assert_eq!(parsed.host, "h");
        }
    }

    #[test]
    fn credentials_and_paths() {
        let url = ServerUrl::parse("mqtt://u%3Ax:p:w@host:1884/a/b").unwrap();
        assert_eq!(url.username.as_deref(), Some("u:x"));
        assert_eq!(url.password.as_deref(), Some("p:w"));
        assert_eq!(url.path, "/a/b");
        let url = ServerUrl::parse("mqtt://user@[::1]").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("::1", 1883));
        assert_eq!(url.password, None);
    }

    #[test]
    fn transports() {
        let ws = ServerUrl::parse("ws://h").unwrap().transport();
        assert_eq!(ws, Transport::WebSocket(WebSocketOptions::new()));
        let wss = ServerUrl::parse("wss://h/ws?x=1").unwrap().transport();
        assert_eq!(
            wss.websocket_options().map(WebSocketOptions::request_path),
            Some("/ws?x=1")
        );
        assert!(wss.is_tls());
        let options = ConnectOptions::from_url("mqtts://u:p@h:1").unwrap();
        assert!(options.transport_kind().is_tls());
        let config = options.session_config().unwrap();
        assert_eq!(config.username.as_ref().map(|u| u.as_str()), Some("u"));
    }

    #[test]
    fn bad_urls() {
        for url in [
            "h:1883",
            "http://h",
            "mqtt://",
            "mqtt://:1",
            "mqtt://h:x",
            "mqtt://h:70000",
            "mqtt://[::1",
            "mqtt://[::1]x",
            "mqtt://u%zz@h",
        ] {
            assert!(
                matches!(ServerUrl::parse(url), Err(Error::InvalidUrl(_))),
                "{url}"
            );
        }
    }
}
