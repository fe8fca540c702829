//! Wiring: listeners, the shared broker state, logging, and graceful shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use pigeon_proto::Decoder;

use crate::auth::acl::Acl;
use crate::auth::passwd::Credentials;
use crate::broker::{Broker, RoutingSettings};
use crate::clock;
use crate::log::{Log, LogSettings, strerror};
use crate::message::Message;
use crate::net::{HttpSettings, WebSocketSettings, bind, run_http};
use crate::reload::{LiveSettings, Reloaded};
use crate::session::{ConnectionSettings, OutboundLimits};
use crate::sys;
use crate::tls::ListenerTls;

/// Everything [`Server::start`] needs, resolved from the configuration and command line.
///
/// While the server runs, the settings in force are one `ServerSettings` behind
/// [`Shared::settings`], replaced whole by a reload ([`Shared::reload`]).
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// `check_retain_source`: a retained message is given to a new subscriber only while its
    /// publisher may still write to its topic.
    pub check_retain_source: bool,
    /// `persistent_client_expiration`: how long a disconnected persistent session is kept;
    /// `None` keeps it for ever.
    pub persistent_client_expiration: Option<Duration>,
    /// `http_listener` (Pigeon's): metrics, JSON API and dashboard; `None` for none. The
    /// socket is bound at start only.
    pub http: Option<HttpSettings>,
    /// `persistence`: where and how the store keeps the broker's durable state; `None` for
    /// `persistence false` (read at start only).
    pub persistence: Option<crate::store::StoreSettings>,
}

impl Default for ServerSettings {
    /// Mosquitto 2's behaviour without a configuration: localhost port 1883, anonymous
    /// clients allowed.
    fn default() -> Self {
        ServerSettings {
            listeners: vec![
                ListenerSettings::new(SocketAddr::from(([127, 0, 0, 1], 1883))),
                ListenerSettings {
                    config_index: 1,
                    ..ListenerSettings::new(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 1883)))
                },
            ],
            routing: RoutingSettings {
                upgrade_outgoing_qos: false,
                allow_duplicate_messages: true,
                outbound: OutboundLimits::default(),
            },
            max_packet_size: Decoder::MAX_PACKET_SIZE,
            clientid_prefixes: Vec::new(),
            nodelay: false,
            log: LogSettings::default(),
            sys_interval: Some(Duration::from_secs(10)),
            check_retain_source: true,
            persistent_client_expiration: None,
            http: None,
            persistence: None,
        }
    }
}

/// The settings of one listener (Mosquitto's per-listener directives).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSettings {
    /// The address to bind.
    pub addr: SocketAddr,
    /// The position of the `listener` block it comes from among the configuration's
    /// listeners (a block bound to several addresses gives several listeners with the same
    /// one): a reload matches listeners by it.
    pub config_index: usize,
    /// Per-connection protocol settings (`max_qos` is per listener), shared by the
    /// listener's connections.
    pub connection: Arc<ConnectionSettings>,
    /// `max_connections`: `None` for no limit.
    pub max_connections: Option<usize>,
    /// `allow_anonymous`.
    pub allow_anonymous: bool,
    /// `allow_zero_length_clientid`.
    pub allow_zero_length_clientid: bool,
    /// `auto_id_prefix`.
    pub auto_id_prefix: String,
    /// The users of `password_file`, read at start and on each reload; `None` without one.
    pub credentials: Option<Arc<Credentials>>,
    /// The rules of `acl_file`, read at start and on each reload; `None` without one (every
    /// topic allowed).
    pub acl: Option<Arc<Acl>>,
    /// `bind_interface`: the network interface the socket is bound to (`SO_BINDTODEVICE`).
    pub bind_interface: Option<String>,
    /// The TLS configuration (`certfile`, `keyfile`...), read at start and on each reload;
    /// `None` for plain MQTT.
    pub tls: Option<Arc<ListenerTls>>,
    /// Whether a failure to bind is tolerated (the implicit `::1` listener on a machine
    /// without IPv6).
    pub optional: bool,
    /// `protocol websockets`: MQTT over WebSockets, with these settings; `None` for MQTT over
    /// TCP.
    pub websockets: Option<Arc<WebSocketSettings>>,
}

