//! From a parsed [`Config`] to the [`ServerSettings`] the server runs with.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;

use pigeon_proto::Decoder;

use crate::auth::acl::Acl;
use crate::auth::passwd::Credentials;
use crate::auth::scram::{SCRAM_SHA_512, ScramSha512};
use crate::auth::{Notes, load_acl_file, load_password_file};
use crate::broker::RoutingSettings;
use crate::config::{Bind, Config, ListenerProtocol, Security, SocketDomain};
use crate::log::LogSettings;
use crate::net::{DEFAULT_HEADERS_SIZE, HttpSettings, WebSocketSettings};
use crate::server::{ListenerSettings, ServerSettings};
use crate::session::{AuthMethod, AuthMethods, ConnectionSettings, OutboundLimits};
use crate::tls::ListenerTls;

/// Why a valid configuration cannot run (yet).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(String);

impl ServerSettings {
    /// Resolves `config` into settings: listener addresses (host names looked up now),
    /// per-listener security as `per_listener_settings` says, limits. The password and ACL
    /// files are read now; what Mosquitto would log about them is dropped (see
    /// [`from_config_with_notes`](Self::from_config_with_notes)).
    ///
    /// # Errors
    /// A listener address that does not resolve, a password or ACL file that cannot be read
    /// or parsed, or a setting whose enforcement is not built yet and whose silent absence
    /// would be unsafe.
    pub fn from_config(config: &Config) -> Result<ServerSettings, SettingsError> {
        ServerSettings::from_config_with_notes(config).map(|(settings, _)| settings)
    }

