//! The async client: cheap handles ([`Client`]), a stream of [`Event`]s ([`Events`]), and one
//! background task that owns the transport and the [`ClientState`].
//!
//! The task loops over one `select!`: bytes from the server, requests from the handles, the
//! state machine's deadline, room in the event stream. Whatever an input makes the state
//! machine write is encoded at once, packet by packet, and written in one go before the task
//! waits again. Requests complete through oneshot channels, so a handle's future resolves when
//! the state machine reports the request's end (PUBACK, PUBCOMP, SUBACK, ...).
//!
//! Everything is bounded. Handles send through channels of
//! [`request_capacity`](ConnectOptions::request_capacity); the task takes no more messages
//! while the state's queue is full, so [`Client::send`] waits (and [`Client::try_send`] fails
//! with [`Error::Full`]). Events go through a channel of
//! [`event_capacity`](ConnectOptions::event_capacity); while it is full the task stops reading
//! from the server (and from the handles), so a slow application slows the server down rather
//! than filling memory. The application must therefore keep reading its [`Events`]: a task
//! awaiting a publish while nobody reads events can wait forever once the stream is full.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pigeon_proto::properties::{DisconnectProperties, SubscribeProperties, UnsubscribeProperties};
use pigeon_proto::{
    Decoder, Packet, Protocol, Publish, QoS, ReasonCode, SubAck, SubscriptionOptions, TopicFilter,
    TopicName, UnsubAck,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::clock;
use crate::error::Error;
use crate::options::{Backoff, ConnectOptions};
use crate::state::{self, ClientState, Connected, DisconnectReason, PublishOutcome, RequestId};
use crate::transport::{BoxedStream, Connector, transport_error};

/// Read buffer growth step.
const READ_CHUNK: usize = 8 * 1024;
/// How long closing the transport may take.
const SHUTDOWN_PATIENCE: Duration = Duration::from_secs(1);

/// What the application hears from the client.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A connection was accepted (the first one, or a reconnection).
    Connected(Box<Connected>),
    /// A message from the server.
    Message(Publish),
    /// A connection ended.
    Disconnected(Disconnected),
    /// A reconnection attempt could not reach the server.
    ConnectFailed {
        /// Why.
        error: Error,
        /// When the next attempt is made.
        reconnect_in: Duration,
    },
    /// A packet was written (with [`ConnectOptions::packet_events`]).
    ///
    /// Packet events follow the wire: a packet read comes first, then the packets written in
    /// answer to it, then what it means to the application. An incoming QoS 1 message is
    /// `PacketReceived(PUBLISH)`, `PacketSent(PUBACK)`, `Message`; a CONNACK resuming a session
    /// is `PacketReceived(CONNACK)`, the redeliveries' `PacketSent`, then `Connected`.
    PacketSent(Packet),
    /// A packet was read (with [`ConnectOptions::packet_events`]).
    PacketReceived(Packet),
}

/// The end of a connection.
#[derive(Debug, Clone)]
pub struct Disconnected {
    /// Why it ended.
    pub reason: DisconnectReason,
    /// The transport's error, when it failed.
    pub error: Option<Arc<io::Error>>,
    /// When the client reconnects, with automatic reconnection; `None` when the task ends
    /// (the event stream ends after this event).
    pub reconnect_in: Option<Duration>,
}

/// The events of one client, in order. Ends when the client's task ends.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event; `None` once the client's task has ended.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is ready.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// Polls for the next event (for implementing a `Stream`).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

/// The completion of a request handed to the client's task: resolves when the server has
/// answered (or the request failed).
#[derive(Debug)]
#[must_use = "a receipt does nothing unless awaited; dropping it does not cancel the request"]
pub struct Receipt<T> {
    rx: oneshot::Receiver<Result<T, Error>>,
}

impl<T> Future for Receipt<T> {
    type Output = Result<T, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|result| result.unwrap_or(Err(Error::Closed)))
    }
}

