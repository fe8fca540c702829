//! Requests on their way to the server: Packet Identifiers, the in-flight window, and the
//! bounded queue of messages behind it.
//!
//! Every request that needs an acknowledgement (PUBLISH at QoS 1 or 2, SUBSCRIBE,
//! UNSUBSCRIBE) is an entry, kept in the order it was first sent and indexed by its Packet
//! Identifier. A PUBLISH gets its identifier when it enters the window, never while it is
//! queued, so a long queue holds no identifiers. Identifiers are handed out in increasing
//! order, wrapping from 65,535 to 1 and skipping those still in use: "a non-zero Packet
//! Identifier that is currently unused" [MQTT-2.2.1-3] (3.1.1: [MQTT-2.3.1-2]).
//!
//! An entry is *on the wire* once written on the current connection. When the connection is
//! lost every entry goes off the wire; on a resumed session they are written again, in their
//! original order [MQTT-4.6.0-1], PUBLISH with DUP set [MQTT-3.3.1-1] and PUBREL for those
//! already past PUBREC [MQTT-4.4.0-1].

use std::collections::{BTreeMap, HashMap, VecDeque};

use pigeon_proto::{
    Packet, PacketId, PubAck, PubComp, PubRec, PubRel, Publish, QoS, ReasonCode, SubAck, Subscribe,
    UnsubAck, Unsubscribe,
};

use super::{Event, Limits, Output, PublishOutcome, RequestError, RequestId};

/// The most identifiers that can be in use at once.
const MAX_IDS: usize = u16::MAX as usize;

/// A message queued behind the window, not yet sent.
#[derive(Debug)]
struct Queued {
    request: RequestId,
    publish: Publish,
}

/// Where an acknowledged request stands.
#[derive(Debug)]
enum Kind {
    /// A QoS 1 PUBLISH waiting for PUBACK. The stored packet has DUP set once it was sent.
    AwaitingPubAck(Publish),
    /// A QoS 2 PUBLISH waiting for PUBREC.
    AwaitingPubRec(Publish),
    /// PUBREL sent for a QoS 2 message, waiting for PUBCOMP; the payload is no longer held.
    AwaitingPubComp(PubRec),
    /// A SUBSCRIBE waiting for SUBACK.
    Subscribe(Subscribe),
    /// An UNSUBSCRIBE waiting for UNSUBACK.
    Unsubscribe(Unsubscribe),
}

impl Kind {
    /// Whether this entry counts against the in-flight window (Receive Maximum counts QoS 1
    /// and 2 messages until PUBACK or PUBCOMP [MQTT-3.3.4-7]).
    fn is_publish(&self) -> bool {
        matches!(
            self,
            Kind::AwaitingPubAck(_) | Kind::AwaitingPubRec(_) | Kind::AwaitingPubComp(_)
        )
    }
}

#[derive(Debug)]
struct Entry {
    id: PacketId,
    request: RequestId,
    kind: Kind,
    on_wire: bool,
}

impl Entry {
    /// The packet that (re)sends this entry; a PUBLISH sent before carries DUP.
    fn packet(&self) -> Packet {
        match &self.kind {
            Kind::AwaitingPubAck(p) | Kind::AwaitingPubRec(p) => Packet::Publish(p.clone()),
            Kind::AwaitingPubComp(_) => Packet::PubRel(PubRel::new(self.id)),
            Kind::Subscribe(s) => Packet::Subscribe(s.clone()),
            Kind::Unsubscribe(u) => Packet::Unsubscribe(u.clone()),
        }
    }

    /// Records that the entry was written: a later copy of its PUBLISH is a redelivery.
    fn mark_sent(&mut self) {
        self.on_wire = true;
        if let Kind::AwaitingPubAck(p) | Kind::AwaitingPubRec(p) = &mut self.kind {
            p.dup = true;
        }
    }
}

/// The outbound half of the client's session.
#[derive(Debug)]
pub(super) struct Outbound {
    next_id: PacketId,
    /// Every identifier in use, to its entry's send order.
    ids: HashMap<PacketId, u64>,
    /// Entries by send order.
    entries: BTreeMap<u64, Entry>,
    next_seq: u64,
    /// QoS 1 and 2 messages on the wire: what the window counts.
    on_wire_publishes: usize,
    /// Entries waiting to be written (after a reconnection, or made while offline).
    unsent: usize,
    queue: VecDeque<Queued>,
}

