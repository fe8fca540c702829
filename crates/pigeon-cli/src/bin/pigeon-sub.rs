//! `pigeon-sub`: subscribes and prints messages, as `mosquitto_sub` does, with the same flags,
//! output bytes, `-d` lines and exit codes.
//!
//! Differences from `mosquitto_sub` 2.0.11: `%j`/`%J` list a message's MQTT 5.0 properties in
//! the order Pigeon's broker sends them (Mosquitto lists them in the order they arrived);
//! `--proxy`, `-S`, TLS-PSK and OpenSSL engines are not supported (the program says so and
//! exits with 1).

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::process::ExitCode;
use std::task::Poll;
use std::time::Duration;

use pigeon_cli::tools::format::{Format, Printer, Stamp};
use pigeon_cli::tools::options::{Options, Tool};
use pigeon_cli::tools::session::{self, FAILURE};
use pigeon_cli::tools::usage;
use pigeon_client::proto::properties::{SubscribeProperties, UnsubscribeProperties};
use pigeon_client::proto::{TopicFilter, TopicName};
use pigeon_client::{
    Client, Event, Packet, Publish, PublishOutcome, QoS, Receipt, SubscriptionOptions,
};

/// `-W`'s exit status.
const TIMED_OUT: i32 = 27;

fn main() -> ExitCode {
    let usage = usage::sub_usage();
    let options = match session::parse_command_line(Tool::Sub, &usage) {
        Ok(o) => o,
        Err(code) => return session::exit(code),
    };
    let format = match options.format.as_deref().map(Format::parse).transpose() {
        Ok(f) => f,
        Err(message) => {
            eprintln!("Error: {message}\n\nUse 'pigeon-sub --help' to see usage.");
            return session::exit(FAILURE);
        }
    };
    let printer = Printer {
        format,
        verbose: options.verbose,
        no_eol: options.no_eol,
        pretty: options.pretty,
    };
    session::run_to_exit(run(options, printer))
}

/// Polls `futures` in order (so their requests go out in that order) until all are done.
async fn in_order(mut futures: Vec<Pin<Box<dyn Future<Output = ()> + Send>>>) {
    let mut done = vec![false; futures.len()];
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (f, d) in futures.iter_mut().zip(done.iter_mut()) {
            if !*d {
                if f.as_mut().poll(cx).is_ready() {
                    *d = true;
                } else {
                    all = false;
                }
            }
        }
        if all { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
}

/// Sends the SUBSCRIBE for every `-t`, then an UNSUBSCRIBE for each `-U`, without waiting for
/// the answers (they arrive as events).
fn subscribe(o: &Options, client: &Client) {
    let mut options = SubscriptionOptions::new(o.qos);
    if o.protocol.is_v5() {
        options.retain_as_published = o.retain_as_published;
    }
    let filters = o
        .topics
        .iter()
        .filter_map(|t| TopicFilter::try_from(t.as_str()).ok())
        .map(|f| (f, options))
        .collect();
    let mut sub_props = SubscribeProperties::default();
    let mut unsub_props = UnsubscribeProperties::default();
    if o.protocol.is_v5() {
        sub_props.subscription_identifier = o.properties.subscribe_id;
        sub_props
            .user_properties
            .clone_from(&o.properties.subscribe_user);
        unsub_props
            .user_properties
            .clone_from(&o.properties.unsubscribe_user);
    }
    let mut futures: Vec<Pin<Box<dyn Future<Output = ()> + Send>>> = Vec::new();
    let c = client.clone();
    futures.push(Box::pin(async move {
        let _ = c.subscribe_many(filters, sub_props).await;
    }));
    for t in &o.unsubscribe {
        let Ok(filter) = TopicFilter::try_from(t.as_str()) else {
            continue;
        };
        let c = client.clone();
        let props = unsub_props.clone();
        futures.push(Box::pin(async move {
            let _ = c.unsubscribe_many(vec![filter], props).await;
        }));
    }
    tokio::spawn(in_order(futures));
}

/// What a message means for the program.
enum Next {
    Continue,
    /// Exit with this status.
    Exit(i32),
}

struct Sub {
    o: Options,
    printer: Printer,
    client: Client,
    filter_out: Vec<TopicFilter>,
    printed: u32,
    /// `--remove-retained`'s messages in flight.
    clearing: Vec<Receipt<PublishOutcome>>,
}

impl Sub {
    fn message(&mut self, m: &Publish) -> Next {
        let topic = m.topic.as_str();
        if self
            .filter_out
            .iter()
            .any(|f| pigeon_client::proto::matches(f.as_str(), topic))
        {
            return Next::Continue;
        }
        if self.o.remove_retained
            && m.retain
            && let Ok(t) = TopicName::try_from(topic)
        {
            let clear = Publish {
                qos: self.o.qos,
                retain: true,
                ..Publish::new(t, bytes::Bytes::new())
            };
            // Awaited before disconnecting, so that the clearing message goes out.
            if let Ok(receipt) = self.client.try_send(clear) {
                self.clearing.push(receipt);
            }
        }
        if self.o.no_retained && m.retain {
            return Next::Continue;
        }
        if self.o.retained_only && !m.retain {
            return Next::Exit(0);
        }
        if let Some(chance) = self.o.random_filter {
            let mut b = [0u8; 4];
            session::random_bytes(&mut b);
            let roll = f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX) * 100.0;
            if roll > chance {
                return Next::Continue;
            }
        }
        let printed = self
            .printer
            .print(m, &Stamp::new(pigeon_broker::clock::wall()));
        {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&printed.out);
            let _ = out.flush();
        }
        if let Some(e) = printed.error {
            session::error(&self.o, format!("Error: {e}"));
        }
        self.printed += 1;
        if self.o.count.is_some_and(|c| self.printed >= c) {
            return Next::Exit(0);
        }
        Next::Continue
    }
}

