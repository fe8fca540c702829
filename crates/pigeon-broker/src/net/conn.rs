//! The task that drives one client connection.
//!
//! It reads whatever bytes are ready, decodes every complete packet, feeds them to the
//! [`Connection`] state machine, acts on its events, and only then writes what the state
//! machine produced, in one write. Deliveries arrive through the connection's mailbox. No lock
//! is held across an `.await`.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use pigeon_proto::{Decoder, MqttString, Packet, ReasonCode, Will};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::time::sleep_until;

use crate::broker::{Claim, Mail};
use crate::clock;
use crate::message::Message;
use crate::server::{ListenerShared, Shared};
use crate::session::{CloseReason, Connection, Event, Session};

/// Stop reading from a client while this much output waits to be written to it.
const WRITE_HIGH_WATER: usize = 256 * 1024;
/// Read buffer growth step.
const READ_CHUNK: usize = 4096;

/// What the task knows about its client once CONNECT is accepted.
struct Identity {
    client_id: MqttString,
    generation: u64,
}

/// Serves one accepted TCP connection until it ends.
pub async fn serve_connection(
    shared: Arc<Shared>,
    listener: Arc<ListenerShared>,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let port = listener.port;
    if shared.nodelay {
        let _ = stream.set_nodelay(true);
    }
    shared
        .log
        .info(&format!("New connection from {peer} on port {port}."));
    let (tx, rx) = mpsc::channel(shared.mailbox_capacity);
    let (reader, writer) = stream.into_split();
    let mut driver = Driver {
        conn: Connection::new(listener.settings.connection.clone(), clock::now()),
        listener,
        decoder: Decoder::new(None, shared.max_packet_size),
        shared,
        reader,
        writer,
        peer,
        rbuf: BytesMut::new(),
        wbuf: BytesMut::new(),
        identity: None,
        takeover_reply: None,
    };
    driver.run(tx, rx).await;
}

struct Driver {
    shared: Arc<Shared>,
    listener: Arc<ListenerShared>,
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    peer: SocketAddr,
    conn: Connection,
    decoder: Decoder,
    rbuf: BytesMut,
    wbuf: BytesMut,
    identity: Option<Identity>,
    takeover_reply: Option<oneshot::Sender<Option<Session>>>,
}

impl Driver {
    fn name(&self) -> &str {
        self.identity
            .as_ref()
            .map_or("<unknown>", |i| i.client_id.as_str())
    }

    async fn run(&mut self, mailbox: mpsc::Sender<Mail>, mut rx: mpsc::Receiver<Mail>) {
        let mut peer_closed = false;
        loop {
            self.flush_transmit();
            if self.conn.is_closed() {
                break;
            }
            let deadline = self.conn.poll_timeout();
            let active = self.identity.is_some() && !self.conn.is_connecting();
            let can_read = !self.conn.is_connecting() && self.wbuf.len() < WRITE_HIGH_WATER;
            let can_take_mail = active && self.wbuf.len() < WRITE_HIGH_WATER;
            if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK {
                self.rbuf.reserve(READ_CHUNK);
            }
            tokio::select! {
                read = self.reader.read_buf(&mut self.rbuf), if can_read => match read {
                    Ok(0) | Err(_) => {
                        peer_closed = true;
                        break;
                    }
                    Ok(_) => self.decode_all(&mailbox).await,
                },
                written = self.writer.write_buf(&mut self.wbuf), if !self.wbuf.is_empty() => {
                    if written.is_err() {
                        peer_closed = true;
                        break;
                    }
                }
                mail = rx.recv(), if can_take_mail => {
                    if let Some(mail) = mail {
                        self.handle_mail(mail);
                        // Drain what else is waiting, then write once.
                        while self.wbuf.len() < WRITE_HIGH_WATER && !self.conn.is_closed() {
                            let Ok(mail) = rx.try_recv() else { break };
                            self.handle_mail(mail);
                        }
                    }
                }
                () = sleep_until(deadline.unwrap_or_else(far_future).into()), if deadline.is_some() => {
                    self.conn.handle_timeout(clock::now());
                    self.handle_events(&mailbox).await;
                }
            }
        }
        // Say goodbye with whatever is queued (a CONNACK refusal, a DISCONNECT in 5.0).
        self.flush_transmit();
        if !peer_closed && !self.wbuf.is_empty() {
            let _ = self.writer.write_all(&self.wbuf).await;
        }
        let _ = self.writer.shutdown().await;
        self.finish(peer_closed, rx).await;
    }

