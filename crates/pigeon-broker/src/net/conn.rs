//! The task that drives one client connection.
//!
//! It reads whatever bytes are ready, decodes every complete packet, feeds them to the
//! [`Connection`] state machine, acts on its events, and only then writes what the state
//! machine produced, in one write. Deliveries arrive through the connection's mailbox. No lock
//! is held across an `.await`.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::BytesMut;
use pigeon_proto::{
    DecodeError, Decoder, MqttString, Packet, PacketType, Protocol, ReasonCode, TopicError, Will,
};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{oneshot, watch};
use tokio::time::{Sleep, sleep_until};

use crate::auth::ClientAccess;
use crate::auth::acl::Verdict;
use crate::broker::{Claim, Mail, MailboxReceiver, will_due};
use crate::clock;
use crate::config::LogTypes;
use crate::message::Message;
use crate::router::RetainSource;
use crate::server::{ListenerSettings, ListenerShared, ServerSettings, Shared, mailbox_capacity};
use crate::session::{CloseReason, Connection, Event, Journal, Session, Violation};
use crate::store::{Durable, Lsn, Record};
use crate::tls::{self, CertUsername};

/// Stop reading from a client while this much output waits to be written to it.
const WRITE_HIGH_WATER: usize = 256 * 1024;
/// Read buffer growth step.
const READ_CHUNK: usize = 4096;

/// What the task knows about its client once CONNECT is accepted.
struct Identity {
    client_id: MqttString,
    generation: u64,
    /// The user name it connected with; `None` for an anonymous client.
    username: Option<String>,
}

/// Serves one accepted TCP connection in a task of its own until it ends, holding `guard`
/// as long (see [`serve_connection`]). A plain TCP connection's task is the driver itself,
/// with no layer of setup around it: that future is what every idle connection costs.
pub(crate) fn spawn_connection<G: Send + 'static>(
    shared: Arc<Shared>,
    listener: Arc<ListenerShared>,
    stream: TcpStream,
    peer: SocketAddr,
    guard: G,
) {
    let accepted = clock::now();
    let (settings_rx, settings) = begin(&shared, &listener, &stream, peer);
    let listener_settings = &settings.listeners[listener.index];
    if listener_settings.tls.is_none() && listener_settings.websockets.is_none() {
        let (reader, writer) = stream.into_split();
        let io = Io {
            reader,
            writer,
            cert_username: None,
        };
        let task = drive(
            shared,
            listener,
            settings,
            settings_rx,
            io,
            peer,
            accepted,
            guard,
        );
        tokio::spawn(task);
    } else {
        tokio::spawn(async move {
            let _guard = guard;
            serve_stream(
                shared,
                listener,
                settings,
                settings_rx,
                stream,
                peer,
                accepted,
            )
            .await;
        });
    }
}

/// What every new connection starts with: the settings in force (and a receiver for later
/// reloads), `TCP_NODELAY` as configured, and the log line.
fn begin(
    shared: &Shared,
    listener: &ListenerShared,
    stream: &TcpStream,
    peer: SocketAddr,
) -> (watch::Receiver<Arc<ServerSettings>>, Arc<ServerSettings>) {
    let port = listener.port;
    let settings_rx = shared.settings.subscribe();
    let settings = Arc::clone(&settings_rx.borrow());
    if settings.nodelay {
        let _ = stream.set_nodelay(true);
    }
    shared.log.connection(
        LogTypes::NOTICE,
        format_args!(
            "New connection from {}:{} on port {port}.",
            peer.ip(),
            peer.port()
        ),
    );
    (settings_rx, settings)
}

/// Serves one accepted TCP connection until it ends, with the settings in force when it was
/// accepted, and those of each later reload. On a TLS listener, the handshake comes first,
/// here in the connection's task, within the connect timeout.
pub async fn serve_connection(
    shared: Arc<Shared>,
    listener: Arc<ListenerShared>,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let accepted = clock::now();
    let (settings_rx, settings) = begin(&shared, &listener, &stream, peer);
    serve_stream(
        shared,
        listener,
        settings,
        settings_rx,
        stream,
        peer,
        accepted,
    )
    .await;
}

/// [`serve_connection`] once [`begin`] is done.
async fn serve_stream(
    shared: Arc<Shared>,
    listener: Arc<ListenerShared>,
    settings: Arc<ServerSettings>,
    settings_rx: watch::Receiver<Arc<ServerSettings>>,
    stream: TcpStream,
    peer: SocketAddr,
    accepted: std::time::Instant,
) {
    let listener_settings = &settings.listeners[listener.index];
    let Some(tls) = listener_settings.tls.clone() else {
        let (reader, writer) = stream.into_split();
        let io = Io {
            reader,
            writer,
            cert_username: None,
        };
        if listener_settings.websockets.is_none() {
            // The common case, and the one whose future every idle connection carries: the
            // driver is awaited right here, with no other layer's state around it.
            return drive(
                shared,
                listener,
                settings,
                settings_rx,
                io,
                peer,
                accepted,
                (),
            )
            .await;
        }
        return Box::pin(serve_io(
            shared,
            listener,
            settings,
            settings_rx,
            io,
            peer,
            accepted,
        ))
        .await;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&tls.config));
    let patience = listener_settings.connection.connect_timeout;
    let stream = match Box::pin(tokio::time::timeout(patience, acceptor.accept(stream))).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            shared.log.error(format_args!(
                "TLS handshake with {}:{} failed: {}.",
                peer.ip(),
                peer.port(),
                tls::describe_error(&error)
            ));
            shared.log.connection(
                LogTypes::NOTICE,
                "Client <unknown> disconnected: Protocol error.",
            );
            return;
        }
        Err(_) => {
            shared.log.connection(
                LogTypes::NOTICE,
                "Client <unknown> has exceeded timeout, disconnecting.",
            );
            return;
        }
    };
    let cert_username = (tls.username != CertUsername::Off).then(|| {
        let cert = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first());
        tls::cert_username(tls.username, cert.map(|c| c.as_ref()))
    });
    let (reader, writer) = tokio::io::split(stream);
    let io = Io {
        reader,
        writer,
        cert_username,
    };
    // Boxed, like the handshake above: a TLS session is large, and the plain TCP path, which
    // shares this future's layout, must not pay for it on every idle connection.
    Box::pin(serve_io(
        shared,
        listener,
        settings,
        settings_rx,
        io,
        peer,
        accepted,
    ))
    .await;
}

/// Drives `io`, after a WebSocket handshake on a `protocol websockets` listener (see
/// [`super::ws`]).
async fn serve_io<R: ReadSide, W: WriteSide>(
    shared: Arc<Shared>,
    listener: Arc<ListenerShared>,
    settings: Arc<ServerSettings>,
    settings_rx: watch::Receiver<Arc<ServerSettings>>,
    io: Io<R, W>,
    peer: SocketAddr,
    accepted: std::time::Instant,
) {
    let listener_settings = &settings.listeners[listener.index];
    let Some(ws) = listener_settings.websockets.clone() else {
        return drive(
            shared,
            listener,
            settings,
            settings_rx,
            io,
            peer,
            accepted,
            (),
        )
        .await;
    };
    let patience = listener_settings.connection.connect_timeout;
    let upgraded = super::ws::accept(&shared.log, &ws, io.reader, io.writer, peer, patience);
    let Some((reader, writer)) = Box::pin(upgraded).await else {
        return;
    };
    let io = Io {
        reader,
        writer,
        cert_username: io.cert_username,
    };
    Box::pin(drive(
        shared,
        listener,
        settings,
        settings_rx,
        io,
        peer,
        accepted,
        (),
    ))
    .await;
}

/// The two halves of a connection's stream, and what its TLS certificate says.
struct Io<R, W> {
    reader: R,
    writer: W,
    /// `Some` when the listener takes usernames from client certificates: the name this
    /// client's certificate gives, if any.
    cert_username: Option<Option<String>>,
}

/// The future that serves a connection once its byte stream is ready. Not an `async fn`:
/// what it is given goes into the driver, not also into a frame of its own.
#[allow(clippy::too_many_arguments)]
fn drive<R: ReadSide, W: WriteSide, G: Send + 'static>(
    shared: Arc<Shared>,
    listener: Arc<ListenerShared>,
    settings: Arc<ServerSettings>,
    settings_rx: watch::Receiver<Arc<ServerSettings>>,
    io: Io<R, W>,
    peer: SocketAddr,
    accepted: std::time::Instant,
    guard: G,
) -> impl Future<Output = ()> + Send {
    let rx = MailboxReceiver::new(mailbox_capacity(settings.routing.outbound));
    let connection = settings.listeners[listener.index].connection.clone();
    let mut driver = Driver {
        conn: Connection::new(connection, accepted),
        listener,
        decoder: Decoder::new(None, settings.max_packet_size),
        settings,
        settings_rx,
        shared,
        reader: io.reader,
        writer: io.writer,
        unflushed: false,
        cert_username: io.cert_username.map(Box::new),
        peer,
        rbuf: BytesMut::new(),
        wbuf: BytesMut::new(),
        identity: None,
        takeover_reply: None,
        ending: None,
        ack_rc: None,
        durable: None,
        timer: None,
        rest: Rest::Stirred,
        park_at: None,
    };
    driver.durable = Durability::for_connection(&driver.shared.broker);
    run_driver(driver, rx, guard)
}

