//! The parser: lines in, [`Config`] out. Pure; files come through [`Sources`].

use std::collections::HashMap;
use std::num::{NonZeroU16, NonZeroU32, NonZeroU64};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pigeon_proto::{QoS, TopicName};

use super::HttpListener;
use super::error::{ConfigError, ConfigErrorKind as Kind, ConfigWarning, Location};
use super::listener::{
    Bind, DEFAULT_PORT, Listener, ListenerProtocol, Security, SocketDomain, Tls,
};
use super::logging::{LogDest, LogTypes};
use super::sources::{Sources, include_order};
use super::unsupported::{ENGINE, OLD_TLS, unsupported};
use super::{Config, local_only_listeners};

/// The largest PUBLISH payload MQTT allows, the ceiling of `message_size_limit`.
const MAX_PAYLOAD: u32 = 268_435_455;

/// The configuration of an empty file, before listeners are settled by
/// [`Parser::finish`].
fn defaults() -> Config {
    Config {
        listeners: Vec::new(),
        listeners_configured: false,
        per_listener_settings: false,
        security: Security::default(),
        check_retain_source: true,
        clientid_prefixes: None,
        allow_duplicate_messages: true,
        max_inflight_bytes: None,
        max_inflight_messages: NonZeroU16::new(20),
        max_keepalive: u16::MAX,
        max_packet_size: None,
        max_queued_bytes: None,
        max_queued_messages: NonZeroU32::new(1000),
        memory_limit: None,
        message_size_limit: None,
        persistent_client_expiration: None,
        queue_qos0_messages: false,
        retain_available: true,
        set_tcp_nodelay: false,
        sys_interval: Some(Duration::from_secs(10)),
        connect_timeout: Duration::from_secs(60),
        upgrade_outgoing_qos: false,
        websockets_headers_size: None,
        websockets_log_level: 0,
        http_listener: None,
        http_dashboard: true,
        http_tls: Tls {
            prefix: "http_",
            ..Tls::default()
        },
        persistence: false,
        persistence_sync_acks: true,
        persistence_file: PathBuf::from("mosquitto.db"),
        persistence_location: None,
        autosave_interval: 1800,
        autosave_on_changes: false,
        log_dest: LogDest::default(),
        log_type: LogTypes::DEFAULT,
        log_timestamp: true,
        log_timestamp_format: None,
        log_facility: None,
        connection_messages: true,
        pid_file: None,
        user: "mosquitto".to_owned(),
        files: Vec::new(),
        warnings: Vec::new(),
        locations: Default::default(),
    }
}

/// The listener the listener settings of a line apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Cur {
    /// The default listener (`port`, `bind_address`): before any `listener` line of a file.
    Default,
    /// The `listener` block at this index.
    Listener(usize),
}

/// Whose TLS settings a line sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsTarget {
    /// The listener of the block (`certfile`...).
    Listener(Cur),
    /// The HTTP listener (`http_certfile`...).
    Http,
}

/// Whose TLS settings `line` sets: the HTTP listener's for an `http_` directive, the current
/// listener's otherwise.
fn tls_target(line: &Line<'_>, cur: Cur) -> TlsTarget {
    if line.directive.starts_with("http_") {
        TlsTarget::Http
    } else {
        TlsTarget::Listener(cur)
    }
}

/// What a once-only directive is once per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Scope {
    Global,
    Listener(Cur),
}

/// A listener while its block is read: `allow_anonymous` stays unresolved until the end.
#[derive(Debug, Clone, Default)]
struct Draft {
    listener: Listener,
    allow_anonymous: Option<bool>,
}

impl Draft {
    fn resolve(self, allow_anonymous_default: bool) -> Listener {
        let mut listener = self.listener;
        listener.security.allow_anonymous = self.allow_anonymous.unwrap_or(allow_anonymous_default);
        listener
    }
}

/// The state of a parse across the main file and its included files.
pub(crate) struct Parser<'s> {
    sources: &'s dyn Sources,
    main_file: PathBuf,
    cfg: Config,
    global_anonymous: Option<bool>,
    default: Draft,
    explicit: Vec<Draft>,
    /// `port`, for the default listener.
    default_port: Option<u16>,
    /// `bind_address`, for the default listener.
    default_host: Option<String>,
    /// Whether `max_connections` was given a value other than -1 for the default listener.
    default_max_connections_set: bool,
    /// Where each once-only directive was first given.
    seen: HashMap<(Scope, &'static str), Location>,
    log_dest_set: bool,
    log_type_set: bool,
    /// Whether a security setting has been read, after which `per_listener_settings` may no
    /// longer be switched on.
    security_touched: bool,
}

impl<'s> Parser<'s> {
    pub(crate) fn new(sources: &'s dyn Sources, main_file: &Path) -> Parser<'s> {
        Parser {
            sources,
            main_file: main_file.to_path_buf(),
            cfg: defaults(),
            global_anonymous: None,
            default: Draft::default(),
            explicit: Vec::new(),
            default_port: None,
            default_host: None,
            default_max_connections_set: false,
            seen: HashMap::new(),
            log_dest_set: false,
            log_type_set: false,
            security_touched: false,
        }
    }

    /// Records that `path` was read.
    pub(crate) fn note_file(&mut self, path: &Path) {
        self.cfg.files.push(path.to_path_buf());
    }

    /// Parses the content of one file; `depth` is 0 for the main file, 1 for included ones.
    pub(crate) fn source(
        &mut self,
        file: &Path,
        bytes: &[u8],
        depth: u32,
    ) -> Result<(), ConfigError> {
        // As in Mosquitto, every file starts with the default listener as its current one.
        let mut cur = Cur::Default;
        for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let number = index + 1;
            let trimmed = raw.trim_ascii();
            if trimmed.is_empty() || trimmed.starts_with(b"#") {
                continue;
            }
            let text = std::str::from_utf8(trimmed).map_err(|_| {
                let directive = trimmed
                    .split(u8::is_ascii_whitespace)
                    .next()
                    .unwrap_or_default();
                ConfigError::at(
                    file,
                    number,
                    &String::from_utf8_lossy(directive),
                    Kind::BadValue("invalid UTF-8".to_owned()),
                )
            })?;
            let (directive, rest) = match text.find(|c: char| c.is_ascii_whitespace()) {
                Some(at) => (&text[..at], text[at..].trim_ascii_start()),
                None => (text, ""),
            };
            let line = Line {
                file,
                number,
                directive,
                rest,
            };
            self.directive(&line, &mut cur, depth)?;
        }
        Ok(())
    }

    /// Settles the listeners and the `allow_anonymous` defaults.
    pub(crate) fn finish(self) -> Config {
        let Parser {
            mut cfg,
            global_anonymous,
            default,
            explicit,
            default_port,
            default_host,
            default_max_connections_set,
            ..
        } = self;

        let mut listeners: Vec<Listener> = explicit.into_iter().map(|d| d.resolve(false)).collect();

        // Mosquitto opens the default listener when one of these was set for it.
        let d = &default.listener;
        let default_used = default_port.is_some()
            || default_host.is_some()
            || default_max_connections_set
            || d.bind_interface.is_some()
            || d.use_username_as_clientid
            || d.max_qos != QoS::ExactlyOnce
            || d.socket_domain.is_some()
            || d.tls.is_set()
            || d.security.password_file.is_some()
            || !d.security.allow_zero_length_clientid;
        if default_used {
            let mut listener = default.clone().resolve(false);
            listener.port = default_port.unwrap_or(DEFAULT_PORT);
            listener.bind = default_host.map_or(Bind::All, Bind::Host);
            listeners.push(listener);
        }

        cfg.listeners_configured = !listeners.is_empty();
        if !cfg.listeners_configured {
            listeners = local_only_listeners(&default.resolve(true), &[DEFAULT_PORT]);
        }
        cfg.security.allow_anonymous = global_anonymous.unwrap_or(!cfg.listeners_configured);
        cfg.listeners = listeners;
        cfg
    }

    fn draft(&mut self, cur: Cur) -> &mut Draft {
        match cur {
            Cur::Default => &mut self.default,
            Cur::Listener(index) => &mut self.explicit[index],
        }
    }

    fn listener(&mut self, cur: Cur) -> &mut Listener {
        &mut self.draft(cur).listener
    }

    /// Where the security settings of a line go: the current listener when
    /// `per_listener_settings` is on, the global settings otherwise.
    fn security_scope(&self, cur: Cur) -> Scope {
        if self.cfg.per_listener_settings {
            Scope::Listener(cur)
        } else {
            Scope::Global
        }
    }

    fn security(&mut self, scope: Scope) -> (&mut Security, &mut Option<bool>) {
        self.security_touched = true;
        match scope {
            Scope::Global => (&mut self.cfg.security, &mut self.global_anonymous),
            Scope::Listener(cur) => {
                let draft = self.draft(cur);
                (&mut draft.listener.security, &mut draft.allow_anonymous)
            }
        }
    }

    /// Fails if `name` was already given in `scope`; Mosquitto takes such values once.
    fn once(
        &mut self,
        scope: Scope,
        name: &'static str,
        line: &Line<'_>,
    ) -> Result<(), ConfigError> {
        if let Some(first) = self.seen.get(&(scope, name)) {
            return Err(line.error(Kind::Duplicate(first.clone())));
        }
        self.seen.insert((scope, name), line.location());
        Ok(())
    }

    fn warn(&mut self, line: &Line<'_>, message: impl Into<String>) {
        self.cfg.warnings.push(ConfigWarning {
            location: line.location(),
            directive: line.directive.to_owned(),
            message: message.into(),
        });
    }

