//! The retained-message store: a trie on topic levels, one message per topic.

use std::sync::Arc;

use bytes::Bytes;
use foldhash::HashMap;

use crate::message::Message;

/// Retained messages, one per topic [MQTT-3.3.1-5], indexed by topic level so that a new
/// subscription visits only the branches its filter can match.
#[derive(Debug, Default)]
pub struct RetainedStore {
    root: Node,
    len: usize,
    bytes: usize,
}

/// Who published a retained message, kept with it for `check_retain_source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainSource {
    /// The publisher's username, if any.
    pub username: Option<String>,
    /// The publisher's client identifier.
    pub client_id: String,
}

#[derive(Debug, Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    message: Option<Arc<Message>>,
    source: Option<Arc<RetainSource>>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.message.is_none()
    }
}

impl RetainedStore {
    /// Retained messages stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no message is retained.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Payload bytes held by the store.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Stores `message` as the retained message of its topic, replacing any previous one; a
    /// message with an empty payload instead clears the topic [MQTT-3.3.1-10] and is not
    /// stored [MQTT-3.3.1-11]. Returns the message it replaced or removed.
    pub fn insert(&mut self, message: Arc<Message>) -> Option<Arc<Message>> {
        self.insert_from(message, None)
    }

    /// As [`insert`](Self::insert), remembering who published the message.
    pub fn insert_from(
        &mut self,
        message: Arc<Message>,
        source: Option<RetainSource>,
    ) -> Option<Arc<Message>> {
        if message.payload.is_empty() {
            return self.remove(message.topic.as_str());
        }
        // Stored for long: a copy of its own rather than a slice that pins the publisher's
        // read buffer (MQTT 5.0 properties still share it).
        let message = Arc::new(Message {
            topic: message.topic.detach(),
            payload: Bytes::copy_from_slice(&message.payload),
            ..Message::clone(&message)
        });
        let mut node = &mut self.root;
        for level in message.topic.as_str().split('/') {
            node = node.children.entry(level.into()).or_default();
        }
        self.bytes += message.size();
        node.source = source.map(Arc::new);
        let old = node.message.replace(message);
        match &old {
            Some(old) => self.bytes -= old.size(),
            None => self.len += 1,
        }
        old
    }

    /// Removes the retained message of `topic`; returns it.
    pub fn remove(&mut self, topic: &str) -> Option<Arc<Message>> {
        fn remove_in(node: &mut Node, levels: &[&str]) -> Option<Arc<Message>> {
            let Some((first, rest)) = levels.split_first() else {
                node.source = None;
                return node.message.take();
            };
            let child = node.children.get_mut(*first)?;
            let removed = remove_in(child, rest);
            if child.is_empty() {
                node.children.remove(*first);
            }
            removed
        }
        let levels: Vec<&str> = topic.split('/').collect();
        let removed = remove_in(&mut self.root, &levels)?;
        self.len -= 1;
        self.bytes -= removed.size();
        Some(removed)
    }

    /// The retained message of `topic`.
    pub fn get(&self, topic: &str) -> Option<&Arc<Message>> {
        let mut node = &self.root;
        for level in topic.split('/') {
            node = node.children.get(level)?;
        }
        node.message.as_ref()
    }

    /// Calls `f` with every retained message whose topic `filter` matches (a valid topic
    /// filter without a `$share/` prefix). Filters starting with a wildcard do not match
    /// topics starting with `$` [MQTT-4.7.2-1].
    pub fn for_each_match(&self, filter: &str, mut f: impl FnMut(&Arc<Message>)) {
        self.for_each_match_with_source(filter, |message, _| f(message));
    }

    /// As [`for_each_match`](Self::for_each_match), with who published each message (`None`
    /// when the broker did, or when it was stored without a source).
    pub fn for_each_match_with_source(
        &self,
        filter: &str,
        mut f: impl FnMut(&Arc<Message>, Option<&RetainSource>),
    ) {
        let levels: Vec<&str> = filter.split('/').collect();
        walk(&self.root, &levels, true, &mut f);
    }
}

type Visit<'a> = dyn FnMut(&Arc<Message>, Option<&RetainSource>) + 'a;

fn visit(node: &Node, f: &mut Visit<'_>) {
    if let Some(message) = &node.message {
        f(message, node.source.as_deref());
    }
}

