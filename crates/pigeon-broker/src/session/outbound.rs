//! Messages on their way to one client: the in-flight window and the queue behind it.
//!
//! Packet Identifiers are assigned when a message enters the in-flight window, never when it is
//! queued, so a session can hold any number of queued messages without running out of
//! identifiers or reusing one that is still in flight (Mosquitto hands out duplicates past
//! 65,535 queued messages; see `docs/differences.md`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use pigeon_proto::{Packet, PacketId, Protocol, PubRel, Publish, QoS};

use crate::message::Delivery;

/// Limits on what one client may have in flight and queued, as Mosquitto's directives of the
/// same names define them. Zero means unlimited, except where noted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboundLimits {
    /// `max_inflight_messages`: QoS 1 and 2 messages in flight at once (default 20; 0 means
    /// 65,535, the most packet identifiers allow). In MQTT 5.0 the client's Receive Maximum
    /// lowers it.
    pub max_inflight_messages: u16,
    /// `max_inflight_bytes`: payload bytes in flight at once (default 0: no limit).
    pub max_inflight_bytes: usize,
    /// `max_queued_messages`: messages queued behind the window (default 1000).
    pub max_queued_messages: usize,
    /// `max_queued_bytes`: payload bytes queued behind the window (default 0: no limit).
    pub max_queued_bytes: usize,
    /// `queue_qos0_messages`: whether QoS 0 messages are queued for an offline persistent
    /// session (default false).
    pub queue_qos0_messages: bool,
}

impl Default for OutboundLimits {
    fn default() -> Self {
        OutboundLimits {
            max_inflight_messages: 20,
            max_inflight_bytes: 0,
            max_queued_messages: 1000,
            max_queued_bytes: 0,
            queue_qos0_messages: false,
        }
    }
}

/// The state of the client's connection, as far as delivery cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Not connected: the session persists and messages queue.
    Offline,
    /// Connected, with this many packets written to the connection and not yet flushed.
    Online {
        /// Packets waiting in the connection's write buffer.
        backlog: usize,
    },
}

/// What became of a delivery handed to [`Outbound::push`].
// Returned by value and consumed at once: boxing the PUBLISH would cost an allocation per
// message on the hot path to save a move.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// Send this PUBLISH now.
    Send(Publish),
    /// Queued behind the in-flight window, or for when the client reconnects.
    Queued,
    /// Dropped: the queue is full (or QoS 0 for an offline client that does not queue it).
    Dropped,
    /// Discarded as if sent: it expired, or exceeds the client's Maximum Packet Size.
    Discarded,
}

/// A change to a held message that the store records (see [`Outbound::set_journal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journal {
    /// The stored message went in flight under this identifier.
    Sent(u64, PacketId),
    /// PUBREC came for the QoS 2 message in flight under this identifier.
    Released(PacketId),
    /// The stored message is done with: acknowledged, dropped, expired or sent at QoS 0.
    Done(u64),
}

/// Why an acknowledgement did not fit the client's in-flight state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckError {
    /// No message is in flight with this identifier.
    UnknownPacketId(PacketId),
    /// A message is in flight with this identifier, but waits for another packet (a PUBACK
    /// for a QoS 2 message, a PUBCOMP before PUBREC, ...).
    UnexpectedAck(PacketId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// QoS 1 sent, waiting for PUBACK.
    Qos1Sent,
    /// QoS 2 sent, waiting for PUBREC.
    Qos2Sent,
    /// PUBREL sent, waiting for PUBCOMP.
    Released,
}

#[derive(Debug, Clone)]
struct InFlight {
    id: PacketId,
    stage: Stage,
    delivery: Delivery,
}

/// The messages an [`Outbound`] holds.
#[derive(Debug, Default)]
struct Held {
    /// In flight, by send order (redelivery keeps it).
    inflight: BTreeMap<u64, InFlight>,
    /// Send order of each identifier in flight.
    /// (A `BTreeMap`: half the size of a `HashMap`, and as quick for a window of a few dozen
    /// identifiers.)
    ids: BTreeMap<PacketId, u64>,
    next_seq: u64,
    inflight_bytes: usize,
    queue: VecDeque<Delivery>,
    queued_bytes: usize,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.inflight.is_empty() && self.queue.is_empty()
    }
}

