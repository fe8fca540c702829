//! The subscription index: a trie on topic levels.

use std::hash::Hash;

use foldhash::HashMap;

/// A trie of topic filters, each holding the subscribers of that filter.
///
/// `K` identifies a subscriber (a client, a shared-subscription group); each `(filter, K)` pair
/// holds one `V` (the subscription's options). Filters must be valid MQTT topic filters without
/// a `$share/` prefix; shared subscriptions are grouped by the caller.
///
/// Matching follows MQTT section 4.7: `+` matches exactly one level (which may be empty), `#`
/// matches the parent level and any number of levels below it, and topics starting with `$`
/// are not matched by filters whose first level is a wildcard [MQTT-4.7.2-1].
#[derive(Debug)]
pub struct SubscriptionTree<K, V> {
    root: Node<K, V>,
    len: usize,
}

#[derive(Debug)]
struct Node<K, V> {
    /// Children for literal levels.
    children: HashMap<Box<str>, Node<K, V>>,
    /// The `+` child.
    plus: Option<Box<Node<K, V>>>,
    /// Subscribers of the filter that ends with `#` below this node.
    multi: Vec<(K, V)>,
    /// Subscribers of the filter that ends at this node.
    exact: Vec<(K, V)>,
}

impl<K, V> Default for Node<K, V> {
    fn default() -> Self {
        Node {
            children: HashMap::default(),
            plus: None,
            multi: Vec::new(),
            exact: Vec::new(),
        }
    }
}

impl<K, V> Node<K, V> {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.multi.is_empty()
            && self.exact.is_empty()
    }
}

impl<K: Eq + Hash + Clone, V> Default for SubscriptionTree<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Eq + Hash + Clone, V> SubscriptionTree<K, V> {
    /// An empty tree.
    pub fn new() -> Self {
        SubscriptionTree {
            root: Node::default(),
            len: 0,
        }
    }

    /// The number of `(filter, subscriber)` pairs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the tree holds no subscription.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `key`'s subscription to `filter`, or replaces its value if it exists; returns the
    /// value replaced.
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        let mut node = &mut self.root;
        let mut levels = filter.split('/').peekable();
        let mut multi = false;
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                multi = true;
                break;
            }
            node = if level == "+" {
                node.plus.get_or_insert_with(Box::default)
            } else {
                node.children.entry(level.into()).or_default()
            };
        }
        let subs = if multi {
            &mut node.multi
        } else {
            &mut node.exact
        };
        let old = upsert(subs, key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes `key`'s subscription to `filter`; returns its value if it existed. Branches
    /// left empty are pruned, so the tree's size follows the live subscriptions.
    pub fn remove(&mut self, filter: &str, key: &K) -> Option<V> {
        let levels: Vec<&str> = filter.split('/').collect();
        let removed = remove_rec(&mut self.root, &levels, key);
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    /// Calls `f` for every subscription matching `topic`: once per matching `(filter, key)`.
    /// The same key may be reported several times when several of its filters match.
    pub fn for_each_match(&self, topic: &str, mut f: impl FnMut(&K, &V)) {
        // [MQTT-4.7.2-1]: wildcards in the first level do not match `$` topics.
        let system = topic.starts_with('$');
        let mut levels = topic.split('/');
        let Some(first) = levels.next() else {
            return;
        };
        if !system {
            for (k, v) in &self.root.multi {
                f(k, v);
            }
            if let Some(plus) = &self.root.plus {
                match_rec(plus, levels.clone(), &mut f);
            }
        }
        if let Some(child) = self.root.children.get(first) {
            match_rec(child, levels, &mut f);
        }
    }
}

fn upsert<K: Eq, V>(subs: &mut Vec<(K, V)>, key: K, value: V) -> Option<V> {
    match subs.iter_mut().find(|(k, _)| *k == key) {
        Some((_, v)) => Some(std::mem::replace(v, value)),
        None => {
            subs.push((key, value));
            None
        }
    }
}

fn take<K: Eq, V>(subs: &mut Vec<(K, V)>, key: &K) -> Option<V> {
    let i = subs.iter().position(|(k, _)| k == key)?;
    Some(subs.swap_remove(i).1)
}

fn remove_rec<K: Eq, V>(node: &mut Node<K, V>, levels: &[&str], key: &K) -> Option<V> {
    let Some((&level, rest)) = levels.split_first() else {
        return take(&mut node.exact, key);
    };
    if level == "#" && rest.is_empty() {
        return take(&mut node.multi, key);
    }
    if level == "+" {
        let child = node.plus.as_deref_mut()?;
        let removed = remove_rec(child, rest, key);
        if child.is_empty() {
            node.plus = None;
        }
        removed
    } else {
        let child = node.children.get_mut(level)?;
        let removed = remove_rec(child, rest, key);
        if child.is_empty() {
            node.children.remove(level);
        }
        removed
    }
}

/// Matches the levels after the one that led to `node`.
fn match_rec<'t, K, V>(
    node: &Node<K, V>,
    mut levels: impl Iterator<Item = &'t str> + Clone,
    f: &mut impl FnMut(&K, &V),
) {
    // `#` below this node matches this level and everything under it ("a/#" matches "a").
    for (k, v) in &node.multi {
        f(k, v);
    }
    let Some(level) = levels.next() else {
        for (k, v) in &node.exact {
            f(k, v);
        }
        return;
    };
    if let Some(plus) = &node.plus {
        match_rec(plus, levels.clone(), f);
    }
    if let Some(child) = node.children.get(level) {
        match_rec(child, levels, f);
    }
}

