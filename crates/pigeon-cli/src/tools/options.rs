//! The command line of `pigeon-pub` and `pigeon-sub`: Mosquitto's flags, its options file
//! (under Pigeon's names, `pigeon_pub` and `pigeon_sub`), and its error messages' meaning.

use std::ffi::OsString;
use std::path::PathBuf;

use bytes::Bytes;
use pigeon_client::proto::properties::{
    ConnectProperties, DisconnectProperties, PayloadFormat, PublishProperties, SubscriptionId,
    WillProperties,
};
use pigeon_client::proto::{MqttString, TopicFilter, TopicName};
use pigeon_client::{Protocol, QoS};

/// Which tool is parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `pigeon-pub`.
    Pub,
    /// `pigeon-sub`.
    Sub,
    /// `pigeon-rr`.
    Rr,
}

impl Tool {
    /// The program's name.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Pub => "pigeon-pub",
            Tool::Sub => "pigeon-sub",
            Tool::Rr => "pigeon-rr",
        }
    }

    /// The options file's name under `$XDG_CONFIG_HOME` or `~/.config`.
    pub fn config_name(self) -> &'static str {
        match self {
            Tool::Pub => "pigeon_pub",
            Tool::Sub => "pigeon_sub",
            Tool::Rr => "pigeon_rr",
        }
    }
}

/// How parsing ended without options to run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// `--help`: the usage on standard output, exit status 1 (as Mosquitto's tools do).
    Help,
    /// A bad command line: `Error: <message>` and a hint to `--help` on standard error.
    Error(String),
    /// Something missing: `Error: <message>` on standard error and the usage on standard
    /// output.
    Usage(String),
}

/// Where the message of `pigeon-pub` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageSource {
    /// `-m`.
    Message(Vec<u8>),
    /// `-f`.
    File(PathBuf),
    /// `-l`: each line of standard input.
    Lines,
    /// `-n`: an empty message.
    Null,
    /// `-s`: all of standard input as one message.
    Stdin,
}

/// TLS options (parsed; the transport is not in pigeon-client yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// `--cafile`.
    pub cafile: Option<PathBuf>,
    /// `--capath`.
    pub capath: Option<PathBuf>,
    /// `--cert`.
    pub cert: Option<PathBuf>,
    /// `--key`.
    pub key: Option<PathBuf>,
    /// `--insecure`.
    pub insecure: bool,
    /// `--tls-version`.
    pub version: Option<String>,
    /// `--ciphers`, `--tls-alpn`, `--tls-engine`, `--keyform`, `--tls-engine-kpass-sha1`,
    /// `--tls-use-os-certs`, `--psk`, `--psk-identity`, `mqtts://`: given at all.
    pub other: Vec<String>,
}

impl TlsOptions {
    /// Whether any TLS option was given.
    pub fn wanted(&self) -> bool {
        self.cafile.is_some()
            || self.capath.is_some()
            || self.cert.is_some()
            || self.key.is_some()
            || self.insecure
            || self.version.is_some()
            || !self.other.is_empty()
    }
}

/// MQTT 5.0 properties given with `-D`, by packet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    /// CONNECT.
    pub connect: ConnectProperties,
    /// The Will.
    pub will: WillProperties,
    /// PUBLISH (`pigeon-pub`).
    pub publish: PublishProperties,
    /// SUBSCRIBE (`pigeon-sub`): subscription identifier and user properties.
    pub subscribe_id: Option<SubscriptionId>,
    /// SUBSCRIBE user properties.
    pub subscribe_user: Vec<(MqttString, MqttString)>,
    /// UNSUBSCRIBE user properties.
    pub unsubscribe_user: Vec<(MqttString, MqttString)>,
    /// DISCONNECT.
    pub disconnect: DisconnectProperties,
    /// Properties for packets pigeon-client does not let an application decorate (PUBACK,
    /// PUBREC, PUBREL, PUBCOMP, AUTH): accepted and not sent.
    pub ignored: Vec<String>,
    /// Whether any `-D` was given.
    pub any: bool,
}

