//! Mosquitto access control lists, as `acl_file` names them.
//!
//! # The format
//!
//! One rule per line; blank lines and lines starting with `#` are skipped, and white space
//! around a line is ignored.
//!
//! - `topic [read|write|readwrite|deny] FILTER`: a rule for the clients of the current
//!   section. Without an access word the rule grants `readwrite` and the filter is the next
//!   word; with one, the filter is the rest of the line (so it may contain spaces).
//! - `user NAME`: the rules that follow, up to the next `user` line, are NAME's. The `topic`
//!   lines before the first `user` line are the anonymous clients' (those without a username).
//! - `pattern [read|write|readwrite|deny] FILTER`: a rule for every client, wherever it appears,
//!   with `%c` replaced by the client identifier and `%u` by the username. A pattern with `%u`
//!   does not apply to anonymous clients.
//!
//! FILTER is a topic filter: `+` and `#` as in subscriptions.
//!
//! # How a topic is checked ([`Acl::check`])
//!
//! As Mosquitto 2.0 checks it:
//!
//! 1. The rules of the client's section (the anonymous section for a client without a username,
//!    none for a username without a `user` section): a `deny` rule that matches the topic
//!    denies it; otherwise a rule that matches and grants the access allows it. `deny` rules
//!    are looked at first, wherever they are in the section.
//! 2. Then the patterns, the same way, after substitution. Before them, a client whose
//!    username or client identifier contains `+` or `#` is denied (it could otherwise reach
//!    other clients' topics through `%u` or `%c`).
//! 3. Nothing matched: denied.
//!
//! A wildcard at the start of a rule does not match a topic starting with `$` (as in
//! subscriptions), so `$SYS/...` is readable only through a rule that starts with `$SYS`.
//! Writing to `$SYS` and `$share` is refused to every client whatever the rules say: see
//! [`reserved_for_writing`].

use std::collections::HashMap;
use std::fmt;

/// What a client wants to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Receive messages published to it.
    Read,
    /// Publish to it.
    Write,
}

impl Access {
    fn bit(self) -> u8 {
        match self {
            Access::Read => READ,
            Access::Write => WRITE,
        }
    }
}

const READ: u8 = 1;
const WRITE: u8 = 2;

/// What [`Acl::check`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Access granted.
    Allowed,
    /// No rule grants it, or a `deny` rule refuses it.
    Denied,
    /// Refused because the username contains `+` or `#` and patterns are in use (Mosquitto
    /// logs "ACL denying access to client with dangerous username").
    DangerousUsername,
    /// Refused because the client identifier contains `+` or `#` and patterns are in use.
    DangerousClientId,
}

impl Verdict {
    /// Whether access is granted.
    pub fn is_allowed(self) -> bool {
        self == Verdict::Allowed
    }
}

/// Whether clients may never publish to `topic`, ACL or not: `$SYS` (the broker's own
/// topics), `$share` (not a topic name but a subscription prefix) and `$CONTROL` (Mosquitto
/// 2.0 keeps it for its control plugins and forwards nothing published there), as in
/// Mosquitto 2.0.
pub fn reserved_for_writing(topic: &str) -> bool {
    topic.starts_with("$SYS") || topic.starts_with("$share") || topic.starts_with("$CONTROL")
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// [`READ`] | [`WRITE`]; 0 for `deny`.
    access: u8,
    filter: String,
}

/// The rules of one section, `deny` rules first (each group in file order).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Rules(Vec<Rule>);

impl Rules {
    fn push(&mut self, rule: Rule) {
        if rule.access == 0 {
            let at = self
                .0
                .iter()
                .position(|r| r.access != 0)
                .unwrap_or(self.0.len());
            self.0.insert(at, rule);
        } else {
            self.0.push(rule);
        }
    }
}

/// Why an ACL file cannot be used: the line and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} (line {line})")]
pub struct AclError {
    /// The line, counted from 1.
    pub line: usize,
    /// What is wrong.
    pub kind: AclErrorKind,
}