fn walk(node: &Node, levels: &[&str], top: bool, f: &mut Visit<'_>) {
    let Some((first, rest)) = levels.split_first() else {
        visit(node, f);
        return;
    };
    match *first {
        "#" => {
            // `#` matches the parent level too [MQTT-4.7.1-2]: "a/#" matches "a".
            if !top {
                visit(node, f);
            }
            for (name, child) in &node.children {
                if top && name.starts_with('$') {
                    continue;
                }
                every(child, f);
            }
        }
        "+" => {
            for (name, child) in &node.children {
                if top && name.starts_with('$') {
                    continue;
                }
                walk(child, rest, false, f);
            }
        }
        literal => {
            if let Some(child) = node.children.get(literal) {
                walk(child, rest, false, f);
            }
        }
    }
}

fn every(node: &Node, f: &mut Visit<'_>) {
    visit(node, f);
    for child in node.children.values() {
        every(child, f);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use pigeon_proto::{MqttString, QoS, TopicName, matches};
    use proptest::prelude::*;

    use super::*;

    fn message(topic: &str, payload: &'static [u8]) -> Arc<Message> {
        Arc::new(Message::new(
            TopicName::from_string(MqttString::try_from(topic).expect("valid string"))
                .expect("valid topic"),
            Bytes::from_static(payload),
            QoS::AtMostOnce,
            true,
        ))
    }

    fn matching(store: &RetainedStore, filter: &str) -> Vec<String> {
        let mut out = Vec::new();
        store.for_each_match(filter, |m| out.push(m.topic.as_str().to_owned()));
        out.sort();
        out
    }

    #[test]
    fn one_message_per_topic_and_empty_payload_clears() {
        let mut store = RetainedStore::default();
        assert!(store.insert(message("a/b", b"1")).is_none());
        let old = store.insert(message("a/b", b"22")).expect("replaced");
        assert_eq!(old.payload, Bytes::from_static(b"1"));
        assert_eq!((store.len(), store.bytes()), (1, 2));
        // [MQTT-3.3.1-10]: a zero-byte retained message removes the retained message.
        assert!(store.insert(message("a/b", b"")).is_some());
        assert_eq!((store.len(), store.bytes()), (0, 0));
        assert!(store.get("a/b").is_none());
        assert!(store.root.is_empty(), "empty branches are pruned");
        // Clearing a topic that holds nothing is a no-op.
        assert!(store.insert(message("x", b"")).is_none());
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn wildcards_and_dollar_topics() {
        let mut store = RetainedStore::default();
        for t in ["a", "a/b", "a/b/c", "a//c", "/a", "$SYS/x", "b"] {
            store.insert(message(t, b"p"));
        }
        assert_eq!(matching(&store, "a/#"), ["a", "a//c", "a/b", "a/b/c"]);
        assert_eq!(matching(&store, "a/+"), ["a/b"]);
        assert_eq!(matching(&store, "a/+/c"), ["a//c", "a/b/c"]);
        assert_eq!(matching(&store, "+/a"), ["/a"]);
        assert_eq!(matching(&store, "+"), ["a", "b"]);
        // [MQTT-4.7.2-1]: wildcards at the first level do not match `$` topics.
        assert_eq!(
            matching(&store, "#"),
            ["/a", "a", "a//c", "a/b", "a/b/c", "b"]
        );
        assert_eq!(matching(&store, "$SYS/#"), ["$SYS/x"]);
        assert_eq!(matching(&store, "a/b"), ["a/b"]);
    }

    proptest! {
        #[test]
        fn agrees_with_the_reference_matcher(
            topics in proptest::collection::vec("[ab$]{0,2}(/[ab]{0,2}){0,3}", 0..12),
            filter in "([ab+]{0,1}|[ab]{2})(/([ab+]{0,1}|[ab]{2})){0,3}(/#)?|#",
        ) {
            let mut store = RetainedStore::default();
            let mut expected = Vec::new();
            for t in &topics {
                if t.is_empty() || store.get(t).is_some() {
                    continue;
                }
                store.insert(message(t, b"p"));
                if matches(&filter, t) {
                    expected.push(t.clone());
                }
            }
            expected.sort();
            prop_assert_eq!(matching(&store, &filter), expected);
        }
    }
}
