//! UTF-8 Encoded Strings as MQTT defines them, held as zero-copy `Bytes`.
//!
//! The bytes are held as a [`ByteString`] (`Bytes` known to be UTF-8), so that reading the
//! text does not validate it again: a message's topic and its clients' identifiers are read as
//! text a few dozen times on its way through the broker (hashing, matching, ACL checks), and
//! validating each time was about 1,100 of the 15,400 instructions a message cost at low rates.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use bytes::Bytes;
use bytestring::ByteString;

/// Why a string is not a valid MQTT UTF-8 Encoded String.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StringError {
    /// Not well-formed UTF-8 (this includes encoded UTF-16 surrogates) [MQTT-1.5.4-1].
    #[error("string is not well-formed UTF-8 [MQTT-1.5.4-1]")]
    InvalidUtf8,
    /// Contains the null character U+0000 [MQTT-1.5.4-2].
    #[error("string contains U+0000 [MQTT-1.5.4-2]")]
    NullCharacter,
    /// Longer than the 65,535 bytes a two-byte length prefix can describe.
    #[error("string of {0} bytes is longer than 65535 bytes")]
    TooLong(usize),
}

/// A UTF-8 Encoded String (MQTT 5.0 section 1.5.4, 3.1.1 section 1.5.3).
///
/// The invariant, checked on construction: well-formed UTF-8 (so no surrogates), no U+0000,
/// at most 65,535 bytes. The text shares the buffer it was decoded from.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct MqttString(ByteString);

impl MqttString {
    /// An empty string.
    pub const fn new() -> Self {
        MqttString(ByteString::new())
    }

    /// Wraps a static string.
    ///
    /// # Panics
    /// If `s` contains U+0000 or is longer than 65,535 bytes: a programming error, never
    /// reachable from input.
    pub fn from_static(s: &'static str) -> Self {
        match Self::check_text(s) {
            Ok(()) => MqttString(ByteString::from_static(s)),
            Err(e) => panic!("invalid static MQTT string {s:?}: {e}"),
        }
    }

    /// Validates `bytes` and wraps them without copying.
    ///
    /// # Errors
    /// [`StringError`] when the bytes break a rule of section 1.5.4.
    pub fn from_bytes(bytes: Bytes) -> Result<Self, StringError> {
        // Length first, as the rules are listed.
        if bytes.len() > usize::from(u16::MAX) {
            return Err(StringError::TooLong(bytes.len()));
        }
        let text = ByteString::try_from(bytes).map_err(|_| StringError::InvalidUtf8)?;
        Self::check_text(&text)?;
        Ok(MqttString(text))
    }

    /// A copy in an allocation of its own. A decoded string is a slice of the packet it came
    /// in, and keeps that packet's whole read buffer alive; detach what is kept for long (a
    /// client identifier, a stored subscription) so that it does not pin the buffer.
    #[must_use]
    pub fn detach(&self) -> Self {
        MqttString(ByteString::from(self.as_str()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The underlying bytes (shared, not copied).
    pub fn as_bytes(&self) -> &Bytes {
        self.0.as_bytes()
    }

    /// Gives up the underlying bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0.into_bytes()
    }

    /// Whether the string holds a code point that MQTT 5.0 section 1.5.4 says SHOULD NOT be
    /// sent and MAY be treated as malformed: the control characters U+0001..U+001F and
    /// U+007F..U+009F, and the Unicode non-characters. The codec accepts them; a receiver that
    /// wants the stricter rule applies this check itself.
    pub fn has_disallowed_code_points(&self) -> bool {
        self.as_str().chars().any(|c| {
            let c = u32::from(c);
            c <= 0x1F || (0x7F..=0x9F).contains(&c) || (0xFDD0..=0xFDEF).contains(&c) || {
                c & 0xFFFE == 0xFFFE
            }
        })
    }

    /// The rules of section 1.5.4 beyond well-formed UTF-8, which `text` is already: at most
    /// 65,535 bytes, no U+0000.
    fn check_text(text: &str) -> Result<(), StringError> {
        if text.len() > usize::from(u16::MAX) {
            return Err(StringError::TooLong(text.len()));
        }
        if text.as_bytes().contains(&0) {
            return Err(StringError::NullCharacter);
        }
        Ok(())
    }

    /// Wraps bytes already checked against the rules (the plain Topic Name test). Without
    /// `unsafe` only `ByteString`'s own check can vouch for UTF-8: for plain ASCII it is one
    /// quick pass. Bytes that failed it (a caller's bug) would read as "".
    pub(crate) fn from_checked(bytes: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&bytes).is_ok_and(|s| Self::check_text(s).is_ok()));
        MqttString(ByteString::try_from(bytes).unwrap_or_default())
    }
}

