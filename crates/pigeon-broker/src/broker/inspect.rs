//! Read-only views of the broker for the HTTP API and the dashboard (`net/http_api.rs`).
//!
//! Each view takes the lock it reads under for as short a time as copying out needs, one lock
//! at a time, and never on the publish path's behalf: a slow HTTP client costs the broker a
//! copy, not a held lock.

use std::sync::PoisonError;

use pigeon_proto::Protocol;

use super::{Broker, Client, Subscriber, lock};

/// A client the broker knows: connected, or a persistent session waiting for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientView {
    /// The Client Identifier.
    pub client_id: String,
    /// Whether a connection owns the session now.
    pub connected: bool,
    /// For a connected client, the deliveries waiting in its mailbox (not yet taken by its
    /// connection); for a disconnected one, the messages queued and in flight in its session.
    pub queued: usize,
    /// The protocol version the client connected with (or its stored session's).
    pub protocol: Option<Protocol>,
    /// A disconnected session's subscriptions (a connected client's are in
    /// [`Broker::subscriptions_view`]).
    pub offline_subscriptions: usize,
}

/// One subscription in the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionView {
    /// The filter.
    pub filter: String,
    /// The subscriber's Client Identifier.
    pub client_id: String,
    /// The maximum QoS granted.
    pub qos: u8,
}

/// A retained message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedView {
    /// Its topic.
    pub topic: String,
    /// Its QoS.
    pub qos: u8,
    /// Its payload's length in bytes.
    pub size: usize,
    /// Its first bytes (at most the `preview` asked for).
    pub preview: Vec<u8>,
}

impl Broker {
    /// Every client with a session, sorted by identifier.
    pub fn clients_view(&self) -> Vec<ClientView> {
        let mut out: Vec<ClientView> = lock(&self.clients)
            .iter()
            .map(|(id, client)| match client {
                Client::Online {
                    mailbox, protocol, ..
                } => ClientView {
                    client_id: id.to_string(),
                    connected: true,
                    queued: mailbox.queued(),
                    protocol: Some(*protocol),
                    offline_subscriptions: 0,
                },
                Client::Offline(session) => ClientView {
                    client_id: id.to_string(),
                    connected: false,
                    queued: session.outbound.inflight_len() + session.outbound.queued_len(),
                    protocol: Some(session.protocol),
                    offline_subscriptions: session.subscriptions.len(),
                },
            })
            .collect();
        out.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        out
    }

    /// Every subscription of the index (connected clients' and persistent sessions'),
    /// sorted by filter then client.
    pub fn subscriptions_view(&self) -> Vec<SubscriptionView> {
        let mut out = Vec::new();
        self.subscriptions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .for_each(|filter, subscriber, (options, _id)| {
                // A shared subscription is shown by its full `$share/{group}/{filter}`.
                let (filter, client_id) = match subscriber {
                    Subscriber::Client(client) => (filter.to_owned(), client.to_string()),
                    Subscriber::Shared { share, client } => (share.to_string(), client.to_string()),
                };
                out.push(SubscriptionView {
                    filter,
                    client_id,
                    qos: options.qos as u8,
                });
            });
        out.sort_by(|a, b| (&a.filter, &a.client_id).cmp(&(&b.filter, &b.client_id)));
        out
    }

    /// The retained messages whose topics match `filter` (`#` for all but `$` topics), at most
    /// `limit` of them, with `preview` bytes of each payload, sorted by topic.
    pub fn retained_view(&self, filter: &str, limit: usize, preview: usize) -> Vec<RetainedView> {
        let mut out = Vec::new();
        self.retained
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .for_each_match(filter, |message| {
                if out.len() < limit {
                    out.push(RetainedView {
                        topic: message.topic.to_string(),
                        qos: message.qos as u8,
                        size: message.payload.len(),
                        preview: message.payload[..message.payload.len().min(preview)].to_vec(),
                    });
                }
            });
        out.sort_by(|a, b| a.topic.cmp(&b.topic));
        out
    }
}
