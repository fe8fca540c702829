//! What `pigeon-pub` and `pigeon-sub` share at run time: the connection options from the
//! command line, connecting, the `-d` lines, and Mosquitto's error messages and exit codes.

use std::ffi::OsString;
use std::future::Future;
use std::io::Write;
use std::net::{IpAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use pigeon_client::{Backoff, TlsOptions, TlsVersion, WebSocketOptions};
use pigeon_client::{
    Client, ConnectOptions, DisconnectReason, Error, Events, Protocol, ReasonCode, Transport,
};

use super::debug::Debug;
use super::options::{self, MessageSource, Options, Stop, Tool};

/// Exit status for errors that are not CONNACK refusals (Mosquitto's tools use 1).
pub const FAILURE: i32 = 1;

/// The process exit status for `code` (Mosquitto's tools exit with small numbers; anything
/// that does not fit a byte is a failure).
pub fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Runs a tool's `main` future on a single-threaded runtime and exits with its status.
pub fn run_to_exit(main: impl Future<Output = i32>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => exit(runtime.block_on(main)),
        Err(e) => {
            eprintln!("Error: {e}");
            exit(FAILURE)
        }
    }
}

/// The payload `-m`, `-f`, `-s` or `-n` gives (empty without any); `None` for `-l`, which
/// sends stdin line by line. A file or standard input that cannot be read is reported as
/// Mosquitto's tools report it; `Err` holds the exit status.
pub fn load_message(o: &Options) -> Result<Option<Bytes>, i32> {
    Ok(Some(match &o.message {
        Some(MessageSource::Message(m)) => Bytes::from(m.clone()),
        Some(MessageSource::Null) | None => Bytes::new(),
        Some(MessageSource::File(path)) => match std::fs::read(path) {
            Ok(data) => Bytes::from(data),
            Err(_) => {
                let p = path.display();
                eprintln!("Error: Unable to open file \"{p}\".\nError loading input file \"{p}\".");
                return Err(FAILURE);
            }
        },
        Some(MessageSource::Stdin) => {
            use std::io::Read;
            let mut data = Vec::new();
            if let Err(e) = std::io::stdin().read_to_end(&mut data) {
                eprintln!("Error: unable to read standard input: {e}");
                return Err(FAILURE);
            }
            Bytes::from(data)
        }
        Some(MessageSource::Lines) => return Ok(None),
    }))
}

/// Parses the options file and the command line, printing what Mosquitto prints when the tool
/// is not to run; `Err` holds the exit status.
///
/// # Errors
/// The exit status when the tool is not to run.
pub fn parse_command_line(tool: Tool, usage: &str) -> Result<Options, i32> {
    let mut args: Vec<OsString> = options::config_file_args(tool);
    args.extend(std::env::args_os().skip(1));
    match options::parse(tool, args) {
        Ok(o) => Ok(o),
        Err(Stop::Help) => {
            print!("{usage}");
            Err(FAILURE)
        }
        Err(Stop::Usage(message)) => {
            eprintln!("Error: {message}");
            print!("{usage}");
            Err(FAILURE)
        }
        Err(Stop::Error(message)) => {
            eprintln!(
                "Error: {message}\n\nUse '{} --help' to see usage.",
                tool.name()
            );
            Err(FAILURE)
        }
    }
}

/// Prints a run-time error on standard error unless `--quiet`.
pub fn error(o: &Options, message: impl std::fmt::Display) {
    if !o.quiet {
        eprintln!("{message}");
    }
}

/// Prints `-d` lines on standard output, flushed (so they interleave with what follows).
pub fn debug_lines(lines: &[String]) {
    let mut out = std::io::stdout().lock();
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
}

/// A random client identifier for MQTT 3.1, which cannot ask the server for one:
/// `mosq-` and 18 letters and digits, as Mosquitto's clients make them.
fn random_client_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 18];
    // Without randomness, the identifier is still valid, only less unique.
    let _ = getrandom::fill(&mut bytes);
    let tail: String = bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    format!("mosq-{tail}")
}