/// The future of a connection's task: runs `driver` until the connection ends or parks
/// (see [`super::park`]). Not an `async fn`: the driver lives in this block's captures, used
/// in place; an `async fn` taking it by value would hold it twice (its argument, and the
/// local the argument is moved into).
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn would hold the driver twice: see above"
)]
fn run_driver<R: ReadSide, W: WriteSide, G: Send + 'static>(
    mut driver: Driver<R, W>,
    mut rx: MailboxReceiver,
    guard: G,
) -> impl Future<Output = ()> + Send {
    async move {
        // Held, not moved: moving it into a local would keep it twice.
        let _ = &guard;
        if driver.run(&mut rx).await == Leave::Park {
            // Nothing is awaited from here on: what is moved out is not kept twice.
            park(driver, rx, guard);
        }
    }
}

/// How a connection's task ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leave {
    /// The connection is over.
    Closed,
    /// The connection is idle: it parks (see [`super::park`]).
    Park,
}

/// How long a connection that has been busy stays in its task without anything to do
/// before it parks: at least this long, at most twice.
const PARK_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether a connection has had anything to do since its parking timer was armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rest {
    /// Just connected: it parks as soon as it has nothing to do.
    Fresh,
    /// Something happened since the timer was armed.
    Stirred,
    /// Nothing happened since the timer was armed: it parks when the timer fires.
    Still,
}

/// What a connection keeps while it has no task: its driver, less the socket's tokio halves,
/// the buffers (empty when it parks) and what is derived again when it resumes.
struct Parts {
    listener: Arc<ListenerShared>,
    /// The settings the connection went by when it parked: a reload since then is applied
    /// when it resumes.
    settings: Arc<ServerSettings>,
    conn: Connection,
    /// The generation of its claim on its Client Identifier (the rest of its identity, the
    /// identifier and the username, is in the session).
    generation: u64,
}

impl Parts {
    /// The driver that carries on with these parts over `reader` and `writer`: with the
    /// settings it parked with (and a reload since then to take), its identity taken from
    /// the session again, and a new receiver of the store's durable position (nothing was
    /// held for it when it parked).
    fn driver<R: ReadSide, W: WriteSide>(
        self,
        shared: &Arc<Shared>,
        reader: R,
        writer: W,
        peer: SocketAddr,
    ) -> Driver<R, W> {
        // The settings it parked with; if a reload replaced them meanwhile, the receiver
        // says so and the driver takes the new ones first thing, as any connection does.
        let mut settings_rx = shared.settings.subscribe();
        if !Arc::ptr_eq(&settings_rx.borrow_and_update(), &self.settings) {
            settings_rx.mark_changed();
        }
        let settings = self.settings;
        let identity = self.conn.session().map(|session| {
            Box::new(Identity {
                client_id: session.client_id.clone(),
                generation: self.generation,
                username: session
                    .access
                    .as_ref()
                    .and_then(ClientAccess::username)
                    .map(str::to_owned),
            })
        });
        let durable = Durability::for_connection(&shared.broker);
        Driver {
            decoder: Decoder::new(Some(self.conn.protocol()), settings.max_packet_size),
            conn: self.conn,
            listener: self.listener,
            settings,
            settings_rx,
            shared: Arc::clone(shared),
            reader,
            writer,
            unflushed: false,
            cert_username: None,
            peer,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            identity,
            takeover_reply: None,
            ending: None,
            ack_rc: None,
            durable,
            timer: None,
            rest: Rest::Stirred,
            park_at: None,
        }
    }

    fn name(&self) -> &str {
        self.conn
            .session()
            .map_or("<unknown>", |s| s.client_id.as_str())
    }
}

/// A parked connection (see [`super::park`]).
struct Parked<G> {
    stream: std::net::TcpStream,
    /// Its slot's generation in the parker (beside the socket's four bytes, in room the
    /// layout has anyway).
    generation: u32,
    parts: Parts,
    rx: MailboxReceiver,
    guard: G,
}

/// Hands an idle connection to the broker's parker. Only a plain TCP connection parks (see
/// [`ReadSide::into_std`]); should its socket not come out of tokio's hands, the connection
/// is over, and a task finishes it as one whose peer left.
fn park<R: ReadSide, W: WriteSide, G: Send + 'static>(
    driver: Driver<R, W>,
    rx: MailboxReceiver,
    guard: G,
) {
    let Driver {
        shared,
        listener,
        settings,
        reader,
        writer,
        peer,
        mut conn,
        identity,
        ..
    } = driver;
    conn.release_idle_room();
    let parts = Parts {
        listener,
        settings,
        conn,
        generation: identity.map_or(0, |i| i.generation),
    };
    match reader.into_std(writer) {
        Ok(stream) => shared.parker.park(
            &shared,
            Box::new(Parked {
                stream,
                generation: 0,
                parts,
                rx,
                guard,
            }),
        ),
        Err(e) => {
            shared.log.error(format_args!(
                "Client {} lost: its socket could not be parked ({e}).",
                parts.name()
            ));
            tokio::spawn(run_driver(
                parts.driver(&shared, Gone, Gone, peer),
                rx,
                guard,
            ));
        }
    }
}

impl<G: Send + 'static> super::park::Resume for Parked<G> {
    fn fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.stream)
    }

    fn deadline(&self) -> Option<std::time::Instant> {
        self.parts.conn.poll_timeout()
    }

    fn mailbox(&mut self) -> &mut MailboxReceiver {
        &mut self.rx
    }

    fn generation(&self) -> u32 {
        self.generation
    }

    fn set_generation(&mut self, generation: u32) {
        self.generation = generation;
    }

    fn resume(self: Box<Self>, shared: &Arc<Shared>) {
        let Parked {
            stream,
            parts,
            rx,
            guard,
            ..
        } = *self;
        // The peer's address is asked again rather than kept: it is only for the log, and a
        // socket whose peer has gone is about to be finished anyway.
        let peer = stream
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        match TcpStream::from_std(stream) {
            Ok(stream) => {
                let (reader, writer) = stream.into_split();
                tokio::spawn(run_driver(
                    parts.driver(shared, reader, writer, peer),
                    rx,
                    guard,
                ));
            }
            Err(e) => {
                shared.log.error(format_args!(
                    "Client {} lost: its socket could not be watched again ({e}).",
                    parts.name()
                ));
                tokio::spawn(run_driver(
                    parts.driver(shared, Gone, Gone, peer),
                    rx,
                    guard,
                ));
            }
        }
    }
}

/// The stream of a connection whose socket was lost on the way into or out of the parker:
/// read, it ends at once; written, it fails. A driver over it finishes the connection as
/// one whose peer left (its will published, its session given back).
struct Gone;

impl ReadSide for Gone {
    async fn read_some(&mut self, _: &mut BytesMut) -> io::Result<usize> {
        Ok(0)
    }
}

impl AsyncWrite for Gone {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::task::Poll::Ready(Err(io::ErrorKind::NotConnected.into()))
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl WriteSide for Gone {
    const BUFFERED: bool = false;
}

/// The reading half of a connection.
pub(super) trait ReadSide: Sized + Send + Unpin + 'static {
    /// Whether a connection over this stream may park (see [`super::park`]): only a plain
    /// TCP socket can go into the parker's epoll set as it is.
    const PARKABLE: bool = false;

    /// Waits for bytes and appends them to `buf`; 0 at the end of the stream.
    fn read_some<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a;

    /// The socket this half and `writer` make, out of tokio's hands, for a connection that
    /// parks. Only where [`PARKABLE`](Self::PARKABLE); otherwise, or when tokio cannot let
    /// the socket go, an error (and the stream is gone).
    fn into_std<W: WriteSide>(self, writer: W) -> io::Result<std::net::TcpStream> {
        drop((self, writer));
        Err(io::Error::other("only a plain TCP connection parks"))
    }
}

/// The writing half of a connection.
pub(super) trait WriteSide: AsyncWrite + Send + Unpin + 'static {
    /// Whether a write may leave bytes buffered below it, which then need a flush.
    const BUFFERED: bool;
}

impl ReadSide for OwnedReadHalf {
    const PARKABLE: bool = true;

