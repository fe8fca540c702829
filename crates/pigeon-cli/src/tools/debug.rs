//! `-d`: one line per packet sent and received, as `mosquitto_pub -d` and `mosquitto_sub -d`
//! print them (`Client <id> sending PUBLISH (d0, q1, r0, m1, 'topic', ... (5 bytes))`).

use pigeon_client::{Packet, Protocol};

/// Turns packet events into `-d` lines, keeping track of the client identifier they show.
#[derive(Debug, Clone)]
pub struct Debug {
    /// The identifier shown: the one sent, `(null)` while empty, then the one the server
    /// assigned.
    id: String,
    protocol: Protocol,
    /// QoS 0 messages carry no identifier; Mosquitto numbers them anyway.
    next_mid: u16,
}

impl Debug {
    /// For a client connecting with `client_id` (empty: assigned by the server).
    pub fn new(client_id: &str, protocol: Protocol) -> Self {
        Debug {
            id: if client_id.is_empty() {
                "(null)".to_owned()
            } else {
                client_id.to_owned()
            },
            protocol,
            next_mid: 1,
        }
    }

    /// The line of an outgoing packet (several for a SUBSCRIBE with several topics).
    pub fn sent(&mut self, packet: &Packet) -> Vec<String> {
        let id = &self.id;
        let line = |s: String| vec![format!("Client {id} sending {s}")];
        match packet {
            Packet::Connect(_) => line("CONNECT".into()),
            Packet::Publish(p) => {
                let mid = match p.packet_id {
                    Some(m) => {
                        self.next_mid = m.get().wrapping_add(1);
                        m.get()
                    }
                    None => {
                        let m = self.next_mid;
                        self.next_mid = m.wrapping_add(1);
                        m
                    }
                };
                line(publish_summary(p, mid))
            }
            Packet::PubAck(a) => line(format!("PUBACK (m{}, rc{})", a.packet_id, a.reason.0)),
            Packet::PubRec(a) => line(format!("PUBREC (m{}, rc{})", a.packet_id, a.reason.0)),
            Packet::PubRel(a) => line(format!("PUBREL (m{})", a.packet_id)),
            Packet::PubComp(a) => line(format!("PUBCOMP (m{})", a.packet_id)),
            Packet::Subscribe(s) => {
                self.next_mid = s.packet_id.get().wrapping_add(1);
                s.filters
                    .iter()
                    .map(|(filter, o)| {
                        let options = (u8::from(o.no_local) << 2)
                            | (u8::from(o.retain_as_published) << 3)
                            | ((o.retain_handling as u8) << 4);
                        format!(
                            "Client {id} sending SUBSCRIBE (Mid: {}, Topic: {}, QoS: {}, \
                             Options: 0x{options:02x})",
                            s.packet_id,
                            filter.as_str(),
                            o.qos as u8
                        )
                    })
                    .collect()
            }
            Packet::Unsubscribe(u) => {
                self.next_mid = u.packet_id.get().wrapping_add(1);
                u.filters
                    .iter()
                    .map(|f| {
                        format!(
                            "Client {id} sending UNSUBSCRIBE (Mid: {}, Topic: {})",
                            u.packet_id,
                            f.as_str()
                        )
                    })
                    .collect()
            }
            Packet::PingReq(_) => line("PINGREQ".into()),
            Packet::Disconnect(_) => line("DISCONNECT".into()),
            Packet::Auth(_) => line("AUTH".into()),
            other => line(format!("{other:?}")),
        }
    }

    /// The line of an incoming packet.
    pub fn received(&mut self, packet: &Packet) -> Vec<String> {
        if let Packet::ConnAck(ack) = packet
            && let Some(assigned) = &ack.properties.assigned_client_identifier
        {
            self.id = assigned.as_str().to_owned();
        }
        let id = &self.id;
        let s = match packet {
            Packet::ConnAck(ack) => format!("CONNACK ({})", self.connack_code(ack.reason)),
            Packet::Publish(p) => publish_summary(
                p,
                p.packet_id.map_or(0, pigeon_client::proto::PacketId::get),
            ),
            Packet::PubAck(a) => format!("PUBACK (Mid: {}, RC:{})", a.packet_id, a.reason.0),
            Packet::PubRec(a) => format!("PUBREC (Mid: {})", a.packet_id),
            Packet::PubRel(a) => format!("PUBREL (Mid: {})", a.packet_id),
            Packet::PubComp(a) => format!("PUBCOMP (Mid: {}, RC:{})", a.packet_id, a.reason.0),
            Packet::SubAck(_) => "SUBACK".into(),
            Packet::UnsubAck(_) => "UNSUBACK".into(),
            Packet::PingResp(_) => "PINGRESP".into(),
            Packet::Disconnect(d) => format!("DISCONNECT ({})", d.reason.0),
            Packet::Auth(_) => "AUTH".into(),
            other => format!("{other:?}"),
        };
        vec![format!("Client {id} received {s}")]
    }

    /// The CONNACK code as the protocol carries it (MQTT 3.x return codes, 5.0 reason codes).
    pub fn connack_code(&self, reason: pigeon_client::ReasonCode) -> u8 {
        if self.protocol.is_v5() {
            reason.0
        } else {
            reason.to_v3_connack()
        }
    }

    /// The lines for a connection refused before the client's events began: the CONNECT and
    /// the refusing CONNACK.
    pub fn refused(&mut self, reason: pigeon_client::ReasonCode) -> Vec<String> {
        let code = self.connack_code(reason);
        vec![
            format!("Client {} sending CONNECT", self.id),
            format!("Client {} received CONNACK ({code})", self.id),
        ]
    }

    /// `Client <id> sending DISCONNECT`.
    pub fn disconnect_line(&self) -> String {
        format!("Client {} sending DISCONNECT", self.id)
    }
}

fn publish_summary(p: &pigeon_client::Publish, mid: u16) -> String {
    format!(
        "PUBLISH (d{}, q{}, r{}, m{mid}, '{}', ... ({} bytes))",
        u8::from(p.dup),
        p.qos as u8,
        u8::from(p.retain),
        p.topic.as_str(),
        p.payload.len()
    )
}
