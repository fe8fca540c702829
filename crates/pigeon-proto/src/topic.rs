//! Topic Names and Topic Filters: validation, levels and matching (MQTT 5.0 sections 4.7 and
//! 4.8.2, MQTT 3.1.1 section 4.7).
//!
//! A [`TopicName`] is what a PUBLISH is sent to: at least one character and no wildcard. A
//! [`TopicFilter`] is what a SUBSCRIBE asks for: `+` matches one level, `#` matches the rest of
//! the topic including its parent level, and `$share/{ShareName}/{filter}` makes a shared
//! subscription. Both wrap the [`MqttString`] they were decoded from, so no text is copied.
//!
//! Matching compares bytes, level by level, without normalisation [MQTT-4.7.3-4] and without
//! allocating; see [`matches`].

use std::fmt;
use std::ops::Deref;

use crate::{MqttString, Protocol, ReasonCode, StringError};

/// The first level of a shared subscription's Topic Filter.
const SHARE: &[u8] = b"$share";

/// Why a string is not a valid Topic Name or Topic Filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// The topic is empty: Topic Names and Topic Filters are at least one character long
    /// [MQTT-4.7.3-1].
    #[error("topic is empty")]
    Empty,
    /// A Topic Name contains `+` or `#` [MQTT-3.3.2-2] (3.1.1 [MQTT-4.7.1-1], 5.0
    /// [MQTT-4.7.0-1]).
    #[error("topic name contains a wildcard character ('+' or '#')")]
    Wildcard,
    /// A `#` in a Topic Filter is not its last character (`a/#/b`, `#/`): 5.0 [MQTT-4.7.1-1],
    /// 3.1.1 [MQTT-4.7.1-2].
    #[error("'#' is not the last character of the topic filter")]
    MultiLevelNotLast,
    /// A `#` in a Topic Filter shares its level with other characters (`a#`): 5.0
    /// [MQTT-4.7.1-1], 3.1.1 [MQTT-4.7.1-2].
    #[error("'#' does not occupy an entire topic level")]
    MultiLevelNotWholeLevel,
    /// A `+` in a Topic Filter shares its level with other characters (`a+`, `+a`, `++`): 5.0
    /// [MQTT-4.7.1-2], 3.1.1 [MQTT-4.7.1-3].
    #[error("'+' does not occupy an entire topic level")]
    SingleLevelNotWholeLevel,
    /// A shared subscription (`$share`, `$share/`, `$share//x`) without a ShareName
    /// [MQTT-4.8.2-1].
    #[error("shared subscription without a ShareName")]
    EmptyShareName,
    /// A ShareName contains `+` or `#` [MQTT-4.8.2-2].
    #[error("ShareName contains '+' or '#'")]
    InvalidShareName,
    /// A ShareName is not followed by `/` and a Topic Filter (`$share/group`,
    /// `$share/group/`) [MQTT-4.8.2-2].
    #[error("shared subscription without a topic filter after its ShareName")]
    SharedWithoutFilter,
    /// The text is not a valid UTF-8 Encoded String (ill-formed, U+0000 [MQTT-4.7.3-2], or
    /// longer than 65,535 bytes [MQTT-4.7.3-3]).
    #[error(transparent)]
    InvalidString(#[from] StringError),
}

impl TopicError {
    /// The MQTT 5.0 reason code a receiver closes the connection with over this error.
    ///
    /// Syntax errors are Malformed Packet (0x81), as Mosquitto answers a bad topic. Breaking the
    /// shared subscription naming rules of section 4.8.2 is a Protocol Error (0x82).
    pub fn reason_code(self) -> ReasonCode {
        use TopicError::*;
        match self {
            Empty
            | Wildcard
            | MultiLevelNotLast
            | MultiLevelNotWholeLevel
            | SingleLevelNotWholeLevel
            | InvalidString(_) => ReasonCode::MALFORMED_PACKET,
            EmptyShareName | InvalidShareName | SharedWithoutFilter => ReasonCode::PROTOCOL_ERROR,
        }
    }

    /// The normative statement this error breaks, as numbered in the specification of
    /// `protocol` (MQTT 3.1 has no numbered statements; it uses 3.1.1's). Shared subscriptions
    /// exist only in MQTT 5.0, so their errors have no 3.x statement.
    pub fn rule(self, protocol: Protocol) -> Option<&'static str> {
        use TopicError::*;
        let v5 = protocol == Protocol::V5;
        let pick = |v311: &'static str, v500: &'static str| Some(if v5 { v500 } else { v311 });
        match self {
            Empty => pick("MQTT-4.7.3-1", "MQTT-4.7.3-1"),
            Wildcard => pick("MQTT-3.3.2-2", "MQTT-3.3.2-2"),
            MultiLevelNotLast | MultiLevelNotWholeLevel => pick("MQTT-4.7.1-2", "MQTT-4.7.1-1"),
            SingleLevelNotWholeLevel => pick("MQTT-4.7.1-3", "MQTT-4.7.1-2"),
            EmptyShareName if v5 => Some("MQTT-4.8.2-1"),
            InvalidShareName | SharedWithoutFilter if v5 => Some("MQTT-4.8.2-2"),
            EmptyShareName | InvalidShareName | SharedWithoutFilter => None,
            InvalidString(StringError::InvalidUtf8) => pick("MQTT-1.5.3-1", "MQTT-1.5.4-1"),
            InvalidString(StringError::NullCharacter) => pick("MQTT-4.7.3-2", "MQTT-4.7.3-2"),
            InvalidString(StringError::TooLong(_)) => pick("MQTT-4.7.3-3", "MQTT-4.7.3-3"),
        }
    }
}

