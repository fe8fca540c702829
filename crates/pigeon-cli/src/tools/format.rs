//! How `pigeon-sub` prints a message: the payload, `-v` ("topic payload"), or a `-F` format
//! with `%` message parameters (flags, field width and precision), `@` time conversions and
//! `\` escapes, as the `mosquitto_sub(1)` manual describes them.

use std::time::{SystemTime, UNIX_EPOCH};

use pigeon_broker::log::{BrokenDownTime, strftime};
use pigeon_client::Publish;
use pigeon_client::proto::properties::PayloadFormat;

use super::json::Json;

/// One piece of a `-F` format.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Bytes printed as they are.
    Literal(Vec<u8>),
    /// A `%` parameter.
    Param {
        conversion: u8,
        zero: bool,
        left: bool,
        width: Option<usize>,
        precision: Option<usize>,
    },
    /// `@X`: strftime's `%X`, or `@N` (nanoseconds).
    Time(char),
}

/// A parsed `-F` format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    pieces: Vec<Piece>,
}

impl Format {
    /// Parses `-F`'s argument.
    ///
    /// # Errors
    /// The message for `Error: ...` when a sequence is incomplete or unknown.
    pub fn parse(format: &str) -> Result<Format, String> {
        let mut pieces = Vec::new();
        let mut lit = Vec::new();
        let mut chars = format.chars().peekable();
        let incomplete = || "Incomplete format specifier.".to_owned();
        while let Some(c) = chars.next() {
            match c {
                '%' => {
                    let (mut zero, mut left) = (false, false);
                    while let Some(&f @ ('0' | '-')) = chars.peek() {
                        if f == '0' {
                            zero = true;
                        } else {
                            left = true;
                        }
                        chars.next();
                    }
                    let mut width = None;
                    while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                        width = Some(width.unwrap_or(0) * 10 + d as usize);
                        chars.next();
                    }
                    let mut precision = None;
                    if chars.peek() == Some(&'.') {
                        chars.next();
                        let mut p = 0;
                        while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                            p = p * 10 + d as usize;
                            chars.next();
                        }
                        precision = Some(p);
                    }
                    let conversion = chars.next().ok_or_else(incomplete)?;
                    if conversion == '%' {
                        lit.push(b'%');
                        continue;
                    }
                    if !"ACDEFIjJlmpPqrRStUxX".contains(conversion) {
                        return Err(format!("Invalid format specifier '{conversion}'."));
                    }
                    if !lit.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Param {
                        conversion: conversion as u8,
                        zero: zero && !left,
                        left,
                        width,
                        precision,
                    });
                }
                '@' => {
                    let c = chars.next().ok_or_else(incomplete)?;
                    if c == '@' {
                        lit.push(b'@');
                        continue;
                    }
                    if !lit.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Time(c));
                }
                '\\' => {
                    let c = chars
                        .next()
                        .ok_or_else(|| "Incomplete escape specifier.".to_owned())?;
                    lit.push(match c {
                        '\\' => b'\\',
                        '0' => 0,
                        'a' => 0x07,
                        'e' => 0x1B,
                        'n' => b'\n',
                        'r' => b'\r',
                        't' => b'\t',
                        'v' => 0x0B,
                        other => return Err(format!("Invalid escape specifier '{other}'.")),
                    });
                }
                c => {
                    let mut buf = [0; 4];
                    lit.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Literal(lit));
        }
        Ok(Format { pieces })
    }
}

/// How messages are printed.
#[derive(Debug, Clone)]
pub struct Printer {
    /// `-F`.
    pub format: Option<Format>,
    /// `-v`.
    pub verbose: bool,
    /// `-N`.
    pub no_eol: bool,
    /// `--pretty`.
    pub pretty: bool,
}

/// A message printed: what goes to standard output and, for `%J` with a payload that is not
/// JSON, the error for standard error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Printed {
    /// Standard output's bytes.
    pub out: Vec<u8>,
    /// An error line (without `Error: ` and the newline).
    pub error: Option<String>,
}

