//! The broker configuration: Mosquitto's `mosquitto.conf` format, read into a typed [`Config`].
//!
//! Pigeon reads Mosquitto 2.0 configuration files unchanged. The format, as the
//! `mosquitto.conf(5)` manual defines it:
//!
//! - one directive per line: its name, then its values separated by spaces;
//! - a line whose first non-blank character is `#` is a comment; elsewhere `#` is an ordinary
//!   character, so `password_file /etc/pw # old` names the file `/etc/pw # old`, as in
//!   Mosquitto. (Directives made of single words, such as booleans and numbers, do treat a
//!   word starting with `#` after their values as the start of a comment, because Mosquitto
//!   ignores anything there.)
//! - settings are global, except those after a `listener PORT [ADDRESS]` line, which belong
//!   to that listener until the next `listener` line. Listener settings that come before any
//!   `listener` line configure the deprecated "default listener" that `port` and
//!   `bind_address` also configure.
//! - `include_dir DIR` in the main file reads the files of `DIR` whose names end in `.conf`,
//!   in Mosquitto's order, as if they were written at that point of the main file; each
//!   included file starts, as in Mosquitto, with the default listener as its current
//!   listener.
//!
//! Every directive Mosquitto 2.0 knows is recognised: it is either implemented or refused
//! with a "not supported yet" error that says which later issue brings it (or why Pigeon
//! cannot offer it); anything else is an "unknown configuration directive". Values are
//! checked more strictly than Mosquitto does: `max_inflight_messages ten` is an error, not 0.
//!
//! # Where Pigeon differs from Mosquitto 2.0.11
//!
//! Both differences refuse anonymous clients where Mosquitto would let them in:
//!
//! - an explicit `allow_anonymous false` is obeyed in local-only mode (Mosquitto ignores it);
//! - listener settings before any `listener` line (`max_connections 10` alone, say) make
//!   Mosquitto open the default listener on every address while still allowing anonymous
//!   clients as in local-only mode; Pigeon opens the same listener but applies the usual rule
//!   for configured listeners, so anonymous clients need `allow_anonymous true`.
//!
//! [`Config::parse`] is pure: text in, [`Config`] out. [`Config::load`] reads the files, and
//! [`Config::load_with`] reads them through any [`Sources`], such as [`MemorySources`] in
//! tests.

mod error;
mod listener;
mod logging;
mod parse;
mod sources;
mod unsupported;

use std::ffi::OsString;
use std::num::{NonZeroU16, NonZeroU32, NonZeroU64};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use self::error::{ConfigError, ConfigErrorKind, ConfigWarning, Location};
pub use self::listener::{
    Bind, DEFAULT_PORT, Listener, ListenerProtocol, Security, SocketDomain, Tls,
};
pub use self::logging::{LogDest, LogTypes};
pub use self::sources::{FsSources, MemorySources, Sources};

/// Where the HTTP listener binds (`http_listener PORT [ADDRESS]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpListener {
    /// The TCP port.
    pub port: u16,
    /// The address or host name; default 127.0.0.1.
    pub host: String,
}

