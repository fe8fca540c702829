//! `pigeon-test`: fixtures for integration tests that run the real broker and real clients on
//! loopback.
//!
//! - [`Broker`]: the `pigeon` binary started on a free 127.0.0.1 port with a given
//!   configuration, its log captured, killed on drop.
//! - [`mosquitto_pub`], [`MosquittoSub`]: Debian's `mosquitto-clients`, run against it.
//! - [`Background`]: any program run in the background with its output collected (the Python
//!   lab scripts, for one).
//! - [`RawClient`] and [`mqtt`]: a TCP socket and an encoder for hand-made MQTT 3.1.1 packets
//!   (malformed ones included), written independently of the broker's own codec.
//! - [`python`]: the venv interpreter with paho-mqtt that `scripts/test` prepares.
//!
//! A missing tool is a test failure with a message saying how to install it, never a skip:
//! `scripts/test` installs everything the tests need.
//!
//! Every broker gets its own port, so tests run in parallel; a port that another process takes
//! between choosing and binding it is detected (the listening socket must belong to the
//! broker's process) and the broker is started again on another one.

// Test fixtures wait on real processes and sockets with wall-clock deadlines; the broker's
// rule that only its clock module reads the time does not apply to them.
#![allow(clippy::disallowed_methods)]
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
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

/// Polls `condition` every 20 ms until it holds or [`PATIENCE`] runs out; returns whether it
/// held.
pub fn wait_until(condition: impl FnMut() -> bool) -> bool {
    wait_until_for(PATIENCE, condition)
}

/// [`wait_until`] with another deadline.
pub fn wait_until_for(patience: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    condition()
}

/// Measures wall-clock time for tests (which, unlike the broker, may read the clock, but only
/// through the fixtures).
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch(Instant);

impl Stopwatch {
    /// Starts measuring now.
    pub fn start() -> Stopwatch {
        Stopwatch(Instant::now())
    }

    /// The time since [`start`](Self::start).
    pub fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reads every line of `stream` into `sink` on a thread of its own.
fn collect_lines(stream: impl Read + Send + 'static, sink: &Arc<Mutex<String>>) {
    let sink = Arc::clone(sink);
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut out = lock(&sink);
            out.push_str(&line);
            out.push('\n');
        }
    });
}

// ---------------------------------------------------------------------------------------------
// The broker
// ---------------------------------------------------------------------------------------------

/// The broker binary the tests run: `$PIGEON_TEST_BROKER` when set (for instance
/// `/usr/sbin/mosquitto`, to check that a test's expectations hold for Mosquitto too), else
/// `default` (the test's `env!("CARGO_BIN_EXE_pigeon")`).
pub fn broker_binary(default: &str) -> PathBuf {
    std::env::var_os("PIGEON_TEST_BROKER").map_or_else(|| PathBuf::from(default), PathBuf::from)
}

/// A running `pigeon` broker.
#[derive(Debug)]
pub struct Broker {
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
    dir: TempDir,
    binary: PathBuf,
    argv: Vec<String>,
}

/// How many times a broker is started again when its port was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;

impl Broker {
    /// Starts `binary` with a configuration file holding a listener on a free 127.0.0.1 port
    /// and `allow_anonymous true`, followed by `config` (more directives, which may override
    /// `allow_anonymous`), plus the command line `args`, and waits until it listens.
    ///
    /// # Panics
    /// When the broker cannot be started or does not listen within [`PATIENCE`].
    pub fn start(binary: impl AsRef<Path>, config: &str, args: &[&str]) -> Broker {
        Broker::start_with(binary.as_ref(), |port, dir| {
            let conf = dir.join("pigeon.conf");
            let text = format!("listener {port} 127.0.0.1\nallow_anonymous true\n{config}\n");
            std::fs::write(&conf, text).expect("write config");
            let mut all = vec!["-c".to_owned(), conf.display().to_string()];
            all.extend(args.iter().map(|&a| a.to_owned()));
            all
        })
    }

    /// Starts `binary` without a configuration file, as `pigeon -p PORT ARGS`: Mosquitto's
    /// local-only mode, on a free port instead of 1883.
    ///
    /// # Panics
    /// As [`Broker::start`].
    pub fn start_local_only(binary: impl AsRef<Path>, args: &[&str]) -> Broker {
        Broker::start_with(binary.as_ref(), |port, _| {
            let mut all = vec!["-p".to_owned(), port.to_string()];
            all.extend(args.iter().map(|&a| a.to_owned()));
            all
        })
    }

