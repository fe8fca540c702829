//! What the log holds: one [`Record`] per change of the broker's durable state, and its
//! binary form (a tag byte, then fixed-width little-endian integers and length-prefixed
//! byte strings). Messages keep their PUBLISH encoding (MQTT 5.0, with every property), so
//! the codec that the wire uses stores them too.

use bytes::Bytes;

/// The version written in each snapshot's header; bumped when the format changes.
pub const FORMAT: u32 = 1;
/// The first bytes of every snapshot's header record, so a Mosquitto database (or anything
/// else) in its place is recognised.
pub const MAGIC: &[u8; 8] = b"PIGEONDB";

/// A message as stored: its PUBLISH (MQTT 5.0 encoding, packet identifier 1 when QoS > 0),
/// when it expires (wall clock, Unix milliseconds), and who published it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The encoded PUBLISH.
    pub publish: Bytes,
    /// Message expiry as Unix milliseconds.
    pub expires_ms: Option<u64>,
    /// The publisher's Client Identifier.
    pub origin: Option<String>,
}

/// One subscription of a stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSubscription {
    /// The full filter (with any `$share/{group}/`).
    pub filter: String,
    /// The options byte as MQTT 5.0 encodes it.
    pub options: u8,
    /// The Subscription Identifier, 0 for none.
    pub id: u32,
}

/// One message held for a client: queued, or in flight with its packet identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDelivery {
    /// The stored message ([`Record::Message`]).
    pub message: u64,
    /// QoS of the delivery.
    pub qos: u8,
    /// RETAIN flag as delivered.
    pub retain: bool,
    /// Subscription Identifiers it carries.
    pub subscription_ids: Vec<u32>,
    /// The shared subscription it came through.
    pub shared: Option<String>,
    /// In flight: its packet identifier and whether PUBREC came (PUBREL sent).
    pub inflight: Option<(u16, bool)>,
}

/// A persistent session as stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredSession {
    /// The Client Identifier.
    pub client: String,
    /// Protocol level (3, 4 or 5).
    pub protocol: u8,
    /// Session Expiry Interval in seconds; `None`: never.
    pub expiry: Option<u32>,
    /// When its client left (Unix ms); `None` while connected.
    pub disconnected_ms: Option<u64>,
    /// Its subscriptions.
    pub subscriptions: Vec<StoredSubscription>,
    /// Messages held for it, in order (in flight first).
    pub deliveries: Vec<StoredDelivery>,
    /// QoS 2 packet identifiers received from it, awaiting PUBREL.
    pub inbound: Vec<u16>,
}

