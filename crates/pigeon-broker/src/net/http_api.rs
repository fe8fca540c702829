//! The HTTP listener (`http_listener PORT [ADDRESS]`, a Pigeon directive): Prometheus
//! metrics at `/metrics`, a small JSON API under `/api/`, and the dashboard at `/`. Off unless
//! configured; HTTPS with `http_certfile`, `http_keyfile` and the other `http_` TLS
//! directives (the MQTT listeners' TLS directives, loaded by `tls.rs` in the same way). The
//! API is documented in `docs/http.md`.
//!
//! Access follows the MQTT listeners' security, so that a dashboard login is an MQTT login:
//! when some listener lets anonymous clients in, so does this one; otherwise `/metrics` and
//! `/api/` need HTTP Basic credentials that a listener's password file accepts (401
//! otherwise). The retained messages the API lists are those the user's ACL lets it read. The
//! dashboard's files need no login: the page asks for one and uses it both for the API and
//! for its own MQTT-over-WebSocket connection, where the broker checks it as for any client.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::BytesMut;
use tokio::net::{TcpListener, TcpStream};

use super::conn::{ReadSide, WriteSide};
use super::http::{HeadError, Request, Response, percent_decode, read_head};
use crate::auth::ClientAccess;
use crate::broker::inspect::ClientView;
use crate::clock;
use crate::server::{ServerSettings, Shared};
use crate::sys::Snapshot;
use crate::tls::ListenerTls;

/// The longest request head read.
const HEAD_LIMIT: usize = 8192;
/// The most retained messages one `/api/retained` answer lists.
const RETAINED_LIMIT: usize = 10_000;
/// Payload bytes shown per retained message.
const PREVIEW: usize = 256;

/// The dashboard, built into the binary.
const DASHBOARD_HTML: &str = include_str!("../../assets/dashboard/index.html");
const DASHBOARD_JS: &str = include_str!("../../assets/dashboard/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("../../assets/dashboard/dashboard.css");

/// The HTTP listener's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// The address to bind.
    pub addr: SocketAddr,
    /// `http_dashboard`: whether `/` serves the dashboard.
    pub dashboard: bool,
    /// `http_certfile`, `http_keyfile`...: HTTPS with these, read at start and on each reload;
    /// `None` for plain HTTP.
    pub tls: Option<Arc<ListenerTls>>,
}

/// Accepts HTTP connections for ever, each served by its own task.
pub async fn run_http(socket: TcpListener, shared: Arc<Shared>) {
    let started = clock::now();
    loop {
        let Ok((stream, _)) = socket.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        tokio::spawn(serve(Arc::clone(&shared), stream, started));
    }
}

/// How long a client has to complete the TLS handshake and send its request head.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

async fn serve(shared: Arc<Shared>, stream: TcpStream, started: std::time::Instant) {
    // The settings in force when the connection came: a reload puts renewed certificates in
    // force for the connections that follow.
    let tls = shared
        .settings
        .load()
        .http
        .as_ref()
        .and_then(|h| h.tls.clone());
    let Some(tls) = tls else {
        let (reader, writer) = stream.into_split();
        return serve_io(shared, reader, writer, started).await;
    };
    let peer = stream.peer_addr().ok();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&tls.config));
    match tokio::time::timeout(PATIENCE, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            let (reader, writer) = tokio::io::split(stream);
            Box::pin(serve_io(shared, reader, writer, started)).await;
        }
        Ok(Err(error)) => {
            if let Some(peer) = peer {
                shared.log.info(format_args!(
                    "HTTP listener: TLS handshake with {}:{} failed: {}.",
                    peer.ip(),
                    peer.port(),
                    crate::tls::describe_error(&error)
                ));
            }
        }
        Err(_) => {}
    }
}