enum Command {
    Subscribe {
        filters: Vec<(TopicFilter, SubscriptionOptions)>,
        properties: SubscribeProperties,
        reply: oneshot::Sender<Result<SubAck, Error>>,
    },
    Unsubscribe {
        filters: Vec<TopicFilter>,
        properties: UnsubscribeProperties,
        reply: oneshot::Sender<Result<UnsubAck, Error>>,
    },
    Disconnect {
        reason: ReasonCode,
        properties: Box<DisconnectProperties>,
        reply: oneshot::Sender<Result<(), Error>>,
    },
}

struct PublishCommand {
    publish: Publish,
    reply: oneshot::Sender<Result<PublishOutcome, Error>>,
}

/// A handle on an MQTT client: cheap to clone, usable from any task.
///
/// The connection lives in a background task, which ends after
/// [`disconnect`](Self::disconnect), when the connection is lost without automatic
/// reconnection, or once every handle and the [`Events`] are dropped (after a DISCONNECT).
/// While only the [`Events`] remain, the task keeps the connection and delivers messages.
#[derive(Debug, Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    publishes: mpsc::Sender<PublishCommand>,
    protocol: Protocol,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Subscribe { .. } => "Subscribe",
            Command::Unsubscribe { .. } => "Unsubscribe",
            Command::Disconnect { .. } => "Disconnect",
        })
    }
}