    fn into_std<W: WriteSide>(self, writer: W) -> io::Result<std::net::TcpStream> {
        let mut writer = Some(writer);
        let writer = (&mut writer as &mut dyn std::any::Any)
            .downcast_mut::<Option<OwnedWriteHalf>>()
            .and_then(Option::take)
            .ok_or_else(|| io::Error::other("the halves of different streams"))?;
        self.reunite(writer).map_err(io::Error::other)?.into_std()
    }

    /// Waits for bytes without holding a buffer: an idle connection owns none. The wait is
    /// `poll_read` into a buffer on the stack, which parks the task in the socket's own
    /// reader slot; `readable()` would put a waiter node (some 200 bytes) into the future of
    /// every idle connection. Once bytes are there, room is made for them in `buf` (and the
    /// caller gives it back as soon as every complete packet in it is decoded); when the
    /// stack buffer came back full, what else is ready is read straight into `buf`.
    fn read_some<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        std::future::poll_fn(move |cx| {
            use tokio::io::{AsyncRead, ReadBuf};
            // Uninitialised: the task polls its read at every wake (mail included), and
            // zeroing 4 KiB each time was half the broker's instructions in callgrind at
            // 200 msg/s (valgrind counts `rep stos` by the byte, but the lines are touched).
            let mut stack = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut read = ReadBuf::uninit(&mut stack);
            std::task::ready!(Pin::new(&mut *self).poll_read(cx, &mut read))?;
            let mut n = read.filled().len();
            buf.reserve(READ_CHUNK.max(n));
            buf.extend_from_slice(read.filled());
            if n == READ_CHUNK {
                buf.reserve(READ_CHUNK);
                match self.try_read_buf(buf) {
                    Ok(more) => n += more,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return std::task::Poll::Ready(Err(e)),
                }
            }
            std::task::Poll::Ready(Ok(n))
        })
    }
}

impl WriteSide for OwnedWriteHalf {
    const BUFFERED: bool = false;
}

type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

impl ReadSide for ReadHalf<TlsStream> {
    /// Decrypted bytes come through rustls's buffers: room is made before waiting.
    async fn read_some(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        if buf.capacity() - buf.len() < READ_CHUNK {
            buf.reserve(READ_CHUNK);
        }
        self.read_buf(buf).await
    }
}

impl WriteSide for WriteHalf<TlsStream> {
    const BUFFERED: bool = true;
}

/// Writes some of `buf`, or flushes when it is empty: the bytes written, and whether this
/// was a flush.
/// (A `poll_fn` rather than an `async fn` over `write_buf` and `flush`: its future, part of
/// every connection's, is two references.)
fn write_out<'a, W: WriteSide>(
    writer: &'a mut W,
    buf: &'a mut BytesMut,
) -> impl Future<Output = io::Result<(usize, bool)>> + Send + 'a {
    std::future::poll_fn(move |cx| {
        if buf.is_empty() {
            std::task::ready!(Pin::new(&mut *writer).poll_flush(cx))?;
            return std::task::Poll::Ready(Ok((0, true)));
        }
        let n = std::task::ready!(Pin::new(&mut *writer).poll_write(cx, buf))?;
        bytes::Buf::advance(buf, n);
        std::task::Poll::Ready(Ok((n, false)))
    })
}

struct Driver<R, W> {
    shared: Arc<Shared>,
    listener: Arc<ListenerShared>,
    /// The settings this connection goes by: those in force when it was accepted, then those
    /// of each reload.
    settings: Arc<ServerSettings>,
    /// Tells when a reload replaced the settings.
    settings_rx: watch::Receiver<Arc<ServerSettings>>,
    reader: R,
    writer: W,
    /// Whether bytes written may wait in a buffer below (TLS) for a flush.
    unflushed: bool,
    /// See [`Io::cert_username`] (boxed: only TLS listeners with certificate usernames have it).
    cert_username: Option<Box<Option<String>>>,
    peer: SocketAddr,
    conn: Connection,
    decoder: Decoder,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// On the heap once connected: the connection's future carries one pointer for it.
    identity: Option<Box<Identity>>,
    takeover_reply: Option<oneshot::Sender<Option<Session>>>,
    /// How the log words the disconnection a decoding error is about to cause.
    ending: Option<Ending>,
    /// The reason code the log gives the acknowledgement being sent (149 for a message
    /// dropped as too large, as Mosquitto says even in 3.1.1, where the packet has none).
    ack_rc: Option<u8>,
    /// With `persistence` and `persistence_sync_acks`: what waits for the store (on the heap:
    /// a connection without persistence carries one pointer for it).
    durable: Option<Box<Durability>>,
    /// The timer for the state machine's deadline: only while there is one (a client with
    /// Keep Alive 0 has none once connected), and on the heap so that a connection without
    /// one does not carry its room.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether anything happened since the parking timer was armed.
    rest: Rest,
    /// When the connection, idle since, parks (see [`Rest`]).
    park_at: Option<std::time::Instant>,
}

/// A connection's side of the store's durability.
struct Durability {
    /// How far the store is durable.
    rx: watch::Receiver<Durable>,
    /// Packets held until the store position they follow is durable: a publisher's PUBACK
    /// or PUBREC goes out only once its message is on disk (and, for a persistent session,
    /// nothing of its QoS 1 and 2 exchanges leaves before the state it implies is recorded).
    held: VecDeque<(Lsn, Vec<Packet>)>,
}

impl Durability {
    /// A connection's side of the store's durability: with `persistence` and
    /// `persistence_sync_acks` only (then acknowledgements wait for the store).
    fn for_connection(broker: &crate::broker::Broker) -> Option<Box<Durability>> {
        (broker.persists() && broker.store().sync_acks()).then(|| {
            Box::new(Durability {
                rx: broker.store().durable(),
                held: VecDeque::new(),
            })
        })
    }
}

/// Whether `packet` must wait for the store: an acknowledgement to a publisher always; for a
/// persistent session, any step of a QoS 1 or 2 exchange.
fn must_wait(packet: &Packet, persistent: bool) -> bool {
    match packet {
        Packet::PubAck(_) | Packet::PubRec(_) => true,
        Packet::PubComp(_) | Packet::PubRel(_) => persistent,
        Packet::Publish(p) => persistent && p.qos != pigeon_proto::QoS::AtMostOnce,
        _ => false,
    }
}

/// What woke a connection's task.
enum Woke {
    /// Bytes were read (this many).
    Read(usize),
    /// The state machine's deadline passed.
    Timeout,
    /// The peer closed the connection, or it failed.
    Closed,
    /// Handled already (a write).
    Done,
    /// Mail was taken and handled; what it made is still to be written.
    Mail,
    /// The store's durable position moved (`true`: the store is gone).
    Durable(bool),
}

/// How Mosquitto words the end of a connection over a protocol violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Malformed,
    ProtocolError,
    Oversize,
    QosNotSupported,
    RetainNotSupported,
    InvalidArguments,
}

impl Ending {
    fn of(violation: Violation) -> Ending {
        match violation.reason {
            ReasonCode::MALFORMED_PACKET => Ending::Malformed,
            ReasonCode::PACKET_TOO_LARGE => Ending::Oversize,
            ReasonCode::QOS_NOT_SUPPORTED => Ending::QosNotSupported,
            ReasonCode::RETAIN_NOT_SUPPORTED => Ending::RetainNotSupported,
            _ => Ending::ProtocolError,
        }
    }
}

/// How much of a packet is kept before decoding it, to quote a bad CONNECT's protocol name
/// and client identifier.
const HEAD_LEN: usize = 72;

/// The protocol name and, in MQTT 3.1 and 3.1.1, the client identifier of a CONNECT packet
/// whose first bytes are `head`, as far as `head` goes.
fn connect_head(head: &[u8]) -> (Option<String>, Option<String>) {
    fn string(r: &mut &[u8]) -> Option<String> {
        let len = usize::from(u16::from_be_bytes([*r.first()?, *r.get(1)?]));
        let bytes = r.get(2..)?;
        let (text, rest) = bytes.split_at(len.min(bytes.len()));
        *r = rest;
        Some(String::from_utf8_lossy(text).into_owned())
    }
    // The type byte, then the Remaining Length in one to four bytes.
    let Some(length_bytes) = head
        .get(1..)
        .and_then(|r| r.iter().take(4).position(|b| b & 0x80 == 0))
    else {
        return (None, None);
    };
    let mut r = head.get(2 + length_bytes..).unwrap_or_default();
    let protocol = string(&mut r);
    // Then the level, the flags and the Keep Alive; 5.0 puts properties before the identifier.
    let client_id = match r.first() {
        Some(3 | 4) => r.get(4..).and_then(|mut rest| string(&mut rest)),
        _ => None,
    };
    (protocol, client_id)
}