/// A read-only walk, for the HTTP API (`broker/inspect.rs`); apart so that it stays out of the
/// way of the matching code.
impl<K, V> SubscriptionTree<K, V> {
    /// Calls `f` with every subscription: its filter (as subscribed, without any `$share/`
    /// prefix the caller strips), key and value. The order is unspecified.
    pub fn for_each(&self, mut f: impl FnMut(&str, &K, &V)) {
        let mut path = String::new();
        walk(&self.root, &mut path, true, &mut f);
    }
}

fn walk<K, V>(node: &Node<K, V>, path: &mut String, root: bool, f: &mut impl FnMut(&str, &K, &V)) {
    for (k, v) in &node.exact {
        f(path, k, v);
    }
    if !node.multi.is_empty() {
        let filter = if root {
            "#".to_owned()
        } else {
            format!("{path}/#")
        };
        for (k, v) in &node.multi {
            f(&filter, k, v);
        }
    }
    let children = node
        .children
        .iter()
        .map(|(level, child)| (&**level, child))
        .chain(node.plus.as_deref().map(|child| ("+", child)));
    for (level, child) in children {
        let len = path.len();
        if !root {
            path.push('/');
        }
        path.push_str(level);
        walk(child, path, false, f);
        path.truncate(len);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn matching(
        tree: &SubscriptionTree<u32, &'static str>,
        topic: &str,
    ) -> Vec<(u32, &'static str)> {
        let mut out = Vec::new();
        tree.for_each_match(topic, |k, v| out.push((*k, *v)));
        out.sort_unstable();
        out
    }

    fn tree_of(filters: &[&'static str]) -> SubscriptionTree<u32, &'static str> {
        let mut tree = SubscriptionTree::new();
        for (i, f) in filters.iter().enumerate() {
            tree.insert(f, i as u32, *f);
        }
        tree
    }

    // The examples of MQTT 5.0 sections 4.7.1.2, 4.7.1.3 and 4.7.2.
    #[test]
    fn spec_examples() {
        let tree = tree_of(&[
            "sport/tennis/player1/#",
            "sport/#",
            "sport/tennis/#",
            "sport/tennis/+",
            "+/+",
            "/+",
            "+",
            "#",
            "+/monitor/Clients",
            "$SYS/#",
            "$SYS/monitor/+",
        ]);
        let cases: &[(&str, &[&str])] = &[
            (
                "sport/tennis/player1",
                &[
                    "#",
                    "sport/#",
                    "sport/tennis/#",
                    "sport/tennis/+",
                    "sport/tennis/player1/#",
                ],
            ),
            (
                "sport/tennis/player1/ranking",
                &["#", "sport/#", "sport/tennis/#", "sport/tennis/player1/#"],
            ),
            ("sport", &["#", "+", "sport/#"]),
            ("sport/", &["#", "+/+", "sport/#"]),
            ("/finance", &["#", "+/+", "/+"]),
            // [MQTT-4.7.2-1]: "#" and "+/monitor/Clients" do not match "$SYS" topics.
            ("$SYS/monitor/Clients", &["$SYS/#", "$SYS/monitor/+"]),
            ("$SYS", &["$SYS/#"]),
        ];
        for (topic, expected) in cases {
            let mut got: Vec<&str> = matching(&tree, topic).into_iter().map(|(_, f)| f).collect();
            got.sort_unstable();
            let mut expected = expected.to_vec();
            expected.sort_unstable();
            assert_eq!(got, expected, "topic {topic:?}");
        }
    }

    #[test]
    fn insert_replaces_and_remove_prunes() {
        let mut tree = SubscriptionTree::new();
        assert_eq!(tree.insert("a/+/c", 1, "x"), None);
        assert_eq!(tree.insert("a/+/c", 1, "y"), Some("x"));
        assert_eq!(tree.insert("a/#", 2, "z"), None);
        assert_eq!(tree.len(), 2);
        assert_eq!(matching(&tree, "a/b/c"), vec![(1, "y"), (2, "z")]);
        assert_eq!(tree.remove("a/+/c", &2), None);
        assert_eq!(tree.remove("a/+/c", &1), Some("y"));
        assert_eq!(tree.remove("a/#", &2), Some("z"));
        assert!(tree.is_empty());
        assert!(tree.root.is_empty(), "empty branches are pruned");
    }

    /// The reference: split both on '/', compare level by level.
    fn naive(filter: &str, topic: &str) -> bool {
        let f: Vec<&str> = filter.split('/').collect();
        let t: Vec<&str> = topic.split('/').collect();
        if topic.starts_with('$') && (f[0] == "+" || f[0] == "#") {
            return false;
        }
        let mut i = 0;
        loop {
            match (f.get(i), t.get(i)) {
                (Some(&"#"), _) => return true,
                (Some(&"+"), Some(_)) => {}
                (Some(a), Some(b)) if a == b => {}
                (None, None) => return true,
                _ => return false,
            }
            i += 1;
        }
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just(String::new()),
            Just("$s".to_string()),
        ]
    }

    fn filter() -> impl Strategy<Value = String> {
        let lvl = prop_oneof![3 => level(), 1 => Just("+".to_string())];
        (prop::collection::vec(lvl, 1..5), any::<bool>()).prop_map(|(mut levels, hash)| {
            if hash {
                levels.push("#".to_string());
            }
            levels.join("/")
        })
    }

    fn topic() -> impl Strategy<Value = String> {
        prop::collection::vec(level(), 1..6).prop_map(|l| l.join("/"))
    }

    proptest! {
        #[test]
        fn agrees_with_naive_matcher(
            filters in prop::collection::vec(filter(), 0..24),
            topics in prop::collection::vec(topic(), 1..8),
        ) {
            let mut tree = SubscriptionTree::new();
            for (i, f) in filters.iter().enumerate() {
                tree.insert(f, i, ());
            }
            for t in &topics {
                let mut got = Vec::new();
                tree.for_each_match(t, |k, ()| got.push(*k));
                got.sort_unstable();
                let expected: Vec<usize> = filters
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| naive(f, t))
                    .map(|(i, _)| i)
                    .collect();
                prop_assert_eq!(got, expected, "topic {:?} filters {:?}", t, filters);
            }
            // Removing everything leaves an empty, pruned tree.
            for (i, f) in filters.iter().enumerate() {
                prop_assert!(tree.remove(f, &i).is_some());
            }
            prop_assert!(tree.is_empty());
            prop_assert!(tree.root.is_empty());
        }
    }

    #[test]
    fn for_each_gives_back_every_filter() {
        let mut tree = SubscriptionTree::new();
        let filters = ["#", "a", "a/#", "/a", "/#", "+/b/+", "a//c", "$SYS/#", "+"];
        for (i, f) in filters.iter().enumerate() {
            tree.insert(f, i, ());
        }
        let mut seen = Vec::new();
        tree.for_each(|f, k, ()| seen.push((f.to_owned(), *k)));
        seen.sort_by_key(|(_, k)| *k);
        let expected: Vec<(String, usize)> = filters
            .iter()
            .enumerate()
            .map(|(i, f)| ((*f).to_owned(), i))
            .collect();
        assert_eq!(seen, expected);
    }
}