    /// The rest of the line as one value, warning when it holds what looks like a comment.
    fn string<'l>(
        &mut self,
        line: &Line<'l>,
        expected: &'static str,
    ) -> Result<&'l str, ConfigError> {
        let value = line.string(expected)?;
        self.warn_hash(line, value);
        Ok(value)
    }

    fn warn_hash(&mut self, line: &Line<'_>, value: &str) {
        if value.contains(" #") || value.contains("\t#") {
            self.warn(
                line,
                format!(
                    "the value {value:?} includes the '#': only a '#' starting a line begins a comment"
                ),
            );
        }
    }

    fn directive(&mut self, line: &Line<'_>, cur: &mut Cur, depth: u32) -> Result<(), ConfigError> {
        let cur_scope = Scope::Listener(*cur);
        self.cfg
            .locations
            .insert(line.directive.to_owned(), line.location());
        match line.directive {
            // ---- Listeners --------------------------------------------------------------
            "listener" => self.listener_line(line, cur)?,
            "port" => {
                let port = line.number(1u16, u16::MAX)?;
                self.warn(line, "deprecated: use a listener line instead");
                if self.default_port.is_some() {
                    self.warn(
                        line,
                        "the default listener port is given more than once; the last one is used",
                    );
                }
                self.default_port = Some(port);
            }
            "bind_address" => {
                let host = self.string(line, "an address or host name")?;
                self.once(Scope::Listener(Cur::Default), "bind_address", line)?;
                self.warn(
                    line,
                    "deprecated: use a listener line with an address instead",
                );
                self.default_host = Some(host.to_owned());
            }
            "bind_interface" => {
                let interface = self.string(line, "a network interface name")?;
                self.once(cur_scope, "bind_interface", line)?;
                self.listener(*cur).bind_interface = Some(interface.to_owned());
            }
            "socket_domain" => {
                let domain = match line.one("ipv4 or ipv6")? {
                    "ipv4" => SocketDomain::Ipv4,
                    "ipv6" => SocketDomain::Ipv6,
                    other => return Err(line.bad(format!("expected ipv4 or ipv6, got {other:?}"))),
                };
                self.listener(*cur).socket_domain = Some(domain);
            }
            "protocol" => {
                let protocol = match line.one("mqtt or websockets")? {
                    "mqtt" => ListenerProtocol::Mqtt,
                    "websockets" => ListenerProtocol::WebSockets,
                    other => {
                        return Err(line.bad(format!("expected mqtt or websockets, got {other:?}")));
                    }
                };
                self.listener(*cur).protocol = protocol;
            }
            "http_dir" => {
                let dir = self.string(line, "a directory")?;
                self.once(cur_scope, "http_dir", line)?;
                self.listener(*cur).http_dir = Some(PathBuf::from(dir));
            }
            "websockets_headers_size" => {
                self.cfg.websockets_headers_size = NonZeroU32::new(line.number(0u32, 1 << 20)?);
            }
            "http_listener" => {
                let mut args = line.args();
                let port_token = args
                    .next()
                    .ok_or_else(|| line.error(Kind::MissingArgument("a port number")))?;
                let port = parse_number(port_token, 1, i128::from(u16::MAX))
                    .ok()
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(|| {
                        line.bad(format!(
                            "expected a port number from 1 to 65535, got {port_token:?}"
                        ))
                    })?;
                let host = args.next().unwrap_or("127.0.0.1").to_owned();
                if let Some(extra) = args.next() {
                    return Err(line.error(Kind::TooManyArguments(extra.to_owned())));
                }
                self.once(Scope::Global, "http_listener", line)?;
                self.cfg.http_listener = Some(HttpListener { port, host });
            }
            "http_dashboard" => self.cfg.http_dashboard = line.bool()?,
            "websockets_log_level" => {
                self.cfg.websockets_log_level = line.number(0u32, u32::MAX)?;
            }
            "max_connections" => {
                let token = line.one("a number, or -1 for no limit")?;
                let value = parse_number(token, -1, i128::from(u32::MAX)).map_err(|e| {
                    line.error(match e {
                        Kind::BadValue(_) => Kind::BadValue(format!(
                            "expected -1 (no limit) or a number from 0 to {}, got {token:?}",
                            u32::MAX
                        )),
                        other => other,
                    })
                })?;
                if *cur == Cur::Default {
                    self.default_max_connections_set = value != -1;
                }
                self.listener(*cur).max_connections =
                    u32::try_from(value).ok().and_then(NonZeroU32::new);
            }
            "max_qos" | "maximum_qos" => {
                let qos = line.number(0u8, 2)?;
                self.listener(*cur).max_qos = QoS::from_u8(qos).unwrap_or(QoS::ExactlyOnce);
            }
            "max_topic_alias" => {
                let max = line.number(0u16, u16::MAX)?;
                self.listener(*cur).max_topic_alias = max;
            }
            "mount_point" => {
                if *cur == Cur::Default {
                    return Err(line.error(Kind::OutsideListener));
                }
                let prefix = self.string(line, "a topic prefix")?;
                self.once(cur_scope, "mount_point", line)?;
                let topic = TopicName::try_from(prefix).map_err(|e| {
                    line.bad(format!(
                        "expected a topic prefix without + or # ({e}), got {prefix:?}"
                    ))
                })?;
                self.listener(*cur).mount_point = Some(topic);
            }
            "use_username_as_clientid" => {
                let value = line.bool()?;
                self.listener(*cur).use_username_as_clientid = value;
            }

            // ---- TLS --------------------------------------------------------------------
            // A listener's, or with `http_` the HTTP listener's (`http_certfile`...).
            "certfile" | "http_certfile" => {
                self.tls_path(line, tls_target(line, *cur), "certfile", |t| {
                    &mut t.certfile
                })?;
            }
            "keyfile" | "http_keyfile" => {
                self.tls_path(line, tls_target(line, *cur), "keyfile", |t| &mut t.keyfile)?;
            }
            "cafile" | "http_cafile" => {
                self.tls_path(line, tls_target(line, *cur), "cafile", |t| &mut t.cafile)?;
            }
            "capath" | "http_capath" => {
                self.tls_path(line, tls_target(line, *cur), "capath", |t| &mut t.capath)?;
            }
            "crlfile" | "http_crlfile" => {
                self.tls_path(line, tls_target(line, *cur), "crlfile", |t| &mut t.crlfile)?;
            }
            "require_certificate" | "http_require_certificate" => {
                let value = line.bool()?;
                self.tls_flag(
                    line,
                    tls_target(line, *cur),
                    "require_certificate",
                    |t| &mut t.require_certificate,
                    value,
                );
            }
            "use_identity_as_username" => {
                let value = line.bool()?;
                self.tls_flag(
                    line,
                    TlsTarget::Listener(*cur),
                    "use_identity_as_username",
                    |t| &mut t.use_identity_as_username,
                    value,
                );
            }
            "use_subject_as_username" => {
                let value = line.bool()?;
                self.tls_flag(
                    line,
                    TlsTarget::Listener(*cur),
                    "use_subject_as_username",
                    |t| &mut t.use_subject_as_username,
                    value,
                );
            }
            "tls_version" | "http_tls_version" => {
                let version = match line.one("tlsv1.2 or tlsv1.3")? {
                    v @ ("tlsv1.2" | "tlsv1.3") => v,
                    "tlsv1" | "tlsv1.0" | "tlsv1.1" => {
                        return Err(line.error(Kind::RefusedByRustls(OLD_TLS)));
                    }
                    other => {
                        return Err(line.bad(format!("expected tlsv1.2 or tlsv1.3, got {other:?}")));
                    }
                };
                let tls = self.tls(tls_target(line, *cur));
                tls.tls_version = Some(version.to_owned());
                tls.locations.push(("tls_version", line.location()));
            }
            "ciphers" | "ciphers_tls1.3" | "http_ciphers" | "http_ciphers_tls1.3" => {
                let list = self.string(line, "a cipher list")?.to_owned();
                let tls13 = line.directive.ends_with("ciphers_tls1.3");
                let tls = self.tls(tls_target(line, *cur));
                if tls13 {
                    tls.ciphers_tls13 = Some(list);
                    tls.locations.push(("ciphers_tls1.3", line.location()));
                } else {
                    tls.ciphers = Some(list);
                    tls.locations.push(("ciphers", line.location()));
                }
            }
            "tls_keyform" => match line.one("pem")? {
                // Keys are PEM files: the default, and the only form rustls reads.
                "pem" => {}
                "engine" => return Err(line.error(Kind::RefusedByRustls(ENGINE))),
                other => return Err(line.bad(format!("expected pem or engine, got {other:?}"))),
            },

            // ---- Security ---------------------------------------------------------------
            "per_listener_settings" => {
                let value = line.bool()?;
                if self.security_touched && (value || self.cfg.per_listener_settings) {
                    return Err(line.error(Kind::Misplaced(
                        "must come before every security setting (allow_anonymous, \
                         allow_zero_length_clientid, auto_id_prefix, password_file, acl_file, \
                         acl_subscribe_check, check_retain_source)",
                    )));
                }
                self.cfg.per_listener_settings = value;
            }
            "allow_anonymous" => {
                let value = line.bool()?;
                let scope = self.security_scope(*cur);
                *self.security(scope).1 = Some(value);
            }
            "allow_zero_length_clientid" => {
                let value = line.bool()?;
                let scope = self.security_scope(*cur);
                self.security(scope).0.allow_zero_length_clientid = value;
            }
            "auto_id_prefix" => {
                let prefix = self.string(line, "a client id prefix")?;
                let scope = self.security_scope(*cur);
                self.once(scope, "auto_id_prefix", line)?;
                self.security(scope).0.auto_id_prefix = prefix.to_owned();
            }
            "password_file" => {
                let path = self.string(line, "a file path")?;
                let scope = self.security_scope(*cur);
                self.once(scope, "password_file", line)?;
                self.security(scope).0.password_file = Some(PathBuf::from(path));
            }
            "acl_file" => {
                let path = self.string(line, "a file path")?;
                let scope = self.security_scope(*cur);
                self.once(scope, "acl_file", line)?;
                self.security(scope).0.acl_file = Some(PathBuf::from(path));
            }
            "enhanced_auth_method" => {
                let name = self.string(line, "an authentication method (scram-sha-512)")?;
                let method = match name.to_ascii_uppercase().as_str() {
                    crate::auth::scram::SCRAM_SHA_512 => crate::auth::scram::SCRAM_SHA_512,
                    _ => {
                        return Err(line.error(Kind::BadValue(format!(
                            "unknown authentication method {name:?} (Pigeon offers scram-sha-512)"
                        ))));
                    }
                };
                let scope = self.security_scope(*cur);
                let methods = &mut self.security(scope).0.enhanced_auth_methods;
                if !methods.iter().any(|m| m == method) {
                    methods.push(method.to_owned());
                }
            }
            "acl_subscribe_check" => {
                let value = line.bool()?;
                let scope = self.security_scope(*cur);
                self.security(scope).0.acl_subscribe_check = value;
            }
            "check_retain_source" => {
                // Global, but Mosquitto counts it as a security setting for the
                // `per_listener_settings` order rule.
                self.cfg.check_retain_source = line.bool()?;
                self.security_touched = true;
            }
            "clientid_prefixes" => {
                let prefix = self.string(line, "a client id prefix")?;
                self.once(Scope::Global, "clientid_prefixes", line)?;
                self.warn(line, "deprecated");
                self.cfg.clientid_prefixes = Some(prefix.to_owned());
            }

            // ---- Limits and MQTT behaviour ----------------------------------------------
            "allow_duplicate_messages" => {
                self.cfg.allow_duplicate_messages = line.bool()?;
                self.warn(line, "deprecated, and has no effect");
            }
            "max_inflight_bytes" => {
                self.cfg.max_inflight_bytes = NonZeroU64::new(line.number(0u64, u64::MAX)?);
            }
            "max_inflight_messages" => {
                self.cfg.max_inflight_messages = NonZeroU16::new(line.number(0u16, u16::MAX)?);
            }
            "max_keepalive" => self.cfg.max_keepalive = line.number(10u16, u16::MAX)?,
            "max_packet_size" => {
                self.cfg.max_packet_size = NonZeroU32::new(line.number(20u32, u32::MAX)?);
            }
            "max_queued_bytes" => {
                self.cfg.max_queued_bytes = NonZeroU64::new(line.number(0u64, u64::MAX)?);
            }
            "max_queued_messages" => {
                self.cfg.max_queued_messages = NonZeroU32::new(line.number(0u32, u32::MAX)?);
            }
            "memory_limit" => {
                self.cfg.memory_limit = NonZeroU64::new(line.number(0u64, u64::MAX)?);
                // A limit the broker silently does not keep would be worse than none.
                if self.cfg.memory_limit.is_some() {
                    return Err(line.error(Kind::NotSupportedYet(
                        "the broker does not count its heap yet (issue 9); 0 is accepted",
                    )));
                }
            }
            "message_size_limit" => {
                self.cfg.message_size_limit = NonZeroU32::new(line.number(0u32, MAX_PAYLOAD)?);
                self.warn(line, "max_packet_size is the recommended replacement");
            }
            "persistent_client_expiration" => {
                let token = line.one("a duration such as 2h, 14d, 1w, 3m or 1y")?;
                self.cfg.persistent_client_expiration =
                    Some(parse_expiration(token).map_err(|e| line.error(e))?);
            }
            "queue_qos0_messages" => self.cfg.queue_qos0_messages = line.bool()?,
            "retain_available" => self.cfg.retain_available = line.bool()?,
            "set_tcp_nodelay" => self.cfg.set_tcp_nodelay = line.bool()?,
            // Pigeon's own: seconds a new connection has to send CONNECT.
            "connect_timeout" => {
                let seconds = line.number(1u32, 3600)?;
                self.cfg.connect_timeout = Duration::from_secs(u64::from(seconds));
            }
            "sys_interval" => {
                let seconds = line.number(0u16, u16::MAX)?;
                self.cfg.sys_interval =
                    (seconds != 0).then(|| Duration::from_secs(u64::from(seconds)));
            }
            "upgrade_outgoing_qos" => self.cfg.upgrade_outgoing_qos = line.bool()?,
            "retry_interval" => {
                self.warn(line, "ignored: Mosquitto 2.0 no longer has this option");
            }

            // ---- Persistence ------------------------------------------------------------
            "persistence" | "retained_persistence" => {
                self.cfg.persistence = line.bool()?;
            }
            "persistence_sync_acks" => self.cfg.persistence_sync_acks = line.bool()?,
            "persistence_file" => {
                let name = self.string(line, "a file name")?;
                self.once(Scope::Global, "persistence_file", line)?;
                self.cfg.persistence_file = PathBuf::from(name);
            }
            "persistence_location" => {
                let dir = self.string(line, "a directory")?;
                self.once(Scope::Global, "persistence_location", line)?;
                self.cfg.persistence_location = Some(PathBuf::from(dir));
            }
            "autosave_interval" => self.cfg.autosave_interval = line.number(0u32, u32::MAX)?,
            "autosave_on_changes" => self.cfg.autosave_on_changes = line.bool()?,

            // ---- Logging ----------------------------------------------------------------
            "log_dest" => self.log_dest(line)?,
            "log_type" => {
                let name = line.one("a log type")?;
                let types = LogTypes::from_name(name).ok_or_else(|| {
                    line.bad(format!(
                        "expected debug, error, warning, notice, information, subscribe, \
                         unsubscribe, websockets, internal, none or all, got {name:?}"
                    ))
                })?;
                if !self.log_type_set || types == LogTypes::NONE || types == LogTypes::ALL {
                    self.cfg.log_type = types;
                } else {
                    self.cfg.log_type = self.cfg.log_type.union(types);
                }
                self.log_type_set = true;
            }
            "log_timestamp" => self.cfg.log_timestamp = line.bool()?,
            "log_timestamp_format" => {
                let format = self.string(line, "a strftime format")?;
                self.once(Scope::Global, "log_timestamp_format", line)?;
                self.cfg.log_timestamp_format = Some(format.to_owned());
            }
            "log_facility" => self.cfg.log_facility = Some(line.number(0u8, 7)?),
            "connection_messages" => self.cfg.connection_messages = line.bool()?,

            // ---- Process and files ------------------------------------------------------
            "pid_file" => {
                let path = self.string(line, "a file path")?;
                self.once(Scope::Global, "pid_file", line)?;
                self.cfg.pid_file = Some(PathBuf::from(path));
            }
            "user" => {
                let user = self.string(line, "a user name")?;
                self.once(Scope::Global, "user", line)?;
                user.clone_into(&mut self.cfg.user);
            }
            "include_dir" => self.include_dir(line, depth)?,

            directive => {
                return Err(
                    line.error(unsupported(directive, line.rest).unwrap_or(Kind::UnknownDirective))
                );
            }
        }
        Ok(())
    }

    /// The TLS settings `target` names.
    fn tls(&mut self, target: TlsTarget) -> &mut Tls {
        match target {
            TlsTarget::Listener(cur) => &mut self.listener(cur).tls,
            TlsTarget::Http => &mut self.cfg.http_tls,
        }
    }

    /// A TLS file or directory of the current listener (given once per listener) or of the
    /// HTTP listener (once).
    fn tls_path(
        &mut self,
        line: &Line<'_>,
        target: TlsTarget,
        name: &'static str,
        field: fn(&mut Tls) -> &mut Option<PathBuf>,
    ) -> Result<(), ConfigError> {
        let path = self.string(line, "a file path")?;
        let scope = match target {
            TlsTarget::Listener(cur) => Scope::Listener(cur),
            // No listener directive is once per Global scope under these names.
            TlsTarget::Http => Scope::Global,
        };
        self.once(scope, name, line)?;
        let tls = self.tls(target);
        *field(tls) = Some(PathBuf::from(path));
        tls.locations.push((name, line.location()));
        Ok(())
    }

    /// A TLS switch of the current listener or of the HTTP listener.
    fn tls_flag(
        &mut self,
        line: &Line<'_>,
        target: TlsTarget,
        name: &'static str,
        field: fn(&mut Tls) -> &mut bool,
        value: bool,
    ) {
        let tls = self.tls(target);
        *field(tls) = value;
        tls.locations.push((name, line.location()));
    }

    /// `listener PORT [ADDRESS | UNIX_SOCKET_PATH]`: starts a listener block.
    fn listener_line(&mut self, line: &Line<'_>, cur: &mut Cur) -> Result<(), ConfigError> {
        let mut args = line.args();
        let port_token = args
            .next()
            .ok_or_else(|| line.error(Kind::MissingArgument("a port number")))?;
        let port = parse_number(port_token, 0, i128::from(u16::MAX))
            .ok()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| {
                line.bad(format!(
                    "expected a port number from 0 (for a Unix socket) to 65535, got {port_token:?}"
                ))
            })?;
        let address = args.next();
        if let Some(extra) = args.next() {
            return Err(line.error(Kind::TooManyArguments(extra.to_owned())));
        }
        let bind = match (port, address) {
            (0, None) => {
                return Err(line.bad("port 0 is for a Unix socket: give its path after the port"));
            }
            (0, Some(path)) => Bind::Unix(PathBuf::from(path)),
            (_, Some(host)) => Bind::Host(host.to_owned()),
            (_, None) => Bind::All,
        };
        self.explicit.push(Draft {
            listener: Listener {
                port,
                bind,
                defined_at: Some(line.location()),
                ..Listener::default()
            },
            allow_anonymous: None,
        });
        *cur = Cur::Listener(self.explicit.len() - 1);
        Ok(())
    }

    /// `log_dest stdout | stderr | syslog | topic | none | file PATH`.
    fn log_dest(&mut self, line: &Line<'_>) -> Result<(), ConfigError> {
        let mut args = line.args();
        let kind = args.next().ok_or_else(|| {
            line.error(Kind::MissingArgument(
                "stdout, stderr, syslog, topic, file PATH or none",
            ))
        })?;
        if !self.log_dest_set {
            self.cfg.log_dest = LogDest::none();
            self.log_dest_set = true;
        }
        if kind == "file" {
            let path = line.rest["file".len()..].trim_ascii_start();
            if path.is_empty() {
                return Err(line.error(Kind::MissingArgument("a file path after file")));
            }
            self.warn_hash(line, path);
            self.once(Scope::Global, "log_dest file", line)?;
            self.cfg.log_dest.file = Some(PathBuf::from(path));
            return Ok(());
        }
        if let Some(extra) = args.next() {
            return Err(line.error(Kind::TooManyArguments(extra.to_owned())));
        }
        let dest = &mut self.cfg.log_dest;
        match kind {
            "none" => *dest = LogDest::none(),
            "stdout" => dest.stdout = true,
            "stderr" => dest.stderr = true,
            "syslog" => dest.syslog = true,
            "topic" => dest.topic = true,
            "dlt" => {
                return Err(line.error(Kind::Unsupported(
                    "the DLT (Diagnostic Log and Trace) destination is not available",
                )));
            }
            other => {
                return Err(line.bad(format!(
                    "expected stdout, stderr, syslog, topic, file or none, got {other:?}"
                )));
            }
        }
        Ok(())
    }

    /// `include_dir DIR`: the `.conf` files of `DIR`, read as if written here.
    fn include_dir(&mut self, line: &Line<'_>, depth: u32) -> Result<(), ConfigError> {
        let dir = self.string(line, "a directory")?;
        if depth > 0 {
            self.warn(
                line,
                "ignored: Mosquitto reads include_dir in the main configuration file only",
            );
            return Ok(());
        }
        let dir = Path::new(dir);
        let names = self.sources.list_dir(dir).map_err(|source| {
            line.error(Kind::Io {
                path: dir.to_path_buf(),
                source,
            })
        })?;
        for name in include_order(names) {
            let path = dir.join(name);
            if path == self.main_file {
                return Err(line.error(Kind::Misplaced(
                    "the directory holds the main configuration file, which Mosquitto forbids",
                )));
            }
            let text = self.sources.read_file(&path).map_err(|source| {
                line.error(Kind::Io {
                    path: path.clone(),
                    source,
                })
            })?;
            self.note_file(&path);
            self.source(&path, &text, depth + 1)?;
        }
        Ok(())
    }
}

