//! Listeners (the sockets the broker accepts clients on) and the security settings that may be
//! set per listener.

use std::num::NonZeroU32;
use std::path::PathBuf;

use pigeon_proto::{QoS, TopicName};

use super::error::Location;

/// The port Mosquitto listens on when none is given.
pub const DEFAULT_PORT: u16 = 1883;

/// One listening socket and the settings of the clients that connect through it.
///
/// Built from a `listener PORT [ADDRESS]` block, from the deprecated `port` and
/// `bind_address` (the "default listener"), or, when the configuration defines no listener,
/// made by Pigeon for local-only mode.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Listener {
    /// The TCP port; 0 for a Unix socket. Default: 1883.
    pub port: u16,
    /// What to bind to. Default: [`Bind::All`].
    pub bind: Bind,
    /// `bind_interface`: the network interface to bind to, which takes priority over the
    /// address. Default: none.
    pub bind_interface: Option<String>,
    /// `socket_domain`: restricts the listener to IPv4 or IPv6. Default: none, both.
    pub socket_domain: Option<SocketDomain>,
    /// `protocol`. Default: [`ListenerProtocol::Mqtt`].
    pub protocol: ListenerProtocol,
    /// `http_dir`: on a WebSockets listener, the directory whose files are served to plain
    /// HTTP requests (a request that is not a WebSocket upgrade). Default: none, such requests
    /// get 404.
    pub http_dir: Option<PathBuf>,
    /// `max_connections`: the most clients connected at once through this listener. Default:
    /// `None`, no limit (`-1`, or 0, in the file).
    pub max_connections: Option<NonZeroU32>,
    /// `max_qos`: the highest QoS clients may use here (advertised to MQTT 5.0 clients;
    /// clients publishing above it are disconnected). Default: QoS 2.
    pub max_qos: QoS,
    /// `max_topic_alias`: the most topic aliases an MQTT 5.0 client may create; 0 disallows
    /// them. Default: 10.
    pub max_topic_alias: u16,
    /// `mount_point`: a prefix added to every topic of this listener's clients and removed
    /// from what they receive, isolating them. Default: none.
    pub mount_point: Option<TopicName>,
    /// `use_username_as_clientid`: replace the client id by the username (clients without a
    /// username are refused). Default: `false`.
    pub use_username_as_clientid: bool,
    /// The security settings of this listener, in force only when
    /// [`per_listener_settings`](super::Config::per_listener_settings) is true; otherwise they
    /// keep their defaults and [`Config::security`](super::Config::security) applies. Use
    /// [`Config::security_for`](super::Config::security_for) rather than reading this.
    pub security: Security,
    /// The TLS settings (`certfile`, `keyfile`, `cafile`...). Default: none, plain MQTT.
    pub tls: Tls,
    /// Where the `listener` line is; `None` for the default listener and the local-only
    /// listeners.
    pub defined_at: Option<Location>,
}

impl Default for Listener {
    /// A listener on port 1883 of every address, with Mosquitto's defaults.
    fn default() -> Self {
        Listener {
            port: DEFAULT_PORT,
            bind: Bind::All,
            bind_interface: None,
            socket_domain: None,
            protocol: ListenerProtocol::Mqtt,
            http_dir: None,
            max_connections: None,
            max_qos: QoS::ExactlyOnce,
            max_topic_alias: 10,
            mount_point: None,
            use_username_as_clientid: false,
            security: Security::default(),
            tls: Tls::default(),
            defined_at: None,
        }
    }
}

/// What a listener binds to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Bind {
    /// Every address of the machine (no address given).
    All,
    /// An IP address or a host name, as written (`listener 1883 localhost`); resolving it is
    /// the network layer's job.
    Host(String),
    /// A Unix domain socket at this path (`listener 0 /run/pigeon.sock`).
    Unix(PathBuf),
}

/// The IP version a listener is restricted to (`socket_domain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SocketDomain {
    /// IPv4 only (`ipv4`).
    Ipv4,
    /// IPv6 only (`ipv6`).
    Ipv6,
}

/// The protocol a listener speaks (`protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ListenerProtocol {
    /// MQTT over TCP (`mqtt`), the default.
    #[default]
    Mqtt,
    /// MQTT over WebSockets (`websockets`): each connection starts with an HTTP upgrade
    /// (subprotocol `mqtt` or `mqttv3.1`), then MQTT packets travel in binary frames.
    WebSockets,
}