    /// Starts `binary` with the arguments `args(port, dir)` builds for a free `port` and a
    /// temporary directory `dir` that lives as long as the broker, and waits until the broker
    /// process listens on 127.0.0.1:`port`.
    ///
    /// # Panics
    /// As [`Broker::start`].
    pub fn start_with(binary: &Path, mut args: impl FnMut(u16, &Path) -> Vec<String>) -> Broker {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port();
            let dir = TempDir::new("broker");
            let argv = args(port, dir.path());
            let log = Arc::new(Mutex::new(String::new()));
            let child = spawn_logged(binary, &argv, &log);
            let mut broker = Broker {
                child,
                port,
                log,
                dir,
                binary: binary.to_path_buf(),
                argv: argv.clone(),
            };
            match broker.wait_listening() {
                Ok(()) => return broker,
                Err(status) => {
                    let log = broker.log();
                    if attempt < PORT_ATTEMPTS && log.contains("in use") {
                        continue;
                    }
                    panic!(
                        "pigeon {} did not listen on 127.0.0.1:{port} ({status}):\n{log}",
                        argv.join(" ")
                    );
                }
            }
        }
    }

    /// Waits until this process owns a listening socket on the port; on failure returns how
    /// the process ended (or that it did not listen in time).
    fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + PATIENCE;
        let want = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Give the log threads a moment to read the last lines.
                thread::sleep(Duration::from_millis(50));
                return Err(format!("exited with {status}"));
            }
            if listening_sockets(self.child.id()).contains(&want) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err("timed out".to_owned());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The listener's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The listener's address, 127.0.0.1:port.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// A directory that lives as long as the broker (its configuration file is there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the broker logged so far (standard error and output).
    pub fn log(&self) -> String {
        lock(&self.log).clone()
    }

    /// Waits until the log contains `needle`; returns whether it did within [`PATIENCE`].
    pub fn wait_for_log(&self, needle: &str) -> bool {
        wait_until(|| self.log().contains(needle))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The addresses the broker process listens on (TCP, from `/proc`).
    pub fn listening_addrs(&self) -> Vec<SocketAddr> {
        listening_sockets(self.child.id())
    }

    /// Sends SIGTERM and waits for the exit; returns whether it exited successfully.
    pub fn stop(&mut self) -> bool {
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the broker with SIGKILL (a crash: nothing is flushed) and waits for it to end.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the broker again, after [`stop`](Self::stop) or [`kill`](Self::kill), with the
    /// same command line (so the same port, configuration and directory); its log goes on
    /// after the previous run's. Waits until it listens.
    ///
    /// # Panics
    /// When it does not listen within [`PATIENCE`] (the log says why).
    pub fn restart(&mut self) {
        if self.is_running() {
            self.kill();
        }
        lock(&self.log).push_str("---- restart ----\n");
        self.child = spawn_logged(&self.binary, &self.argv, &self.log);
        if let Err(status) = self.wait_listening() {
            panic!(
                "pigeon did not listen again on 127.0.0.1:{} ({status}):\n{}",
                self.port,
                self.log()
            );
        }
    }

    /// Panics with `what` and the broker's log unless the broker is still running.
    pub fn assert_running(&mut self, what: &str) {
        assert!(self.is_running(), "pigeon died ({what}):\n{}", self.log());
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

/// Starts `binary` with `argv`, its output and errors collected into `log`.
fn spawn_logged(binary: &Path, argv: &[String], log: &Arc<Mutex<String>>) -> Child {
    let mut child = Command::new(binary)
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    if let Some(s) = child.stderr.take() {
        collect_lines(s, log);
    }
    if let Some(s) = child.stdout.take() {
        collect_lines(s, log);
    }
    child
}

/// Writes `text` to `dir/name`, readable by everyone (the broker reads its files after giving
/// up root); returns the path as a string.
///
/// # Panics
/// When the file cannot be written.
pub fn write_readable(dir: &Path, name: &str, text: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path.display().to_string()
}

/// Writes the password file `dir/name` with `pigeon_passwd` (the test's
/// `env!("CARGO_BIN_EXE_pigeon-passwd")`), one `(user, password)` entry each, readable by
/// everyone; returns its path.
///
/// # Panics
/// When `pigeon-passwd` fails.
pub fn password_file(
    pigeon_passwd: &str,
    dir: &Path,
    name: &str,
    users: &[(&str, &str)],
) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    for (i, (user, password)) in users.iter().enumerate() {
        let mut cmd = Command::new(pigeon_passwd);
        if i == 0 {
            cmd.arg("-c");
        }
        let out = cmd
            .arg("-b")
            .arg(&path)
            .args([user, password])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pigeon-passwd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path
}

/// Sends signal `name` (`TERM`, `INT`, `KILL`...) to process `pid` with kill(1).
pub fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The TCP addresses process `pid` listens on: the LISTEN entries of `/proc/net/tcp{,6}` whose
/// socket inode is one of the process's open files.
pub fn listening_sockets(pid: u32) -> Vec<SocketAddr> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let inodes: Vec<String> = fds
        .filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            link.strip_prefix("socket:[")
                .and_then(|rest| rest.strip_suffix(']'))
                .map(str::to_owned)
        })
        .collect();
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st queues timer retrnsmt uid timeout inode
            if fields.len() < 10 || fields[3] != "0A" || !inodes.iter().any(|i| i == fields[9]) {
                continue;
            }
            if let Some(addr) = parse_proc_addr(fields[1]) {
                found.push(addr);
            }
        }
    }
    found
}

