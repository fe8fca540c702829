//! The state all connections share: the client registry, the subscription index and the
//! retained messages, and routing between them.
//!
//! Each connected session is owned by its connection's task; the registry maps a Client
//! Identifier to that task's mailbox, or holds the session itself while its client is away.
//! Routing matches a message once against the subscription index, then hands each subscriber
//! a [`Delivery`] sharing the message.
//!
//! Locks: the subscription index and retained store sit behind `RwLock`s (readers on the publish
//! path share them), the registry behind a `Mutex`; none is held across an `.await`. Sharding
//! them is the work of the performance issue, once measured.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use foldhash::HashMap as FastMap;
use pigeon_proto::properties::SubscriptionId;
use pigeon_proto::{MqttString, Packet, Protocol, QoS, RetainHandling, TopicFilter};
use tokio::sync::oneshot;

use crate::message::{Delivery, Message};
use crate::router::{RetainSource, RetainedStore, SubscriptionTree};
use crate::session::{Link, OutboundLimits, Pushed, Session, Subscription, SubscriptionEntry};
use crate::store::restore::{self, Clocks};
use crate::store::{MemoryStore, Record, Store, StoredState};

pub mod inspect;
mod mailbox;

pub use self::mailbox::{Mailbox, MailboxReceiver, Reserved, SendError, mailbox};

/// What the router sends a connected client's task.
#[derive(Debug)]
pub enum Mail {
    /// A message for the client.
    Deliver(Delivery),
    /// Another connection claims this client's session: hand it over (or `None` if it is not
    /// to be kept) and close.
    TakeOver(oneshot::Sender<Option<Session>>),
    /// The configuration was reloaded: read the settings again (a client that the new ones
    /// no longer let in is disconnected).
    SettingsChanged,
    /// The broker is shutting down: close (an MQTT 5.0 client is told so).
    Shutdown,
}

/// Who a subscription in the index belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subscriber {
    /// A client's own subscription.
    Client(MqttString),
    /// A client's membership of a shared subscription, named by its full filter
    /// (`$share/{group}/{filter}`): each message goes to one member of the group.
    Shared {
        /// The shared subscription's full filter.
        share: MqttString,
        /// The member.
        client: MqttString,
    },
}

impl Subscriber {
    fn of(client: &MqttString, filter: &TopicFilter) -> Subscriber {
        if filter.is_shared() {
            Subscriber::Shared {
                share: filter.as_mqtt_string().clone(),
                client: client.clone(),
            }
        } else {
            Subscriber::Client(client.clone())
        }
    }
}

/// One matching subscription of one client, as routing sees it.
#[derive(Debug, Clone, Copy)]
struct Match {
    qos: QoS,
    id: Option<SubscriptionId>,
    retain_as_published: bool,
}

impl Match {
    fn of(entry: &SubscriptionEntry) -> Match {
        Match {
            qos: entry.0.qos,
            id: entry.1,
            retain_as_published: entry.0.retain_as_published,
        }
    }
}

/// A will waiting for its Will Delay Interval (MQTT 5.0, section 3.1.3.2).
#[derive(Debug)]
struct PendingWill {
    message: Arc<Message>,
    due: Instant,
}

/// When the will of a connection that ended at `now` is due: after its Will Delay Interval
/// (seconds), or when its session ends if that comes first (MQTT 5.0 section 3.1.3.2.2,
/// [MQTT-3.1.2-8]). `None` when it is due now: no delay, or a session that ends with its
/// connection (or none at all).
pub fn will_due(
    now: Instant,
    will_delay_interval: Option<u32>,
    session: Option<&Session>,
) -> Option<Instant> {
    let delay = Duration::from_secs(u64::from(will_delay_interval.unwrap_or(0)));
    let delay = match session.map(Session::expiry) {
        Some(Some(expiry)) => delay.min(expiry),
        Some(None) => delay,
        None => Duration::ZERO,
    };
    if delay.is_zero() {
        return None;
    }
    now.checked_add(delay)
}

/// The broker-wide settings routing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingSettings {
    /// `upgrade_outgoing_qos`: deliver at the subscription's QoS even when the message was
    /// published at a lower one (default false).
    pub upgrade_outgoing_qos: bool,
    /// `allow_duplicate_messages`: an MQTT 5.0 client whose subscriptions overlap gets one
    /// copy per matching subscription, each with its own Subscription Identifier (default
    /// true, as Mosquitto 2.0 does); false sends one copy at the highest QoS with every
    /// matching identifier [MQTT-3.3.4-3..5]. MQTT 3.x clients always get one copy at the
    /// highest QoS (3.1.1 [MQTT-3.3.5-1]).
    pub allow_duplicate_messages: bool,
    /// Limits of each session's outbound state.
    pub outbound: OutboundLimits,
}

/// Counters of what the broker did, read for `$SYS`.
#[derive(Debug, Default)]
pub struct Counters {
    /// PUBLISH packets received from clients.
    pub messages_received: AtomicU64,
    /// Deliveries handed to subscribers.
    pub messages_sent: AtomicU64,
    /// Deliveries dropped because a subscriber's queue was full.
    pub messages_dropped: AtomicU64,
    /// MQTT packets of any type received from clients.
    pub packets_received: AtomicU64,
    /// MQTT packets of any type sent to clients.
    pub packets_sent: AtomicU64,
    /// PUBLISH packets sent to clients.
    pub publish_sent: AtomicU64,
    /// Payload bytes of the PUBLISH packets received from clients.
    pub publish_bytes_received: AtomicU64,
    /// Payload bytes of the PUBLISH packets sent to clients.
    pub publish_bytes_sent: AtomicU64,
    /// PUBLISH packets received from clients, by QoS (index 0, 1, 2).
    pub publish_received_by_qos: [AtomicU64; 3],
    /// PUBLISH packets sent to clients, by QoS.
    pub publish_sent_by_qos: [AtomicU64; 3],
    /// Payload bytes of the PUBLISH packets received from clients, by QoS.
    pub publish_bytes_received_by_qos: [AtomicU64; 3],
    /// Payload bytes of the PUBLISH packets sent to clients, by QoS.
    pub publish_bytes_sent_by_qos: [AtomicU64; 3],
    /// Bytes read from client sockets.
    pub bytes_received: AtomicU64,
    /// Bytes written to client sockets.
    pub bytes_sent: AtomicU64,
    /// CONNECT packets received.
    pub connections: AtomicU64,
    /// TCP connections accepted.
    pub sockets: AtomicU64,
    /// Clients connected now (sessions owned by a connection).
    pub clients_connected: AtomicU64,
    /// The most clients connected at the same time.
    pub clients_maximum: AtomicU64,
    /// Disconnected persistent sessions removed by `persistent_client_expiration`.
    pub clients_expired: AtomicU64,
    /// CONNECT packets refused for their credentials (bad or unknown username or password,
    /// or anonymous where that is not allowed). Pigeon's own: Mosquitto 2.0 has no `$SYS`
    /// topic for it, so none is published.
    pub auth_failures: AtomicU64,
}