/// Everything the command line (and the options file) said.
#[derive(Debug, Clone)]
pub struct Options {
    /// Which tool.
    pub tool: Tool,
    /// `-h`.
    pub host: String,
    /// `-p`.
    pub port: Option<u16>,
    /// `--unix`.
    pub unix: Option<PathBuf>,
    /// `-L ws://` or `wss://`: MQTT over WebSockets (a Pigeon extension).
    pub websockets: bool,
    /// `-A`.
    pub bind_address: Option<String>,
    /// `-t` (and the topic of `-L`).
    pub topics: Vec<String>,
    /// `-i`.
    pub id: Option<String>,
    /// `-I`.
    pub id_prefix: Option<String>,
    /// `-k`.
    pub keep_alive: u16,
    /// `-u`.
    pub username: Option<String>,
    /// `-P`.
    pub password: Option<String>,
    /// `-d`.
    pub debug: bool,
    /// `-V` (or 5 because of `-D`).
    pub protocol: Protocol,
    /// `-c`.
    pub clean: bool,
    /// `-x`.
    pub session_expiry: Option<u32>,
    /// `-q`.
    pub qos: QoS,
    /// `--quiet`.
    pub quiet: bool,
    /// `--will-topic`.
    pub will_topic: Option<String>,
    /// `--will-payload`.
    pub will_payload: Option<Vec<u8>>,
    /// `--will-qos`.
    pub will_qos: QoS,
    /// `--will-retain`.
    pub will_retain: bool,
    /// `-M`.
    pub max_inflight: Option<u16>,
    /// `-D`.
    pub properties: Properties,
    /// The TLS flags.
    pub tls: TlsOptions,
    /// `--proxy`.
    pub proxy: Option<String>,
    /// `-S`.
    pub srv: bool,

    // pigeon-pub
    /// `-m`, `-f`, `-l`, `-n`, `-s`.
    pub message: Option<MessageSource>,
    /// `-r`.
    pub retain: bool,
    /// `--repeat`.
    pub repeat: u32,
    /// `--repeat-delay`, in seconds.
    pub repeat_delay: f64,

    // pigeon-sub
    /// `-C`.
    pub count: Option<u32>,
    /// `-E`.
    pub exit_after_subscribe: bool,
    /// `-F`.
    pub format: Option<String>,
    /// `-N`.
    pub no_eol: bool,
    /// `-R`.
    pub no_retained: bool,
    /// `--retained-only`.
    pub retained_only: bool,
    /// `--remove-retained`.
    pub remove_retained: bool,
    /// `--retain-as-published`.
    pub retain_as_published: bool,
    /// `-T`.
    pub filter_out: Vec<String>,
    /// `-U`.
    pub unsubscribe: Vec<String>,
    /// `-v`.
    pub verbose: bool,
    /// `-W`, in seconds.
    pub timeout: Option<u32>,
    /// `--pretty`.
    pub pretty: bool,
    /// `--random-filter`, a percentage.
    pub random_filter: Option<f64>,

    // pigeon-rr
    /// `-e`.
    pub response_topic: Option<String>,
}

impl Options {
    fn new(tool: Tool) -> Self {
        Options {
            tool,
            host: "localhost".to_owned(),
            port: None,
            unix: None,
            websockets: false,
            bind_address: None,
            topics: Vec::new(),
            id: None,
            id_prefix: None,
            keep_alive: 60,
            username: None,
            password: None,
            debug: false,
            // mosquitto_rr speaks MQTT 5.0 unless told otherwise.
            protocol: if tool == Tool::Rr {
                Protocol::V5
            } else {
                Protocol::V311
            },
            clean: true,
            session_expiry: None,
            qos: QoS::AtMostOnce,
            quiet: false,
            will_topic: None,
            will_payload: None,
            will_qos: QoS::AtMostOnce,
            will_retain: false,
            max_inflight: None,
            properties: Properties::default(),
            tls: TlsOptions::default(),
            proxy: None,
            srv: false,
            message: None,
            retain: false,
            repeat: 1,
            repeat_delay: 0.0,
            count: None,
            exit_after_subscribe: false,
            format: None,
            no_eol: false,
            no_retained: false,
            retained_only: false,
            remove_retained: false,
            retain_as_published: false,
            filter_out: Vec::new(),
            unsubscribe: Vec::new(),
            verbose: false,
            timeout: None,
            pretty: false,
            random_filter: None,
            response_topic: None,
        }
    }

    /// The port: `-p`, else 1883 (8883 with TLS).
    pub fn port(&self) -> u16 {
        self.port
            .unwrap_or(if self.tls.wanted() { 8883 } else { 1883 })
    }

    /// The session expiry interval to send (MQTT 5.0): `-x`, else never with `-c`, else 0.
    pub fn session_expiry(&self) -> u32 {
        self.session_expiry
            .unwrap_or(if self.clean { 0 } else { u32::MAX })
    }
}