/// The broker configuration, with Mosquitto 2.0's defaults for everything the file leaves
/// out. [`Config::default`] is the configuration of an empty file.
///
/// Fields are named after the directives that set them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    // ---- Listeners ----------------------------------------------------------------------
    /// The listeners, in the order Mosquitto opens them: `listener` blocks as written, then
    /// the default listener if `port`, `bind_address` or a listener setting before the first
    /// `listener` line asked for it. In local-only mode, one listener on 127.0.0.1 and one on
    /// ::1 for each port (1883, or the `-p` ports).
    pub listeners: Vec<Listener>,
    /// Whether the configuration defines a listener. When it does not, the broker is in
    /// local-only mode ([`listeners`](Config::listeners) are on the loopback addresses and
    /// anonymous clients are allowed), and should log Mosquitto's "Starting in local only
    /// mode" message.
    pub listeners_configured: bool,

    // ---- Security -----------------------------------------------------------------------
    /// `per_listener_settings`: whether the [`Security`] settings are per listener
    /// ([`Listener::security`]) rather than global ([`Config::security`]). Must come before
    /// any security setting. Default: `false`.
    pub per_listener_settings: bool,
    /// The security settings of every listener when
    /// [`per_listener_settings`](Config::per_listener_settings) is false. Use
    /// [`Config::security_for`] rather than reading this.
    pub security: Security,
    /// `check_retain_source`: whether a retained message is checked against its publisher's
    /// current access rights before it is delivered. Default: `true`.
    pub check_retain_source: bool,
    /// `clientid_prefixes` (deprecated): only client ids starting with this may connect.
    /// Default: none, any client id.
    pub clientid_prefixes: Option<String>,

    // ---- Limits and MQTT behaviour ------------------------------------------------------
    /// `allow_duplicate_messages` (deprecated, and Mosquitto 2.0 ignores it). Default: `true`.
    pub allow_duplicate_messages: bool,
    /// `max_inflight_bytes`: outgoing QoS 1 and 2 bytes in flight per client. Default:
    /// `None`, no limit (0 in the file).
    pub max_inflight_bytes: Option<NonZeroU64>,
    /// `max_inflight_messages`: outgoing QoS 1 and 2 messages in flight per client. Default:
    /// 20; `None` is no limit (0 in the file).
    pub max_inflight_messages: Option<NonZeroU16>,
    /// `max_keepalive`: the longest keep alive MQTT 5.0 clients may use, in seconds (longer
    /// requests get this as the server keep alive). 10 to 65535. Default: 65535.
    pub max_keepalive: u16,
    /// `max_packet_size`: the largest MQTT packet accepted from any client, in bytes;
    /// advertised to MQTT 5.0 clients. At least 20. Default: `None`, no limit.
    pub max_packet_size: Option<NonZeroU32>,
    /// `max_queued_bytes`: QoS 1 and 2 bytes queued per client beyond those in flight.
    /// Default: `None`, no limit (0 in the file).
    pub max_queued_bytes: Option<NonZeroU64>,
    /// `max_queued_messages`: QoS 1 and 2 messages queued per client beyond those in flight.
    /// Default: 1000; `None` is no limit (0 in the file).
    pub max_queued_messages: Option<NonZeroU32>,
    /// `memory_limit`: the most heap memory the broker may use, in bytes. Default: `None`, no
    /// limit (0 in the file).
    pub memory_limit: Option<NonZeroU64>,
    /// `message_size_limit`: the largest PUBLISH payload accepted, in bytes; larger ones are
    /// dropped after their QoS flow. At most 268,435,455. Default: `None`, no limit (0 in the
    /// file).
    pub message_size_limit: Option<NonZeroU32>,
    /// `persistent_client_expiration`: how long a disconnected persistent session is kept.
    /// Default: `None`, forever.
    pub persistent_client_expiration: Option<Duration>,
    /// `queue_qos0_messages`: whether QoS 0 messages are queued for disconnected persistent
    /// clients. Default: `false`.
    pub queue_qos0_messages: bool,
    /// `retain_available`: whether retained messages are supported; if not, clients that set
    /// the retain flag are disconnected. Default: `true`.
    pub retain_available: bool,
    /// `set_tcp_nodelay`: whether Nagle's algorithm is disabled on client sockets. Default:
    /// `false`.
    pub set_tcp_nodelay: bool,
    /// `connect_timeout` (a Pigeon directive): how long a new connection has to send its
    /// CONNECT before it is closed. Default: 60 seconds.
    pub connect_timeout: Duration,
    /// `sys_interval`: the period of the `$SYS` topic updates. Default: 10 seconds; `None`
    /// disables `$SYS` (0 in the file).
    pub sys_interval: Option<Duration>,
    /// `upgrade_outgoing_qos`: whether messages are delivered at the subscription's QoS even
    /// when published at a lower one (against the MQTT specification). Default: `false`.
    pub upgrade_outgoing_qos: bool,

    // ---- WebSockets ---------------------------------------------------------------------
    /// `websockets_headers_size`: the longest HTTP request head (request line and headers) a
    /// WebSockets listener reads, in bytes. Default: `None`, 4096 bytes (0 in the file).
    /// (Mosquitto's libwebsockets default is 1024; Pigeon allows more for browsers' cookies.)
    pub websockets_headers_size: Option<NonZeroU32>,
    /// `websockets_log_level`: libwebsockets' log level in Mosquitto. Accepted; Pigeon's
    /// WebSockets code logs under `log_type websockets` whatever this says. Default: 0.
    pub websockets_log_level: u32,

    // ---- HTTP listener (Pigeon's own) ----------------------------------------------------
    /// `http_listener PORT [ADDRESS]` (a Pigeon directive): where the HTTP listener serving
    /// `/metrics`, the JSON API and the dashboard binds. Default: none, no HTTP listener.
    /// Without an address it binds 127.0.0.1 only (unlike MQTT listeners, which bind every
    /// address): the API shows client identifiers, so exposing it is a choice to write down.
    pub http_listener: Option<HttpListener>,
    /// `http_dashboard true|false` (a Pigeon directive): whether the HTTP listener serves the
    /// dashboard at `/`. Default: `true`.
    pub http_dashboard: bool,
    /// `http_certfile`, `http_keyfile`, `http_cafile`, `http_capath`, `http_crlfile`,
    /// `http_require_certificate`, `http_tls_version`, `http_ciphers` and
    /// `http_ciphers_tls1.3` (Pigeon directives): the HTTP listener's TLS settings, which
    /// mean what the listener directives without `http_` mean. Default: none, plain HTTP.
    pub http_tls: Tls,

    // ---- Persistence (see `crate::store` and docs/persistence.md) -----------------------
    /// `persistence` (or its alias `retained_persistence`): whether sessions, subscriptions
    /// and messages are saved to disk. Default: `false`.
    pub persistence: bool,
    /// `persistence_sync_acks` (Pigeon's own): whether a publisher's PUBACK or PUBREC waits
    /// until its message is on disk (fsync). `false` trades that promise for speed: a crash
    /// may lose what was acknowledged in the last moments. Default: true.
    pub persistence_sync_acks: bool,
    /// `persistence_file`: the file name of the database. Default: `mosquitto.db`.
    pub persistence_file: PathBuf,
    /// `persistence_location`: the directory of the database. Default: none, the current
    /// directory. See [`Config::persistence_path`].
    pub persistence_location: Option<PathBuf>,
    /// `autosave_interval`: seconds between saves, or, with
    /// [`autosave_on_changes`](Config::autosave_on_changes), the number of changes between
    /// saves; 0 saves only on exit. Default: 1800. See [`Config::autosave`].
    pub autosave_interval: u32,
    /// `autosave_on_changes`: whether [`autosave_interval`](Config::autosave_interval) counts
    /// changes rather than seconds. Default: `false`.
    pub autosave_on_changes: bool,

    // ---- Logging ------------------------------------------------------------------------
    /// `log_dest`: where log messages go. Default: standard error.
    pub log_dest: LogDest,
    /// `log_type`: which log messages are written. Default: error, warning, notice,
    /// information.
    pub log_type: LogTypes,
    /// `log_timestamp`: whether log lines start with a timestamp. Default: `true`.
    pub log_timestamp: bool,
    /// `log_timestamp_format`: a `strftime` format for that timestamp. Default: none, seconds
    /// since the Unix epoch.
    pub log_timestamp_format: Option<String>,
    /// `log_facility`: log to syslog facility `local0` to `local7` instead of `daemon`.
    /// Default: none, `daemon`.
    pub log_facility: Option<u8>,
    /// `connection_messages`: whether client connections and disconnections are logged.
    /// Default: `true`.
    pub connection_messages: bool,

    // ---- Process ------------------------------------------------------------------------
    /// `pid_file`: where to write the process id. Default: none.
    pub pid_file: Option<PathBuf>,
    /// `user`: the user to switch to when started as root (Mosquitto falls back to `nobody`
    /// if `mosquitto` does not exist). Default: `mosquitto`.
    pub user: String,

    // ---- About the configuration itself -------------------------------------------------
    /// The configuration files read, main file first, then the `include_dir` files in the
    /// order they were read; empty for [`Config::parse`] and [`Config::default`] text that
    /// has no file name.
    pub files: Vec<PathBuf>,
    /// Deprecated or ignored directives, for the broker to log.
    pub warnings: Vec<ConfigWarning>,
    /// Where each directive was last written, for errors found after parsing (a setting
    /// the broker cannot honour yet names its file and line).
    pub locations: std::collections::HashMap<String, Location>,
}