impl Counters {
    /// Counts a packet decoded from a client.
    pub fn packet_received(&self, packet: &Packet) {
        self.packets_received.fetch_add(1, Ordering::Relaxed);
        match packet {
            Packet::Publish(publish) => {
                let bytes = publish.payload.len() as u64;
                let qos = publish.qos as usize;
                self.messages_received.fetch_add(1, Ordering::Relaxed);
                self.publish_bytes_received
                    .fetch_add(bytes, Ordering::Relaxed);
                self.publish_received_by_qos[qos].fetch_add(1, Ordering::Relaxed);
                self.publish_bytes_received_by_qos[qos].fetch_add(bytes, Ordering::Relaxed);
            }
            Packet::Connect(_) => {
                self.connections.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// Counts a packet about to be written to a client.
    pub fn packet_sent(&self, packet: &Packet) {
        self.packets_sent.fetch_add(1, Ordering::Relaxed);
        if let Packet::Publish(publish) = packet {
            let bytes = publish.payload.len() as u64;
            let qos = publish.qos as usize;
            self.publish_sent.fetch_add(1, Ordering::Relaxed);
            self.publish_bytes_sent.fetch_add(bytes, Ordering::Relaxed);
            self.publish_sent_by_qos[qos].fetch_add(1, Ordering::Relaxed);
            self.publish_bytes_sent_by_qos[qos].fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Counts bytes read from a client socket.
    pub fn bytes_read(&self, n: usize) {
        self.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts bytes written to a client socket.
    pub fn bytes_written(&self, n: usize) {
        self.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn client_connected(&self) {
        let now = self.clients_connected.fetch_add(1, Ordering::Relaxed) + 1;
        self.clients_maximum.fetch_max(now, Ordering::Relaxed);
    }

    fn client_disconnected(&self) {
        self.clients_connected.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
enum Client {
    Online {
        mailbox: Mailbox,
        generation: u64,
        protocol: Protocol,
        /// Whether its session outlives the connection (what it is sent is then stored).
        persistent: bool,
    },
    /// A persistent session without a connection, and since when.
    Offline(Box<Away>),
}

/// A persistent session without a connection, and since when (boxed together: the registry
/// entry of a connected client stays small).
#[derive(Debug)]
struct Away {
    session: Session,
    since: Instant,
}

impl std::ops::Deref for Away {
    type Target = Session;

    fn deref(&self) -> &Session {
        &self.session
    }
}

impl std::ops::DerefMut for Away {
    fn deref_mut(&mut self) -> &mut Session {
        &mut self.session
    }
}

/// How a CONNECT's claim on a Client Identifier turned out.
#[derive(Debug)]
pub enum Claim {
    /// A new session (none existed, or the client asked for a clean one).
    Fresh(Session),
    /// The client's stored session, resumed.
    Resumed(Session),
    /// The identifier is connected elsewhere: ask that connection for the session with
    /// [`Mail::TakeOver`], then call [`Broker::settle_takeover`].
    TakeOver(Mailbox),
}

/// The shared broker state.
#[derive(Debug)]
pub struct Broker {
    /// `upgrade_outgoing_qos`, read on every delivery.
    upgrade_outgoing_qos: AtomicBool,
    /// `allow_duplicate_messages`, read on every delivery.
    allow_duplicate_messages: AtomicBool,
    /// The limits new sessions get.
    /// Shared by every session made under them (one pointer in each).
    outbound: RwLock<Arc<OutboundLimits>>,
    subscriptions: RwLock<SubscriptionTree<Subscriber, SubscriptionEntry>>,
    retained: RwLock<RetainedStore>,
    clients: Mutex<FastMap<MqttString, Client>>,
    /// Round-robin positions of the shared subscriptions, by full filter.
    shared_next: Mutex<FastMap<MqttString, usize>>,
    /// Wills waiting for their delay, by Client Identifier.
    wills: Mutex<FastMap<MqttString, PendingWill>>,
    generations: AtomicU64,
    ids: RandomState,
    /// What happened, for `$SYS`.
    pub counters: Counters,
    /// Where durable state is recorded.
    store: Arc<dyn Store>,
    /// `store.is_durable()`, read on every publish.
    persist: bool,
    /// The next store number of a message.
    next_message: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock left the data as consistent as each step keeps it; keep
    // serving rather than take every connection down with it.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A delivery to a connected persistent session, kept back until its record is appended
/// (see [`Broker::hand_over`]), with room taken for it in the connection's mailbox.
struct Later {
    room: Reserved,
    delivery: Delivery,
    client: MqttString,
    /// Its message's store number.
    message: u64,
}

impl Broker {
    /// An empty broker that keeps nothing on disk.
    pub fn new(settings: RoutingSettings) -> Self {
        Self::with_store(settings, Arc::new(MemoryStore::default()))
    }

    /// An empty broker recording its durable state in `store` (see [`restore`](Self::restore)
    /// to start from what a store recovered).
    pub fn with_store(settings: RoutingSettings, store: Arc<dyn Store>) -> Self {
        Broker {
            persist: store.is_durable(),
            store,
            next_message: AtomicU64::new(1),
            upgrade_outgoing_qos: AtomicBool::new(settings.upgrade_outgoing_qos),
            allow_duplicate_messages: AtomicBool::new(settings.allow_duplicate_messages),
            outbound: RwLock::new(Arc::new(settings.outbound)),
            subscriptions: RwLock::new(SubscriptionTree::new()),
            retained: RwLock::new(RetainedStore::default()),
            clients: Mutex::new(FastMap::default()),
            shared_next: Mutex::new(FastMap::default()),
            wills: Mutex::new(FastMap::default()),
            generations: AtomicU64::new(1),
            ids: RandomState::new(),
            counters: Counters::default(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Whether durable state is recorded (`persistence true`).
    pub fn persists(&self) -> bool {
        self.persist
    }

    /// Appends `record` to the store (which must be durable: check [`persists`](Self::persists)).
    pub fn record(&self, record: &Record) -> crate::store::Lsn {
        self.store.append(record)
    }

    /// The store number of `message`; when it has none yet, one is given and the message
    /// is added to `out`, the records being gathered.
    fn message_id(&self, message: &Arc<Message>, clocks: &Clocks, out: &mut Vec<Record>) -> u64 {
        *message.store_id.get_or_init(|| {
            let id = self.next_message.fetch_add(1, Ordering::Relaxed);
            out.push(Record::Message {
                id,
                message: restore::stored_message(message, clocks),
            });
            id
        })
    }

    /// Appends the gathered records as one (see [`Record::Group`]), and empties `out`.
    fn flush(&self, out: &mut Vec<Record>) {
        match out.len() {
            0 => {}
            1 => {
                if let Some(record) = out.pop() {
                    self.store.append(&record);
                }
            }
            _ => {
                self.store.append(&Record::Group(std::mem::take(out)));
            }
        }
    }

    /// Records `session` whole (replacing what the store had for its client), with any
    /// message it holds that was not stored yet.
    fn record_session(&self, session: &Session, disconnected_ms: Option<u64>, clocks: &Clocks) {
        let mut out = Vec::new();
        let stored = restore::stored_session(session, disconnected_ms, |m| {
            self.message_id(m, clocks, &mut out)
        });
        out.push(Record::Session(stored));
        self.flush(&mut out);
    }

    /// A connection's session was accepted (`present`: resumed). A persistent one is recorded
    /// (a new one whole; a resumed one's subscriptions and expiry, keeping what it holds); a
    /// clean one is no longer stored. What is sent to it from now on is recorded too.
    pub fn session_accepted(
        &self,
        client_id: &MqttString,
        generation: u64,
        session: &Session,
        present: bool,
    ) {
        if !self.persist {
            return;
        }
        let mut clients = lock(&self.clients);
        let Some(Client::Online {
            generation: g,
            persistent,
            ..
        }) = clients.get_mut(client_id)
        else {
            return;
        };
        if *g != generation {
            return;
        }
        let was = *persistent;
        *persistent = !session.clean;
        if session.clean {
            if was {
                self.store.append(&Record::SessionGone {
                    client: client_id.to_string(),
                });
            }
        } else if present {
            self.store
                .append(&Record::SessionMeta(restore::stored_meta(session, None)));
        } else {
            self.record_session(session, None, &Clocks::read());
        }
    }

    /// A connected session's subscriptions or expiry changed: recorded if it persists.
    pub fn session_changed(&self, session: &Session) {
        if self.persist && !session.clean {
            self.store
                .append(&Record::SessionMeta(restore::stored_meta(session, None)));
        }
    }

    /// Takes what a store recovered: retained messages, persistent sessions (offline, their
    /// client away since it left, with their subscriptions in the index and what they held),
    /// and wills waiting for their delay. Returns the sessions, the messages they hold and
    /// their subscriptions.
    pub fn restore(&self, state: &StoredState) -> (usize, usize, usize) {
        let clocks = Clocks::read();
        let mut messages = HashMap::with_capacity(state.messages.len());
        let mut max_id = 0;
        for (&id, stored) in &state.messages {
            max_id = max_id.max(id);
            if let Some(m) = restore::message(stored, &clocks) {
                let m = Arc::new(m);
                let _ = m.store_id.set(id);
                messages.insert(id, m);
            }
        }
        self.next_message.fetch_max(max_id + 1, Ordering::Relaxed);
        {
            let mut retained = self
                .retained
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            for (topic, stored) in &state.retained {
                if let Some(m) = restore::message(stored, &clocks) {
                    let source = state
                        .retained_sources
                        .get(topic)
                        .map(|(username, client_id)| RetainSource {
                            username: username.clone(),
                            client_id: client_id.clone(),
                        });
                    retained.insert_from(Arc::new(m), source);
                }
            }
        }
        let limits = self.shared_outbound_limits();
        let (mut sessions, mut held, mut subscriptions) = (0, 0, 0);
        for stored in state.sessions.values() {
            let Some(session) = restore::session(stored, &messages, Arc::clone(&limits)) else {
                continue;
            };
            {
                let mut tree = self
                    .subscriptions
                    .write()
                    .unwrap_or_else(PoisonError::into_inner);
                for sub in session.subscriptions.values() {
                    tree.insert(
                        sub.filter.filter(),
                        Subscriber::of(&session.client_id, &sub.filter),
                        (sub.options, sub.id),
                    );
                }
            }
            sessions += 1;
            subscriptions += session.subscriptions.len();
            held += session.outbound.inflight_len() + session.outbound.queued_len();
            let since = clocks.to_instant(stored.disconnected_ms.unwrap_or(clocks.wall_ms));
            lock(&self.clients).insert(
                session.client_id.clone(),
                Client::Offline(Box::new(Away { session, since })),
            );
        }
        let mut wills = lock(&self.wills);
        for (client, (stored, due_ms)) in &state.wills {
            if let (Ok(client), Some(m)) = (
                MqttString::try_from(client.as_str()),
                restore::message(stored, &clocks),
            ) {
                wills.insert(
                    client,
                    PendingWill {
                        message: Arc::new(m),
                        due: clocks.to_instant(*due_ms),
                    },
                );
            }
        }
        (sessions, held, subscriptions)
    }

    /// The limits each new session's outbound state gets.
    pub fn outbound_limits(&self) -> OutboundLimits {
        **self.outbound.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`outbound_limits`](Self::outbound_limits), as new sessions share them.
    fn shared_outbound_limits(&self) -> Arc<OutboundLimits> {
        Arc::clone(&self.outbound.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The routing settings in force.
    pub fn routing_settings(&self) -> RoutingSettings {
        RoutingSettings {
            upgrade_outgoing_qos: self.upgrade_outgoing_qos.load(Ordering::Relaxed),
            allow_duplicate_messages: self.allow_duplicate_messages.load(Ordering::Relaxed),
            outbound: self.outbound_limits(),
        }
    }

    /// Takes new routing settings (a configuration reload): `upgrade_outgoing_qos` applies to
    /// every delivery from now on, the outbound limits to the sessions created from now on
    /// (existing sessions keep theirs).
    pub fn set_routing_settings(&self, settings: &RoutingSettings) {
        self.upgrade_outgoing_qos
            .store(settings.upgrade_outgoing_qos, Ordering::Relaxed);
        self.allow_duplicate_messages
            .store(settings.allow_duplicate_messages, Ordering::Relaxed);
        *self
            .outbound
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(settings.outbound);
    }

    /// Tells every connected client's task that the settings changed ([`Mail::SettingsChanged`]).
    /// A task whose mailbox is full is busy, and reads the settings again before long anyway.
    pub fn notify_settings_changed(&self) {
        self.notify_all(|| Mail::SettingsChanged);
    }

    /// Tells every connected client's task that the broker is shutting down
    /// ([`Mail::Shutdown`]).
    pub fn notify_shutdown(&self) {
        self.notify_all(|| Mail::Shutdown);
    }

    fn notify_all(&self, mail: impl Fn() -> Mail) {
        let mailboxes: Vec<Mailbox> = lock(&self.clients)
            .values()
            .filter_map(|client| match client {
                Client::Online { mailbox, .. } => Some(mailbox.clone()),
                Client::Offline(..) => None,
            })
            .collect();
        for mailbox in mailboxes {
            let _ = mailbox.try_send(mail());
        }
    }

    /// A number identifying one connection's tenure of a Client Identifier.
    pub fn next_generation(&self) -> u64 {
        self.generations.fetch_add(1, Ordering::Relaxed)
    }

    /// A Client Identifier for a client that sent an empty one: `prefix` followed by a random
    /// UUID-shaped string, as Mosquitto assigns them (`auto-0E8C...`).
    pub fn assign_client_id(&self, prefix: &str) -> MqttString {
        let n = self.generations.fetch_add(1, Ordering::Relaxed);
        let a = self.ids.hash_one((n, 0u8));
        let b = self.ids.hash_one((n, 1u8));
        let id = format!(
            "{prefix}{:08X}-{:04X}-{:04X}-{:04X}-{:012X}",
            a >> 32,
            (a >> 16) & 0xFFFF,
            a & 0xFFFF,
            b >> 48,
            b & 0xFFFF_FFFF_FFFF
        );
        // A prefix from the configuration is valid UTF-8 without U+0000, and so is the rest.
        MqttString::try_from(id).unwrap_or_default()
    }

    /// Claims `client_id` for a connection that owns `mailbox`. See [`Claim`].
    pub fn claim(
        &self,
        client_id: &MqttString,
        protocol: Protocol,
        clean: bool,
        mailbox: Mailbox,
        generation: u64,
    ) -> Claim {
        // A will waiting for its delay is not sent when the client is back in time
        // [MQTT-3.1.3-9].
        if lock(&self.wills).remove(client_id).is_some() && self.persist {
            self.store.append(&Record::WillGone {
                client: client_id.to_string(),
            });
        }
        let previous = {
            let mut clients = lock(&self.clients);
            let previous = clients.insert(
                client_id.clone(),
                Client::Online {
                    mailbox,
                    generation,
                    protocol,
                    // Until the session is accepted: whether it may persist (an MQTT 5.0
                    // session's expiry is not known yet).
                    persistent: self.persist && (!clean || protocol.is_v5()),
                },
            );
            // A stored session the client does not resume ends here, before anything is
            // recorded for the new one (under the same lock as routing).
            if self.persist && clean && matches!(previous, Some(Client::Offline(..))) {
                self.store.append(&Record::SessionGone {
                    client: client_id.to_string(),
                });
            }
            previous
        };
        if !matches!(previous, Some(Client::Online { .. })) {
            // A takeover replaces one connected client by another; anything else adds one.
            self.counters.client_connected();
        }
        match previous {
            None => Claim::Fresh(self.new_session(client_id, protocol, clean)),
            Some(Client::Offline(away)) if !clean => Claim::Resumed(away.session),
            Some(Client::Offline(mut away)) => {
                self.end_session(&mut away.session);
                Claim::Fresh(self.new_session(client_id, protocol, clean))
            }
            Some(Client::Online { mailbox, .. }) => Claim::TakeOver(mailbox),
        }
    }

    /// Finishes a takeover: `old` is what the previous connection handed over. Returns the
    /// session and whether it was resumed (Session Present).
    ///
    /// The previous connection scheduled its delayed will as it closed, after [`claim`]
    /// cleared the pending ones: a resumed session is the client back in time, so the will
    /// is dropped [MQTT-3.1.3-9]; an ended one sends it now [MQTT-3.1.2-8].
    ///
    /// [`claim`]: Self::claim
    pub fn settle_takeover(
        &self,
        client_id: &MqttString,
        protocol: Protocol,
        clean: bool,
        old: Option<Session>,
    ) -> (Session, bool) {
        let will = lock(&self.wills).remove(client_id);
        if will.is_some() && self.persist {
            self.store.append(&Record::WillGone {
                client: client_id.to_string(),
            });
        }
        let settled = match old {
            Some(session) if !clean && !session.clean => (session, true),
            Some(mut session) => {
                self.end_session(&mut session);
                (self.new_session(client_id, protocol, clean), false)
            }
            None => (self.new_session(client_id, protocol, clean), false),
        };
        if let Some(will) = will
            && !settled.1
        {
            self.publish(&will.message);
        }
        settled
    }

    fn new_session(&self, client_id: &MqttString, protocol: Protocol, clean: bool) -> Session {
        Session::new(
            client_id.clone(),
            protocol,
            clean,
            self.shared_outbound_limits(),
        )
    }

    /// A connection ended. A persistent session is kept for its client's return; a clean one
    /// is dropped with its subscriptions. Returns the session back if the identifier was
    /// meanwhile claimed by another connection, which will ask for it by [`Mail::TakeOver`].
    ///
    /// # Errors
    /// The session itself, when another connection owns the identifier now.
    #[expect(
        clippy::result_large_err,
        reason = "moved once per disconnect; boxing would cost an allocation on the common path"
    )]
    pub fn release(
        &self,
        client_id: &MqttString,
        generation: u64,
        session: Option<Session>,
        now: Instant,
    ) -> Result<(), Option<Session>> {
        self.release_draining(client_id, generation, session, None, now)
    }

    /// [`release`](Self::release), taking into the session first what is still in the
    /// connection's mailbox `pending`: deliveries routed to the connection after it stopped
    /// reading them. They are taken under the registry's lock, after which routing queues in
    /// the stored session itself, so none is lost between the two.
    ///
    /// # Errors
    /// As [`release`](Self::release).
    #[expect(
        clippy::result_large_err,
        reason = "moved once per disconnect; boxing would cost an allocation on the common path"
    )]
    pub fn release_draining(
        &self,
        client_id: &MqttString,
        generation: u64,
        mut session: Option<Session>,
        pending: Option<&mut MailboxReceiver>,
        now: Instant,
    ) -> Result<(), Option<Session>> {
        let mut clients = lock(&self.clients);
        let Entry::Occupied(entry) = clients.entry(client_id.clone()) else {
            return Err(session);
        };
        match entry.get() {
            Client::Online { generation: g, .. } if *g == generation => {}
            _ => return Err(session),
        }
        if let (Some(rx), Some(session)) = (pending, session.as_mut()) {
            while let Some(mail) = rx.try_recv() {
                if let Mail::Deliver(delivery) = mail {
                    Self::queue_offline(session, delivery, now);
                }
            }
        }
        self.counters.client_disconnected();
        match session {
            Some(session) if !session.clean => {
                if self.persist {
                    // Whole, under the registry lock: what routing queues for it from now on
                    // is recorded after this.
                    let clocks = Clocks::read();
                    self.record_session(&session, Some(clocks.wall_ms), &clocks);
                }
                *entry.into_mut() = Client::Offline(Box::new(Away {
                    session,
                    since: now,
                }));
            }
            session => {
                if self.persist {
                    self.store.append(&Record::SessionGone {
                        client: client_id.to_string(),
                    });
                }
                entry.remove();
                drop(clients);
                if let Some(mut session) = session {
                    self.end_session(&mut session);
                }
            }
        }
        Ok(())
    }

    /// A session ends: its subscriptions leave the index, and what it held from shared
    /// subscriptions and had not received goes to other members of their groups (MQTT 5.0
    /// section 4.8.2).
    pub fn end_session(&self, session: &mut Session) {
        {
            let mut tree = self
                .subscriptions
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            for sub in session.subscriptions.values() {
                tree.remove(
                    sub.filter.filter(),
                    &Subscriber::of(&session.client_id, &sub.filter),
                );
            }
        }
        for delivery in session.outbound.take_shared() {
            if let Some(share) = &delivery.shared {
                self.route_shared(&delivery.message, share);
            }
        }
    }

    /// Adds `client_id`'s subscriptions (each with whether it is new) to the index and returns
    /// the retained messages due, as deliveries with the RETAIN flag set [MQTT-3.3.1-8]: for
    /// each subscription as its Retain Handling says (0: always, 1: if new, 2: never)
    /// [MQTT-3.3.1-9], [MQTT-3.3.1-10], [MQTT-3.3.1-11]; none for shared subscriptions
    /// (section 4.8.2).
    pub fn subscribe(
        &self,
        client_id: &MqttString,
        subs: &[(Subscription, bool)],
    ) -> Vec<Delivery> {
        self.subscribe_checked(client_id, subs, |_, _| true)
    }

    /// As [`subscribe`](Self::subscribe), leaving out the retained messages for which `keep`,
    /// given who published one and its topic, says no (`check_retain_source`: the publisher
    /// must still be allowed to write there).
    pub fn subscribe_checked(
        &self,
        client_id: &MqttString,
        subs: &[(Subscription, bool)],
        keep: impl Fn(&RetainSource, &str) -> bool,
    ) -> Vec<Delivery> {
        {
            let mut tree = self
                .subscriptions
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            for (sub, _) in subs {
                tree.insert(
                    sub.filter.filter(),
                    Subscriber::of(client_id, &sub.filter),
                    (sub.options, sub.id),
                );
            }
        }
        let now = crate::clock::now();
        let retained = self.retained.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        for (sub, new) in subs {
            let wanted = match sub.options.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendAtSubscribeIfNew => *new,
                RetainHandling::DoNotSend => false,
            };
            if !wanted || sub.filter.is_shared() {
                continue;
            }
            retained.for_each_match_with_source(sub.filter.filter(), |message, source| {
                // An expired retained message is not sent [MQTT-3.3.2-5].
                if message.is_expired(now) {
                    return;
                }
                if let Some(source) = source
                    && !keep(source, message.topic.as_str())
                {
                    return;
                }
                let mut delivery = Delivery::new(
                    Arc::clone(message),
                    self.delivery_qos(message.qos, sub.options.qos),
                    true,
                );
                delivery.subscription_ids.extend(sub.id);
                out.push(delivery);
            });
        }
        out
    }

    /// Removes `client_id`'s subscriptions from the index.
    pub fn unsubscribe(&self, client_id: &MqttString, filters: &[TopicFilter]) {
        let mut tree = self
            .subscriptions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for filter in filters {
            tree.remove(filter.filter(), &Subscriber::of(client_id, filter));
        }
    }

    fn delivery_qos(&self, published: QoS, subscribed: QoS) -> QoS {
        if self.upgrade_outgoing_qos.load(Ordering::Relaxed) {
            subscribed
        } else {
            // The lower of the two [MQTT-3.8.4-6] (3.1.1: [MQTT-3.8.4-6]).
            published.min(subscribed)
        }
    }

    /// Publishes `message`: stores or clears it as retained when its RETAIN flag says so,
    /// then delivers it to every matching subscriber (see [`route`](Self::route)). Returns
    /// the number of matching subscribers. (Received PUBLISH packets are counted where they
    /// are decoded, [`Counters::packet_received`], so wills and `$SYS` updates are not.)
    pub fn publish(&self, message: &Arc<Message>) -> usize {
        self.publish_from(message, None)
    }

    /// As [`publish`](Self::publish), remembering with a retained message who published it
    /// (for `check_retain_source`).
    pub fn publish_from(&self, message: &Arc<Message>, source: Option<RetainSource>) -> usize {
        self.publish_received(message, source, None)
    }

    /// As [`publish_from`](Self::publish_from), for a QoS 2 message that `inbound` says
    /// which client with a persistent session sent under which packet identifier: with
    /// persistence, the identifier awaiting PUBREL is recorded with the message and its
    /// deliveries, all or nothing (a resent PUBLISH after a crash is then recognised exactly
    /// when the message was kept).
    pub fn publish_received(
        &self,
        message: &Arc<Message>,
        source: Option<RetainSource>,
        inbound: Option<(&MqttString, u16)>,
    ) -> usize {
        let mut out = Vec::new();
        if self.persist
            && let Some((client, packet_id)) = inbound
        {
            message.store_id.get_or_init(|| {
                let id = self.next_message.fetch_add(1, Ordering::Relaxed);
                out.push(Record::InboundMessage {
                    id,
                    message: restore::stored_message(message, &Clocks::read()),
                    client: client.to_string(),
                    packet_id,
                });
                id
            });
        }
        if message.retain {
            // `$SYS` values are the broker's own, published afresh after a restart.
            if self.persist && !message.topic.is_system() {
                let stored = (!message.payload.is_empty())
                    .then(|| restore::stored_message(message, &Clocks::read()));
                out.push(Record::Retain {
                    topic: message.topic.as_str().to_owned(),
                    message: stored,
                });
                if let (Some(source), false) = (&source, message.payload.is_empty()) {
                    out.push(Record::RetainSource {
                        topic: message.topic.as_str().to_owned(),
                        username: source.username.clone(),
                        client_id: source.client_id.clone(),
                    });
                }
            }
            // [MQTT-3.3.1-5]: store it (an empty payload clears it [MQTT-3.3.1-10]).
            self.retained
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert_from(Arc::clone(message), source);
        }
        let matched = self.route_into(message, &mut out);
        self.flush(&mut out);
        matched
    }

    /// Delivers `message` to its subscribers; returns how many matched (clients, and shared
    /// subscription groups), whether or not a delivery was dropped.
    ///
    /// Forwarded messages carry RETAIN 0 [MQTT-3.3.1-9], unless the subscription asked for
    /// Retain As Published [MQTT-3.3.1-12]. A subscription with No Local does not get its own
    /// client's messages [MQTT-3.8.3-3]. A client whose subscriptions overlap gets what
    /// `allow_duplicate_messages` says; each delivery carries the identifiers of the
    /// subscriptions it stands for [MQTT-3.3.4-3]. A shared subscription delivers each
    /// message to one member, in turn (section 4.8.2).
    pub fn route(&self, message: &Arc<Message>) -> usize {
        let mut out = Vec::new();
        let matched = self.route_into(message, &mut out);
        self.flush(&mut out);
        matched
    }

    /// [`route`](Self::route), gathering the records it makes into `out` (appended while
    /// the registry is locked, so that nothing recorded about a delivery can precede them).
    fn route_into(&self, message: &Arc<Message>, out: &mut Vec<Record>) -> usize {
        // Each client's matches, gathered without a map: most messages match one
        // subscription, and a map per message cost more than the rest of routing.
        let mut direct: Vec<(MqttString, Match)> = Vec::new();
        let mut shared: HashMap<MqttString, Vec<(MqttString, Match)>> = HashMap::new();
        {
            let tree = self
                .subscriptions
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            tree.for_each_match(
                message.topic.as_str(),
                |subscriber, entry| match subscriber {
                    Subscriber::Client(client) => {
                        if entry.0.no_local && message.origin.as_ref() == Some(client) {
                            return;
                        }
                        direct.push((client.clone(), Match::of(entry)));
                    }
                    Subscriber::Shared { share, client } => shared
                        .entry(share.clone())
                        .or_default()
                        .push((client.clone(), Match::of(entry))),
                },
            );
        }
        // A client's matches side by side, in the order they matched (the sort is stable).
        if direct.len() > 1 {
            direct.sort_by(|a, b| a.0.cmp(&b.0));
        }
        if direct.is_empty() && shared.is_empty() {
            return 0;
        }
        let mut matched = shared.len();
        let duplicates = self.allow_duplicate_messages.load(Ordering::Relaxed);
        let mut delivered = 0;
        let mut dropped = 0;
        let mut later = Vec::new();
        // Each group's turn is taken before the registry is locked (the two locks are never
        // held together).
        let shared: Vec<_> = shared
            .into_iter()
            .map(|(share, members)| {
                let start = self.next_member(&share, members.len());
                (share, members, start)
            })
            .collect();
        {
            let mut clients = lock(&self.clients);
            for matches in direct.chunk_by(|a, b| a.0 == b.0) {
                matched += 1;
                let client_id = &matches[0].0;
                let Some(client) = clients.get_mut(client_id) else {
                    continue;
                };
                let v5 = match client {
                    Client::Online { protocol, .. } => protocol.is_v5(),
                    Client::Offline(session) => session.protocol.is_v5(),
                };
                self.deliveries(message, matches, v5 && duplicates, |delivery| {
                    match self.hand_over(client_id, client, delivery, out, &mut later) {
                        Some(true) => delivered += 1,
                        Some(false) => dropped += 1,
                        None => {}
                    }
                });
            }
            for (share, members, start) in &shared {
                let handed = self.deliver_shared(
                    &mut clients,
                    message,
                    share,
                    members,
                    *start,
                    out,
                    &mut later,
                );
                match handed {
                    Some(true) => delivered += 1,
                    Some(false) => dropped += 1,
                    None => {}
                }
            }
            // One record for all of it, before anything else can be recorded about these
            // deliveries; then the deliveries that waited for it.
            let lost = self.flush_then_send(out, later);
            delivered -= lost;
            dropped += lost;
        }
        self.counters
            .messages_sent
            .fetch_add(delivered, Ordering::Relaxed);
        self.counters
            .messages_dropped
            .fetch_add(dropped, Ordering::Relaxed);
        matched
    }

    /// The delivery of `message` through one matching subscription: its QoS capped by the
    /// subscription's, RETAIN kept only with Retain As Published [MQTT-3.3.1-12], its
    /// Subscription Identifier [MQTT-3.3.4-3].
    fn delivery(&self, message: &Arc<Message>, m: &Match) -> Delivery {
        let mut d = Delivery::new(
            Arc::clone(message),
            self.delivery_qos(message.qos, m.qos),
            message.retain && m.retain_as_published,
        );
        d.subscription_ids.extend(m.id);
        d
    }

    /// Calls `each` with the deliveries of `message` to one client whose subscriptions
    /// `matches` match it (one client's matches, in the order they matched).
    fn deliveries(
        &self,
        message: &Arc<Message>,
        matches: &[(MqttString, Match)],
        one_per_match: bool,
        mut each: impl FnMut(Delivery),
    ) {
        let single = |m: &Match| self.delivery(message, m);
        let Some(((_, first), more)) = matches.split_first() else {
            return;
        };
        if more.is_empty() || one_per_match {
            for (_, m) in matches {
                each(single(m));
            }
            return;
        }
        // One copy: the highest QoS [MQTT-3.3.4-2], every identifier [MQTT-3.3.4-3].
        let mut d = single(first);
        for (_, m) in more {
            d.qos = d.qos.max(self.delivery_qos(message.qos, m.qos));
            d.retain |= message.retain && m.retain_as_published;
            d.subscription_ids.extend(m.id);
        }
        each(d);
    }

    /// Hands `delivery` to a client: to its connection's mailbox, or to its stored session.
    /// `Some(true)` when accepted, `Some(false)` when dropped (a full queue or mailbox),
    /// `None` when the client may not read it.
    ///
    /// With persistence, a delivery to a persistent session is recorded before it is handed
    /// over (online: QoS 1 and 2; offline: whatever is queued). Online, room is taken in the
    /// connection's mailbox and the delivery waits in `later` until the records are appended
    /// ([`flush_then_send`](Self::flush_then_send)): the connection records what it does with a
    /// delivery (its packet identifier, its acknowledgement), and none of that may come
    /// before the delivery's own record in the log, or a restart would replay it against
    /// nothing and send the message again under a new identifier.
    fn hand_over(
        &self,
        client_id: &MqttString,
        client: &mut Client,
        delivery: Delivery,
        out: &mut Vec<Record>,
        later: &mut Vec<Later>,
    ) -> Option<bool> {
        match client {
            Client::Online {
                mailbox,
                persistent,
                ..
            } => {
                if self.persist && *persistent && delivery.qos != QoS::AtMostOnce {
                    // A full mailbox drops it, as `try_send` would.
                    let Some(room) = mailbox.reserve() else {
                        return Some(false);
                    };
                    let message = self.message_id(&delivery.message, &Clocks::read(), out);
                    out.push(Record::Enqueue {
                        client: client_id.to_string(),
                        delivery: restore::stored_delivery(&delivery, message, None),
                    });
                    later.push(Later {
                        room,
                        delivery,
                        client: client_id.clone(),
                        message,
                    });
                    return Some(true);
                }
                Some(mailbox.try_send(Mail::Deliver(delivery)).is_ok())
            }
            Client::Offline(session) => {
                // Checked against the client's ACL as it would be online.
                if let Some(access) = &session.access
                    && !access.may_read(&session.client_id, delivery.message.topic.as_str())
                {
                    return None;
                }
                let record = self.persist.then(|| {
                    let id = self.message_id(&delivery.message, &Clocks::read(), out);
                    restore::stored_delivery(&delivery, id, None)
                });
                let pushed = session
                    .outbound
                    .push(delivery, Link::Offline, crate::clock::now());
                if pushed == Pushed::Queued
                    && let Some(delivery) = record
                {
                    out.push(Record::Enqueue {
                        client: client_id.to_string(),
                        delivery,
                    });
                }
                Some(!matches!(pushed, Pushed::Dropped))
            }
        }
    }

    /// Appends the gathered records, then sends the deliveries [`hand_over`](Self::hand_over)
    /// kept back for them; returns how many were lost after all (a receiver gone meanwhile),
    /// recorded as done. Called with the registry locked, as `hand_over` was.
    fn flush_then_send(&self, out: &mut Vec<Record>, later: Vec<Later>) -> u64 {
        self.flush(out);
        let mut lost = 0;
        for Later {
            room,
            delivery,
            client,
            message,
        } in later
        {
            if room.send(delivery).is_err() {
                out.push(Record::Done {
                    client: client.to_string(),
                    message,
                });
                lost += 1;
            }
        }
        self.flush(out);
        lost
    }

    /// Queues `delivery` in a session without a connection, as [`hand_over`](Self::hand_over)
    /// says.
    fn queue_offline(session: &mut Session, delivery: Delivery, now: Instant) -> Option<bool> {
        // Checked against the client's ACL as it would be online.
        if let Some(access) = &session.access
            && !access.may_read(&session.client_id, delivery.message.topic.as_str())
        {
            return None;
        }
        Some(!matches!(
            session.outbound.push(delivery, Link::Offline, now),
            Pushed::Dropped
        ))
    }

    /// Delivers `message` to one member of the shared subscription `share`: the next
    /// connected member in turn whose mailbox takes it, else the first member with a stored
    /// session (it queues there).
    /// `members` are in index order; `start` is the group's turn ([`next_member`]).
    ///
    /// [`next_member`]: Self::next_member
    #[expect(
        clippy::too_many_arguments,
        reason = "the routing state threaded through: one call site per kind of routing"
    )]
    fn deliver_shared(
        &self,
        clients: &mut FastMap<MqttString, Client>,
        message: &Arc<Message>,
        share: &MqttString,
        members: &[(MqttString, Match)],
        start: usize,
        out: &mut Vec<Record>,
        later: &mut Vec<Later>,
    ) -> Option<bool> {
        let n = members.len();
        let make = |m: &Match| {
            let mut d = self.delivery(message, m);
            d.shared = Some(share.clone());
            d
        };
        let order = (0..n).map(|i| &members[(start + i) % n]);
        let mut result = None;
        for (client_id, m) in order.clone() {
            if let Some(client @ Client::Online { .. }) = clients.get_mut(client_id)
                && self.hand_over(client_id, client, make(m), out, later) == Some(true)
            {
                result = Some(Some(true));
                break;
            }
        }
        if result.is_none() {
            for (client_id, m) in order {
                if let Some(client @ Client::Offline(..)) = clients.get_mut(client_id) {
                    result = Some(self.hand_over(client_id, client, make(m), out, later));
                    break;
                }
            }
        }
        result.unwrap_or(Some(false))
    }

    /// Whose turn it is in the shared subscription `share` of `n` members; moves the turn on.
    fn next_member(&self, share: &MqttString, n: usize) -> usize {
        let mut next = lock(&self.shared_next);
        let slot = next.entry(share.clone()).or_insert(0);
        let start = *slot % n;
        *slot = start + 1;
        start
    }

    /// Delivers `message` again through the shared subscription `share`, to whichever member
    /// is next (a departed member's undelivered message).
    fn route_shared(&self, message: &Arc<Message>, share: &MqttString) {
        let mut members = Vec::new();
        {
            let tree = self
                .subscriptions
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            tree.for_each_match(message.topic.as_str(), |subscriber, entry| {
                if let Subscriber::Shared { share: s, client } = subscriber
                    && s == share
                {
                    members.push((client.clone(), Match::of(entry)));
                }
            });
        }
        if !members.is_empty() {
            let start = self.next_member(share, members.len());
            let (mut out, mut later) = (Vec::new(), Vec::new());
            let mut clients = lock(&self.clients);
            self.deliver_shared(
                &mut clients,
                message,
                share,
                &members,
                start,
                &mut out,
                &mut later,
            );
            self.flush_then_send(&mut out, later);
        }
    }

    /// Holds `message`, the will of `client_id`, until `due` (its Will Delay Interval, or the
    /// end of its session if sooner) [MQTT-3.1.3-9]. A will already waiting for the client is
    /// replaced.
    pub fn schedule_will(&self, client_id: &MqttString, message: Arc<Message>, due: Instant) {
        if self.persist {
            let clocks = Clocks::read();
            self.store.append(&Record::Will {
                client: client_id.to_string(),
                message: restore::stored_message(&message, &clocks),
                due_ms: clocks.to_wall(due),
            });
        }
        lock(&self.wills).insert(client_id.clone(), PendingWill { message, due });
    }

    /// Publishes the wills whose time has come; returns how many.
    pub fn publish_due_wills(&self, now: Instant) -> usize {
        let due: Vec<Arc<Message>> = lock(&self.wills)
            .extract_if(|_, w| w.due <= now)
            .map(|(client, w)| {
                if self.persist {
                    self.store.append(&Record::WillGone {
                        client: client.to_string(),
                    });
                }
                w.message
            })
            .collect();
        for message in &due {
            self.publish(message);
        }
        due.len()
    }

    /// Whether wills wait for their delay, or sessions for their client (the housekeeping
    /// task has something to watch).
    pub fn has_timers(&self) -> bool {
        !lock(&self.wills).is_empty()
            || lock(&self.clients)
                .values()
                .any(|c| matches!(c, Client::Offline(..)))
    }

    /// Clients connected now (their sessions owned by their connections).
    pub fn online_count(&self) -> usize {
        lock(&self.clients)
            .values()
            .filter(|c| matches!(c, Client::Online { .. }))
            .count()
    }

    /// Clients with a session (connected or not).
    pub fn client_count(&self) -> usize {
        lock(&self.clients).len()
    }

    /// Subscriptions in the index.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Removes the sessions whose client has been away longer than their Session Expiry
    /// Interval, or than `max_age` (`persistent_client_expiration`) where that is set, with
    /// their subscriptions and queued messages; a will waiting for such a session is
    /// published now [MQTT-3.1.3-9]. Returns their Client Identifiers.
    pub fn expire_sessions(&self, now: Instant, max_age: Option<Duration>) -> Vec<MqttString> {
        let expired: Vec<Box<Away>> = lock(&self.clients)
            .extract_if(|_, client| match client {
                Client::Offline(session) => {
                    let away = now.saturating_duration_since(session.since);
                    session.expiry().is_some_and(|e| away >= e)
                        || max_age.is_some_and(|max| away > max)
                }
                Client::Online { .. } => false,
            })
            .filter_map(|(_, client)| match client {
                Client::Offline(away) => Some(away),
                Client::Online { .. } => None,
            })
            .collect();
        let mut ids = Vec::with_capacity(expired.len());
        for mut session in expired {
            if self.persist {
                self.store.append(&Record::SessionGone {
                    client: session.client_id.to_string(),
                });
            }
            self.end_session(&mut session);
            self.counters
                .clients_expired
                .fetch_add(1, Ordering::Relaxed);
            let will = lock(&self.wills).remove(&session.client_id);
            if let Some(will) = will {
                if self.persist {
                    self.store.append(&Record::WillGone {
                        client: session.client_id.to_string(),
                    });
                }
                self.publish(&will.message);
            }
            ids.push(session.session.client_id);
        }
        ids
    }

    /// What the broker holds for later, as `(messages, payload bytes)`: the retained messages
    /// and what waits in disconnected clients' sessions (a message queued for several clients
    /// counts once per client).
    pub fn stored(&self) -> (usize, usize) {
        let (mut count, mut bytes) = {
            let retained = self.retained.read().unwrap_or_else(PoisonError::into_inner);
            (retained.len(), retained.bytes())
        };
        for client in lock(&self.clients).values() {
            if let Client::Offline(session) = client {
                count += session.outbound.inflight_len() + session.outbound.queued_len();
                bytes += session.outbound.held_bytes();
            }
        }
        (count, bytes)
    }

    /// Retained messages stored.
    pub fn retained_count(&self) -> usize {
        self.retained
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
#[path = "broker_v5_tests.rs"]
mod v5_tests;

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use pigeon_proto::TopicName;

    use pigeon_proto::SubscriptionOptions;

    use super::*;
    use crate::clock;

    /// One registry entry per client, beside its key (an `MqttString`, 32 bytes): 24 bytes
    /// make a 56-byte bucket rather than 64. See ARCHITECTURE.md, "Memory per connection".
    #[test]
    fn a_registry_entry_is_small() {
        assert!(size_of::<Client>() <= 24, "{}", size_of::<Client>());
    }

    fn broker() -> Broker {
        Broker::new(RoutingSettings {
            upgrade_outgoing_qos: false,
            allow_duplicate_messages: true,
            outbound: OutboundLimits::default(),
        })
    }

    fn id(s: &str) -> MqttString {
        MqttString::try_from(s).expect("valid id")
    }

    fn message(t: &str, qos: QoS, retain: bool, payload: &'static [u8]) -> Arc<Message> {
        Arc::new(Message::new(
            TopicName::from_string(id(t)).expect("valid topic"),
            Bytes::from_static(payload),
            qos,
            retain,
        ))
    }

    fn filter(f: &str, qos: QoS) -> (Subscription, bool) {
        (
            Subscription {
                filter: TopicFilter::from_string(id(f)).expect("valid filter"),
                options: SubscriptionOptions::new(qos),
                id: None,
            },
            true,
        )
    }

    /// Connects `client` with a persistent session subscribed to `f`, then disconnects it.
    fn subscribe_and_leave(b: &Broker, client: &str, f: &str, at: Instant) {
        let (tx, _rx) = mailbox(8);
        let generation = b.next_generation();
        let Claim::Fresh(mut session) = b.claim(&id(client), Protocol::V311, false, tx, generation)
        else {
            panic!("a new client gets a fresh session");
        };
        let sub = filter(f, QoS::ExactlyOnce);
        b.subscribe(&id(client), std::slice::from_ref(&sub));
        session
            .subscriptions
            .insert(sub.0.filter.as_mqtt_string().clone(), sub.0);
        b.release(&id(client), generation, Some(session), at)
            .expect("still owns its identifier");
    }

    /// A broker recording into a log store on the in-memory file system `fs`, restored from
    /// what the store recovered.
    fn persistent(fs: &crate::store::fs::fault::FaultFs) -> Broker {
        use crate::store::{Layout, LogStore, StoreSettings};
        let settings = StoreSettings {
            layout: Layout {
                dir: "/db".into(),
                snapshot: "mosquitto.db".into(),
            },
            sync_acks: true,
            snapshot_every: None,
            snapshot_after: None,
        };
        let (store, state, _) =
            LogStore::open(Arc::new(fs.clone()), settings, Arc::new(|_, _| {})).expect("opens");
        let b = Broker::with_store(
            RoutingSettings {
                upgrade_outgoing_qos: false,
                allow_duplicate_messages: true,
                outbound: OutboundLimits::default(),
            },
            Arc::new(store),
        );
        b.restore(&state);
        b
    }

    fn wait_durable(b: &Broker) {
        let lsn = b.store().last_appended();
        let mut rx = b.store().durable();
        while rx.borrow_and_update().status(lsn) != Some(true) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// A store that notes, as each record is appended, how many deliveries wait in one
    /// mailbox.
    #[derive(Debug, Default)]
    struct Watching {
        inner: MemoryStore,
        mailbox: Mutex<Option<Mailbox>>,
        /// Per record appended: whether it enqueues a delivery, and the mail the receiver could
        /// take then.
        seen: Mutex<Vec<(bool, usize)>>,
    }

    impl Store for Watching {
        fn is_durable(&self) -> bool {
            true
        }
        fn append(&self, record: &Record) -> crate::store::Lsn {
            let enqueues = match record {
                Record::Enqueue { .. } => true,
                Record::Group(records) => {
                    records.iter().any(|r| matches!(r, Record::Enqueue { .. }))
                }
                _ => false,
            };
            let queued = lock(&self.mailbox).as_ref().map_or(0, Mailbox::visible);
            let mut seen = lock(&self.seen);
            seen.push((enqueues, queued));
            seen.len() as crate::store::Lsn
        }
        fn last_appended(&self) -> crate::store::Lsn {
            lock(&self.seen).len() as crate::store::Lsn
        }
        fn durable(&self) -> tokio::sync::watch::Receiver<crate::store::Durable> {
            self.inner.durable()
        }
        fn sync_acks(&self) -> bool {
            true
        }
        // The rest as the store of `persistence false`.
        fn refusing(&self) -> bool {
            self.inner.refusing()
        }
        fn request_snapshot(&self) {
            self.inner.request_snapshot();
        }
        fn close(&self) {
            self.inner.close();
        }
        fn syncs(&self) -> u64 {
            self.inner.syncs()
        }
        fn sync_micros(&self) -> u64 {
            self.inner.sync_micros()
        }
    }

    /// The connection of a persistent session records what it does with each delivery (its
    /// packet identifier, PUBREC, done), so it must not see a delivery before the delivery's
    /// own record is appended: replayed in the other order, the identifier would be lost and
    /// a QoS 2 message sent again under a new one after a restart, a second copy
    /// [MQTT-4.3.3-3] [MQTT-4.4.0-1]. Shared subscriptions and a full mailbox included.
    #[test]
    fn a_delivery_reaches_a_persistent_connection_only_after_its_record() {
        let store = Arc::new(Watching::default());
        let b = Broker::with_store(
            RoutingSettings {
                upgrade_outgoing_qos: false,
                allow_duplicate_messages: true,
                outbound: OutboundLimits::default(),
            },
            Arc::clone(&store) as Arc<dyn Store>,
        );
        let (tx, mut rx) = mailbox(2);
        let generation = b.next_generation();
        let Claim::Fresh(session) = b.claim(&id("live"), Protocol::V311, false, tx, generation)
        else {
            panic!("a new client gets a fresh session");
        };
        b.session_accepted(&id("live"), generation, &session, false);
        b.subscribe(&id("live"), &[filter("a/#", QoS::ExactlyOnce)]);
        b.subscribe(&id("live"), &[filter("$share/g/s/#", QoS::ExactlyOnce)]);
        *lock(&store.mailbox) = Some(rx.sender());

        assert_eq!(b.publish(&message("a/b", QoS::ExactlyOnce, false, b"1")), 1);
        assert_eq!(b.publish(&message("s/b", QoS::AtLeastOnce, false, b"2")), 1);
        // The mailbox holds two: a third is refused, and recorded as nothing.
        b.publish(&message("a/c", QoS::AtLeastOnce, false, b"3"));
        let seen = lock(&store.seen).clone();
        let enqueued: Vec<usize> = seen.iter().filter(|s| s.0).map(|s| s.1).collect();
        assert_eq!(
            enqueued,
            [0, 1],
            "mailbox counts as deliveries were recorded: {seen:?}"
        );
        for payload in [b"1", b"2"] {
            let Some(Mail::Deliver(d)) = rx.try_recv() else {
                panic!("a delivery");
            };
            assert_eq!(&d.message.payload[..], payload);
        }
        assert!(rx.try_recv().is_none());
    }

    /// Whether `client` resumes a session holding `n` messages.
    fn resumes_holding(b: &Broker, client: &str, n: usize) {
        let (tx, _rx) = mailbox(8);
        let Claim::Resumed(session) = b.claim(&id(client), Protocol::V311, false, tx, 99) else {
            panic!("{client} resumes its stored session");
        };
        assert_eq!(
            session.outbound.inflight_len() + session.outbound.queued_len(),
            n
        );
    }

    #[test]
    fn a_restored_broker_has_the_sessions_retained_messages_and_wills_it_recorded() {
        let fs = crate::store::fs::fault::FaultFs::default();
        let b = persistent(&fs);
        let t0 = clock::now();
        subscribe_and_leave(&b, "c1", "a/+", t0);
        b.publish(&message("a/b", QoS::AtLeastOnce, false, b"1"));
        b.publish(&message("a/c", QoS::ExactlyOnce, true, b"2"));
        b.publish(&message("r/1", QoS::AtMostOnce, true, b"kept"));
        b.publish(&message("r/2", QoS::AtMostOnce, true, b"gone"));
        b.publish(&message("r/2", QoS::AtMostOnce, true, b""));
        b.schedule_will(
            &id("c1"),
            message("will", QoS::AtLeastOnce, false, b"w"),
            t0 + Duration::from_secs(60),
        );
        wait_durable(&b);
        // A crash: only what was synced is there; the lock goes with the process.
        fs.crash(0);
        let again = persistent(&fs);
        assert_eq!(again.retained_count(), 2, "a/c and r/1");
        assert_eq!(lock(&again.wills).len(), 1);
        // The subscription is back in the index: a new message queues for c1 too.
        assert_eq!(
            again.publish(&message("a/d", QoS::AtLeastOnce, false, b"3")),
            1
        );
        wait_durable(&again);
        fs.crash(0);

        // A graceful stop writes one snapshot; the next start reads only that.
        let third = persistent(&fs);
        third.store().close();
        let files: Vec<_> = fs.files().into_iter().map(|(p, _)| p).collect();
        assert!(
            files.iter().any(|p| p.ends_with("mosquitto.db")),
            "{files:?}"
        );
        let fourth = persistent(&fs);
        resumes_holding(&fourth, "c1", 3);
        assert_eq!(fourth.retained_count(), 2);
    }

    // A restored session's client has been away since it left before the restart (wall
    // clock): persistent_client_expiration and the Session Expiry Interval count from then.
    #[test]
    fn restored_sessions_expire_from_when_their_client_left() {
        use crate::store::record::StoredSession;
        let b = broker();
        let clocks = Clocks::read();
        let hour_ago = clocks.wall_ms - 3_600_000;
        let mut state = StoredState::default();
        for (client, expiry) in [("old", None), ("v5", Some(600)), ("kept", None)] {
            state.sessions.insert(
                client.into(),
                StoredSession {
                    client: client.into(),
                    protocol: if expiry.is_some() { 5 } else { 4 },
                    expiry,
                    disconnected_ms: Some(if client == "kept" {
                        clocks.wall_ms
                    } else {
                        hour_ago
                    }),
                    ..StoredSession::default()
                },
            );
        }
        assert_eq!(b.restore(&state), (3, 0, 0));
        let mut expired = b.expire_sessions(clocks.now, Some(Duration::from_secs(1800)));
        expired.sort();
        assert_eq!(expired, [id("old"), id("v5")]);
        assert_eq!(b.client_count(), 1);
    }

    // check_retain_source after a restart: a retained message still knows who published it.
    #[test]
    fn a_restored_retained_message_keeps_its_source() {
        let fs = crate::store::fs::fault::FaultFs::default();
        let b = persistent(&fs);
        let src = |c: &str| {
            Some(RetainSource {
                username: Some("u".into()),
                client_id: c.into(),
            })
        };
        b.publish_from(&message("r/1", QoS::AtMostOnce, true, b"a"), src("ok"));
        b.publish_from(&message("r/2", QoS::AtMostOnce, true, b"b"), src("revoked"));
        b.publish(&message("r/3", QoS::AtMostOnce, true, b"c"));
        wait_durable(&b);
        fs.crash(0);
        let again = persistent(&fs);
        let got = again.subscribe_checked(&id("s"), &[filter("r/#", QoS::AtMostOnce)], |s, _| {
            s.client_id != "revoked"
        });
        let mut topics: Vec<&str> = got.iter().map(|d| d.message.topic.as_str()).collect();
        topics.sort_unstable();
        assert_eq!(topics, ["r/1", "r/3"]);
        // And through a snapshot.
        again.store().close();
        let third = persistent(&fs);
        let got = third.subscribe_checked(&id("s"), &[filter("r/#", QoS::AtMostOnce)], |s, _| {
            s.client_id != "revoked"
        });
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn acknowledged_deliveries_are_not_restored() {
        let fs = crate::store::fs::fault::FaultFs::default();
        let b = persistent(&fs);
        subscribe_and_leave(&b, "c1", "a/+", clock::now());
        for n in 0..5u8 {
            b.publish(&Arc::new(Message::new(
                TopicName::from_static("a/b"),
                Bytes::from(vec![n]),
                QoS::AtLeastOnce,
                false,
            )));
        }
        // The client comes back, receives all five and acknowledges two of them.
        let (tx, _rx) = mailbox(8);
        let generation = b.next_generation();
        let Claim::Resumed(mut session) = b.claim(&id("c1"), Protocol::V311, false, tx, generation)
        else {
            panic!("resumes");
        };
        session.outbound.set_journal(true);
        b.session_accepted(&id("c1"), generation, &session, true);
        let sent = session.outbound.resume(clock::now());
        assert_eq!(sent.len(), 5);
        let now = clock::now();
        for packet in &sent[..2] {
            let Packet::Publish(p) = packet else {
                panic!("PUBLISH")
            };
            let packet_id = p.packet_id.expect("QoS 1");
            session
                .outbound
                .on_puback(packet_id, now)
                .expect("in flight");
        }
        for entry in session.outbound.take_journal() {
            let record = match entry {
                crate::session::Journal::Sent(message, id) => Record::Sent {
                    client: "c1".into(),
                    message,
                    packet_id: id.get(),
                },
                crate::session::Journal::Released(_) => unreachable!("QoS 1"),
                crate::session::Journal::Done(message) => Record::Done {
                    client: "c1".into(),
                    message,
                },
            };
            b.record(&record);
        }
        wait_durable(&b);
        fs.crash(0);
        let again = persistent(&fs);
        resumes_holding(&again, "c1", 3);
    }

    #[test]
    fn offline_sessions_queue_and_resume() {
        let b = broker();
        let t0 = clock::now();
        subscribe_and_leave(&b, "c1", "a/+", t0);
        // QoS 1 and 2 messages are queued for a disconnected persistent session
        // (3.1.1 section 3.1.2.4); QoS 0 is not, unless queue_qos0_messages.
        assert_eq!(b.publish(&message("a/b", QoS::AtLeastOnce, false, b"1")), 1);
        assert_eq!(b.publish(&message("a/c", QoS::ExactlyOnce, false, b"2")), 1);
        b.publish(&message("a/d", QoS::AtMostOnce, false, b"3"));
        let (tx, _rx) = mailbox(8);
        let Claim::Resumed(session) = b.claim(&id("c1"), Protocol::V311, false, tx, 99) else {
            panic!("clean session 0 resumes the stored session");
        };
        assert_eq!(
            session.outbound.inflight_len() + session.outbound.queued_len(),
            2
        );
    }

    // A message routed to a connection that has stopped reading its mailbox (it is closing)
    // is not lost: releasing the session takes it from the mailbox into the stored session,
    // which then holds it for the client's return (3.1.1 section 3.1.2.4).
    #[test]
    fn deliveries_left_in_the_mailbox_stay_with_the_released_session() {
        let b = broker();
        let t0 = clock::now();
        subscribe_and_leave(&b, "c1", "a/+", t0);
        let (tx, mut rx) = mailbox(8);
        let generation = b.next_generation();
        let Claim::Resumed(session) = b.claim(&id("c1"), Protocol::V311, false, tx, generation)
        else {
            panic!("clean session 0 resumes the stored session");
        };
        // Routed to the online connection's mailbox, which it no longer reads.
        assert_eq!(b.publish(&message("a/b", QoS::AtLeastOnce, false, b"1")), 1);
        b.release_draining(&id("c1"), generation, Some(session), Some(&mut rx), t0)
            .expect("still owns its identifier");
        assert!(rx.try_recv().is_none(), "taken out of the mailbox");
        let (tx, _rx) = mailbox(8);
        let Claim::Resumed(session) = b.claim(&id("c1"), Protocol::V311, false, tx, 99) else {
            panic!("the stored session is resumed");
        };
        assert_eq!(
            session.outbound.inflight_len() + session.outbound.queued_len(),
            1,
            "the message waits in the session"
        );
    }

    #[test]
    fn persistent_sessions_expire_after_the_configured_time() {
        let b = broker();
        let t0 = clock::now();
        subscribe_and_leave(&b, "old", "x/#", t0);
        subscribe_and_leave(&b, "new", "y/#", t0 + Duration::from_secs(3000));
        let hour = Duration::from_secs(3600);
        assert!(
            b.expire_sessions(t0 + hour, Some(hour)).is_empty(),
            "not yet"
        );
        let expired = b.expire_sessions(t0 + hour + Duration::from_secs(1), Some(hour));
        assert_eq!(expired, [id("old")]);
        assert_eq!(b.client_count(), 1);
        assert_eq!(b.counters.clients_expired.load(Ordering::Relaxed), 1);
        // Its subscriptions went with it.
        assert_eq!(b.publish(&message("x/1", QoS::AtLeastOnce, false, b"p")), 0);
        assert_eq!(b.publish(&message("y/1", QoS::AtLeastOnce, false, b"p")), 1);
    }

    #[test]
    fn reloaded_routing_settings_apply_to_new_sessions_and_every_delivery() {
        let b = broker();
        let t0 = clock::now();
        subscribe_and_leave(&b, "before", "a", t0);
        let reloaded = RoutingSettings {
            upgrade_outgoing_qos: true,
            allow_duplicate_messages: true,
            outbound: OutboundLimits {
                max_inflight_messages: 1,
                max_queued_messages: 1,
                ..OutboundLimits::default()
            },
        };
        b.set_routing_settings(&reloaded);
        assert_eq!(b.routing_settings(), reloaded);
        subscribe_and_leave(&b, "after", "b", t0);
        for _ in 0..3 {
            b.publish(&message("a", QoS::AtLeastOnce, false, b"1"));
            b.publish(&message("b", QoS::AtLeastOnce, false, b"1"));
        }
        let held = |client: &str| {
            let (tx, _rx) = mailbox(8);
            let Claim::Resumed(s) = b.claim(&id(client), Protocol::V311, false, tx, 99) else {
                panic!("{client} resumes");
            };
            s.outbound.inflight_len() + s.outbound.queued_len()
        };
        // The session made before the reload keeps its limits; the new one has the new ones
        // (offline, messages wait in the queue: one place).
        assert_eq!(held("before"), 3);
        assert_eq!(held("after"), 1);
        // upgrade_outgoing_qos applies to every delivery from now on.
        b.publish(&message("r", QoS::AtMostOnce, true, b"x"));
        let got = b.subscribe(&id("s"), &[filter("r", QoS::ExactlyOnce)]);
        assert_eq!(got[0].qos, QoS::ExactlyOnce);
    }

    #[test]
    fn connected_clients_hear_of_new_settings() {
        let b = broker();
        let (tx, mut rx) = mailbox(8);
        let generation = b.next_generation();
        let Claim::Fresh(_) = b.claim(&id("c"), Protocol::V311, true, tx, generation) else {
            panic!("fresh");
        };
        subscribe_and_leave(&b, "away", "x", clock::now());
        b.notify_settings_changed();
        assert!(matches!(rx.try_recv(), Some(Mail::SettingsChanged)));
        assert!(rx.try_recv().is_none());
    }

    // check_retain_source: a retained message whose publisher may no longer write there is
    // not given to new subscribers; one without a recorded source always is.
    #[test]
    fn retained_messages_can_be_withheld_by_their_source() {
        let b = broker();
        let src = |c: &str| {
            Some(RetainSource {
                username: Some("u".into()),
                client_id: c.into(),
            })
        };
        b.publish_from(&message("r/1", QoS::AtMostOnce, true, b"a"), src("ok"));
        b.publish_from(&message("r/2", QoS::AtMostOnce, true, b"b"), src("revoked"));
        b.publish(&message("r/3", QoS::AtMostOnce, true, b"c"));
        let got = b.subscribe_checked(&id("s"), &[filter("r/#", QoS::AtMostOnce)], |s, _| {
            s.client_id != "revoked"
        });
        let mut topics: Vec<&str> = got.iter().map(|d| d.message.topic.as_str()).collect();
        topics.sort_unstable();
        assert_eq!(topics, ["r/1", "r/3"]);
        // Replacing the message replaces its source.
        b.publish_from(&message("r/2", QoS::AtMostOnce, true, b"b2"), src("ok"));
        let got = b.subscribe_checked(&id("t"), &[filter("r/2", QoS::AtMostOnce)], |s, _| {
            s.client_id != "revoked"
        });
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn retained_messages_reach_new_subscribers_with_retain_set() {
        let b = broker();
        b.publish(&message("r/1", QoS::AtLeastOnce, true, b"v1"));
        b.publish(&message("r/1", QoS::AtLeastOnce, true, b"v2"));
        b.publish(&message("r/2", QoS::ExactlyOnce, true, b"w"));
        b.publish(&message("$SYS/x", QoS::AtMostOnce, true, b"s"));
        assert_eq!(b.retained_count(), 3);
        let got = b.subscribe(&id("s"), &[filter("#", QoS::AtLeastOnce)]);
        let mut seen: Vec<(String, Bytes, QoS, bool)> = got
            .iter()
            .map(|d| {
                let t = d.message.topic.as_str().to_owned();
                (t, d.message.payload.clone(), d.qos, d.retain)
            })
            .collect();
        seen.sort();
        // [MQTT-3.3.1-8]: RETAIN set; replaced value; QoS the lower of the two; `#` does not
        // match `$SYS` [MQTT-4.7.2-1].
        assert_eq!(
            seen,
            [
                (
                    "r/1".into(),
                    Bytes::from_static(b"v2"),
                    QoS::AtLeastOnce,
                    true
                ),
                (
                    "r/2".into(),
                    Bytes::from_static(b"w"),
                    QoS::AtLeastOnce,
                    true
                ),
            ]
        );
        // [MQTT-3.3.1-10]: an empty retained payload clears the topic.
        b.publish(&message("r/1", QoS::AtMostOnce, true, b""));
        assert_eq!(b.retained_count(), 2);
    }
}