async fn run(o: Options, printer: Printer) -> i32 {
    let (client, mut events, mut debug) = match session::connect(&o).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    subscribe(&o, &client);
    let filter_out = o
        .filter_out
        .iter()
        .filter_map(|t| TopicFilter::try_from(t.as_str()).ok())
        .collect();
    let timeout = o.timeout.map(|s| Duration::from_secs(u64::from(s)));
    let mut sub = Sub {
        o,
        printer,
        client: client.clone(),
        filter_out,
        printed: 0,
        clearing: Vec::new(),
    };
    let deadline = tokio::time::sleep(timeout.unwrap_or(Duration::MAX / 4));
    tokio::pin!(deadline);
    // QoS 2 messages wait for their PUBCOMP with -d, as Mosquitto delivers them then.
    let mut held: HashMap<u16, Publish> = HashMap::new();
    let mut reconnecting = false;
    let code = loop {
        tokio::select! {
            () = &mut deadline, if timeout.is_some() => {
                session::error(&sub.o, "Timed out");
                break TIMED_OUT;
            }
            event = events.recv() => {
                let Some(event) = event else {
                    session::error(&sub.o, "Error: The connection was lost.");
                    return FAILURE;
                };
                let next = match event {
                    Event::PacketSent(p) => {
                        let lines = debug.sent(&p);
                        if sub.o.debug {
                            session::debug_lines(&lines);
                        }
                        match p {
                            Packet::PubComp(c) => match held.remove(&c.packet_id.get()) {
                                Some(m) => sub.message(&m),
                                None => Next::Continue,
                            },
                            _ => Next::Continue,
                        }
                    }
                    Event::PacketReceived(p) => {
                        let mut lines = debug.received(&p);
                        if let Packet::SubAck(ack) = &p {
                            let granted: Vec<String> =
                                ack.reasons.iter().map(|r| r.0.to_string()).collect();
                            lines.push(format!(
                                "Subscribed (mid: {}): {}",
                                ack.packet_id,
                                granted.join(", ")
                            ));
                        }
                        if sub.o.debug {
                            session::debug_lines(&lines);
                        }
                        match p {
                            Packet::SubAck(_) if sub.o.exit_after_subscribe => Next::Exit(0),
                            _ => Next::Continue,
                        }
                    }
                    Event::Message(m) => match m.packet_id {
                        Some(id) if sub.o.debug && m.qos == QoS::ExactlyOnce => {
                            held.insert(id.get(), m);
                            Next::Continue
                        }
                        _ => sub.message(&m),
                    },
                    // Reconnected after a lost connection: like mosquitto_sub's connect
                    // callback, subscribe again unless the broker kept the session.
                    Event::Connected(c) => {
                        if reconnecting && !c.session_present {
                            subscribe(&sub.o, &client);
                        }
                        reconnecting = false;
                        Next::Continue
                    }
                    Event::Disconnected(d) => {
                        if d.reconnect_in.is_none() {
                            session::error(&sub.o, "Error: The connection was lost.");
                            Next::Exit(FAILURE)
                        } else {
                            reconnecting = true;
                            Next::Continue
                        }
                    }
                    _ => Next::Continue,
                };
                if let Next::Exit(code) = next {
                    break code;
                }
            }
        }
    };
    for receipt in std::mem::take(&mut sub.clearing) {
        let _ = tokio::time::timeout(Duration::from_secs(5), receipt).await;
    }
    let _ = client.disconnect().await;
    // The last events: DISCONNECT's -d line.
    while let Some(event) = events.recv().await {
        if let Event::PacketSent(p) = event
            && sub.o.debug
        {
            session::debug_lines(&debug.sent(&p));
        }
    }
    code
}