/// The options file's lines as arguments: `$XDG_CONFIG_HOME/<name>`, else
/// `$HOME/.config/<name>`; one option (and its values) per line, `#` starting a comment line.
pub fn config_file_args(tool: Tool) -> Vec<OsString> {
    let path = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir).join(tool.config_name()),
        None => match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(".config").join(tool.config_name()),
            None => return Vec::new(),
        },
    };
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    config_text_args(&text)
}

/// The arguments of an options file's text.
pub fn config_text_args(text: &str) -> Vec<OsString> {
    let mut args = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with('#') {
            continue;
        }
        args.extend(line.split_whitespace().map(OsString::from));
    }
    args
}

/// A CONNECT property, a Will property, ...: the type of a `-D` value.
#[derive(Clone, Copy)]
enum Kind {
    Byte,
    Short,
    Int,
    VarInt,
    Str,
    Binary,
    Pair,
}

fn property_kind(name: &str) -> Option<Kind> {
    Some(match name {
        "payload-format-indicator"
        | "request-problem-information"
        | "request-response-information" => Kind::Byte,
        "receive-maximum" | "topic-alias-maximum" | "topic-alias" => Kind::Short,
        "message-expiry-interval"
        | "session-expiry-interval"
        | "will-delay-interval"
        | "maximum-packet-size" => Kind::Int,
        "subscription-identifier" => Kind::VarInt,
        "content-type" | "response-topic" | "authentication-method" | "reason-string" => Kind::Str,
        "correlation-data" | "authentication-data" => Kind::Binary,
        "user-property" => Kind::Pair,
        _ => return None,
    })
}

/// Whether `property` may go with `command`.
fn allowed(command: &str, property: &str) -> bool {
    match command {
        "connect" => matches!(
            property,
            "authentication-data"
                | "authentication-method"
                | "maximum-packet-size"
                | "receive-maximum"
                | "request-problem-information"
                | "request-response-information"
                | "session-expiry-interval"
                | "topic-alias-maximum"
                | "user-property"
        ),
        "publish" => matches!(
            property,
            "content-type"
                | "correlation-data"
                | "message-expiry-interval"
                | "payload-format-indicator"
                | "response-topic"
                | "topic-alias"
                | "user-property"
        ),
        "will" => matches!(
            property,
            "content-type"
                | "correlation-data"
                | "message-expiry-interval"
                | "payload-format-indicator"
                | "response-topic"
                | "user-property"
                | "will-delay-interval"
        ),
        "puback" | "pubrec" | "pubrel" | "pubcomp" | "unsubscribe" => {
            matches!(property, "reason-string" | "user-property")
        }
        "subscribe" => matches!(property, "subscription-identifier" | "user-property"),
        "disconnect" => matches!(
            property,
            "session-expiry-interval" | "reason-string" | "user-property"
        ),
        "auth" => matches!(
            property,
            "authentication-method" | "authentication-data" | "reason-string" | "user-property"
        ),
        _ => false,
    }
}

/// The packets each tool may decorate with `-D`.
fn commands(tool: Tool) -> &'static [&'static str] {
    match tool {
        Tool::Pub => &["connect", "publish", "pubrel", "disconnect", "auth", "will"],
        Tool::Sub => &[
            "connect",
            "puback",
            "pubrec",
            "pubcomp",
            "subscribe",
            "unsubscribe",
            "disconnect",
            "auth",
            "will",
        ],
        Tool::Rr => &[
            "connect",
            "publish",
            "puback",
            "pubrec",
            "pubrel",
            "pubcomp",
            "subscribe",
            "unsubscribe",
            "disconnect",
            "auth",
            "will",
        ],
    }
}

/// A typed `-D` value.
enum Value {
    Num(u32),
    Str(MqttString),
    Bin(Bytes),
    Pair(MqttString, MqttString),
}

fn invalid_value(property: &str) -> String {
    format!("Invalid value for property '{property}' in --property argument.")
}

fn property_value(kind: Kind, property: &str, a: &str, b: Option<&str>) -> Result<Value, String> {
    let number = |max: u64| -> Result<u32, String> {
        a.parse::<u64>()
            .ok()
            .filter(|v| *v <= max)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| invalid_value(property))
    };
    let string = |s: &str| MqttString::try_from(s).map_err(|_| invalid_value(property));
    Ok(match kind {
        Kind::Byte => Value::Num(number(0xFF)?),
        Kind::Short => Value::Num(number(0xFFFF)?),
        Kind::Int => Value::Num(number(0xFFFF_FFFF)?),
        Kind::VarInt => Value::Num(number(268_435_455)?),
        Kind::Str => Value::Str(string(a)?),
        Kind::Binary => Value::Bin(Bytes::copy_from_slice(a.as_bytes())),
        Kind::Pair => Value::Pair(string(a)?, string(b.unwrap_or_default())?),
    })
}