/// What an [`Outbound`] without a [`Held`] reads.
static NOTHING_HELD: Held = Held {
    inflight: BTreeMap::new(),
    ids: BTreeMap::new(),
    next_seq: 0,
    inflight_bytes: 0,
    queue: VecDeque::new(),
    queued_bytes: 0,
};

/// The outbound half of one client's session.
#[derive(Debug, Default)]
pub struct Outbound {
    /// Shared by the sessions made under the same settings.
    limits: Arc<OutboundLimits>,
    /// Receive Maximum of the current MQTT 5.0 connection, if lower than the configured window.
    receive_maximum: Option<u16>,
    /// Maximum Packet Size of the current MQTT 5.0 connection: larger PUBLISH packets are
    /// discarded as if sent [MQTT-3.1.2-25].
    max_packet_size: Option<u32>,
    /// The messages held, in flight and queued; on the heap, and only while there are any:
    /// an idle session (every idle connection has one) carries one pointer for them.
    held: Option<Box<Held>>,
    next_id: Option<PacketId>,
    dropped: u64,
    expired: u64,
    oversize: u64,
    /// Changes to stored messages, for the store; `None` when nothing is stored (on the
    /// heap: a session without persistence carries one pointer for it).
    #[expect(
        clippy::box_collection,
        reason = "one pointer rather than a Vec in every session's (and idle connection's) state"
    )]
    journal: Option<Box<Vec<Journal>>>,
}

impl Outbound {
    /// The messages held (none, without a [`Held`]).
    fn holding(&self) -> &Held {
        self.held.as_deref().unwrap_or(&NOTHING_HELD)
    }

    /// The messages held, made room for.
    fn held_mut(&mut self) -> &mut Held {
        self.held.get_or_insert_default()
    }

    /// Gives back the room for held messages while there are none.
    pub fn release_idle_room(&mut self) {
        if self.held.as_ref().is_some_and(|h| h.is_empty()) {
            self.held = None;
        }
    }

    /// An empty outbound state with these limits.
    pub fn new(limits: impl Into<Arc<OutboundLimits>>) -> Self {
        Outbound {
            limits: limits.into(),
            ..Self::default()
        }
    }

    /// Starts (or stops) noting changes to stored messages for the store to record.
    pub fn set_journal(&mut self, on: bool) {
        if on != self.journal.is_some() {
            self.journal = on.then(Box::default);
        }
    }

    /// Takes the changes noted since the last call.
    pub fn take_journal(&mut self) -> Vec<Journal> {
        self.journal
            .as_mut()
            .map(|journal| std::mem::take(&mut **journal))
            .unwrap_or_default()
    }

    fn note_done(&mut self, delivery: &Delivery) {
        if let (Some(journal), Some(&id)) = (&mut self.journal, delivery.message.store_id.get()) {
            journal.push(Journal::Done(id));
        }
    }

    /// What the session holds, in order: those in flight (with their identifier and whether
    /// PUBREC came), then those queued.
    pub fn held(&self) -> impl Iterator<Item = (&Delivery, Option<(PacketId, bool)>)> {
        self.holding()
            .inflight
            .values()
            .map(|f| (&f.delivery, Some((f.id, f.stage == Stage::Released))))
            .chain(self.holding().queue.iter().map(|d| (d, None)))
    }

    /// Puts back a delivery held before a restart: in flight under its identifier (and
    /// released when PUBREC had come), or queued. Limits are not applied: it was accepted.
    pub fn restore(&mut self, delivery: Delivery, inflight: Option<(PacketId, bool)>) {
        let size = delivery.message.size();
        match inflight {
            Some((id, released)) if !self.holding().ids.contains_key(&id) => {
                let stage = match (delivery.qos, released) {
                    (_, true) => Stage::Released,
                    (QoS::ExactlyOnce, false) => Stage::Qos2Sent,
                    _ => Stage::Qos1Sent,
                };
                self.enter_window(id, stage, delivery);
                self.next_id = Some(id.next());
            }
            _ => {
                self.held_mut().queued_bytes += size;
                self.held_mut().queue.push_back(delivery);
            }
        }
    }