/// One non-comment line, split into its directive and the rest.
struct Line<'a> {
    file: &'a Path,
    number: usize,
    directive: &'a str,
    /// Everything after the directive, without surrounding blanks; may be empty.
    rest: &'a str,
}

impl<'a> Line<'a> {
    fn location(&self) -> Location {
        Location::new(self.file, self.number)
    }

    fn error(&self, kind: Kind) -> ConfigError {
        ConfigError::at(self.file, self.number, self.directive, kind)
    }

    fn bad(&self, message: impl Into<String>) -> ConfigError {
        self.error(Kind::BadValue(message.into()))
    }

    /// The words of the value, up to a word starting with `#` (Mosquitto ignores what
    /// follows the words it reads).
    fn args(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.rest
            .split_ascii_whitespace()
            .take_while(|word| !word.starts_with('#'))
    }

    /// The value when it is a single word.
    fn one(&self, expected: &'static str) -> Result<&'a str, ConfigError> {
        let mut args = self.args();
        let value = args
            .next()
            .ok_or_else(|| self.error(Kind::MissingArgument(expected)))?;
        if let Some(extra) = args.next() {
            return Err(self.error(Kind::TooManyArguments(extra.to_owned())));
        }
        Ok(value)
    }

    /// The whole rest of the line as one value (a path may hold spaces, and a `#`).
    fn string(&self, expected: &'static str) -> Result<&'a str, ConfigError> {
        if self.rest.is_empty() {
            return Err(self.error(Kind::MissingArgument(expected)));
        }
        Ok(self.rest)
    }

    /// `true` or `false` (Mosquitto also takes `1` and `0`).
    fn bool(&self) -> Result<bool, ConfigError> {
        match self.one("true or false")? {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            other => Err(self.bad(format!("expected true or false, got {other:?}"))),
        }
    }

    /// A whole number from `min` to `max`.
    fn number<T>(&self, min: T, max: T) -> Result<T, ConfigError>
    where
        T: Copy + Into<i128> + TryFrom<i128>,
    {
        let token = self.one("a number")?;
        let value = parse_number(token, min.into(), max.into()).map_err(|e| self.error(e))?;
        T::try_from(value).map_err(|_| self.error(range_error(token, min.into(), max.into())))
    }
}

/// Parses a whole number (an optional sign, then digits) and checks it is in `min..=max`.
fn parse_number(token: &str, min: i128, max: i128) -> Result<i128, Kind> {
    let digits = token.strip_prefix(['-', '+']).unwrap_or(token);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Kind::BadValue(format!("expected a number, got {token:?}")));
    }
    match token.parse::<i128>() {
        Ok(value) if (min..=max).contains(&value) => Ok(value),
        _ => Err(range_error(token, min, max)),
    }
}

fn range_error(token: &str, min: i128, max: i128) -> Kind {
    Kind::BadValue(format!(
        "expected a number from {min} to {max}, got {token}"
    ))
}