async fn serve_io<R: ReadSide, W: WriteSide>(
    shared: Arc<Shared>,
    mut reader: R,
    mut writer: W,
    started: std::time::Instant,
) {
    let mut buf = BytesMut::new();
    let head = tokio::time::timeout(PATIENCE, read_head(&mut reader, &mut buf, HEAD_LIMIT)).await;
    let request = match head {
        Ok(Ok(request)) => request,
        Ok(Err(HeadError::TooLarge)) => {
            Response::text(431, "Request Header Fields Too Large")
                .send_and_linger(&mut reader, &mut writer)
                .await;
            return;
        }
        Ok(Err(HeadError::Malformed(_))) => {
            Response::text(400, "Bad Request")
                .send_and_linger(&mut reader, &mut writer)
                .await;
            return;
        }
        Ok(Err(HeadError::Closed)) | Err(_) => return,
    };
    let settings = Arc::clone(&shared.settings.load());
    let response = respond(&shared, &settings, &request, started);
    match request.method.as_str() {
        "GET" | "HEAD" => {
            let _ = response.send(&mut writer, request.method == "HEAD").await;
        }
        // A body may follow: read it away so that closing does not reset the connection
        // before the client reads the 405.
        _ => response.send_and_linger(&mut reader, &mut writer).await,
    }
}

/// The answer to `request`.
fn respond(
    shared: &Shared,
    settings: &ServerSettings,
    request: &Request,
    started: std::time::Instant,
) -> Response {
    if request.method != "GET" && request.method != "HEAD" {
        return Response::text(405, "Method Not Allowed").with("Allow", "GET, HEAD");
    }
    let dashboard = settings.http.as_ref().is_some_and(|h| h.dashboard);
    let path = request.path.as_str();
    match path {
        "/" | "/index.html" if dashboard => {
            return Response::new(200, "text/html; charset=utf-8", DASHBOARD_HTML)
                .with("Cache-Control", "no-cache");
        }
        "/dashboard.js" if dashboard => {
            return Response::new(200, "text/javascript; charset=utf-8", DASHBOARD_JS)
                .with("Cache-Control", "no-cache");
        }
        "/dashboard.css" if dashboard => {
            return Response::new(200, "text/css; charset=utf-8", DASHBOARD_CSS)
                .with("Cache-Control", "no-cache");
        }
        "/metrics" => {}
        p if p.starts_with("/api/") => {}
        _ => return Response::text(404, "Not Found"),
    }
    let user = match authenticate(settings, request) {
        Ok(user) => user,
        Err(response) => return response,
    };
    let broker = &shared.broker;
    let json = |body: String| {
        Response::new(200, "application/json", body).with("Cache-Control", "no-store")
    };
    match path {
        "/metrics" => Response::new(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics(shared, started),
        ),
        "/api/stats" => json(stats_json(shared, started)),
        "/api/clients" => {
            // Counted from the index, read just before the clients (a client that connects
            // in between is listed with none).
            let mut subscriptions: HashMap<String, usize> = HashMap::new();
            for s in broker.subscriptions_view() {
                *subscriptions.entry(s.client_id).or_default() += 1;
            }
            json(clients_json(&broker.clients_view(), &subscriptions))
        }
        "/api/subscriptions" => {
            let mut out = String::from("[");
            for (i, s) in broker.subscriptions_view().iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(
                    out,
                    "{{\"filter\":{},\"client_id\":{},\"qos\":{}}}",
                    json_string(&s.filter),
                    json_string(&s.client_id),
                    s.qos
                );
            }
            out.push(']');
            json(out)
        }
        "/api/retained" => {
            let filter = query_param(&request.query, "filter").unwrap_or_else(|| "#".to_owned());
            let limit = query_param(&request.query, "limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(1000)
                .min(RETAINED_LIMIT);
            if pigeon_proto::TopicFilter::try_from(filter.as_str()).is_err() {
                return Response::text(400, "bad topic filter");
            }
            let access = user.map(|(index, name)| {
                ClientAccess::new(
                    settings.listeners.get(index).and_then(|l| l.acl.clone()),
                    name,
                )
            });
            let mut out = String::from("[");
            let mut first = true;
            for r in broker.retained_view(&filter, limit, PREVIEW) {
                if access
                    .as_ref()
                    .is_some_and(|a| !a.may_read("pigeon-http-api", &r.topic))
                {
                    continue;
                }
                if !first {
                    out.push(',');
                }
                first = false;
                let _ = write!(
                    out,
                    "{{\"topic\":{},\"qos\":{},\"size\":{},\"payload\":{}}}",
                    json_string(&r.topic),
                    r.qos,
                    r.size,
                    json_string(&String::from_utf8_lossy(&r.preview))
                );
            }
            out.push(']');
            json(out)
        }
        "/api/info" => {
            let mut out = format!(
                "{{\"version\":{},\"websockets\":[",
                json_string(env!("CARGO_PKG_VERSION"))
            );
            let mut first = true;
            for l in settings.listeners.iter().filter(|l| l.websockets.is_some()) {
                if !first {
                    out.push(',');
                }
                first = false;
                let _ = write!(
                    out,
                    "{{\"port\":{},\"address\":{},\"tls\":{}}}",
                    l.addr.port(),
                    json_string(&l.addr.ip().to_string()),
                    l.tls.is_some()
                );
            }
            out.push_str("]}");
            json(out)
        }
        _ => Response::text(404, "Not Found"),
    }
}