/// Stores one `-D` property.
fn set_property(
    props: &mut Properties,
    command: &str,
    property: &str,
    value: Value,
) -> Result<(), String> {
    let bad = || invalid_value(property);
    let num = |v: &Value| match v {
        Value::Num(n) => *n,
        _ => 0,
    };
    let short = |v: &Value| u16::try_from(num(v)).unwrap_or(u16::MAX);
    let flag = |v: &Value| -> Result<bool, String> {
        match num(v) {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(bad()),
        }
    };
    let format = |v: &Value| -> Result<PayloadFormat, String> {
        match num(v) {
            0 => Ok(PayloadFormat::Unspecified),
            1 => Ok(PayloadFormat::Utf8),
            _ => Err(bad()),
        }
    };
    let topic = |v: &Value| -> Result<TopicName, String> {
        match v {
            Value::Str(s) => TopicName::try_from(s.as_str()).map_err(|_| bad()),
            _ => Err(bad()),
        }
    };
    let string = |v: Value| match v {
        Value::Str(s) => s,
        _ => MqttString::new(),
    };
    let binary = |v: Value| match v {
        Value::Bin(b) => b,
        _ => Bytes::new(),
    };
    if let Value::Pair(k, v) = value {
        let pair = (k, v);
        match command {
            "connect" => props.connect.user_properties.push(pair),
            "will" => props.will.user_properties.push(pair),
            "publish" => props.publish.user_properties.push(pair),
            "subscribe" => props.subscribe_user.push(pair),
            "unsubscribe" => props.unsubscribe_user.push(pair),
            "disconnect" => props.disconnect.user_properties.push(pair),
            other => props.ignored.push(format!("{other} {property}")),
        }
        return Ok(());
    }
    match (command, property) {
        ("connect", "authentication-data") => {
            props.connect.authentication_data = Some(binary(value));
        }
        ("connect", "authentication-method") => {
            props.connect.authentication_method = Some(string(value));
        }
        ("connect", "maximum-packet-size") => {
            props.connect.maximum_packet_size =
                Some(std::num::NonZeroU32::new(num(&value)).ok_or_else(bad)?);
        }
        ("connect", "receive-maximum") => {
            props.connect.receive_maximum =
                Some(std::num::NonZeroU16::new(short(&value)).ok_or_else(bad)?);
        }
        ("connect", "request-problem-information") => {
            props.connect.request_problem_information = Some(flag(&value)?);
        }
        ("connect", "request-response-information") => {
            props.connect.request_response_information = Some(flag(&value)?);
        }
        ("connect", "session-expiry-interval") => {
            props.connect.session_expiry_interval = Some(num(&value));
        }
        ("connect", "topic-alias-maximum") => {
            props.connect.topic_alias_maximum = Some(short(&value));
        }
        ("publish" | "will", "content-type") => {
            let s = Some(string(value));
            if command == "will" {
                props.will.content_type = s;
            } else {
                props.publish.content_type = s;
            }
        }
        ("publish" | "will", "correlation-data") => {
            let b = Some(binary(value));
            if command == "will" {
                props.will.correlation_data = b;
            } else {
                props.publish.correlation_data = b;
            }
        }
        ("publish" | "will", "message-expiry-interval") => {
            if command == "will" {
                props.will.message_expiry_interval = Some(num(&value));
            } else {
                props.publish.message_expiry_interval = Some(num(&value));
            }
        }
        ("publish" | "will", "payload-format-indicator") => {
            let f = Some(format(&value)?);
            if command == "will" {
                props.will.payload_format_indicator = f;
            } else {
                props.publish.payload_format_indicator = f;
            }
        }
        ("publish" | "will", "response-topic") => {
            let t = Some(topic(&value)?);
            if command == "will" {
                props.will.response_topic = t;
            } else {
                props.publish.response_topic = t;
            }
        }
        ("publish", "topic-alias") => {
            // pigeon-client does not send Topic Aliases: accepted and left out.
            props.ignored.push("publish topic-alias".to_owned());
        }
        ("will", "will-delay-interval") => props.will.will_delay_interval = Some(num(&value)),
        ("subscribe", "subscription-identifier") => {
            props.subscribe_id = Some(SubscriptionId::new(num(&value)).ok_or_else(bad)?);
        }
        ("disconnect", "session-expiry-interval") => {
            props.disconnect.session_expiry_interval = Some(num(&value));
        }
        ("disconnect", "reason-string") => props.disconnect.reason_string = Some(string(value)),
        (other, _) => props.ignored.push(format!("{other} {property}")),
    }
    Ok(())
}