/// A `persistent_client_expiration` value: a positive whole number followed by `h` (hours),
/// `d` (days), `w` (weeks), `m` (months of 30 days) or `y` (years of 365 days).
fn parse_expiration(token: &str) -> Result<Duration, Kind> {
    const HOUR: u64 = 3600;
    const DAY: u64 = 24 * HOUR;
    let bad = || {
        Kind::BadValue(format!(
            "expected a number followed by h, d, w, m or y (hours, days, weeks, months of 30 \
             days, years of 365 days), got {token:?}"
        ))
    };
    let unit = token.chars().last().ok_or_else(bad)?;
    let seconds_per_unit = match unit {
        'h' => HOUR,
        'd' => DAY,
        'w' => 7 * DAY,
        'm' => 30 * DAY,
        'y' => 365 * DAY,
        _ => return Err(bad()),
    };
    let digits = &token[..token.len() - unit.len_utf8()];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let count: u64 = digits.parse().map_err(|_| bad())?;
    if count == 0 {
        return Err(Kind::BadValue(format!(
            "the duration must be longer than 0, got {token:?}"
        )));
    }
    count
        .checked_mul(seconds_per_unit)
        .map(Duration::from_secs)
        .ok_or_else(|| Kind::BadValue(format!("the duration is too long, got {token:?}")))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::MemorySources;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.conf"))
    }

    fn ok(text: &str) -> Config {
        parse(text).unwrap_or_else(|e| panic!("{text:?} should parse, got {e}"))
    }

    fn err(text: &str) -> ConfigError {
        match parse(text) {
            Ok(_) => panic!("{text:?} should be refused"),
            Err(e) => e,
        }
    }

    type Check = fn(&Config) -> bool;

    #[test]
    fn global_directives_good_values() {
        let cases: &[(&str, Check)] = &[
            ("allow_anonymous true", |c| c.security.allow_anonymous),
            ("allow_anonymous false", |c| !c.security.allow_anonymous),
            ("allow_anonymous 1", |c| c.security.allow_anonymous),
            ("allow_anonymous 0", |c| !c.security.allow_anonymous),
            ("allow_zero_length_clientid false", |c| {
                !c.security.allow_zero_length_clientid
            }),
            ("auto_id_prefix pigeon-", |c| {
                c.security.auto_id_prefix == "pigeon-"
            }),
            ("auto_id_prefix a b", |c| c.security.auto_id_prefix == "a b"),
            ("password_file /etc/pigeon/pw", |c| {
                c.security.password_file.as_deref() == Some(Path::new("/etc/pigeon/pw"))
            }),
            ("acl_file /etc/pigeon/my acl", |c| {
                c.security.acl_file.as_deref() == Some(Path::new("/etc/pigeon/my acl"))
            }),
            ("allow_duplicate_messages false", |c| {
                !c.allow_duplicate_messages
            }),
            ("autosave_interval 60", |c| c.autosave_interval == 60),
            ("autosave_interval 0", |c| c.autosave_interval == 0),
            ("autosave_on_changes true", |c| c.autosave_on_changes),
            ("check_retain_source false", |c| !c.check_retain_source),
            ("clientid_prefixes secure-", |c| {
                c.clientid_prefixes.as_deref() == Some("secure-")
            }),
            ("connection_messages false", |c| !c.connection_messages),
            ("log_dest stdout", |c| {
                c.log_dest.stdout && !c.log_dest.stderr
            }),
            ("log_dest syslog", |c| {
                c.log_dest.syslog && !c.log_dest.stderr
            }),
            ("log_dest topic", |c| c.log_dest.topic),
            ("log_dest none", |c| c.log_dest.is_none()),
            ("log_dest file /var/log/my log.txt", |c| {
                c.log_dest.file.as_deref() == Some(Path::new("/var/log/my log.txt"))
                    && !c.log_dest.stderr
            }),
            ("log_timestamp false", |c| !c.log_timestamp),
            ("log_timestamp_format %Y-%m-%dT%H:%M:%S", |c| {
                c.log_timestamp_format.as_deref() == Some("%Y-%m-%dT%H:%M:%S")
            }),
            ("log_timestamp_format %Y %m %d", |c| {
                c.log_timestamp_format.as_deref() == Some("%Y %m %d")
            }),
            ("log_facility 0", |c| c.log_facility == Some(0)),
            ("log_facility 7", |c| c.log_facility == Some(7)),
            ("log_type all", |c| c.log_type == LogTypes::ALL),
            ("log_type none", |c| c.log_type == LogTypes::NONE),
            ("log_type subscribe", |c| c.log_type == LogTypes::SUBSCRIBE),
            ("log_type websockets", |c| {
                c.log_type == LogTypes::WEBSOCKETS
            }),
            ("log_type internal", |c| c.log_type == LogTypes::INTERNAL),
            ("max_inflight_bytes 0", |c| c.max_inflight_bytes.is_none()),
            ("max_inflight_bytes 99999999999", |c| {
                c.max_inflight_bytes.map(NonZeroU64::get) == Some(99_999_999_999)
            }),
            ("max_inflight_messages 0", |c| {
                c.max_inflight_messages.is_none()
            }),
            ("max_inflight_messages 1", |c| {
                c.max_inflight_messages.map(NonZeroU16::get) == Some(1)
            }),
            ("max_inflight_messages 65535", |c| {
                c.max_inflight_messages.map(NonZeroU16::get) == Some(65535)
            }),
            ("max_inflight_messages +7", |c| {
                c.max_inflight_messages.map(NonZeroU16::get) == Some(7)
            }),
            ("max_keepalive 10", |c| c.max_keepalive == 10),
            ("max_keepalive 65535", |c| c.max_keepalive == 65535),
            ("max_packet_size 20", |c| {
                c.max_packet_size.map(NonZeroU32::get) == Some(20)
            }),
            ("max_packet_size 4294967295", |c| {
                c.max_packet_size.map(NonZeroU32::get) == Some(u32::MAX)
            }),
            ("max_queued_bytes 0", |c| c.max_queued_bytes.is_none()),
            ("max_queued_bytes 4096", |c| {
                c.max_queued_bytes.map(NonZeroU64::get) == Some(4096)
            }),
            ("max_queued_messages 0", |c| c.max_queued_messages.is_none()),
            ("max_queued_messages 5000", |c| {
                c.max_queued_messages.map(NonZeroU32::get) == Some(5000)
            }),
            ("memory_limit 0", |c| c.memory_limit.is_none()),
            ("message_size_limit 0", |c| c.message_size_limit.is_none()),
            ("message_size_limit 268435455", |c| {
                c.message_size_limit.map(NonZeroU32::get) == Some(268_435_455)
            }),
            ("persistence true", |c| c.persistence),
            ("retained_persistence true", |c| c.persistence),
            ("persistence_sync_acks false", |c| !c.persistence_sync_acks),
            ("persistence_file pigeon.db", |c| {
                c.persistence_file == Path::new("pigeon.db")
            }),
            ("persistence_location /var/lib/pigeon/", |c| {
                c.persistence_location.as_deref() == Some(Path::new("/var/lib/pigeon/"))
            }),
            ("persistent_client_expiration 2h", |c| {
                c.persistent_client_expiration == Some(Duration::from_secs(2 * 3600))
            }),
            ("persistent_client_expiration 14d", |c| {
                c.persistent_client_expiration == Some(Duration::from_secs(14 * 86400))
            }),
            ("persistent_client_expiration 1w", |c| {
                c.persistent_client_expiration == Some(Duration::from_secs(7 * 86400))
            }),
            ("persistent_client_expiration 2m", |c| {
                c.persistent_client_expiration == Some(Duration::from_secs(60 * 86400))
            }),
            ("persistent_client_expiration 1y", |c| {
                c.persistent_client_expiration == Some(Duration::from_secs(365 * 86400))
            }),
            ("pid_file /run/pigeon.pid", |c| {
                c.pid_file.as_deref() == Some(Path::new("/run/pigeon.pid"))
            }),
            ("per_listener_settings true", |c| c.per_listener_settings),
            ("per_listener_settings false", |c| !c.per_listener_settings),
            ("queue_qos0_messages true", |c| c.queue_qos0_messages),
            ("retain_available false", |c| !c.retain_available),
            ("set_tcp_nodelay true", |c| c.set_tcp_nodelay),
            ("sys_interval 0", |c| c.sys_interval.is_none()),
            ("sys_interval 30", |c| {
                c.sys_interval == Some(Duration::from_secs(30))
            }),
            ("upgrade_outgoing_qos true", |c| c.upgrade_outgoing_qos),
            ("user pigeon", |c| c.user == "pigeon"),
            ("retry_interval 20", |c| c.warnings.len() == 1),
            // Layout: blanks around and between words, tabs, and a trailing comment word.
            ("   allow_anonymous    true   ", |c| {
                c.security.allow_anonymous
            }),
            ("allow_anonymous\ttrue", |c| c.security.allow_anonymous),
            ("allow_anonymous true # let everyone in", |c| {
                c.security.allow_anonymous
            }),
            ("max_inflight_messages 5 #five", |c| {
                c.max_inflight_messages.map(NonZeroU16::get) == Some(5)
            }),
        ];
        for (text, check) in cases {
            let config = ok(text);
            assert!(check(&config), "{text:?} gave {config:#?}");
        }
    }

    #[test]
    fn global_directives_bad_values() {
        let cases: &[(&str, &str)] = &[
            (
                "max_inflight_messages ten",
                "Error: test.conf:1: max_inflight_messages: expected a number, got \"ten\"",
            ),
            (
                "max_inflight_messages 70000",
                "Error: test.conf:1: max_inflight_messages: expected a number from 0 to 65535, got 70000",
            ),
            (
                "max_inflight_messages -5",
                "Error: test.conf:1: max_inflight_messages: expected a number from 0 to 65535, got -5",
            ),
            (
                "max_inflight_messages",
                "Error: test.conf:1: max_inflight_messages: missing argument: expected a number",
            ),
            (
                "max_inflight_messages 5 6",
                "Error: test.conf:1: max_inflight_messages: too many arguments: unexpected \"6\"",
            ),
            (
                "max_queued_messages 1.5",
                "Error: test.conf:1: max_queued_messages: expected a number, got \"1.5\"",
            ),
            (
                "max_queued_bytes 99999999999999999999999",
                "Error: test.conf:1: max_queued_bytes: expected a number from 0 to 18446744073709551615, got 99999999999999999999999",
            ),
            (
                "max_inflight_bytes -",
                "Error: test.conf:1: max_inflight_bytes: expected a number, got \"-\"",
            ),
            (
                "allow_anonymous yes",
                "Error: test.conf:1: allow_anonymous: expected true or false, got \"yes\"",
            ),
            (
                "allow_anonymous True",
                "Error: test.conf:1: allow_anonymous: expected true or false, got \"True\"",
            ),
            (
                "allow_anonymous",
                "Error: test.conf:1: allow_anonymous: missing argument: expected true or false",
            ),
            (
                "allow_anonymous true false",
                "Error: test.conf:1: allow_anonymous: too many arguments: unexpected \"false\"",
            ),
            (
                "persistence #true",
                "Error: test.conf:1: persistence: missing argument: expected true or false",
            ),
            (
                "max_keepalive 9",
                "Error: test.conf:1: max_keepalive: expected a number from 10 to 65535, got 9",
            ),
            (
                "max_keepalive 65536",
                "Error: test.conf:1: max_keepalive: expected a number from 10 to 65535, got 65536",
            ),
            (
                "max_packet_size 19",
                "Error: test.conf:1: max_packet_size: expected a number from 20 to 4294967295, got 19",
            ),
            (
                "message_size_limit 268435456",
                "Error: test.conf:1: message_size_limit: expected a number from 0 to 268435455, got 268435456",
            ),
            (
                "memory_limit -1",
                "Error: test.conf:1: memory_limit: expected a number from 0 to 18446744073709551615, got -1",
            ),
            (
                "autosave_interval -5",
                "Error: test.conf:1: autosave_interval: expected a number from 0 to 4294967295, got -5",
            ),
            (
                "sys_interval 65536",
                "Error: test.conf:1: sys_interval: expected a number from 0 to 65535, got 65536",
            ),
            (
                "log_facility 8",
                "Error: test.conf:1: log_facility: expected a number from 0 to 7, got 8",
            ),
            (
                "log_type info",
                "Error: test.conf:1: log_type: expected debug, error, warning, notice, information, subscribe, unsubscribe, websockets, internal, none or all, got \"info\"",
            ),
            (
                "log_type",
                "Error: test.conf:1: log_type: missing argument: expected a log type",
            ),
            (
                "log_type error warning",
                "Error: test.conf:1: log_type: too many arguments: unexpected \"warning\"",
            ),
            (
                "log_dest dlt",
                "Error: test.conf:1: log_dest: not supported by Pigeon: the DLT (Diagnostic Log and Trace) destination is not available",
            ),
            (
                "log_dest file",
                "Error: test.conf:1: log_dest: missing argument: expected a file path after file",
            ),
            (
                "log_dest",
                "Error: test.conf:1: log_dest: missing argument: expected stdout, stderr, syslog, topic, file PATH or none",
            ),
            (
                "log_dest stdout stderr",
                "Error: test.conf:1: log_dest: too many arguments: unexpected \"stderr\"",
            ),
            (
                "log_dest printer",
                "Error: test.conf:1: log_dest: expected stdout, stderr, syslog, topic, file or none, got \"printer\"",
            ),
            (
                "persistent_client_expiration 5",
                "Error: test.conf:1: persistent_client_expiration: expected a number followed by h, d, w, m or y (hours, days, weeks, months of 30 days, years of 365 days), got \"5\"",
            ),
            (
                "persistent_client_expiration 0d",
                "Error: test.conf:1: persistent_client_expiration: the duration must be longer than 0, got \"0d\"",
            ),
            (
                "persistent_client_expiration 99999999999999999y",
                "Error: test.conf:1: persistent_client_expiration: the duration is too long, got \"99999999999999999y\"",
            ),
            (
                "pid_file",
                "Error: test.conf:1: pid_file: missing argument: expected a file path",
            ),
            (
                "persistence   ",
                "Error: test.conf:1: persistence: missing argument: expected true or false",
            ),
            (
                "per_listener_settings yes",
                "Error: test.conf:1: per_listener_settings: expected true or false, got \"yes\"",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(err(text).to_string(), *expected, "for {text:?}");
        }
        // More `persistent_client_expiration` garbage.
        for value in ["1M", "d", "1.5d", "-1d", "h2", "1dd", "1 d"] {
            let text = format!("persistent_client_expiration {value}");
            assert!(
                matches!(
                    err(&text).kind(),
                    Kind::BadValue(_) | Kind::TooManyArguments(_)
                ),
                "{text}"
            );
        }
    }

    #[test]
    fn websockets_listeners() {
        let c = parse(
            "listener 1883\nlistener 8080 127.0.0.1\nprotocol websockets\nhttp_dir /srv/www\n\
             websockets_headers_size 8192\nwebsockets_log_level 255",
        )
        .unwrap();
        assert_eq!(c.listeners[0].protocol, ListenerProtocol::Mqtt);
        assert_eq!(c.listeners[0].http_dir, None);
        assert_eq!(c.listeners[1].protocol, ListenerProtocol::WebSockets);
        assert_eq!(
            c.listeners[1].http_dir.as_deref(),
            Some(Path::new("/srv/www"))
        );
        assert_eq!(c.websockets_headers_size.map(NonZeroU32::get), Some(8192));
        assert_eq!(c.websockets_log_level, 255);
        let c = parse("websockets_headers_size 0").unwrap();
        assert_eq!(c.websockets_headers_size, None);
    }

    #[test]
    fn http_listener() {
        let c = parse("").unwrap();
        assert_eq!(c.http_listener, None);
        assert!(c.http_dashboard);
        let c = parse("http_listener 9090\nhttp_dashboard false").unwrap();
        assert_eq!(
            c.http_listener,
            Some(HttpListener {
                port: 9090,
                host: "127.0.0.1".to_owned()
            })
        );
        assert!(!c.http_dashboard);
        let c = parse("http_listener 9090 0.0.0.0").unwrap();
        assert_eq!(c.http_listener.unwrap().host, "0.0.0.0");
        for (text, error) in [
            (
                "http_listener",
                "Error: test.conf:1: http_listener: missing argument: expected a port number",
            ),
            (
                "http_listener 0",
                "Error: test.conf:1: http_listener: expected a port number from 1 to 65535, got \"0\"",
            ),
            (
                "http_listener 1 a b",
                "Error: test.conf:1: http_listener: too many arguments: unexpected \"b\"",
            ),
            (
                "http_listener 1\nhttp_listener 2",
                "Error: test.conf:2: http_listener: duplicate value: already set at test.conf:1",
            ),
        ] {
            assert_eq!(parse(text).unwrap_err().to_string(), error, "{text}");
        }
    }

    #[test]
    fn http_listener_tls_directives_are_its_own() {
        let c = ok("listener 8883\nhttp_certfile /h.pem\nhttp_keyfile /h.key\n\
                    http_cafile /ca.pem\nhttp_capath /cas\nhttp_crlfile /crl.pem\n\
                    http_require_certificate true\nhttp_tls_version tlsv1.3\n\
                    http_ciphers ECDHE-RSA-AES128-GCM-SHA256\n\
                    http_ciphers_tls1.3 TLS_AES_128_GCM_SHA256\nhttp_listener 9443\n");
        // Not the listener's, whose block they are written in.
        assert!(!c.listeners[0].tls.is_set());
        let tls = &c.http_tls;
        assert_eq!(tls.prefix, "http_");
        assert_eq!(tls.certfile.as_deref(), Some(Path::new("/h.pem")));
        assert_eq!(tls.keyfile.as_deref(), Some(Path::new("/h.key")));
        assert_eq!(tls.cafile.as_deref(), Some(Path::new("/ca.pem")));
        assert_eq!(tls.capath.as_deref(), Some(Path::new("/cas")));
        assert_eq!(tls.crlfile.as_deref(), Some(Path::new("/crl.pem")));
        assert!(tls.require_certificate);
        assert_eq!(tls.tls_version.as_deref(), Some("tlsv1.3"));
        assert_eq!(tls.ciphers.as_deref(), Some("ECDHE-RSA-AES128-GCM-SHA256"));
        assert_eq!(tls.ciphers_tls13.as_deref(), Some("TLS_AES_128_GCM_SHA256"));
        assert_eq!(tls.location("certfile").map(|l| l.line), Some(2));
        assert_eq!(tls.directive("certfile"), "http_certfile");
        // And the listener's own stay its own.
        let c = ok("listener 8883\ncertfile /c.pem\nhttp_certfile /h.pem\n");
        assert_eq!(
            c.listeners[0].tls.certfile.as_deref(),
            Some(Path::new("/c.pem"))
        );
        assert_eq!(c.http_tls.certfile.as_deref(), Some(Path::new("/h.pem")));
        assert!(!ok("").http_tls.is_set());
        for (text, error) in [
            (
                "http_certfile /a\nhttp_certfile /b",
                "Error: test.conf:2: http_certfile: duplicate value: already set at test.conf:1",
            ),
            (
                "http_tls_version tlsv1.1",
                "Error: test.conf:1: http_tls_version: not supported by Pigeon (rustls): rustls supports TLS 1.2 and TLS 1.3 only",
            ),
            (
                "http_use_identity_as_username true",
                "Error: test.conf:1: http_use_identity_as_username: unknown configuration directive",
            ),
        ] {
            assert_eq!(parse(text).unwrap_err().to_string(), error, "{text}");
        }
    }

    #[test]
    fn once_only_directives_refuse_a_second_value() {
        let cases: &[(&str, &str)] = &[
            (
                "user a\nuser b",
                "Error: test.conf:2: user: duplicate value: already set at test.conf:1",
            ),
            (
                "pid_file /a\n\npid_file /b",
                "Error: test.conf:3: pid_file: duplicate value: already set at test.conf:1",
            ),
            (
                "password_file /a\npassword_file /b",
                "Error: test.conf:2: password_file: duplicate value: already set at test.conf:1",
            ),
            (
                "acl_file /a\nlistener 1883\nacl_file /b",
                "Error: test.conf:3: acl_file: duplicate value: already set at test.conf:1",
            ),
            (
                "auto_id_prefix a\nauto_id_prefix b",
                "Error: test.conf:2: auto_id_prefix: duplicate value: already set at test.conf:1",
            ),
            (
                "clientid_prefixes a\nclientid_prefixes b",
                "Error: test.conf:2: clientid_prefixes: duplicate value: already set at test.conf:1",
            ),
            (
                "log_timestamp_format a\nlog_timestamp_format b",
                "Error: test.conf:2: log_timestamp_format: duplicate value: already set at test.conf:1",
            ),
            (
                "persistence_file a\npersistence_file b",
                "Error: test.conf:2: persistence_file: duplicate value: already set at test.conf:1",
            ),
            (
                "persistence_location /a\npersistence_location /b",
                "Error: test.conf:2: persistence_location: duplicate value: already set at test.conf:1",
            ),
            (
                "log_dest file /a\nlog_dest file /b",
                "Error: test.conf:2: log_dest: duplicate value: already set at test.conf:1",
            ),
            (
                "log_dest file /a\nlog_dest none\nlog_dest file /b",
                "Error: test.conf:3: log_dest: duplicate value: already set at test.conf:1",
            ),
            (
                "bind_address 127.0.0.1\nbind_address ::1",
                "Error: test.conf:2: bind_address: duplicate value: already set at test.conf:1",
            ),
            (
                "listener 1883\nbind_interface eth0\nbind_interface eth1",
                "Error: test.conf:3: bind_interface: duplicate value: already set at test.conf:2",
            ),
            (
                "listener 1883\nmount_point a/\nmount_point b/",
                "Error: test.conf:3: mount_point: duplicate value: already set at test.conf:2",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(err(text).to_string(), *expected, "for {text:?}");
        }
        // Repeatable directives: the last value wins (or values add up).
        let c = ok(
            "max_inflight_messages 5\nmax_inflight_messages 6\nallow_anonymous false\nallow_anonymous true",
        );
        assert_eq!(c.max_inflight_messages.map(NonZeroU16::get), Some(6));
        assert!(c.security.allow_anonymous);
    }

    #[test]
    fn tls_directives_belong_to_their_listener() {
        let c = ok(
            "listener 1883\nlistener 8883\ncertfile /c.pem\nkeyfile /k.pem\n\
                    cafile /ca.pem\ncapath /cas\nrequire_certificate true\n\
                    use_identity_as_username true\ntls_version tlsv1.3\n\
                    ciphers ECDHE-RSA-AES128-GCM-SHA256\nciphers_tls1.3 TLS_AES_128_GCM_SHA256\n\
                    crlfile /crl.pem\ntls_keyform pem\nuse_subject_as_username false\n",
        );
        assert!(!c.listeners[0].tls.is_set());
        let tls = &c.listeners[1].tls;
        assert_eq!(tls.certfile.as_deref(), Some(Path::new("/c.pem")));
        assert_eq!(tls.keyfile.as_deref(), Some(Path::new("/k.pem")));
        assert_eq!(tls.cafile.as_deref(), Some(Path::new("/ca.pem")));
        assert_eq!(tls.capath.as_deref(), Some(Path::new("/cas")));
        assert_eq!(tls.crlfile.as_deref(), Some(Path::new("/crl.pem")));
        assert!(tls.require_certificate && tls.use_identity_as_username);
        assert!(!tls.use_subject_as_username);
        assert_eq!(tls.tls_version.as_deref(), Some("tlsv1.3"));
        assert_eq!(tls.ciphers.as_deref(), Some("ECDHE-RSA-AES128-GCM-SHA256"));
        assert_eq!(tls.ciphers_tls13.as_deref(), Some("TLS_AES_128_GCM_SHA256"));
        assert_eq!(tls.location("certfile").map(|l| l.line), Some(3));
        // Before any listener: the default listener, which they open.
        let c = ok("certfile /c.pem\nkeyfile /k.pem\n");
        assert_eq!(c.listeners.len(), 1);
        assert_eq!(c.listeners[0].port, 1883);
        assert!(c.listeners[0].tls.is_set());
    }

    #[test]
    fn unknown_and_unsupported_directives() {
        let cases: &[(&str, &str)] = &[
            (
                "bogus 1",
                "Error: test.conf:1: bogus: unknown configuration directive",
            ),
            (
                "bogus",
                "Error: test.conf:1: bogus: unknown configuration directive",
            ),
            (
                "Allow_anonymous true",
                "Error: test.conf:1: Allow_anonymous: unknown configuration directive",
            ),
            (
                "auth_opt",
                "Error: test.conf:1: auth_opt: unknown configuration directive",
            ),
            (
                "memory_limit 1048576",
                "Error: test.conf:1: memory_limit: not supported yet (the broker does not count \
                 its heap yet (issue 9); 0 is accepted)",
            ),
            (
                "listener 8883\ncertfile /etc/cert.pem\ncertfile /etc/other.pem",
                "Error: test.conf:3: certfile: duplicate value: already set at test.conf:2",
            ),
            (
                "tls_version tlsv1.1",
                "Error: test.conf:1: tls_version: not supported by Pigeon (rustls): rustls supports TLS 1.2 and TLS 1.3 only",
            ),
            (
                "tls_version sslv3",
                "Error: test.conf:1: tls_version: expected tlsv1.2 or tlsv1.3, got \"sslv3\"",
            ),
            (
                "tls_keyform engine",
                "Error: test.conf:1: tls_keyform: not supported by Pigeon (rustls): OpenSSL engines do not exist in rustls",
            ),
            (
                "psk_hint hint",
                "Error: test.conf:1: psk_hint: not supported by Pigeon (rustls): rustls does not implement TLS-PSK (pre-shared keys)",
            ),
            (
                "psk_file /etc/psk",
                "Error: test.conf:1: psk_file: not supported by Pigeon (rustls): rustls does not implement TLS-PSK (pre-shared keys)",
            ),
            (
                "dhparamfile /etc/dh.pem",
                "Error: test.conf:1: dhparamfile: not supported by Pigeon (rustls): rustls has no finite-field Diffie-Hellman key exchange (it uses ECDHE)",
            ),
            (
                "websockets_headers_size many",
                "Error: test.conf:1: websockets_headers_size: expected a number, got \"many\"",
            ),
            (
                "listener 8080\nhttp_dir /a\nhttp_dir /b",
                "Error: test.conf:3: http_dir: duplicate value: already set at test.conf:2",
            ),
            (
                "connection bridge-01",
                "Error: test.conf:1: connection: not supported yet (bridges are not planned yet)",
            ),
            (
                "topic # both 0",
                "Error: test.conf:1: topic: not supported yet (bridges are not planned yet)",
            ),
            (
                "auth_plugin /usr/lib/auth.so",
                "Error: test.conf:1: auth_plugin: not supported by Pigeon: Mosquitto plugins are C libraries built for the Mosquitto process",
            ),
            (
                "plugin_opt_x y",
                "Error: test.conf:1: plugin_opt_x: not supported by Pigeon: Mosquitto plugins are C libraries built for the Mosquitto process",
            ),
            (
                "enable_control_api true",
                "Error: test.conf:1: enable_control_api: not supported yet (a directive of Mosquitto versions after 2.0)",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(err(text).to_string(), *expected, "for {text:?}");
        }
    }

    /// Every directive name in the commented example `mosquitto.conf` that Debian's
    /// mosquitto 2.0.11 package installs (`/usr/share/doc/mosquitto/examples/`), extracted
    /// from its `#directive ...` lines.
    const EXAMPLE_FILE_DIRECTIVES: &[&str] = &[
        "acl_file",
        "address",
        "allow_anonymous",
        "allow_zero_length_clientid",
        "auth_plugin",
        "auto_id_prefix",
        "autosave_interval",
        "autosave_on_changes",
        "bind_interface",
        "bridge_alpn",
        "bridge_attempt_unsubscribe",
        "bridge_bind_address",
        "bridge_cafile",
        "bridge_capath",
        "bridge_certfile",
        "bridge_identity",
        "bridge_insecure",
        "bridge_keyfile",
        "bridge_max_packet_size",
        "bridge_outgoing_retain",
        "bridge_protocol_version",
        "bridge_psk",
        "cafile",
        "capath",
        "certfile",
        "check_retain_source",
        "ciphers",
        "ciphers_tls1.3",
        "cleansession",
        "clientid_prefixes",
        "connection",
        "connection_messages",
        "crlfile",
        "dhparamfile",
        "http_dir",
        "idle_timeout",
        "include_dir",
        "keepalive_interval",
        "keyfile",
        "listener",
        "local_clientid",
        "log_dest",
        "log_facility",
        "log_timestamp",
        "log_timestamp_format",
        "log_type",
        "max_connections",
        "max_inflight_bytes",
        "max_inflight_messages",
        "max_keepalive",
        "max_packet_size",
        "max_qos",
        "max_queued_bytes",
        "max_queued_messages",
        "memory_limit",
        "message_size_limit",
        "mount_point",
        "notification_topic",
        "notifications",
        "password_file",
        "per_listener_settings",
        "persistence",
        "persistence_file",
        "persistence_location",
        "persistent_client_expiration",
        "pid_file",
        "protocol",
        "psk_file",
        "psk_hint",
        "queue_qos0_messages",
        "remote_clientid",
        "remote_password",
        "remote_username",
        "require_certificate",
        "restart_timeout",
        "retain_available",
        "round_robin",
        "set_tcp_nodelay",
        "socket_domain",
        "start_type",
        "sys_interval",
        "threshold",
        "topic",
        "try_private",
        "upgrade_outgoing_qos",
        "use_identity_as_username",
        "use_username_as_clientid",
        "user",
        "websockets_headers_size",
        "websockets_log_level",
    ];

    /// Every directive the `mosquitto.conf(5)` manual of Mosquitto 2.0.11 documents
    /// (`auth_opt_*` stands for any name with that prefix).
    const MANUAL_DIRECTIVES: &[&str] = &[
        "acl_file",
        "address",
        "addresses",
        "allow_anonymous",
        "allow_duplicate_messages",
        "allow_zero_length_clientid",
        "auth_opt_db_host",
        "auth_plugin",
        "auth_plugin_deny_special_chars",
        "auto_id_prefix",
        "autosave_interval",
        "autosave_on_changes",
        "bind_address",
        "bind_interface",
        "bridge_alpn",
        "bridge_attempt_unsubscribe",
        "bridge_bind_address",
        "bridge_cafile",
        "bridge_capath",
        "bridge_certfile",
        "bridge_identity",
        "bridge_insecure",
        "bridge_keyfile",
        "bridge_max_packet_size",
        "bridge_outgoing_retain",
        "bridge_protocol_version",
        "bridge_psk",
        "bridge_require_ocsp",
        "bridge_tls_version",
        "cafile",
        "capath",
        "certfile",
        "check_retain_source",
        "ciphers",
        "ciphers_tls1.3",
        "cleansession",
        "clientid_prefixes",
        "connection",
        "connection_messages",
        "crlfile",
        "dhparamfile",
        "http_dir",
        "idle_timeout",
        "include_dir",
        "keepalive_interval",
        "keyfile",
        "listener",
        "local_cleansession",
        "local_clientid",
        "local_password",
        "local_username",
        "log_dest",
        "log_facility",
        "log_timestamp",
        "log_timestamp_format",
        "log_type",
        "max_connections",
        "max_inflight_bytes",
        "max_inflight_messages",
        "max_keepalive",
        "max_packet_size",
        "max_qos",
        "max_queued_bytes",
        "max_queued_messages",
        "max_topic_alias",
        "memory_limit",
        "message_size_limit",
        "mount_point",
        "notification_topic",
        "notifications",
        "notifications_local_only",
        "password_file",
        "per_listener_settings",
        "persistence",
        "persistence_file",
        "persistence_location",
        "persistent_client_expiration",
        "pid_file",
        "port",
        "protocol",
        "psk_file",
        "psk_hint",
        "queue_qos0_messages",
        "remote_clientid",
        "remote_password",
        "remote_username",
        "require_certificate",
        "restart_timeout",
        "retain_available",
        "round_robin",
        "set_tcp_nodelay",
        "socket_domain",
        "start_type",
        "sys_interval",
        "threshold",
        "tls_engine",
        "tls_engine_kpass_sha1",
        "tls_keyform",
        "tls_version",
        "topic",
        "try_private",
        "upgrade_outgoing_qos",
        "use_identity_as_username",
        "use_subject_as_username",
        "use_username_as_clientid",
        "user",
        "websockets_headers_size",
        "websockets_log_level",
    ];

    /// Names Mosquitto 2.0.11 accepts without documenting them: aliases and leftovers.
    const UNDOCUMENTED_DIRECTIVES: &[&str] = &[
        "clientid",
        "password",
        "username",
        "maximum_qos",
        "retained_persistence",
        "plugin",
        "plugin_opt_x",
        "retry_interval",
    ];

    #[test]
    fn every_mosquitto_directive_is_recognised() {
        let names = EXAMPLE_FILE_DIRECTIVES
            .iter()
            .chain(MANUAL_DIRECTIVES)
            .chain(UNDOCUMENTED_DIRECTIVES);
        for name in names {
            // With and without a value, at top level and in a listener block: never unknown.
            for text in [
                (*name).to_owned(),
                format!("{name} 1"),
                format!("listener 1883\n{name} 1"),
            ] {
                if let Err(e) = parse(&text) {
                    assert!(
                        !matches!(e.kind(), Kind::UnknownDirective),
                        "{name} is a Mosquitto directive: {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn comments_blank_lines_and_line_numbers() {
        let c = ok("# comment\n\n   # indented comment\r\n\t\nallow_anonymous true\r\n#end");
        assert!(c.security.allow_anonymous);
        let e = err("# one\n\n# three\nbogus\n");
        assert_eq!(e.line(), Some(4));
        assert_eq!(e.directive(), Some("bogus"));
        assert_eq!(e.file(), Some(Path::new("test.conf")));
        // CRLF line ends do not leak into values.
        let c = ok("pid_file /run/p.pid\r\nuser me\r\n");
        assert_eq!(c.pid_file.as_deref(), Some(Path::new("/run/p.pid")));
        assert_eq!(c.user, "me");
    }

    #[test]
    fn hash_inside_a_value_is_part_of_it() {
        // As in Mosquitto: only a `#` starting a line begins a comment.
        let c = ok("password_file /etc/pw # old file");
        assert_eq!(
            c.security.password_file.as_deref(),
            Some(Path::new("/etc/pw # old file"))
        );
        assert_eq!(c.warnings.len(), 1);
        assert!(
            c.warnings[0]
                .to_string()
                .starts_with("Warning: test.conf:1: password_file: ")
        );
        let c = ok("auto_id_prefix #1-");
        assert_eq!(c.security.auto_id_prefix, "#1-");
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn invalid_utf8_is_refused_except_in_comments() {
        let mut m = MemorySources::new();
        m.add_file("/c/ok.conf", b"# caf\xe9\nallow_anonymous true\n".to_vec());
        m.add_file("/c/bad.conf", b"\nuser caf\xe9\n".to_vec());
        assert!(Config::load_with(Path::new("/c/ok.conf"), &m).is_ok());
        let e = Config::load_with(Path::new("/c/bad.conf"), &m).unwrap_err();
        assert_eq!(e.to_string(), "Error: /c/bad.conf:2: user: invalid UTF-8");
    }

    #[test]
    fn logging_directives_accumulate() {
        let c = ok("");
        assert_eq!(c.log_dest, LogDest::default());
        assert_eq!(c.log_type, LogTypes::DEFAULT);
        // The first line replaces the default, the next ones add.
        let c = ok("log_dest stdout\nlog_dest file /var/log/p.log\nlog_type error\nlog_type debug");
        assert!(c.log_dest.stdout && !c.log_dest.stderr);
        assert_eq!(
            c.log_dest.file.as_deref(),
            Some(Path::new("/var/log/p.log"))
        );
        assert_eq!(c.log_type, LogTypes::ERROR.union(LogTypes::DEBUG));
        // `none` clears what came before; later lines add again.
        let c = ok(
            "log_dest stdout\nlog_dest none\nlog_dest syslog\nlog_type all\nlog_type none\nlog_type notice",
        );
        assert_eq!(
            c.log_dest,
            LogDest {
                syslog: true,
                ..LogDest::none()
            }
        );
        assert_eq!(c.log_type, LogTypes::NOTICE);
    }

    #[test]
    fn warnings_for_deprecated_directives() {
        let c = ok(
            "allow_duplicate_messages true\nclientid_prefixes x\nmessage_size_limit 10\nretry_interval 5",
        );
        let lines: Vec<usize> = c.warnings.iter().map(|w| w.location.line).collect();
        assert_eq!(lines, [1, 2, 3, 4]);
        assert_eq!(
            c.warnings[3].to_string(),
            "Warning: test.conf:4: retry_interval: ignored: Mosquitto 2.0 no longer has this option"
        );
    }

    // ---- Listeners ------------------------------------------------------------------------

    fn hosts(c: &Config) -> Vec<(u16, Bind)> {
        c.listeners
            .iter()
            .map(|l| (l.port, l.bind.clone()))
            .collect()
    }

    fn host(h: &str) -> Bind {
        Bind::Host(h.to_owned())
    }

    #[test]
    fn no_listener_means_local_only_with_anonymous_clients() {
        let c = ok("# nothing\nlog_type all");
        assert!(!c.listeners_configured);
        assert!(c.is_local_only());
        assert_eq!(hosts(&c), [(1883, host("127.0.0.1")), (1883, host("::1"))]);
        assert!(c.security.allow_anonymous);
        assert!(c.listeners.iter().all(|l| l.defined_at.is_none()));
    }

    #[test]
    fn a_listener_disables_anonymous_clients_by_default() {
        let c = ok("listener 1883");
        assert!(c.listeners_configured);
        assert_eq!(hosts(&c), [(1883, Bind::All)]);
        assert!(!c.security.allow_anonymous);
        assert_eq!(
            c.listeners[0].defined_at,
            Some(Location::new(Path::new("test.conf"), 1))
        );
        let c = ok("listener 1883\nallow_anonymous true");
        assert!(c.security.allow_anonymous);
    }

    #[test]
    fn explicit_allow_anonymous_false_is_obeyed_in_local_only_mode() {
        // Mosquitto 2.0.11 ignores it; Pigeon does not let anonymous clients in.
        let c = ok("allow_anonymous false");
        assert!(c.is_local_only());
        assert!(!c.security.allow_anonymous);
    }

    #[test]
    fn listener_settings_apply_to_their_block() {
        let c = ok("\
max_keepalive 60
listener 8883 127.0.0.1
max_connections 10
socket_domain ipv4
use_username_as_clientid true
listener 1884 ::
max_qos 1
max_topic_alias 0
bind_interface eth0
mount_point tenant/a/
protocol mqtt
listener 0 /run/pigeon.sock
max_connections -1
socket_domain ipv6
");
        assert_eq!(
            hosts(&c),
            [
                (8883, host("127.0.0.1")),
                (1884, host("::")),
                (0, Bind::Unix(PathBuf::from("/run/pigeon.sock")))
            ]
        );
        let [a, b, u] = &c.listeners[..] else {
            panic!("three listeners expected");
        };
        assert_eq!(a.max_connections.map(NonZeroU32::get), Some(10));
        assert_eq!(a.socket_domain, Some(SocketDomain::Ipv4));
        assert!(a.use_username_as_clientid);
        assert_eq!(a.max_qos, QoS::ExactlyOnce);
        assert_eq!(a.max_topic_alias, 10);
        assert_eq!(b.max_qos, QoS::AtLeastOnce);
        assert_eq!(b.max_topic_alias, 0);
        assert_eq!(b.bind_interface.as_deref(), Some("eth0"));
        assert_eq!(
            b.mount_point.as_ref().map(TopicName::as_str),
            Some("tenant/a/")
        );
        assert_eq!(b.max_connections, None);
        assert!(!b.use_username_as_clientid);
        assert_eq!(u.max_connections, None);
        assert_eq!(u.socket_domain, Some(SocketDomain::Ipv6));
        assert_eq!(c.max_keepalive, 60);
        assert_eq!(b.defined_at.as_ref().map(|l| l.line), Some(6));
        // The same once-only setting in two blocks is fine.
        let c = ok(
            "listener 1\nmount_point a/\nbind_interface lo\nlistener 2\nmount_point b/\nbind_interface lo",
        );
        assert_eq!(c.listeners.len(), 2);
    }

    #[test]
    fn listener_directive_values() {
        let cases: &[(&str, &str)] = &[
            (
                "listener",
                "Error: test.conf:1: listener: missing argument: expected a port number",
            ),
            (
                "listener 0",
                "Error: test.conf:1: listener: port 0 is for a Unix socket: give its path after the port",
            ),
            (
                "listener 70000",
                "Error: test.conf:1: listener: expected a port number from 0 (for a Unix socket) to 65535, got \"70000\"",
            ),
            (
                "listener abc",
                "Error: test.conf:1: listener: expected a port number from 0 (for a Unix socket) to 65535, got \"abc\"",
            ),
            (
                "listener 1883 127.0.0.1 extra",
                "Error: test.conf:1: listener: too many arguments: unexpected \"extra\"",
            ),
            (
                "listener 1\nmax_connections many",
                "Error: test.conf:2: max_connections: expected -1 (no limit) or a number from 0 to 4294967295, got \"many\"",
            ),
            (
                "listener 1\nmax_connections -2",
                "Error: test.conf:2: max_connections: expected -1 (no limit) or a number from 0 to 4294967295, got \"-2\"",
            ),
            (
                "listener 1\nmax_qos 3",
                "Error: test.conf:2: max_qos: expected a number from 0 to 2, got 3",
            ),
            (
                "listener 1\nmax_topic_alias 65536",
                "Error: test.conf:2: max_topic_alias: expected a number from 0 to 65535, got 65536",
            ),
            (
                "listener 1\nsocket_domain ipv5",
                "Error: test.conf:2: socket_domain: expected ipv4 or ipv6, got \"ipv5\"",
            ),
            (
                "listener 1\nprotocol mqttsn",
                "Error: test.conf:2: protocol: expected mqtt or websockets, got \"mqttsn\"",
            ),
            (
                "listener 1\nuse_username_as_clientid yes",
                "Error: test.conf:2: use_username_as_clientid: expected true or false, got \"yes\"",
            ),
            (
                "listener 1\nbind_interface",
                "Error: test.conf:2: bind_interface: missing argument: expected a network interface name",
            ),
            (
                "mount_point tenant/",
                "Error: test.conf:1: mount_point: only allowed after a listener directive",
            ),
            (
                "listener 1\nmount_point tenant/#",
                "Error: test.conf:2: mount_point: expected a topic prefix without + or # (topic name contains a wildcard character), got \"tenant/#\"",
            ),
            (
                "port 0",
                "Error: test.conf:1: port: expected a number from 1 to 65535, got 0",
            ),
            (
                "bind_address",
                "Error: test.conf:1: bind_address: missing argument: expected an address or host name",
            ),
        ];
        for (text, expected) in cases {
            let e = err(text);
            if text.contains("tenant/#") {
                // The topic error text belongs to pigeon-proto; check the frame only.
                let s = e.to_string();
                assert!(
                    s.starts_with(
                        "Error: test.conf:2: mount_point: expected a topic prefix without + or # ("
                    ),
                    "{s}"
                );
                assert!(s.ends_with("got \"tenant/#\""), "{s}");
                continue;
            }
            assert_eq!(e.to_string(), *expected, "for {text:?}");
        }
        // A `#` word after the address starts a comment, as Mosquitto ignores it.
        let c = ok("listener 1883 127.0.0.1 # loopback only\nlistener 1884 #all");
        assert_eq!(hosts(&c), [(1883, host("127.0.0.1")), (1884, Bind::All)]);
    }

    #[test]
    fn port_and_bind_address_configure_the_default_listener() {
        let c = ok("port 1884");
        assert!(c.listeners_configured);
        assert_eq!(hosts(&c), [(1884, Bind::All)]);
        assert!(!c.security.allow_anonymous);
        assert_eq!(c.listeners[0].defined_at, None);
        assert_eq!(c.warnings.len(), 1);

        let c = ok("bind_address 127.0.0.1");
        assert_eq!(hosts(&c), [(1883, host("127.0.0.1"))]);

        let c = ok("bind_address localhost\nport 1885\nport 1886");
        assert_eq!(hosts(&c), [(1886, host("localhost"))]);
        assert!(
            c.warnings
                .iter()
                .any(|w| w.message.contains("more than once"))
        );

        // The default listener comes after the listener blocks, as Mosquitto opens them.
        let c = ok("port 1885\nlistener 1884\nmax_qos 1");
        assert_eq!(hosts(&c), [(1884, Bind::All), (1885, Bind::All)]);
        assert_eq!(c.listeners[0].max_qos, QoS::AtLeastOnce);
        assert_eq!(c.listeners[1].max_qos, QoS::ExactlyOnce);
    }

    #[test]
    fn listener_settings_before_any_listener_open_the_default_listener() {
        // Settings Mosquitto treats as asking for the default listener.
        for text in [
            "max_connections 10",
            "max_connections 0",
            "max_qos 1",
            "socket_domain ipv4",
            "bind_interface lo",
            "use_username_as_clientid true",
            "per_listener_settings true\npassword_file /p",
            "per_listener_settings true\nallow_zero_length_clientid false",
        ] {
            let c = ok(text);
            assert!(c.listeners_configured, "{text}");
            assert_eq!(hosts(&c), [(1883, Bind::All)], "{text}");
            // Unlike Mosquitto 2.0.11, which would let anonymous clients in here.
            assert!(!c.security_for(0).unwrap().allow_anonymous, "{text}");
        }
        // Settings that do not: the broker stays local only, and they apply there.
        for text in [
            "max_connections -1",
            "max_qos 2",
            "max_topic_alias 5",
            "use_username_as_clientid false",
            "per_listener_settings true\nacl_file /acl",
            "per_listener_settings true\nallow_anonymous false",
        ] {
            let c = ok(text);
            assert!(c.is_local_only(), "{text}");
            assert_eq!(c.listeners.len(), 2, "{text}");
        }
        let c = ok("max_topic_alias 5");
        assert!(c.listeners.iter().all(|l| l.max_topic_alias == 5));
        let c = ok("per_listener_settings true\nacl_file /acl\nallow_anonymous false");
        for l in &c.listeners {
            assert_eq!(l.security.acl_file.as_deref(), Some(Path::new("/acl")));
            assert!(!l.security.allow_anonymous);
        }
        // With listener blocks too, the default listener is added after them.
        let c = ok("max_connections 5\nlistener 1884");
        assert_eq!(hosts(&c), [(1884, Bind::All), (1883, Bind::All)]);
        assert_eq!(c.listeners[1].max_connections.map(NonZeroU32::get), Some(5));
        assert_eq!(c.listeners[0].max_connections, None);
    }

    // ---- per_listener_settings --------------------------------------------------------------

    #[test]
    fn without_per_listener_settings_security_is_global() {
        let c = ok("\
listener 1883
allow_anonymous true
password_file /etc/pw
listener 1884
acl_file /etc/acl
allow_zero_length_clientid false
auto_id_prefix p-
");
        assert!(!c.per_listener_settings);
        let global = &c.security;
        assert!(global.allow_anonymous);
        assert_eq!(global.password_file.as_deref(), Some(Path::new("/etc/pw")));
        assert_eq!(global.acl_file.as_deref(), Some(Path::new("/etc/acl")));
        assert!(!global.allow_zero_length_clientid);
        assert_eq!(global.auto_id_prefix, "p-");
        for i in 0..2 {
            assert_eq!(c.security_for(i), Some(global));
            assert_eq!(c.listeners[i].security.password_file, None);
        }
        assert_eq!(c.security_for(2), None);
        // Global, so once for the whole file.
        assert_eq!(
            err("listener 1\npassword_file /a\nlistener 2\npassword_file /b").to_string(),
            "Error: test.conf:4: password_file: duplicate value: already set at test.conf:2"
        );
    }

    #[test]
    fn with_per_listener_settings_security_is_per_listener() {
        let c = ok("\
per_listener_settings true
listener 1883
allow_anonymous true
password_file /etc/pw1
listener 1884
password_file /etc/pw2
auto_id_prefix second-
acl_file /etc/acl2
");
        assert!(c.per_listener_settings);
        let first = c.security_for(0).unwrap();
        assert!(first.allow_anonymous);
        assert_eq!(first.password_file.as_deref(), Some(Path::new("/etc/pw1")));
        assert_eq!(first.auto_id_prefix, "auto-");
        assert_eq!(first.acl_file, None);
        let second = c.security_for(1).unwrap();
        assert!(!second.allow_anonymous);
        assert_eq!(second.password_file.as_deref(), Some(Path::new("/etc/pw2")));
        assert_eq!(second.auto_id_prefix, "second-");
        assert_eq!(second.acl_file.as_deref(), Some(Path::new("/etc/acl2")));
        assert_eq!(c.security.password_file, None);
        // Once per listener.
        assert_eq!(
            err("per_listener_settings true\nlistener 1\nacl_file /a\nacl_file /b").to_string(),
            "Error: test.conf:4: acl_file: duplicate value: already set at test.conf:3"
        );
    }

    #[test]
    fn per_listener_settings_security_before_a_listener_goes_to_the_default_listener() {
        let c = ok("per_listener_settings true\npassword_file /etc/pw\nlistener 1884");
        assert_eq!(hosts(&c), [(1884, Bind::All), (1883, Bind::All)]);
        assert_eq!(c.security_for(0).unwrap().password_file, None);
        assert_eq!(
            c.security_for(1).unwrap().password_file.as_deref(),
            Some(Path::new("/etc/pw"))
        );
    }

    #[test]
    fn enhanced_auth_method_names_a_known_method() {
        let c = parse("enhanced_auth_method scram-sha-512\nenhanced_auth_method SCRAM-SHA-512")
            .unwrap();
        assert_eq!(c.security.enhanced_auth_methods, ["SCRAM-SHA-512"]);
        assert_eq!(
            err("enhanced_auth_method kerberos").to_string(),
            "Error: test.conf:1: enhanced_auth_method: unknown authentication method \"kerberos\" \
             (Pigeon offers scram-sha-512)"
        );
    }

    #[test]
    fn per_listener_settings_must_come_first() {
        let message = "per_listener_settings: must come before every security setting \
                       (allow_anonymous, allow_zero_length_clientid, auto_id_prefix, \
                       password_file, acl_file, acl_subscribe_check, check_retain_source)";
        for (text, line) in [
            ("allow_anonymous true\nper_listener_settings true", 2),
            (
                "listener 1\npassword_file /p\nper_listener_settings true",
                3,
            ),
            ("check_retain_source false\nper_listener_settings true", 2),
            (
                "per_listener_settings true\nacl_file /a\nper_listener_settings true",
                3,
            ),
            (
                "per_listener_settings true\nacl_file /a\nper_listener_settings false",
                3,
            ),
        ] {
            assert_eq!(
                err(text).to_string(),
                format!("Error: test.conf:{line}: {message}"),
                "{text}"
            );
        }
        // Switching it off (or leaving it off) later is harmless.
        assert!(!ok("allow_anonymous true\nper_listener_settings false").per_listener_settings);
        assert!(
            !ok("per_listener_settings true\nper_listener_settings false\nlistener 1")
                .per_listener_settings
        );
        // Non-security settings may come first.
        assert!(
            ok("user u\nlistener 1\nmax_qos 1\nper_listener_settings true").per_listener_settings
        );
    }

    // ---- include_dir --------------------------------------------------------------------------

    fn sources(main: &str, files: &[(&str, &str)]) -> MemorySources {
        let mut m = MemorySources::new();
        m.add_file("/etc/pigeon/pigeon.conf", main);
        m.add_dir("/etc/pigeon/conf.d");
        for (path, text) in files {
            m.add_file(*path, *text);
        }
        m
    }

    fn load(m: &MemorySources) -> Result<Config, ConfigError> {
        Config::load_with(Path::new("/etc/pigeon/pigeon.conf"), m)
    }

    #[test]
    fn include_dir_reads_conf_files_in_mosquitto_order() {
        let m = sources(
            "user pigeon\ninclude_dir /etc/pigeon/conf.d\nlog_type debug",
            &[
                ("/etc/pigeon/conf.d/b.conf", "listener 1886"),
                ("/etc/pigeon/conf.d/A.conf", "listener 1884"),
                ("/etc/pigeon/conf.d/a.conf", "listener 1885"),
                ("/etc/pigeon/conf.d/00.conf", "allow_anonymous true"),
                ("/etc/pigeon/conf.d/README", "not a configuration file"),
                ("/etc/pigeon/conf.d/old.conf.bak", "bogus"),
            ],
        );
        let c = load(&m).unwrap();
        let ports: Vec<u16> = c.listeners.iter().map(|l| l.port).collect();
        assert_eq!(ports, [1884, 1885, 1886]);
        assert!(c.security.allow_anonymous);
        assert_eq!(c.user, "pigeon");
        assert_eq!(c.log_type, LogTypes::DEBUG);
        let files: Vec<&str> = c.files.iter().filter_map(|f| f.to_str()).collect();
        assert_eq!(
            files,
            [
                "/etc/pigeon/pigeon.conf",
                "/etc/pigeon/conf.d/00.conf",
                "/etc/pigeon/conf.d/A.conf",
                "/etc/pigeon/conf.d/a.conf",
                "/etc/pigeon/conf.d/b.conf",
            ]
        );
        assert_eq!(
            c.listeners[1].defined_at,
            Some(Location::new(Path::new("/etc/pigeon/conf.d/a.conf"), 1))
        );
    }

    #[test]
    fn several_include_dirs_are_read_in_turn() {
        // The example of the mosquitto.conf manual.
        let mut m = sources("include_dir /one.d\ninclude_dir /two.d", &[]);
        m.add_file("/one.d/B.conf", "listener 2")
            .add_file("/one.d/C.conf", "listener 3")
            .add_file("/two.d/A.conf", "listener 1")
            .add_file("/two.d/D.conf", "listener 4");
        let ports: Vec<u16> = load(&m).unwrap().listeners.iter().map(|l| l.port).collect();
        assert_eq!(ports, [2, 3, 1, 4]);
    }

    #[test]
    fn errors_in_included_files_name_that_file() {
        let m = sources(
            "include_dir /etc/pigeon/conf.d",
            &[("/etc/pigeon/conf.d/x.conf", "# x\n\nbogus 1\n")],
        );
        assert_eq!(
            load(&m).unwrap_err().to_string(),
            "Error: /etc/pigeon/conf.d/x.conf:3: bogus: unknown configuration directive"
        );
        // Once-only values are once across files.
        let m = sources(
            "pid_file /a\ninclude_dir /etc/pigeon/conf.d",
            &[("/etc/pigeon/conf.d/x.conf", "pid_file /b")],
        );
        assert_eq!(
            load(&m).unwrap_err().to_string(),
            "Error: /etc/pigeon/conf.d/x.conf:1: pid_file: duplicate value: already set at /etc/pigeon/pigeon.conf:1"
        );
    }

    #[test]
    fn include_dir_problems() {
        let m = sources("\ninclude_dir /nowhere", &[]);
        assert_eq!(
            load(&m).unwrap_err().to_string(),
            "Error: /etc/pigeon/pigeon.conf:2: include_dir: cannot read /nowhere: no such directory"
        );
        let m = sources("include_dir", &[]);
        assert_eq!(
            load(&m).unwrap_err().to_string(),
            "Error: /etc/pigeon/pigeon.conf:1: include_dir: missing argument: expected a directory"
        );
        // The directory must not hold the main file.
        let m = sources("include_dir /etc/pigeon", &[]);
        assert_eq!(
            load(&m).unwrap_err().to_string(),
            "Error: /etc/pigeon/pigeon.conf:1: include_dir: the directory holds the main configuration file, which Mosquitto forbids"
        );
        // Included files cannot include: Mosquitto ignores it.
        let mut m = sources(
            "include_dir /etc/pigeon/conf.d",
            &[("/etc/pigeon/conf.d/x.conf", "include_dir /more")],
        );
        m.add_file("/more/y.conf", "listener 1");
        let c = load(&m).unwrap();
        assert!(c.is_local_only());
        assert_eq!(c.warnings.len(), 1);
        assert_eq!(
            c.warnings[0].location.file,
            Path::new("/etc/pigeon/conf.d/x.conf")
        );
        // Config::parse reads no files.
        let e = parse("include_dir /etc/pigeon/conf.d").unwrap_err();
        assert!(
            matches!(e.kind(), Kind::Io { source, .. } if source.kind() == std::io::ErrorKind::Unsupported)
        );
        assert!(e.to_string().contains("use Config::load"), "{e}");
    }

    #[test]
    fn each_included_file_starts_with_the_default_listener() {
        // As in Mosquitto: listener settings at the top of an included file configure the
        // default listener, not the last listener of the main file; back in the main file,
        // its own current listener continues.
        let m = sources(
            "listener 1884\ninclude_dir /etc/pigeon/conf.d\nmax_topic_alias 3",
            &[("/etc/pigeon/conf.d/a.conf", "max_connections 5")],
        );
        let c = load(&m).unwrap();
        assert_eq!(hosts(&c), [(1884, Bind::All), (1883, Bind::All)]);
        assert_eq!(c.listeners[0].max_connections, None);
        assert_eq!(c.listeners[0].max_topic_alias, 3);
        assert_eq!(c.listeners[1].max_connections.map(NonZeroU32::get), Some(5));
        // So a mount_point at the top of an included file is outside a listener.
        let m = sources(
            "listener 1884\ninclude_dir /etc/pigeon/conf.d",
            &[("/etc/pigeon/conf.d/a.conf", "mount_point x/")],
        );
        assert!(matches!(
            load(&m).unwrap_err().kind(),
            Kind::OutsideListener
        ));
    }
}