/// A Topic Name: a valid [`MqttString`], at least one character long [MQTT-4.7.3-1], without
/// the wildcard characters `+` and `#` [MQTT-3.3.2-2].
///
/// Levels may be empty (`a//b`, `/a`, `/`), and names starting with `$` are allowed: they are
/// what [`is_system`](TopicName::is_system) reports. The one exception to "not empty" is the
/// empty topic of an MQTT 5.0 PUBLISH that carries a Topic Alias, which only the codec makes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(MqttString);

impl TopicName {
    /// Checks that `s` is a valid Topic Name and wraps it without copying.
    ///
    /// # Errors
    /// [`TopicError::Empty`] for an empty string, [`TopicError::Wildcard`] when it contains
    /// `+` or `#`.
    pub fn from_string(s: MqttString) -> Result<TopicName, TopicError> {
        let bytes: &[u8] = s.as_bytes(); // not `as_str`, which checks the UTF-8 again
        if bytes.is_empty() {
            return Err(TopicError::Empty);
        }
        if bytes.iter().any(|&b| b == b'+' || b == b'#') {
            return Err(TopicError::Wildcard);
        }
        Ok(TopicName(s))
    }

    /// Whether `bytes` are a valid Topic Name of the common kind: not empty, ASCII, without
    /// U+0000, `+` or `#`. One pass without branches per byte (it vectorises); `false` says
    /// nothing either way about names outside that kind.
    pub(crate) fn is_plain(bytes: &[u8]) -> bool {
        let mut ok = !bytes.is_empty();
        for &b in bytes {
            // `&` rather than `&&`: no branch per byte, so the loop vectorises.
            ok &= (b != 0) & (b < 0x80) & (b != b'+') & (b != b'#');
        }
        ok
    }

    /// Wraps a string already known to be a valid, non-empty Topic Name.
    pub(crate) fn from_checked(s: MqttString) -> TopicName {
        TopicName(s)
    }

    /// Wraps a static Topic Name.
    ///
    /// # Panics
    /// If `s` is not a valid Topic Name: a programming error, never reachable from input.
    pub fn from_static(s: &'static str) -> TopicName {
        match TopicName::from_string(MqttString::from_static(s)) {
            Ok(name) => name,
            Err(e) => panic!("invalid static topic name {s:?}: {e}"),
        }
    }

    /// The empty topic an MQTT 5.0 PUBLISH carries when it names its topic by a Topic Alias
    /// (for a sender that sets one; the encoder refuses it without an alias).
    pub fn empty() -> TopicName {
        TopicName(MqttString::new())
    }

    /// Whether this is the empty topic of a PUBLISH that uses a Topic Alias.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The text as an [`MqttString`].
    pub fn as_mqtt_string(&self) -> &MqttString {
        &self.0
    }

    /// A copy that does not share the buffer it was decoded from (see
    /// [`MqttString::detach`]).
    #[must_use]
    pub fn detach(&self) -> TopicName {
        TopicName(self.0.detach())
    }

    /// Gives up the [`MqttString`].
    pub fn into_inner(self) -> MqttString {
        self.0
    }

    /// The levels, split on `/`: `"/a//b"` has the levels `""`, `"a"`, `""` and `"b"`.
    pub fn levels(&self) -> impl Iterator<Item = &str> {
        self.as_str().split('/')
    }

    /// Whether the name starts with `$`, which filters starting with a wildcard do not match
    /// [MQTT-4.7.2-1].
    pub fn is_system(&self) -> bool {
        self.as_str().starts_with('$')
    }
}

impl TryFrom<MqttString> for TopicName {
    type Error = TopicError;

    fn try_from(s: MqttString) -> Result<Self, TopicError> {
        TopicName::from_string(s)
    }
}

impl TryFrom<&str> for TopicName {
    type Error = TopicError;

    fn try_from(s: &str) -> Result<Self, TopicError> {
        TopicName::from_string(MqttString::try_from(s)?)
    }
}

impl TryFrom<String> for TopicName {
    type Error = TopicError;

    fn try_from(s: String) -> Result<Self, TopicError> {
        TopicName::from_string(MqttString::try_from(s)?)
    }
}

impl From<TopicName> for MqttString {
    fn from(name: TopicName) -> MqttString {
        name.0
    }
}

impl Deref for TopicName {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for TopicName {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for TopicName {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for TopicName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One level of a Topic Filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level<'a> {
    /// A level without wildcards, matched byte for byte. May be empty.
    Literal(&'a str),
    /// `+`: any one level, including an empty one.
    SingleLevel,
    /// `#`: the parent level and any number of levels below it. Always the last level.
    MultiLevel,
}

/// A Topic Filter, possibly a shared one (`$share/{ShareName}/{filter}`, MQTT 5.0 section
/// 4.8.2).
///
/// Validated on construction: at least one character [MQTT-4.7.3-1], `#` alone in the last
/// level [MQTT-4.7.1-1], `+` alone in its level [MQTT-4.7.1-2] (5.0 numbering), and for a
/// shared subscription a non-empty ShareName without `+` or `#` followed by `/` and a non-empty
/// filter [MQTT-4.8.2-1] [MQTT-4.8.2-2]. The parse is kept (where the filter proper starts,
/// whether it has wildcards) so that [`matches`](TopicFilter::matches) does no rescanning and
/// compares wildcard-free filters with one `memcmp`.
///
/// A first level of `$share` always makes a shared subscription, whatever the protocol
/// version (as Mosquitto reads it); `$sharefoo/x` is an ordinary filter.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter {
    /// The whole filter, as sent.
    text: MqttString,
    /// Byte offset of the filter proper: 0, or just past `$share/{ShareName}/`. Fits: the
    /// text is at most 65,535 bytes.
    start: u16,
    /// Whether the filter proper contains `+` or `#`.
    wildcards: bool,
}

impl TopicFilter {
    /// Checks that `s` is a valid Topic Filter and wraps it without copying. One pass over the
    /// bytes.
    ///
    /// # Errors
    /// The [`TopicError`] for the first rule `s` breaks, reading left to right.
    pub fn from_string(s: MqttString) -> Result<TopicFilter, TopicError> {
        let bytes: &[u8] = s.as_bytes(); // not `as_str`, which checks the UTF-8 again
        if bytes.is_empty() {
            return Err(TopicError::Empty);
        }
        let start = match bytes.strip_prefix(SHARE) {
            Some(after) => match after.split_first() {
                Some((b'/', rest)) => SHARE.len() + 1 + share_name_len(rest)? + 1,
                // "$share" alone is read as a shared subscription that lacks its ShareName, not
                // as an ordinary one-level filter: Mosquitto rejects it the same way, and a
                // client that sends it means a shared subscription.
                None => return Err(TopicError::EmptyShareName),
                // "$sharefoo/...": an ordinary filter whose first level merely starts with
                // "$share".
                Some(_) => 0,
            },
            None => 0,
        };
        let wildcards = check_filter(bytes.get(start..).unwrap_or_default())?;
        let start = u16::try_from(start).map_err(|_| StringError::TooLong(bytes.len()))?;
        Ok(TopicFilter {
            text: s,
            start,
            wildcards,
        })
    }