/// One change of the durable state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// First record of a snapshot: the format, and the first log segment to replay after it.
    Header {
        /// [`FORMAT`].
        format: u32,
        /// Segments numbered from this one follow the snapshot.
        base: u64,
    },
    /// A retained message set (`Some`) or cleared on `topic`.
    Retain {
        /// The topic.
        topic: String,
        /// The message, `None` when cleared.
        message: Option<StoredMessage>,
    },
    /// Who published the retained message on `topic` just set (for `check_retain_source`).
    RetainSource {
        /// The topic.
        topic: String,
        /// The publisher's username.
        username: Option<String>,
        /// The publisher's Client Identifier.
        client_id: String,
    },
    /// A message that sessions hold, under its number.
    Message {
        /// Its number.
        id: u64,
        /// The message.
        message: StoredMessage,
    },
    /// A whole session (replaces what was stored for its client).
    Session(StoredSession),
    /// A session's protocol, expiry and subscriptions changed; what it holds stays.
    SessionMeta(StoredSession),
    /// A session ended.
    SessionGone {
        /// The Client Identifier.
        client: String,
    },
    /// A message queued for a client.
    Enqueue {
        /// The Client Identifier.
        client: String,
        /// The delivery.
        delivery: StoredDelivery,
    },
    /// A held message went in flight under a packet identifier.
    Sent {
        /// The Client Identifier.
        client: String,
        /// The message.
        message: u64,
        /// Its packet identifier.
        packet_id: u16,
    },
    /// PUBREC came for a QoS 2 message in flight (PUBREL sent).
    Released {
        /// The Client Identifier.
        client: String,
        /// Its packet identifier.
        packet_id: u16,
    },
    /// A held message is done with (acknowledged, dropped or expired).
    Done {
        /// The Client Identifier.
        client: String,
        /// The message.
        message: u64,
    },
    /// A QoS 2 message from a client was received (PUBREC due); PUBREL awaited.
    InboundAdd {
        /// The Client Identifier.
        client: String,
        /// The packet identifier.
        packet_id: u16,
    },
    /// PUBREL came for a QoS 2 message from a client.
    InboundDone {
        /// The Client Identifier.
        client: String,
        /// The packet identifier.
        packet_id: u16,
    },
    /// A QoS 2 message received from a client with a persistent session, and its packet
    /// identifier now awaiting PUBREL: [`Record::Message`] and [`Record::InboundAdd`] in one
    /// record, so that neither is ever durable without the other (a resent PUBLISH is then
    /// neither lost nor routed twice after a crash).
    InboundMessage {
        /// The message's number.
        id: u64,
        /// The message.
        message: StoredMessage,
        /// The publisher's Client Identifier.
        client: String,
        /// The packet identifier.
        packet_id: u16,
    },
    /// Records that stand or fall together (everything one PUBLISH changed: the message, its
    /// packet identifier awaiting PUBREL, the sessions it was queued for): one frame, so a
    /// crash keeps all of them or none.
    Group(Vec<Record>),
    /// A will waiting for its delay.
    Will {
        /// The Client Identifier.
        client: String,
        /// The will.
        message: StoredMessage,
        /// When it is due (Unix ms).
        due_ms: u64,
    },
    /// A waiting will was sent or cancelled.
    WillGone {
        /// The Client Identifier.
        client: String,
    },
}

/// A record that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unreadable record")]
pub struct BadRecord;

