//! The durable state as the log describes it: built by replaying records, written back as
//! the records of a snapshot. Plain data, no I/O.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::record::{FORMAT, Record, StoredDelivery, StoredMessage, StoredSession};

/// Everything the store holds, rebuilt from a snapshot and the log after it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StoredState {
    /// Retained messages by topic.
    pub retained: BTreeMap<String, StoredMessage>,
    /// Who published the retained messages that remember it: username and Client
    /// Identifier, by topic.
    pub retained_sources: BTreeMap<String, (Option<String>, String)>,
    /// Messages held by sessions, by number.
    pub messages: HashMap<u64, StoredMessage>,
    /// Persistent sessions by Client Identifier.
    pub sessions: BTreeMap<String, StoredSession>,
    /// Wills waiting for their delay, with when they are due (Unix ms).
    pub wills: BTreeMap<String, (StoredMessage, u64)>,
    /// Records applied.
    pub records: u64,
}

impl StoredState {
    /// Applies one record. Records naming what is not there (a `Done` for a message the
    /// session no longer holds, say) change nothing: the log may say more than a snapshot
    /// kept.
    pub fn apply(&mut self, record: Record) {
        self.records += 1;
        match record {
            Record::Header { .. } => {}
            Record::RetainSource {
                topic,
                username,
                client_id,
            } => {
                if self.retained.contains_key(&topic) {
                    self.retained_sources.insert(topic, (username, client_id));
                }
            }
            Record::Retain { topic, message } => match message {
                Some(m) => {
                    self.retained_sources.remove(&topic);
                    self.retained.insert(topic, m);
                }
                None => {
                    self.retained_sources.remove(&topic);
                    self.retained.remove(&topic);
                }
            },
            Record::Message { id, message } => {
                self.messages.insert(id, message);
            }
            Record::Session(s) => {
                self.sessions.insert(s.client.clone(), s);
            }
            Record::SessionMeta(meta) => {
                let s = self.sessions.entry(meta.client.clone()).or_default();
                s.client = meta.client;
                s.protocol = meta.protocol;
                s.expiry = meta.expiry;
                s.disconnected_ms = meta.disconnected_ms;
                s.subscriptions = meta.subscriptions;
            }
            Record::SessionGone { client } => {
                self.sessions.remove(&client);
            }
            Record::Enqueue { client, delivery } => {
                if let Some(s) = self.sessions.get_mut(&client) {
                    s.deliveries.push(delivery);
                }
            }
            Record::Sent {
                client,
                message,
                packet_id,
            } => {
                if let Some(d) = self.sessions.get_mut(&client).and_then(|s| {
                    s.deliveries
                        .iter_mut()
                        .find(|d| d.message == message && d.inflight.is_none())
                }) {
                    d.inflight = Some((packet_id, false));
                }
            }
            Record::Released { client, packet_id } => {
                if let Some(d) = self.sessions.get_mut(&client).and_then(|s| {
                    s.deliveries
                        .iter_mut()
                        .find(|d| d.inflight.is_some_and(|(id, _)| id == packet_id))
                }) {
                    d.inflight = Some((packet_id, true));
                }
            }
            Record::Done { client, message } => {
                if let Some(s) = self.sessions.get_mut(&client) {
                    // The one in flight first: that is the one acknowledged.
                    let at = s
                        .deliveries
                        .iter()
                        .position(|d| d.message == message && d.inflight.is_some())
                        .or_else(|| s.deliveries.iter().position(|d| d.message == message));
                    if let Some(at) = at {
                        s.deliveries.remove(at);
                    }
                }
            }
            Record::Group(records) => {
                self.records -= 1;
                for r in records {
                    self.apply(r);
                }
            }
            Record::InboundMessage {
                id,
                message,
                client,
                packet_id,
            } => {
                self.messages.insert(id, message);
                self.apply(Record::InboundAdd { client, packet_id });
                self.records -= 1;
            }
            Record::InboundAdd { client, packet_id } => {
                if let Some(s) = self.sessions.get_mut(&client)
                    && !s.inbound.contains(&packet_id)
                {
                    s.inbound.push(packet_id);
                }
            }
            Record::InboundDone { client, packet_id } => {
                if let Some(s) = self.sessions.get_mut(&client) {
                    s.inbound.retain(|&id| id != packet_id);
                }
            }
            Record::Will {
                client,
                message,
                due_ms,
            } => {
                self.wills.insert(client, (message, due_ms));
            }
            Record::WillGone { client } => {
                self.wills.remove(&client);
            }
        }
    }

    /// Messages held for sessions.
    pub fn held(&self) -> usize {
        self.sessions.values().map(|s| s.deliveries.len()).sum()
    }

