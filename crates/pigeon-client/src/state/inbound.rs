//! Messages from the server: QoS 2 delivered exactly once, and MQTT 5.0 Topic Aliases.
//!
//! QoS 2 follows the spec's method B (MQTT 5.0 figure 4.3, 3.1.1 figure 4.3): a message is
//! delivered to the application when its PUBLISH first arrives, answered with PUBREC, and its
//! Packet Identifier is held until PUBREL. A PUBLISH that arrives again under a held identifier
//! is the same message resent (DUP or not, on this connection or a resumed one): it gets
//! PUBREC again and is not delivered a second time [MQTT-4.3.3-9] (3.1.1: [MQTT-4.3.3-2]).
//!
//! Topic Aliases: a PUBLISH with a topic and an alias sets the mapping, one with an empty topic
//! and an alias uses it (section 3.3.2.3.4). Mappings last for one network connection
//! [MQTT-3.3.2-7]; the held QoS 2 identifiers last for the session.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU16;

use pigeon_proto::{PacketId, Publish, ReasonCode, TopicName};

use super::Violation;

#[derive(Debug, Default)]
pub(super) struct Inbound {
    /// QoS 2 messages delivered and answered with PUBREC, waiting for PUBREL.
    awaiting_pubrel: HashSet<PacketId>,
    /// Topic Alias mappings of the current connection.
    aliases: HashMap<NonZeroU16, TopicName>,
}

impl Inbound {
    /// Whether a QoS 2 message under `id` was delivered and waits for PUBREL.
    pub(super) fn is_held(&self, id: PacketId) -> bool {
        self.awaiting_pubrel.contains(&id)
    }

    /// QoS 2 identifiers held; they count against the Receive Maximum the client sent.
    pub(super) fn held_len(&self) -> usize {
        self.awaiting_pubrel.len()
    }

    /// Holds `id` until PUBREL.
    pub(super) fn hold(&mut self, id: PacketId) {
        self.awaiting_pubrel.insert(id);
    }

    /// A PUBREL: the identifier is free again. Returns whether it was held.
    pub(super) fn release(&mut self, id: PacketId) -> bool {
        self.awaiting_pubrel.remove(&id)
    }

    /// Forgets the session's QoS 2 state (Clean Start, or the server had no session).
    pub(super) fn discard_session(&mut self) {
        self.awaiting_pubrel.clear();
    }

    /// A new network connection: Topic Alias mappings do not carry over [MQTT-3.3.2-7].
    pub(super) fn new_connection(&mut self) {
        self.aliases.clear();
    }

    /// Resolves the Topic Alias of an MQTT 5.0 PUBLISH, given the Topic Alias Maximum the
    /// client sent in CONNECT (0 when it sent none). On success the PUBLISH carries its full
    /// topic and no alias.
    pub(super) fn resolve_alias(
        &mut self,
        publish: &mut Publish,
        maximum: u16,
    ) -> Result<(), Violation> {
        let Some(alias) = publish.properties.topic_alias.take() else {
            return Ok(());
        };
        // The server may not use an alias above the maximum the client sent [MQTT-3.3.2-11].
        if alias.get() > maximum {
            return Err(Violation {
                reason: ReasonCode::TOPIC_ALIAS_INVALID,
                rule: Some("MQTT-3.3.2-11"),
                what: "topic alias above the maximum sent in CONNECT",
            });
        }
        if publish.topic.is_empty() {
            match self.aliases.get(&alias) {
                Some(topic) => publish.topic = topic.clone(),
                None => {
                    return Err(Violation {
                        reason: ReasonCode::PROTOCOL_ERROR,
                        rule: None,
                        what: "topic alias used before it was set (section 3.3.2.3.4)",
                    });
                }
            }
        } else {
            self.aliases.insert(alias, publish.topic.clone());
        }
        Ok(())
    }
}