    /// [`from_config`](Self::from_config), with the lines to log about the password and ACL
    /// files (entries left out, patterns without substitution), each with its type.
    ///
    /// # Errors
    /// As [`from_config`](Self::from_config).
    pub fn from_config_with_notes(
        config: &Config,
    ) -> Result<(ServerSettings, Notes), SettingsError> {
        let mut listeners = Vec::new();
        let mut notes = Notes::new();
        // Each file is read once, however many listeners use it.
        let mut passwords: HashMap<PathBuf, Arc<Credentials>> = HashMap::new();
        let mut acls: HashMap<PathBuf, Arc<Acl>> = HashMap::new();
        for (index, listener) in config.listeners.iter().enumerate() {
            let security = config.security_for(index).unwrap_or(&config.security);
            let credentials = match &security.password_file {
                None => None,
                Some(path) => Some(match passwords.get(path) {
                    Some(loaded) => Arc::clone(loaded),
                    None => {
                        let (loaded, more) = load_password_file(path).map_err(SettingsError)?;
                        notes.extend(more);
                        let loaded = Arc::new(loaded);
                        passwords.insert(path.clone(), Arc::clone(&loaded));
                        loaded
                    }
                }),
            };
            let acl = match &security.acl_file {
                None => None,
                Some(path) => Some(match acls.get(path) {
                    Some(loaded) => Arc::clone(loaded),
                    None => {
                        let (loaded, more) = load_acl_file(path).map_err(SettingsError)?;
                        notes.extend(more);
                        let loaded = Arc::new(loaded);
                        acls.insert(path.clone(), Arc::clone(&loaded));
                        loaded
                    }
                }),
            };
            if listener.mount_point.is_some() {
                return Err(SettingsError(format!(
                    "Error: {}not supported yet (not scheduled in an issue yet)",
                    config.context("mount_point")
                )));
            }
            if listener.use_username_as_clientid {
                return Err(SettingsError(format!(
                    "Error: {}not supported yet (it arrives with authentication, issue 6)",
                    config.context("use_username_as_clientid")
                )));
            }
            let tls = ListenerTls::load(&listener.tls, &mut notes).map_err(SettingsError)?;
            let connection = ConnectionSettings {
                max_qos: listener.max_qos,
                retain_available: config.retain_available,
                message_size_limit: config.message_size_limit.map_or(0, |n| n.get() as usize),
                connect_timeout: config.connect_timeout,
                acl_subscribe_check: security.acl_subscribe_check,
                max_topic_alias: listener.max_topic_alias,
                max_keepalive: config.max_keepalive,
                receive_maximum: config.max_inflight_messages,
                max_packet_size: config.max_packet_size,
                auth_methods: enhanced_auth_methods(config, security, credentials.as_ref())?,
            };
            let websockets = (listener.protocol == ListenerProtocol::WebSockets).then(|| {
                Arc::new(WebSocketSettings {
                    http_dir: listener.http_dir.clone(),
                    headers_size: config
                        .websockets_headers_size
                        .map_or(DEFAULT_HEADERS_SIZE, |n| n.get() as usize),
                })
            });
            for (addr, optional) in
                addresses(&listener.bind, listener.port, listener.socket_domain)?
            {
                listeners.push(ListenerSettings {
                    addr,
                    config_index: index,
                    connection: Arc::new(connection.clone()),
                    max_connections: listener.max_connections.map(|n| n.get() as usize),
                    allow_anonymous: security.allow_anonymous,
                    allow_zero_length_clientid: security.allow_zero_length_clientid,
                    auto_id_prefix: security.auto_id_prefix.clone(),
                    credentials: credentials.clone(),
                    acl: acl.clone(),
                    bind_interface: listener.bind_interface.clone(),
                    tls: tls.clone(),
                    optional,
                    websockets: websockets.clone(),
                });
            }
        }
        let outbound = OutboundLimits {
            max_inflight_messages: config.max_inflight_messages.map_or(0, |n| n.get()),
            max_inflight_bytes: config
                .max_inflight_bytes
                .map_or(0, |n| usize::try_from(n.get()).unwrap_or(usize::MAX)),
            max_queued_messages: config.max_queued_messages.map_or(0, |n| n.get() as usize),
            max_queued_bytes: config
                .max_queued_bytes
                .map_or(0, |n| usize::try_from(n.get()).unwrap_or(usize::MAX)),
            queue_qos0_messages: config.queue_qos0_messages,
        };
        if config.http_listener.is_none()
            && let Some((directive, at)) = config.http_tls.locations.first()
        {
            return Err(SettingsError(format!(
                "Error: {at}: {}: there is no http_listener to use it",
                config.http_tls.directive(directive)
            )));
        }
        let settings = ServerSettings {
            listeners,
            routing: RoutingSettings {
                upgrade_outgoing_qos: config.upgrade_outgoing_qos,
                allow_duplicate_messages: config.allow_duplicate_messages,
                outbound,
            },
            max_packet_size: config
                .max_packet_size
                .map_or(Decoder::MAX_PACKET_SIZE, |n| n.get()),
            clientid_prefixes: config
                .clientid_prefixes
                .iter()
                .map(ToString::to_string)
                .collect(),
            nodelay: config.set_tcp_nodelay,
            log: LogSettings {
                types: config.log_type,
                dest: config.log_dest.clone(),
                timestamp: config.log_timestamp,
                timestamp_format: config.log_timestamp_format.clone(),
                facility: config.log_facility,
                connection_messages: config.connection_messages,
            },
            sys_interval: config.sys_interval,
            check_retain_source: config.check_retain_source,
            persistent_client_expiration: config.persistent_client_expiration,
            persistence: config.persistence.then(|| store_settings(config)),
            http: match &config.http_listener {
                None => None,
                Some(http) => Some(HttpSettings {
                    addr: (http.host.as_str(), http.port)
                        .to_socket_addrs()
                        .ok()
                        .and_then(|mut addrs| addrs.next())
                        .ok_or_else(|| {
                            SettingsError(format!(
                                "http_listener {} {}: cannot resolve the address",
                                http.port, http.host
                            ))
                        })?,
                    dashboard: config.http_dashboard,
                    tls: ListenerTls::load(&config.http_tls, &mut notes).map_err(SettingsError)?,
                }),
            },
        };
        Ok((settings, notes))
    }
}