    /// Decodes and handles every complete packet in the read buffer.
    async fn decode_all(&mut self, mailbox: &mpsc::Sender<Mail>) {
        while !self.conn.is_closed() && !self.conn.is_connecting() {
            match self.decoder.decode(&mut self.rbuf) {
                Ok(Some(packet)) => {
                    self.log_received(&packet);
                    self.conn.handle_packet(packet, clock::now());
                    self.handle_events(mailbox).await;
                }
                Ok(None) => break,
                Err(error) => {
                    self.shared.log.notice(&format!(
                        "Client {} disconnected due to malformed packet: {error}.",
                        self.name()
                    ));
                    self.conn.handle_decode_error(error);
                    self.handle_events(mailbox).await;
                }
            }
        }
    }

    fn handle_mail(&mut self, mail: Mail) {
        match mail {
            Mail::Deliver(delivery) => {
                let backlog = self.wbuf.len() / 64;
                if self.conn.deliver(delivery, backlog) {
                    self.shared
                        .broker
                        .counters
                        .messages_dropped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            Mail::TakeOver(reply) => {
                self.shared.log.notice(&format!(
                    "Client {} already connected, closing old connection.",
                    self.name()
                ));
                self.takeover_reply = Some(reply);
                self.conn.take_over();
            }
        }
    }

    async fn handle_events(&mut self, mailbox: &mpsc::Sender<Mail>) {
        while let Some(event) = self.conn.poll_event() {
            match event {
                Event::Connect(connect) => self.on_connect(*connect, mailbox).await,
                Event::Publish(message) => {
                    self.shared.broker.publish(&message);
                }
                Event::Dropped(message) => {
                    self.shared.log.notice(&format!(
                        "Dropped too large PUBLISH from {} (q{}, r{}, '{}' ({} bytes))",
                        self.name(),
                        message.qos as u8,
                        u8::from(message.retain),
                        message.topic,
                        message.payload.len()
                    ));
                }
                Event::Subscribe(filters) => {
                    let Some(identity) = &self.identity else {
                        continue;
                    };
                    let retained = self.shared.broker.subscribe(&identity.client_id, &filters);
                    for delivery in retained {
                        self.conn.deliver(delivery, 0);
                    }
                }
                Event::Unsubscribe(filters) => {
                    if let Some(identity) = &self.identity {
                        self.shared
                            .broker
                            .unsubscribe(&identity.client_id, &filters);
                    }
                }
                Event::Close(reason) => self.log_close(reason),
            }
        }
    }

    async fn on_connect(&mut self, connect: pigeon_proto::Connect, mailbox: &mpsc::Sender<Mail>) {
        let shared = Arc::clone(&self.shared);
        let listener = Arc::clone(&self.listener);
        let mut client_id = connect.client_id.clone();
        if client_id.is_empty() {
            // MQTT 3.1 requires an identifier; 3.1.1 allows an empty one only with Clean Session
            // [MQTT-3.1.3-7], [MQTT-3.1.3-8].
            let allowed = connect.protocol != pigeon_proto::Protocol::V31
                && connect.clean_start
                && listener.settings.allow_zero_length_clientid;
            if !allowed {
                self.refuse(&connect, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
                return;
            }
            client_id = shared
                .broker
                .assign_client_id(&listener.settings.auto_id_prefix);
        }
        if !shared.clientid_prefixes.is_empty()
            && !shared
                .clientid_prefixes
                .iter()
                .any(|p| client_id.starts_with(p.as_str()))
        {
            self.refuse(&connect, ReasonCode::NOT_AUTHORIZED);
            return;
        }
        if !listener.settings.allow_anonymous && connect.username.is_none() {
            self.refuse(&connect, ReasonCode::NOT_AUTHORIZED);
            return;
        }
        let generation = shared.broker.next_generation();
        let clean = connect.clean_start;
        let protocol = connect.protocol;
        let claim = shared
            .broker
            .claim(&client_id, protocol, clean, mailbox.clone(), generation);
        let (mut session, present) = match claim {
            Claim::Resumed(session) => (session, true),
            Claim::Fresh(session) => (session, false),
            Claim::TakeOver(old) => {
                let (tx, rx) = oneshot::channel();
                let handed = if old.send(Mail::TakeOver(tx)).await.is_ok() {
                    rx.await.ok().flatten()
                } else {
                    None
                };
                shared
                    .broker
                    .settle_takeover(&client_id, protocol, clean, handed)
            }
        };
        session.clean = clean;
        self.identity = Some(Identity {
            client_id: client_id.clone(),
            generation,
        });
        let user = connect
            .username
            .as_ref()
            .map(|u| format!(", u'{u}'"))
            .unwrap_or_default();
        shared.log.notice(&format!(
            "New client connected from {} as {} (p{}, c{}, k{}{user}).",
            self.peer,
            client_id,
            protocol.level(),
            u8::from(clean),
            connect.keep_alive
        ));
        self.conn.accept(session, present, clock::now());
        shared.log.debug(&format!(
            "Sending CONNACK to {client_id} ({}, 0)",
            u8::from(present)
        ));
    }

    fn refuse(&mut self, connect: &pigeon_proto::Connect, reason: ReasonCode) {
        let code = reason.to_v3_connack();
        self.shared.log.notice(&format!(
            "Client {} from {} refused (CONNACK {code}).",
            connect.client_id, self.peer
        ));
        self.conn.refuse(reason);
    }

    fn flush_transmit(&mut self) {
        let protocol = self.conn.protocol();
        for packet in self.conn.take_transmit() {
            self.log_sent(&packet);
            // Packets the state machine builds are valid; one that cannot be encoded is
            // logged and skipped rather than taking the connection down.
            if let Err(error) = packet.encode(protocol, &mut self.wbuf) {
                self.shared.log.error(&format!(
                    "Could not encode {packet:?} for {}: {error}",
                    self.name()
                ));
            }
        }
    }

    fn log_received(&self, packet: &Packet) {
        let name = self.name();
        let line = match packet {
            Packet::Publish(p) => format!(
                "Received PUBLISH from {name} (d{}, q{}, r{}, m{}, '{}', ... ({} bytes))",
                u8::from(p.dup),
                p.qos as u8,
                u8::from(p.retain),
                p.packet_id.map_or(0, |i| i.get()),
                p.topic,
                p.payload.len()
            ),
            Packet::Connect(_) => return,
            other => format!("Received {} from {name}", other.packet_type()),
        };
        self.shared.log.debug(&line);
    }

    fn log_sent(&self, packet: &Packet) {
        let name = self.name();
        let line = match packet {
            Packet::Publish(p) => format!(
                "Sending PUBLISH to {name} (d{}, q{}, r{}, m{}, '{}', ... ({} bytes))",
                u8::from(p.dup),
                p.qos as u8,
                u8::from(p.retain),
                p.packet_id.map_or(0, |i| i.get()),
                p.topic,
                p.payload.len()
            ),
            Packet::ConnAck(_) => return,
            other => format!("Sending {} to {name}", other.packet_type()),
        };
        self.shared.log.debug(&line);
    }

    fn log_close(&self, reason: CloseReason) {
        let name = self.name();
        let line = match reason {
            CloseReason::Disconnected => format!("Client {name} disconnected."),
            CloseReason::KeepAliveTimeout => {
                format!("Client {name} has exceeded timeout, disconnecting.")
            }
            CloseReason::ConnectTimeout => {
                format!("Client {} closed: no CONNECT received in time.", self.peer)
            }
            CloseReason::Violation(v) => format!(
                "Client {name} disconnected due to {}{}.",
                v.what,
                v.rule.map(|r| format!(" [{r}]")).unwrap_or_default()
            ),
            CloseReason::Refused(_) | CloseReason::TakenOver => return,
        };
        self.shared.log.notice(&line);
    }

    /// After the socket is done: publish the will if the ending calls for it, and give the
    /// session back to the registry (or to the connection that took it over).
    async fn finish(&mut self, peer_closed: bool, mut rx: mpsc::Receiver<Mail>) {
        let reason = if peer_closed && !self.conn.is_closed() {
            if let Some(identity) = &self.identity {
                self.shared.log.notice(&format!(
                    "Client {} closed its connection.",
                    identity.client_id
                ));
            }
            None
        } else {
            let mut reason = None;
            while let Some(event) = self.conn.poll_event() {
                if let Event::Close(r) = event {
                    reason = Some(r);
                }
            }
            reason
        };
        let publish_will = reason.is_none_or(CloseReason::publishes_will);
        let will = self.conn.take_will();
        let mut session = self.conn.take_session();
        let Some(identity) = self.identity.take() else {
            return;
        };
        if publish_will && let Some(will) = will {
            self.publish_will(will);
        }
        if let Some(reply) = self.takeover_reply.take() {
            let _ = reply.send(session);
            return;
        }
        if let Err(back) =
            self.shared
                .broker
                .release(&identity.client_id, identity.generation, session.take())
        {
            // Another connection claimed the identifier meanwhile: it asks for the session
            // through the mailbox. Keep queueing deliveries until it does.
            let mut session = back;
            while let Some(mail) = rx.recv().await {
                match mail {
                    Mail::TakeOver(reply) => {
                        let _ = reply.send(session);
                        return;
                    }
                    Mail::Deliver(delivery) => {
                        if let Some(s) = &mut session {
                            s.outbound.push(delivery, crate::session::Link::Offline);
                        }
                    }
                }
            }
        }
    }

    fn publish_will(&self, will: Will) {
        let message = Arc::new(Message {
            topic: will.topic,
            payload: will.payload,
            qos: will.qos,
            retain: will.retain,
            properties: Default::default(),
        });
        self.shared.broker.publish(&message);
    }
}

fn far_future() -> std::time::Instant {
    clock::now() + std::time::Duration::from_secs(86_400 * 365)
}