/// The arguments, one at a time, with the values flags take.
struct Args {
    args: Vec<String>,
    next: usize,
}

impl Args {
    fn value(&mut self) -> Option<String> {
        let v = self.args.get(self.next).cloned();
        if v.is_some() {
            self.next += 1;
        }
        v
    }
}

fn parse_qos(v: &str) -> Result<QoS, String> {
    v.parse::<u8>()
        .ok()
        .and_then(QoS::from_u8)
        .ok_or_else(|| format!("Invalid QoS given: {v}"))
}

/// Parses `-L mqtt://[user[:pass]@]host[:port]/topic` (and `mqtts://`, `ws://`, `wss://`).
fn parse_url(o: &mut Options, url: &str) -> Result<(), String> {
    let schemes = [
        ("mqtt://", false, false),
        ("mqtts://", true, false),
        ("ws://", false, true),
        ("wss://", true, true),
    ];
    let Some((rest, tls, websockets)) = schemes
        .iter()
        .find_map(|&(scheme, tls, ws)| url.strip_prefix(scheme).map(|r| (r, tls, ws)))
    else {
        return Err("unsupported URL scheme.".to_owned());
    };
    o.websockets = websockets;
    let Some((authority, topic)) = rest.split_once('/') else {
        return Err("Invalid URL for -L argument specified - topic missing.".to_owned());
    };
    let hostport = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => {
            match userinfo.split_once(':') {
                Some((u, p)) => {
                    o.username = Some(u.to_owned());
                    o.password = Some(p.to_owned());
                }
                None => o.username = Some(userinfo.to_owned()),
            }
            hostport
        }
        None => authority,
    };
    match hostport.rsplit_once(':') {
        Some((host, port)) => {
            o.host = host.to_owned();
            o.port = Some(
                port.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("Invalid port given: {port}"))?,
            );
        }
        None => {
            o.host = hostport.to_owned();
            o.port = Some(match (tls, websockets) {
                (false, false) => 1883,
                (true, false) => 8883,
                (false, true) => 80,
                (true, true) => 443,
            });
        }
    }
    if tls {
        o.tls.other.push("mqtts://".to_owned());
    }
    o.topics.push(topic.to_owned());
    Ok(())
}