    /// Sets the client's Receive Maximum (MQTT 5.0) for the current connection; `None` for
    /// MQTT 3.x.
    pub fn set_receive_maximum(&mut self, receive_maximum: Option<u16>) {
        self.receive_maximum = receive_maximum;
    }

    /// Sets the client's Maximum Packet Size (MQTT 5.0) for the current connection; `None`
    /// for no limit beyond the protocol's.
    pub fn set_max_packet_size(&mut self, max_packet_size: Option<u32>) {
        self.max_packet_size = max_packet_size;
    }

    /// Messages discarded because they expired before they could be sent [MQTT-3.3.2-5].
    pub fn expired(&self) -> u64 {
        self.expired
    }

    /// Messages discarded because they exceeded the client's Maximum Packet Size.
    pub fn oversize(&self) -> u64 {
        self.oversize
    }

    /// Whether `delivery` cannot be sent: it expired, or it would exceed the client's
    /// Maximum Packet Size (counted either way; the caller discards it as if sent).
    fn undeliverable(&mut self, delivery: &Delivery, now: Instant) -> bool {
        if delivery.message.is_expired(now) {
            self.expired += 1;
            return true;
        }
        if self.too_large(delivery, now) {
            self.oversize += 1;
            return true;
        }
        false
    }

    /// Whether `delivery` would exceed the client's Maximum Packet Size.
    fn too_large(&self, delivery: &Delivery, now: Instant) -> bool {
        self.max_packet_size.is_some_and(|max| {
            // The identifier's value does not change the size.
            let id = (delivery.qos != QoS::AtMostOnce).then_some(PacketId::FIRST);
            let len = delivery.to_publish(id, true, now).encoded_len(Protocol::V5);
            len > max as usize
        })
    }

    /// Messages in flight.
    pub fn inflight_len(&self) -> usize {
        self.holding().inflight.len()
    }

    /// Messages queued behind the window.
    pub fn queued_len(&self) -> usize {
        self.holding().queue.len()
    }

    /// Payload bytes held, in flight and queued.
    pub fn held_bytes(&self) -> usize {
        self.holding().inflight_bytes + self.holding().queued_bytes
    }

    /// Messages dropped so far because a queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Hands over one delivery.
    ///
    /// QoS 0 goes out at once to a connected client unless its write backlog is already
    /// `max_queued_messages` deep, and is queued for an offline one only with
    /// `queue_qos0_messages` (Mosquitto's rules). QoS 1 and 2 enter the window when it has
    /// room and nothing is queued ahead of them (order per topic and QoS, [MQTT-4.6.0-6]),
    /// and queue otherwise, up to the queue limits.
    ///
    /// A message that has expired, or that exceeds the client's Maximum Packet Size, is
    /// discarded as if sent (`Pushed::Dropped` is for full queues only, so it says `Queued`
    /// for an offline client and nothing is sent).
    pub fn push(&mut self, delivery: Delivery, link: Link, now: Instant) -> Pushed {
        if matches!(link, Link::Online { .. }) && self.undeliverable(&delivery, now) {
            self.note_done(&delivery);
            return Pushed::Discarded;
        }
        if delivery.qos == QoS::AtMostOnce {
            return match link {
                Link::Online { backlog } => {
                    if self.limits.max_queued_messages != 0
                        && backlog >= self.limits.max_queued_messages
                    {
                        self.dropped += 1;
                        self.note_done(&delivery);
                        Pushed::Dropped
                    } else {
                        self.note_done(&delivery);
                        Pushed::Send(delivery.to_publish(None, false, now))
                    }
                }
                Link::Offline if self.limits.queue_qos0_messages => self.enqueue(delivery),
                Link::Offline => {
                    self.dropped += 1;
                    Pushed::Dropped
                }
            };
        }
        if matches!(link, Link::Online { .. })
            && self.holding().queue.is_empty()
            && self.window_has_room(delivery.message.size())
        {
            return Pushed::Send(self.start(delivery, now));
        }
        self.enqueue(delivery)
    }