impl Record {
    /// Appends the record's binary form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let w = &mut Writer(out);
        match self {
            Record::Header { format, base } => {
                w.u8(1);
                w.0.extend_from_slice(MAGIC);
                w.u32(*format);
                w.u64(*base);
            }
            Record::Retain { topic, message } => {
                w.u8(2);
                w.str(topic);
                w.opt_message(message.as_ref());
            }
            Record::RetainSource {
                topic,
                username,
                client_id,
            } => {
                w.u8(17);
                w.str(topic);
                w.opt_str(username.as_deref());
                w.str(client_id);
            }
            Record::Message { id, message } => {
                w.u8(3);
                w.u64(*id);
                w.message(message);
            }
            Record::Session(s) => {
                w.u8(4);
                w.session(s, true);
            }
            Record::SessionMeta(s) => {
                w.u8(5);
                w.session(s, false);
            }
            Record::SessionGone { client } => {
                w.u8(6);
                w.str(client);
            }
            Record::Enqueue { client, delivery } => {
                w.u8(7);
                w.str(client);
                w.delivery(delivery);
            }
            Record::Sent {
                client,
                message,
                packet_id,
            } => {
                w.u8(8);
                w.str(client);
                w.u64(*message);
                w.u16(*packet_id);
            }
            Record::Released { client, packet_id } => {
                w.u8(9);
                w.str(client);
                w.u16(*packet_id);
            }
            Record::Done { client, message } => {
                w.u8(10);
                w.str(client);
                w.u64(*message);
            }
            Record::InboundAdd { client, packet_id } => {
                w.u8(11);
                w.str(client);
                w.u16(*packet_id);
            }
            Record::InboundDone { client, packet_id } => {
                w.u8(12);
                w.str(client);
                w.u16(*packet_id);
            }
            Record::Will {
                client,
                message,
                due_ms,
            } => {
                w.u8(13);
                w.str(client);
                w.message(message);
                w.u64(*due_ms);
            }
            Record::WillGone { client } => {
                w.u8(14);
                w.str(client);
            }
            Record::Group(records) => {
                w.u8(16);
                w.u32(u32::try_from(records.len()).unwrap_or(0));
                let mut inner = Vec::new();
                for r in records {
                    inner.clear();
                    r.encode(&mut inner);
                    w.bytes(&inner);
                }
            }
            Record::InboundMessage {
                id,
                message,
                client,
                packet_id,
            } => {
                w.u8(15);
                w.u64(*id);
                w.message(message);
                w.str(client);
                w.u16(*packet_id);
            }
        }
    }

    /// Reads a record from its binary form.
    ///
    /// # Errors
    /// [`BadRecord`] when the bytes are not one whole record.
    pub fn decode(data: &[u8]) -> Result<Record, BadRecord> {
        let r = &mut Reader(data);
        let record = match r.u8()? {
            1 => {
                if r.take(MAGIC.len())? != MAGIC {
                    return Err(BadRecord);
                }
                Record::Header {
                    format: r.u32()?,
                    base: r.u64()?,
                }
            }
            2 => Record::Retain {
                topic: r.string()?,
                message: r.opt_message()?,
            },
            17 => Record::RetainSource {
                topic: r.string()?,
                username: r.opt_string()?,
                client_id: r.string()?,
            },
            3 => Record::Message {
                id: r.u64()?,
                message: r.message()?,
            },
            4 => Record::Session(r.session(true)?),
            5 => Record::SessionMeta(r.session(false)?),
            6 => Record::SessionGone {
                client: r.string()?,
            },
            7 => Record::Enqueue {
                client: r.string()?,
                delivery: r.delivery()?,
            },
            8 => Record::Sent {
                client: r.string()?,
                message: r.u64()?,
                packet_id: r.u16()?,
            },
            9 => Record::Released {
                client: r.string()?,
                packet_id: r.u16()?,
            },
            10 => Record::Done {
                client: r.string()?,
                message: r.u64()?,
            },
            11 => Record::InboundAdd {
                client: r.string()?,
                packet_id: r.u16()?,
            },
            12 => Record::InboundDone {
                client: r.string()?,
                packet_id: r.u16()?,
            },
            13 => Record::Will {
                client: r.string()?,
                message: r.message()?,
                due_ms: r.u64()?,
            },
            14 => Record::WillGone {
                client: r.string()?,
            },
            16 => {
                let n = r.count(5)?;
                let mut records = Vec::with_capacity(n);
                for _ in 0..n {
                    // Groups are flat: a group inside one is refused (and recursion bounded).
                    match Record::decode(r.bytes()?)? {
                        Record::Group(_) => return Err(BadRecord),
                        record => records.push(record),
                    }
                }
                Record::Group(records)
            }
            15 => Record::InboundMessage {
                id: r.u64()?,
                message: r.message()?,
                client: r.string()?,
                packet_id: r.u16()?,
            },
            _ => return Err(BadRecord),
        };
        if !r.0.is_empty() {
            return Err(BadRecord);
        }
        Ok(record)
    }
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn opt_u64(&mut self, v: Option<u64>) {
        match v {
            Some(v) => {
                self.u8(1);
                self.u64(v);
            }
            None => self.u8(0),
        }
    }
    fn opt_str(&mut self, v: Option<&str>) {
        match v {
            Some(v) => {
                self.u8(1);
                self.str(v);
            }
            None => self.u8(0),
        }
    }
    fn message(&mut self, m: &StoredMessage) {
        self.bytes(&m.publish);
        self.opt_u64(m.expires_ms);
        self.opt_str(m.origin.as_deref());
    }
    fn opt_message(&mut self, m: Option<&StoredMessage>) {
        match m {
            Some(m) => {
                self.u8(1);
                self.message(m);
            }
            None => self.u8(0),
        }
    }
    fn delivery(&mut self, d: &StoredDelivery) {
        self.u64(d.message);
        self.u8(d.qos);
        self.u8(u8::from(d.retain));
        self.u32(u32::try_from(d.subscription_ids.len()).unwrap_or(0));
        for id in &d.subscription_ids {
            self.u32(*id);
        }
        self.opt_str(d.shared.as_deref());
        match d.inflight {
            Some((id, released)) => {
                self.u8(1 + u8::from(released));
                self.u16(id);
            }
            None => self.u8(0),
        }
    }
    fn session(&mut self, s: &StoredSession, whole: bool) {
        self.str(&s.client);
        self.u8(s.protocol);
        self.opt_u64(s.expiry.map(u64::from));
        self.opt_u64(s.disconnected_ms);
        self.u32(u32::try_from(s.subscriptions.len()).unwrap_or(0));
        for sub in &s.subscriptions {
            self.str(&sub.filter);
            self.u8(sub.options);
            self.u32(sub.id);
        }
        if whole {
            self.u32(u32::try_from(s.deliveries.len()).unwrap_or(0));
            for d in &s.deliveries {
                self.delivery(d);
            }
            self.u32(u32::try_from(s.inbound.len()).unwrap_or(0));
            for id in &s.inbound {
                self.u16(*id);
            }
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BadRecord> {
        if self.0.len() < n {
            return Err(BadRecord);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], BadRecord> {
        self.take(N)?.try_into().map_err(|_| BadRecord)
    }
    fn u8(&mut self) -> Result<u8, BadRecord> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, BadRecord> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, BadRecord> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, BadRecord> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn len(&mut self) -> Result<usize, BadRecord> {
        let n = self.u32()? as usize;
        if n > self.0.len() {
            return Err(BadRecord);
        }
        Ok(n)
    }
    fn bytes(&mut self) -> Result<&'a [u8], BadRecord> {
        let n = self.len()?;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, BadRecord> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| BadRecord)
    }
    fn flag(&mut self) -> Result<bool, BadRecord> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(BadRecord),
        }
    }
    fn opt_u64(&mut self) -> Result<Option<u64>, BadRecord> {
        Ok(if self.flag()? {
            Some(self.u64()?)
        } else {
            None
        })
    }
    fn opt_string(&mut self) -> Result<Option<String>, BadRecord> {
        Ok(if self.flag()? {
            Some(self.string()?)
        } else {
            None
        })
    }
    fn message(&mut self) -> Result<StoredMessage, BadRecord> {
        Ok(StoredMessage {
            publish: Bytes::copy_from_slice(self.bytes()?),
            expires_ms: self.opt_u64()?,
            origin: self.opt_string()?,
        })
    }
    fn opt_message(&mut self) -> Result<Option<StoredMessage>, BadRecord> {
        Ok(if self.flag()? {
            Some(self.message()?)
        } else {
            None
        })
    }
    fn count(&mut self, min_size: usize) -> Result<usize, BadRecord> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_size) > self.0.len() {
            return Err(BadRecord);
        }
        Ok(n)
    }
    fn delivery(&mut self) -> Result<StoredDelivery, BadRecord> {
        let message = self.u64()?;
        let qos = self.u8()?;
        let retain = self.flag()?;
        let n = self.count(4)?;
        let subscription_ids = (0..n).map(|_| self.u32()).collect::<Result<_, _>>()?;
        let shared = self.opt_string()?;
        let inflight = match self.u8()? {
            0 => None,
            s @ (1 | 2) => Some((self.u16()?, s == 2)),
            _ => return Err(BadRecord),
        };
        Ok(StoredDelivery {
            message,
            qos,
            retain,
            subscription_ids,
            shared,
            inflight,
        })
    }
    fn session(&mut self, whole: bool) -> Result<StoredSession, BadRecord> {
        let client = self.string()?;
        let protocol = self.u8()?;
        let expiry = match self.opt_u64()? {
            Some(v) => Some(u32::try_from(v).map_err(|_| BadRecord)?),
            None => None,
        };
        let disconnected_ms = self.opt_u64()?;
        let n = self.count(9)?;
        let mut subscriptions = Vec::with_capacity(n);
        for _ in 0..n {
            subscriptions.push(StoredSubscription {
                filter: self.string()?,
                options: self.u8()?,
                id: self.u32()?,
            });
        }
        let mut s = StoredSession {
            client,
            protocol,
            expiry,
            disconnected_ms,
            subscriptions,
            deliveries: Vec::new(),
            inbound: Vec::new(),
        };
        if whole {
            let n = self.count(16)?;
            for _ in 0..n {
                s.deliveries.push(self.delivery()?);
            }
            let n = self.count(2)?;
            for _ in 0..n {
                s.inbound.push(self.u16()?);
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn message(payload: &'static [u8]) -> StoredMessage {
        StoredMessage {
            publish: Bytes::from_static(payload),
            expires_ms: Some(7),
            origin: Some("pub".into()),
        }
    }

    #[test]
    fn every_record_round_trips_and_any_cut_is_refused() {
        let session = StoredSession {
            client: "c".into(),
            protocol: 5,
            expiry: Some(60),
            disconnected_ms: Some(12),
            subscriptions: vec![StoredSubscription {
                filter: "$share/g/a/#".into(),
                options: 0x2A,
                id: 9,
            }],
            deliveries: vec![StoredDelivery {
                message: 3,
                qos: 2,
                retain: true,
                subscription_ids: vec![1, 2],
                shared: Some("$share/g/a/#".into()),
                inflight: Some((77, true)),
            }],
            inbound: vec![4, 5],
        };
        let records = [
            Record::Header {
                format: FORMAT,
                base: 3,
            },
            Record::Retain {
                topic: "t".into(),
                message: Some(message(b"x")),
            },
            Record::Retain {
                topic: "t".into(),
                message: None,
            },
            Record::RetainSource {
                topic: "t".into(),
                username: Some("u".into()),
                client_id: "c".into(),
            },
            Record::Message {
                id: 1,
                message: message(b"m"),
            },
            Record::Session(session.clone()),
            Record::SessionMeta(StoredSession {
                deliveries: vec![],
                inbound: vec![],
                ..session
            }),
            Record::SessionGone { client: "c".into() },
            Record::Enqueue {
                client: "c".into(),
                delivery: StoredDelivery {
                    message: 1,
                    qos: 1,
                    retain: false,
                    subscription_ids: vec![],
                    shared: None,
                    inflight: None,
                },
            },
            Record::Sent {
                client: "c".into(),
                message: 1,
                packet_id: 9,
            },
            Record::Released {
                client: "c".into(),
                packet_id: 9,
            },
            Record::Done {
                client: "c".into(),
                message: 1,
            },
            Record::InboundAdd {
                client: "c".into(),
                packet_id: 2,
            },
            Record::InboundDone {
                client: "c".into(),
                packet_id: 2,
            },
            Record::Will {
                client: "c".into(),
                message: message(b"w"),
                due_ms: 99,
            },
            Record::WillGone { client: "c".into() },
            Record::InboundMessage {
                id: 4,
                message: message(b"q2"),
                client: "c".into(),
                packet_id: 3,
            },
            Record::Group(vec![
                Record::Done {
                    client: "c".into(),
                    message: 1,
                },
                Record::WillGone { client: "d".into() },
            ]),
        ];
        for record in records {
            let mut out = Vec::new();
            record.encode(&mut out);
            assert_eq!(Record::decode(&out), Ok(record.clone()));
            for cut in 0..out.len() {
                assert_eq!(
                    Record::decode(&out[..cut]),
                    Err(BadRecord),
                    "{record:?} cut {cut}"
                );
            }
            out.push(0);
            assert_eq!(Record::decode(&out), Err(BadRecord));
        }
    }

    #[test]
    fn a_group_inside_a_group_is_refused() {
        let mut out = Vec::new();
        Record::Group(vec![Record::Group(vec![])]).encode(&mut out);
        assert_eq!(Record::decode(&out), Err(BadRecord));
    }

    proptest::proptest! {
        // Arbitrary bytes never panic the decoders, and what decodes encodes back to the same.
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            if let Ok(record) = Record::decode(&data) {
                let mut out = Vec::new();
                record.encode(&mut out);
                proptest::prop_assert_eq!(&out, &data);
            }
            let mut n = 0;
            let _ = crate::store::frame::scan(&data, |_, _| n += 1);
        }

        // Records of every kind survive framing and scanning whole, however many.
        #[test]
        fn framed_records_come_back(ids in proptest::collection::vec(0u64..1000, 0..20)) {
            let records: Vec<Record> = ids
                .iter()
                .map(|&id| Record::Message { id, message: message(b"p") })
                .collect();
            let mut data = Vec::new();
            for r in &records {
                let mut p = Vec::new();
                r.encode(&mut p);
                crate::store::frame::encode(&p, &mut data);
            }
            let mut back = Vec::new();
            let end = crate::store::frame::scan(&data, |_, p| back.push(Record::decode(p)));
            proptest::prop_assert_eq!(end, crate::store::frame::End::Clean);
            proptest::prop_assert_eq!(back, records.into_iter().map(Ok).collect::<Vec<_>>());
        }
    }
}