fn tls_version(name: &str) -> Option<TlsVersion> {
    match name {
        "tlsv1.2" => Some(TlsVersion::V1_2),
        "tlsv1.3" => Some(TlsVersion::V1_3),
        _ => None,
    }
}

/// The transport the options ask for, or the message saying what is not supported.
fn transport(o: &Options) -> Result<Transport, String> {
    if o.proxy.is_some() {
        return Err("Error: --proxy (SOCKS5 proxies) is not supported yet.".to_owned());
    }
    if o.srv {
        return Err("Error: -S (SRV lookups) is not supported yet.".to_owned());
    }
    if !o.tls.wanted() {
        return Ok(if o.websockets {
            Transport::WebSocket(WebSocketOptions::new())
        } else {
            Transport::Tcp
        });
    }
    let mut tls = TlsOptions::new();
    if let Some(f) = &o.tls.cafile {
        tls = tls.ca_file(f);
    }
    if let Some(d) = &o.tls.capath {
        tls = tls.ca_dir(d);
    }
    match (&o.tls.cert, &o.tls.key) {
        (Some(c), Some(k)) => tls = tls.client_certificate(c, k),
        (None, None) => {}
        _ => {
            return Err(
                "Error: Both certfile and keyfile must be provided if one of them is set."
                    .to_owned(),
            );
        }
    }
    tls = tls.insecure(o.tls.insecure);
    if let Some(v) = &o.tls.version {
        let Some(v) = tls_version(v) else {
            return Err("Error: Problem setting TLS options, check the options are valid.".into());
        };
        tls = tls.min_version(v).max_version(v);
    }
    for other in &o.tls.other {
        match other.as_str() {
            "--tls-use-os-certs" => tls = tls.system_roots(true),
            "mqtts://" => {}
            flag => return Err(format!("Error: {flag} is not supported yet.")),
        }
    }
    Ok(if o.websockets {
        Transport::SecureWebSocket(tls, WebSocketOptions::new())
    } else {
        Transport::Tls(tls)
    })
}

/// The connection options and the client identifier to show in `-d` lines; `Err` holds the
/// message for options pigeon-client cannot honour.
///
/// # Errors
/// The message to print (exit status [`FAILURE`]).
pub fn connect_options(o: &Options) -> Result<(ConnectOptions, String), String> {
    let transport = transport(o)?;
    let id = match (&o.id, o.protocol) {
        (Some(id), _) => id.clone(),
        (None, Protocol::V31) => random_client_id(),
        (None, _) => String::new(),
    };
    let mut c = ConnectOptions::new(o.host.clone(), o.port())
        .transport(transport)
        .protocol(o.protocol)
        .client_id(id.clone())
        .clean_start(o.clean)
        .keep_alive(o.keep_alive)
        .packet_events(true)
        .connect_timeout(Duration::from_secs(60));
    if let Some(m) = o.max_inflight {
        c = c.max_inflight(m);
    }
    if let Some(address) = &o.bind_address {
        c = c.bind_address(bind_address(address)?);
    }
    if let Some(path) = &o.unix {
        c = c.unix_socket(path.clone());
    }
    if o.tool == Tool::Sub {
        // mosquitto_sub runs libmosquitto's loop, which reconnects a lost connection every
        // second and subscribes again; so does pigeon-sub.
        c = c.reconnect(Backoff::new(Duration::from_secs(1), Duration::from_secs(1)));
    }
    if o.protocol.is_v5() {
        let mut props = o.properties.connect.clone();
        if props.session_expiry_interval.is_none() {
            props.session_expiry_interval = Some(o.session_expiry());
        }
        // Keep the client's default Topic Alias Maximum unless -D set one.
        if props.topic_alias_maximum.is_none() {
            props.topic_alias_maximum = c.properties_mut().topic_alias_maximum;
        }
        c = c.properties(props);
    }
    match (&o.username, &o.password) {
        (Some(u), p) => c = c.credentials(u.clone(), p.clone().map(Bytes::from)),
        (None, Some(p)) => c = c.password(Bytes::from(p.clone())),
        (None, None) => {}
    }
    if let Some(topic) = &o.will_topic {
        c = c.will(
            topic.clone(),
            Bytes::from(o.will_payload.clone().unwrap_or_default()),
            o.will_qos,
            o.will_retain,
        );
        if o.protocol.is_v5() {
            c = c.will_properties(o.properties.will.clone());
        }
    }
    Ok((c, id))
}