impl ListenerSettings {
    /// A listener on `addr` with Mosquitto's defaults and anonymous access.
    pub fn new(addr: SocketAddr) -> Self {
        ListenerSettings {
            addr,
            config_index: 0,
            connection: Arc::default(),
            max_connections: None,
            allow_anonymous: true,
            allow_zero_length_clientid: true,
            auto_id_prefix: "auto-".to_string(),
            credentials: None,
            acl: None,
            bind_interface: None,
            tls: None,
            optional: addr.is_ipv6(),
            websockets: None,
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
    /// The settings in force.
    pub settings: LiveSettings,
    /// Idle connections, parked without tasks of their own.
    pub parker: crate::net::Parker,
}

impl Shared {
    /// Applies settings read again from the configuration (SIGHUP), as far as a running broker
    /// can: [`ServerSettings::reloaded`] says what waits for a restart, and that is logged.
    /// The log takes its new settings ([`Log::reconfigure`]), the broker its routing settings,
    /// the `$SYS` and session expiry tasks their periods; each connection reads the new
    /// settings before it next handles anything, and connected clients are told at once
    /// ([`Broker::notify_settings_changed`]).
    pub fn reload(&self, settings: ServerSettings) {
        let Reloaded { settings, notes } = self.settings.load().reloaded(settings);
        for (kind, line) in notes {
            self.log.log(kind, line);
        }
        self.log.reconfigure(settings.log.clone());
        self.broker.set_routing_settings(&settings.routing);
        self.settings.store(settings);
        self.broker.notify_settings_changed();
    }
}

/// What the connections of one listener share.
#[derive(Debug)]
pub struct ListenerShared {
    /// The listener's position in [`ServerSettings::listeners`]: its settings are at this
    /// index in every snapshot of [`Shared::settings`] (a reload keeps the list's shape).
    pub index: usize,
    /// The port actually bound.
    pub port: u16,
    /// `max_connections` (read at start only, as in Mosquitto).
    pub max_connections: Option<usize>,
    /// Connections open now on this listener.
    pub connections: AtomicUsize,
}

/// The capacity of a connection's delivery mailbox, from the outbound limits: room for a
/// full window and queue, within bounds.
pub fn mailbox_capacity(limits: OutboundLimits) -> usize {
    let window = usize::from(match limits.max_inflight_messages {
        0 => u16::MAX,
        n => n,
    });
    let queued = match limits.max_queued_messages {
        0 => 1 << 16,
        n => n,
    };
    (window + queued).clamp(64, 1 << 20)
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
        let broker = match &settings.persistence {
            None => Broker::new(settings.routing.clone()),
            Some(persistence) => open_store(persistence, &settings, &log)?,
        };
        let shared = Arc::new(Shared {
            broker,
            log,
            settings: LiveSettings::new(settings.clone()),
            parker: crate::net::Parker::default(),
        });
        // Set even without `log_dest topic`: a reload may add it.
        let weak = Arc::downgrade(&shared);
        shared
            .log
            .set_topic_hook(Arc::new(move |topic: &str, line: &str| {
                if let Some(shared) = weak.upgrade() {
                    publish_log_line(&shared.broker, topic, line);
                }
            }));
        let mut tasks = Vec::new();
        let mut addrs = Vec::new();
        let mut websocket_ports = std::collections::HashSet::new();
        for (index, listener) in settings.listeners.iter().enumerate() {
            let addr = listener.addr;
            // Mosquitto names a WebSockets listener once, whatever its address families.
            let (family, quiet) = if listener.websockets.is_some() {
                ("websockets", !websocket_ports.insert(addr.port()))
            } else if addr.is_ipv4() {
                ("ipv4", false)
            } else {
                ("ipv6", false)
            };
            // Mosquitto says so before binding; a port the system chooses (0) is said after,
            // and so is an optional listener (it may not exist).
            let announce_first = !listener.optional && addr.port() != 0;
            if announce_first && !quiet {
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
            if !announce_first && !quiet {
                shared.log.info(format_args!(
                    "Opening {family} listen socket on port {}.",
                    local.port()
                ));
            }
            addrs.push(local);
            let listener_shared = Arc::new(ListenerShared {
                index,
                port: local.port(),
                max_connections: listener.max_connections,
                connections: AtomicUsize::new(0),
            });
            tasks.push(tokio::spawn(
                bound.run(Arc::clone(&shared), listener_shared),
            ));
        }
        if let Some(http) = &settings.http {
            shared
                .log
                .info(format_args!("Opening HTTP listen socket on {}.", http.addr));
            let socket = tokio::net::TcpListener::bind(http.addr)
                .await
                .map_err(|e| {
                    shared.log.error(format_args!("Error: {}", strerror(&e)));
                    io::Error::new(e.kind(), format!("unable to listen on {}: {e}", http.addr))
                })?;
            tasks.push(tokio::spawn(run_http(socket, Arc::clone(&shared))));
        }
        // Both run even when their setting turns them off: a reload may turn them on.
        tasks.push(tokio::spawn(housekeeping(Arc::clone(&shared))));
        tasks.push(tokio::spawn(sys::run(Arc::clone(&shared))));
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
        // MQTT 5.0 clients are told (DISCONNECT 0x8B) before the connections close.
        self.shared.broker.notify_shutdown();
        for task in &self.tasks {
            task.abort();
        }
        // Give connection tasks a moment to write what they have queued.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let broker = &self.shared.broker;
        if broker.persists() {
            // Every session back in the registry (recorded whole as it goes), for a while at
            // most; then the store writes what is pending and a final snapshot.
            for _ in 0..200 {
                if broker.online_count() == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            let store = Arc::clone(broker.store());
            let syncs = Arc::clone(&store);
            let _ = tokio::task::spawn_blocking(move || store.close()).await;
            self.shared.log.info(format_args!(
                "Saved the persistence database ({} log writes synced since start).",
                syncs.syncs()
            ));
        }
    }
}

/// Opens the store `persistence` describes, recovers what it holds and gives it to a new
/// broker, logging what recovery did.
fn open_store(
    persistence: &crate::store::StoreSettings,
    settings: &ServerSettings,
    log: &Arc<Log>,
) -> io::Result<Broker> {
    let started = clock::now();
    let sink = Arc::clone(log);
    let notify: crate::store::Notify = Arc::new(move |level, line| match level {
        crate::store::Level::Notice => sink.notice(line),
        crate::store::Level::Error => sink.error(line),
    });
    let opened = crate::store::LogStore::open(
        Arc::new(crate::store::fs::RealFs),
        persistence.clone(),
        notify,
    );
    let (store, state, recovery) = match opened {
        Ok(opened) => opened,
        Err(e) => {
            log.error(e.to_string());
            return Err(io::Error::other(e.to_string()));
        }
    };
    for note in &recovery.notes {
        log.warning(note);
    }
    let broker = Broker::with_store(settings.routing.clone(), Arc::new(store));
    let (sessions, held, subscriptions) = broker.restore(&state);
    log.info(format_args!(
        "Restored {sessions} sessions ({subscriptions} subscriptions) holding {held} messages \
         and {} retained messages from {} \
         ({} records, {} bytes) in {} ms.",
        state.retained.len(),
        persistence.layout.dir.display(),
        state.records,
        recovery.bytes,
        clock::now().duration_since(started).as_millis()
    ));
    Ok(broker)
}

/// Once a second: publishes the wills whose Will Delay Interval has passed, and removes the
/// sessions whose client has been away longer than their Session Expiry Interval or
/// `persistent_client_expiration` (read afresh each time, so a reload applies at once).
async fn housekeeping(shared: Arc<Shared>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = clock::now();
        shared.broker.publish_due_wills(now);
        let max_age = shared.settings.load().persistent_client_expiration;
        for client_id in shared.broker.expire_sessions(now, max_age) {
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
    let mut message = Message::new(
        topic,
        bytes::Bytes::copy_from_slice(line.as_bytes()),
        pigeon_proto::QoS::ExactlyOnce,
        false,
    );
    message.properties.message_expiry_interval = Some(20);
    message.expires_at = clock::now().checked_add(Duration::from_secs(20));
    broker.publish(&Arc::new(message));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LogDest, LogTypes};

    /// One listener on a port the system chooses, no `$SYS`, no log.
    fn quiet() -> ServerSettings {
        let mut settings = ServerSettings {
            listeners: vec![ListenerSettings::new(SocketAddr::from(([127, 0, 0, 1], 0)))],
            sys_interval: None,
            ..ServerSettings::default()
        };
        settings.log.dest = LogDest::none();
        settings
    }

    #[tokio::test]
    async fn reload_swaps_the_settings_and_wakes_the_tasks() {
        let server = Server::start(quiet()).await.unwrap();
        let shared = Arc::clone(server.shared());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(shared.broker.retained_count(), 0, "no $SYS yet");
        let mut new = quiet();
        new.sys_interval = Some(Duration::from_secs(60));
        new.routing.upgrade_outgoing_qos = true;
        new.log.types = LogTypes::ALL;
        new.listeners[0].allow_anonymous = false;
        new.listeners[0].addr = SocketAddr::from(([127, 0, 0, 1], 1));
        shared.reload(new);
        let settings = shared.settings.load();
        assert!(!settings.listeners[0].allow_anonymous);
        assert_eq!(
            settings.listeners[0].addr.port(),
            0,
            "sockets wait for a restart"
        );
        assert!(shared.broker.routing_settings().upgrade_outgoing_qos);
        assert_eq!(shared.log.settings().types, LogTypes::ALL);
        // The $SYS task starts at once: the version, then a first update, all retained.
        let mut waited = 0;
        while shared.broker.retained_count() < 2 && waited < 500 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            waited += 1;
        }
        assert!(shared.broker.retained_count() >= 2);
        server.run_until(async {}).await;
    }

    /// Parking (see `net/park.rs`): an idle connection gives up its task and is resumed by
    /// what concerns it: bytes, mail, its Keep Alive deadline, the end of the broker.
    mod parking {
        use super::*;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio::net::TcpStream;

        /// CONNECT, MQTT 3.1.1, Clean Session, Client Identifier `id` (one byte), `keep_alive`.
        fn connect(id: u8, keep_alive: u8) -> [u8; 15] {
            [
                0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, keep_alive, 0, 1, id,
            ]
        }

        async fn client(server: &Server, id: u8, keep_alive: u8) -> TcpStream {
            let mut stream = TcpStream::connect(server.local_addrs()[0]).await.unwrap();
            stream.write_all(&connect(id, keep_alive)).await.unwrap();
            assert_eq!(read(&mut stream, 4).await, [0x20, 2, 0, 0], "CONNACK");
            stream
        }

        /// The next `n` bytes from the broker (waiting at most 10 s: a hung test fails).
        async fn read(stream: &mut TcpStream, n: usize) -> Vec<u8> {
            let mut buf = vec![0; n];
            tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut buf))
                .await
                .expect("the broker answers")
                .unwrap();
            buf
        }

        /// Whether the broker closes the connection (within 10 s).
        async fn closed(stream: &mut TcpStream) -> bool {
            let mut buf = [0; 64];
            loop {
                match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
                    Ok(Ok(0) | Err(_)) => return true,
                    Ok(Ok(_)) => {}
                    Err(_) => return false,
                }
            }
        }

