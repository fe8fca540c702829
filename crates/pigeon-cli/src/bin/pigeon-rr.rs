//! `pigeon-rr`: one request, one response, as `mosquitto_rr` does: subscribes to the response
//! topic (`-e`), publishes the request (`-t`, `-m`/`-f`/`-s`/`-n`) with the MQTT 5.0 Response
//! Topic set to it, prints the first message that arrives there as `pigeon-sub` would, and
//! exits 0; with `-W` it gives up with "Timed out" and exit status 27.
//!
//! As `mosquitto_rr` 2.0.11 does: MQTT 5.0 is the default, `-V 311`/`-V 31` are accepted (the
//! request then carries no Response Topic); no Correlation Data is added; after the response
//! the program leaves without sending DISCONNECT (so a `--will-topic` will is published).
//! Differences: `-f` sends the file's contents (`mosquitto_rr` 2.0.11 sends an empty
//! request), and a file that cannot be read is an error (as in `pigeon-pub`); `--proxy`,
//! `-S`, TLS-PSK and OpenSSL engines are not supported.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use pigeon_cli::tools::format::{Format, Printer, Stamp};
use pigeon_cli::tools::options::{Options, Tool};
use pigeon_cli::tools::session::{self, FAILURE};
use pigeon_cli::tools::usage;
use pigeon_client::proto::properties::SubscribeProperties;
use pigeon_client::proto::{TopicFilter, TopicName};
use pigeon_client::{Client, Event, Packet, Publish, QoS, SubscriptionOptions};

/// `-W`'s exit status.
const TIMED_OUT: i32 = 27;

fn main() -> ExitCode {
    let options = match session::parse_command_line(Tool::Rr, &usage::rr_usage()) {
        Ok(o) => o,
        Err(code) => return session::exit(code),
    };
    let format = match options.format.as_deref().map(Format::parse).transpose() {
        Ok(f) => f,
        Err(message) => {
            eprintln!("Error: {message}\n\nUse 'pigeon-rr --help' to see usage.");
            return session::exit(FAILURE);
        }
    };
    if options.properties.publish.response_topic.is_some() {
        eprintln!("Error in PUBLISH properties: Duplicate response topic.");
        return session::exit(FAILURE);
    }
    let printer = Printer {
        format,
        verbose: options.verbose,
        no_eol: options.no_eol,
        pretty: options.pretty,
    };
    session::run_to_exit(run(options, printer))
}

/// Prints the response; the exit status.
fn print_response(o: &Options, printer: &Printer, m: &Publish) -> i32 {
    let printed = printer.print(m, &Stamp::new(pigeon_broker::clock::wall()));
    {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&printed.out);
        let _ = out.flush();
    }
    if let Some(e) = printed.error {
        session::error(o, format!("Error: {e}"));
    }
    0
}

/// Sends the request once the subscription is acknowledged.
fn send_request(o: &Options, client: &Client, payload: Bytes) {
    let (Some(topic), Some(response)) = (
        o.topics
            .last()
            .and_then(|t| TopicName::try_from(t.as_str()).ok()),
        o.response_topic
            .as_deref()
            .and_then(|t| TopicName::try_from(t).ok()),
    ) else {
        return;
    };
    let mut p = Publish {
        qos: o.qos,
        ..Publish::new(topic, payload)
    };
    if o.protocol.is_v5() {
        p.properties = o.properties.publish.clone();
        p.properties.response_topic = Some(response);
    }
    let c = client.clone();
    tokio::spawn(async move {
        if let Ok(receipt) = c.send(p).await {
            let _ = receipt.await;
        }
    });
}

async fn run(o: Options, printer: Printer) -> i32 {
    let payload = match session::load_message(&o).map(Option::unwrap_or_default) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let Some(filter) = o
        .response_topic
        .as_deref()
        .and_then(|t| TopicFilter::try_from(t).ok())
    else {
        return FAILURE;
    };
    let (client, mut events, mut debug) = match session::connect(&o).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut sub_options = SubscriptionOptions::new(o.qos);
    let mut sub_props = SubscribeProperties::default();
    if o.protocol.is_v5() {
        sub_options.retain_as_published = o.retain_as_published;
        sub_props.subscription_identifier = o.properties.subscribe_id;
        sub_props
            .user_properties
            .clone_from(&o.properties.subscribe_user);
    }
    let c = client.clone();
    tokio::spawn(async move {
        let _ = c
            .subscribe_many(vec![(filter, sub_options)], sub_props)
            .await;
    });
    let timeout = o.timeout.map(|s| Duration::from_secs(u64::from(s)));
    let deadline = tokio::time::sleep(timeout.unwrap_or(Duration::MAX / 4));
    tokio::pin!(deadline);
    let mut payload = Some(payload);
    // With -d, a QoS 2 response is printed once its PUBCOMP went out, as Mosquitto does.
    let mut held: HashMap<u16, Publish> = HashMap::new();
    loop {
        tokio::select! {
            () = &mut deadline, if timeout.is_some() => {
                session::error(&o, "Timed out");
                break;
            }
            event = events.recv() => {
                let Some(event) = event else {
                    session::error(&o, "Error: The connection was lost.");
                    return FAILURE;
                };
                match event {
                    Event::PacketSent(p) => {
                        if o.debug {
                            session::debug_lines(&debug.sent(&p));
                        }
                        if let Packet::PubComp(c) = p
                            && let Some(m) = held.remove(&c.packet_id.get())
                        {
                            return print_response(&o, &printer, &m);
                        }
                    }
                    Event::PacketReceived(p) => {
                        if o.debug {
                            session::debug_lines(&debug.received(&p));
                        }
                        if let Packet::SubAck(_) = p
                            && let Some(payload) = payload.take()
                        {
                            send_request(&o, &client, payload);
                        }
                    }
                    Event::Message(m) => {
                        if o.no_retained && m.retain {
                            continue;
                        }
                        match m.packet_id {
                            Some(id) if o.debug && m.qos == QoS::ExactlyOnce => {
                                held.insert(id.get(), m);
                            }
                            // Leaves without DISCONNECT, as mosquitto_rr does.
                            _ => return print_response(&o, &printer, &m),
                        }
                    }
                    Event::Disconnected(d) if d.reconnect_in.is_none() => {
                        session::error(&o, "Error: The connection was lost.");
                        return FAILURE;
                    }
                    _ => {}
                }
            }
        }
    }
    let _ = client.disconnect().await;
    // The last events: DISCONNECT's -d line.
    while let Some(event) = events.recv().await {
        if let Event::PacketSent(p) = event
            && o.debug
        {
            session::debug_lines(&debug.sent(&p));
        }
    }
    TIMED_OUT
}