impl Outbound {
    pub(super) fn new() -> Self {
        Outbound {
            next_id: PacketId::FIRST,
            ids: HashMap::new(),
            entries: BTreeMap::new(),
            next_seq: 0,
            on_wire_publishes: 0,
            unsent: 0,
            queue: VecDeque::new(),
        }
    }

    /// QoS 1 and 2 messages in flight (sent, or to be resent, and not completely
    /// acknowledged).
    pub(super) fn inflight_len(&self) -> usize {
        self.entries
            .values()
            .filter(|e| e.kind.is_publish())
            .count()
    }

    /// SUBSCRIBE and UNSUBSCRIBE requests waiting for their acknowledgement.
    pub(super) fn requests_len(&self) -> usize {
        self.entries.len() - self.inflight_len()
    }

    /// Messages queued behind the window.
    pub(super) fn queued_len(&self) -> usize {
        self.queue.len()
    }

    /// Whether a message of `qos` handed over now would be written at once rather than
    /// queued (nothing ahead of it, room in the window, a free identifier).
    pub(super) fn can_send_now(&self, qos: QoS, limits: &Limits) -> bool {
        if !self.queue.is_empty() {
            return false;
        }
        qos == QoS::AtMostOnce
            || (self.unsent == 0
                && self.on_wire_publishes < limits.window
                && self.ids.len() < MAX_IDS)
    }

    /// The next identifier not in use, or `None` when all 65,535 are.
    fn allocate(&mut self) -> Option<PacketId> {
        if self.ids.len() >= MAX_IDS {
            return None;
        }
        let mut id = self.next_id;
        while self.ids.contains_key(&id) {
            id = id.next();
        }
        self.next_id = id.next();
        Some(id)
    }

    #[cfg(test)]
    pub(super) fn set_next_id(&mut self, id: PacketId) {
        self.next_id = id;
    }