impl std::fmt::Debug for PublishCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishCommand")
            .field("publish", &self.publish)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects: starts the client's task, which opens the transport and sends CONNECT, and
    /// returns once CONNACK accepted the connection. The first event is
    /// [`Event::Connected`] (after the CONNECT and CONNACK packet events, when asked for).
    ///
    /// The first connection is not retried: automatic reconnection applies to connections
    /// lost after this returns.
    ///
    /// # Panics
    /// Outside a Tokio runtime (the task is spawned with [`tokio::spawn`]).
    ///
    /// # Errors
    /// Invalid options, [`Error::Tls`] for TLS options that cannot be loaded or a failed TLS
    /// handshake, [`Error::WebSocket`] for a failed WebSocket handshake, the transport's
    /// failure ([`Error::Io`]), [`Error::ConnectTimeout`], or
    /// [`Error::Disconnected`] with the refusing CONNACK ([`Error::connack_reason`]) or
    /// whatever ended the connection before CONNACK.
    pub async fn connect(options: ConnectOptions) -> Result<(Client, Events), Error> {
        let config = options.session_config()?;
        let connector = options
            .transport_kind()
            .connector()?
            .with_local(options.local_end().clone());
        let protocol = config.protocol;
        let (request_capacity, event_capacity) = options.capacities();
        let (commands_tx, commands) = mpsc::channel(request_capacity);
        let (publishes_tx, publishes) = mpsc::channel(request_capacity);
        let (events_tx, events_rx) = mpsc::channel(event_capacity);
        let (first_tx, first_rx) = oneshot::channel();
        let task = Task {
            host: options.host().to_owned(),
            port: options.port(),
            connector,
            reconnect: options.reconnect_backoff(),
            packet_events: options.wants_packet_events(),
            state: ClientState::new(config),
            commands,
            publishes,
            commands_open: true,
            publishes_open: true,
            sink: Sink::new(events_tx, event_capacity),
            replies: HashMap::new(),
            disconnect_replies: Vec::new(),
            first: Some(first_tx),
            attempt: 0,
            ended: None,
            exit: false,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            write_error: None,
        };
        tokio::spawn(task.run());
        let client = Client {
            commands: commands_tx,
            publishes: publishes_tx,
            protocol,
        };
        match first_rx.await {
            Ok(Ok(())) => Ok((client, Events { rx: events_rx })),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Closed),
        }
    }

    /// The protocol version.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Whether the client's task has ended.
    pub fn is_closed(&self) -> bool {
        self.commands.is_closed()
    }

    /// Publishes `payload` to `topic` and waits until the QoS flow is complete: the message
    /// encoded for the transport (QoS 0: at most once, it may still be lost with the
    /// connection), PUBACK (QoS 1), PUBCOMP (QoS 2). The outcome holds
    /// the acknowledgement's reason code (in MQTT 5.0 the server may refuse with 0x80 or
    /// more; check [`PublishOutcome::is_success`]).
    ///
    /// # Errors
    /// [`Error::InvalidTopic`], [`Error::Request`] when the server's limits do not allow the
    /// message or the session was discarded with it in flight, [`Error::Closed`].
    pub async fn publish(
        &self,
        topic: impl AsRef<str>,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<PublishOutcome, Error> {
        let topic = TopicName::try_from(topic.as_ref()).map_err(Error::InvalidTopic)?;
        let publish = Publish {
            qos,
            retain,
            ..Publish::new(topic, payload)
        };
        self.send(publish).await?.await
    }

    /// Hands a PUBLISH (with MQTT 5.0 properties, say) to the client's task, waiting while
    /// the client holds as many messages as it may; the returned [`Receipt`] resolves like
    /// [`publish`](Self::publish). Messages are sent in the order they are handed over, so
    /// this pipelines: hand over many, then await the receipts.
    ///
    /// The DUP flag and Packet Identifier are the client's to set. Topic Aliases are not
    /// sent (the receipt fails with [`RequestError::TopicAliasNotSupported`](crate::state::RequestError::TopicAliasNotSupported)).
    ///
    /// # Errors
    /// [`Error::Closed`] when the task has ended.
    pub async fn send(&self, publish: Publish) -> Result<Receipt<PublishOutcome>, Error> {
        let (reply, rx) = oneshot::channel();
        self.publishes
            .send(PublishCommand { publish, reply })
            .await
            .map_err(|_| Error::Closed)?;
        Ok(Receipt { rx })
    }

    /// [`send`](Self::send) without waiting.
    ///
    /// # Errors
    /// [`Error::Full`] when the client holds as many messages as it may (back-pressure),
    /// [`Error::Closed`].
    pub fn try_send(&self, publish: Publish) -> Result<Receipt<PublishOutcome>, Error> {
        let (reply, rx) = oneshot::channel();
        self.publishes
            .try_send(PublishCommand { publish, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => Error::Full,
                mpsc::error::TrySendError::Closed(_) => Error::Closed,
            })?;
        Ok(Receipt { rx })
    }

    /// Subscribes to one topic filter and waits for the SUBACK, whose reason code says which
    /// QoS the server granted (0x80 or more: refused).
    ///
    /// # Errors
    /// [`Error::InvalidFilter`], [`Error::Closed`].
    pub async fn subscribe(&self, filter: impl AsRef<str>, qos: QoS) -> Result<SubAck, Error> {
        let filter = TopicFilter::try_from(filter.as_ref()).map_err(Error::InvalidFilter)?;
        self.subscribe_many(
            vec![(filter, SubscriptionOptions::new(qos))],
            SubscribeProperties::default(),
        )
        .await
    }

    /// Subscribes to several filters, with options and MQTT 5.0 properties, in one SUBSCRIBE.
    /// Made while the client is reconnecting, or lost with the connection, the request is sent
    /// on the next connection.
    ///
    /// # Errors
    /// [`Error::Request`] for an empty list, [`Error::Closed`].
    pub async fn subscribe_many(
        &self,
        filters: Vec<(TopicFilter, SubscriptionOptions)>,
        properties: SubscribeProperties,
    ) -> Result<SubAck, Error> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::Subscribe {
            filters,
            properties,
            reply,
        })
        .await?;
        Receipt { rx }.await
    }

    /// Unsubscribes from one topic filter and waits for the UNSUBACK.
    ///
    /// # Errors
    /// [`Error::InvalidFilter`], [`Error::Closed`].
    pub async fn unsubscribe(&self, filter: impl AsRef<str>) -> Result<UnsubAck, Error> {
        let filter = TopicFilter::try_from(filter.as_ref()).map_err(Error::InvalidFilter)?;
        self.unsubscribe_many(vec![filter], UnsubscribeProperties::default())
            .await
    }

    /// Unsubscribes from several filters in one UNSUBSCRIBE.
    ///
    /// # Errors
    /// [`Error::Request`] for an empty list, [`Error::Closed`].
    pub async fn unsubscribe_many(
        &self,
        filters: Vec<TopicFilter>,
        properties: UnsubscribeProperties,
    ) -> Result<UnsubAck, Error> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::Unsubscribe {
            filters,
            properties,
            reply,
        })
        .await?;
        Receipt { rx }.await
    }

    /// Sends DISCONNECT (Normal disconnection) and ends the client's task; resolves once the
    /// DISCONNECT is written. Requests still pending fail with [`Error::Closed`]. Succeeds
    /// too when the task has already ended.
    ///
    /// # Errors
    /// None in practice; see [`disconnect_with`](Self::disconnect_with).
    pub async fn disconnect(&self) -> Result<(), Error> {
        self.disconnect_with(
            ReasonCode::NORMAL_DISCONNECTION,
            DisconnectProperties::default(),
        )
        .await
    }

    /// [`disconnect`](Self::disconnect) with an MQTT 5.0 reason code (0x04 Disconnect with
    /// Will Message has the server publish the Will) and properties.
    ///
    /// # Errors
    /// [`Error::Request`] with
    /// [`RequestError::SessionExpiryNotAllowed`](crate::state::RequestError::SessionExpiryNotAllowed);
    /// the client stays connected then.
    pub async fn disconnect_with(
        &self,
        reason: ReasonCode,
        properties: DisconnectProperties,
    ) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        let command = Command::Disconnect {
            reason,
            properties: Box::new(properties),
            reply,
        };
        if self.commands.send(command).await.is_err() {
            return Ok(());
        }
        match rx.await {
            Ok(result) => result,
            Err(_) => Ok(()),
        }
    }

    async fn command(&self, command: Command) -> Result<(), Error> {
        self.commands.send(command).await.map_err(|_| Error::Closed)
    }
}