/// The time a message is printed at.
#[derive(Debug, Clone)]
pub struct Stamp {
    local: BrokenDownTime,
    nanos: u32,
    epoch: u64,
}

impl Stamp {
    /// `now` in the local time zone.
    pub fn new(now: SystemTime) -> Self {
        let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        Stamp {
            local: BrokenDownTime::local(now),
            nanos: since.subsec_nanos(),
            epoch: since.as_secs(),
        }
    }
}

/// Pads `s` to `width`: on the right with `left`, else on the left with zeros or blanks.
fn pad(out: &mut Vec<u8>, s: &[u8], width: Option<usize>, zero: bool, left: bool) {
    let fill = width.unwrap_or(0).saturating_sub(s.len());
    if left {
        out.extend_from_slice(s);
        out.extend(std::iter::repeat_n(b' ', fill));
    } else {
        out.extend(std::iter::repeat_n(if zero { b'0' } else { b' ' }, fill));
        out.extend_from_slice(s);
    }
}

fn hex(bytes: &[u8], upper: bool) -> Vec<u8> {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        if upper {
            s.push_str(&format!("{b:02X}"));
        } else {
            s.push_str(&format!("{b:02x}"));
        }
    }
    s.into_bytes()
}

impl Printer {
    /// The bytes to print for `message`, received at `stamp`.
    pub fn print(&self, message: &Publish, stamp: &Stamp) -> Printed {
        let mut printed = Printed::default();
        let out = &mut printed.out;
        match &self.format {
            Some(format) => {
                for piece in &format.pieces {
                    if let Err(e) = self.piece(piece, message, stamp, out) {
                        printed.error = Some(e);
                        break;
                    }
                }
            }
            None if self.verbose => {
                if message.payload.is_empty() {
                    if self.no_eol {
                        return printed;
                    }
                    out.extend_from_slice(message.topic.as_str().as_bytes());
                    out.extend_from_slice(b" (null)");
                } else {
                    out.extend_from_slice(message.topic.as_str().as_bytes());
                    out.push(b' ');
                    out.extend_from_slice(&message.payload);
                }
            }
            None => out.extend_from_slice(&message.payload),
        }
        if !self.no_eol {
            printed.out.push(b'\n');
        }
        printed
    }