/// What is wrong with a line of an ACL file (Mosquitto's wording, without the file name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AclErrorKind {
    /// `topic` or `pattern` without a filter.
    #[error("Empty topic")]
    EmptyTopic,
    /// `user` without a name.
    #[error("Missing username")]
    MissingUsername,
    /// An access word other than `read`, `write`, `readwrite` and `deny`.
    #[error("Invalid topic access type \"{0}\"")]
    AccessType(String),
    /// A filter with a misplaced wildcard.
    #[error("Invalid ACL topic \"{0}\"")]
    InvalidTopic(String),
    /// A line that is none of `topic`, `pattern`, `user`.
    #[error("Invalid line: {0}")]
    InvalidLine(String),
    /// The line is not valid UTF-8.
    #[error("Invalid UTF-8")]
    NotUtf8,
}

/// A parsed ACL file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Acl {
    anonymous: Rules,
    users: HashMap<String, Rules>,
    patterns: Rules,
    warnings: Vec<String>,
}

impl fmt::Display for Acl {
    /// A summary: how many sections and patterns.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} anonymous rules, {} users, {} patterns",
            self.anonymous.0.len(),
            self.users.len(),
            self.patterns.0.len()
        )
    }
}

/// Whether `filter` is a topic filter: not empty, `+` and `#` alone in their level, `#` last.
fn valid_filter(filter: &str) -> bool {
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let wild = level.contains(['+', '#']);
        if wild && level != "+" && level != "#" {
            return false;
        }
        if level == "#" && levels.peek().is_some() {
            return false;
        }
    }
    !filter.is_empty()
}

impl Acl {
    /// Parses the text of an ACL file.
    ///
    /// # Errors
    /// The first line Mosquitto would refuse the file over.
    pub fn parse(text: &str) -> Result<Acl, AclError> {
        Acl::parse_bytes(text.as_bytes())
    }

    /// Parses an ACL file's bytes.
    ///
    /// # Errors
    /// The first line Mosquitto would refuse the file over.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Acl, AclError> {
        let mut acl = Acl::default();
        // `None`: the anonymous section.
        let mut user: Option<String> = None;
        for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let line = index + 1;
            let err = |kind| AclError { line, kind };
            let text = std::str::from_utf8(raw).map_err(|_| err(AclErrorKind::NotUtf8))?;
            let text = text.trim();
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            let (keyword, rest) = text
                .split_once(char::is_whitespace)
                .map_or((text, ""), |(k, r)| (k, r.trim_start()));
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err(err(AclErrorKind::MissingUsername));
                    }
                    acl.users.entry(rest.to_owned()).or_default();
                    user = Some(rest.to_owned());
                }
                "topic" | "pattern" => {
                    let rule = parse_rule(rest).map_err(err)?;
                    if keyword == "pattern" {
                        if !rule.filter.contains("%c") && !rule.filter.contains("%u") {
                            acl.warnings.push(format!(
                                "Warning: ACL pattern '{}' does not contain '%c' or '%u'.",
                                rule.filter
                            ));
                        }
                        acl.patterns.push(rule);
                    } else {
                        match &user {
                            None => acl.anonymous.push(rule),
                            Some(name) => acl.users.entry(name.clone()).or_default().push(rule),
                        }
                    }
                }
                _ => {
                    let word = keyword.to_owned();
                    return Err(err(AclErrorKind::InvalidLine(word)));
                }
            }
        }
        Ok(acl)
    }

    /// What Mosquitto warns about when it reads the file (patterns without `%c` or `%u`), as
    /// it words the log lines.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Whether the client with `username` (`None`: anonymous) and `client_id` may have
    /// `access` to `topic` (a topic name). See the [module documentation](self).
    pub fn check(
        &self,
        username: Option<&str>,
        client_id: &str,
        topic: &str,
        access: Access,
    ) -> Verdict {
        let section = match username {
            None => Some(&self.anonymous),
            Some(name) => self.users.get(name),
        };
        if let Some(rules) = section {
            for rule in &rules.0 {
                if pigeon_proto::matches(&rule.filter, topic) {
                    if rule.access == 0 {
                        return Verdict::Denied;
                    }
                    if rule.access & access.bit() != 0 {
                        return Verdict::Allowed;
                    }
                }
            }
        }
        if let Some(verdict) = self.dangerous(username, client_id) {
            return verdict;
        }
        for rule in &self.patterns.0 {
            let Some(filter) = substitute(&rule.filter, username, client_id) else {
                continue;
            };
            if pigeon_proto::matches(&filter, topic) {
                if rule.access == 0 {
                    return Verdict::Denied;
                }
                if rule.access & access.bit() != 0 {
                    return Verdict::Allowed;
                }
            }
        }
        Verdict::Denied
    }

    /// Refuses a client whose username or client identifier could widen a pattern, when there
    /// are patterns.
    fn dangerous(&self, username: Option<&str>, client_id: &str) -> Option<Verdict> {
        if self.patterns.0.is_empty() {
            return Some(Verdict::Denied);
        }
        if username.is_some_and(|u| u.contains(['+', '#'])) {
            return Some(Verdict::DangerousUsername);
        }
        if client_id.contains(['+', '#']) {
            return Some(Verdict::DangerousClientId);
        }
        None
    }

    /// Whether some topic that `filter` (a subscription's topic filter) matches may be
    /// readable by this client: a rule granting read overlaps it and no `deny` rule of the
    /// same or an earlier step covers the whole of it. (`acl_subscribe_check`: a filter this
    /// refuses would never deliver anything.) Denials narrower than the filter are not
    /// weighed: a filter they leave nothing of is still accepted.
    pub fn may_read_under(&self, username: Option<&str>, client_id: &str, filter: &str) -> bool {
        let f: Vec<&str> = filter.split('/').collect();
        let section = match username {
            None => Some(&self.anonymous),
            Some(name) => self.users.get(name),
        };
        if let Some(rules) = section {
            for rule in &rules.0 {
                let r: Vec<&str> = rule.filter.split('/').collect();
                if rule.access == 0 && covers(&r, &f) {
                    return false;
                }
                if rule.access & READ != 0 && overlaps(&r, &f) {
                    return true;
                }
            }
        }
        if self.dangerous(username, client_id).is_some() {
            return false;
        }
        for rule in &self.patterns.0 {
            let Some(filter) = substitute(&rule.filter, username, client_id) else {
                continue;
            };
            let r: Vec<&str> = filter.split('/').collect();
            if rule.access == 0 && covers(&r, &f) {
                return false;
            }
            if rule.access & READ != 0 && overlaps(&r, &f) {
                return true;
            }
        }
        false
    }
}