// -------------------------------------------------------------------------------------------
// The task
// -------------------------------------------------------------------------------------------

/// The event stream's sending end, with an overflow for the events of one input.
#[derive(Debug)]
struct Sink {
    tx: mpsc::Sender<Event>,
    /// Events waiting for room in the channel, in order.
    pending: VecDeque<Event>,
    /// How many may wait before the task stops taking requests too.
    limit: usize,
    /// The application dropped its [`Events`]: events are discarded.
    closed: bool,
}

impl Sink {
    fn new(tx: mpsc::Sender<Event>, limit: usize) -> Self {
        Sink {
            tx,
            pending: VecDeque::new(),
            limit,
            closed: false,
        }
    }

    fn push(&mut self, event: Event) {
        if self.closed {
            return;
        }
        if !self.pending.is_empty() {
            return self.pending.push_back(event);
        }
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(event)) => self.pending.push_back(event),
            Err(mpsc::error::TrySendError::Closed(_)) => self.closed = true,
        }
    }

    /// Events wait for the application: stop reading from the server.
    fn is_blocked(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Too many events wait: stop taking requests too.
    fn is_full(&self) -> bool {
        self.pending.len() >= self.limit
    }

    /// After [`send_one`]: moves what else fits into the channel.
    fn after_permit(&mut self, delivered: bool) {
        if !delivered {
            self.closed = true;
            self.pending.clear();
            return;
        }
        while let Some(event) = self.pending.pop_front() {
            match self.tx.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(event)) => {
                    self.pending.push_front(event);
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.closed = true;
                    self.pending.clear();
                    break;
                }
            }
        }
    }
}

/// Sends the oldest pending event with `permit`; returns false when the application dropped
/// the stream.
fn send_one(
    permit: Result<mpsc::OwnedPermit<Event>, mpsc::error::SendError<()>>,
    pending: &mut VecDeque<Event>,
) -> bool {
    match permit {
        Ok(permit) => {
            if let Some(event) = pending.pop_front() {
                permit.send(event);
            }
            true
        }
        Err(_) => false,
    }
}

/// A request's way back to its handle.
enum Reply {
    Publish(oneshot::Sender<Result<PublishOutcome, Error>>),
    Subscribe(oneshot::Sender<Result<SubAck, Error>>),
    Unsubscribe(oneshot::Sender<Result<UnsubAck, Error>>),
}

impl Reply {
    fn fail(self, error: Error) {
        // A handle that stopped waiting does not mind.
        match self {
            Reply::Publish(tx) => drop(tx.send(Err(error))),
            Reply::Subscribe(tx) => drop(tx.send(Err(error))),
            Reply::Unsubscribe(tx) => drop(tx.send(Err(error))),
        }
    }
}