/// Mosquitto's number for a protocol version in "New client connected" (its `mosq_p_*`).
fn protocol_number(protocol: Protocol) -> u8 {
    match protocol {
        Protocol::V31 => 1,
        Protocol::V311 => 2,
        Protocol::V5 => 5,
    }
}

impl<R: ReadSide, W: WriteSide> Driver<R, W> {
    fn name(&self) -> &str {
        self.identity
            .as_ref()
            .map_or("<unknown>", |i| i.client_id.as_str())
    }

    /// Serves the connection until it ends ([`Leave::Closed`], all done) or, idle, is to
    /// park ([`Leave::Park`]; see [`super::park`]).
    async fn run(&mut self, rx: &mut MailboxReceiver) -> Leave {
        let mut peer_closed = false;
        let mut park_due = false;
        loop {
            // One atomic load: whether a reload replaced the settings.
            if self.settings_rx.has_changed().unwrap_or(false) {
                self.reconfigure();
                Box::pin(self.handle_events(rx)).await;
            }
            self.flush_transmit();
            if self.conn.is_closed() {
                break;
            }
            if R::PARKABLE && self.idle() {
                if self.rest == Rest::Fresh || park_due {
                    return Leave::Park;
                }
                if self.park_at.is_none() {
                    self.park_at = Some(clock::now() + PARK_AFTER);
                    self.rest = Rest::Still;
                }
            }
            park_due = false;
            self.arm_timer(match (self.conn.poll_timeout(), self.park_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            });
            let timed = self.timer.is_some();
            let active = self.identity.is_some() && !self.conn.is_connecting();
            let can_read = !self.conn.is_connecting()
                && self.wbuf.len() < WRITE_HIGH_WATER
                && self
                    .durable
                    .as_ref()
                    .is_none_or(|d| d.held.len() < MAX_HELD);
            let holding = self.durable.as_ref().is_some_and(|d| !d.held.is_empty());
            let can_take_mail = active && self.wbuf.len() < WRITE_HIGH_WATER;
            // The select only says what woke the connection; what takes an `.await` is done
            // after it, once its futures are dropped, so that the connection's future holds
            // either those futures or the handling, not both.
            // In a fixed order, reading first: a woken connection polls only what woke it and
            // what comes before it, and tokio's budget for each task's I/O still stops a
            // busy socket from keeping the later branches waiting.
            let woke = tokio::select! {
                biased;
                read = self.reader.read_some(&mut self.rbuf), if can_read => match read {
                    Ok(0) | Err(_) => Woke::Closed,
                    Ok(n) => Woke::Read(n),
                },
                written = write_out(&mut self.writer, &mut self.wbuf),
                    if !self.wbuf.is_empty() || self.unflushed =>
                {
                    match written {
                        Ok((n, flushed)) => {
                            self.wrote(n, flushed);
                            Woke::Done
                        }
                        Err(_) => Woke::Closed,
                    }
                }
                // Mail is waited for, not taken, here: the future of an idle connection holds
                // no room for a `Mail`.
                _ = rx.ready(), if can_take_mail => {
                    self.rest = Rest::Stirred;
                    // Take what is waiting, then write once.
                    while self.wbuf.len() < WRITE_HIGH_WATER && !self.conn.is_closed() {
                        let Some(mail) = rx.try_recv() else { break };
                        self.handle_mail(mail);
                    }
                    Woke::Mail
                }
                changed = durable_changed(holding, self.durable.as_deref_mut()), if holding => {
                    Woke::Durable(changed.is_err())
                }
                () = expiry(&mut self.timer), if timed => Woke::Timeout,
            };
            match woke {
                Woke::Closed => {
                    peer_closed = true;
                    break;
                }
                Woke::Read(n) => {
                    self.rest = Rest::Stirred;
                    self.shared.broker.counters.bytes_read(n);
                    self.decode_all(rx).await;
                    if self.rbuf.is_empty() {
                        // Nothing left to decode: give the buffers back until bytes arrive.
                        self.rbuf = BytesMut::new();
                        self.conn.release_idle_room();
                    }
                }
                Woke::Timeout => {
                    let now = clock::now();
                    if self.park_at.is_some_and(|at| at <= now) {
                        self.park_at = None;
                        // Nothing happened for a while: park; or see whether nothing
                        // happens for the next while.
                        park_due = self.rest == Rest::Still;
                    }
                    self.conn.handle_timeout(now);
                    Box::pin(self.handle_events(rx)).await;
                }
                Woke::Durable(gone) => {
                    if gone && let Some(d) = &mut self.durable {
                        // The store is gone (the broker is stopping): nothing will be acked.
                        d.held.clear();
                    }
                    self.release_held();
                }
                Woke::Mail => {
                    // What the mail brought leaves now if the socket takes it, not a turn of
                    // the loop later.
                    if self.write_now().await.is_err() {
                        peer_closed = true;
                        break;
                    }
                }
                Woke::Done => {}
            }
        }
        // Say goodbye with whatever is queued (a CONNACK refusal, a DISCONNECT in 5.0).
        self.flush_transmit();
        if !peer_closed && !self.wbuf.is_empty() && self.writer.write_all(&self.wbuf).await.is_ok()
        {
            self.shared.broker.counters.bytes_written(self.wbuf.len());
        }
        let _ = self.writer.shutdown().await;
        Box::pin(self.finish(peer_closed, rx)).await;
        Leave::Closed
    }

    /// Encodes what the connection has to send and offers it to the socket once, without
    /// waiting: what the socket does not take now is left to the loop's select.
    async fn write_now(&mut self) -> io::Result<()> {
        self.flush_transmit();
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let polled = {
            let mut write = std::pin::pin!(write_out(&mut self.writer, &mut self.wbuf));
            std::future::poll_fn(|cx| std::task::Poll::Ready(write.as_mut().poll(cx))).await
        };
        if let std::task::Poll::Ready(written) = polled {
            let (n, flushed) = written?;
            self.wrote(n, flushed);
        }
        Ok(())
    }

    /// Accounts for `n` bytes written (`flushed`: and flushed below, where the writer
    /// buffers).
    fn wrote(&mut self, n: usize, flushed: bool) {
        self.unflushed = W::BUFFERED && !flushed;
        if n > 0 {
            self.shared.broker.counters.bytes_written(n);
        }
        if self.wbuf.is_empty() {
            // Drained: give the write buffer back too.
            self.wbuf = BytesMut::new();
        }
    }

    /// Whether the connection has nothing to do but wait, with nothing buffered either way
    /// and no packet waiting for the store: then it may park.
    fn idle(&self) -> bool {
        self.identity.is_some()
            && !self.conn.is_connecting()
            && self.rbuf.is_empty()
            && self.wbuf.is_empty()
            && !self.unflushed
            && self.takeover_reply.is_none()
            && self.durable.as_ref().is_none_or(|d| d.held.is_empty())
    }

    /// Sets the timer to `deadline`, creating it when there was none and dropping it when
    /// there is none.
    fn arm_timer(&mut self, deadline: Option<std::time::Instant>) {
        match (deadline, &mut self.timer) {
            (None, timer) => *timer = None,
            (Some(at), Some(timer)) => {
                let at = tokio::time::Instant::from_std(at);
                if timer.deadline() != at {
                    timer.as_mut().reset(at);
                }
            }
            (Some(at), timer @ None) => *timer = Some(Box::pin(sleep_until(at.into()))),
        }
    }

    /// Takes the settings a reload put in force. The packet size limit, the listener's
    /// protocol settings (`message_size_limit`, `retain_available`, `acl_subscribe_check`)
    /// and its ACL apply to this connection from its next packet or message; and, as
    /// Mosquitto does on reload, an anonymous client is disconnected when its listener no
    /// longer allows anonymous clients. The rest matters at CONNECT only, or to new
    /// connections.
    fn reconfigure(&mut self) {
        self.settings = Arc::clone(&self.settings_rx.borrow_and_update());
        self.decoder
            .set_max_packet_size(self.settings.max_packet_size);
        let listener = &self.settings.listeners[self.listener.index];
        self.conn.set_settings(listener.connection.clone());
        let Some(identity) = &self.identity else {
            return;
        };
        if !listener.allow_anonymous && identity.username.is_none() {
            self.conn.revoke();
            return;
        }
        // The ACL read again: the client's next messages, both ways, are checked against it.
        // (Its password is not checked again: as in Mosquitto, a new password file affects
        // only the clients that connect after it.)
        self.conn.set_access(ClientAccess::new(
            listener.acl.clone(),
            identity.username.clone(),
        ));
    }