/// `0100007F:0050` (IPv4) or 32 hex digits and a port (IPv6), each 32-bit word in host byte
/// order, as `/proc/net/tcp{,6}` writes them.
fn parse_proc_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        Some(
            u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16)
                .ok()?
                .to_ne_bytes(),
        )
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Runs the broker binary with `args` to completion (for `--test-config`, `--help` and bad
/// configurations); gives up after [`PATIENCE`].
///
/// # Panics
/// When it cannot be run or does not exit in time.
pub fn run_pigeon(binary: impl AsRef<Path>, args: &[&OsStr]) -> Output {
    let mut cmd = Command::new(binary.as_ref());
    cmd.args(args);
    let mut p = Background::spawn(&mut cmd, "pigeon");
    let status = p
        .wait_exit(PATIENCE)
        .unwrap_or_else(|| panic!("pigeon {args:?} did not exit:\n{}", p.output()));
    Output {
        status,
        stdout: p.stdout().into_bytes(),
        stderr: p.stderr().into_bytes(),
    }
}

// ---------------------------------------------------------------------------------------------
// Background processes
// ---------------------------------------------------------------------------------------------

/// A program running in the background, its standard output and error collected line by
/// line; killed on drop.
#[derive(Debug)]
pub struct Background {
    name: String,
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    /// Both streams, interleaved by line in arrival order.
    all: Arc<Mutex<String>>,
    status: Option<ExitStatus>,
    /// The threads reading standard output and error; they end at end of file.
    readers: Vec<thread::JoinHandle<()>>,
}

impl Background {
    /// Starts `cmd` (standard input from /dev/null unless `cmd` says otherwise).
    ///
    /// # Panics
    /// When it cannot be started.
    pub fn spawn(cmd: &mut Command, name: &str) -> Background {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let all = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        for (stream, sink) in [
            (
                child
                    .stdout
                    .take()
                    .map(|s| Box::new(s) as Box<dyn Read + Send>),
                Arc::clone(&stdout),
            ),
            (
                child
                    .stderr
                    .take()
                    .map(|s| Box::new(s) as Box<dyn Read + Send>),
                Arc::clone(&stderr),
            ),
        ] {
            let Some(stream) = stream else { continue };
            let all = Arc::clone(&all);
            readers.push(thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    for s in [&sink, &all] {
                        let mut s = lock(s);
                        s.push_str(&line);
                        s.push('\n');
                    }
                }
            }));
        }
        Background {
            name: name.to_owned(),
            child,
            stdout,
            stderr,
            all,
            status: None,
            readers,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it wrote to standard output so far.
    pub fn stdout(&self) -> String {
        lock(&self.stdout).clone()
    }

    /// What it wrote to standard error so far.
    pub fn stderr(&self) -> String {
        lock(&self.stderr).clone()
    }

    /// Both streams, interleaved by line.
    pub fn output(&self) -> String {
        lock(&self.all).clone()
    }

    /// Waits until the interleaved output satisfies `condition`; returns whether it did within
    /// [`PATIENCE`].
    pub fn wait_for(&self, mut condition: impl FnMut(&str) -> bool) -> bool {
        wait_until(|| condition(&self.output()))
    }

    /// Waits until the interleaved output contains `needle`.
    pub fn wait_for_text(&self, needle: &str) -> bool {
        self.wait_for(|out| out.contains(needle))
    }

    /// Whether it has exited (and how), without waiting.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits up to `patience` for the process to exit by itself; returns its status. The
    /// output is complete once this returns `Some` (the reader threads are given time to
    /// finish).
    pub fn wait_exit(&mut self, patience: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = self.try_status() {
                // The pipes close with the process (unless a child of it holds them): let the
                // readers drain them, for a while at most.
                let drained = Instant::now() + Duration::from_secs(2);
                while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < drained {
                    thread::sleep(Duration::from_millis(5));
                }
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal (`TERM`, `INT`...) by name.
    pub fn signal(&self, name: &str) {
        signal(self.child.id(), name);
    }

    /// SIGKILL: the process dies without a word to the broker (its socket is closed by the
    /// kernel, so the broker sees the connection end without DISCONNECT).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        self.status = self.child.wait().ok();
    }

    /// The name given at [`spawn`](Self::spawn).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// mosquitto-clients
// ---------------------------------------------------------------------------------------------

/// The path of an installed program, found on `PATH`.
///
/// # Panics
/// When it is not installed, saying how to install it.
pub fn tool(name: &str) -> PathBuf {
    for dir in std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
    {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "{name} is not installed: run scripts/test, which installs Debian's mosquitto-clients \
         (or `apt-get install mosquitto-clients`)"
    )
}

/// `name` against `broker`, run through `stdbuf -oL`: the clients write to a pipe here, and
/// `mosquitto_sub -d` does not flush its debug lines (the SUBACK one included) by itself.
fn mosquitto_command(name: &str, broker: &Broker) -> Command {
    let mut cmd = Command::new(tool("stdbuf"));
    cmd.arg("-oL").arg(tool(name));
    cmd.args(["-h", "127.0.0.1", "-p", &broker.port().to_string()]);
    cmd
}

/// Runs `mosquitto_pub` against `broker` with `args` (host and port are added) and returns
/// its output.
pub fn mosquitto_pub(broker: &Broker, args: &[&str]) -> Output {
    mosquitto_pub_stdin(broker, args, b"")
}

/// Runs `mosquitto_pub` with `stdin` as its standard input (for `-l` and `-s`).
///
/// # Panics
/// When it cannot be run or does not finish within [`PATIENCE`].
pub fn mosquitto_pub_stdin(broker: &Broker, args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = mosquitto_command("mosquitto_pub", broker);
    cmd.args(args).stdin(Stdio::piped());
    let mut p = Background::spawn(&mut cmd, "mosquitto_pub");
    if let Some(mut input) = p.child.stdin.take() {
        // A publisher that fails early closes its end; the status tells the rest.
        let _ = input.write_all(stdin);
    }
    let status = p.wait_exit(PATIENCE).unwrap_or_else(|| {
        panic!(
            "mosquitto_pub {args:?} did not finish:\n{}\nbroker log:\n{}",
            p.output(),
            broker.log()
        )
    });
    Output {
        status,
        stdout: p.stdout().into_bytes(),
        stderr: p.stderr().into_bytes(),
    }
}

/// Runs `mosquitto_pub` and asserts that it succeeded.
///
/// # Panics
/// When it fails, with its output and the broker's log.
pub fn publish(broker: &Broker, args: &[&str]) {
    publish_stdin(broker, args, b"");
}

/// [`mosquitto_pub_stdin`], asserting success.
///
/// # Panics
/// As [`publish`].
pub fn publish_stdin(broker: &Broker, args: &[&str], stdin: &[u8]) {
    let out = mosquitto_pub_stdin(broker, args, stdin);
    assert!(
        out.status.success(),
        "mosquitto_pub {args:?} failed ({}):\n{}{}\nbroker log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        broker.log()
    );
}

/// A `mosquitto_sub` running in the background, its output collected. `-d` is always given:
/// its debug lines tell when the subscription is acknowledged, and
/// [`messages`](Self::messages) leaves them out.
#[derive(Debug)]
pub struct MosquittoSub {
    process: Background,
}

impl MosquittoSub {
    /// Starts `mosquitto_sub -d` against `broker` with `args` and waits until it received its
    /// SUBACK.
    ///
    /// # Panics
    /// When it did not subscribe within [`PATIENCE`].
    pub fn start(broker: &Broker, args: &[&str]) -> MosquittoSub {
        let sub = MosquittoSub::spawn(broker, args);
        assert!(
            sub.process.wait_for_text("received SUBACK"),
            "mosquitto_sub {args:?} did not subscribe:\n{}\nbroker log:\n{}",
            sub.output(),
            broker.log()
        );
        sub
    }

    /// Starts `mosquitto_sub -d` with `args` without waiting for anything.
    pub fn spawn(broker: &Broker, args: &[&str]) -> MosquittoSub {
        let mut cmd = mosquitto_command("mosquitto_sub", broker);
        cmd.arg("-d").args(args).stdin(Stdio::null());
        MosquittoSub {
            process: Background::spawn(&mut cmd, "mosquitto_sub"),
        }
    }

    /// Everything printed so far (stdout and stderr interleaved by line).
    pub fn output(&self) -> String {
        self.process.output()
    }

    /// The lines printed that are messages, not `-d` debug lines.
    pub fn messages(&self) -> Vec<String> {
        self.process
            .stdout()
            .lines()
            .filter(|l| !is_debug_line(l))
            .map(str::to_owned)
            .collect()
    }

    /// Waits until at least `n` messages were printed; returns them all.
    pub fn wait_for_messages(&self, n: usize) -> Vec<String> {
        wait_until(|| self.messages().len() >= n);
        self.messages()
    }

    /// Waits until a message line equal to `line` was printed; returns every message line
    /// printed by then.
    ///
    /// # Panics
    /// When it does not arrive within [`PATIENCE`].
    pub fn wait_for_message(&self, line: &str) -> Vec<String> {
        assert!(
            wait_until(|| self.messages().iter().any(|m| m == line)),
            "mosquitto_sub did not print {line:?}; output:\n{}",
            self.output()
        );
        self.messages()
    }

    /// Waits for the process to exit by itself (after `-C n`, `-W secs`, `-E`); returns its
    /// exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        self.process.wait_exit(PATIENCE).and_then(|s| s.code())
    }

    /// The process.
    pub fn process(&mut self) -> &mut Background {
        &mut self.process
    }
}

/// Whether `line` is one of `mosquitto_sub -d`'s debug lines rather than a message.
fn is_debug_line(line: &str) -> bool {
    line.starts_with("Client ") || line.starts_with("Subscribed (mid")
}

// ---------------------------------------------------------------------------------------------
// Python
// ---------------------------------------------------------------------------------------------

/// The Python interpreter of the venv `scripts/test` prepares with paho-mqtt 2.x
/// (`$PIGEON_PYTHON`, else `.venv/bin/python` at the repository root). Checked once per test
/// process to import paho-mqtt 2.x.
///
/// # Panics
/// When there is no such interpreter or it lacks paho-mqtt 2.x, saying how to get it.
pub fn python() -> PathBuf {
    static CHECKED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let py = match std::env::var_os("PIGEON_PYTHON") {
                Some(p) => PathBuf::from(p),
                None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
            };
            if !py.is_file() {
                return Err(format!(
                    "no Python venv with paho-mqtt at {}: run scripts/test, which creates it",
                    py.display()
                ));
            }
            let out = Command::new(&py)
                .args([
                    "-c",
                    "import importlib.metadata as m; import paho.mqtt.client; \
                     print(m.version('paho-mqtt'))",
                ])
                .output()
                .map_err(|e| format!("cannot run {}: {e}", py.display()))?;
            let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if !out.status.success() || !version.starts_with("2.") {
                return Err(format!(
                    "{} has no paho-mqtt 2.x (found {version:?}; {}): run scripts/test, which \
                     installs it",
                    py.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Ok(py)
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

// ---------------------------------------------------------------------------------------------
// Hand-made MQTT 3.1.1
// ---------------------------------------------------------------------------------------------

/// An encoder for MQTT 3.1.1 packets, independent of the broker's codec so that tests do not
/// share its mistakes; every function returns the complete packet's bytes.
pub mod mqtt {
    /// Packet types (the high nibble of the first byte).
    pub const CONNECT: u8 = 1;
    /// CONNACK.
    pub const CONNACK: u8 = 2;
    /// PUBLISH.
    pub const PUBLISH: u8 = 3;
    /// PUBACK.
    pub const PUBACK: u8 = 4;
    /// PUBREC.
    pub const PUBREC: u8 = 5;
    /// PUBREL.
    pub const PUBREL: u8 = 6;
    /// PUBCOMP.
    pub const PUBCOMP: u8 = 7;
    /// SUBSCRIBE.
    pub const SUBSCRIBE: u8 = 8;
    /// SUBACK.
    pub const SUBACK: u8 = 9;
    /// UNSUBSCRIBE.
    pub const UNSUBSCRIBE: u8 = 10;
    /// UNSUBACK.
    pub const UNSUBACK: u8 = 11;
    /// PINGREQ.
    pub const PINGREQ: u8 = 12;
    /// PINGRESP.
    pub const PINGRESP: u8 = 13;
    /// DISCONNECT.
    pub const DISCONNECT: u8 = 14;

    /// The Remaining Length encoding of `n` (1 to 4 bytes).
    pub fn remaining_length(mut n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let mut byte = u8::try_from(n % 128).expect("below 128");
            n /= 128;
            if n > 0 {
                byte |= 0x80;
            }
            out.push(byte);
            if n == 0 {
                return out;
            }
        }
    }

    /// A packet of first byte `first` and variable header plus payload `body`.
    pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        out.extend(remaining_length(body.len()));
        out.extend_from_slice(body);
        out
    }

    /// A length-prefixed string (or binary data).
    pub fn string(s: &[u8]) -> Vec<u8> {
        let len = u16::try_from(s.len()).expect("string under 64 KiB");
        let mut out = len.to_be_bytes().to_vec();
        out.extend_from_slice(s);
        out
    }

    /// A will message: topic, payload, QoS, retain.
    #[derive(Debug, Clone)]
    pub struct Will<'a> {
        /// Will Topic.
        pub topic: &'a str,
        /// Will Message.
        pub payload: &'a [u8],
        /// Will QoS.
        pub qos: u8,
        /// Will Retain.
        pub retain: bool,
    }

    /// A CONNECT packet's contents, each field settable to wrong values.
    #[derive(Debug, Clone)]
    pub struct Connect<'a> {
        /// Protocol Name (`MQTT`).
        pub protocol_name: &'a [u8],
        /// Protocol Level (4).
        pub level: u8,
        /// Clean Session.
        pub clean_session: bool,
        /// Keep Alive in seconds.
        pub keep_alive: u16,
        /// Client Identifier.
        pub client_id: &'a str,
        /// Will.
        pub will: Option<Will<'a>>,
        /// User Name.
        pub username: Option<&'a str>,
        /// Password.
        pub password: Option<&'a [u8]>,
        /// Bits OR-ed into the Connect Flags as they are (bit 0 is reserved).
        pub extra_flags: u8,
        /// The first byte (0x10; its low nibble is reserved).
        pub first_byte: u8,
    }

    impl<'a> Connect<'a> {
        /// MQTT 3.1.1, clean session, keep alive 60, client id `client_id`.
        pub fn new(client_id: &'a str) -> Self {
            Connect {
                protocol_name: b"MQTT",
                level: 4,
                clean_session: true,
                keep_alive: 60,
                client_id,
                will: None,
                username: None,
                password: None,
                extra_flags: 0,
                first_byte: 0x10,
            }
        }

        /// The packet.
        pub fn encode(&self) -> Vec<u8> {
            let mut flags = self.extra_flags;
            if self.clean_session {
                flags |= 0x02;
            }
            if let Some(will) = &self.will {
                flags |= 0x04 | (will.qos << 3);
                if will.retain {
                    flags |= 0x20;
                }
            }
            if self.password.is_some() {
                flags |= 0x40;
            }
            if self.username.is_some() {
                flags |= 0x80;
            }
            let mut body = string(self.protocol_name);
            body.push(self.level);
            body.push(flags);
            body.extend_from_slice(&self.keep_alive.to_be_bytes());
            body.extend(string(self.client_id.as_bytes()));
            if let Some(will) = &self.will {
                body.extend(string(will.topic.as_bytes()));
                body.extend(string(will.payload));
            }
            if let Some(u) = self.username {
                body.extend(string(u.as_bytes()));
            }
            if let Some(p) = self.password {
                body.extend(string(p));
            }
            packet(self.first_byte, &body)
        }
    }

    /// A PUBLISH. `packet_id` is required for QoS 1 and 2 and left out for QoS 0.
    pub fn publish(
        topic: &str,
        payload: &[u8],
        qos: u8,
        packet_id: Option<u16>,
        dup: bool,
        retain: bool,
    ) -> Vec<u8> {
        let first = 0x30 | (u8::from(dup) << 3) | (qos << 1) | u8::from(retain);
        let mut body = string(topic.as_bytes());
        if let Some(id) = packet_id {
            body.extend_from_slice(&id.to_be_bytes());
        }
        body.extend_from_slice(payload);
        packet(first, &body)
    }

    /// A SUBSCRIBE of `filters`, each with its requested QoS.
    pub fn subscribe(packet_id: u16, filters: &[(&str, u8)]) -> Vec<u8> {
        let mut body = packet_id.to_be_bytes().to_vec();
        for (filter, qos) in filters {
            body.extend(string(filter.as_bytes()));
            body.push(*qos);
        }
        packet(0x82, &body)
    }

    /// An UNSUBSCRIBE of `filters`.
    pub fn unsubscribe(packet_id: u16, filters: &[&str]) -> Vec<u8> {
        let mut body = packet_id.to_be_bytes().to_vec();
        for filter in filters {
            body.extend(string(filter.as_bytes()));
        }
        packet(0xA2, &body)
    }

    /// PUBACK, PUBREC, PUBREL or PUBCOMP (by `kind`) for `packet_id`, with the flags the spec
    /// requires (0010 for PUBREL, 0000 otherwise).
    pub fn ack(kind: u8, packet_id: u16) -> Vec<u8> {
        let flags = if kind == PUBREL { 0x02 } else { 0 };
        packet(kind << 4 | flags, &packet_id.to_be_bytes())
    }

    /// PINGREQ.
    pub fn pingreq() -> Vec<u8> {
        vec![0xC0, 0]
    }

    /// DISCONNECT.
    pub fn disconnect() -> Vec<u8> {
        vec![0xE0, 0]
    }

    /// A packet as received: the first byte and the bytes after the Remaining Length.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Packet {
        /// The first byte (type and flags).
        pub first: u8,
        /// Variable header and payload.
        pub body: Vec<u8>,
    }

    impl Packet {
        /// The packet type.
        pub fn kind(&self) -> u8 {
            self.first >> 4
        }

        /// The Packet Identifier of an acknowledgement, SUBACK or UNSUBACK (the first two
        /// bytes of the body).
        pub fn packet_id(&self) -> Option<u16> {
            Some(u16::from_be_bytes([
                *self.body.first()?,
                *self.body.get(1)?,
            ]))
        }

        /// The packet's bytes again.
        pub fn to_bytes(&self) -> Vec<u8> {
            packet(self.first, &self.body)
        }

        /// The fields of a PUBLISH.
        pub fn publish(&self) -> Option<Publish> {
            if self.kind() != PUBLISH {
                return None;
            }
            let qos = (self.first >> 1) & 3;
            let len = usize::from(u16::from_be_bytes([
                *self.body.first()?,
                *self.body.get(1)?,
            ]));
            let topic = String::from_utf8(self.body.get(2..2 + len)?.to_vec()).ok()?;
            let mut rest = 2 + len;
            let packet_id = if qos > 0 {
                let id = u16::from_be_bytes([*self.body.get(rest)?, *self.body.get(rest + 1)?]);
                rest += 2;
                Some(id)
            } else {
                None
            };
            Some(Publish {
                topic,
                payload: self.body.get(rest..)?.to_vec(),
                qos,
                dup: self.first & 0x08 != 0,
                retain: self.first & 0x01 != 0,
                packet_id,
            })
        }
    }

    /// A PUBLISH as received.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Publish {
        /// Topic Name.
        pub topic: String,
        /// Payload.
        pub payload: Vec<u8>,
        /// QoS.
        pub qos: u8,
        /// DUP flag.
        pub dup: bool,
        /// RETAIN flag.
        pub retain: bool,
        /// Packet Identifier (QoS 1 and 2).
        pub packet_id: Option<u16>,
    }
}