/// How one connection ended.
enum Ended {
    /// The task is to end (disconnect, or nobody left to serve).
    Exit,
    /// The connection was lost or refused.
    Lost(DisconnectReason, Option<Arc<io::Error>>),
}

struct Task {
    host: String,
    port: u16,
    connector: Connector,
    reconnect: Option<Backoff>,
    packet_events: bool,
    state: ClientState,
    commands: mpsc::Receiver<Command>,
    publishes: mpsc::Receiver<PublishCommand>,
    commands_open: bool,
    publishes_open: bool,
    sink: Sink,
    replies: HashMap<RequestId, Reply>,
    disconnect_replies: Vec<oneshot::Sender<Result<(), Error>>>,
    /// Reports the first connection's result to [`Client::connect`].
    first: Option<oneshot::Sender<Result<(), Error>>>,
    /// Reconnection attempts since the last CONNACK.
    attempt: u32,
    /// The state machine reported the connection's end.
    ended: Option<DisconnectReason>,
    /// The task is to end once the connection is closed.
    exit: bool,
    rbuf: BytesMut,
    wbuf: BytesMut,
    write_error: Option<Arc<io::Error>>,
}

impl Task {
    async fn run(mut self) {
        loop {
            let connecting = {
                let connector = self.connector.clone();
                let host = self.host.clone();
                let port = self.port;
                let timeout = self.state.config().connect_timeout;
                async move { tokio::time::timeout(timeout, connector.connect(&host, port)).await }
            };
            let Some(connected) = self.offline(connecting).await else {
                break;
            };
            let (reason, error) = match connected {
                Ok(Ok(stream)) => match self.online(stream).await {
                    Ended::Exit => break,
                    Ended::Lost(reason, error) => (Some(reason), error),
                },
                Ok(Err(e)) => (None, Some(Arc::new(e))),
                Err(_elapsed) => (None, None),
            };
            let error_of = |reason: &Option<DisconnectReason>, io: &Option<Arc<io::Error>>| {
                // A TLS or WebSocket failure says more than the connection's loss (a server
                // refusing the client's certificate does so once the handshake is over).
                if let Some(error) = io.as_deref().and_then(transport_error) {
                    return error;
                }
                match (reason, io) {
                    (Some(reason), _) => Error::Disconnected(reason.clone()),
                    (None, Some(io)) => Error::Io(Arc::clone(io)),
                    (None, None) => Error::ConnectTimeout,
                }
            };
            if let Some(first) = self.first.take() {
                let _ = first.send(Err(error_of(&reason, &error)));
                break;
            }
            let delay = self.reconnect.map(|b| b.delay(self.attempt));
            self.attempt = self.attempt.saturating_add(1);
            match (reason, delay) {
                (Some(reason), _) => self.sink.push(Event::Disconnected(Disconnected {
                    reason,
                    error,
                    reconnect_in: delay,
                })),
                (None, Some(delay)) => self.sink.push(Event::ConnectFailed {
                    error: error_of(&None, &error),
                    reconnect_in: delay,
                }),
                // Only reconnections fail to connect, and only with a backoff.
                (None, None) => {}
            }
            let Some(delay) = delay else {
                break;
            };
            if self.offline(tokio::time::sleep(delay)).await.is_none() {
                break;
            }
        }
        self.shutdown().await;
    }

    /// Fails what is pending and delivers the last events.
    async fn shutdown(mut self) {
        for (_, reply) in self.replies.drain() {
            reply.fail(Error::Closed);
        }
        for reply in self.disconnect_replies.drain(..) {
            let _ = reply.send(Ok(()));
        }
        // Requests still in the channels fail as the receivers drop. The last events wait
        // for the application as long as it holds the stream.
        drop(self.commands);
        drop(self.publishes);
        while let Some(event) = self.sink.pending.pop_front() {
            if self.sink.tx.send(event).await.is_err() {
                break;
            }
        }
    }

    fn handles_gone(&self) -> bool {
        !self.commands_open && !self.publishes_open
    }