    /// Decodes and handles every complete packet in the read buffer.
    async fn decode_all(&mut self, mailbox: &MailboxReceiver) {
        while !self.conn.is_closed() && !self.conn.is_connecting() {
            // Decoding is a plain function: its locals (the packet, the head of a bad one) are
            // not part of this future, which only holds what awaits the events.
            let Some(decoded) = self.decode_one() else {
                break;
            };
            if let Some(connect) = self.handle_events_to_connect() {
                // Once per connection: boxed, so that its state is no part of this future.
                Box::pin(self.accept_connect(connect, mailbox)).await;
            }
            if decoded {
                // Answers are logged right after what they answer, as Mosquitto does.
                self.flush_transmit();
                self.ending = None;
            }
        }
    }

    /// Decodes the next packet in the read buffer and hands it to the state machine:
    /// `Some(true)` for a packet, `Some(false)` for one that could not be decoded (the state
    /// machine was told), `None` when no complete packet is buffered.
    fn decode_one(&mut self) -> Option<bool> {
        // The start of the packet, for the lines about one that cannot be read: its type,
        // and before CONNECT is accepted, its protocol name.
        let mut head = [0u8; HEAD_LEN];
        let head_len = if self.identity.is_none() {
            self.rbuf.len().min(HEAD_LEN)
        } else {
            self.rbuf.len().min(1)
        };
        head[..head_len].copy_from_slice(&self.rbuf[..head_len]);
        match self.decoder.decode(&mut self.rbuf) {
            Ok(Some(packet)) => {
                self.log_received(&packet);
                self.shared.broker.counters.packet_received(&packet);
                self.conn.handle_packet(packet, clock::now());
                Some(true)
            }
            Ok(None) => None,
            Err(error) => {
                self.log_decode_error(error, &head[..head_len]);
                self.conn.handle_decode_error(error);
                Some(false)
            }
        }
    }

    /// Logs what Mosquitto says of a packet it cannot read, and how it words the
    /// disconnection that follows.
    fn log_decode_error(&mut self, error: DecodeError, head: &[u8]) {
        let log = &self.shared.log;
        let ip = self.peer.ip();
        let name = self
            .identity
            .as_ref()
            .map_or("<unknown>", |i| i.client_id.as_str());
        let packet_type = head.first().and_then(|b| PacketType::from_u8(b >> 4));
        let unsubscribe = packet_type == Some(PacketType::Unsubscribe);
        // Mosquitto says it received a SUBSCRIBE or UNSUBSCRIBE before reading its body.
        if let Some(identity) = &self.identity
            && let Some(t @ (PacketType::Subscribe | PacketType::Unsubscribe)) = packet_type
            && !matches!(
                error,
                DecodeError::PacketTooLarge { .. }
                    | DecodeError::VarIntTooLong
                    | DecodeError::VarIntNotMinimal
            )
        {
            log.debug(format_args!("Received {t} from {}", identity.client_id));
        }
        let ending = match error {
            DecodeError::PacketTooLarge { .. } => Ending::Oversize,
            DecodeError::UnsupportedProtocolVersion(version) => {
                log.info(format_args!(
                    "Invalid protocol version {version} in CONNECT from {ip}."
                ));
                Ending::ProtocolError
            }
            DecodeError::InvalidProtocolName => {
                if let (Some(protocol), _) = connect_head(head) {
                    log.info(format_args!(
                        "Invalid protocol \"{protocol}\" in CONNECT from {ip}."
                    ));
                }
                Ending::ProtocolError
            }
            DecodeError::PasswordWithoutUserName => {
                if let (_, Some(client_id)) = connect_head(head) {
                    log.error(format_args!(
                        "Protocol error from {client_id}: password without username, closing \
                         connection."
                    ));
                }
                Ending::ProtocolError
            }
            DecodeError::InvalidWillQoS => {
                log.info(format_args!("Invalid Will QoS in CONNECT from {ip}."));
                Ending::ProtocolError
            }
            DecodeError::InvalidSubscriptionQoS | DecodeError::SubscriptionOptionsReserved => {
                log.info(format_args!(
                    "Invalid QoS in subscription command from {ip}, disconnecting."
                ));
                Ending::Malformed
            }
            DecodeError::InvalidTopicFilter(e) => {
                match (unsubscribe, e) {
                    (true, TopicError::Empty) => log.info(format_args!(
                        "Empty unsubscription string from {name}, disconnecting."
                    )),
                    (true, _) => log.info(format_args!(
                        "Invalid unsubscription string from {name}, disconnecting."
                    )),
                    (false, TopicError::Empty) => {}
                    (false, _) => log.info(format_args!(
                        "Invalid subscription string from {ip}, disconnecting."
                    )),
                }
                Ending::Malformed
            }
            DecodeError::ZeroPacketId(PacketType::Subscribe | PacketType::Unsubscribe)
            | DecodeError::NoTopicFilters(_) => Ending::Malformed,
            DecodeError::InvalidTopicName(_)
            | DecodeError::VarIntTooLong
            | DecodeError::ReservedPacketType(_) => Ending::ProtocolError,
            // Mosquitto refuses any other fault in CONNECT as a protocol error.
            _ if self.identity.is_none() => Ending::ProtocolError,
            other if other.reason_code() == ReasonCode::PROTOCOL_ERROR => Ending::ProtocolError,
            _ => Ending::Malformed,
        };
        self.ending = Some(ending);
    }