/// A plain TCP connection to the broker for hand-made bytes, with helpers to read whole
/// packets and to play the client's side of the acknowledgement flows.
#[derive(Debug)]
pub struct RawClient {
    stream: TcpStream,
    /// Bytes read but not yet parsed into a packet.
    buf: Vec<u8>,
    /// Packets read while waiting for another kind.
    pending: VecDeque<mqtt::Packet>,
    next_id: u16,
}

/// How long a [`RawClient`] read waits by default.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

impl RawClient {
    /// Opens a TCP connection to `broker` (no CONNECT sent).
    ///
    /// # Panics
    /// When the connection fails.
    pub fn connect(broker: &Broker) -> RawClient {
        let stream = TcpStream::connect(broker.addr()).expect("connect");
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        RawClient {
            stream,
            buf: Vec::new(),
            pending: VecDeque::new(),
            next_id: 1,
        }
    }

    /// Opens a TCP connection to `addr` (no CONNECT sent), reporting failure (a broker that
    /// is restarting, say).
    ///
    /// # Errors
    /// The connection's.
    pub fn connect_addr(addr: SocketAddr) -> io::Result<RawClient> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(RawClient {
            stream,
            buf: Vec::new(),
            pending: VecDeque::new(),
            next_id: 1,
        })
    }

    /// Connects and sends `connect`; returns the client and the broker's first packet (its
    /// CONNACK), or `None` when it closed the connection without one.
    pub fn connect_with(
        broker: &Broker,
        connect: &mqtt::Connect<'_>,
    ) -> (RawClient, Option<mqtt::Packet>) {
        let mut c = RawClient::connect(broker);
        c.send(&connect.encode());
        let first = c.try_read_packet().ok().flatten();
        (c, first)
    }

    /// Connects with an MQTT 3.1.1 CONNECT for client id `id` (clean session, keep alive 60)
    /// and asserts the CONNACK accepts it.
    ///
    /// # Panics
    /// When the connection is refused.
    pub fn connect_v311(broker: &Broker, id: &str) -> RawClient {
        let (c, connack) = RawClient::connect_with(broker, &mqtt::Connect::new(id));
        let connack = connack.map(|p| p.to_bytes());
        assert_eq!(
            connack.as_deref(),
            Some(&[0x20, 0x02, 0x00, 0x00][..]),
            "CONNACK accepting {id}; broker log:\n{}",
            broker.log()
        );
        c
    }

    /// Sets the read timeout.
    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.stream
            .set_read_timeout(Some(timeout))
            .expect("set timeout");
    }

    /// Writes `bytes`.
    ///
    /// # Panics
    /// When the write fails.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Writes `bytes`, reporting failure (the broker may have closed the connection already).
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads exactly `n` bytes (or fails after the read timeout).
    ///
    /// # Panics
    /// When they do not arrive.
    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("connection closed after {:?}", self.buf),
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
                Err(e) => panic!("read: {e} (have {:?})", self.buf),
            }
        }
        self.buf.drain(..n).collect()
    }

    /// The next packet: `Ok(None)` when the broker closed the connection (end of file or
    /// reset) at a packet boundary; an error on timeout or a truncated packet.
    pub fn try_read_packet(&mut self) -> io::Result<Option<mqtt::Packet>> {
        match self.pending.pop_front() {
            Some(p) => Ok(Some(p)),
            None => self.read_from_network(),
        }
    }

    /// The next packet from the socket, past any pending ones.
    fn read_from_network(&mut self) -> io::Result<Option<mqtt::Packet>> {
        loop {
            if let Some(p) = self.parse_buffered()? {
                return Ok(Some(p));
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return if self.buf.is_empty() {
                        Ok(None)
                    } else {
                        Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("closed inside a packet: {:?}", self.buf),
                        ))
                    };
                }
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    fn parse_buffered(&mut self) -> io::Result<Option<mqtt::Packet>> {
        let mut len = 0usize;
        let mut shift = 0;
        let mut i = 1;
        loop {
            let Some(&byte) = self.buf.get(i) else {
                return Ok(None);
            };
            len |= usize::from(byte & 0x7F) << shift;
            i += 1;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
            if i > 4 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "remaining length over 4 bytes from the broker",
                ));
            }
        }
        if self.buf.len() < i + len {
            return Ok(None);
        }
        let first = self.buf[0];
        let body = self.buf[i..i + len].to_vec();
        self.buf.drain(..i + len);
        Ok(Some(mqtt::Packet { first, body }))
    }

    /// The next packet.
    ///
    /// # Panics
    /// When the connection closes or nothing arrives within the read timeout.
    pub fn read_packet(&mut self) -> mqtt::Packet {
        match self.try_read_packet() {
            Ok(Some(p)) => p,
            Ok(None) => panic!("broker closed the connection"),
            Err(e) => panic!("no packet from the broker: {e}"),
        }
    }

    /// The next packet of type `kind`; packets of other kinds read meanwhile are kept for
    /// later reads.
    ///
    /// # Panics
    /// As [`read_packet`](Self::read_packet).
    pub fn expect(&mut self, kind: u8) -> mqtt::Packet {
        if let Some(i) = self.pending.iter().position(|p| p.kind() == kind) {
            return self.pending.remove(i).expect("present");
        }
        loop {
            let p = match self.read_from_network() {
                Ok(Some(p)) => p,
                Ok(None) => panic!(
                    "broker closed the connection waiting for type {kind}; got {:?}",
                    self.pending
                ),
                Err(e) => panic!(
                    "no packet of type {kind} from the broker: {e}; got {:?}",
                    self.pending
                ),
            };
            if p.kind() == kind {
                return p;
            }
            self.pending.push_back(p);
        }
    }

    /// Whether the broker closed the connection: a read returns end of file (or a reset)
    /// within the read timeout. Whatever arrived before (a CONNACK, say) is returned.
    pub fn closed(&mut self) -> (bool, Vec<u8>) {
        let mut got: Vec<u8> = self.pending.drain(..).flat_map(|p| p.to_bytes()).collect();
        got.append(&mut self.buf);
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return (true, got),
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    return (false, got);
                }
                Err(_) => return (true, got),
            }
        }
    }

    /// A fresh Packet Identifier.
    pub fn next_packet_id(&mut self) -> u16 {
        let id = self.next_id;
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        id
    }

    /// Subscribes to `filters` and returns the SUBACK's return codes.
    pub fn subscribe(&mut self, filters: &[(&str, u8)]) -> Vec<u8> {
        let id = self.next_packet_id();
        self.send(&mqtt::subscribe(id, filters));
        let ack = self.expect(mqtt::SUBACK);
        assert_eq!(ack.packet_id(), Some(id), "SUBACK for SUBSCRIBE {id}");
        ack.body[2..].to_vec()
    }

    /// Unsubscribes from `filters` and waits for the UNSUBACK.
    pub fn unsubscribe(&mut self, filters: &[&str]) {
        let id = self.next_packet_id();
        self.send(&mqtt::unsubscribe(id, filters));
        let ack = self.expect(mqtt::UNSUBACK);
        assert_eq!(
            ack.to_bytes(),
            mqtt::ack(mqtt::UNSUBACK, id),
            "UNSUBACK for {id}"
        );
    }

    /// Publishes and completes the QoS flow (PUBACK, or PUBREC / PUBREL / PUBCOMP).
    pub fn publish(&mut self, topic: &str, payload: &[u8], qos: u8, retain: bool) {
        let id = (qos > 0).then(|| self.next_packet_id());
        self.send(&mqtt::publish(topic, payload, qos, id, false, retain));
        match (qos, id) {
            (1, Some(id)) => {
                let ack = self.expect(mqtt::PUBACK);
                assert_eq!(ack.to_bytes(), mqtt::ack(mqtt::PUBACK, id));
            }
            (2, Some(id)) => {
                let rec = self.expect(mqtt::PUBREC);
                assert_eq!(rec.to_bytes(), mqtt::ack(mqtt::PUBREC, id));
                self.send(&mqtt::ack(mqtt::PUBREL, id));
                let comp = self.expect(mqtt::PUBCOMP);
                assert_eq!(comp.to_bytes(), mqtt::ack(mqtt::PUBCOMP, id));
            }
            _ => {}
        }
    }

    /// The next PUBLISH, not acknowledged.
    pub fn recv_publish(&mut self) -> mqtt::Publish {
        self.expect(mqtt::PUBLISH)
            .publish()
            .expect("well-formed PUBLISH")
    }

    /// Acknowledges a received PUBLISH: PUBACK for QoS 1; PUBREC, then the broker's PUBREL
    /// answered with PUBCOMP for QoS 2.
    pub fn ack(&mut self, publish: &mqtt::Publish) {
        let Some(id) = publish.packet_id else { return };
        match publish.qos {
            1 => self.send(&mqtt::ack(mqtt::PUBACK, id)),
            2 => {
                self.send(&mqtt::ack(mqtt::PUBREC, id));
                let rel = self.expect(mqtt::PUBREL);
                assert_eq!(
                    rel.to_bytes(),
                    mqtt::ack(mqtt::PUBREL, id),
                    "PUBREL for {id}"
                );
                self.send(&mqtt::ack(mqtt::PUBCOMP, id));
            }
            _ => {}
        }
    }

    /// The next PUBLISH, acknowledged as its QoS requires.
    pub fn recv_publish_acked(&mut self) -> mqtt::Publish {
        let p = self.recv_publish();
        self.ack(&p);
        p
    }

    /// PINGREQ, and asserts the PINGRESP.
    pub fn ping(&mut self) {
        self.send(&mqtt::pingreq());
        let resp = self.expect(mqtt::PINGRESP);
        assert_eq!(resp.to_bytes(), [0xD0, 0x00]);
    }
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

