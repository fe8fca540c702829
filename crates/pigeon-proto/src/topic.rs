//! TEMPORARY scaffold so the crate compiles while the real topic module is written.
#![allow(missing_docs, unreachable_pub)]
use crate::{MqttString, Protocol, ReasonCode, StringError};
use std::ops::Deref;
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError { #[error("empty")] Empty, #[error("wc")] Wildcard, #[error("s")] InvalidString(StringError) }
impl TopicError { pub fn reason_code(self) -> ReasonCode { ReasonCode::MALFORMED_PACKET } pub fn rule(self, _p: Protocol) -> Option<&'static str> { None } }
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(MqttString);
impl TopicName {
    pub fn from_string(s: MqttString) -> Result<Self, TopicError> { if s.is_empty() { return Err(TopicError::Empty) } if s.contains(['+','#']) { return Err(TopicError::Wildcard) } Ok(TopicName(s)) }
    pub(crate) fn empty() -> Self { TopicName(MqttString::new()) }
    pub fn as_str(&self) -> &str { self.0.as_str() }
    pub fn as_mqtt_string(&self) -> &MqttString { &self.0 }
}
impl Deref for TopicName { type Target = str; fn deref(&self) -> &str { self.0.as_str() } }
impl TryFrom<&str> for TopicName { type Error = TopicError; fn try_from(s: &str) -> Result<Self, TopicError> { Self::from_string(MqttString::try_from(s).map_err(TopicError::InvalidString)?) } }
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicFilter(MqttString);
impl TopicFilter {
    pub fn from_string(s: MqttString) -> Result<Self, TopicError> { if s.is_empty() { return Err(TopicError::Empty) } Ok(TopicFilter(s)) }
    pub fn as_str(&self) -> &str { self.0.as_str() }
    pub fn as_mqtt_string(&self) -> &MqttString { &self.0 }
    pub fn is_shared(&self) -> bool { self.0.starts_with("$share/") }
    pub fn matches(&self, t: &TopicName) -> bool { matches(self.as_str(), t.as_str()) }
}
impl TryFrom<&str> for TopicFilter { type Error = TopicError; fn try_from(s: &str) -> Result<Self, TopicError> { Self::from_string(MqttString::try_from(s).map_err(TopicError::InvalidString)?) } }
#[derive(Debug)] pub enum Level<'a> { Literal(&'a str) }
pub fn matches(f: &str, t: &str) -> bool { f == t }