impl Deref for MqttString {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

/// Hashes as `str` does, so that `Borrow<str>` lookups (`HashMap<MqttString, _>::get("a")`)
/// find their keys.
impl Hash for MqttString {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl AsRef<str> for MqttString {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for MqttString {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl TryFrom<&str> for MqttString {
    type Error = StringError;

    fn try_from(s: &str) -> Result<Self, StringError> {
        Self::check_text(s)?;
        Ok(MqttString(ByteString::from(s)))
    }
}

impl TryFrom<String> for MqttString {
    type Error = StringError;

    fn try_from(s: String) -> Result<Self, StringError> {
        Self::check_text(&s)?;
        Ok(MqttString(ByteString::from(s)))
    }
}

impl PartialEq<str> for MqttString {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for MqttString {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for MqttString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for MqttString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_copies_out_of_the_packet_buffer() {
        let packet = Bytes::from_static(b"..client-1..");
        let s = MqttString::from_bytes(packet.slice(2..10)).unwrap();
        let d = s.detach();
        assert_eq!(d, s);
        assert_ne!(d.as_bytes().as_ptr(), s.as_bytes().as_ptr());
        assert_eq!(d.as_bytes().len(), 8);
    }

    #[test]
    fn accepts_well_formed_text() {
        let s = MqttString::from_bytes(Bytes::from_static("a/b/ü/水".as_bytes())).unwrap();
        assert_eq!(s, "a/b/ü/水");
    }

    // [MQTT-1.5.4-1]: ill-formed UTF-8, including encoded surrogates U+D800..U+DFFF.
    #[test]
    fn rejects_ill_formed_utf8_and_surrogates() {
        for bad in [
            &b"\xff"[..],
            b"\xc0\x80",
            b"\xed\xa0\x80",
            b"\xed\xbf\xbf",
            b"a\xe2\x82",
        ] {
            assert_eq!(
                MqttString::from_bytes(Bytes::copy_from_slice(bad)),
                Err(StringError::InvalidUtf8),
                "{bad:x?}"
            );
        }
    }

    // [MQTT-1.5.4-2]: U+0000 is not allowed.
    #[test]
    fn rejects_null_character() {
        assert_eq!(
            MqttString::try_from("a\0b"),
            Err(StringError::NullCharacter)
        );
    }

    #[test]
    fn rejects_over_long_strings() {
        let long = "x".repeat(65_536);
        assert_eq!(
            MqttString::try_from(long),
            Err(StringError::TooLong(65_536))
        );
        assert!(MqttString::try_from("x".repeat(65_535)).is_ok());
    }

    // [MQTT-1.5.4-3]: U+FEFF is kept, never stripped.
    #[test]
    fn keeps_byte_order_mark() {
        let s = MqttString::try_from("\u{feff}a").unwrap();
        assert_eq!(s.as_bytes().as_ref(), b"\xef\xbb\xbfa");
    }

    #[test]
    fn hash_lookups_by_str_work() {
        let mut set = std::collections::HashSet::new();
        set.insert(MqttString::from_static("abc"));
        assert!(set.contains("abc"));
    }

    #[test]
    fn flags_disallowed_code_points() {
        assert!(
            MqttString::try_from("a\u{1}")
                .unwrap()
                .has_disallowed_code_points()
        );
        assert!(
            MqttString::try_from("\u{9f}")
                .unwrap()
                .has_disallowed_code_points()
        );
        assert!(
            MqttString::try_from("\u{fffe}")
                .unwrap()
                .has_disallowed_code_points()
        );
        assert!(
            MqttString::try_from("\u{1ffff}")
                .unwrap()
                .has_disallowed_code_points()
        );
        assert!(
            !MqttString::try_from("hello/wörld")
                .unwrap()
                .has_disallowed_code_points()
        );
    }
}