/// `topic`/`pattern`'s arguments: an optional access word and the filter.
fn parse_rule(rest: &str) -> Result<Rule, AclErrorKind> {
    if rest.is_empty() {
        return Err(AclErrorKind::EmptyTopic);
    }
    let (access, filter) = match rest.split_once(char::is_whitespace) {
        None => (READ | WRITE, rest),
        Some((word, filter)) => {
            let access = match word {
                "read" => READ,
                "write" => WRITE,
                "readwrite" => READ | WRITE,
                "deny" => 0,
                other => return Err(AclErrorKind::AccessType(other.to_owned())),
            };
            (access, filter.trim())
        }
    };
    if !valid_filter(filter) {
        return Err(AclErrorKind::InvalidTopic(filter.to_owned()));
    }
    Ok(Rule {
        access,
        filter: filter.to_owned(),
    })
}

/// A pattern with `%c` and `%u` replaced; `None` when it needs a username and the client has
/// none.
fn substitute(pattern: &str, username: Option<&str>, client_id: &str) -> Option<String> {
    if !pattern.contains('%') {
        return Some(pattern.to_owned());
    }
    if pattern.contains("%u") && username.is_none() {
        return None;
    }
    let mut out = String::with_capacity(pattern.len() + client_id.len());
    let mut rest = pattern;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("%c") {
            out.push_str(client_id);
            rest = after;
        } else if let Some(after) = tail.strip_prefix("%u") {
            out.push_str(username.unwrap_or_default());
            rest = after;
        } else {
            out.push('%');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Some(out)
}

/// Whether the first level of a filter is a wildcard, or starts with `$`.
fn first_is(levels: &[&str], wildcard: bool) -> bool {
    levels.first().is_some_and(|l| {
        if wildcard {
            *l == "+" || *l == "#"
        } else {
            l.starts_with('$')
        }
    })
}

/// Whether some topic matches both filters (given as levels).
fn overlaps(a: &[&str], b: &[&str]) -> bool {
    // A wildcard first level matches no topic starting with `$`.
    if (first_is(a, true) && first_is(b, false)) || (first_is(b, true) && first_is(a, false)) {
        return false;
    }
    fn walk(a: &[&str], b: &[&str]) -> bool {
        match (a.split_first(), b.split_first()) {
            (Some((&"#", _)), _) | (_, Some((&"#", _))) | (None, None) => true,
            (None, _) | (_, None) => false,
            (Some((x, a)), Some((y, b))) => (*x == "+" || *y == "+" || x == y) && walk(a, b),
        }
    }
    walk(a, b)
}

/// Whether every topic `inner` matches, `outer` matches too (both given as levels).
fn covers(outer: &[&str], inner: &[&str]) -> bool {
    if first_is(outer, true) && first_is(inner, false) {
        return false;
    }
    fn walk(outer: &[&str], inner: &[&str]) -> bool {
        match (outer.split_first(), inner.split_first()) {
            (Some((&"#", _)), _) => true,
            (_, Some((&"#", _))) => false,
            (None, None) => true,
            (None, _) | (_, None) => false,
            (Some((x, o)), Some((y, i))) => (*x == "+" || (x == y && *y != "+")) && walk(o, i),
        }
    }
    walk(outer, inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_topics_are_never_writable() {
        for topic in [
            "$SYS/broker/uptime",
            "$share/g/t",
            "$CONTROL/dynamic-security/v1",
        ] {
            assert!(reserved_for_writing(topic), "{topic}");
        }
        for topic in ["SYS/x", "a/$SYS", "$control/x", "$sys"] {
            assert!(!reserved_for_writing(topic), "{topic}");
        }
    }

    const FILE: &str = "\
# Anonymous clients
topic read public/#
  topic deny public/secret   
pattern read pu/%u/#

user alice
topic readwrite a/#
topic deny a/secret
topic read $SYS/broker/uptime
topic pd/#
topic read with space/x y

user we+ird
topic #

pattern readwrite pc/%c/#
pattern deny pd/x
pattern readwrite pu/%u/#
pattern write w/%u/%c
";

    fn acl() -> Acl {
        Acl::parse(FILE).unwrap()
    }

    #[test]
    fn the_matrix() {
        use Access::{Read as R, Write as W};
        use Verdict::{
            Allowed as A, DangerousClientId as DC, DangerousUsername as DU, Denied as D,
        };
        let acl = acl();
        #[rustfmt::skip]
        let table: &[(Option<&str>, &str, &str, Access, Verdict)] = &[
            // The anonymous section.
            (None, "c", "public/x", R, A),
            (None, "c", "public/x", W, D),
            (None, "c", "public/secret", R, D),
            (None, "c", "public", R, A),
            // %u patterns skip anonymous clients; %c patterns do not.
            (None, "c", "pu//x", R, D),
            (None, "c", "pc/c/x", W, A),
            (None, "c", "pc/d/x", W, D),
            // A user's own section, deny first.
            (Some("alice"), "c", "a/x", W, A),
            (Some("alice"), "c", "a/secret", R, D),
            (Some("alice"), "c", "public/x", R, D),
            // `topic FILTER` alone grants both.
            (Some("alice"), "c", "pd/y", W, A),
            // The section's grant wins over a pattern's denial...
            (Some("alice"), "c", "pd/x", W, A),
            // ...and patterns apply to users with a section too.
            (Some("alice"), "c", "pu/alice/x", W, A),
            (Some("alice"), "c", "pu/bob/x", W, D),
            (Some("alice"), "me", "w/alice/me", W, A),
            (Some("alice"), "me", "w/alice/me", R, D),
            (Some("alice"), "c", "with space/x y", R, A),
            // $SYS: only through a rule starting with $SYS.
            (Some("alice"), "c", "$SYS/broker/uptime", R, A),
            (Some("alice"), "c", "$SYS/broker/load", R, D),
            (Some("we+ird"), "c", "x", W, A),
            (Some("we+ird"), "c", "$SYS/broker/uptime", R, DU),
            // A user without a section: patterns only.
            (Some("bob"), "c", "pu/bob/q", R, A),
            (Some("bob"), "c", "public/x", R, D),
            (Some("bob"), "c+", "pu/bob/q", R, DC),
            (Some("bob"), "c#", "anything", R, DC),
        ];
        for &(user, client, topic, access, verdict) in table {
            assert_eq!(
                acl.check(user, client, topic, access),
                verdict,
                "{user:?} {client} {topic} {access:?}"
            );
        }
    }

    #[test]
    fn no_patterns_means_no_dangerous_check() {
        let acl = Acl::parse("user a+b\ntopic x\n").unwrap();
        assert_eq!(
            acl.check(Some("a+b"), "c", "x", Access::Read),
            Verdict::Allowed
        );
        assert_eq!(
            acl.check(Some("a+b"), "c", "y", Access::Read),
            Verdict::Denied
        );
        assert_eq!(acl.check(None, "c", "x", Access::Read), Verdict::Denied);
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("topic", 1, AclErrorKind::EmptyTopic),
            ("\npattern", 2, AclErrorKind::EmptyTopic),
            ("user", 1, AclErrorKind::MissingUsername),
            ("foo bar", 1, AclErrorKind::InvalidLine("foo".into())),
            (
                "topic bogus x y",
                1,
                AclErrorKind::AccessType("bogus".into()),
            ),
            (
                "# c\ntopic readwrite a/#/b",
                2,
                AclErrorKind::InvalidTopic("a/#/b".into()),
            ),
            (
                "topic read a/b+",
                1,
                AclErrorKind::InvalidTopic("a/b+".into()),
            ),
        ];
        for (text, line, kind) in cases {
            assert_eq!(Acl::parse(text), Err(AclError { line, kind }), "{text}");
        }
        assert_eq!(
            Acl::parse("topic readwrite a/#/b").unwrap_err().to_string(),
            "Invalid ACL topic \"a/#/b\" (line 1)"
        );
        // One word after `topic` is the filter, even an access word.
        let acl = Acl::parse("topic read\n").unwrap();
        assert!(acl.check(None, "c", "read", Access::Write).is_allowed());
    }

    #[test]
    fn patterns_without_substitution_are_warned_about() {
        assert_eq!(
            acl().warnings(),
            ["Warning: ACL pattern 'pd/x' does not contain '%c' or '%u'."]
        );
    }

    #[test]
    fn substitution() {
        assert_eq!(
            substitute("a/%c/%u", Some("u"), "c").as_deref(),
            Some("a/c/u")
        );
        assert_eq!(substitute("a/%u", None, "c"), None);
        assert_eq!(
            substitute("a/%x/%%c", None, "c").as_deref(),
            Some("a/%x/%c")
        );
    }

    #[test]
    fn readable_under_a_filter() {
        let acl = acl();
        #[rustfmt::skip]
        let table: &[(Option<&str>, &str, bool)] = &[
            (None, "public/#", true),
            (None, "#", true),
            (None, "+/x", true),
            (None, "public/secret", false),
            (None, "private/#", false),
            (None, "$SYS/#", false),
            (Some("alice"), "$SYS/#", true),
            (Some("alice"), "#", true),
            (Some("alice"), "a/secret", false),
            (Some("alice"), "pu/alice", true),
            (Some("alice"), "pu/+/x", true),
            (Some("alice"), "pu/bob/x", false),
            (Some("bob"), "$SYS/broker/uptime", false),
            (Some("we+ird"), "anything/#", true),
            (Some("we+ird"), "$SYS/broker/uptime", false),
        ];
        for &(user, filter, readable) in table {
            assert_eq!(
                acl.may_read_under(user, "c", filter),
                readable,
                "{user:?} {filter}"
            );
        }
    }

    #[test]
    fn overlap_and_cover() {
        let l = |s: &'static str| s.split('/').collect::<Vec<_>>();
        assert!(overlaps(&l("a/+"), &l("+/b")));
        assert!(overlaps(&l("a/#"), &l("a")));
        assert!(!overlaps(&l("a/b"), &l("a/c")));
        assert!(!overlaps(&l("#"), &l("$SYS/x")));
        assert!(overlaps(&l("$SYS/#"), &l("$SYS/x")));
        assert!(covers(&l("a/#"), &l("a/+/c")));
        assert!(!covers(&l("a/+"), &l("a/#")));
        assert!(!covers(&l("+/x"), &l("$a/x")));
        assert!(covers(&l("a/+"), &l("a/+")));
    }
}