    fn enqueue(&mut self, delivery: Delivery) -> Pushed {
        let size = delivery.message.size();
        let count_full = self.limits.max_queued_messages != 0
            && self.holding().queue.len() >= self.limits.max_queued_messages;
        let bytes_full = self.limits.max_queued_bytes != 0
            && self.holding().queued_bytes + size > self.limits.max_queued_bytes;
        if count_full || bytes_full {
            self.dropped += 1;
            self.note_done(&delivery);
            return Pushed::Dropped;
        }
        self.held_mut().queued_bytes += size;
        self.held_mut().queue.push_back(delivery);
        Pushed::Queued
    }

    fn window(&self) -> usize {
        let configured = match self.limits.max_inflight_messages {
            0 => u16::MAX,
            n => n,
        };
        usize::from(
            self.receive_maximum
                .map_or(configured, |r| r.min(configured)),
        )
    }

    fn window_has_room(&self, size: usize) -> bool {
        if self.holding().inflight.len() >= self.window() {
            return false;
        }
        // An empty window always takes one message, however large, or it would never move.
        self.limits.max_inflight_bytes == 0
            || self.holding().inflight.is_empty()
            || self.holding().inflight_bytes + size <= self.limits.max_inflight_bytes
    }

    /// Puts a QoS 1 or 2 delivery in flight under a fresh identifier.
    fn start(&mut self, delivery: Delivery, now: Instant) -> Publish {
        let id = self.allocate_id();
        let publish = delivery.to_publish(Some(id), false, now);
        let stage = if delivery.qos == QoS::ExactlyOnce {
            Stage::Qos2Sent
        } else {
            Stage::Qos1Sent
        };
        if let (Some(journal), Some(&stored)) = (&mut self.journal, delivery.message.store_id.get())
        {
            journal.push(Journal::Sent(stored, id));
        }
        self.enter_window(id, stage, delivery);
        publish
    }

    /// Puts `delivery` in the window under `id`, in `stage`, after everything already there.
    fn enter_window(&mut self, id: PacketId, stage: Stage, delivery: Delivery) {
        self.held_mut().inflight_bytes += delivery.message.size();
        let seq = self.held_mut().next_seq;
        self.held_mut().next_seq += 1;
        self.held_mut().ids.insert(id, seq);
        self.held_mut().inflight.insert(
            seq,
            InFlight {
                id,
                stage,
                delivery,
            },
        );
    }

    /// The next identifier not in flight. The window never exceeds 65,535 entries, so one is
    /// always free when this is called.
    fn allocate_id(&mut self) -> PacketId {
        let mut id = self.next_id.unwrap_or(PacketId::FIRST);
        while self.holding().ids.contains_key(&id) {
            id = id.next();
        }
        self.next_id = Some(id.next());
        id
    }

    /// Moves queued deliveries into the window while it has room; returns what to send.
    /// Expired messages, and messages too large for the client, leave the queue unsent.
    pub fn fill(&mut self, now: Instant) -> Vec<Publish> {
        let mut out = Vec::new();
        while let Some(front) = self.holding().queue.front() {
            let size = front.message.size();
            // A QoS 0 message queued while offline leaves the queue without using the window.
            if front.qos != QoS::AtMostOnce && !self.window_has_room(size) {
                break;
            }
            let Some(delivery) = self.held_mut().queue.pop_front() else {
                break;
            };
            self.held_mut().queued_bytes -= size;
            if self.undeliverable(&delivery, now) {
                self.note_done(&delivery);
                continue;
            }
            if delivery.qos == QoS::AtMostOnce {
                self.note_done(&delivery);
                out.push(delivery.to_publish(None, false, now));
            } else {
                out.push(self.start(delivery, now));
            }
        }
        out
    }

    fn finish(&mut self, id: PacketId) {
        if let Some(seq) = self.held_mut().ids.remove(&id)
            && let Some(done) = self.held_mut().inflight.remove(&seq)
        {
            self.held_mut().inflight_bytes -= done.delivery.message.size();
            self.note_done(&done.delivery);
        }
    }

    fn stage_of(&self, id: PacketId) -> Result<Stage, AckError> {
        self.holding()
            .ids
            .get(&id)
            .and_then(|seq| self.holding().inflight.get(seq))
            .map(|f| f.stage)
            .ok_or(AckError::UnknownPacketId(id))
    }