impl Default for Config {
    /// The configuration of an empty file: local-only mode on port 1883.
    fn default() -> Self {
        parse::Parser::new(&sources::NoSources, Path::new("")).finish()
    }
}

/// When the persistence database is saved, from `autosave_interval` and
/// `autosave_on_changes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Autosave {
    /// Only when the broker exits (or is told to by a signal).
    OnExit,
    /// Every this often.
    Every(Duration),
    /// When this many changes (subscriptions, retained and queued messages) have accumulated.
    AfterChanges(NonZeroU32),
}

impl Config {
    /// Parses configuration text. `origin` names it in errors (the file it came from, say).
    ///
    /// Pure: no file is read, so an `include_dir` line is an error; use [`Config::load`], or
    /// [`Config::load_with`] and [`MemorySources`].
    ///
    /// # Errors
    /// The first error in the text, with its line and directive.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let mut parser = parse::Parser::new(&sources::NoSources, origin);
        parser.source(origin, text.as_bytes(), 0)?;
        Ok(parser.finish())
    }

    /// Reads and parses the configuration file at `path`, and the files its `include_dir`
    /// lines name.
    ///
    /// # Errors
    /// A file that cannot be read, or the first error in the configuration.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, &FsSources)
    }

    /// [`Config::load`], reading files through `sources`.
    ///
    /// # Errors
    /// A file that cannot be read, or the first error in the configuration.
    pub fn load_with(path: &Path, sources: &dyn Sources) -> Result<Config, ConfigError> {
        let text = sources
            .read_file(path)
            .map_err(|e| ConfigError::io(path, e))?;
        let mut parser = parse::Parser::new(sources, path);
        parser.note_file(path);
        parser.source(path, &text, 0)?;
        Ok(parser.finish())
    }

    /// The security settings that apply to the listener at `listener_index` of
    /// [`listeners`](Config::listeners): its own when
    /// [`per_listener_settings`](Config::per_listener_settings) is true, the global ones
    /// otherwise. `None` if there is no such listener.
    pub fn security_for(&self, listener_index: usize) -> Option<&Security> {
        let listener = self.listeners.get(listener_index)?;
        Some(if self.per_listener_settings {
            &listener.security
        } else {
            &self.security
        })
    }

    /// Whether the broker is in local-only mode: no listener configured, so it listens on
    /// the loopback addresses only.
    pub fn is_local_only(&self) -> bool {
        !self.listeners_configured
    }

    /// Applies the `-p PORT` command line options, as Mosquitto 2.0 does: in local-only mode
    /// the broker listens on these ports (on 127.0.0.1 and ::1) instead of 1883; when the
    /// configuration defines listeners, the options are ignored. Repeated ports count once.
    ///
    /// Returns whether the ports were applied.
    ///
    /// # Errors
    /// A port of 0.
    pub fn apply_cli_ports(&mut self, ports: &[u16]) -> Result<bool, ConfigError> {
        if ports.contains(&0) {
            return Err(ConfigError::command_line(
                "-p",
                ConfigErrorKind::BadValue("invalid port 0: expected 1 to 65535".to_owned()),
            ));
        }
        if ports.is_empty() || self.listeners_configured {
            return Ok(false);
        }
        let mut unique: Vec<u16> = Vec::with_capacity(ports.len());
        for &port in ports {
            if !unique.contains(&port) {
                unique.push(port);
            }
        }
        let template = self.listeners.first().cloned().unwrap_or_default();
        self.listeners = local_only_listeners(&template, &unique);
        Ok(true)
    }

    /// `FILE:LINE: DIRECTIVE: ` for an error about `directive`, or `DIRECTIVE: ` when it was
    /// not written in a file.
    pub fn context(&self, directive: &str) -> String {
        match self.locations.get(directive) {
            Some(at) => format!("{}:{}: {directive}: ", at.file.display(), at.line),
            None => format!("{directive}: "),
        }
    }

    /// The path of the persistence database: `persistence_location`, a `/`, then
    /// `persistence_file`, joined as text the way Mosquitto does; just `persistence_file`
    /// without a location.
    pub fn persistence_path(&self) -> PathBuf {
        match &self.persistence_location {
            Some(location) => {
                let mut path = OsString::from(location.as_os_str());
                path.push("/");
                path.push(self.persistence_file.as_os_str());
                PathBuf::from(path)
            }
            None => self.persistence_file.clone(),
        }
    }

    /// When the persistence database is saved.
    pub fn autosave(&self) -> Autosave {
        match (self.autosave_interval, self.autosave_on_changes) {
            (0, _) => Autosave::OnExit,
            (n, false) => Autosave::Every(Duration::from_secs(u64::from(n))),
            (n, true) => NonZeroU32::new(n).map_or(Autosave::OnExit, Autosave::AfterChanges),
        }
    }
}

