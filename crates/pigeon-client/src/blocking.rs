//! A blocking client with callbacks, for programs without an async runtime and for people who
//! know the paho-mqtt Python client.
//!
//! [`Client::connect`] connects (it returns once the server accepted the connection); a
//! *network loop* then drives the connection and calls the callbacks: [`Client::loop_forever`]
//! runs it on the calling thread until the client disconnects, [`Client::loop_start`] on a
//! background thread until [`Client::loop_stop`]. While no loop runs, nothing is read or
//! written, and callbacks wait.
//!
//! Underneath, the loop runs a current-thread tokio runtime that owns the async
//! [`crate::Client`] and its [`Events`], and calls every callback on the loop's
//! thread, one at a time, in the order things happened. Callbacks get a [`Client`] handle:
//! [`publish`](Client::publish), [`subscribe`](Client::subscribe),
//! [`unsubscribe`](Client::unsubscribe) and [`disconnect`](Client::disconnect) only hand a
//! command to the loop and return, so they are safe to call from inside a callback (say,
//! subscribing in `on_connect` so that reconnections subscribe again). Waiting on the loop
//! from its own thread ([`MessageInfo::wait_for_publish`]) would never end, and fails with
//! [`Error::InCallback`] instead.
//!
//! ```no_run
//! use pigeon_client::ConnectOptions;
//! use pigeon_client::QoS;
//! use pigeon_client::blocking::Client;
//!
//! fn main() -> Result<(), pigeon_client::blocking::Error> {
//!     let client = Client::new(ConnectOptions::new("localhost", 1883));
//!
//!     // Subscribing in on_connect renews the subscriptions when the client reconnects.
//!     client.on_connect(|client, result| {
//!         println!("Connected (session present: {})", result.session_present);
//!         client.subscribe("$SYS/#", QoS::AtMostOnce).unwrap();
//!     });
//!     client.on_message(|_client, message| {
//!         println!(
//!             "Received message '{}' on topic '{}'",
//!             String::from_utf8_lossy(&message.payload),
//!             message.topic
//!         );
//!     });
//!
//!     client.connect()?;
//!     // Blocks, calling the callbacks, until the client disconnects.
//!     client.loop_forever()
//! }
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::Duration;

use bytes::Bytes;
use pigeon_proto::{QoS, ReasonCode, SubAck, TopicFilter, TopicName, UnsubAck};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};

use crate::options::ConnectOptions;
use crate::state::PublishOutcome;
use crate::{Disconnected, Event, Events};

/// A message from the server, as given to [`Client::on_message`]: `topic`, `payload`, `qos`,
/// `retain` and the MQTT 5.0 `properties`.
pub type Message = crate::Publish;

/// The accepted connection, as given to [`Client::on_connect`]: `session_present` and the
/// MQTT 5.0 CONNACK properties. (A refused first connection is
/// [`connect`](Client::connect)'s error; refused reconnections are
/// [`on_disconnect`](Client::on_disconnect) calls.)
pub type ConnectResult = crate::state::Connected;

/// What can go wrong with the blocking client.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The async client's error: invalid options, topics or filters, the connection refused
    /// or lost, a request that failed.
    #[error(transparent)]
    Client(#[from] crate::Error),
    /// The client is not connected: [`connect`](Client::connect) was not called, or the
    /// connection has ended.
    #[error("the client is not connected")]
    NotConnected,
    /// [`connect`](Client::connect) was called while connected.
    #[error("the client is already connected")]
    AlreadyConnected,
    /// A network loop is already running.
    #[error("the network loop is already running")]
    LoopRunning,
    /// The call would wait for the network loop from the loop's own thread (inside a
    /// callback), which would never end.
    #[error("called from a callback, this would wait for the network loop forever")]
    InCallback,
    /// [`MessageInfo::wait_for_publish_timeout`] timed out.
    #[error("timed out")]
    Timeout,
}

/// The message identifier of a publish, subscribe or unsubscribe (paho's `mid`): given when
/// the request is made and again to the callback that reports its end. Numbered from 1 per
/// [`Client`], never reused; not the MQTT Packet Identifier (see
/// [`PublishOutcome::packet_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mid(u64);