/// The socket addresses a listener binds, each with whether failing to bind it is tolerated.
fn addresses(
    bind: &Bind,
    port: u16,
    domain: Option<SocketDomain>,
) -> Result<Vec<(SocketAddr, bool)>, SettingsError> {
    let wants = |ip: &IpAddr| match domain {
        Some(SocketDomain::Ipv4) => ip.is_ipv4(),
        Some(SocketDomain::Ipv6) => ip.is_ipv6(),
        None => true,
    };
    let addrs: Vec<(SocketAddr, bool)> = match bind {
        // Every address: IPv4 always, IPv6 where the machine has it.
        Bind::All => [
            (
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                domain == Some(SocketDomain::Ipv6),
            ),
            (
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                domain != Some(SocketDomain::Ipv6),
            ),
        ]
        .into_iter()
        .filter(|(ip, _)| wants(ip))
        .map(|(ip, optional)| (SocketAddr::new(ip, port), optional))
        .collect(),
        Bind::Host(host) => {
            let resolved = (host.as_str(), port).to_socket_addrs().map_err(|e| {
                SettingsError(format!("listener {port} {host}: cannot resolve: {e}"))
            })?;
            let found: Vec<SocketAddr> = resolved.filter(|a| wants(&a.ip())).collect();
            // When a name gives several addresses (localhost: 127.0.0.1 and ::1), the IPv6
            // ones are optional, like Mosquitto's local-only mode on a machine without IPv6.
            let many = found.len() > 1;
            found
                .into_iter()
                .map(|a| (a, many && a.is_ipv6()))
                .collect()
        }
        Bind::Unix(path) => {
            return Err(SettingsError(format!(
                "listener 0 {}: Unix socket listeners are not supported yet",
                path.display()
            )));
        }
    };
    if addrs.is_empty() {
        return Err(SettingsError(format!(
            "listener {port}: no address of the requested socket_domain"
        )));
    }
    Ok(addrs)
}

/// The MQTT 5.0 enhanced authentication methods a listener with `security` offers
/// (`enhanced_auth_method`); SCRAM-SHA-512 checks the listener's password file, so it needs
/// one.
fn enhanced_auth_methods(
    config: &Config,
    security: &Security,
    credentials: Option<&Arc<Credentials>>,
) -> Result<AuthMethods, SettingsError> {
    let mut methods: Vec<Arc<dyn AuthMethod>> = Vec::new();
    for name in &security.enhanced_auth_methods {
        match (name.as_str(), credentials) {
            (SCRAM_SHA_512, Some(credentials)) => {
                methods.push(Arc::new(ScramSha512::new(Arc::clone(credentials))));
            }
            (SCRAM_SHA_512, None) => {
                return Err(SettingsError(format!(
                    "Error: {}scram-sha-512 checks the users of password_file, and there is none",
                    config.context("enhanced_auth_method")
                )));
            }
            _ => {}
        }
    }
    Ok(AuthMethods::new(methods))
}

