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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use pigeon_proto::{MqttString, Protocol, QoS, SubscriptionOptions, TopicFilter};
use tokio::sync::{mpsc, oneshot};

use crate::message::{Delivery, Message};
use crate::router::{RetainedStore, SubscriptionTree};
use crate::session::{Link, OutboundLimits, Pushed, Session};

/// What the router sends a connected client's task.
#[derive(Debug)]
pub enum Mail {
    /// A message for the client.
    Deliver(Delivery),
    /// Another connection claims this client's session: hand it over (or `None` if it is not
    /// to be kept) and close.
    TakeOver(oneshot::Sender<Option<Session>>),
}

/// The sending half of a connection's mailbox.
pub type Mailbox = mpsc::Sender<Mail>;

/// The broker-wide settings routing needs.
#[derive(Debug, Clone)]
pub struct RoutingSettings {
    /// `upgrade_outgoing_qos`: deliver at the subscription's QoS even when the message was
    /// published at a lower one (default false).
    pub upgrade_outgoing_qos: bool,
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
}

#[derive(Debug)]
enum Client {
    Online { mailbox: Mailbox, generation: u64 },
    Offline(Box<Session>),
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
    settings: RoutingSettings,
    subscriptions: RwLock<SubscriptionTree<MqttString, SubscriptionOptions>>,
    retained: RwLock<RetainedStore>,
    clients: Mutex<HashMap<MqttString, Client>>,
    generations: AtomicU64,
    ids: RandomState,
    /// What happened, for `$SYS`.
    pub counters: Counters,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock left the data as consistent as each step keeps it; keep
    // serving rather than take every connection down with it.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Broker {
    /// An empty broker.
    pub fn new(settings: RoutingSettings) -> Self {
        Broker {
            settings,
            subscriptions: RwLock::new(SubscriptionTree::new()),
            retained: RwLock::new(RetainedStore::default()),
            clients: Mutex::new(HashMap::new()),
            generations: AtomicU64::new(1),
            ids: RandomState::new(),
            counters: Counters::default(),
        }
    }

    /// The limits each session's outbound state gets.
    pub fn outbound_limits(&self) -> OutboundLimits {
        self.settings.outbound
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
        let previous = lock(&self.clients).insert(
            client_id.clone(),
            Client::Online {
                mailbox,
                generation,
            },
        );
        match previous {
            None => Claim::Fresh(self.new_session(client_id, protocol, clean)),
            Some(Client::Offline(session)) if !clean => Claim::Resumed(*session),
            Some(Client::Offline(session)) => {
                self.drop_subscriptions(&session);
                Claim::Fresh(self.new_session(client_id, protocol, clean))
            }
            Some(Client::Online { mailbox, .. }) => Claim::TakeOver(mailbox),
        }
    }

    /// Finishes a takeover: `old` is what the previous connection handed over. Returns the
    /// session and whether it was resumed (Session Present).
    pub fn settle_takeover(
        &self,
        client_id: &MqttString,
        protocol: Protocol,
        clean: bool,
        old: Option<Session>,
    ) -> (Session, bool) {
        match old {
            Some(session) if !clean && !session.clean => (session, true),
            Some(session) => {
                self.drop_subscriptions(&session);
                (self.new_session(client_id, protocol, clean), false)
            }
            None => (self.new_session(client_id, protocol, clean), false),
        }
    }

    fn new_session(&self, client_id: &MqttString, protocol: Protocol, clean: bool) -> Session {
        Session::new(client_id.clone(), protocol, clean, self.settings.outbound)
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
    ) -> Result<(), Option<Session>> {
        let mut clients = lock(&self.clients);
        let Entry::Occupied(entry) = clients.entry(client_id.clone()) else {
            return Err(session);
        };
        match entry.get() {
            Client::Online { generation: g, .. } if *g == generation => {}
            _ => return Err(session),
        }
        match session {
            Some(session) if !session.clean => {
                *entry.into_mut() = Client::Offline(Box::new(session));
            }
            session => {
                entry.remove();
                drop(clients);
                if let Some(session) = session {
                    self.drop_subscriptions(&session);
                }
            }
        }
        Ok(())
    }

