//! Wiring: listeners, the shared broker state, logging, and graceful shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, UNIX_EPOCH};

use pigeon_proto::Decoder;

use crate::broker::{Broker, RoutingSettings};
use crate::clock;
use crate::net::bind;
use crate::session::{ConnectionSettings, OutboundLimits};

/// Everything [`Server::start`] needs, resolved from the configuration and command line.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// The listeners.
    pub listeners: Vec<ListenerSettings>,
    /// Routing settings.
    pub routing: RoutingSettings,
    /// `max_packet_size`: the largest packet accepted, fixed header included.
    pub max_packet_size: u32,
    /// `clientid_prefixes`: when not empty, identifiers must start with one of them.
    pub clientid_prefixes: Vec<String>,
    /// `set_tcp_nodelay`.
    pub nodelay: bool,
    /// Logging.
    pub log: LogSettings,
}

impl Default for ServerSettings {
    /// Mosquitto 2's behaviour without a configuration: localhost port 1883, anonymous
    /// clients allowed.
    fn default() -> Self {
        ServerSettings {
            listeners: vec![
                ListenerSettings::new(SocketAddr::from(([127, 0, 0, 1], 1883))),
                ListenerSettings::new(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 1883))),
            ],
            routing: RoutingSettings {
                upgrade_outgoing_qos: false,
                outbound: OutboundLimits::default(),
            },
            max_packet_size: Decoder::MAX_PACKET_SIZE,
            clientid_prefixes: Vec::new(),
            nodelay: false,
            log: LogSettings::default(),
        }
    }
}

/// The settings of one listener (Mosquitto's per-listener directives).
#[derive(Debug, Clone)]
pub struct ListenerSettings {
    /// The address to bind.
    pub addr: SocketAddr,
    /// Per-connection protocol settings (`max_qos` is per listener).
    pub connection: ConnectionSettings,
    /// `max_connections`: `None` for no limit.
    pub max_connections: Option<usize>,
    /// `allow_anonymous`.
    pub allow_anonymous: bool,
    /// `allow_zero_length_clientid`.
    pub allow_zero_length_clientid: bool,
    /// `auto_id_prefix`.
    pub auto_id_prefix: String,
    /// Whether a failure to bind is tolerated (the implicit `::1` listener on a machine
    /// without IPv6).
    pub optional: bool,
}

impl ListenerSettings {
    /// A listener on `addr` with Mosquitto's defaults and anonymous access.
    pub fn new(addr: SocketAddr) -> Self {
        ListenerSettings {
            addr,
            connection: ConnectionSettings::default(),
            max_connections: None,
            allow_anonymous: true,
            allow_zero_length_clientid: true,
            auto_id_prefix: "auto-".to_string(),
            optional: addr.is_ipv6(),
        }
    }
}

/// Which log lines are written (to standard error), Mosquitto's `log_type` in brief.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSettings {
    /// Per-packet lines (`log_type debug`, or `-v`).
    pub debug: bool,
    /// Connection lines (`log_type notice` / `information`).
    pub notice: bool,
    /// Prefix lines with the Unix time, as Mosquitto's `log_timestamp true` does.
    pub timestamp: bool,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            debug: false,
            notice: true,
            timestamp: true,
        }
    }
}

/// The log sink the connections share.
#[derive(Debug)]
pub struct Log {
    settings: LogSettings,
}

impl Log {
    fn write(&self, msg: &str) {
        use std::io::Write as _;
        let line = if self.settings.timestamp {
            let secs = clock::wall()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            format!("{secs}: {msg}\n")
        } else {
            format!("{msg}\n")
        };
        let _ = io::stderr().lock().write_all(line.as_bytes());
    }

    /// A per-packet line.
    pub fn debug(&self, msg: &str) {
        if self.settings.debug {
            self.write(msg);
        }
    }

    /// A connection-level line.
    pub fn notice(&self, msg: &str) {
        if self.settings.notice {
            self.write(msg);
        }
    }

    /// An informational line.
    pub fn info(&self, msg: &str) {
        self.notice(msg);
    }

    /// An error line: always written.
    pub fn error(&self, msg: &str) {
        self.write(msg);
    }
}

/// What every connection task shares.
#[derive(Debug)]
pub struct Shared {
    /// Registry, subscriptions, retained messages.
    pub broker: Broker,
    /// Logging.
    pub log: Log,
    /// Largest packet accepted.
    pub max_packet_size: u32,
    /// Capacity of each connection's delivery mailbox.
    pub mailbox_capacity: usize,
    /// Whether to set TCP_NODELAY.
    pub nodelay: bool,
    /// `clientid_prefixes`.
    pub clientid_prefixes: Vec<String>,
}

/// What the connections of one listener share.
#[derive(Debug)]
pub struct ListenerShared {
    /// The listener's settings.
    pub settings: ListenerSettings,
    /// The port actually bound.
    pub port: u16,
    /// Connections open now on this listener.
    pub connections: AtomicUsize,
}

/// A running broker.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    addrs: Vec<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Binds every listener and starts accepting.
    ///
    /// # Errors
    /// The first listener that cannot be bound, with its address.
    pub async fn start(settings: ServerSettings) -> io::Result<Server> {
        let limits = settings.routing.outbound;
        let window = usize::from(match limits.max_inflight_messages {
            0 => u16::MAX,
            n => n,
        });
        let queued = match limits.max_queued_messages {
            0 => 1 << 16,
            n => n,
        };
        let shared = Arc::new(Shared {
            broker: Broker::new(settings.routing.clone()),
            log: Log {
                settings: settings.log,
            },
            max_packet_size: settings.max_packet_size,
            mailbox_capacity: (window + queued).clamp(64, 1 << 20),
            nodelay: settings.nodelay,
            clientid_prefixes: settings.clientid_prefixes.clone(),
        });
        let mut tasks = Vec::new();
        let mut addrs = Vec::new();
        for listener in &settings.listeners {
            let addr = listener.addr;
            let bound = match bind(addr).await {
                Ok(bound) => bound,
                Err(e) if listener.optional => {
                    shared.log.info(&format!("Not listening on {addr}: {e}."));
                    continue;
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("unable to listen on {addr}: {e}"),
                    ));
                }
            };
            let local = bound.local_addr()?;
            let family = if local.is_ipv4() { "ipv4" } else { "ipv6" };
            shared.log.info(&format!(
                "Opening {family} listen socket on port {}.",
                local.port()
            ));
            addrs.push(local);
            let listener_shared = Arc::new(ListenerShared {
                settings: listener.clone(),
                port: local.port(),
                connections: AtomicUsize::new(0),
            });
            tasks.push(tokio::spawn(
                bound.run(Arc::clone(&shared), listener_shared),
            ));
        }
        Ok(Server {
            shared,
            addrs,
            tasks,
        })
    }

    /// The addresses bound, with the ports the system chose for port 0.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The shared state (for tests and `$SYS`).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Runs until `shutdown` completes, then stops accepting.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        shutdown.await;
        for task in &self.tasks {
            task.abort();
        }
        // Give connection tasks a moment to write what they have queued.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