/// Parses the options file's arguments followed by the command line's.
///
/// # Errors
/// [`Stop`] when the tool is not to run: `--help`, or a bad or incomplete command line.
pub fn parse(tool: Tool, args: Vec<OsString>) -> Result<Options, Stop> {
    let args = args
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut args = Args { args, next: 0 };
    let mut o = Options::new(tool);
    let mut protocol_given = false;
    let is_pub = tool == Tool::Pub;
    let is_sub = tool == Tool::Sub;
    let is_rr = tool == Tool::Rr;
    // `-x` is checked once the protocol is known.
    let mut expiry: Option<String> = None;
    while let Some(arg) = args.value() {
        // The value a flag needs, or the error naming what is missing.
        macro_rules! need {
            ($what:literal) => {
                match args.value() {
                    Some(v) => v,
                    None => {
                        return Err(Stop::Error(format!(
                            "{arg} argument given but no {} specified.",
                            $what
                        )));
                    }
                }
            };
        }
        let set_message = |o: &mut Options, m: MessageSource| -> Result<(), Stop> {
            if o.message.is_some() {
                return Err(Stop::Error(
                    "Only one type of message can be sent at once.".to_owned(),
                ));
            }
            o.message = Some(m);
            Ok(())
        };
        match arg.as_str() {
            "-A" => o.bind_address = Some(need!("address")),
            "-c" | "--disable-clean-session" => o.clean = false,
            "-d" | "--debug" => o.debug = true,
            "-D" | "--property" => {
                let command = need!("command").to_ascii_lowercase();
                let property = need!("property name");
                if !commands(tool).contains(&command.as_str()) {
                    return Err(Stop::Error(
                        "Invalid command given in --property argument.".to_owned(),
                    ));
                }
                let Some(kind) = property_kind(&property) else {
                    return Err(Stop::Error(
                        "Invalid property name given in --property argument.".to_owned(),
                    ));
                };
                if !allowed(&command, &property) {
                    return Err(Stop::Error(format!(
                        "{property} property not allowed for {command} in --property argument."
                    )));
                }
                let a = need!("property value");
                let b = match kind {
                    Kind::Pair => Some(need!("property value")),
                    _ => None,
                };
                let value =
                    property_value(kind, &property, &a, b.as_deref()).map_err(Stop::Error)?;
                set_property(&mut o.properties, &command, &property, value).map_err(Stop::Error)?;
                o.properties.any = true;
            }
            "-h" | "--host" => o.host = need!("host"),
            "-i" | "--id" => o.id = Some(need!("id")),
            "-I" | "--id-prefix" => o.id_prefix = Some(need!("id prefix")),
            "-k" | "--keepalive" => {
                let v = need!("keepalive");
                o.keep_alive = v
                    .parse::<u32>()
                    .ok()
                    .filter(|k| *k == 0 || (5..=65535).contains(k))
                    .and_then(|k| u16::try_from(k).ok())
                    .ok_or_else(|| {
                        Stop::Error(
                            "Invalid keepalive given, it must be between 5 and 65535 inclusive."
                                .to_owned(),
                        )
                    })?;
            }
            "-L" | "--url" => {
                let url = need!("URL");
                parse_url(&mut o, &url).map_err(Stop::Error)?;
            }
            "-M" => {
                let v = need!("max_inflight");
                o.max_inflight =
                    Some(v.parse::<u16>().ok().filter(|m| *m > 0).ok_or_else(|| {
                        Stop::Error("Maximum inflight messages must be greater than 0.".into())
                    })?);
            }
            "--nodelay" => {} // pigeon-client always disables Nagle's algorithm.
            "-p" | "--port" => {
                let v = need!("port");
                o.port = Some(
                    v.parse::<u16>()
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or_else(|| Stop::Error(format!("Invalid port given: {v}")))?,
                );
            }
            "-P" | "--pw" => o.password = Some(need!("password")),
            "-q" | "--qos" => o.qos = parse_qos(&need!("QoS")).map_err(Stop::Error)?,
            "--quiet" => o.quiet = true,
            "-S" => o.srv = true,
            "-t" | "--topic" => o.topics.push(need!("topic")),
            "-u" | "--username" => o.username = Some(need!("username")),
            "--unix" => o.unix = Some(PathBuf::from(need!("unix socket path"))),
            "-V" | "--protocol-version" => {
                let v = need!("protocol version");
                o.protocol = match v.as_str() {
                    "mqttv31" | "31" => Protocol::V31,
                    "mqttv311" | "311" => Protocol::V311,
                    "mqttv5" | "5" => Protocol::V5,
                    _ => {
                        return Err(Stop::Error(
                            "Invalid protocol version argument given.".to_owned(),
                        ));
                    }
                };
                protocol_given = true;
            }
            "-x" => expiry = Some(need!("session expiry interval")),
            "--will-payload" => o.will_payload = Some(need!("will payload").into_bytes()),
            "--will-qos" => o.will_qos = parse_qos(&need!("will QoS")).map_err(Stop::Error)?,
            "--will-retain" => o.will_retain = true,
            "--will-topic" => o.will_topic = Some(need!("will topic")),
            "--cafile" => o.tls.cafile = Some(need!("certificate file").into()),
            "--capath" => o.tls.capath = Some(need!("certificate directory").into()),
            "--cert" => o.tls.cert = Some(need!("certificate file").into()),
            "--key" => o.tls.key = Some(need!("key file").into()),
            "--insecure" => o.tls.insecure = true,
            "--tls-version" => o.tls.version = Some(need!("TLS version")),
            "--ciphers"
            | "--tls-alpn"
            | "--tls-engine"
            | "--keyform"
            | "--tls-engine-kpass-sha1"
            | "--psk"
            | "--psk-identity" => {
                let _ = need!("value");
                o.tls.other.push(arg.clone());
            }
            "--tls-use-os-certs" => o.tls.other.push(arg.clone()),
            "--proxy" => o.proxy = Some(need!("proxy URL")),
            "--help" => return Err(Stop::Help),

            // pigeon-pub
            "-f" | "--file" if is_pub || is_rr => {
                let f = need!("file");
                set_message(&mut o, MessageSource::File(f.into()))?;
            }
            "-l" | "--stdin-line" if is_pub => set_message(&mut o, MessageSource::Lines)?,
            "-m" | "--message" if is_pub || is_rr => {
                let m = need!("message");
                set_message(&mut o, MessageSource::Message(m.into_bytes()))?;
            }
            "-n" | "--null-message" if is_pub || is_rr => set_message(&mut o, MessageSource::Null)?,
            "-s" | "--stdin-file" if is_pub || is_rr => set_message(&mut o, MessageSource::Stdin)?,
            "-r" | "--retain" if is_pub => o.retain = true,
            "--repeat" if is_pub => {
                let v = need!("count");
                o.repeat = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| Stop::Error("--repeat argument must be >0.".to_owned()))?;
            }
            "--repeat-delay" if is_pub => {
                let v = need!("time");
                o.repeat_delay = v
                    .parse::<f64>()
                    .ok()
                    .filter(|d| d.is_finite() && *d >= 0.0)
                    .ok_or_else(|| {
                        Stop::Error("--repeat-delay argument must be >=0.0.".to_owned())
                    })?;
            }

            // pigeon-sub
            "-C" if is_sub => {
                let v = need!("count");
                o.count = Some(
                    v.parse::<u32>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| Stop::Error(format!("Invalid message count \"{v}\".")))?,
                );
            }
            "-E" if is_sub => o.exit_after_subscribe = true,
            "-F" if is_sub || is_rr => o.format = Some(need!("format")),
            "-N" if is_sub || is_rr => o.no_eol = true,
            "-R" if is_sub || is_rr => o.no_retained = true,
            "--retained-only" if is_sub => o.retained_only = true,
            "--remove-retained" if is_sub => o.remove_retained = true,
            "--retain-as-published" if is_sub || is_rr => o.retain_as_published = true,
            "-T" | "--filter-out" if is_sub => o.filter_out.push(need!("topic filter")),
            "-U" | "--unsubscribe" if is_sub => o.unsubscribe.push(need!("unsubscribe topic")),
            "-v" | "--verbose" if is_sub || is_rr => o.verbose = true,
            "-W" if is_sub || is_rr => {
                let v = need!("timeout");
                o.timeout = Some(
                    v.parse::<u32>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| Stop::Error(format!("Invalid timeout \"{v}\".")))?,
                );
            }
            "--pretty" if is_sub || is_rr => o.pretty = true,
            "--random-filter" if is_sub => {
                let v = need!("chance");
                o.random_filter = Some(
                    v.parse::<f64>()
                        .ok()
                        .filter(|c| (0.1..=100.0).contains(c))
                        .ok_or_else(|| {
                            Stop::Error(format!(
                                "Invalid --random-filter chance \"{v}\", it must be between 0.1 \
                                 and 100.0."
                            ))
                        })?,
                );
            }

            // pigeon-rr
            "-e" | "--response-topic" if is_rr => {
                o.response_topic = Some(need!("response topic"));
            }
            other => return Err(Stop::Error(format!("Unknown option '{other}'."))),
        }
    }

    if o.properties.any && !protocol_given {
        o.protocol = Protocol::V5;
    }
    if let Some(x) = expiry {
        o.session_expiry = Some(match x.as_str() {
            "-1" | "∞" => u32::MAX,
            v => v
                .parse::<u32>()
                .map_err(|_| Stop::Error(format!("Invalid session expiry interval \"{v}\".")))?,
        });
    }
    check(&mut o)?;
    Ok(o)
}