    /// A PUBACK arrived: the QoS 1 message is delivered; returns the messages
    /// the freed slot lets out.
    ///
    /// # Errors
    /// [`AckError`] when no QoS 1 message is in flight under `id`; nothing changes then.
    pub fn on_puback(&mut self, id: PacketId, now: Instant) -> Result<Vec<Publish>, AckError> {
        match self.stage_of(id)? {
            Stage::Qos1Sent => {
                self.finish(id);
                Ok(self.fill(now))
            }
            _ => Err(AckError::UnexpectedAck(id)),
        }
    }

    /// A PUBREC arrived. Normally the answer is PUBREL and the message waits for PUBCOMP
    /// (section 4.3.3); a repeated PUBREC gets the PUBREL again. In MQTT 5.0 a PUBREC with an
    /// error reason ends the exchange instead (`failed`), freeing the slot.
    ///
    /// # Errors
    /// [`AckError`] when no QoS 2 message is in flight under `id`.
    pub fn on_pubrec(
        &mut self,
        id: PacketId,
        failed: bool,
        now: Instant,
    ) -> Result<Vec<Packet>, AckError> {
        match self.stage_of(id)? {
            Stage::Qos2Sent | Stage::Released if !failed => {
                let held = self.held_mut();
                if let Some(f) = held.ids.get(&id).and_then(|s| held.inflight.get_mut(s))
                    && f.stage == Stage::Qos2Sent
                {
                    f.stage = Stage::Released;
                    if let Some(journal) = &mut self.journal {
                        journal.push(Journal::Released(id));
                    }
                }
                Ok(vec![Packet::PubRel(PubRel::new(id))])
            }
            Stage::Qos2Sent => {
                self.finish(id);
                Ok(self.fill(now).into_iter().map(Packet::Publish).collect())
            }
            _ => Err(AckError::UnexpectedAck(id)),
        }
    }

    /// A PUBCOMP arrived: the QoS 2 exchange is over.
    ///
    /// # Errors
    /// [`AckError`] when no PUBREL is outstanding under `id`.
    pub fn on_pubcomp(&mut self, id: PacketId, now: Instant) -> Result<Vec<Publish>, AckError> {
        match self.stage_of(id)? {
            Stage::Released => {
                self.finish(id);
                Ok(self.fill(now))
            }
            _ => Err(AckError::UnexpectedAck(id)),
        }
    }

    /// What to send when the client resumes its session: every unacknowledged PUBLISH again,
    /// with DUP set and its original identifier, and every unacknowledged PUBREL, in their
    /// original order [MQTT-4.4.0-1], [MQTT-2.2.2-3]; then whatever the window lets out of
    /// the queue.
    /// Messages whose delivery had started are sent again even if they have expired since
    /// (expiry only stops a delivery that has not begun [MQTT-3.3.2-5]).
    pub fn resume(&mut self, now: Instant) -> Vec<Packet> {
        // A message in flight that the new connection's Maximum Packet Size no longer lets
        // through is discarded as if its delivery had completed [MQTT-3.1.2-25].
        let oversize: Vec<(u64, PacketId)> = self
            .holding()
            .inflight
            .iter()
            .filter(|(_, f)| f.stage != Stage::Released && self.too_large(&f.delivery, now))
            .map(|(seq, f)| (*seq, f.id))
            .collect();
        for (seq, id) in oversize {
            if let Some(f) = self.held_mut().inflight.remove(&seq) {
                self.held_mut().ids.remove(&id);
                self.held_mut().inflight_bytes -= f.delivery.message.size();
                self.oversize += 1;
            }
        }
        let mut out: Vec<Packet> = self
            .holding()
            .inflight
            .values()
            .map(|f| match f.stage {
                Stage::Qos1Sent | Stage::Qos2Sent => {
                    Packet::Publish(f.delivery.to_publish(Some(f.id), true, now))
                }
                Stage::Released => Packet::PubRel(PubRel::new(f.id)),
            })
            .collect();
        out.extend(self.fill(now).into_iter().map(Packet::Publish));
        out
    }