    /// A copy that does not share the buffer it was decoded from (see
    /// [`MqttString::detach`]).
    #[must_use]
    pub fn detach(&self) -> TopicFilter {
        TopicFilter {
            text: self.text.detach(),
            ..*self
        }
    }

    /// Wraps a static Topic Filter.
    ///
    /// # Panics
    /// If `s` is not a valid Topic Filter: a programming error, never reachable from input.
    pub fn from_static(s: &'static str) -> TopicFilter {
        match TopicFilter::from_string(MqttString::from_static(s)) {
            Ok(filter) => filter,
            Err(e) => panic!("invalid static topic filter {s:?}: {e}"),
        }
    }

    /// The whole filter as sent, including any `$share/{ShareName}/` prefix.
    pub fn as_str(&self) -> &str {
        self.text.as_str()
    }

    /// The whole filter as an [`MqttString`].
    pub fn as_mqtt_string(&self) -> &MqttString {
        &self.text
    }

    /// Gives up the [`MqttString`] (the whole filter).
    pub fn into_inner(self) -> MqttString {
        self.text
    }

    /// The filter proper: without the `$share/{ShareName}/` prefix of a shared subscription,
    /// which plays no part in matching.
    pub fn filter(&self) -> &str {
        // `start` is 0 or follows an ASCII '/', so it is a char boundary within the text.
        self.as_str()
            .get(usize::from(self.start)..)
            .unwrap_or_default()
    }

    /// The ShareName of a shared subscription.
    pub fn share_group(&self) -> Option<&str> {
        if self.start == 0 {
            return None;
        }
        // Between "$share/" and the '/' before the filter proper.
        self.as_str()
            .get(SHARE.len() + 1..usize::from(self.start).saturating_sub(1))
    }

    /// Whether this is a shared subscription (`$share/{ShareName}/{filter}`).
    pub fn is_shared(&self) -> bool {
        self.start != 0
    }

    /// Whether the filter proper contains `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        self.wildcards
    }

    /// The levels of the filter proper, split on `/`.
    pub fn levels(&self) -> impl Iterator<Item = Level<'_>> {
        self.filter().split('/').map(|level| match level {
            "+" => Level::SingleLevel,
            "#" => Level::MultiLevel,
            literal => Level::Literal(literal),
        })
    }

    /// Whether `topic` matches this filter (its filter proper, for a shared subscription).
    /// Never allocates. The empty topic of a PUBLISH that uses a Topic Alias matches nothing.
    pub fn matches(&self, topic: &TopicName) -> bool {
        // Bytes, not `as_str`, which would check the UTF-8 again.
        let filter = self
            .text
            .as_bytes()
            .get(usize::from(self.start)..)
            .unwrap_or_default();
        let topic = topic.0.as_bytes().as_ref();
        if self.wildcards {
            matches_bytes(filter, topic)
        } else {
            // A filter without wildcards matches exactly one name: itself.
            filter == topic
        }
    }
}

impl TryFrom<MqttString> for TopicFilter {
    type Error = TopicError;

    fn try_from(s: MqttString) -> Result<Self, TopicError> {
        TopicFilter::from_string(s)
    }
}

impl TryFrom<&str> for TopicFilter {
    type Error = TopicError;

    fn try_from(s: &str) -> Result<Self, TopicError> {
        TopicFilter::from_string(MqttString::try_from(s)?)
    }
}

impl TryFrom<String> for TopicFilter {
    type Error = TopicError;

    fn try_from(s: String) -> Result<Self, TopicError> {
        TopicFilter::from_string(MqttString::try_from(s)?)
    }
}

impl From<TopicFilter> for MqttString {
    fn from(filter: TopicFilter) -> MqttString {
        filter.text
    }
}

