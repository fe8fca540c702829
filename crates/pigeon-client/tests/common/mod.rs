//! Fixtures: Debian's `mosquitto` on a free loopback port, a TCP proxy whose connections the
//! test can hold and cut, and helpers that wait on the event stream with a deadline.

#![allow(dead_code, unreachable_pub)] // each test file uses a different subset

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pigeon_client::{Event, Events, Publish};
use pigeon_test::Broker;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How long a test waits for something that should happen promptly.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// `mosquitto -v -p PORT` on a free 127.0.0.1 port (local-only mode: loopback addresses
/// only), killed when dropped.
pub fn mosquitto() -> Broker {
    Broker::start_local_only("/usr/sbin/mosquitto", &["-v"])
}

/// Waits for `fut`, failing the test after [`PATIENCE`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(PATIENCE, fut).await {
        Ok(value) => value,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// Waits until the broker's log contains `needle`.
pub async fn wait_for_log(broker: &Broker, needle: &str) {
    within(&format!("{needle:?} in the broker's log"), async {
        while !broker.log().contains(needle) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// The next event that `pick` selects, skipping the others.
pub async fn next_matching<T>(events: &mut Events, mut pick: impl FnMut(Event) -> Option<T>) -> T {
    within("an event", async {
        loop {
            let event = events.recv().await.expect("the event stream ended");
            if std::env::var_os("PIGEON_TEST_TRACE").is_some() {
                eprintln!("event: {event:?}");
            }
            if let Some(value) = pick(event) {
                return value;
            }
        }
    })
    .await
}

/// The next message.
pub async fn next_message(events: &mut Events) -> Publish {
    next_matching(events, |e| match e {
        Event::Message(p) => Some(p),
        _ => None,
    })
    .await
}

/// Whether a message arrives within `wait`.
pub async fn quiet_for(events: &mut Events, wait: Duration) -> Option<Publish> {
    tokio::time::timeout(wait, async {
        loop {
            match events.recv().await {
                Some(Event::Message(p)) => return Some(p),
                Some(_) => {}
                None => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// A TCP proxy from a loopback port to the broker. The test can stop the broker's bytes from
/// reaching the client ([`hold_downstream`](Proxy::hold_downstream)) and cut every connection
/// ([`cut`](Proxy::cut)), as a network failure would.
pub struct Proxy {
    port: u16,
    hold: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
}

impl Proxy {
    /// Starts proxying to `127.0.0.1:upstream`.
    pub async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let hold = Arc::new(AtomicBool::new(false));
        let (cut, _) = watch::channel(0u64);
        let (accept_hold, accept_cut) = (Arc::clone(&hold), cut.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pump(
                    client_read,
                    server_write,
                    None,
                    accept_cut.subscribe(),
                ));
                tokio::spawn(pump(
                    server_read,
                    client_write,
                    Some(Arc::clone(&accept_hold)),
                    accept_cut.subscribe(),
                ));
            }
        });
        Proxy { port, hold, cut }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// While held, what the broker sends is dropped (acknowledgements never arrive).
    pub fn hold_downstream(&self, hold: bool) {
        self.hold.store(hold, Ordering::SeqCst);
    }

    /// Closes every current connection, both ways, without a word.
    pub fn cut(&self) {
        self.cut.send_modify(|generation| *generation += 1);
    }
}

async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    hold: Option<Arc<AtomicBool>>,
    mut cut: watch::Receiver<u64>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            _ = cut.changed() => return,
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if hold.as_ref().is_some_and(|h| h.load(Ordering::SeqCst)) {
                        continue;
                    }
                    if to.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            },
        }
    }
    let _ = to.shutdown().await;
}
