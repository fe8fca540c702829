//! Routing: which subscriptions a PUBLISH reaches, and which retained messages a new
//! subscription receives.
//!
//! [`SubscriptionTree`] is the index: a trie on topic levels with `+` and `#` nodes, so that
//! matching a topic costs O(levels x matching branches), never O(subscriptions).
//! [`RetainedStore`] is the mirror image: a trie of topics walked by a filter.

mod retained;
mod tree;

pub use self::retained::{RetainSource, RetainedStore};
pub use self::tree::SubscriptionTree;