/// `-A`: an IP address, or a name resolved to its first address.
fn bind_address(address: &str) -> Result<IpAddr, String> {
    if let Ok(ip) = address.parse() {
        return Ok(ip);
    }
    (address, 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .map(|a| a.ip())
        .ok_or_else(|| format!("Error: Unable to resolve bind address {address}."))
}

/// Mosquitto's wording of an MQTT 3.x CONNACK refusal.
fn connack_string(code: u8) -> &'static str {
    match code {
        0 => "Connection Accepted.",
        1 => "Connection Refused: unacceptable protocol version.",
        2 => "Connection Refused: identifier rejected.",
        3 => "Connection Refused: broker unavailable.",
        4 => "Connection Refused: bad user name or password.",
        5 => "Connection Refused: not authorised.",
        _ => "Connection Refused: unknown reason.",
    }
}

/// The connected client, its events and its `-d` state.
pub type Connected = (Client, Events, Debug);

/// Connects, printing what Mosquitto prints when that fails; `Err` holds the exit status.
///
/// # Errors
/// The exit status when the connection failed or was refused.
pub async fn connect(o: &Options) -> Result<Connected, i32> {
    let (options, id) = match connect_options(o) {
        Ok(c) => c,
        Err(message) => {
            eprintln!("{message}");
            return Err(FAILURE);
        }
    };
    let mut debug = Debug::new(&id, o.protocol);
    match Client::connect(options).await {
        Ok((client, events)) => Ok((client, events, debug)),
        Err(e) => Err(report_connect_error(o, &mut debug, &e)),
    }
}

/// Prints a failed connection's messages; returns the exit status.
fn report_connect_error(o: &Options, debug: &mut Debug, e: &Error) -> i32 {
    match e {
        Error::Disconnected(DisconnectReason::Refused(ack)) => {
            let code = debug.connack_code(ack.reason);
            if o.debug {
                let mut lines = debug.refused(ack.reason);
                if o.tool == Tool::Sub {
                    lines.push(debug.disconnect_line());
                }
                debug_lines(&lines);
            }
            if o.protocol.is_v5() {
                error(
                    o,
                    format!(
                        "Connection error: {}",
                        ack.reason
                            .description(pigeon_client::proto::PacketType::ConnAck)
                    ),
                );
                if o.tool == Tool::Pub {
                    error(
                        o,
                        "Error: A network protocol error occurred when communicating with the \
                         broker.",
                    );
                }
            } else {
                error(o, format!("Connection error: {}", connack_string(code)));
                if o.tool == Tool::Pub {
                    error(o, "Error: The connection was refused.");
                }
            }
            i32::from(code)
        }
        Error::Io(io) => {
            let text = io.to_string();
            if text.contains("lookup") || text.contains("resolve") {
                error(o, "Unable to connect (Lookup error.).");
            } else {
                error(o, format!("Error: {}", pigeon_broker::log::strerror(io)));
            }
            FAILURE
        }
        Error::Tls(t) => {
            error(o, format!("Error: Problem setting TLS options: {t}."));
            FAILURE
        }
        Error::ConnectTimeout => {
            error(o, "Error: Operation timed out");
            FAILURE
        }
        other => {
            error(o, format!("Error: {other}"));
            FAILURE
        }
    }
}

/// The reason code's name, for warnings about refused requests.
pub fn reason_name(reason: ReasonCode, packet: pigeon_client::proto::PacketType) -> &'static str {
    reason.description(packet)
}

/// Fills `buf` with random bytes (left as they are when the system has no randomness to
/// give: `--random-filter` then prints everything or nothing, never fails).
pub fn random_bytes(buf: &mut [u8]) {
    let _ = getrandom::fill(buf);
}
