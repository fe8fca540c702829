//! QoS 2 messages received from one client: exactly-once delivery to subscribers.
//!
//! The broker uses the spec's method B (MQTT 5.0 figure 4.3, 3.1.1 figure 4.3): it routes a QoS 2
//! message when its PUBLISH first arrives, answers PUBREC, and keeps the Packet Identifier until
//! PUBREL. A PUBLISH that arrives again under an identifier still waiting for PUBREL is the same
//! message resent (DUP or not): it is answered with PUBREC and not routed a second time
//! [MQTT-4.3.3-9] (3.1.1: [MQTT-4.3.3-2]).

use std::collections::BTreeSet;

use pigeon_proto::PacketId;

/// Identifiers of QoS 2 messages received and acknowledged with PUBREC, waiting for PUBREL.
#[derive(Debug, Default, Clone)]
pub struct Inbound {
    /// A `BTreeSet`: half the size of a `HashSet` in every session.
    awaiting_pubrel: BTreeSet<PacketId>,
    /// Identifiers released since the store last looked; `None` when nothing is stored.
    #[expect(
        clippy::box_collection,
        reason = "one pointer rather than a Vec in every session's (and idle connection's) state"
    )]
    released: Option<Box<Vec<PacketId>>>,
}

impl Inbound {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// A QoS 2 PUBLISH arrived under `id`. Returns `true` when the message is new and must be
    /// routed, `false` when it repeats one still waiting for PUBREL. Either way the answer is
    /// PUBREC.
    pub fn on_publish(&mut self, id: PacketId) -> bool {
        self.awaiting_pubrel.insert(id)
    }

    /// A PUBREL arrived under `id`; the identifier is free again. Returns whether it was known:
    /// the answer is PUBCOMP either way (in MQTT 5.0 with 0x92 Packet Identifier not found when
    /// it was not).
    pub fn on_pubrel(&mut self, id: PacketId) -> bool {
        let known = self.awaiting_pubrel.remove(&id);
        if known && let Some(released) = &mut self.released {
            released.push(id);
        }
        known
    }

    /// Starts (or stops) noting released identifiers for the store to record.
    pub fn set_journal(&mut self, on: bool) {
        if on != self.released.is_some() {
            self.released = on.then(Box::default);
        }
    }

    /// Takes the identifiers released since the last call.
    pub fn take_released(&mut self) -> Vec<PacketId> {
        self.released
            .as_mut()
            .map(|released| std::mem::take(&mut **released))
            .unwrap_or_default()
    }

    /// Identifiers waiting for PUBREL, in no particular order.
    pub fn ids(&self) -> impl Iterator<Item = PacketId> + '_ {
        self.awaiting_pubrel.iter().copied()
    }

    /// Whether `id` waits for PUBREL.
    pub fn contains(&self, id: PacketId) -> bool {
        self.awaiting_pubrel.contains(&id)
    }

    /// Identifiers waiting for PUBREL; they count against the broker's Receive Maximum.
    pub fn len(&self) -> usize {
        self.awaiting_pubrel.len()
    }

    /// Whether nothing waits for PUBREL.
    pub fn is_empty(&self) -> bool {
        self.awaiting_pubrel.is_empty()
    }

    /// Forgets everything (the session ended).
    pub fn clear(&mut self) {
        self.awaiting_pubrel.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    // [MQTT-4.3.3-9]: a PUBLISH resent before PUBREL is not delivered again.
    #[test]
    fn resent_publish_before_pubrel_is_not_routed_twice() {
        let mut inbound = Inbound::new();
        assert!(inbound.on_publish(id(7)));
        assert!(!inbound.on_publish(id(7)));
        assert_eq!(inbound.len(), 1);
        assert!(inbound.on_pubrel(id(7)));
        // After PUBREL the identifier may carry a new message.
        assert!(inbound.on_publish(id(7)));
    }

    #[test]
    fn unknown_pubrel_is_reported() {
        let mut inbound = Inbound::new();
        assert!(!inbound.on_pubrel(id(3)));
        assert!(inbound.is_empty());
    }
}