impl AsRef<str> for TopicFilter {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for TopicFilter {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for TopicFilter {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The length of the ShareName at the start of `rest` (what follows `$share/`), checking that
/// it is not empty [MQTT-4.8.2-1], holds no `+` or `#` and is followed by `/` and at least one
/// more character [MQTT-4.8.2-2].
fn share_name_len(rest: &[u8]) -> Result<usize, TopicError> {
    for (i, &b) in rest.iter().enumerate() {
        match b {
            b'/' if i == 0 => return Err(TopicError::EmptyShareName),
            b'/' if i + 1 == rest.len() => return Err(TopicError::SharedWithoutFilter),
            b'/' => return Ok(i),
            b'+' | b'#' => return Err(TopicError::InvalidShareName),
            _ => {}
        }
    }
    Err(if rest.is_empty() {
        TopicError::EmptyShareName
    } else {
        TopicError::SharedWithoutFilter
    })
}

/// Checks the wildcards of a non-empty filter proper; returns whether it has any.
///
/// Works on bytes: `/`, `+` and `#` are ASCII, and UTF-8 never uses ASCII bytes inside a
/// multi-byte character.
fn check_filter(filter: &[u8]) -> Result<bool, TopicError> {
    let mut wildcards = false;
    // The byte before the current one; the start of the filter counts as a level separator.
    let mut prev = b'/';
    for (i, &b) in filter.iter().enumerate() {
        match b {
            b'+' if prev == b'/' => wildcards = true,
            b'+' => return Err(TopicError::SingleLevelNotWholeLevel),
            b'#' if prev == b'+' => return Err(TopicError::SingleLevelNotWholeLevel),
            b'#' if prev != b'/' => return Err(TopicError::MultiLevelNotWholeLevel),
            b'#' if i + 1 == filter.len() => return Ok(true),
            b'#' => return Err(TopicError::MultiLevelNotLast),
            b'/' => {}
            _ if prev == b'+' => return Err(TopicError::SingleLevelNotWholeLevel),
            _ => {}
        }
        prev = b;
    }
    Ok(wildcards)
}

/// Whether `topic` matches `filter`: the matching the broker and its tries use.
///
/// `filter` is a valid Topic Filter without any `$share/{ShareName}/` prefix (the
/// [`TopicFilter::filter`] part), `topic` a Topic Name. Levels are compared byte for byte,
/// case-sensitively and without normalisation [MQTT-4.7.3-4]; `+` matches any one level, even
/// an empty one; `#` matches the parent level and everything below it (`sport/#` matches
/// `sport`); a filter starting with a wildcard does not match a topic starting with `$`
/// [MQTT-4.7.2-1]. An empty topic or filter matches nothing.
///
/// Walks both strings once, without allocating. Given an invalid filter it returns some
/// answer, never panics.
pub fn matches(filter: &str, topic: &str) -> bool {
    matches_bytes(filter.as_bytes(), topic.as_bytes())
}

/// [`matches`] on the UTF-8 bytes. Works on bytes because `/`, `+`, `#` and `$` are ASCII,
/// which UTF-8 never uses inside a multi-byte character.
fn matches_bytes(mut f: &[u8], mut t: &[u8]) -> bool {
    match (f.first(), t.first()) {
        (None, _) | (_, None) => return false,
        (Some(b'+' | b'#'), Some(b'$')) => return false,
        _ => {}
    }
    loop {
        // Here both `f` and `t` start a level.
        match f.split_first() {
            Some((b'#', _)) => return true,
            Some((b'+', rest)) => {
                f = rest;
                t = skip_level(t);
            }
            _ => {
                // A literal level: skip the bytes both share, up to a separator.
                let same = f
                    .iter()
                    .zip(t)
                    .position(|(&a, &b)| a != b || a == b'/')
                    .unwrap_or(f.len().min(t.len()));
                f = f.get(same..).unwrap_or_default();
                t = t.get(same..).unwrap_or_default();
            }
        }
        // Both levels must end here, together.
        match (f.split_first(), t.split_first()) {
            (None, None) => return true,
            (Some((b'/', f_rest)), Some((b'/', t_rest))) => {
                f = f_rest;
                t = t_rest;
            }
            // The topic ends where the filter has "/#" left: '#' matches the parent level.
            (Some((b'/', f_rest)), None) => return f_rest == b"#",
            _ => return false,
        }
    }
}

/// `topic` from the end of its first level (its first `/`, or the end).
fn skip_level(topic: &[u8]) -> &[u8] {
    match topic.iter().position(|&b| b == b'/') {
        Some(i) => topic.get(i..).unwrap_or_default(),
        None => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name(s: &str) -> TopicName {
        TopicName::try_from(s).unwrap()
    }

    fn filter(s: &str) -> TopicFilter {
        TopicFilter::try_from(s).unwrap()
    }

    #[test]
    fn valid_topic_names() {
        for s in [
            "a",
            "sport/tennis/player1",
            // [MQTT-4.7.3-1] needs one character; a lone separator is one.
            "/",
            "//",
            "/finance",
            "finance/",
            "a//b",
            // Spaces and '$' are ordinary characters in a name.
            "Accounts payable",
            "$SYS/monitor/Clients",
            "$share/group/topic",
            "$share",
            "ü/水/🐦",
        ] {
            let n = name(s);
            assert_eq!(n, s);
            assert_eq!(n.as_str(), s);
            assert_eq!(n.to_string(), s);
            assert_eq!(format!("{n:?}"), format!("{s:?}"));
            assert!(!n.is_empty());
        }
    }

    #[test]
    fn invalid_topic_names() {
        let cases = [
            // [MQTT-4.7.3-1]
            ("", TopicError::Empty),
            // [MQTT-3.3.2-2]: no wildcards in a Topic Name, wherever they are.
            ("+", TopicError::Wildcard),
            ("#", TopicError::Wildcard),
            ("sport/+", TopicError::Wildcard),
            ("sport/#", TopicError::Wildcard),
            ("sport+", TopicError::Wildcard),
            ("a#b", TopicError::Wildcard),
            // [MQTT-4.7.3-2]
            (
                "a\0b",
                TopicError::InvalidString(StringError::NullCharacter),
            ),
        ];
        for (s, err) in cases {
            assert_eq!(TopicName::try_from(s), Err(err), "{s:?}");
            assert_eq!(TopicName::try_from(s.to_owned()), Err(err), "{s:?}");
        }
        // [MQTT-4.7.3-3]
        assert_eq!(
            TopicName::try_from("a".repeat(65_536)),
            Err(TopicError::InvalidString(StringError::TooLong(65_536)))
        );
        assert!(TopicName::try_from("a".repeat(65_535)).is_ok());
        // [MQTT-1.5.4-1]
        let bad = MqttString::from_bytes(bytes::Bytes::from_static(b"\xff"));
        assert_eq!(bad, Err(StringError::InvalidUtf8));
    }

    #[test]
    fn plain_topic_names_are_the_ascii_ones_without_nul_or_wildcards() {
        for (bytes, plain) in [
            (&b"a/b"[..], true),
            (b"/", true),
            (b"$SYS/x", true),
            (b"\x7f", true),
            (b"", false),
            (b"a/+", false),
            (b"#", false),
            (b"a\0b", false),
            ("caf\u{e9}".as_bytes(), false),
        ] {
            assert_eq!(TopicName::is_plain(bytes), plain, "{bytes:?}");
        }
    }

    #[test]
    fn topic_name_accessors() {
        let n = name("/a//b");
        assert_eq!(n.levels().collect::<Vec<_>>(), ["", "a", "", "b"]);
        assert_eq!(name("a").levels().collect::<Vec<_>>(), ["a"]);
        assert!(name("$SYS/x").is_system());
        assert!(!name("SYS/$x").is_system());
        assert_eq!(n.len(), 5);
        assert_eq!(n.as_mqtt_string(), "/a//b");
        assert_eq!(&*n, "/a//b");
        assert_eq!(n.as_ref() as &str, "/a//b");
        assert_eq!(n.clone().into_inner(), "/a//b");
        assert_eq!(MqttString::from(n.clone()), "/a//b");
        assert_eq!(TopicName::from_static("/a//b"), n);
        assert_eq!(
            TopicName::try_from(MqttString::from_static("x")),
            Ok(name("x"))
        );
        assert!(TopicName::empty().is_empty());
        assert_eq!(TopicName::empty(), "");
    }

    #[test]
    #[should_panic(expected = "invalid static topic name")]
    fn static_topic_name_panics_on_wildcard() {
        let _ = TopicName::from_static("a/+");
    }

    #[test]
    #[should_panic(expected = "invalid static topic filter")]
    fn static_topic_filter_panics_on_bad_wildcard() {
        let _ = TopicFilter::from_static("a/#/b");
    }

    #[test]
    fn valid_topic_filters() {
        // (filter, filter proper, share group, has wildcards)
        let cases: &[(&str, &str, Option<&str>, bool)] = &[
            ("a", "a", None, false),
            ("/", "/", None, false),
            ("a//b", "a//b", None, false),
            ("/finance", "/finance", None, false),
            // Section 4.7.1.2: "#" on its own and "sport/tennis/#" are valid [MQTT-4.7.1-1].
            ("#", "#", None, true),
            ("sport/tennis/#", "sport/tennis/#", None, true),
            ("/#", "/#", None, true),
            // Section 4.7.1.3: "+", "+/tennis/#", "sport/+/player1" are valid [MQTT-4.7.1-2].
            ("+", "+", None, true),
            ("+/tennis/#", "+/tennis/#", None, true),
            ("sport/+/player1", "sport/+/player1", None, true),
            ("+/+", "+/+", None, true),
            ("/+", "/+", None, true),
            ("+/", "+/", None, true),
            ("+/#", "+/#", None, true),
            ("$SYS/#", "$SYS/#", None, true),
            ("$SYS/monitor/+", "$SYS/monitor/+", None, true),
            // '$' levels other than "$share" are ordinary.
            ("$sharefoo/x", "$sharefoo/x", None, false),
            ("$shar", "$shar", None, false),
            ("x/$share", "x/$share", None, false),
            ("x/$share/g", "x/$share/g", None, false),
            // Section 4.8.2 [MQTT-4.8.2-1] [MQTT-4.8.2-2].
            (
                "$share/consumer1/sport/tennis/+",
                "sport/tennis/+",
                Some("consumer1"),
                true,
            ),
            (
                "$share/consumer1//finance",
                "/finance",
                Some("consumer1"),
                false,
            ),
            ("$share/g/#", "#", Some("g"), true),
            ("$share/g/+", "+", Some("g"), true),
            ("$share/g//", "/", Some("g"), false),
            ("$share/g///", "//", Some("g"), false),
            ("$share/g/a", "a", Some("g"), false),
            ("$share/$g/$SYS/#", "$SYS/#", Some("$g"), true),
            ("$share/ü/水", "水", Some("ü"), false),
            // The filter proper follows the ordinary rules, even if it starts with "$share".
            ("$share/g/$share/h/x", "$share/h/x", Some("g"), false),
            ("$share/g/$share", "$share", Some("g"), false),
        ];
        for &(s, proper, group, wildcards) in cases {
            let f = filter(s);
            assert_eq!(f, s);
            assert_eq!(f.as_str(), s);
            assert_eq!(f.to_string(), s);
            assert_eq!(format!("{f:?}"), format!("{s:?}"));
            assert_eq!(f.filter(), proper, "{s:?}");
            assert_eq!(f.share_group(), group, "{s:?}");
            assert_eq!(f.is_shared(), group.is_some(), "{s:?}");
            assert_eq!(f.has_wildcards(), wildcards, "{s:?}");
            assert_eq!(TopicFilter::try_from(s.to_owned()), Ok(f.clone()));
        }
    }

    #[test]
    fn invalid_topic_filters() {
        use TopicError::*;
        let cases = [
            // [MQTT-4.7.3-1]
            ("", Empty),
            // Section 4.7.1.2: "sport/tennis#" and "sport/tennis/#/ranking" are not valid
            // [MQTT-4.7.1-1].
            ("sport/tennis#", MultiLevelNotWholeLevel),
            ("sport/tennis/#/ranking", MultiLevelNotLast),
            ("#/", MultiLevelNotLast),
            ("#/a", MultiLevelNotLast),
            ("##", MultiLevelNotLast),
            ("#+", MultiLevelNotLast),
            ("#a", MultiLevelNotLast),
            ("a#", MultiLevelNotWholeLevel),
            ("a/b#", MultiLevelNotWholeLevel),
            // Section 4.7.1.3: "sport+" is not valid [MQTT-4.7.1-2].
            ("sport+", SingleLevelNotWholeLevel),
            ("+sport", SingleLevelNotWholeLevel),
            ("a/+b/c", SingleLevelNotWholeLevel),
            ("a/b+/c", SingleLevelNotWholeLevel),
            ("++", SingleLevelNotWholeLevel),
            ("+#", SingleLevelNotWholeLevel),
            ("a/+#", SingleLevelNotWholeLevel),
            // [MQTT-4.8.2-1]: a ShareName of at least one character. "$share" alone is taken
            // as a shared subscription without one (Mosquitto rejects it too).
            ("$share", EmptyShareName),
            ("$share/", EmptyShareName),
            ("$share//", EmptyShareName),
            ("$share//a", EmptyShareName),
            // [MQTT-4.8.2-2]: no '+' or '#' in the ShareName...
            ("$share/+/a", InvalidShareName),
            ("$share/#/a", InvalidShareName),
            ("$share/g+/a", InvalidShareName),
            ("$share/g#", InvalidShareName),
            ("$share/+", InvalidShareName),
            // ...which is followed by '/' and a Topic Filter.
            ("$share/g", SharedWithoutFilter),
            ("$share/g/", SharedWithoutFilter),
            ("$share/consumer1", SharedWithoutFilter),
            // The filter proper follows the ordinary rules.
            ("$share/g/a#", MultiLevelNotWholeLevel),
            ("$share/g/#/a", MultiLevelNotLast),
            ("$share/g/a+", SingleLevelNotWholeLevel),
            ("$share/g/+a", SingleLevelNotWholeLevel),
            // [MQTT-4.7.3-2]
            ("a/\0", InvalidString(StringError::NullCharacter)),
        ];
        for (s, err) in cases {
            assert_eq!(TopicFilter::try_from(s), Err(err), "{s:?}");
        }
        // [MQTT-4.7.3-3]
        assert_eq!(
            TopicFilter::try_from("+/".repeat(32_768)),
            Err(InvalidString(StringError::TooLong(65_536)))
        );
        let longest = format!("$share/g/{}", "a".repeat(65_535 - 9));
        assert_eq!(filter(&longest).filter().len(), 65_535 - 9);
    }

    #[test]
    fn filter_levels() {
        use Level::*;
        let cases: &[(&str, &[Level<'_>])] = &[
            (
                "sport/+/player1/#",
                &[
                    Literal("sport"),
                    SingleLevel,
                    Literal("player1"),
                    MultiLevel,
                ],
            ),
            ("/", &[Literal(""), Literal("")]),
            ("#", &[MultiLevel]),
            ("$share/g//+", &[Literal(""), SingleLevel]),
            ("$sharefoo/a", &[Literal("$sharefoo"), Literal("a")]),
        ];
        for &(s, expected) in cases {
            let f = filter(s);
            assert!(f.levels().eq(expected.iter().copied()), "{s:?}");
        }
    }

    #[test]
    fn filter_conversions() {
        let f = filter("$share/g/a/+");
        assert_eq!(f.as_mqtt_string(), "$share/g/a/+");
        assert_eq!(f.as_ref() as &str, "$share/g/a/+");
        assert_eq!(f.clone().into_inner(), "$share/g/a/+");
        assert_eq!(MqttString::from(f.clone()), "$share/g/a/+");
        assert_eq!(TopicFilter::from_static("$share/g/a/+"), f);
        assert_eq!(
            TopicFilter::try_from(MqttString::from_static("$share/g/a/+")),
            Ok(f)
        );
    }

    #[test]
    fn reason_codes_and_rules() {
        use Protocol::*;
        use TopicError::*;
        // (error, reason code, 3.1.1 rule, 5.0 rule)
        let cases = [
            (Empty, 0x81, Some("MQTT-4.7.3-1"), Some("MQTT-4.7.3-1")),
            (Wildcard, 0x81, Some("MQTT-3.3.2-2"), Some("MQTT-3.3.2-2")),
            (
                MultiLevelNotLast,
                0x81,
                Some("MQTT-4.7.1-2"),
                Some("MQTT-4.7.1-1"),
            ),
            (
                MultiLevelNotWholeLevel,
                0x81,
                Some("MQTT-4.7.1-2"),
                Some("MQTT-4.7.1-1"),
            ),
            (
                SingleLevelNotWholeLevel,
                0x81,
                Some("MQTT-4.7.1-3"),
                Some("MQTT-4.7.1-2"),
            ),
            (EmptyShareName, 0x82, None, Some("MQTT-4.8.2-1")),
            (InvalidShareName, 0x82, None, Some("MQTT-4.8.2-2")),
            (SharedWithoutFilter, 0x82, None, Some("MQTT-4.8.2-2")),
            (
                InvalidString(StringError::InvalidUtf8),
                0x81,
                Some("MQTT-1.5.3-1"),
                Some("MQTT-1.5.4-1"),
            ),
            (
                InvalidString(StringError::NullCharacter),
                0x81,
                Some("MQTT-4.7.3-2"),
                Some("MQTT-4.7.3-2"),
            ),
            (
                InvalidString(StringError::TooLong(70_000)),
                0x81,
                Some("MQTT-4.7.3-3"),
                Some("MQTT-4.7.3-3"),
            ),
        ];
        for (err, code, v311, v5) in cases {
            assert_eq!(err.reason_code(), ReasonCode(code), "{err:?}");
            assert_eq!(err.rule(V31), v311, "{err:?}");
            assert_eq!(err.rule(V311), v311, "{err:?}");
            assert_eq!(err.rule(V5), v5, "{err:?}");
            assert!(!err.to_string().is_empty());
        }
        assert_eq!(ReasonCode::MALFORMED_PACKET, ReasonCode(0x81));
        assert_eq!(ReasonCode::PROTOCOL_ERROR, ReasonCode(0x82));
    }

    /// (filter, topic, matches)
    const MATCH_CASES: &[(&str, &str, bool)] = &[
        // Section 4.7.1.2 (multi-level wildcard) [MQTT-4.7.1-1].
        ("sport/tennis/player1/#", "sport/tennis/player1", true),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking",
            true,
        ),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon",
            true,
        ),
        ("sport/tennis/player1/#", "sport/tennis/player2", false),
        ("sport/tennis/player1/#", "sport/tennis", false),
        ("sport/tennis/player1/#", "sport/tennis/player10", false),
        // "sport/#" also matches the singular "sport", since '#' includes the parent level.
        ("sport/#", "sport", true),
        ("sport/#", "sport/", true),
        ("sport/#", "sports", false),
        ("sport/#", "spor", false),
        // "#" receives every message (not starting with '$').
        ("#", "sport", true),
        ("#", "sport/tennis/player1", true),
        ("#", "/", true),
        ("#", "/finance", true),
        ("sport/tennis/#", "sport/tennis", true),
        ("sport/tennis/#", "sport/tennis/x/y", true),
        ("/#", "/", true),
        ("/#", "/a", true),
        ("/#", "a", false),
        ("/#", "", false),
        // Section 4.7.1.3 (single-level wildcard) [MQTT-4.7.1-2].
        ("sport/tennis/+", "sport/tennis/player1", true),
        ("sport/tennis/+", "sport/tennis/player2", true),
        ("sport/tennis/+", "sport/tennis/player1/ranking", false),
        ("sport/tennis/+", "sport/tennis", false),
        // "sport/+" does not match "sport" but does match "sport/".
        ("sport/+", "sport", false),
        ("sport/+", "sport/", true),
        ("+", "sport", true),
        ("+", "$", false),
        ("+/tennis/#", "sport/tennis", true),
        ("+/tennis/#", "sport/tennis/player1/ranking", true),
        ("+/tennis/#", "sport/golf", false),
        ("sport/+/player1", "sport/tennis/player1", true),
        ("sport/+/player1", "sport//player1", true),
        ("sport/+/player1", "sport/tennis/player2", false),
        ("sport/+/player1", "sport/tennis/x/player1", false),
        // "/finance" matches "+/+" and "/+", but not "+".
        ("+/+", "/finance", true),
        ("/+", "/finance", true),
        ("+", "/finance", false),
        ("+/+", "/", true),
        ("+/+", "a", false),
        ("+/+", "a/b/c", false),
        ("+/#", "a", true),
        ("+/#", "a/b/c", true),
        ("a/+/#", "a/b", true),
        ("a/+/#", "a", false),
        ("+/+/#", "a", false),
        // Section 4.7.2 (topics beginning with '$') [MQTT-4.7.2-1]: filters starting with a
        // wildcard do not match them...
        ("#", "$SYS", false),
        ("#", "$SYS/monitor/Clients", false),
        ("+/monitor/Clients", "$SYS/monitor/Clients", false),
        ("+", "$SYS", false),
        ("+/#", "$SYS/x", false),
        // ...but filters that spell the '$' out do.
        ("$SYS/#", "$SYS/monitor/Clients", true),
        ("$SYS/#", "$SYS/", true),
        ("$SYS/#", "$SYS", true),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
        ("$SYS/monitor/+", "$SYS/monitor/Clients/x", false),
        ("$SYS", "$SYS", true),
        // Only the first character counts as '$'.
        ("+/$x", "a/$x", true),
        ("a/#", "a/$x", true),
        ("a/+", "a/$x", true),
        // Section 4.7.3: case-sensitive, byte-wise, no normalisation [MQTT-4.7.3-4].
        ("ACCOUNTS", "Accounts", false),
        ("Accounts payable", "Accounts payable", true),
        ("/finance", "finance", false),
        ("finance", "/finance", false),
        ("finance/", "finance", false),
        ("finance", "finance/", false),
        ("/", "/", true),
        ("/", "//", false),
        ("a//b", "a//b", true),
        ("a//b", "a/b", false),
        ("a/+/b", "a//b", true),
        ("caf\u{e9}", "cafe\u{301}", false),
        ("水/+", "水/🐦", true),
        // Literal prefixes.
        ("a", "ab", false),
        ("ab", "a", false),
        ("a/b", "a/bc", false),
        ("a/bc", "a/b", false),
        ("a/b/c", "a/b", false),
        ("a/b", "a/b/c", false),
        // Nothing matches an empty topic, and an empty filter matches nothing.
        ("#", "", false),
        ("+", "", false),
        ("", "a", false),
    ];

    #[test]
    fn matching_follows_the_spec_examples() {
        for &(f, t, expected) in MATCH_CASES {
            assert_eq!(matches(f, t), expected, "{f:?} vs {t:?}");
            assert_eq!(naive_matches(f, t), expected, "naive {f:?} vs {t:?}");
            if t.is_empty() {
                assert!(!filter(f).matches(&TopicName::empty()), "{f:?} vs empty");
                continue;
            }
            if f.is_empty() {
                continue;
            }
            let topic = name(t);
            assert_eq!(filter(f).matches(&topic), expected, "{f:?} vs {t:?}");
            // Section 4.8.2: the "$share" and ShareName parts play no part in matching.
            let shared = filter(&format!("$share/group/{f}"));
            assert_eq!(shared.matches(&topic), expected, "shared {f:?} vs {t:?}");
        }
    }

    // Section 4.8.2's examples [MQTT-4.8.2-1] [MQTT-4.8.2-2].
    #[test]
    fn shared_subscriptions_match_their_filter_proper() {
        let cases = [
            (
                "$share/consumer1/sport/tennis/+",
                "sport/tennis/player1",
                true,
            ),
            (
                "$share/consumer2/sport/tennis/+",
                "sport/tennis/player1",
                true,
            ),
            ("$share/consumer1/sport/tennis/+", "sport/tennis", false),
            // "$share/consumer1//finance" matches the same topics as "/finance".
            ("$share/consumer1//finance", "/finance", true),
            ("$share/consumer1//finance", "finance", false),
            // The inner filter starts with a wildcard, so '$' topics do not match
            // [MQTT-4.7.2-1], even though the whole filter starts with '$'.
            ("$share/g/#", "$SYS/x", false),
            ("$share/g/+/x", "$SYS/x", false),
            ("$share/g/$SYS/#", "$SYS/x", true),
            // The shared filter does not match topics spelling out its prefix.
            ("$share/g/a", "$share/g/a", false),
            ("$share/g/#", "$share/g/a", false),
            // "$sharefoo" is not shared: it matches literally.
            ("$sharefoo/x", "$sharefoo/x", true),
            ("$sharefoo/+", "$sharefoo/x", true),
            ("$sharefoo/x", "x", false),
        ];
        for (f, t, expected) in cases {
            assert_eq!(filter(f).matches(&name(t)), expected, "{f:?} vs {t:?}");
        }
    }

    /// The reference matcher: split both on '/', compare level lists recursively.
    fn naive_matches(filter: &str, topic: &str) -> bool {
        fn levels(f: &[&str], t: &[&str]) -> bool {
            match (f.split_first(), t.split_first()) {
                (Some((&"#", _)), _) => true,
                (None, None) => true,
                (Some((&"+", f_rest)), Some((_, t_rest))) => levels(f_rest, t_rest),
                (Some((f_level, f_rest)), Some((t_level, t_rest))) => {
                    f_level == t_level && levels(f_rest, t_rest)
                }
                _ => false,
            }
        }
        if filter.is_empty() || topic.is_empty() {
            return false;
        }
        if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
            return false;
        }
        let f: Vec<&str> = filter.split('/').collect();
        let t: Vec<&str> = topic.split('/').collect();
        levels(&f, &t)
    }

    /// The reference validator: split on '/', look at each level.
    fn naive_filter_is_valid(s: &str) -> bool {
        let inner = if s == "$share" {
            return false;
        } else if let Some(rest) = s.strip_prefix("$share/") {
            let Some((group, inner)) = rest.split_once('/') else {
                return false;
            };
            if group.is_empty() || group.contains(['+', '#']) {
                return false;
            }
            inner
        } else {
            s
        };
        let levels: Vec<&str> = inner.split('/').collect();
        !inner.is_empty()
            && levels.iter().enumerate().all(|(i, level)| {
                !level.contains(['+', '#'])
                    || *level == "+"
                    || (*level == "#" && i + 1 == levels.len())
            })
    }

    /// Valid filters built from a small alphabet of levels, optionally ending in '#'.
    fn filter_strategy() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["a", "b", "", "$x", "+", "ab"]);
        (prop::collection::vec(level, 0..5), any::<bool>()).prop_filter_map(
            "empty filter",
            |(levels, hash)| {
                let mut levels = levels;
                if hash {
                    levels.push("#");
                }
                let s = levels.join("/");
                (!s.is_empty()).then_some(s)
            },
        )
    }