    /// Takes out the deliveries made through shared subscriptions that the client has not
    /// received yet: those queued, and the QoS 1 ones in flight (unacknowledged). When a
    /// session ends, they go to another member of their group (MQTT 5.0 section 4.8.2). A
    /// QoS 2 delivery once started stays: it is never sent to another member [MQTT-4.8.2-5].
    pub fn take_shared(&mut self) -> Vec<Delivery> {
        let mut out = Vec::new();
        if self.held.is_none() {
            return out;
        }
        let unreceived: Vec<PacketId> = self
            .holding()
            .inflight
            .values()
            .filter(|f| f.stage == Stage::Qos1Sent && f.delivery.shared.is_some())
            .map(|f| f.id)
            .collect();
        for id in unreceived {
            if let Some(seq) = self.held_mut().ids.remove(&id)
                && let Some(f) = self.held_mut().inflight.remove(&seq)
            {
                self.held_mut().inflight_bytes -= f.delivery.message.size();
                out.push(f.delivery);
            }
        }
        let (shared, kept): (VecDeque<Delivery>, VecDeque<Delivery>) = self
            .held_mut()
            .queue
            .drain(..)
            .partition(|d| d.shared.is_some());
        self.held_mut().queue = kept;
        self.held_mut().queued_bytes = self.held_mut().queue.iter().map(|d| d.message.size()).sum();
        out.extend(shared);
        out
    }

    /// Forgets everything (the session ended).
    pub fn clear(&mut self) {
        let limits = Arc::clone(&self.limits);
        let dropped = self.dropped;
        *self = Outbound::new(limits);
        self.dropped = dropped;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use pigeon_proto::TopicName;

    use super::*;
    use crate::message::Message;

    const ONLINE: Link = Link::Online { backlog: 0 };

    fn now() -> Instant {
        crate::clock::now()
    }

    fn delivery(n: u8, qos: QoS) -> Delivery {
        Delivery::new(
            Arc::new(Message::new(
                TopicName::from_static("t"),
                Bytes::from(vec![n; 10]),
                qos,
                false,
            )),
            qos,
            false,
        )
    }

    fn id(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    fn sent(p: Pushed) -> Publish {
        match p {
            Pushed::Send(p) => p,
            other => panic!("expected Send, got {other:?}"),
        }
    }

    fn limits(window: u16, queue: usize) -> OutboundLimits {
        OutboundLimits {
            max_inflight_messages: window,
            max_queued_messages: queue,
            ..OutboundLimits::default()
        }
    }

    #[test]
    fn qos1_window_queue_and_release_in_order() {
        let mut out = Outbound::new(limits(2, 10));
        assert_eq!(
            sent(out.push(delivery(1, QoS::AtLeastOnce), ONLINE, now())).packet_id,
            Some(id(1))
        );
        assert_eq!(
            sent(out.push(delivery(2, QoS::AtLeastOnce), ONLINE, now())).packet_id,
            Some(id(2))
        );
        assert_eq!(
            out.push(delivery(3, QoS::AtLeastOnce), ONLINE, now()),
            Pushed::Queued
        );
        assert_eq!(
            out.push(delivery(4, QoS::AtLeastOnce), ONLINE, now()),
            Pushed::Queued
        );
        // The window frees one slot per PUBACK, in queue order, with the next identifiers.
        let next = out.on_puback(id(2), now()).unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].payload[0], 3);
        assert_eq!(next[0].packet_id, Some(id(3)));
        let next = out.on_puback(id(1), now()).unwrap();
        assert_eq!((next[0].payload[0], next[0].packet_id), (4, Some(id(4))));
        assert_eq!(out.queued_len(), 0);
    }

    #[test]
    fn qos0_bypasses_window_and_is_dropped_offline() {
        let mut out = Outbound::new(limits(1, 10));
        sent(out.push(delivery(1, QoS::AtLeastOnce), ONLINE, now()));
        let p = sent(out.push(delivery(2, QoS::AtMostOnce), ONLINE, now()));
        assert_eq!((p.packet_id, p.qos), (None, QoS::AtMostOnce));
        assert_eq!(
            out.push(delivery(3, QoS::AtMostOnce), Link::Offline, now()),
            Pushed::Dropped
        );
        assert_eq!(out.dropped(), 1);
        // A congested connection drops QoS 0 once its backlog reaches the queue limit.
        let congested = Link::Online { backlog: 10 };
        assert_eq!(
            out.push(delivery(4, QoS::AtMostOnce), congested, now()),
            Pushed::Dropped
        );
    }