/// The listeners of local-only mode: `template`'s settings on 127.0.0.1 and ::1, per port.
fn local_only_listeners(template: &Listener, ports: &[u16]) -> Vec<Listener> {
    let mut listeners = Vec::with_capacity(ports.len() * 2);
    for &port in ports {
        for host in ["127.0.0.1", "::1"] {
            listeners.push(Listener {
                port,
                bind: Bind::Host(host.to_owned()),
                defined_at: None,
                ..template.clone()
            });
        }
    }
    listeners
}

#[cfg(test)]
mod tests {
    use std::fs;

    use pigeon_proto::QoS;

    use super::*;

    /// Debian's `/etc/mosquitto/mosquitto.conf` (mosquitto 2.0.11-1.2+deb12u2), verbatim.
    const DEBIAN_DEFAULT: &str = "\
# Place your local configuration in /etc/mosquitto/conf.d/
#
# A full description of the configuration file is at
# /usr/share/doc/mosquitto/examples/mosquitto.conf.example

pid_file /run/mosquitto/mosquitto.pid

persistence true
persistence_location /var/lib/mosquitto/

log_dest file /var/log/mosquitto/mosquitto.log

include_dir /etc/mosquitto/conf.d
";

    #[test]
    fn default_is_an_empty_file_with_mosquitto_defaults() {
        let c = Config::default();
        assert_eq!(c, Config::parse("", Path::new("empty.conf")).unwrap());
        assert!(c.is_local_only());
        assert_eq!(c.listeners.len(), 2);
        assert!(c.security.allow_anonymous);
        assert!(!c.per_listener_settings);
        assert!(c.security.allow_zero_length_clientid);
        assert_eq!(c.security.auto_id_prefix, "auto-");
        assert_eq!(c.max_inflight_messages.map(NonZeroU16::get), Some(20));
        assert_eq!(c.max_queued_messages.map(NonZeroU32::get), Some(1000));
        assert_eq!(c.max_inflight_bytes, None);
        assert_eq!(c.max_queued_bytes, None);
        assert_eq!(c.max_keepalive, 65535);
        assert_eq!(c.max_packet_size, None);
        assert_eq!(c.message_size_limit, None);
        assert_eq!(c.memory_limit, None);
        assert_eq!(c.sys_interval, Some(Duration::from_secs(10)));
        assert_eq!(c.persistent_client_expiration, None);
        assert!(c.retain_available && c.check_retain_source && c.allow_duplicate_messages);
        assert!(!c.queue_qos0_messages && !c.set_tcp_nodelay && !c.upgrade_outgoing_qos);
        assert!(!c.persistence);
        assert_eq!(c.persistence_file, Path::new("mosquitto.db"));
        assert_eq!(c.autosave_interval, 1800);
        assert!(!c.autosave_on_changes);
        assert_eq!(c.log_dest, LogDest::default());
        assert_eq!(c.log_type, LogTypes::DEFAULT);
        assert!(c.log_timestamp && c.connection_messages);
        assert_eq!(c.log_facility, None);
        assert_eq!(c.user, "mosquitto");
        assert!(c.files.is_empty() && c.warnings.is_empty());
        for l in &c.listeners {
            assert_eq!(l.port, DEFAULT_PORT);
            assert_eq!(l.max_qos, QoS::ExactlyOnce);
            assert_eq!(l.max_topic_alias, 10);
        }
    }