/// Who is asking, as the MQTT listeners would decide: `Ok(None)` for an anonymous request
/// some listener would let in, `Ok(Some((listener, user)))` for Basic credentials a
/// listener's password file accepts (the listener whose ACL then applies), 401 otherwise.
fn authenticate(
    settings: &ServerSettings,
    request: &Request,
) -> Result<Option<(usize, Option<String>)>, Response> {
    // The dashboard asks for credentials itself: a challenge would make the browser open its
    // own login dialog over the page.
    let from_dashboard = request.header("x-pigeon-dashboard").is_some();
    let refuse = || {
        let response = Response::text(401, "Unauthorized");
        if from_dashboard {
            response
        } else {
            response.with("WWW-Authenticate", "Basic realm=\"pigeon\"")
        }
    };
    let basic = request
        .header("authorization")
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| BASE64.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok());
    match basic {
        Some(pair) => {
            let (user, password) = pair.split_once(':').unwrap_or((&pair, ""));
            settings
                .listeners
                .iter()
                .position(|l| {
                    l.credentials
                        .as_ref()
                        .is_some_and(|c| c.verify(user, password.as_bytes()))
                })
                .map(|index| Some((index, Some(user.to_owned()))))
                .ok_or_else(refuse)
        }
        None => settings
            .listeners
            .iter()
            .position(|l| l.allow_anonymous)
            .map(|index| Some((index, None)))
            .ok_or_else(refuse),
    }
}

/// The value of query parameter `name`, percent-decoded (`+` is a space).
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| percent_decode(&value.replace('+', " ")).unwrap_or_default())
    })
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `/api/clients`: each client, with its number of subscriptions in the index (`subscriptions`,
/// by Client Identifier).
fn clients_json(clients: &[ClientView], subscriptions: &HashMap<String, usize>) -> String {
    let mut out = String::from("[");
    for (i, c) in clients.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let protocol = match c.protocol {
            Some(pigeon_proto::Protocol::V31) => "\"3.1\"",
            Some(pigeon_proto::Protocol::V311) => "\"3.1.1\"",
            Some(pigeon_proto::Protocol::V5) => "\"5.0\"",
            None => "null",
        };
        let _ = write!(
            out,
            "{{\"client_id\":{},\"connected\":{},\"queued\":{},\"protocol\":{protocol},\
             \"subscriptions\":{},\"offline_subscriptions\":{}}}",
            json_string(&c.client_id),
            c.connected,
            c.queued,
            subscriptions.get(&c.client_id).copied().unwrap_or(0),
            c.offline_subscriptions
        );
    }
    out.push(']');
    out
}

