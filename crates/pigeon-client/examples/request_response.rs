//! MQTT 5.0 request/response with correlation data: a responder and a requester.
//!
//! ```text
//! cargo run -p pigeon-client --example request_response -- responder
//! cargo run -p pigeon-client --example request_response -- requester hello world
//! ```
//!
//! The requester subscribes to its own response topic (`replies/<its client id>`), then
//! publishes each request on `service/uppercase` with two MQTT 5.0 properties: Response Topic
//! (where to answer) and Correlation Data (`req-1`, `req-2`, ...: which request an answer
//! belongs to). The responder answers each request with the payload in upper case, on the
//! request's Response Topic, copying its Correlation Data. The requester matches each answer
//! to its request by the correlation data, not by arrival order, and prints
//! `Response 'HELLO' to request 'hello' (correlation data 'req-1')`.
//! `pigeon-rr -t service/uppercase -e replies/me -m hello` asks the same responder from the
//! shell.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use pigeon_client::proto::properties::PublishProperties;
use pigeon_client::{Event, Publish, QoS, TopicName};

#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    broker: common::Broker,
    /// The service's request topic.
    #[arg(short, long, default_value = "service/uppercase", global = true)]
    topic: String,
    #[command(subcommand)]
    role: Role,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// Answers requests until interrupted (or `--count` requests).
    Responder {
        /// Exit after this many requests (0: run until interrupted).
        #[arg(short, long, default_value_t = 0)]
        count: u64,
    },
    /// Sends each REQUEST and waits for all the answers.
    Requester {
        /// The requests' payloads.
        #[arg(required = true)]
        requests: Vec<String>,
        /// Seconds to wait for the answers.
        #[arg(long, default_value = "10", value_parser = common::seconds)]
        timeout: Duration,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match &args.role {
        Role::Responder { count } => responder(&args, *count).await,
        Role::Requester { requests, timeout } => requester(&args, requests, *timeout).await,
    }
}

async fn responder(args: &Args, count: u64) -> anyhow::Result<()> {
    let (client, mut events) = args.broker.connect(args.broker.options_v5()).await?;
    client.subscribe(&args.topic, QoS::AtLeastOnce).await?;
    println!("Answering requests on '{}'", args.topic);
    let mut tasks = tokio::task::JoinSet::new();
    let mut answered = 0;
    while count == 0 || answered < count {
        let event = tokio::select! {
            event = events.recv() => event,
            () = common::interrupted() => break,
        };
        let request = match event {
            Some(Event::Message(message)) => message,
            Some(_) => continue,
            None => anyhow::bail!("the connection to the broker ended"),
        };
        let Some(response_topic) = request.properties.response_topic.clone() else {
            println!("Ignoring a request without a Response Topic");
            continue;
        };
        let text = String::from_utf8_lossy(&request.payload);
        let mut response = Publish::new(response_topic.clone(), text.to_uppercase());
        response.qos = QoS::AtLeastOnce;
        response.properties.correlation_data = request.properties.correlation_data.clone();
        println!(
            "Request '{text}' (correlation data {}): answering on '{}'",
            show(request.properties.correlation_data.as_ref()),
            response_topic.as_str()
        );
        while tasks.try_join_next().is_some() {} // forget finished ones
        let client = client.clone();
        tasks.spawn(async move {
            match client.send(response).await {
                Ok(receipt) => {
                    if let Err(e) = receipt.await {
                        eprintln!("cannot answer: {e}");
                    }
                }
                Err(e) => eprintln!("cannot answer: {e}"),
            }
        });
        answered += 1;
    }
    common::finish(&client, &mut events, tasks).await
}

async fn requester(args: &Args, requests: &[String], timeout: Duration) -> anyhow::Result<()> {
    let (client, mut events) = args.broker.connect(args.broker.options_v5()).await?;
    let id = client_id(&mut events, &args.broker.id).await?;
    let response_topic = format!("replies/{id}");
    client.subscribe(&response_topic, QoS::AtLeastOnce).await?;

    // Correlation data -> request; answers may come in any order.
    let mut pending: HashMap<Bytes, String> = HashMap::new();
    let mut receipts = Vec::new();
    for (n, request) in requests.iter().enumerate() {
        let correlation = Bytes::from(format!("req-{}", n + 1));
        let mut properties = PublishProperties::default();
        properties.response_topic = Some(TopicName::try_from(response_topic.as_str())?);
        properties.correlation_data = Some(correlation.clone());
        let mut publish = Publish::new(TopicName::try_from(args.topic.as_str())?, request.clone());
        publish.qos = QoS::AtLeastOnce;
        publish.properties = properties;
        receipts.push(client.send(publish).await?);
        pending.insert(correlation, request.clone());
    }

    let waited = tokio::time::timeout(timeout, async {
        while !pending.is_empty() {
            match events.recv().await {
                Some(Event::Message(message)) => {
                    let correlation = message.properties.correlation_data.clone();
                    match correlation.as_ref().and_then(|c| pending.remove(c)) {
                        Some(request) => println!(
                            "Response '{}' to request '{request}' (correlation data {})",
                            String::from_utf8_lossy(&message.payload),
                            show(correlation.as_ref())
                        ),
                        None => println!(
                            "Ignoring a response with unknown correlation data {}",
                            show(correlation.as_ref())
                        ),
                    }
                }
                Some(_) => {}
                None => return Err(anyhow::anyhow!("the connection to the broker ended")),
            }
        }
        Ok(())
    })
    .await;
    match waited {
        Ok(result) => result?,
        Err(_) => anyhow::bail!(
            "no response within {timeout:?} to: {:?}",
            pending.values().collect::<Vec<_>>()
        ),
    }
    for receipt in receipts {
        receipt.await?;
    }
    client.disconnect().await?;
    Ok(())
}

/// The client identifier: the one asked for, or the one the server assigned (MQTT 5.0's
/// Assigned Client Identifier in the CONNACK, which is the first event).
async fn client_id(events: &mut pigeon_client::Events, asked: &str) -> anyhow::Result<String> {
    if !asked.is_empty() {
        return Ok(asked.to_owned());
    }
    loop {
        match events.recv().await {
            Some(Event::Connected(connected)) => {
                return connected
                    .properties
                    .assigned_client_identifier
                    .as_ref()
                    .map(|s| s.as_str().to_owned())
                    .ok_or_else(|| anyhow::anyhow!("the server assigned no client identifier"));
            }
            Some(_) => {}
            None => anyhow::bail!("the connection to the broker ended"),
        }
    }
}

fn show(correlation: Option<&Bytes>) -> String {
    correlation.map_or_else(
        || "none".to_owned(),
        |c| format!("'{}'", String::from_utf8_lossy(c)),
    )
}