    /// Topic names from the same alphabet, without wildcards.
    fn topic_strategy() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["a", "b", "", "$x", "ab", "$"]);
        prop::collection::vec(level, 1..6).prop_map(|levels| levels.join("/"))
    }

    /// Strings likely to be near-misses of valid filters, plus arbitrary ones.
    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[ab/+#$]{0,10}",
            "\\$share[ab/+#]{0,8}",
            "\\$share/[ab+#]{0,3}/[ab/+#$]{0,6}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn matches_agrees_with_the_reference(f in filter_strategy(), t in topic_strategy()) {
            let expected = naive_matches(&f, &t);
            prop_assert_eq!(matches(&f, &t), expected);
            let parsed = TopicFilter::try_from(f.as_str());
            prop_assert!(parsed.is_ok(), "{:?} rejected: {:?}", f, parsed);
            let topic = TopicName::try_from(t.as_str());
            if let (Ok(parsed), Ok(topic)) = (parsed, topic) {
                prop_assert_eq!(parsed.matches(&topic), expected);
                let shared = TopicFilter::try_from(format!("$share/g/{f}")).unwrap();
                prop_assert_eq!(shared.matches(&topic), expected);
                // A filter without wildcards matches exactly its own text.
                if !parsed.has_wildcards() {
                    prop_assert_eq!(expected, f == t);
                }
            }
        }

        #[test]
        fn parsing_never_panics(s in any_text(), t in topic_strategy()) {
            let as_filter = TopicFilter::try_from(s.as_str());
            prop_assert_eq!(as_filter.is_ok(), naive_filter_is_valid(&s) && !s.contains('\0'));
            if let Ok(f) = as_filter {
                prop_assert_eq!(f.as_str(), s.as_str());
                match f.share_group() {
                    Some(group) => {
                        prop_assert_eq!(format!("$share/{group}/{}", f.filter()), s.clone());
                    }
                    None => prop_assert_eq!(f.filter(), s.as_str()),
                }
                prop_assert_eq!(f.levels().count(), f.filter().split('/').count());
                prop_assert_eq!(f.has_wildcards(), f.filter().contains(['+', '#']));
                if let Ok(topic) = TopicName::try_from(t.as_str()) {
                    prop_assert_eq!(f.matches(&topic), naive_matches(f.filter(), &t));
                }
            }
            match TopicName::try_from(s.as_str()) {
                Ok(n) => {
                    prop_assert!(!n.is_empty() && !s.contains(['+', '#']));
                    prop_assert_eq!(n.levels().count(), s.split('/').count());
                }
                Err(e) => {
                    prop_assert!(s.is_empty() || s.contains(['+', '#', '\0']));
                    prop_assert!(e.reason_code().is_error());
                }
            }
            // The free function takes any text without panicking.
            let _ = matches(&s, &t);
            let _ = matches(&t, &s);
        }
    }
}