/// The process's resident memory in bytes, from `/proc/self/statm` (0 where unavailable).
fn resident_memory() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn stats_json(shared: &Shared, started: std::time::Instant) -> String {
    let s = Snapshot::take(&shared.broker);
    let uptime = clock::now().saturating_duration_since(started).as_secs();
    let mut out = String::from("{");
    let _ = write!(
        out,
        "\"version\":{},\"uptime_seconds\":{uptime},\"resident_memory_bytes\":{}",
        json_string(env!("CARGO_PKG_VERSION")),
        resident_memory()
    );
    for (name, _, _, value) in figures(&s) {
        let _ = write!(out, ",\"{name}\":{value}");
    }
    for (name, _, values) in by_qos(&s) {
        let [q0, q1, q2] = values;
        let _ = write!(out, ",\"{name}\":[{q0},{q1},{q2}]");
    }
    out.push('}');
    out
}

/// The broker's figures: (name, Prometheus type, help, value).
fn figures(s: &Snapshot) -> [(&'static str, &'static str, &'static str, u64); 20] {
    [
        (
            "clients_connected",
            "gauge",
            "Clients connected now.",
            s.clients_connected,
        ),
        (
            "clients_total",
            "gauge",
            "Clients with a session, connected or not.",
            s.clients_total,
        ),
        (
            "clients_maximum",
            "gauge",
            "The most clients connected at once.",
            s.clients_maximum,
        ),
        (
            "clients_expired_total",
            "counter",
            "Persistent sessions expired.",
            s.clients_expired,
        ),
        (
            "auth_failures_total",
            "counter",
            "CONNECTs refused for their credentials.",
            s.auth_failures,
        ),
        (
            "connections_total",
            "counter",
            "CONNECT packets received.",
            s.connections,
        ),
        (
            "sockets_total",
            "counter",
            "Network connections accepted.",
            s.sockets,
        ),
        (
            "packets_received_total",
            "counter",
            "MQTT packets received.",
            s.messages_received,
        ),
        (
            "packets_sent_total",
            "counter",
            "MQTT packets sent.",
            s.messages_sent,
        ),
        (
            "messages_received_total",
            "counter",
            "PUBLISH packets received.",
            s.publish_received,
        ),
        (
            "messages_sent_total",
            "counter",
            "PUBLISH packets sent.",
            s.publish_sent,
        ),
        (
            "messages_dropped_total",
            "counter",
            "Deliveries dropped by queue limits.",
            s.publish_dropped,
        ),
        (
            "payload_bytes_received_total",
            "counter",
            "Payload bytes of PUBLISH packets received.",
            s.publish_bytes_received,
        ),
        (
            "payload_bytes_sent_total",
            "counter",
            "Payload bytes of PUBLISH packets sent.",
            s.publish_bytes_sent,
        ),
        (
            "bytes_received_total",
            "counter",
            "Bytes read from clients.",
            s.bytes_received,
        ),
        (
            "bytes_sent_total",
            "counter",
            "Bytes written to clients.",
            s.bytes_sent,
        ),
        ("subscriptions", "gauge", "Subscriptions.", s.subscriptions),
        (
            "retained_messages",
            "gauge",
            "Retained messages.",
            s.retained,
        ),
        (
            "stored_messages",
            "gauge",
            "Messages held: retained, and queued for disconnected clients.",
            s.store_count,
        ),
        (
            "stored_bytes",
            "gauge",
            "Payload bytes of the messages held.",
            s.store_bytes,
        ),
    ]
}

/// The broker's counters by QoS: (name, help, values at QoS 0, 1 and 2). Counters, each also
/// in [`figures`] as its total (`messages_received_total` is the sum of
/// `messages_received_by_qos_total`), under a name of its own so that summing a family does
/// not count twice.
fn by_qos(s: &Snapshot) -> [(&'static str, &'static str, [u64; 3]); 4] {
    [
        (
            "messages_received_by_qos_total",
            "PUBLISH packets received, by QoS.",
            s.publish_received_by_qos,
        ),
        (
            "messages_sent_by_qos_total",
            "PUBLISH packets sent, by QoS.",
            s.publish_sent_by_qos,
        ),
        (
            "payload_bytes_received_by_qos_total",
            "Payload bytes of PUBLISH packets received, by QoS.",
            s.publish_bytes_received_by_qos,
        ),
        (
            "payload_bytes_sent_by_qos_total",
            "Payload bytes of PUBLISH packets sent, by QoS.",
            s.publish_bytes_sent_by_qos,
        ),
    ]
}

/// The Prometheus text exposition (format 0.0.4).
fn metrics(shared: &Shared, started: std::time::Instant) -> String {
    let s = Snapshot::take(&shared.broker);
    let mut out = String::new();
    for (name, kind, help, value) in figures(&s) {
        let _ = write!(
            out,
            "# HELP pigeon_{name} {help}\n# TYPE pigeon_{name} {kind}\npigeon_{name} {value}\n"
        );
    }
    for (name, help, values) in by_qos(&s) {
        let _ = write!(
            out,
            "# HELP pigeon_{name} {help}\n# TYPE pigeon_{name} counter\n"
        );
        for (qos, value) in values.iter().enumerate() {
            let _ = writeln!(out, "pigeon_{name}{{qos=\"{qos}\"}} {value}");
        }
    }
    let clients = shared.broker.clients_view();
    let queued = |connected: bool| -> usize {
        clients
            .iter()
            .filter(|c| c.connected == connected)
            .map(|c| c.queued)
            .sum()
    };
    let _ = write!(
        out,
        "# HELP pigeon_queued_messages Messages waiting for clients: in connected clients' \
         mailboxes, and queued or in flight in disconnected sessions.\n\
         # TYPE pigeon_queued_messages gauge\n\
         pigeon_queued_messages{{client=\"connected\"}} {}\n\
         pigeon_queued_messages{{client=\"disconnected\"}} {}\n",
        queued(true),
        queued(false)
    );
    let _ = write!(
        out,
        "# HELP pigeon_connections_parked Idle connections parked without a task of their own.\n\
         # TYPE pigeon_connections_parked gauge\npigeon_connections_parked {}\n",
        shared.parker.parked()
    );
    // Persistence latency: each batch of records (group commit) written and synced, as a
    // Prometheus summary (zero without `persistence`).
    let store = shared.broker.store();
    let _ = write!(
        out,
        "# HELP pigeon_persistence_sync_seconds Time to write and fsync one batch of records \
         (what an acknowledgement waits for with persistence_sync_acks).\n\
         # TYPE pigeon_persistence_sync_seconds summary\n\
         pigeon_persistence_sync_seconds_sum {:.6}\n\
         pigeon_persistence_sync_seconds_count {}\n",
        std::time::Duration::from_micros(store.sync_micros()).as_secs_f64(),
        store.syncs()
    );
    let uptime = clock::now()
        .saturating_duration_since(started)
        .as_secs_f64();
    let _ = write!(
        out,
        "# HELP pigeon_uptime_seconds Seconds since the HTTP listener started.\n\
         # TYPE pigeon_uptime_seconds gauge\npigeon_uptime_seconds {uptime:.3}\n\
         # HELP process_resident_memory_bytes Resident memory size in bytes.\n\
         # TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}\n",
        resident_memory()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
    }

    #[test]
    fn query_parameters() {
        assert_eq!(
            query_param("filter=a%2F%23&x", "filter").as_deref(),
            Some("a/#")
        );
        assert_eq!(query_param("x&limit=5", "limit").as_deref(), Some("5"));
        assert_eq!(query_param("x=a+b", "x").as_deref(), Some("a b"));
        assert_eq!(query_param("x=1", "y"), None);
    }
}
