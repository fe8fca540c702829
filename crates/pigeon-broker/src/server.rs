//! Wiring: listeners, the shared broker state, logging, and graceful shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use pigeon_proto::Decoder;

use crate::broker::{Broker, RoutingSettings};
use crate::clock;
use crate::log::{Log, LogSettings, strerror};
use crate::message::Message;
use crate::net::bind;
use crate::session::{ConnectionSettings, OutboundLimits};
use crate::sys;

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
    /// `sys_interval`: the period of the `$SYS` updates; `None` publishes none.
    pub sys_interval: Option<Duration>,
    /// `persistent_client_expiration`: how long a disconnected persistent session is kept;
    /// `None` keeps it for ever.
    pub persistent_client_expiration: Option<Duration>,
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
            sys_interval: Some(Duration::from_secs(10)),
            persistent_client_expiration: None,
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
    /// `bind_interface`: the network interface the socket is bound to (`SO_BINDTODEVICE`).
    pub bind_interface: Option<String>,
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
            bind_interface: None,
            optional: addr.is_ipv6(),
        }
    }
}

/// What every connection task shares.
#[derive(Debug)]
pub struct Shared {
    /// Registry, subscriptions, retained messages.
    pub broker: Broker,
    /// Logging.
    pub log: Arc<Log>,
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
    /// Opens the log `settings.log` describes, binds every listener and starts accepting.
    ///
    /// # Errors
    /// The first listener that cannot be bound, with its address.
    pub async fn start(settings: ServerSettings) -> io::Result<Server> {
        let log = Arc::new(Log::open(settings.log.clone()));
        Server::start_with_log(settings, log).await
    }

    /// Binds every listener and starts accepting, logging to `log` (opened by the caller, so
    /// that the lines before the listeners, "starting" and the like, go where the rest go).
    ///
    /// # Errors
    /// The first listener that cannot be bound, with its address.
    pub async fn start_with_log(settings: ServerSettings, log: Arc<Log>) -> io::Result<Server> {
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
            log,
            max_packet_size: settings.max_packet_size,
            mailbox_capacity: (window + queued).clamp(64, 1 << 20),
            nodelay: settings.nodelay,
            clientid_prefixes: settings.clientid_prefixes.clone(),
        });
        if shared.log.settings().dest.topic {
            let weak = Arc::downgrade(&shared);
            shared
                .log
                .set_topic_hook(Arc::new(move |topic: &str, line: &str| {
                    if let Some(shared) = weak.upgrade() {
                        publish_log_line(&shared.broker, topic, line);
                    }
                }));
        }
        let mut tasks = Vec::new();
        let mut addrs = Vec::new();
        for listener in &settings.listeners {
            let addr = listener.addr;
            let family = if addr.is_ipv4() { "ipv4" } else { "ipv6" };
            // Mosquitto says so before binding; a port the system chooses (0) is said after,
            // and so is an optional listener (it may not exist).
            let announce_first = !listener.optional && addr.port() != 0;
            if announce_first {
                shared.log.info(format_args!(
                    "Opening {family} listen socket on port {}.",
                    addr.port()
                ));
            }
            let bound = match bind(addr, listener.bind_interface.as_deref()).await {
                Ok(bound) => bound,
                Err(e) if listener.optional => {
                    shared
                        .log
                        .debug(format_args!("Not listening on {addr}: {}.", strerror(&e)));
                    continue;
                }
                Err(e) => {
                    shared.log.error(format_args!("Error: {}", strerror(&e)));
                    return Err(io::Error::new(
                        e.kind(),
                        format!("unable to listen on {addr}: {e}"),
                    ));
                }
            };
            let local = bound.local_addr()?;
            if !announce_first {
                shared.log.info(format_args!(
                    "Opening {family} listen socket on port {}.",
                    local.port()
                ));
            }
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
        if let Some(max_age) = settings.persistent_client_expiration {
            tasks.push(tokio::spawn(expire_sessions(Arc::clone(&shared), max_age)));
        }
        if let Some(interval) = settings.sys_interval {
            tasks.push(tokio::spawn(sys::run(Arc::clone(&shared), interval)));
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

/// Removes persistent sessions whose client has been away longer than `max_age`, checking
/// often enough that none outlives its expiry by more than a tenth of it (at most a minute).
async fn expire_sessions(shared: Arc<Shared>, max_age: Duration) {
    let period = (max_age / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        for client_id in shared.broker.expire_sessions(clock::now(), max_age) {
            shared
                .log
                .notice(format_args!("Expiring client {client_id} due to timeout."));
        }
    }
}

/// Publishes a `log_dest topic` line on `$SYS/broker/log/...`, as Mosquitto does: QoS 2, not
/// retained, expiring after 20 seconds.
fn publish_log_line(broker: &Broker, topic: &str, line: &str) {
    let Ok(topic) = pigeon_proto::TopicName::try_from(topic) else {
        return;
    };
    let mut message = Message {
        topic,
        payload: bytes::Bytes::copy_from_slice(line.as_bytes()),
        qos: pigeon_proto::QoS::ExactlyOnce,
        retain: false,
        properties: Default::default(),
    };
    message.properties.message_expiry_interval = Some(20);
    broker.publish(&Arc::new(message));
}