    /// Serves the handles while `fut` (connecting, or waiting to reconnect) runs. `None` when
    /// the task is to end instead.
    async fn offline<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        loop {
            self.dispatch();
            if self.exit {
                return None;
            }
            let accept = !self.sink.is_full();
            let accept_publish = accept && self.state.can_publish();
            tokio::select! {
                biased;
                out = &mut fut => return Some(out),
                permit = self.sink.tx.clone().reserve_owned(), if self.sink.is_blocked() => {
                    let delivered = send_one(permit, &mut self.sink.pending);
                    self.sink.after_permit(delivered);
                }
                command = self.commands.recv(), if self.commands_open && accept => {
                    self.on_command(command);
                }
                publish = self.publishes.recv(), if self.publishes_open && accept_publish => {
                    self.on_publish(publish);
                }
                () = self.sink.tx.closed(), if self.handles_gone() => self.exit = true,
            }
        }
    }

    /// Runs one connection from CONNECT to its end.
    async fn online(&mut self, mut stream: BoxedStream) -> Ended {
        self.state.connection_opened(clock::now());
        let mut decoder = Decoder::new(
            Some(self.state.protocol()),
            self.state.max_incoming_packet_size(),
        );
        self.rbuf.clear();
        self.wbuf.clear();
        self.write_error = None;
        let mut read_error = None;
        loop {
            self.flush_state();
            if !self.wbuf.is_empty() && self.write_error.is_none() {
                self.write_out(&mut stream).await;
            }
            if let Some(reason) = self.ended.take() {
                // Closing politely must not hang on a peer that does not read.
                let _ = tokio::time::timeout(SHUTDOWN_PATIENCE, stream.shutdown()).await;
                let error = self.write_error.take().or(read_error);
                if reason == DisconnectReason::Local {
                    self.sink.push(Event::Disconnected(Disconnected {
                        reason,
                        error,
                        reconnect_in: None,
                    }));
                    return Ended::Exit;
                }
                return Ended::Lost(reason, error);
            }
            if self.exit {
                // Nobody is left to serve: end the session politely.
                let now = clock::now();
                let _ = self.state.disconnect(
                    ReasonCode::NORMAL_DISCONNECTION,
                    DisconnectProperties::default(),
                    now,
                );
                self.flush_state();
                if self.ended.is_none() {
                    // Not reachable: DISCONNECT closes an open connection. Never spin.
                    return Ended::Exit;
                }
                continue;
            }
            let paused = self.sink.is_blocked();
            self.state.set_reads_paused(paused, clock::now());
            if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK {
                self.rbuf.reserve(READ_CHUNK);
            }
            let deadline = self.state.poll_timeout();
            let accept = !self.sink.is_full();
            let accept_publish = accept && self.state.can_publish();
            tokio::select! {
                biased;
                permit = self.sink.tx.clone().reserve_owned(), if self.sink.is_blocked() => {
                    let delivered = send_one(permit, &mut self.sink.pending);
                    self.sink.after_permit(delivered);
                }
                read = stream.read_buf(&mut self.rbuf), if !paused => match read {
                    Ok(0) => self.state.connection_lost(clock::now()),
                    Ok(_) => self.decode(&mut decoder),
                    Err(e) => {
                        read_error = Some(Arc::new(e));
                        self.state.connection_lost(clock::now());
                    }
                },
                () = sleep_until(deadline), if deadline.is_some() => {
                    self.state.handle_timeout(clock::now());
                }
                command = self.commands.recv(), if self.commands_open && accept => {
                    self.on_command(command);
                }
                publish = self.publishes.recv(), if self.publishes_open && accept_publish => {
                    self.on_publish(publish);
                }
                () = self.sink.tx.closed(), if self.handles_gone() => self.exit = true,
            }
        }
    }

    /// Writes the write buffer. A write that takes longer than the ping timeout means the
    /// server is not reading: the connection is lost.
    async fn write_out(&mut self, stream: &mut BoxedStream) {
        let patience = self
            .state
            .config()
            .ping_timeout
            .or(self.state.keep_alive())
            .unwrap_or(self.state.config().connect_timeout);
        let write = async {
            stream.write_all(&self.wbuf).await?;
            stream.flush().await
        };
        let result = match tokio::time::timeout(patience, write).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the server does not read what the client writes",
            )),
        };
        self.wbuf.clear();
        if let Err(e) = result {
            self.write_error = Some(Arc::new(e));
            self.state.connection_lost(clock::now());
            self.flush_state();
        }
    }

    /// Decodes and handles every complete packet read; what each one makes the state machine
    /// write is encoded before the next is handled, so packet events keep the wire's order.
    fn decode(&mut self, decoder: &mut Decoder) {
        let now = clock::now();
        while self.state.status() != state::Status::Disconnected {
            match decoder.decode(&mut self.rbuf) {
                Ok(Some(packet)) => {
                    if self.packet_events {
                        self.sink.push(Event::PacketReceived(packet.clone()));
                    }
                    self.state.handle_packet(packet, now);
                    self.flush_state();
                }
                Ok(None) => break,
                Err(e) => {
                    self.state.handle_decode_error(e, now);
                    self.flush_state();
                    break;
                }
            }
        }
    }

    /// Encodes what the state machine wants written and acts on its events.
    fn flush_state(&mut self) {
        let protocol = self.state.protocol();
        while let Some(packet) = self.state.poll_transmit() {
            if let Err(e) = packet.encode(protocol, &mut self.wbuf) {
                // The state machine checks what it sends; a packet that does not encode is a
                // bug, and the connection cannot go on without it.
                self.write_error = Some(Arc::new(io::Error::new(io::ErrorKind::InvalidData, e)));
                self.state.connection_lost(clock::now());
                break;
            }
            if self.packet_events {
                self.sink.push(Event::PacketSent(packet));
            }
        }
        self.dispatch();
    }

    /// Acts on the state machine's events.
    fn dispatch(&mut self) {
        while let Some(event) = self.state.poll_event() {
            match event {
                state::Event::Connected(connected) => {
                    self.attempt = 0;
                    if let Some(first) = self.first.take() {
                        let _ = first.send(Ok(()));
                    }
                    self.sink.push(Event::Connected(connected));
                }
                state::Event::Message(publish) => self.sink.push(Event::Message(publish)),
                state::Event::Published { request, outcome } => {
                    if let Some(Reply::Publish(tx)) = self.replies.remove(&request) {
                        let _ = tx.send(Ok(outcome));
                    }
                }
                state::Event::Subscribed { request, ack } => {
                    if let Some(Reply::Subscribe(tx)) = self.replies.remove(&request) {
                        let _ = tx.send(Ok(ack));
                    }
                }
                state::Event::Unsubscribed { request, ack } => {
                    if let Some(Reply::Unsubscribe(tx)) = self.replies.remove(&request) {
                        let _ = tx.send(Ok(ack));
                    }
                }
                state::Event::Failed { request, error } => {
                    if let Some(reply) = self.replies.remove(&request) {
                        reply.fail(Error::Request(error));
                    }
                }
                state::Event::Disconnected(reason) => self.ended = Some(reason),
            }
        }
    }

    fn on_command(&mut self, command: Option<Command>) {
        let now = clock::now();
        match command {
            None => self.commands_open = false,
            Some(Command::Subscribe {
                filters,
                properties,
                reply,
            }) => match self.state.subscribe(filters, properties, now) {
                Ok(request) => {
                    self.replies.insert(request, Reply::Subscribe(reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(Error::Request(e)));
                }
            },
            Some(Command::Unsubscribe {
                filters,
                properties,
                reply,
            }) => match self.state.unsubscribe(filters, properties, now) {
                Ok(request) => {
                    self.replies.insert(request, Reply::Unsubscribe(reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(Error::Request(e)));
                }
            },
            Some(Command::Disconnect {
                reason,
                properties,
                reply,
            }) => match self.state.disconnect(reason, *properties, now) {
                Ok(()) => {
                    self.exit = true;
                    self.disconnect_replies.push(reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(Error::Request(e)));
                }
            },
        }
    }

    fn on_publish(&mut self, command: Option<PublishCommand>) {
        let Some(PublishCommand { publish, reply }) = command else {
            self.publishes_open = false;
            return;
        };
        match self.state.publish(publish, clock::now()) {
            Ok(request) => {
                self.replies.insert(request, Reply::Publish(reply));
            }
            Err(rejected) => {
                let _ = reply.send(Err(Error::Request(rejected.error)));
            }
        }
    }
}

/// Sleeps until `deadline`; forever without one (the branch is disabled then anyway).
async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}