/// Where and how the store keeps its files: the directory and file name of
/// `persistence_location` + `persistence_file` (joined as Mosquitto joins them; the working
/// directory without a location), and the snapshot cadence of `autosave_interval` and
/// `autosave_on_changes`.
fn store_settings(config: &Config) -> crate::store::StoreSettings {
    let path = config.persistence_path();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let snapshot = path.file_name().map_or_else(
        || "mosquitto.db".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    );
    let (snapshot_every, snapshot_after) = match config.autosave() {
        crate::config::Autosave::OnExit => (None, None),
        crate::config::Autosave::Every(every) => (Some(every), None),
        crate::config::Autosave::AfterChanges(n) => (None, Some(u64::from(n.get()))),
    };
    crate::store::StoreSettings {
        layout: crate::store::Layout { dir, snapshot },
        sync_acks: config.persistence_sync_acks,
        snapshot_every,
        snapshot_after,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use pigeon_proto::QoS;

    use super::*;

    fn settings(text: &str) -> Result<ServerSettings, SettingsError> {
        ServerSettings::from_config(&Config::parse(text, Path::new("test.conf")).unwrap())
    }

    #[test]
    fn empty_config_is_local_only_with_anonymous_access() {
        let s = settings("").unwrap();
        let addrs: Vec<String> = s.listeners.iter().map(|l| l.addr.to_string()).collect();
        assert_eq!(addrs, ["127.0.0.1:1883", "[::1]:1883"]);
        assert!(s.listeners.iter().all(|l| l.allow_anonymous));
    }

    #[test]
    fn websockets_and_http_listeners() {
        let s = settings(
            "listener 1883 127.0.0.1\nlistener 8080 127.0.0.1\nprotocol websockets\n\
             http_dir /srv/www\nwebsockets_headers_size 2048\nhttp_listener 9090",
        )
        .unwrap();
        assert_eq!(s.listeners[0].websockets, None);
        let ws = s.listeners[1].websockets.as_deref().unwrap();
        assert_eq!(ws.http_dir.as_deref(), Some(Path::new("/srv/www")));
        assert_eq!(ws.headers_size, 2048);
        let http = s.http.unwrap();
        assert_eq!(http.addr, SocketAddr::from(([127, 0, 0, 1], 9090)));
        assert!(http.dashboard);
        let s = settings("listener 8080 127.0.0.1\nprotocol websockets").unwrap();
        assert_eq!(
            s.listeners[0].websockets.as_deref().map(|w| w.headers_size),
            Some(DEFAULT_HEADERS_SIZE)
        );
        assert_eq!(s.http, None);
    }

    #[test]
    fn http_listener_tls_errors_name_the_http_directives() {
        let error = |text: &str| settings(text).unwrap_err().0;
        assert_eq!(
            error("http_listener 9443\nhttp_certfile /nonexistent/c.pem"),
            "Error: test.conf:2: http_certfile: a TLS listener needs http_keyfile as well"
        );
        assert_eq!(
            error("http_certfile /c.pem\nhttp_keyfile /k.pem"),
            "Error: test.conf:1: http_certfile: there is no http_listener to use it"
        );
        let e = error("http_listener 9443\nhttp_certfile /nonexistent/c.pem\nhttp_keyfile /k");
        assert!(
            e.starts_with("Error: test.conf:2: http_certfile: unable to load server certificate"),
            "{e}"
        );
        assert_eq!(
            settings("http_listener 9090").unwrap().http.unwrap().tls,
            None
        );
    }

    #[test]
    fn configured_listener_refuses_anonymous_by_default() {
        let s = settings("listener 18830 127.0.0.1\n").unwrap();
        assert_eq!(s.listeners.len(), 1);
        assert_eq!(s.listeners[0].addr.to_string(), "127.0.0.1:18830");
        assert!(!s.listeners[0].allow_anonymous);
    }

    #[test]
    fn per_listener_settings_pick_the_listener_security() {
        let s = settings(
            "per_listener_settings true\nlistener 1 127.0.0.1\nallow_anonymous true\n\
             listener 2 127.0.0.1\nmax_qos 1\n",
        )
        .unwrap();
        assert!(s.listeners[0].allow_anonymous);
        assert!(!s.listeners[1].allow_anonymous);
        assert_eq!(s.listeners[1].connection.max_qos, QoS::AtLeastOnce);
    }

    #[test]
    fn limits_map_to_sessions() {
        let s = settings(
            "max_inflight_messages 5\nmax_queued_messages 7\nqueue_qos0_messages true\n\
             message_size_limit 100\nmax_packet_size 2000\nupgrade_outgoing_qos true\n",
        )
        .unwrap();
        let o = s.routing.outbound;
        assert_eq!((o.max_inflight_messages, o.max_queued_messages), (5, 7));
        assert!(o.queue_qos0_messages && s.routing.upgrade_outgoing_qos);
        assert_eq!(s.max_packet_size, 2000);
        assert_eq!(s.listeners[0].connection.message_size_limit, 100);
    }

    #[test]
    fn sys_interval_defaults_to_ten_seconds_and_zero_disables() {
        assert_eq!(
            settings("").unwrap().sys_interval,
            Some(std::time::Duration::from_secs(10))
        );
        assert_eq!(settings("sys_interval 0\n").unwrap().sys_interval, None);
    }

    #[test]
    fn logging_directives_reach_the_log_settings() {
        use crate::config::{LogDest, LogTypes};

        let s = settings("").unwrap();
        assert_eq!(s.log, LogSettings::default());
        let s = settings(
            "log_type subscribe\nlog_type error\nlog_dest topic\nlog_dest file /tmp/p.log\n\
             log_timestamp false\nlog_timestamp_format %H\nlog_facility 3\n\
             connection_messages false\n",
        )
        .unwrap();
        assert_eq!(s.log.types, LogTypes::SUBSCRIBE.union(LogTypes::ERROR));
        assert!(s.log.dest.topic && !s.log.dest.stderr);
        assert_eq!(s.log.dest.file.as_deref(), Some(Path::new("/tmp/p.log")));
        assert!(!s.log.timestamp && !s.log.connection_messages);
        assert_eq!(s.log.timestamp_format.as_deref(), Some("%H"));
        assert_eq!(s.log.facility, Some(3));
        assert_eq!(
            settings("log_dest none\n").unwrap().log.dest,
            LogDest::none()
        );
    }

    #[test]
    fn password_and_acl_files_are_read_once_and_shared() {
        let dir = std::env::temp_dir().join(format!("pigeon-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pw = dir.join("pw");
        let acl = dir.join("acl");
        std::fs::write(&pw, "bob:plain\n").unwrap();
        std::fs::write(&acl, "topic read x\npattern read y\n").unwrap();
        let text = format!(
            "password_file {}\nacl_file {}\nacl_subscribe_check true\nlistener 1 127.0.0.1\n\
             listener 2 127.0.0.1\n",
            pw.display(),
            acl.display()
        );
        let config = Config::parse(&text, Path::new("test.conf")).unwrap();
        let (s, notes) = ServerSettings::from_config_with_notes(&config).unwrap();
        assert_eq!(notes.len(), 2, "{notes:?}");
        let (a, b) = (&s.listeners[0], &s.listeners[1]);
        assert!(Arc::ptr_eq(
            a.credentials.as_ref().unwrap(),
            b.credentials.as_ref().unwrap()
        ));
        assert!(Arc::ptr_eq(
            a.acl.as_ref().unwrap(),
            b.acl.as_ref().unwrap()
        ));
        assert!(a.connection.acl_subscribe_check);
        let e = settings(&format!("acl_file {}\n", dir.join("none").display())).unwrap_err();
        assert!(
            e.to_string().starts_with("Error: Unable to open acl_file"),
            "{e}"
        );
        let e = settings(&format!("password_file {}\n", dir.join("none").display())).unwrap_err();
        assert!(
            e.to_string().starts_with("Error: Unable to open pwfile"),
            "{e}"
        );
    }

    #[test]
    fn scram_needs_the_listeners_password_file() {
        let e =
            settings("listener 1883 127.0.0.1\nenhanced_auth_method scram-sha-512").unwrap_err();
        assert!(
            e.0.contains("test.conf:2: enhanced_auth_method:") && e.0.contains("password_file"),
            "{}",
            e.0
        );
        let dir = std::env::temp_dir().join(format!("pigeon-scram-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pw = dir.join("pw");
        std::fs::write(
            &pw,
            "alice:$7$101$MDEyMzQ1Njc4OWFi$YzVegm3JE2wwo33oBs3P8TIdYw6KayfhEX7Lqm1ZOP9vZeN+zMZ4GnicRW9mJMk634XWrkzd+LUd8LPBiMO9pw==\n",
        )
        .unwrap();
        let s = settings(&format!(
            "listener 1883 127.0.0.1\npassword_file {}\nenhanced_auth_method SCRAM-SHA-512",
            pw.display()
        ))
        .unwrap();
        let methods = &s.listeners[0].connection.auth_methods;
        assert!(methods.find("SCRAM-SHA-512").is_some(), "{methods:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