    /// The records of a snapshot of this state, the log continuing at segment `base`: only
    /// the messages some session still holds are written.
    pub fn snapshot(&self, base: u64, mut emit: impl FnMut(&Record)) {
        emit(&Record::Header {
            format: FORMAT,
            base,
        });
        for (topic, message) in &self.retained {
            emit(&Record::Retain {
                topic: topic.clone(),
                message: Some(message.clone()),
            });
            if let Some((username, client_id)) = self.retained_sources.get(topic) {
                emit(&Record::RetainSource {
                    topic: topic.clone(),
                    username: username.clone(),
                    client_id: client_id.clone(),
                });
            }
        }
        let mut written = HashSet::new();
        for session in self.sessions.values() {
            for d in &session.deliveries {
                if let Some(m) = self.messages.get(&d.message)
                    && written.insert(d.message)
                {
                    emit(&Record::Message {
                        id: d.message,
                        message: m.clone(),
                    });
                }
            }
            // A delivery whose message is missing could not be restored: leave it out.
            let mut s = session.clone();
            s.deliveries
                .retain(|d: &StoredDelivery| self.messages.contains_key(&d.message));
            emit(&Record::Session(s));
        }
        for (client, (message, due_ms)) in &self.wills {
            emit(&Record::Will {
                client: client.clone(),
                message: message.clone(),
                due_ms: *due_ms,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::store::record::StoredSubscription;

    fn msg(p: &'static [u8]) -> StoredMessage {
        StoredMessage {
            publish: Bytes::from_static(p),
            expires_ms: None,
            origin: None,
        }
    }

    fn delivery(message: u64) -> StoredDelivery {
        StoredDelivery {
            message,
            qos: 2,
            retain: false,
            subscription_ids: vec![],
            shared: None,
            inflight: None,
        }
    }

    #[test]
    fn replay_follows_a_session_through_its_messages_and_a_snapshot_keeps_what_is_live() {
        let mut s = StoredState::default();
        let c = || "c".to_owned();
        s.apply(Record::Session(StoredSession {
            client: c(),
            protocol: 4,
            subscriptions: vec![StoredSubscription {
                filter: "a/#".into(),
                options: 2,
                id: 0,
            }],
            ..StoredSession::default()
        }));
        for id in 1..=3 {
            s.apply(Record::Message {
                id,
                message: msg(b"m"),
            });
            s.apply(Record::Enqueue {
                client: c(),
                delivery: delivery(id),
            });
        }
        s.apply(Record::Sent {
            client: c(),
            message: 1,
            packet_id: 1,
        });
        s.apply(Record::Sent {
            client: c(),
            message: 2,
            packet_id: 2,
        });
        s.apply(Record::Released {
            client: c(),
            packet_id: 2,
        });
        s.apply(Record::Done {
            client: c(),
            message: 1,
        });
        s.apply(Record::InboundAdd {
            client: c(),
            packet_id: 5,
        });
        s.apply(Record::InboundAdd {
            client: c(),
            packet_id: 6,
        });
        s.apply(Record::InboundDone {
            client: c(),
            packet_id: 5,
        });
        s.apply(Record::Retain {
            topic: "r".into(),
            message: Some(msg(b"r")),
        });
        s.apply(Record::Retain {
            topic: "q".into(),
            message: Some(msg(b"q")),
        });
        s.apply(Record::Retain {
            topic: "q".into(),
            message: None,
        });
        s.apply(Record::Will {
            client: c(),
            message: msg(b"w"),
            due_ms: 5,
        });
        // Records about someone unknown change nothing.
        s.apply(Record::Done {
            client: "x".into(),
            message: 2,
        });
        s.apply(Record::Enqueue {
            client: "x".into(),
            delivery: delivery(2),
        });

        let session = &s.sessions["c"];
        assert_eq!(session.deliveries.len(), 2);
        assert_eq!(session.deliveries[0].inflight, Some((2, true)));
        assert_eq!(session.deliveries[1].inflight, None);
        assert_eq!(session.inbound, [6]);
        assert_eq!(s.retained.len(), 1);

        let mut replayed = StoredState::default();
        let mut count = 0;
        s.snapshot(4, |r| {
            count += 1;
            replayed.apply(r.clone());
        });
        assert_eq!(replayed.sessions, s.sessions);
        assert_eq!(replayed.retained, s.retained);
        assert_eq!(replayed.wills, s.wills);
        // Message 1 is done with: not written.
        assert_eq!(replayed.messages.len(), 2);
        assert_eq!(count, 1 + 1 + 2 + 1 + 1);

        s.apply(Record::SessionGone { client: c() });
        assert!(s.sessions.is_empty());
    }
}