/// A temporary directory removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a fresh directory under the system's temporary directory.
    ///
    /// # Panics
    /// When it cannot be created.
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("pigeon-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_length_encodes_the_spec_examples() {
        assert_eq!(mqtt::remaining_length(0), [0x00]);
        assert_eq!(mqtt::remaining_length(127), [0x7F]);
        assert_eq!(mqtt::remaining_length(128), [0x80, 0x01]);
        assert_eq!(mqtt::remaining_length(16_383), [0xFF, 0x7F]);
        assert_eq!(mqtt::remaining_length(16_384), [0x80, 0x80, 0x01]);
        assert_eq!(
            mqtt::remaining_length(268_435_455),
            [0xFF, 0xFF, 0xFF, 0x7F]
        );
    }

    #[test]
    fn proc_addresses_parse() {
        let v4 = u32::from_ne_bytes([127, 0, 0, 1]);
        assert_eq!(
            parse_proc_addr(&format!("{v4:08X}:075B")),
            Some(SocketAddr::from(([127, 0, 0, 1], 1883)))
        );
        let one = u32::from_ne_bytes([0, 0, 0, 1]);
        assert_eq!(
            parse_proc_addr(&format!("000000000000000000000000{one:08X}:075B")),
            Some(SocketAddr::from((Ipv6Addr::LOCALHOST, 1883)))
        );
    }

    #[test]
    fn connect_encodes_flags() {
        let c = mqtt::Connect {
            will: Some(mqtt::Will {
                topic: "w",
                payload: b"x",
                qos: 1,
                retain: true,
            }),
            ..mqtt::Connect::new("id")
        };
        let bytes = c.encode();
        // 0x10, length, "MQTT", level 4, flags: retain|qos1|will|clean.
        assert_eq!(
            &bytes[..10],
            &[0x10, 20, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x2E]
        );
    }

    #[test]
    fn publish_parses_back() {
        let bytes = mqtt::publish("a/b", b"hi", 1, Some(7), true, true);
        let p = mqtt::Packet {
            first: bytes[0],
            body: bytes[2..].to_vec(),
        };
        let got = p.publish().unwrap();
        assert_eq!(got.topic, "a/b");
        assert_eq!(got.payload, b"hi");
        assert_eq!(
            (got.qos, got.dup, got.retain, got.packet_id),
            (1, true, true, Some(7))
        );
    }
}