    fn handle_mail(&mut self, mail: Mail) {
        match mail {
            Mail::Deliver(delivery) => {
                let backlog = self.wbuf.len() / 64;
                if self.conn.deliver(delivery, backlog, clock::now()) {
                    self.shared
                        .broker
                        .counters
                        .messages_dropped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            // Read at the top of the loop, which this mail wakes.
            Mail::SettingsChanged => {}
            Mail::Shutdown => self.conn.shut_down(),
            Mail::TakeOver(reply) => {
                self.shared.log.connection(
                    LogTypes::ERROR,
                    format_args!(
                        "Client {} already connected, closing old connection.",
                        self.name()
                    ),
                );
                self.takeover_reply = Some(reply);
                self.conn.take_over();
            }
        }
    }

    async fn handle_events(&mut self, mailbox: &MailboxReceiver) {
        if let Some(connect) = self.handle_events_to_connect() {
            Box::pin(self.accept_connect(connect, mailbox)).await;
        }
    }

    /// Acts on a CONNECT, then on the events that follow it.
    async fn accept_connect(
        &mut self,
        connect: Box<pigeon_proto::Connect>,
        mailbox: &MailboxReceiver,
    ) {
        self.on_connect(*connect, mailbox).await;
        while let Some(connect) = self.handle_events_to_connect() {
            self.on_connect(*connect, mailbox).await;
        }
    }

    /// Acts on the state machine's events up to a CONNECT, which is returned: accepting it
    /// is the one step that may wait (for a connection it takes over). A plain function, so
    /// that the events' locals are no part of the connection's future.
    fn handle_events_to_connect(&mut self) -> Option<Box<pigeon_proto::Connect>> {
        while let Some(event) = self.conn.poll_event() {
            match event {
                Event::Connect(connect) => return Some(connect),
                Event::Publish { message, ack } => {
                    let broker = &self.shared.broker;
                    if ack.is_some() && broker.persists() && broker.store().refusing() {
                        // The disk is full: refuse rather than acknowledge what cannot be
                        // kept, before anyone receives it.
                        self.conn.refuse_publish(ack);
                        continue;
                    }
                    // check_retain_source: a retained message remembers its publisher.
                    let source = (message.retain && self.settings.check_retain_source)
                        .then_some(self.identity.as_ref())
                        .flatten()
                        .map(|i| RetainSource {
                            username: i.username.clone(),
                            client_id: i.client_id.to_string(),
                        });
                    // A QoS 2 message from a persistent session is stored with its identifier,
                    // awaiting PUBREL: after a crash a resent PUBLISH is recognised and not
                    // routed again [MQTT-4.3.3-9] exactly when the message was kept.
                    let inbound = match (ack, self.conn.session()) {
                        (Some((id, pigeon_proto::QoS::ExactlyOnce)), Some(session))
                            if !session.clean =>
                        {
                            Some((&session.client_id, id.get()))
                        }
                        _ => None,
                    };
                    let matched = self
                        .shared
                        .broker
                        .publish_received(&message, source, inbound);
                    self.conn.routed(ack, matched > 0);
                }
                // Logged as it arrived ("Dropped too large PUBLISH").
                Event::Dropped(_) => {}
                Event::Subscribe(filters) => {
                    let Some(identity) = &self.identity else {
                        continue;
                    };
                    let access = self
                        .settings
                        .check_retain_source
                        .then_some(self.conn.access())
                        .flatten();
                    let retained = self.shared.broker.subscribe_checked(
                        &identity.client_id,
                        &filters,
                        |source, topic| {
                            access.is_none_or(|a| {
                                a.permits_write_by(
                                    source.username.as_deref(),
                                    &source.client_id,
                                    topic,
                                )
                            })
                        },
                    );
                    for delivery in retained {
                        self.conn.deliver(delivery, 0, clock::now());
                    }
                    if let Some(session) = self.conn.session() {
                        self.shared.broker.session_changed(session);
                    }
                }
                Event::Unsubscribe(filters) => {
                    if let Some(identity) = &self.identity {
                        self.shared
                            .broker
                            .unsubscribe(&identity.client_id, &filters);
                    }
                    if let Some(session) = self.conn.session() {
                        self.shared.broker.session_changed(session);
                    }
                }
                Event::Close(reason) => {
                    // What was sent before the end (a refusing CONNACK) is logged before it.
                    self.flush_transmit();
                    self.log_close(reason);
                }
            }
        }
        None
    }

    async fn on_connect(&mut self, connect: pigeon_proto::Connect, mailbox: &MailboxReceiver) {
        let shared = Arc::clone(&self.shared);
        let settings = Arc::clone(&self.settings);
        let listener = &settings.listeners[self.listener.index];
        // Kept as long as the session: detached from the CONNECT's read buffer.
        let mut client_id = connect.client_id.detach();
        let mut assigned = false;
        if client_id.is_empty() {
            // MQTT 3.1 requires an identifier; 3.1.1 allows an empty one only with Clean Session
            // [MQTT-3.1.3-7], [MQTT-3.1.3-8]; 5.0 assigns one whatever Clean Start says
            // [MQTT-3.1.3-6].
            let allowed = match connect.protocol {
                Protocol::V31 => false,
                Protocol::V311 => connect.clean_start,
                Protocol::V5 => true,
            } && listener.allow_zero_length_clientid;
            if !allowed {
                self.refuse(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
                return;
            }
            client_id = shared.broker.assign_client_id(&listener.auto_id_prefix);
            assigned = true;
        }
        if !settings.clientid_prefixes.is_empty()
            && !settings
                .clientid_prefixes
                .iter()
                .any(|p| client_id.starts_with(p.as_str()))
        {
            self.refuse(ReasonCode::NOT_AUTHORIZED);
            return;
        }
        // With `use_identity_as_username` or `use_subject_as_username`, as in Mosquitto, the
        // certificate is the credential: its name is the username (for the ACL), the
        // password file is not consulted, and a client without such a name is refused. A
        // client that passed an MQTT 5.0 enhanced authentication method (the connection ran
        // it before reporting the CONNECT) is who the method says.
        let by_method = self
            .conn
            .authenticated_by()
            .map(|(_, name)| name.map(str::to_owned));
        let username = match (&self.cert_username, by_method) {
            (_, Some(name)) => {
                Some(name.or_else(|| connect.username.as_ref().map(ToString::to_string)))
            }
            (Some(from_cert), None) => Option::clone(from_cert).map(Some),
            (None, None) if authorised(listener, &connect) => {
                Some(connect.username.as_ref().map(ToString::to_string))
            }
            (None, None) => None,
        };
        let Some(username) = username else {
            // Mosquitto 2.0.11 answers Not authorized (5) to every credential failure: wrong
            // password, unknown user, missing password, anonymous client.
            shared
                .broker
                .counters
                .auth_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.refuse(ReasonCode::NOT_AUTHORIZED);
            return;
        };
        let generation = shared.broker.next_generation();
        let clean = connect.clean_start;
        let protocol = connect.protocol;
        let claim = shared
            .broker
            .claim(&client_id, protocol, clean, mailbox.sender(), generation);
        let (mut session, present) = match claim {
            Claim::Resumed(session) => (session, true),
            Claim::Fresh(session) => (session, false),
            Claim::TakeOver(old) => {
                let (tx, rx) = oneshot::channel();
                let handed = if old.try_send(Mail::TakeOver(tx)).is_ok() {
                    rx.await.ok().flatten()
                } else {
                    None
                };
                shared
                    .broker
                    .settle_takeover(&client_id, protocol, clean, handed)
            }
        };
        if !protocol.is_v5() {
            // 3.x: Clean Session 1 ends the session with the connection, 0 keeps it for ever
            // (5.0 takes the Session Expiry Interval when the connection is accepted).
            session.set_expiry_interval(if clean { 0 } else { u32::MAX });
        }
        session.access = Some(ClientAccess::new(listener.acl.clone(), username.clone()));
        self.identity = Some(Box::new(Identity {
            client_id: client_id.clone(),
            generation,
            username: username.clone(),
        }));
        // Connected: it parks as soon as it has nothing to do.
        self.rest = Rest::Fresh;
        let user = username
            .as_ref()
            .map(|u| format!(", u'{u}'"))
            .unwrap_or_default();
        let log = &shared.log;
        log.connection(
            LogTypes::NOTICE,
            format_args!(
                "New client connected from {}:{} as {client_id} (p{}, c{}, k{}{user}).",
                self.peer.ip(),
                self.peer.port(),
                protocol_number(protocol),
                u8::from(clean),
                connect.keep_alive
            ),
        );
        if log.connection_messages() {
            match &connect.will {
                Some(will) => {
                    log.debug(format_args!(
                        "Will message specified ({} bytes) (r{}, q{}).",
                        will.payload.len(),
                        u8::from(will.retain),
                        will.qos as u8
                    ));
                    log.debug(format_args!("\t{}", will.topic));
                }
                None => log.debug("No will message specified."),
            }
        }
        if shared.broker.persists() {
            session.outbound.set_journal(!session.clean);
            session.inbound.set_journal(!session.clean);
        }
        self.conn.accept_assigned(
            session,
            present,
            assigned.then(|| client_id.clone()),
            clock::now(),
        );
        if let Some(session) = self.conn.session_mut() {
            // The expiry is known now (MQTT 5.0 takes it from the CONNECT).
            if shared.broker.persists() {
                session.outbound.set_journal(!session.clean);
                session.inbound.set_journal(!session.clean);
            }
        }
        if let Some(session) = self.conn.session() {
            shared
                .broker
                .session_accepted(&client_id, generation, session, present);
        }
    }

    /// Refuses the CONNECT: the CONNACK and the disconnection are logged as they happen.
    fn refuse(&mut self, reason: ReasonCode) {
        self.conn.refuse(reason);
    }

    /// Records what the session's journals noted (a persistent session's QoS exchanges).
    fn record_journal(&mut self) {
        let broker = &self.shared.broker;
        if !broker.persists() {
            return;
        }
        let Some(session) = self.conn.session_mut() else {
            return;
        };
        if session.clean {
            return;
        }
        let journal = session.outbound.take_journal();
        let released = session.inbound.take_released();
        if journal.is_empty() && released.is_empty() {
            return;
        }
        let client = session.client_id.to_string();
        for entry in journal {
            let record = match entry {
                Journal::Sent(message, id) => Record::Sent {
                    client: client.clone(),
                    message,
                    packet_id: id.get(),
                },
                Journal::Released(id) => Record::Released {
                    client: client.clone(),
                    packet_id: id.get(),
                },
                Journal::Done(message) => Record::Done {
                    client: client.clone(),
                    message,
                },
            };
            broker.record(&record);
        }
        for id in released {
            broker.record(&Record::InboundDone {
                client: client.clone(),
                packet_id: id.get(),
            });
        }
    }

    /// Writes what the state machine produced, or holds it until the store has made durable
    /// everything recorded so far (see [`Durability::held`]).
    fn flush_transmit(&mut self) {
        self.record_journal();
        let packets = self.conn.take_transmit();
        if packets.is_empty() {
            return;
        }
        let persistent = self.conn.session().is_some_and(|s| !s.clean);
        if let Some(d) = &mut self.durable
            && (!d.held.is_empty() || packets.iter().any(|p| must_wait(p, persistent)))
        {
            let lsn = self.shared.broker.store().last_appended();
            if !d.held.is_empty() || d.rx.borrow().status(lsn) != Some(true) {
                d.held.push_back((lsn, packets));
                return;
            }
        }
        self.write_packets(packets);
    }

    /// Writes the held packets whose store position is now durable. Where the store failed
    /// (a full disk), acknowledgements become refusals: 0x97 in MQTT 5.0, and in 3.x, which
    /// cannot refuse, the connection is closed instead.
    fn release_held(&mut self) {
        let Some(d) = &mut self.durable else {
            return;
        };
        let durable = *d.rx.borrow_and_update();
        loop {
            let Some(d) = &mut self.durable else {
                return;
            };
            let Some((lsn, _)) = d.held.front() else {
                break;
            };
            let Some(ok) = durable.status(*lsn) else {
                break;
            };
            let Some((_, mut packets)) = d.held.pop_front() else {
                break;
            };
            if !ok {
                let v5 = self.conn.protocol().is_v5();
                let mut refused = false;
                for packet in &mut packets {
                    match packet {
                        Packet::PubAck(a) if a.reason.0 < 0x80 => {
                            a.reason = ReasonCode::QUOTA_EXCEEDED;
                            refused = true;
                        }
                        Packet::PubRec(a) if a.reason.0 < 0x80 => {
                            a.reason = ReasonCode::QUOTA_EXCEEDED;
                            refused = true;
                            let id = a.packet_id;
                            if let Some(s) = self.conn.session_mut() {
                                s.inbound.on_pubrel(id);
                            }
                        }
                        _ => {}
                    }
                }
                if refused && !v5 {
                    packets.retain(|p| !matches!(p, Packet::PubAck(_) | Packet::PubRec(_)));
                    self.write_packets(packets);
                    self.conn.close_unstorable();
                    if let Some(d) = &mut self.durable {
                        d.held.clear();
                    }
                    let _ = self.conn.take_transmit();
                    return;
                }
            }
            self.write_packets(packets);
        }
    }

    fn write_packets(&mut self, packets: Vec<Packet>) {
        let protocol = self.conn.protocol();
        for packet in packets {
            self.log_sent(&packet);
            self.shared.broker.counters.packet_sent(&packet);
            // Packets the state machine builds are valid; one that cannot be encoded is
            // logged and skipped rather than taking the connection down.
            if let Err(error) = packet.encode(protocol, &mut self.wbuf) {
                self.shared.log.error(format_args!(
                    "Could not encode {packet:?} for {}: {error}",
                    self.name()
                ));
            }
        }
        self.ack_rc = None;
    }

    /// Logs a packet from the client as Mosquitto does. Nothing is said of packets before
    /// the client is accepted: CONNECT is told by "New client connected", and anything else
    /// ends the connection.
    fn log_received(&mut self, packet: &Packet) {
        let limits = &self.settings.listeners[self.listener.index].connection;
        let too_large = |p: &pigeon_proto::Publish| {
            limits.message_size_limit != 0 && p.payload.len() > limits.message_size_limit
        };
        if let Packet::Publish(p) = packet
            && p.packet_id.is_some()
            && too_large(p)
        {
            self.ack_rc = Some(ReasonCode::PACKET_TOO_LARGE.0);
        }
        let Some(identity) = &self.identity else {
            return;
        };
        let log = &self.shared.log;
        let name = identity.client_id.as_str();
        match packet {
            Packet::Connect(_) => log.notice(format_args!(
                "Bad client {name} sending multiple CONNECT messages."
            )),
            // Mosquitto refuses it without a word of its arrival.
            Packet::ConnAck(_) => self.ending = Some(Ending::InvalidArguments),
            Packet::Publish(p) => {
                if p.qos > limits.max_qos {
                    log.info(format_args!(
                        "Too high QoS in PUBLISH from {name}, disconnecting."
                    ));
                } else if !p.retain || limits.retain_available {
                    let what = if too_large(p) {
                        "Dropped too large PUBLISH from"
                    } else {
                        match self.conn.publish_verdict(p.topic.as_str()) {
                            Verdict::Allowed => "Received PUBLISH from",
                            Verdict::Denied => "Denied PUBLISH from",
                            Verdict::DangerousUsername => {
                                log.notice(format_args!(
                                    "ACL denying access to client with dangerous username \"{}\"",
                                    identity.username.as_deref().unwrap_or_default()
                                ));
                                "Denied PUBLISH from"
                            }
                            Verdict::DangerousClientId => {
                                log.notice(format_args!(
                                    "ACL denying access to client with dangerous client id \"{name}\""
                                ));
                                "Denied PUBLISH from"
                            }
                        }
                    };
                    log.debug(format_args!(
                        "{what} {name} (d{}, q{}, r{}, m{}, '{}', ... ({} bytes))",
                        u8::from(p.dup),
                        p.qos as u8,
                        u8::from(p.retain),
                        p.packet_id.map_or(0, |i| i.get()),
                        p.topic,
                        p.payload.len()
                    ));
                }
            }
            Packet::PubAck(a) => log.debug(format_args!(
                "Received PUBACK from {name} (Mid: {}, RC:{})",
                a.packet_id, a.reason.0
            )),
            Packet::PubRec(a) => log.debug(format_args!(
                "Received PUBREC from {name} (Mid: {})",
                a.packet_id
            )),
            Packet::PubRel(a) => log.debug(format_args!(
                "Received PUBREL from {name} (Mid: {})",
                a.packet_id
            )),
            Packet::PubComp(a) => log.debug(format_args!(
                "Received PUBCOMP from {name} (Mid: {}, RC:{})",
                a.packet_id, a.reason.0
            )),
            Packet::Subscribe(subscribe) => {
                log.debug(format_args!("Received SUBSCRIBE from {name}"));
                for (filter, options) in &subscribe.filters {
                    let qos = options.qos.min(limits.max_qos) as u8;
                    log.debug(format_args!("\t{filter} (QoS {qos})"));
                    // Shared subscriptions are refused until MQTT 5.0 arrives (issue 4).
                    if !filter.is_shared() {
                        log.subscribe(format_args!("{name} {qos} {filter}"));
                    }
                }
            }
            Packet::Unsubscribe(unsubscribe) => {
                log.debug(format_args!("Received UNSUBSCRIBE from {name}"));
                for filter in &unsubscribe.filters {
                    log.debug(format_args!("\t{filter}"));
                    log.unsubscribe(format_args!("{name} {filter}"));
                }
            }
            other => log.debug(format_args!("Received {} from {name}", other.packet_type())),
        }
    }

    /// Logs a packet to the client as Mosquitto does.
    fn log_sent(&self, packet: &Packet) {
        let log = &self.shared.log;
        if !log.enabled(LogTypes::DEBUG) {
            return;
        }
        let name = self.name();
        let rc = |reason: ReasonCode| self.ack_rc.unwrap_or(reason.0);
        match packet {
            Packet::ConnAck(a) => {
                let code = if self.conn.protocol().is_v5() {
                    a.reason.0
                } else {
                    a.reason.to_v3_connack()
                };
                let present = u8::from(a.session_present);
                // A client refused before it is known goes by its address.
                match &self.identity {
                    Some(i) => log.debug(format_args!(
                        "Sending CONNACK to {} ({present}, {code})",
                        i.client_id
                    )),
                    None => log.debug(format_args!(
                        "Sending CONNACK to {} ({present}, {code})",
                        self.peer.ip()
                    )),
                }
            }
            Packet::Publish(p) => log.debug(format_args!(
                "Sending PUBLISH to {name} (d{}, q{}, r{}, m{}, '{}', ... ({} bytes))",
                u8::from(p.dup),
                p.qos as u8,
                u8::from(p.retain),
                p.packet_id.map_or(0, |i| i.get()),
                p.topic,
                p.payload.len()
            )),
            Packet::PubAck(a) => log.debug(format_args!(
                "Sending PUBACK to {name} (m{}, rc{})",
                a.packet_id,
                rc(a.reason)
            )),
            Packet::PubRec(a) => log.debug(format_args!(
                "Sending PUBREC to {name} (m{}, rc{})",
                a.packet_id,
                rc(a.reason)
            )),
            Packet::PubRel(a) => {
                log.debug(format_args!("Sending PUBREL to {name} (m{})", a.packet_id));
            }
            Packet::PubComp(a) => {
                log.debug(format_args!("Sending PUBCOMP to {name} (m{})", a.packet_id));
            }
            // Mosquitto 2.0 does not log the DISCONNECT it sends.
            Packet::Disconnect(_) => {}
            other => log.debug(format_args!("Sending {} to {name}", other.packet_type())),
        }
    }

    fn log_close(&mut self, reason: CloseReason) {
        let ending = self.ending.take();
        let log = &self.shared.log;
        let name = self.name();
        let line = |what: &str| format!("Client {name} disconnected{what}");
        let text = match reason {
            CloseReason::Disconnected { .. } => line("."),
            // Mosquitto gives a connection 60 s of Keep Alive until CONNECT sets it.
            CloseReason::KeepAliveTimeout | CloseReason::ConnectTimeout => {
                format!("Client {name} has exceeded timeout, disconnecting.")
            }
            CloseReason::Violation(v) => match ending.unwrap_or_else(|| Ending::of(v)) {
                Ending::Malformed => line(" due to malformed packet."),
                Ending::ProtocolError => line(" due to protocol error."),
                Ending::Oversize => line(" due to oversize packet."),
                Ending::QosNotSupported => format!(
                    "Bad socket read/write on client {name}: Requested QoS not supported on server."
                ),
                Ending::RetainNotSupported => {
                    format!("Bad socket read/write on client {name}: Unknown error.")
                }
                Ending::InvalidArguments => format!(
                    "Bad socket read/write on client {name}: Invalid function arguments provided."
                ),
            },
            CloseReason::Refused(
                ReasonCode::NOT_AUTHORIZED | ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            ) => line(", not authorised."),
            // Mosquitto 2.0.11's words for this refusal, odd as they are.
            CloseReason::Refused(ReasonCode::BAD_AUTHENTICATION_METHOD) => {
                line(" due to QoS too high or retain not supported.")
            }
            CloseReason::Refused(_) => line(" due to protocol error."),
            // Mosquitto words a disconnection by reload as an ordinary one.
            CloseReason::Revoked => line("."),
            CloseReason::Unstorable => line(": its message could not be stored."),
            CloseReason::TakenOver | CloseReason::ServerShutdown => return,
        };
        log.connection(LogTypes::NOTICE, text);
    }

    /// After the socket is done: publish the will if the ending calls for it, and give the
    /// session back to the registry (or to the connection that took it over).
    async fn finish(&mut self, peer_closed: bool, rx: &mut MailboxReceiver) {
        let reason = if peer_closed && !self.conn.is_closed() {
            self.shared.log.connection(
                LogTypes::NOTICE,
                format_args!("Client {} closed its connection.", self.name()),
            );
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
        // A will goes where its client may publish, no further.
        let will = self
            .conn
            .take_will()
            .filter(|w| self.conn.publish_verdict(w.topic.as_str()).is_allowed());
        let mut session = self.conn.take_session();
        let Some(identity) = self.identity.take() else {
            return;
        };
        if publish_will && let Some(will) = will {
            if reason == Some(CloseReason::TakenOver) && !self.conn.protocol().is_v5() {
                // MQTT 3.x says nothing of wills on takeover; as Mosquitto does, the new
                // connection decides (`Broker::settle_takeover`): published if the session
                // ends, dropped if it is resumed.
                let message = Arc::new(Message::from_will(
                    will,
                    identity.client_id.clone(),
                    clock::now(),
                ));
                self.shared
                    .broker
                    .schedule_will(&identity.client_id, message, far_future());
            } else {
                self.publish_will(will, &identity.client_id, session.as_ref());
            }
        }
        if let Some(reply) = self.takeover_reply.take() {
            let _ = reply.send(session);
            return;
        }
        if let Err(back) = self.shared.broker.release_draining(
            &identity.client_id,
            identity.generation,
            session.take(),
            Some(rx),
            clock::now(),
        ) {
            // Another connection claimed the identifier meanwhile: it asks for the session
            // through the mailbox. Keep queueing deliveries until it does.
            let mut session = back;
            while let Some(mail) = rx.recv().await {
                match mail {
                    Mail::TakeOver(reply) => {
                        let _ = reply.send(session);
                        return;
                    }
                    Mail::SettingsChanged | Mail::Shutdown => {}
                    Mail::Deliver(delivery) => {
                        if let Some(s) = &mut session {
                            s.outbound
                                .push(delivery, crate::session::Link::Offline, clock::now());
                        }
                    }
                }
            }
        }
    }

    /// Publishes the will, or with an MQTT 5.0 Will Delay Interval, hands it to the broker
    /// to publish when the delay or the session ends, whichever comes first, unless the
    /// client is back by then [MQTT-3.1.3-9]. Its properties go with it (section 3.1.3.2).
    fn publish_will(&self, will: Will, client_id: &MqttString, session: Option<&Session>) {
        let now = clock::now();
        let due = will_due(now, will.properties.will_delay_interval, session);
        let message = Arc::new(Message::from_will(will, client_id.clone(), now));
        match due {
            Some(due) => self.shared.broker.schedule_will(client_id, message, due),
            None => {
                self.shared.broker.publish(&message);
            }
        }
    }
}

/// Whether the CONNECT's credentials let it in on `listener`, as Mosquitto 2.0 decides: with
/// a password file, a client with a username must give that user's password (an unknown user
/// is refused even where anonymous clients are allowed); a client without a username, or any
/// client when there is no password file, needs `allow_anonymous`.
fn authorised(listener: &ListenerSettings, connect: &pigeon_proto::Connect) -> bool {
    match (&listener.credentials, &connect.username) {
        (Some(credentials), Some(username)) => connect
            .password
            .as_ref()
            .is_some_and(|password| credentials.verify(username.as_str(), password)),
        _ => listener.allow_anonymous,
    }
}

/// Most batches of packets held for the store before the connection stops reading.
const MAX_HELD: usize = 1024;

/// Waits for the store's durable position to move: never without a store, or when nothing
/// is `holding` (then without building the wait, which goes on the heap so that the
/// connection's future does not carry its room).
fn durable_changed(
    holding: bool,
    durable: Option<&mut Durability>,
) -> impl Future<Output = Result<(), watch::error::RecvError>> + Send + '_ {
    let mut wait = durable
        .filter(|_| holding)
        .map(|d| Box::pin(d.rx.changed()));
    std::future::poll_fn(move |cx| match &mut wait {
        Some(changed) => changed.as_mut().poll(cx),
        None => std::task::Poll::Pending,
    })
}

fn far_future() -> std::time::Instant {
    clock::now() + std::time::Duration::from_secs(86_400 * 365)
}

/// Waits for `timer` to expire; for ever when there is none.
fn expiry(timer: &mut Option<Pin<Box<Sleep>>>) -> impl Future<Output = ()> + Send + '_ {
    std::future::poll_fn(move |cx| match timer {
        Some(sleep) => sleep.as_mut().poll(cx),
        None => std::task::Poll::Pending,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_a_bad_connect() {
        let connect = b"\x10\x10\x00\x04MQTX\x04\x02\x00\x3c\x00\x04abcd";
        let (name, id) = connect_head(connect);
        assert_eq!(
            (name.as_deref(), id.as_deref()),
            (Some("MQTX"), Some("abcd"))
        );
        // A Remaining Length of two bytes; MQTT 3.1.
        let long = b"\x10\x80\x01\x00\x06MQIsdp\x03\x42\x00\x3c\x00\x02id";
        let (name, id) = connect_head(long);
        assert_eq!(
            (name.as_deref(), id.as_deref()),
            (Some("MQIsdp"), Some("id"))
        );
        // 5.0: the identifier follows properties, not looked for.
        let v5 = b"\x10\x10\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x02id";
        assert_eq!(connect_head(v5), (Some("MQTT".to_owned()), None));
        assert_eq!(connect_head(b"\x10\x10\x00"), (None, None));
        assert_eq!(connect_head(b"\x10"), (None, None));
        assert_eq!(connect_head(b"\x10\x10\x00\x04MQ").0.as_deref(), Some("MQ"));
    }

    #[test]
    fn protocol_numbers_are_mosquittos() {
        assert_eq!(protocol_number(Protocol::V31), 1);
        assert_eq!(protocol_number(Protocol::V311), 2);
        assert_eq!(protocol_number(Protocol::V5), 5);
    }
}

#[cfg(test)]
mod future_size {
    use super::*;

    /// The future that the task of a plain TCP connection is (see [`spawn_connection`]),
    /// with a guard the size of the listener's connection slot. Never called: only its type
    /// is wanted.
    #[allow(unreachable_code, clippy::diverging_sub_expression)]
    fn plain_tcp_connection() -> impl Future<Output = ()> {
        if true {
            unreachable!("only the type is used");
        }
        drive::<OwnedReadHalf, OwnedWriteHalf, Arc<()>>(
            unreachable!(),
            unreachable!(),
            unreachable!(),
            unreachable!(),
            unreachable!(),
            unreachable!(),
            unreachable!(),
            Arc::new(()),
        )
    }

    /// What a parked connection keeps (see `net/park.rs`): with the pieces it points to,
    /// every idle connection's cost. Within 320 bytes it takes jemalloc's 320-byte class.
    #[test]
    fn a_parked_connection_fits_in_320_bytes() {
        let size = size_of::<Parked<Arc<()>>>();
        assert!(size <= 320, "a parked connection takes {size} bytes");
    }

    fn size_of_output<F: Future>(_: fn() -> F) -> usize {
        size_of::<F>()
    }

    /// Every idle connection holds this future in its tokio task, which adds 104 bytes of
    /// header and trailer and rounds up to a multiple of 128: up to 920 bytes make a task of
    /// 1 KiB. Large, rare steps (accepting a CONNECT, the end of the connection) are boxed
    /// so that they do not count here; see `ARCHITECTURE.md`, "Memory per connection".
    #[test]
    fn the_task_of_an_idle_connection_fits_in_one_kib() {
        let size = size_of_output(plain_tcp_connection);
        assert!(size <= 920, "the connection future takes {size} bytes");
    }
}