    #[test]
    fn qos0_queued_offline_with_queue_qos0_messages() {
        let mut out = Outbound::new(OutboundLimits {
            queue_qos0_messages: true,
            ..limits(1, 10)
        });
        assert_eq!(
            out.push(delivery(1, QoS::AtMostOnce), Link::Offline, now()),
            Pushed::Queued
        );
        assert_eq!(
            out.push(delivery(2, QoS::AtLeastOnce), Link::Offline, now()),
            Pushed::Queued
        );
        assert_eq!(
            out.push(delivery(3, QoS::AtLeastOnce), Link::Offline, now()),
            Pushed::Queued
        );
        let resumed = out.resume(now());
        // QoS 0 leaves without a slot; one QoS 1 fills the window of one.
        assert_eq!(resumed.len(), 2);
        assert!(matches!(&resumed[0], Packet::Publish(p) if p.packet_id.is_none()));
        assert!(matches!(&resumed[1], Packet::Publish(p) if p.packet_id == Some(id(1))));
        assert_eq!(out.queued_len(), 1);
    }

    #[test]
    fn queue_limits_drop_and_count() {
        let mut out = Outbound::new(OutboundLimits {
            max_queued_bytes: 25,
            ..limits(1, 3)
        });
        sent(out.push(delivery(0, QoS::AtLeastOnce), ONLINE, now()));
        assert_eq!(
            out.push(delivery(1, QoS::AtLeastOnce), ONLINE, now()),
            Pushed::Queued
        );
        assert_eq!(
            out.push(delivery(2, QoS::AtLeastOnce), ONLINE, now()),
            Pushed::Queued
        );
        // 20 bytes queued; 10 more would pass 25.
        assert_eq!(
            out.push(delivery(3, QoS::AtLeastOnce), ONLINE, now()),
            Pushed::Dropped
        );
        assert_eq!(out.dropped(), 1);
    }

    #[test]
    fn qos2_full_exchange() {
        let mut out = Outbound::new(limits(1, 10));
        let p = sent(out.push(delivery(1, QoS::ExactlyOnce), ONLINE, now()));
        assert_eq!(p.qos, QoS::ExactlyOnce);
        assert_eq!(
            out.push(delivery(2, QoS::ExactlyOnce), ONLINE, now()),
            Pushed::Queued
        );
        // A PUBACK does not complete a QoS 2 message.
        assert_eq!(
            out.on_puback(id(1), now()),
            Err(AckError::UnexpectedAck(id(1)))
        );
        // Nor does PUBCOMP before PUBREC.
        assert_eq!(
            out.on_pubcomp(id(1), now()),
            Err(AckError::UnexpectedAck(id(1)))
        );
        assert_eq!(
            out.on_pubrec(id(1), false, now()).unwrap(),
            vec![Packet::PubRel(PubRel::new(id(1)))]
        );
        // A repeated PUBREC gets the PUBREL again.
        assert_eq!(
            out.on_pubrec(id(1), false, now()).unwrap(),
            vec![Packet::PubRel(PubRel::new(id(1)))]
        );
        // The slot stays taken until PUBCOMP.
        let next = out.on_pubcomp(id(1), now()).unwrap();
        assert_eq!((next[0].payload[0], next[0].packet_id), (2, Some(id(2))));
        assert_eq!(
            out.on_pubcomp(id(1), now()),
            Err(AckError::UnknownPacketId(id(1)))
        );
    }

    #[test]
    fn failed_pubrec_frees_the_slot() {
        let mut out = Outbound::new(limits(1, 10));
        sent(out.push(delivery(1, QoS::ExactlyOnce), ONLINE, now()));
        out.push(delivery(2, QoS::AtLeastOnce), ONLINE, now());
        let next = out.on_pubrec(id(1), true, now()).unwrap();
        assert!(matches!(&next[..], [Packet::Publish(p)] if p.payload[0] == 2));
    }