/// The checks that need the whole command line.
fn check(o: &mut Options) -> Result<(), Stop> {
    if o.id.is_some() && o.id_prefix.is_some() {
        return Err(Stop::Error(
            "-i and -I argument cannot be used together.".to_owned(),
        ));
    }
    if let Some(prefix) = &o.id_prefix {
        o.id = Some(format!("{prefix}{}", std::process::id()));
    }
    let no_expiry = o.protocol == Protocol::V5 && o.session_expiry() == u32::MAX;
    if (!o.clean || no_expiry) && o.id.as_deref().is_none_or(str::is_empty) {
        return Err(Stop::Error(if o.clean {
            "You must provide a client id if you are using an infinite session expiry interval."
                .to_owned()
        } else {
            "You must provide a client id if you are using the -c option.".to_owned()
        }));
    }
    if o.will_payload.is_some() && o.will_topic.is_none() {
        return Err(Stop::Error(
            "Will payload given, but no will topic given.".to_owned(),
        ));
    }
    if o.will_retain && o.will_topic.is_none() {
        return Err(Stop::Error(
            "Will retain given, but no will topic given.".to_owned(),
        ));
    }
    if let Some(t) = &o.will_topic
        && TopicName::try_from(t.as_str()).is_err()
    {
        return Err(Stop::Error(format!(
            "Invalid will topic '{t}', does it contain '+' or '#'?"
        )));
    }
    if o.password.is_some() && o.username.is_none() && o.protocol != Protocol::V5 {
        return Err(Stop::Error(
            "Problem setting username and/or password.".to_owned(),
        ));
    }
    match o.tool {
        Tool::Pub => {
            if o.topics.is_empty() || o.message.is_none() {
                return Err(Stop::Usage(
                    "Both topic and message must be supplied.".to_owned(),
                ));
            }
            // Like Mosquitto, the last -t given is the topic.
            if let Some(t) = o.topics.last()
                && TopicName::try_from(t.as_str()).is_err()
            {
                return Err(Stop::Error(format!(
                    "Invalid publish topic '{t}', does it contain '+' or '#'?"
                )));
            }
        }
        Tool::Rr => {
            if o.topics.is_empty() || o.message.is_none() || o.response_topic.is_none() {
                return Err(Stop::Error(
                    "All of topic, message, and response topic must be supplied.".to_owned(),
                ));
            }
            if let Some(t) = o.topics.last()
                && TopicName::try_from(t.as_str()).is_err()
            {
                return Err(Stop::Error(format!(
                    "Invalid publish topic '{t}', does it contain '+' or '#'?"
                )));
            }
            if let Some(t) = &o.response_topic
                && TopicName::try_from(t.as_str()).is_err()
            {
                return Err(Stop::Error(format!(
                    "Invalid response topic '{t}', does it contain '+' or '#'?"
                )));
            }
        }
        Tool::Sub => {
            if o.topics.is_empty() {
                return Err(Stop::Usage(
                    "You must specify a topic to subscribe to.".to_owned(),
                ));
            }
            if o.no_retained && o.retained_only {
                return Err(Stop::Error(
                    "Combining '-R' and '--retained-only' makes no sense.".to_owned(),
                ));
            }
            for (what, list) in [
                ("subscription", &o.topics),
                ("filter", &o.filter_out),
                ("unsubscribe", &o.unsubscribe),
            ] {
                for t in list {
                    if TopicFilter::try_from(t.as_str()).is_err() {
                        return Err(Stop::Error(format!(
                            "Invalid {what} topic '{t}', are all '+' and '#' wildcards \
                             correct?"
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<OsString> {
        s.iter().map(OsString::from).collect()
    }

    #[test]
    fn url_and_flags() {
        let o = parse(
            Tool::Pub,
            args(&["-L", "mqtt://u:p@example:1884/a/b", "-m", "x", "-q", "2"]),
        )
        .unwrap();
        assert_eq!(
            (o.host.as_str(), o.port(), o.topics.last().unwrap().as_str()),
            ("example", 1884, "a/b")
        );
        assert_eq!(o.username.as_deref(), Some("u"));
        assert_eq!(o.qos, QoS::ExactlyOnce);
        assert!(!o.websockets);
    }

    #[test]
    fn websocket_urls() {
        let url = |u: &str| parse(Tool::Sub, args(&["-L", u])).unwrap();
        let o = url("ws://localhost:1884/lab/ws");
        assert!(o.websockets && !o.tls.wanted());
        assert_eq!((o.host.as_str(), o.port()), ("localhost", 1884));
        assert_eq!(o.topics, ["lab/ws"]);
        let o = url("wss://broker/t");
        assert!(o.websockets && o.tls.wanted());
        assert_eq!(o.port(), 443);
        assert_eq!(url("ws://broker/t").port(), 80);
        assert!(parse(Tool::Sub, args(&["-L", "http://broker/t"])).is_err());
    }

    #[test]
    fn errors() {
        let e = |a: &[&str]| parse(Tool::Pub, args(a)).unwrap_err();
        assert_eq!(
            e(&["-t", "a", "-m", "x", "-q", "3"]),
            Stop::Error("Invalid QoS given: 3".into())
        );
        assert_eq!(
            e(&["-t", "a", "-m", "x", "-l"]),
            Stop::Error("Only one type of message can be sent at once.".into())
        );
        assert!(matches!(e(&["-t", "a"]), Stop::Usage(_)));
        assert_eq!(e(&["--help"]), Stop::Help);
        assert_eq!(
            e(&["--bogus"]),
            Stop::Error("Unknown option '--bogus'.".into())
        );
        assert!(matches!(
            parse(Tool::Sub, args(&["-t", "a", "-m", "x"])),
            Err(Stop::Error(_))
        ));
    }

    #[test]
    fn property_forces_v5() {
        let o = parse(
            Tool::Sub,
            args(&["-t", "a", "-D", "connect", "user-property", "k", "v"]),
        )
        .unwrap();
        assert_eq!(o.protocol, Protocol::V5);
        assert_eq!(o.properties.connect.user_properties.len(), 1);
    }

    #[test]
    fn config_text() {
        assert_eq!(
            config_text_args("# comment\n-h example\n\n-q 1\n"),
            args(&["-h", "example", "-q", "1"])
        );
    }
}