    fn drop_subscriptions(&self, session: &Session) {
        let mut tree = self
            .subscriptions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for (filter, _) in session.subscriptions.values() {
            tree.remove(filter.filter(), &session.client_id);
        }
    }

    /// Adds `client_id`'s subscriptions to the index and returns, for each, the retained
    /// messages it matches, as deliveries with the RETAIN flag set [MQTT-3.3.1-8].
    pub fn subscribe(
        &self,
        client_id: &MqttString,
        filters: &[(TopicFilter, SubscriptionOptions)],
    ) -> Vec<Delivery> {
        {
            let mut tree = self
                .subscriptions
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            for (filter, options) in filters {
                tree.insert(filter.filter(), client_id.clone(), *options);
            }
        }
        let retained = self.retained.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        for (filter, options) in filters {
            retained.for_each_match(filter.filter(), |message| {
                out.push(Delivery {
                    message: Arc::clone(message),
                    qos: self.delivery_qos(message.qos, options.qos),
                    retain: true,
                });
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
            tree.remove(filter.filter(), client_id);
        }
    }

    fn delivery_qos(&self, published: QoS, subscribed: QoS) -> QoS {
        if self.settings.upgrade_outgoing_qos {
            subscribed
        } else {
            // The lower of the two [MQTT-3.8.4-6] (3.1.1: [MQTT-3.8.4-6]).
            published.min(subscribed)
        }
    }

    /// Publishes `message`: stores or clears it as retained when its RETAIN flag says so,
    /// then delivers it to every matching subscriber once, at the highest QoS among that
    /// client's matching subscriptions (3.1.1 section 3.3.5: overlapping subscriptions).
    /// Returns the number of deliveries made.
    pub fn publish(&self, message: &Arc<Message>) -> usize {
        self.counters
            .messages_received
            .fetch_add(1, Ordering::Relaxed);
        if message.retain {
            // [MQTT-3.3.1-5]: store it (an empty payload clears it [MQTT-3.3.1-10]).
            self.retained
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(Arc::clone(message));
        }
        // Forwarded messages carry RETAIN 0 [MQTT-3.3.1-9].
        self.route(message, false)
    }

    /// Delivers `message` to its subscribers with this RETAIN flag; returns the number of
    /// deliveries.
    pub fn route(&self, message: &Arc<Message>, retain: bool) -> usize {
        let mut targets: HashMap<MqttString, QoS> = HashMap::new();
        {
            let tree = self
                .subscriptions
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            tree.for_each_match(message.topic.as_str(), |client, options| {
                let qos = self.delivery_qos(message.qos, options.qos);
                targets
                    .entry(client.clone())
                    .and_modify(|q| *q = (*q).max(qos))
                    .or_insert(qos);
            });
        }
        if targets.is_empty() {
            return 0;
        }
        let mut clients = lock(&self.clients);
        let mut delivered = 0;
        for (client_id, qos) in targets {
            let delivery = Delivery {
                message: Arc::clone(message),
                qos,
                retain,
            };
            let accepted = match clients.get_mut(&client_id) {
                Some(Client::Online { mailbox, .. }) => {
                    mailbox.try_send(Mail::Deliver(delivery)).is_ok()
                }
                Some(Client::Offline(session)) => !matches!(
                    session.outbound.push(delivery, Link::Offline),
                    Pushed::Dropped
                ),
                None => continue,
            };
            if accepted {
                delivered += 1;
            } else {
                self.counters
                    .messages_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(clients);
        self.counters
            .messages_sent
            .fetch_add(delivered as u64, Ordering::Relaxed);
        delivered
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

    /// Retained messages stored.
    pub fn retained_count(&self) -> usize {
        self.retained
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}