/// A listener's TLS settings, as written. A listener speaks TLS when it has `certfile` and
/// `keyfile`; the files are read, and the settings checked for consistency, when the broker
/// starts or reloads (see `ServerSettings::from_config`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Tls {
    /// `certfile`: the server's certificate chain (PEM).
    pub certfile: Option<PathBuf>,
    /// `keyfile`: the server's private key (PEM: PKCS#8, PKCS#1 or SEC1, not encrypted).
    pub keyfile: Option<PathBuf>,
    /// `cafile`: the CA certificates client certificates are verified against.
    pub cafile: Option<PathBuf>,
    /// `capath`: a directory of CA certificates, as `cafile`.
    pub capath: Option<PathBuf>,
    /// `require_certificate`: clients must present a certificate signed by a CA of `cafile`
    /// or `capath`. Default: `false`, no client certificate is asked for.
    pub require_certificate: bool,
    /// `use_identity_as_username`: the client certificate's Common Name is the username.
    pub use_identity_as_username: bool,
    /// `use_subject_as_username`: the client certificate's whole subject (RFC 2253) is the
    /// username.
    pub use_subject_as_username: bool,
    /// `tls_version`: the lowest TLS version accepted (`tlsv1.2` or `tlsv1.3`). Default: both.
    pub tls_version: Option<String>,
    /// `ciphers`: the TLS 1.2 cipher suites, in OpenSSL's list format.
    pub ciphers: Option<String>,
    /// `ciphers_tls1.3`: the TLS 1.3 cipher suites, in OpenSSL's list format.
    pub ciphers_tls13: Option<String>,
    /// `crlfile`: certificate revocation lists (PEM) checked with `require_certificate`.
    pub crlfile: Option<PathBuf>,
    /// Where each TLS directive of the listener was written, by name (without
    /// [`prefix`](Tls::prefix)), for the errors found when the files are read.
    pub locations: Vec<(&'static str, Location)>,
    /// What the names of the directives that set these start with: nothing for an MQTT
    /// listener's (`certfile`...), `http_` for the HTTP listener's (`http_certfile`...).
    pub prefix: &'static str,
}

impl Tls {
    /// Whether any TLS directive was given.
    pub fn is_set(&self) -> bool {
        !self.locations.is_empty()
    }

    /// The name of `directive` (`certfile`...) as the configuration writes it for these
    /// settings: with [`prefix`](Tls::prefix).
    pub fn directive(&self, directive: &str) -> String {
        format!("{}{directive}", self.prefix)
    }

    /// Where `directive` was written, if it was.
    pub fn location(&self, directive: &str) -> Option<&Location> {
        self.locations
            .iter()
            .find(|(d, _)| *d == directive)
            .map(|(_, l)| l)
    }
}

/// The authentication and access settings Mosquitto's `per_listener_settings` switches
/// between global and per listener: `allow_anonymous`, `allow_zero_length_clientid`,
/// `auto_id_prefix`, `password_file`, `acl_file`, and Pigeon's `acl_subscribe_check` and
/// `enhanced_auth_method`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Security {
    /// `allow_anonymous`: whether clients without a username may connect. Default: `true`
    /// when the configuration defines no listener (the broker is then local only), `false`
    /// otherwise; this is the value after that rule is applied.
    pub allow_anonymous: bool,
    /// `allow_zero_length_clientid`: whether MQTT 3.1.1 and 5.0 clients may connect with an
    /// empty client id and get one made up. Default: `true`.
    pub allow_zero_length_clientid: bool,
    /// `auto_id_prefix`: the start of the client ids the broker makes up. Default: `auto-`.
    pub auto_id_prefix: String,
    /// `password_file`: the users and password hashes allowed to connect. Default: none.
    pub password_file: Option<PathBuf>,
    /// `acl_file`: the topic access control list. Default: none (every topic allowed).
    pub acl_file: Option<PathBuf>,
    /// `acl_subscribe_check` (Pigeon only): refuse a SUBSCRIBE whose filter the ACL leaves no
    /// readable topic under, rather than grant it and deliver nothing as Mosquitto does.
    /// Default: `false`.
    pub acl_subscribe_check: bool,
    /// `enhanced_auth_method` (Pigeon only): MQTT 5.0 enhanced authentication methods
    /// offered, by their protocol names (`SCRAM-SHA-512`, checked against `password_file`).
    /// Default: none (a client naming a method is refused with 0x8C, as by Mosquitto).
    pub enhanced_auth_methods: Vec<String>,
}

impl Default for Security {
    /// Mosquitto's defaults for a configuration that defines listeners.
    fn default() -> Self {
        Security {
            allow_anonymous: false,
            allow_zero_length_clientid: true,
            auto_id_prefix: "auto-".to_owned(),
            password_file: None,
            acl_file: None,
            acl_subscribe_check: false,
            enhanced_auth_methods: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_mosquitto() {
        let l = Listener::default();
        assert_eq!(l.port, 1883);
        assert_eq!(l.bind, Bind::All);
        assert_eq!(l.max_qos, QoS::ExactlyOnce);
        assert_eq!(l.max_topic_alias, 10);
        assert_eq!(l.max_connections, None);
        assert_eq!(l.protocol, ListenerProtocol::Mqtt);
        let s = Security::default();
        assert!(!s.allow_anonymous);
        assert!(s.allow_zero_length_clientid);
        assert_eq!(s.auto_id_prefix, "auto-");
    }
}