impl Mid {
    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Mid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

type OnConnect = Box<dyn FnMut(&Client, &ConnectResult) + Send>;
type OnMessage = Box<dyn FnMut(&Client, &Message) + Send>;
type OnPublish = Box<dyn FnMut(&Client, Mid, &PublishOutcome) + Send>;
type OnSubscribe = Box<dyn FnMut(&Client, Mid, &[ReasonCode]) + Send>;
type OnUnsubscribe = Box<dyn FnMut(&Client, Mid) + Send>;
type OnDisconnect = Box<dyn FnMut(&Client, &Disconnected) + Send>;

/// A blocking MQTT client with paho-style callbacks: a cheap, cloneable handle (every clone
/// is the same client), usable from any thread and from inside callbacks. See the
/// [module documentation](self).
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

struct Shared {
    options: ConnectOptions,
    core: Mutex<Core>,
    next_mid: AtomicU64,
    on_connect: Mutex<Option<OnConnect>>,
    on_message: Mutex<Option<OnMessage>>,
    on_publish: Mutex<Option<OnPublish>>,
    on_subscribe: Mutex<Option<OnSubscribe>>,
    on_unsubscribe: Mutex<Option<OnUnsubscribe>>,
    on_disconnect: Mutex<Option<OnDisconnect>>,
}

/// The connection's state.
#[derive(Default)]
struct Core {
    /// Commands to the loop, while connected.
    commands: Option<mpsc::UnboundedSender<Command>>,
    /// The connection, while connected and no loop runs.
    session: Option<Session>,
    /// Stops the running loop.
    stop: Option<oneshot::Sender<()>>,
    /// The thread of [`Client::loop_start`].
    thread: Option<JoinHandle<()>>,
    /// The thread running the loop (and the callbacks).
    loop_thread: Option<ThreadId>,
}

/// What a loop needs: the runtime and the async client it drives.
struct Session {
    runtime: Runtime,
    client: crate::Client,
    events: Events,
    commands: mpsc::UnboundedReceiver<Command>,
}

enum Command {
    Publish {
        mid: Mid,
        topic: TopicName,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        slot: Completer,
    },
    Subscribe {
        mid: Mid,
        filter: String,
        qos: QoS,
    },
    Unsubscribe {
        mid: Mid,
        filter: String,
    },
    Disconnect,
}

/// A request's end, reported to the loop.
enum Done {
    Published {
        mid: Mid,
        result: Result<PublishOutcome, crate::Error>,
        slot: Completer,
    },
    Subscribed {
        mid: Mid,
        result: Result<SubAck, crate::Error>,
    },
    Unsubscribed {
        mid: Mid,
        result: Result<UnsubAck, crate::Error>,
    },
}

/// How a loop ended.
enum End {
    /// Stopped: the connection goes on, for the next loop.
    Stopped,
    /// The connection is over.
    Closed,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Calls the callback in `slot`, which is out of its slot meanwhile: the callback may set
/// callbacks (a new one for its own slot replaces it).
fn call<F: ?Sized>(slot: &Mutex<Option<Box<F>>>, f: impl FnOnce(&mut F)) {
    let taken = lock(slot).take();
    if let Some(mut callback) = taken {
        f(&mut callback);
        let mut slot = lock(slot);
        if slot.is_none() {
            *slot = Some(callback);
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let core = lock(&self.shared.core);
        f.debug_struct("Client")
            .field("host", &self.shared.options.host())
            .field("port", &self.shared.options.port())
            .field("connected", &core.commands.is_some())
            .field("looping", &core.stop.is_some())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client that will connect with `options`. Nothing happens before
    /// [`connect`](Self::connect); set the callbacks first (or later: they apply from the
    /// next thing they report).
    pub fn new(options: ConnectOptions) -> Self {
        Client {
            shared: Arc::new(Shared {
                options,
                core: Mutex::new(Core::default()),
                next_mid: AtomicU64::new(1),
                on_connect: Mutex::new(None),
                on_message: Mutex::new(None),
                on_publish: Mutex::new(None),
                on_subscribe: Mutex::new(None),
                on_unsubscribe: Mutex::new(None),
                on_disconnect: Mutex::new(None),
            }),
        }
    }

    /// Called when the server accepts a connection: the first one (once a loop runs) and
    /// every automatic reconnection ([`ConnectOptions::reconnect`]). Subscribe here to have
    /// the subscriptions renewed on reconnection.
    pub fn on_connect(&self, callback: impl FnMut(&Client, &ConnectResult) + Send + 'static) {
        *lock(&self.shared.on_connect) = Some(Box::new(callback));
    }

    /// Called for every message from the server.
    pub fn on_message(&self, callback: impl FnMut(&Client, &Message) + Send + 'static) {
        *lock(&self.shared.on_message) = Some(Box::new(callback));
    }

    /// Called when a publish is complete, with its [`Mid`] and outcome: QoS 0 once written,
    /// QoS 1 on PUBACK, QoS 2 on PUBCOMP. In MQTT 5.0, check
    /// [`PublishOutcome::is_success`]. A publish that fails (the connection ended) is only
    /// reported to its [`MessageInfo`].
    pub fn on_publish(&self, callback: impl FnMut(&Client, Mid, &PublishOutcome) + Send + 'static) {
        *lock(&self.shared.on_publish) = Some(Box::new(callback));
    }

    /// Called on SUBACK, with the subscribe's [`Mid`] and the reason codes: the granted QoS
    /// (`ReasonCode::GRANTED_QOS_0` to `_2`), or a refusal (0x80 and above).
    pub fn on_subscribe(&self, callback: impl FnMut(&Client, Mid, &[ReasonCode]) + Send + 'static) {
        *lock(&self.shared.on_subscribe) = Some(Box::new(callback));
    }

    /// Called on UNSUBACK, with the unsubscribe's [`Mid`].
    pub fn on_unsubscribe(&self, callback: impl FnMut(&Client, Mid) + Send + 'static) {
        *lock(&self.shared.on_unsubscribe) = Some(Box::new(callback));
    }

    /// Called when a connection ends: [`DisconnectReason::Local`](crate::DisconnectReason::Local)
    /// after [`disconnect`](Self::disconnect), otherwise lost or closed by the server. With
    /// automatic reconnection, `reconnect_in` says when the client tries again; when it is
    /// `None` the client is done and the loop ends.
    pub fn on_disconnect(&self, callback: impl FnMut(&Client, &Disconnected) + Send + 'static) {
        *lock(&self.shared.on_disconnect) = Some(Box::new(callback));
    }

    /// Connects, and returns once the server accepted the connection. `on_connect` is called
    /// when a loop runs. May be called again once a connection has ended.
    ///
    /// # Errors
    /// [`Error::AlreadyConnected`], [`Error::InCallback`], or the async client's
    /// [`connect`](crate::Client::connect) error (refused: [`crate::Error::connack_reason`]).
    pub fn connect(&self) -> Result<(), Error> {
        if self.on_loop_thread() {
            return Err(Error::InCallback);
        }
        let mut core = lock(&self.shared.core);
        if core.commands.is_some() {
            return Err(Error::AlreadyConnected);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(crate::Error::from)?;
        let (client, events) =
            runtime.block_on(crate::Client::connect(self.shared.options.clone()))?;
        let (tx, commands) = mpsc::unbounded_channel();
        core.commands = Some(tx);
        core.session = Some(Session {
            runtime,
            client,
            events,
            commands,
        });
        Ok(())
    }

    /// Whether the client is connected (or reconnecting): from [`connect`](Self::connect)
    /// until the connection is over.
    pub fn is_connected(&self) -> bool {
        lock(&self.shared.core).commands.is_some()
    }

    /// Publishes `payload` to `topic`: hands the message to the loop and returns. The
    /// returned [`MessageInfo`] tells when it is complete; so does `on_publish`.
    ///
    /// # Errors
    /// [`Error::NotConnected`], [`crate::Error::InvalidTopic`].
    pub fn publish(
        &self,
        topic: impl AsRef<str>,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<MessageInfo, Error> {
        let topic = TopicName::try_from(topic.as_ref()).map_err(crate::Error::InvalidTopic)?;
        let mid = self.next_mid();
        let slot = Arc::new(Slot::default());
        self.command(Command::Publish {
            mid,
            topic,
            payload: payload.into(),
            qos,
            retain,
            slot: Completer(Some(Arc::clone(&slot))),
        })?;
        Ok(MessageInfo {
            mid,
            slot,
            shared: Arc::clone(&self.shared),
        })
    }

    /// Subscribes to `filter`: hands the request to the loop and returns its [`Mid`];
    /// `on_subscribe` reports the SUBACK.
    ///
    /// # Errors
    /// [`Error::NotConnected`], [`crate::Error::InvalidFilter`].
    pub fn subscribe(&self, filter: impl AsRef<str>, qos: QoS) -> Result<Mid, Error> {
        let filter = filter.as_ref();
        TopicFilter::try_from(filter).map_err(crate::Error::InvalidFilter)?;
        let mid = self.next_mid();
        self.command(Command::Subscribe {
            mid,
            filter: filter.to_owned(),
            qos,
        })?;
        Ok(mid)
    }

    /// Unsubscribes from `filter`: hands the request to the loop and returns its [`Mid`];
    /// `on_unsubscribe` reports the UNSUBACK.
    ///
    /// # Errors
    /// [`Error::NotConnected`], [`crate::Error::InvalidFilter`].
    pub fn unsubscribe(&self, filter: impl AsRef<str>) -> Result<Mid, Error> {
        let filter = filter.as_ref();
        TopicFilter::try_from(filter).map_err(crate::Error::InvalidFilter)?;
        let mid = self.next_mid();
        self.command(Command::Unsubscribe {
            mid,
            filter: filter.to_owned(),
        })?;
        Ok(mid)
    }

    /// Disconnects: sends DISCONNECT once the requests made before it are handed over, and
    /// ends the connection; `on_disconnect` follows and the loop ends (`loop_forever`
    /// returns). From a callback or while a loop runs, this hands the request to the loop and
    /// returns; while no loop runs, it runs the loop on this thread until the connection is
    /// closed (calling the callbacks still due). Does nothing when not connected.
    ///
    /// # Errors
    /// The loop's, while no loop ran (see [`loop_forever`](Self::loop_forever)).
    pub fn disconnect(&self) -> Result<(), Error> {
        match self.command(Command::Disconnect) {
            Ok(()) => {}
            Err(Error::NotConnected) => return Ok(()),
            Err(e) => return Err(e),
        }
        match self.loop_forever() {
            Ok(()) | Err(Error::LoopRunning | Error::NotConnected | Error::InCallback) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Runs the network loop on this thread, calling the callbacks, until the connection is
    /// over ([`disconnect`](Self::disconnect), or lost without automatic reconnection) or
    /// [`loop_stop`](Self::loop_stop) is called (from a callback, say).
    ///
    /// # Errors
    /// [`Error::NotConnected`], [`Error::LoopRunning`], [`Error::InCallback`], or a tokio
    /// runtime that cannot be built.
    pub fn loop_forever(&self) -> Result<(), Error> {
        if self.on_loop_thread() {
            return Err(Error::InCallback);
        }
        let (session, stop) = self.begin_loop()?;
        lock(&self.shared.core).loop_thread = Some(thread::current().id());
        self.run_loop(session, stop);
        Ok(())
    }

    /// Runs the network loop on a background thread, which calls the callbacks, until
    /// [`loop_stop`](Self::loop_stop) or the end of the connection.
    ///
    /// # Errors
    /// [`Error::NotConnected`], [`Error::LoopRunning`], or a thread that cannot be started.
    pub fn loop_start(&self) -> Result<(), Error> {
        let (session, stop) = self.begin_loop()?;
        let client = self.clone();
        let mut core = lock(&self.shared.core);
        let spawned = thread::Builder::new()
            .name("pigeon-mqtt-loop".to_owned())
            .spawn(move || client.run_loop(session, stop));
        match spawned {
            Ok(handle) => {
                core.loop_thread = Some(handle.thread().id());
                core.thread = Some(handle);
                Ok(())
            }
            Err(e) => {
                // The session went with the closure: the connection is over.
                core.commands = None;
                core.stop = None;
                Err(crate::Error::from(e).into())
            }
        }
    }

    /// Stops the network loop (after the callback it may be running) and, unless called from
    /// the loop's own thread, waits for [`loop_start`](Self::loop_start)'s thread to end. The
    /// connection stays open, unserved (keep alive included) until the next loop. A
    /// [`disconnect`](Self::disconnect) already requested is completed first, so
    /// `disconnect(); loop_stop()` still calls `on_disconnect`. Does nothing when no loop
    /// runs.
    ///
    /// # Panics
    /// When a callback panicked on the loop's thread (the panic is passed on).
    pub fn loop_stop(&self) {
        let (stop, thread) = {
            let mut core = lock(&self.shared.core);
            (core.stop.take(), core.thread.take())
        };
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        if let Some(handle) = thread
            && handle.thread().id() != thread::current().id()
            && let Err(panic) = handle.join()
        {
            std::panic::resume_unwind(panic);
        }
    }

    fn next_mid(&self) -> Mid {
        Mid(self.shared.next_mid.fetch_add(1, Ordering::Relaxed))
    }

    fn on_loop_thread(&self) -> bool {
        lock(&self.shared.core).loop_thread == Some(thread::current().id())
    }

    fn command(&self, command: Command) -> Result<(), Error> {
        let core = lock(&self.shared.core);
        let sender = core.commands.as_ref().ok_or(Error::NotConnected)?;
        sender.send(command).map_err(|_| Error::NotConnected)
    }

    /// Takes the session for a loop.
    fn begin_loop(&self) -> Result<(Session, oneshot::Receiver<()>), Error> {
        let mut core = lock(&self.shared.core);
        if core.stop.is_some() {
            return Err(Error::LoopRunning);
        }
        let session = core.session.take().ok_or(if core.commands.is_some() {
            // Connected, but a stopped loop has not handed the session back yet.
            Error::LoopRunning
        } else {
            Error::NotConnected
        })?;
        let (tx, stop) = oneshot::channel();
        core.stop = Some(tx);
        Ok((session, stop))
    }

    fn run_loop(&self, session: Session, stop: oneshot::Receiver<()>) {
        let Session {
            runtime,
            client,
            mut events,
            mut commands,
        } = session;
        let end = runtime.block_on(self.drive(&client, &mut events, &mut commands, stop));
        let mut core = lock(&self.shared.core);
        core.loop_thread = None;
        core.stop = None;
        match end {
            End::Stopped => {
                core.session = Some(Session {
                    runtime,
                    client,
                    events,
                    commands,
                });
            }
            End::Closed => {
                core.commands = None;
                drop(core);
                // Requests that came too late fail (their receipts report it).
                commands.close();
                while commands.try_recv().is_ok() {}
                drop((client, events));
                drop(runtime);
            }
        }
    }

    /// The loop: hands commands to the async client, calls the callbacks.
    async fn drive(
        &self,
        client: &crate::Client,
        events: &mut Events,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        mut stop: oneshot::Receiver<()>,
    ) -> End {
        let (done_tx, mut done) = mpsc::unbounded_channel();
        let mut stopping = false;
        let mut disconnecting = false;
        // Requests handed to the async client and not reported yet.
        let mut pending = 0usize;
        loop {
            if stopping && !disconnecting {
                return End::Stopped;
            }
            tokio::select! {
                biased;
                Some(finished) = done.recv() => {
                    pending -= 1;
                    self.finished(finished);
                }
                Some(command) = commands.recv() => {
                    if matches!(command, Command::Disconnect) {
                        disconnecting = true;
                    } else {
                        pending += 1;
                    }
                    spawn_command(client, command, done_tx.clone());
                }
                event = events.recv() => match event {
                    Some(event) => {
                        if pending > 0 {
                            // The async client answers a request before it reports what
                            // the server sent next (a retained message after SUBACK): let
                            // the requests' tasks run, and report them first, as the wire
                            // has it.
                            tokio::task::yield_now().await;
                            while let Ok(finished) = done.try_recv() {
                                pending -= 1;
                                self.finished(finished);
                            }
                        }
                        self.event(event);
                    }
                    None => return End::Closed,
                },
                _ = &mut stop, if !stopping => stopping = true,
            }
        }
    }

    fn event(&self, event: Event) {
        let shared = &self.shared;
        match event {
            Event::Connected(connected) => call(&shared.on_connect, |f| f(self, &connected)),
            Event::Message(message) => call(&shared.on_message, |f| f(self, &message)),
            Event::Disconnected(disconnected) => {
                call(&shared.on_disconnect, |f| f(self, &disconnected));
            }
            _ => {}
        }
    }

    fn finished(&self, finished: Done) {
        let shared = &self.shared;
        match finished {
            Done::Published {
                mid,
                result,
                mut slot,
            } => {
                if let Ok(outcome) = &result {
                    call(&shared.on_publish, |f| f(self, mid, outcome));
                }
                slot.complete(result);
            }
            Done::Subscribed { mid, result } => {
                if let Ok(ack) = result {
                    call(&shared.on_subscribe, |f| f(self, mid, &ack.reasons));
                }
            }
            Done::Unsubscribed { mid, result } => {
                if result.is_ok() {
                    call(&shared.on_unsubscribe, |f| f(self, mid));
                }
            }
        }
    }
}

/// Runs one command on the async client in its own task (so that the loop goes on serving
/// events meanwhile), reporting its end to the loop.
fn spawn_command(client: &crate::Client, command: Command, done: mpsc::UnboundedSender<Done>) {
    let client = client.clone();
    tokio::spawn(async move {
        let finished = match command {
            Command::Publish {
                mid,
                topic,
                payload,
                qos,
                retain,
                slot,
            } => Done::Published {
                mid,
                result: client.publish(topic.as_str(), payload, qos, retain).await,
                slot,
            },
            Command::Subscribe { mid, filter, qos } => Done::Subscribed {
                mid,
                result: client.subscribe(filter, qos).await,
            },
            Command::Unsubscribe { mid, filter } => Done::Unsubscribed {
                mid,
                result: client.unsubscribe(filter).await,
            },
            Command::Disconnect => {
                let _ = client.disconnect().await;
                return;
            }
        };
        let _ = done.send(finished);
    });
}

#[derive(Default)]
struct Slot {
    result: Mutex<Option<Result<PublishOutcome, crate::Error>>>,
    ready: Condvar,
}

/// Completes a [`Slot`] once; dropped before that (the loop or the connection gone), with
/// [`crate::Error::Closed`].
struct Completer(Option<Arc<Slot>>);

impl Completer {
    fn complete(&mut self, result: Result<PublishOutcome, crate::Error>) {
        if let Some(slot) = self.0.take() {
            *lock(&slot.result) = Some(result);
            slot.ready.notify_all();
        }
    }
}

impl Drop for Completer {
    fn drop(&mut self) {
        self.complete(Err(crate::Error::Closed));
    }
}

/// A publish in progress, from [`Client::publish`] (paho's `MQTTMessageInfo`).
pub struct MessageInfo {
    mid: Mid,
    slot: Arc<Slot>,
    shared: Arc<Shared>,
}

impl fmt::Debug for MessageInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageInfo")
            .field("mid", &self.mid)
            .field("result", &*lock(&self.slot.result))
            .finish()
    }
}

impl MessageInfo {
    /// The publish's message identifier, as `on_publish` reports it.
    pub fn mid(&self) -> Mid {
        self.mid
    }

    /// Whether the publish is complete (successfully or not).
    pub fn is_published(&self) -> bool {
        lock(&self.slot.result).is_some()
    }

    /// Waits until the publish is complete: written (QoS 0), PUBACK (QoS 1), PUBCOMP (QoS 2).
    /// A loop must be running (on another thread).
    ///
    /// # Errors
    /// [`Error::InCallback`] on the loop's thread (unless already complete), the request's
    /// failure ([`crate::Error::Closed`] when the connection ended first).
    pub fn wait_for_publish(&self) -> Result<PublishOutcome, Error> {
        self.wait(None)
    }

    /// [`wait_for_publish`](Self::wait_for_publish), for at most `timeout`.
    ///
    /// # Errors
    /// Those of `wait_for_publish`, and [`Error::Timeout`].
    pub fn wait_for_publish_timeout(&self, timeout: Duration) -> Result<PublishOutcome, Error> {
        self.wait(Some(timeout))
    }

    fn wait(&self, timeout: Option<Duration>) -> Result<PublishOutcome, Error> {
        let in_callback = lock(&self.shared.core).loop_thread == Some(thread::current().id());
        let mut result = lock(&self.slot.result);
        if result.is_none() && in_callback {
            return Err(Error::InCallback);
        }
        let pending = |r: &mut Option<_>| r.is_none();
        result = match timeout {
            None => self
                .slot
                .ready
                .wait_while(result, pending)
                .unwrap_or_else(PoisonError::into_inner),
            Some(timeout) => {
                self.slot
                    .ready
                    .wait_timeout_while(result, timeout, pending)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
        match &*result {
            Some(result) => result.clone().map_err(Error::from),
            None => Err(Error::Timeout),
        }
    }
}