    fn insert(&mut self, id: PacketId, request: RequestId, kind: Kind, on_wire: bool) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if on_wire {
            if kind.is_publish() {
                self.on_wire_publishes += 1;
            }
        } else {
            self.unsent += 1;
        }
        self.ids.insert(id, seq);
        self.entries.insert(
            seq,
            Entry {
                id,
                request,
                kind,
                on_wire,
            },
        );
    }

    fn remove(&mut self, seq: u64) -> Option<Entry> {
        let entry = self.entries.remove(&seq)?;
        self.ids.remove(&entry.id);
        if !entry.on_wire {
            self.unsent -= 1;
        } else if entry.kind.is_publish() {
            self.on_wire_publishes -= 1;
        }
        Some(entry)
    }

    /// Queues a message; [`fill`](Self::fill) sends it when it can.
    pub(super) fn enqueue(&mut self, request: RequestId, publish: Publish) {
        self.queue.push_back(Queued { request, publish });
    }

    /// Adds a SUBSCRIBE or UNSUBSCRIBE under a fresh identifier, to be written by
    /// [`fill`](Self::fill). Returns `None` when every identifier is in use.
    fn add_request(
        &mut self,
        request: RequestId,
        make: impl FnOnce(PacketId) -> Kind,
    ) -> Option<PacketId> {
        let id = self.allocate()?;
        self.insert(id, request, make(id), false);
        Some(id)
    }

    pub(super) fn subscribe(
        &mut self,
        request: RequestId,
        mut subscribe: Subscribe,
    ) -> Option<PacketId> {
        self.add_request(request, |id| {
            subscribe.packet_id = id;
            Kind::Subscribe(subscribe)
        })
    }

    pub(super) fn unsubscribe(
        &mut self,
        request: RequestId,
        mut unsubscribe: Unsubscribe,
    ) -> Option<PacketId> {
        self.add_request(request, |id| {
            unsubscribe.packet_id = id;
            Kind::Unsubscribe(unsubscribe)
        })
    }

    /// Writes what can be written now, in order: entries off the wire (redeliveries and
    /// requests made while offline) while the window allows, then queued messages while the
    /// window has room. Packets the server's limits no longer allow fail their request.
    pub(super) fn fill(&mut self, limits: &Limits, out: &mut Output) {
        // A PUBLISH waiting to be resent keeps newer messages back: order is kept
        // [MQTT-4.6.0-1].
        let mut blocked = false;
        if self.unsent > 0 {
            let mut too_large = Vec::new();
            for (&seq, entry) in &mut self.entries {
                if entry.on_wire {
                    continue;
                }
                let publish = entry.kind.is_publish();
                if publish && (blocked || self.on_wire_publishes >= limits.window) {
                    blocked = true;
                    continue;
                }
                let packet = entry.packet();
                if let Err(error) = limits.check_size(&packet) {
                    too_large.push((seq, error));
                    continue;
                }
                entry.mark_sent();
                self.unsent -= 1;
                if publish {
                    self.on_wire_publishes += 1;
                }
                out.transmit.push_back(packet);
            }
            for (seq, error) in too_large {
                if let Some(entry) = self.remove(seq) {
                    out.events.push_back(Event::Failed {
                        request: entry.request,
                        error,
                    });
                }
            }
        }
        if blocked {
            return;
        }
        while let Some(front) = self.queue.front() {
            let qos = front.publish.qos;
            if qos != QoS::AtMostOnce
                && (self.on_wire_publishes >= limits.window || self.ids.len() >= MAX_IDS)
            {
                break;
            }
            let Some(Queued {
                request,
                mut publish,
            }) = self.queue.pop_front()
            else {
                break;
            };
            // The limits may have changed since the message was queued (a new connection).
            if let Err(error) = limits.check_publish(&publish) {
                out.events.push_back(Event::Failed { request, error });
                continue;
            }
            publish.dup = false;
            if qos == QoS::AtMostOnce {
                publish.packet_id = None;
                out.transmit.push_back(Packet::Publish(publish));
                out.events.push_back(Event::Published {
                    request,
                    outcome: PublishOutcome::sent(),
                });
                continue;
            }
            let Some(id) = self.allocate() else {
                break;
            };
            publish.packet_id = Some(id);
            out.transmit.push_back(Packet::Publish(publish.clone()));
            publish.dup = true;
            let kind = if qos == QoS::ExactlyOnce {
                Kind::AwaitingPubRec(publish)
            } else {
                Kind::AwaitingPubAck(publish)
            };
            self.insert(id, request, kind, true);
        }
    }

    fn seq_of(&self, id: PacketId) -> Option<u64> {
        self.ids.get(&id).copied()
    }

    /// A PUBACK: the QoS 1 message is delivered (or refused, by a v5 reason of 0x80 or
    /// more). Returns whether it matched a message in flight.
    pub(super) fn on_puback(&mut self, ack: PubAck, out: &mut Output) -> bool {
        let Some(seq) = self.seq_of(ack.packet_id) else {
            return false;
        };
        if !matches!(self.entries[&seq].kind, Kind::AwaitingPubAck(_)) {
            return false;
        }
        let Some(entry) = self.remove(seq) else {
            return false;
        };
        out.events.push_back(Event::Published {
            request: entry.request,
            outcome: PublishOutcome {
                packet_id: Some(ack.packet_id),
                reason: ack.reason,
                properties: ack.properties,
            },
        });
        true
    }

    /// A PUBREC. Success moves the message on to PUBREL (a repeated PUBREC gets the PUBREL
    /// again); in MQTT 5.0 a reason of 0x80 or more ends the exchange there, without PUBREL
    /// (section 4.3.3). A PUBREC nobody waits for is answered with PUBREL all the same, so the
    /// server can finish its side, in 5.0 with 0x92 Packet Identifier not found.
    pub(super) fn on_pubrec(&mut self, rec: PubRec, v5: bool, out: &mut Output) {
        let id = rec.packet_id;
        let Some(seq) = self.seq_of(id) else {
            let mut rel = PubRel::new(id);
            if v5 {
                rel.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
            }
            out.transmit.push_back(Packet::PubRel(rel));
            return;
        };
        match self.entries[&seq].kind {
            Kind::AwaitingPubRec(_) if rec.reason.is_error() => {
                if let Some(entry) = self.remove(seq) {
                    out.events.push_back(Event::Published {
                        request: entry.request,
                        outcome: PublishOutcome {
                            packet_id: Some(id),
                            reason: rec.reason,
                            properties: rec.properties,
                        },
                    });
                }
            }
            Kind::AwaitingPubRec(_) => {
                if let Some(entry) = self.entries.get_mut(&seq) {
                    entry.kind = Kind::AwaitingPubComp(rec);
                }
                out.transmit.push_back(Packet::PubRel(PubRel::new(id)));
            }
            Kind::AwaitingPubComp(_) => {
                out.transmit.push_back(Packet::PubRel(PubRel::new(id)));
            }
            // An identifier used by a QoS 1 message or a request: not ours to release.
            _ => {}
        }
    }

    /// A PUBCOMP: the QoS 2 exchange is over. The outcome carries the PUBCOMP's reason, or
    /// the PUBREC's when the PUBCOMP reports plain success (so 0x10 No matching subscribers
    /// is not lost).
    pub(super) fn on_pubcomp(&mut self, comp: PubComp, out: &mut Output) -> bool {
        let Some(seq) = self.seq_of(comp.packet_id) else {
            return false;
        };
        if !matches!(self.entries[&seq].kind, Kind::AwaitingPubComp(_)) {
            return false;
        }
        let Some(Entry {
            request,
            kind: Kind::AwaitingPubComp(rec),
            ..
        }) = self.remove(seq)
        else {
            return false;
        };
        let outcome = if comp.reason == ReasonCode::SUCCESS && comp.properties.is_empty() {
            PublishOutcome {
                packet_id: Some(comp.packet_id),
                reason: rec.reason,
                properties: rec.properties,
            }
        } else {
            PublishOutcome {
                packet_id: Some(comp.packet_id),
                reason: comp.reason,
                properties: comp.properties,
            }
        };
        out.events.push_back(Event::Published { request, outcome });
        true
    }

    /// A SUBACK for one of our SUBSCRIBEs.
    pub(super) fn on_suback(&mut self, ack: SubAck, out: &mut Output) -> bool {
        let Some(seq) = self.seq_of(ack.packet_id) else {
            return false;
        };
        if !matches!(self.entries[&seq].kind, Kind::Subscribe(_)) {
            return false;
        }
        let Some(entry) = self.remove(seq) else {
            return false;
        };
        out.events.push_back(Event::Subscribed {
            request: entry.request,
            ack,
        });
        true
    }

    /// An UNSUBACK for one of our UNSUBSCRIBEs.
    pub(super) fn on_unsuback(&mut self, ack: UnsubAck, out: &mut Output) -> bool {
        let Some(seq) = self.seq_of(ack.packet_id) else {
            return false;
        };
        if !matches!(self.entries[&seq].kind, Kind::Unsubscribe(_)) {
            return false;
        }
        let Some(entry) = self.remove(seq) else {
            return false;
        };
        out.events.push_back(Event::Unsubscribed {
            request: entry.request,
            ack,
        });
        true
    }

    /// The connection is gone: nothing is on the wire any more. Everything stays, to be
    /// resent if the session resumes.
    pub(super) fn connection_lost(&mut self) {
        for entry in self.entries.values_mut() {
            if entry.on_wire {
                entry.on_wire = false;
                self.unsent += 1;
            }
        }
        self.on_wire_publishes = 0;
    }

    /// The session state is discarded: messages in flight are forgotten and their requests
    /// fail with [`RequestError::SessionDiscarded`]. SUBSCRIBE and UNSUBSCRIBE requests are not
    /// session state: they stay, to be sent on the new session. Queued messages were never
    /// sent and stay queued.
    pub(super) fn discard_session(&mut self, out: &mut Output) {
        let publishes: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| e.kind.is_publish())
            .map(|(&seq, _)| seq)
            .collect();
        for seq in publishes {
            if let Some(entry) = self.remove(seq) {
                out.events.push_back(Event::Failed {
                    request: entry.request,
                    error: RequestError::SessionDiscarded,
                });
            }
        }
    }
}
