//! `pigeon-test`: fixtures for integration tests that run the real broker and real clients on
//! loopback.
//!
//! - [`Broker`]: the `pigeon` binary started on a free 127.0.0.1 port with a given
//!   configuration, its log captured, stopped (SIGTERM) on drop.
//! - [`mosquitto_pub`], [`MosquittoSub`]: Debian's `mosquitto-clients`, run against it.
//! - [`RawClient`]: a TCP socket for sending hand-made bytes (malformed packets and the like).
//! - [`python`]: the venv interpreter with paho-mqtt that `scripts/test` prepares.
//!
//! A missing tool is a test failure with a message saying how to install it, never a skip:
//! `scripts/test` installs everything the tests need.

// Test fixtures wait on real processes and sockets with wall-clock deadlines; the broker's
// rule that only its clock module reads the time does not apply to them.
#![allow(clippy::disallowed_methods)]
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long fixtures wait for something that should happen promptly.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A free TCP port on 127.0.0.1 (bound and released; the broker binds it right after).
///
/// # Panics
/// When no port can be bound on loopback.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// A running `pigeon` broker.
#[derive(Debug)]
pub struct Broker {
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
    _dir: TempDir,
}

impl Broker {
    /// Starts `binary` with a configuration of a loopback listener on a free port followed by
    /// `config` (more directives), plus `args`, and waits until it accepts connections.
    ///
    /// # Panics
    /// When the broker cannot be started or does not listen within [`PATIENCE`].
    pub fn start(binary: &Path, config: &str, args: &[&str]) -> Broker {
        let port = free_port();
        let dir = TempDir::new("broker");
        let conf = dir.path().join("pigeon.conf");
        let text = format!("listener {port} 127.0.0.1\n{config}\n");
        std::fs::write(&conf, text).expect("write config");
        let mut child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let log = Arc::new(Mutex::new(String::new()));
        for stream in [
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut log = log
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let mut broker = Broker {
            child,
            port,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect(broker.addr()).is_err() {
            if let Ok(Some(status)) = broker.child.try_wait() {
                panic!(
                    "pigeon exited with {status} before listening:\n{}",
                    broker.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "pigeon did not listen:\n{}",
                broker.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
        broker
    }

    /// The listener's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The listener's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Everything the broker logged so far.
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Waits until the log contains `needle`; returns whether it did within [`PATIENCE`].
    pub fn wait_for_log(&self, needle: &str) -> bool {
        wait_until(|| self.log().contains(needle))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit; returns whether it exited successfully.
    pub fn stop(&mut self) -> bool {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `condition` every 20 ms until it holds or [`PATIENCE`] runs out.
pub fn wait_until(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    condition()
}

fn tool(name: &str) -> PathBuf {
    for dir in std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
    {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("{name} is not installed: run scripts/test, which installs Debian's mosquitto-clients")
}

/// Runs `mosquitto_pub` against `broker` with `args` (host and port are added) and returns
/// its output.
pub fn mosquitto_pub(broker: &Broker, args: &[&str]) -> Output {
    Command::new(tool("mosquitto_pub"))
        .args(["-h", "127.0.0.1", "-p", &broker.port().to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run mosquitto_pub")
}

/// Runs `mosquitto_pub` with `stdin` as its standard input (for `-l` and `-s`).
pub fn mosquitto_pub_stdin(broker: &Broker, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(tool("mosquitto_pub"))
        .args(["-h", "127.0.0.1", "-p", &broker.port().to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mosquitto_pub");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin).expect("write stdin");
    }
    child.wait_with_output().expect("wait mosquitto_pub")
}

/// A `mosquitto_sub` running in the background, its output collected.
#[derive(Debug)]
pub struct MosquittoSub {
    child: Child,
    out: Arc<Mutex<String>>,
}

impl MosquittoSub {
    /// Starts `mosquitto_sub` against `broker` with `args` and waits until the broker logs
    /// its subscription acknowledgement... which needs `-v` logging; instead it waits until
    /// the client's `-d` output shows `Client ... received SUBACK`. `-d` is added.
    pub fn start(broker: &Broker, args: &[&str]) -> MosquittoSub {
        let mut child = Command::new(tool("mosquitto_sub"))
            .args(["-h", "127.0.0.1", "-p", &broker.port().to_string(), "-d"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run mosquitto_sub");
        let out = Arc::new(Mutex::new(String::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let out = Arc::clone(&out);
            thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut out = out
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    out.push_str(&line);
                    out.push('\n');
                }
            });
        }
        let sub = MosquittoSub { child, out };
        assert!(
            wait_until(|| sub.output().contains("received SUBACK")),
            "mosquitto_sub did not subscribe:\n{}\nbroker log:\n{}",
            sub.output(),
            broker.log()
        );
        sub
    }

    /// Everything printed so far (stdout and stderr interleaved by line).
    pub fn output(&self) -> String {
        self.out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The lines printed that are messages, not `-d` debug lines.
    pub fn messages(&self) -> Vec<String> {
        self.output()
            .lines()
            .filter(|l| !l.starts_with("Client ") && !l.starts_with("Subscribed (mid"))
            .map(str::to_owned)
            .collect()
    }

    /// Waits until at least `n` messages were printed; returns them.
    pub fn wait_for_messages(&self, n: usize) -> Vec<String> {
        wait_until(|| self.messages().len() >= n);
        self.messages()
    }

    /// Waits for the process to exit by itself (after `-C n`, `-W secs`); returns its status
    /// code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for MosquittoSub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain TCP connection for hand-made bytes.
#[derive(Debug)]
pub struct RawClient {
    stream: TcpStream,
}

impl RawClient {
    /// Connects to `broker`.
    pub fn connect(broker: &Broker) -> RawClient {
        let stream = TcpStream::connect(broker.addr()).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        RawClient { stream }
    }

    /// Writes `bytes`.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Reads exactly `n` bytes (or fails after the read timeout).
    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        self.stream.read_exact(&mut buf).expect("read");
        buf
    }

    /// Whether the broker closed the connection: a read returns end of file (or a reset)
    /// within the timeout. Bytes still in flight (a CONNACK, say) are read and returned.
    pub fn closed(&mut self) -> (bool, Vec<u8>) {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return (true, got),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return (false, got);
                }
                Err(_) => return (true, got),
            }
        }
    }

    /// Connects and completes an MQTT 3.1.1 CONNECT with client id `id` and keep alive 60;
    /// asserts the CONNACK is an acceptance.
    pub fn connect_v311(broker: &Broker, id: &str) -> RawClient {
        let mut c = RawClient::connect(broker);
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
        let id_len = u16::try_from(id.len()).expect("short id");
        body.extend_from_slice(&id_len.to_be_bytes());
        body.extend_from_slice(id.as_bytes());
        let mut packet = vec![0x10, u8::try_from(body.len()).expect("short connect")];
        packet.extend_from_slice(&body);
        c.send(&packet);
        assert_eq!(
            c.read_exact(4),
            [0x20, 0x02, 0x00, 0x00],
            "CONNACK accepted"
        );
        c
    }
}

/// The Python interpreter of the venv `scripts/test` prepares with paho-mqtt 2.x
/// (`$PIGEON_PYTHON`, else `.venv/bin/python` at the repository root).
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("PIGEON_PYTHON") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = root.join(".venv/bin/python");
    assert!(
        venv.is_file(),
        "no Python venv with paho-mqtt at {}: run scripts/test, which creates it",
        venv.display()
    );
    venv
}

/// A temporary directory removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a fresh directory under the system's temporary directory.
    ///
    /// # Panics
    /// When it cannot be created.
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("pigeon-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
