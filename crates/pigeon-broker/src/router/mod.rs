//! Routing: which subscriptions a PUBLISH reaches.
//!
//! [`SubscriptionTree`] is the index: a trie on topic levels with `+` and `#` nodes, so that
//! matching a topic costs O(levels x matching branches), never O(subscriptions).

mod tree;

pub use self::tree::SubscriptionTree;