    fn piece(
        &self,
        piece: &Piece,
        m: &Publish,
        stamp: &Stamp,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let p = &m.properties;
        match piece {
            Piece::Literal(bytes) => out.extend_from_slice(bytes),
            Piece::Time('N') => out.extend_from_slice(format!("{:09}", stamp.nanos).as_bytes()),
            Piece::Time(c) => {
                out.extend_from_slice(strftime(&format!("%{c}"), &stamp.local).as_bytes());
            }
            &Piece::Param {
                conversion,
                zero,
                left,
                width,
                precision,
            } => {
                let text = |s: &[u8], out: &mut Vec<u8>| {
                    let s = match precision {
                        Some(p) if p < s.len() => &s[..p],
                        _ => s,
                    };
                    pad(out, s, width, false, left);
                };
                let number = |n: Option<u64>, out: &mut Vec<u8>| {
                    let s = n.map(|n| n.to_string()).unwrap_or_default();
                    pad(out, s.as_bytes(), width, zero, left);
                };
                match conversion {
                    b'A' => number(p.topic_alias.map(|a| u64::from(a.get())), out),
                    b'C' => text(
                        p.content_type
                            .as_ref()
                            .map_or(b"", |c| c.as_str().as_bytes()),
                        out,
                    ),
                    b'D' => {
                        if let Some(d) = &p.correlation_data {
                            out.extend_from_slice(d);
                        }
                    }
                    b'E' => number(p.message_expiry_interval.map(u64::from), out),
                    b'F' => number(
                        p.payload_format_indicator.map(|f| match f {
                            PayloadFormat::Unspecified => 0,
                            PayloadFormat::Utf8 => 1,
                        }),
                        out,
                    ),
                    b'I' => text(iso_time(stamp).as_bytes(), out),
                    b'j' | b'J' => {
                        let json = self.json(m, stamp, conversion == b'J').ok_or_else(|| {
                            format!(
                                "Message payload is not valid JSON on topic {}.",
                                m.topic.as_str()
                            )
                        })?;
                        out.extend_from_slice(&json.print(self.pretty));
                    }
                    b'l' => number(Some(m.payload.len() as u64), out),
                    b'm' => number(Some(m.packet_id.map_or(0, |id| u64::from(id.get()))), out),
                    b'p' => {
                        // A field width is also the most bytes printed (precision is not).
                        let n = width.map_or(m.payload.len(), |w| w.min(m.payload.len()));
                        pad(out, &m.payload[..n], width, false, left);
                    }
                    b'P' => {
                        for (i, (k, v)) in p.user_properties.iter().enumerate() {
                            if i > 0 {
                                out.push(b' ');
                            }
                            out.extend_from_slice(k.as_str().as_bytes());
                            out.push(b':');
                            out.extend_from_slice(v.as_str().as_bytes());
                        }
                    }
                    b'q' => out.push(b'0' + m.qos as u8),
                    b'r' => out.push(if m.retain { b'1' } else { b'0' }),
                    b'R' => text(
                        p.response_topic
                            .as_ref()
                            .map_or(b"", |t| t.as_str().as_bytes()),
                        out,
                    ),
                    b'S' => number(
                        p.subscription_identifiers
                            .first()
                            .map(|s| u64::from(s.get())),
                        out,
                    ),
                    b't' => text(m.topic.as_str().as_bytes(), out),
                    b'U' => out.extend_from_slice(
                        format!("{}.{:09}", stamp.epoch, stamp.nanos).as_bytes(),
                    ),
                    b'x' | b'X' => {
                        let upper = conversion == b'X';
                        match width {
                            // With a field width, Mosquitto prints as many whole bytes as
                            // fit in min(payload length, width) hex digits.
                            Some(w) => {
                                let n = m.payload.len().min(w) / 2;
                                pad(out, &hex(&m.payload[..n], upper), width, zero, left);
                            }
                            None => out.extend_from_slice(&hex(&m.payload, upper)),
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The `%j` (payload quoted) or `%J` (payload parsed as JSON) object.
    fn json(&self, m: &Publish, stamp: &Stamp, parse_payload: bool) -> Option<Json> {
        let tst = format!(
            "{}.{:06}Z{}",
            strftime("%Y-%m-%dT%H:%M:%S", &stamp.local),
            stamp.nanos / 1000,
            strftime("%z", &stamp.local)
        );
        let mut obj = vec![
            (b"tst".to_vec(), Json::str(tst)),
            (b"topic".to_vec(), Json::str(m.topic.as_str())),
            (b"qos".to_vec(), Json::Number(f64::from(m.qos as u8))),
            (
                b"retain".to_vec(),
                Json::Number(f64::from(u8::from(m.retain))),
            ),
            (b"payloadlen".to_vec(), Json::Number(m.payload.len() as f64)),
        ];
        if let Some(id) = m.packet_id {
            obj.push((b"mid".to_vec(), Json::Number(f64::from(id.get()))));
        }
        let p = &m.properties;
        if !p.is_empty() {
            // In the order pigeon's broker encodes them.
            let mut props = Vec::new();
            let num = |k: &str, v: Option<u64>, props: &mut Vec<(Vec<u8>, Json)>| {
                if let Some(v) = v {
                    props.push((k.as_bytes().to_vec(), Json::Number(v as f64)));
                }
            };
            num(
                "payload-format-indicator",
                p.payload_format_indicator.map(|f| f as u64),
                &mut props,
            );
            num(
                "message-expiry-interval",
                p.message_expiry_interval.map(u64::from),
                &mut props,
            );
            num(
                "topic-alias",
                p.topic_alias.map(|a| u64::from(a.get())),
                &mut props,
            );
            if let Some(t) = &p.response_topic {
                props.push((b"response-topic".to_vec(), Json::str(t.as_str())));
            }
            if let Some(d) = &p.correlation_data {
                props.push((b"correlation-data".to_vec(), Json::str(d)));
            }
            if let Some(c) = &p.content_type {
                props.push((b"content-type".to_vec(), Json::str(c.as_str())));
            }
            for s in &p.subscription_identifiers {
                num(
                    "subscription-identifier",
                    Some(u64::from(s.get())),
                    &mut props,
                );
            }
            if !p.user_properties.is_empty() {
                let users = p
                    .user_properties
                    .iter()
                    .map(|(k, v)| (k.as_str().as_bytes().to_vec(), Json::str(v.as_str())))
                    .collect();
                props.push((b"user-properties".to_vec(), Json::Object(users)));
            }
            obj.push((b"properties".to_vec(), Json::Object(props)));
        }
        let payload = if parse_payload {
            Json::parse(&m.payload)?
        } else {
            Json::String(m.payload.to_vec())
        };
        obj.push((b"payload".to_vec(), payload));
        Some(Json::Object(obj))
    }
}

/// `%I`: ISO 8601 local time with its offset.
fn iso_time(stamp: &Stamp) -> String {
    strftime("%Y-%m-%dT%H:%M:%S%z", &stamp.local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pigeon_client::proto::TopicName;

    fn message(payload: &'static [u8]) -> Publish {
        Publish {
            retain: true,
            ..Publish::new(TopicName::from_static("w/x"), payload)
        }
    }

    fn print(format: &str, payload: &'static [u8]) -> String {
        let printer = Printer {
            format: Some(Format::parse(format).unwrap()),
            verbose: false,
            no_eol: true,
            pretty: false,
        };
        let stamp = Stamp::new(UNIX_EPOCH);
        String::from_utf8(printer.print(&message(payload), &stamp).out).unwrap()
    }

    #[test]
    fn widths_as_mosquitto_prints_them() {
        for (format, payload, expected) in [
            ("[%08x]", &b"ab"[..], "[00000061]"),
            ("[%8x]", b"ab", "[      61]"),
            ("[%1x]", b"ab", "[ ]"),
            ("[%4x]", b"abcdefgh", "[6162]"),
            ("[%9x]", b"abcdefgh", "[ 61626364]"),
            ("[%x|%X]", b"\xab", "[ab|AB]"),
            ("[%5t|%-5t|%5.1t|%.t|%1.t]", b"", "[  w/x|w/x  |    w|| ]"),
            ("[%05l|%-05l|%5m|%5q|%5r]", b"ab", "[00002|2    |    0|0|1]"),
            ("[%5A|%05F|%8P|%5D]", b"", "[     |00000||]"),
            ("%%@@\\t\\\\", b"", "%@\t\\"),
        ] {
            assert_eq!(print(format, payload), expected, "{format}");
        }
    }

    #[test]
    fn bad_formats() {
        assert_eq!(
            Format::parse("%Z").unwrap_err(),
            "Invalid format specifier 'Z'."
        );
        assert_eq!(
            Format::parse("%5").unwrap_err(),
            "Incomplete format specifier."
        );
        assert_eq!(
            Format::parse("@").unwrap_err(),
            "Incomplete format specifier."
        );
        assert_eq!(
            Format::parse("\\").unwrap_err(),
            "Incomplete escape specifier."
        );
        assert_eq!(
            Format::parse("\\q").unwrap_err(),
            "Invalid escape specifier 'q'."
        );
    }
}