    #[test]
    fn debian_default_configuration_parses() {
        let mut sources = MemorySources::new();
        sources
            .add_file("/etc/mosquitto/mosquitto.conf", DEBIAN_DEFAULT)
            .add_file(
                "/etc/mosquitto/conf.d/README",
                "Any files placed in this directory that have a .conf ending will be loaded",
            );
        let c = Config::load_with(Path::new("/etc/mosquitto/mosquitto.conf"), &sources)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.pid_file.as_deref(),
            Some(Path::new("/run/mosquitto/mosquitto.pid"))
        );
        assert!(c.persistence);
        assert_eq!(
            c.persistence_path(),
            Path::new("/var/lib/mosquitto//mosquitto.db")
        );
        assert_eq!(
            c.log_dest,
            LogDest {
                file: Some(PathBuf::from("/var/log/mosquitto/mosquitto.log")),
                ..LogDest::none()
            }
        );
        assert!(c.is_local_only());
        assert!(c.security.allow_anonymous);
        assert_eq!(c.files, [PathBuf::from("/etc/mosquitto/mosquitto.conf")]);
        // Nothing to remark on: persistence is implemented (issue 8).
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert!(c.persistence_sync_acks);

        // With the listener a Debian user typically adds in conf.d.
        sources.add_file(
            "/etc/mosquitto/conf.d/local.conf",
            "listener 1883\nallow_anonymous true\n",
        );
        let c = Config::load_with(Path::new("/etc/mosquitto/mosquitto.conf"), &sources).unwrap();
        assert!(c.listeners_configured);
        assert_eq!(c.listeners.len(), 1);
        assert!(c.security_for(0).unwrap().allow_anonymous);
    }

    #[test]
    fn the_installed_mosquitto_configuration_loads() {
        // Present where the mosquitto package is installed; skipped elsewhere.
        let path = Path::new("/etc/mosquitto/mosquitto.conf");
        if path.exists()
            && let Err(e) = Config::load(path)
        {
            panic!("{e}");
        }
    }

    #[test]
    fn load_reads_the_file_system() {
        let dir = std::env::temp_dir().join(format!("pigeon-config-load-{}", std::process::id()));
        let conf_d = dir.join("conf.d");
        fs::create_dir_all(&conf_d).unwrap();
        let main = dir.join("pigeon.conf");
        fs::write(
            &main,
            format!("user pigeon\ninclude_dir {}\n", conf_d.display()),
        )
        .unwrap();
        fs::write(conf_d.join("b.conf"), "listener 1885\n").unwrap();
        fs::write(conf_d.join("a.conf"), "listener 1884\nmax_qos 1\n").unwrap();
        fs::write(conf_d.join("c.txt"), "bogus\n").unwrap();
        let c = Config::load(&main);
        fs::remove_dir_all(&dir).unwrap();
        let c = c.unwrap_or_else(|e| panic!("{e}"));
        let ports: Vec<u16> = c.listeners.iter().map(|l| l.port).collect();
        assert_eq!(ports, [1884, 1885]);
        assert_eq!(c.listeners[0].max_qos, QoS::AtLeastOnce);
        assert_eq!(c.files.len(), 3);

        let missing = dir.join("missing.conf");
        let e = Config::load(&missing).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("Error: cannot read {}: ", missing.display())),
            "{e}"
        );
        assert!(
            matches!(e.kind(), ConfigErrorKind::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
        );
    }

    #[test]
    fn cli_ports_replace_the_local_only_port() {
        let mut c = Config::parse("max_topic_alias 4", Path::new("t.conf")).unwrap();
        assert!(c.apply_cli_ports(&[1884, 1885, 1884]).unwrap());
        let bound: Vec<(u16, Bind)> = c
            .listeners
            .iter()
            .map(|l| (l.port, l.bind.clone()))
            .collect();
        let host = |h: &str| Bind::Host(h.to_owned());
        assert_eq!(
            bound,
            [
                (1884, host("127.0.0.1")),
                (1884, host("::1")),
                (1885, host("127.0.0.1")),
                (1885, host("::1")),
            ]
        );
        assert!(c.is_local_only());
        assert!(c.security.allow_anonymous);
        assert!(c.listeners.iter().all(|l| l.max_topic_alias == 4));

        // No ports: nothing changes.
        let mut d = Config::default();
        assert!(!d.apply_cli_ports(&[]).unwrap());
        assert_eq!(d, Config::default());
    }

    #[test]
    fn cli_ports_are_ignored_when_listeners_are_configured() {
        for text in ["listener 1883", "port 1884", "bind_address 127.0.0.1"] {
            let mut c = Config::parse(text, Path::new("t.conf")).unwrap();
            let before = c.clone();
            assert!(!c.apply_cli_ports(&[1999]).unwrap(), "{text}");
            assert_eq!(c, before, "{text}");
        }
    }

    #[test]
    fn cli_port_zero_is_an_error() {
        let mut c = Config::default();
        let e = c.apply_cli_ports(&[1884, 0]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Error: -p: invalid port 0: expected 1 to 65535"
        );
        assert_eq!(e.directive(), Some("-p"));
        assert_eq!(c, Config::default());
    }

    #[test]
    fn persistence_path_joins_like_mosquitto() {
        let mut c = Config::default();
        assert_eq!(c.persistence_path(), Path::new("mosquitto.db"));
        c.persistence_location = Some(PathBuf::from("/var/lib/pigeon"));
        c.persistence_file = PathBuf::from("p.db");
        assert_eq!(c.persistence_path(), Path::new("/var/lib/pigeon/p.db"));
    }

    #[test]
    fn autosave_modes() {
        let mut c = Config::default();
        assert_eq!(c.autosave(), Autosave::Every(Duration::from_secs(1800)));
        c.autosave_on_changes = true;
        c.autosave_interval = 100;
        assert_eq!(
            c.autosave(),
            Autosave::AfterChanges(NonZeroU32::new(100).unwrap())
        );
        c.autosave_interval = 0;
        assert_eq!(c.autosave(), Autosave::OnExit);
        c.autosave_on_changes = false;
        assert_eq!(c.autosave(), Autosave::OnExit);
    }

    #[test]
    fn security_for_follows_per_listener_settings() {
        let text = "per_listener_settings true\nlistener 1\nallow_anonymous true\nlistener 2";
        let c = Config::parse(text, Path::new("t.conf")).unwrap();
        assert!(c.security_for(0).unwrap().allow_anonymous);
        assert!(!c.security_for(1).unwrap().allow_anonymous);
        assert!(c.security_for(2).is_none());
        let c = Config::parse(
            "listener 1\nallow_anonymous true\nlistener 2",
            Path::new("t.conf"),
        )
        .unwrap();
        assert!(c.security_for(0).unwrap().allow_anonymous);
        assert!(c.security_for(1).unwrap().allow_anonymous);
    }
}