        /// Waits (at most 10 s) until `n` connections are parked.
        async fn parked(shared: &Shared, n: usize) {
            for _ in 0..1000 {
                if shared.parker.parked() == n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("{} connections parked, not {n}", shared.parker.parked());
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_parked_connection_wakes_for_bytes_and_for_mail() {
            let server = Server::start(quiet()).await.unwrap();
            let shared = Arc::clone(server.shared());
            let mut subscriber = client(&server, b's', 0).await;
            // Just connected and idle: it parks at once.
            parked(&shared, 1).await;
            // Bytes wake it: SUBSCRIBE t at QoS 1, SUBACK.
            subscriber
                .write_all(&[0x82, 6, 0, 1, 0, 1, b't', 1])
                .await
                .unwrap();
            assert_eq!(read(&mut subscriber, 5).await, [0x90, 3, 0, 1, 1]);
            // A PINGREQ is answered too [MQTT-3.12.4-1].
            subscriber.write_all(&[0xC0, 0]).await.unwrap();
            assert_eq!(read(&mut subscriber, 2).await, [0xD0, 0]);
            let mut publisher = client(&server, b'p', 0).await;
            parked(&shared, 2).await;
            // Mail wakes it: the publisher's message is delivered.
            publisher
                .write_all(&[0x32, 7, 0, 1, b't', 0, 9, b'h', b'i'])
                .await
                .unwrap();
            assert_eq!(read(&mut publisher, 4).await, [0x40, 2, 0, 9], "PUBACK");
            let delivered = read(&mut subscriber, 9).await;
            assert_eq!(delivered[..5], [0x32, 7, 0, 1, b't']);
            assert_eq!(delivered[7..], *b"hi");
            subscriber
                .write_all(&[0x40, 2, delivered[5], delivered[6]])
                .await
                .unwrap();
            // Quiet again, both park in time.
            parked(&shared, 2).await;
            server.run_until(async {}).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_parked_connection_is_closed_when_its_keep_alive_runs_out() {
            let server = Server::start(quiet()).await.unwrap();
            let shared = Arc::clone(server.shared());
            // Keep Alive 1 s: closed once 1.5 s pass without a packet [MQTT-3.1.2-24].
            let mut quiet_client = client(&server, b'k', 1).await;
            parked(&shared, 1).await;
            assert!(closed(&mut quiet_client).await);
            parked(&shared, 0).await;
            server.run_until(async {}).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_parked_connection_is_taken_over() {
            let server = Server::start(quiet()).await.unwrap();
            let shared = Arc::clone(server.shared());
            let mut first = client(&server, b'x', 0).await;
            parked(&shared, 1).await;
            // The same Client Identifier again: the first connection is closed [MQTT-3.1.4-2].
            let _second = client(&server, b'x', 0).await;
            assert!(closed(&mut first).await);
            parked(&shared, 1).await;
            server.run_until(async {}).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_parked_connection_hears_of_the_shutdown_and_of_its_peer_leaving() {
            let server = Server::start(quiet()).await.unwrap();
            let shared = Arc::clone(server.shared());
            let leaving = client(&server, b'l', 0).await;
            let mut v5 = TcpStream::connect(server.local_addrs()[0]).await.unwrap();
            v5.write_all(&[
                0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 0, 0, 0, 1, b'5',
            ])
            .await
            .unwrap();
            let head = read(&mut v5, 2).await;
            assert_eq!(head[0], 0x20, "CONNACK");
            read(&mut v5, usize::from(head[1])).await;
            parked(&shared, 2).await;
            // The peer closes: the broker notices although nothing waits on the socket in a
            // task; the client is gone from the registry.
            drop(leaving);
            parked(&shared, 1).await;
            for _ in 0..1000 {
                if shared.broker.online_count() == 1 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(shared.broker.online_count(), 1);
            // Shutdown: the MQTT 5.0 client is told, DISCONNECT with Server shutting down.
            let stopping = tokio::spawn(server.run_until(async {}));
            assert_eq!(read(&mut v5, 3).await, [0xE0, 1, 0x8B]);
            stopping.await.unwrap();
        }
    }
}