    // [MQTT-4.4.0-1]: on resumption, unacknowledged PUBLISH again with DUP and the same
    // identifier, and unacknowledged PUBREL, in order.
    #[test]
    fn resume_resends_with_dup_and_original_ids() {
        let mut out = Outbound::new(limits(3, 10));
        sent(out.push(delivery(1, QoS::AtLeastOnce), ONLINE, now()));
        sent(out.push(delivery(2, QoS::ExactlyOnce), ONLINE, now()));
        sent(out.push(delivery(3, QoS::ExactlyOnce), ONLINE, now()));
        out.on_pubrec(id(2), false, now()).unwrap();
        out.push(delivery(4, QoS::AtLeastOnce), Link::Offline, now());
        let again = out.resume(now());
        assert_eq!(
            again.len(),
            3,
            "the queued one waits for a free slot: {again:?}"
        );
        assert!(matches!(&again[0], Packet::Publish(p) if p.dup && p.packet_id == Some(id(1))));
        assert_eq!(again[1], Packet::PubRel(PubRel::new(id(2))));
        assert!(matches!(&again[2], Packet::Publish(p) if p.dup && p.packet_id == Some(id(3))));
    }

    #[test]
    fn identifiers_skip_those_in_flight_and_wrap() {
        let mut out = Outbound::new(limits(0, 0));
        out.next_id = PacketId::new(u16::MAX);
        assert_eq!(
            sent(out.push(delivery(1, QoS::AtLeastOnce), ONLINE, now())).packet_id,
            Some(id(u16::MAX))
        );
        assert_eq!(
            sent(out.push(delivery(2, QoS::AtLeastOnce), ONLINE, now())).packet_id,
            Some(id(1))
        );
        out.next_id = Some(id(u16::MAX));
        // 65535 and 1 are in flight: the next free one is 2.
        assert_eq!(
            sent(out.push(delivery(3, QoS::AtLeastOnce), ONLINE, now())).packet_id,
            Some(id(2))
        );
    }

    // More than 65,535 messages queued for an offline client: every one is delivered once,
    // and no identifier is ever in flight twice.
    #[test]
    fn more_queued_than_identifiers() {
        let total = 70_000usize;
        let mut out = Outbound::new(limits(20, 0));
        for i in 0..total {
            let d = delivery((i % 251) as u8, QoS::AtLeastOnce);
            assert_eq!(out.push(d, Link::Offline, now()), Pushed::Queued);
        }
        let mut in_flight: Vec<PacketId> = out
            .resume(now())
            .into_iter()
            .map(|p| match p {
                Packet::Publish(p) => p.packet_id.unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        let mut delivered = 0;
        while let Some(next) = in_flight.first().copied() {
            in_flight.remove(0);
            delivered += 1;
            for p in out.on_puback(next, now()).unwrap() {
                let new = p.packet_id.unwrap();
                assert!(
                    !in_flight.contains(&new),
                    "identifier {new} reused while in flight"
                );
                in_flight.push(new);
            }
        }
        assert_eq!(delivered, total);
        assert_eq!(out.dropped(), 0);
    }

    #[test]
    fn receive_maximum_narrows_the_window() {
        let mut out = Outbound::new(limits(10, 10));
        out.set_receive_maximum(Some(1));
        sent(out.push(delivery(1, QoS::AtLeastOnce), ONLINE, now()));
        assert_eq!(
            out.push(delivery(2, QoS::AtLeastOnce), ONLINE, now()),
            Pushed::Queued
        );
    }

    #[test]
    fn inflight_bytes_limit_keeps_one_message_moving() {
        let mut out = Outbound::new(OutboundLimits {
            max_inflight_bytes: 15,
            ..limits(10, 10)
        });
        sent(out.push(delivery(1, QoS::AtLeastOnce), ONLINE, now()));
        assert_eq!(
            out.push(delivery(2, QoS::AtLeastOnce), ONLINE, now()),
            Pushed::Queued
        );
        assert_eq!(out.on_puback(id(1), now()).unwrap().len(), 1);
    }
}
