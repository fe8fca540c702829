//! `pigeon-pub`: publishes messages, as `mosquitto_pub` does, with the same flags, `-d`
//! output, messages and exit codes.
//!
//! Differences from `mosquitto_pub` 2.0.11: `-l` skips blank lines (Mosquitto 2.0.11 sends
//! them as empty messages); `--proxy`, `-S`, TLS-PSK and OpenSSL engines are not supported
//! (the program says so and exits with 1).

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use pigeon_cli::tools::debug::Debug;
use pigeon_cli::tools::options::{Options, Tool};
use pigeon_cli::tools::session::{self, FAILURE};
use pigeon_cli::tools::usage;
use pigeon_client::proto::{PacketType, TopicName};
use pigeon_client::{Client, Event, Events, Publish, PublishOutcome, Receipt};
use tokio::io::AsyncBufReadExt;

fn main() -> ExitCode {
    let options = match session::parse_command_line(Tool::Pub, &usage::pub_usage()) {
        Ok(o) => o,
        Err(code) => return session::exit(code),
    };
    session::run_to_exit(run(options))
}

/// Prints the `-d` lines of the client's events until the stream ends.
async fn print_events(mut events: Events, mut debug: Debug, on: bool) {
    while let Some(event) = events.recv().await {
        let lines = match &event {
            Event::PacketSent(p) => debug.sent(p),
            Event::PacketReceived(p) => debug.received(p),
            _ => continue,
        };
        if on {
            session::debug_lines(&lines);
        }
    }
}

async fn run(o: Options) -> i32 {
    let message = match session::load_message(&o) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let Some(topic) = o
        .topics
        .last()
        .and_then(|t| TopicName::try_from(t.as_str()).ok())
    else {
        return FAILURE;
    };
    let (client, events, debug) = match session::connect(&o).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let printer = tokio::spawn(print_events(events, debug, o.debug));
    let make = |payload: Bytes| {
        let mut p = Publish {
            qos: o.qos,
            retain: o.retain,
            ..Publish::new(topic.clone(), payload)
        };
        if o.protocol.is_v5() {
            p.properties = o.properties.publish.clone();
        }
        p
    };
    let mut code = 0;
    match message {
        Some(payload) => {
            for i in 0..o.repeat {
                if i > 0 && o.repeat_delay > 0.0 {
                    tokio::time::sleep(Duration::from_secs_f64(o.repeat_delay)).await;
                }
                let sent = match client.send(make(payload.clone())).await {
                    Ok(receipt) => receipt.await,
                    Err(e) => Err(e),
                };
                if let Err(c) = outcome(&o, sent) {
                    code = c;
                    break;
                }
            }
        }
        None => code = publish_lines(&o, &client, &make).await,
    }
    let _ = client.disconnect().await;
    let _ = printer.await;
    code
}

/// `-l`: one message per line of standard input, blank lines skipped, pipelined; waits for
/// every acknowledgement.
async fn publish_lines(o: &Options, client: &Client, make: &impl Fn(Bytes) -> Publish) -> i32 {
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let mut receipts: std::collections::VecDeque<Receipt<PublishOutcome>> =
        std::collections::VecDeque::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        match stdin.read_until(b'\n', &mut line).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                session::error(o, format!("Error: unable to read standard input: {e}"));
                return FAILURE;
            }
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if line.is_empty() {
            continue;
        }
        match client.send(make(Bytes::copy_from_slice(&line))).await {
            Ok(r) => receipts.push_back(r),
            Err(e) => return outcome(o, Err(e)).err().unwrap_or(FAILURE),
        }
        // Receipts resolved so far need not wait for the end.
        while receipts.len() > 1024 {
            if let Some(r) = receipts.pop_front()
                && let Err(c) = outcome(o, r.await)
            {
                return c;
            }
        }
    }
    for r in receipts {
        if let Err(c) = outcome(o, r.await) {
            return c;
        }
    }
    0
}

/// Reports a publish that failed; `Err` holds the exit status when the program must stop.
fn outcome(o: &Options, result: Result<PublishOutcome, pigeon_client::Error>) -> Result<(), i32> {
    match result {
        Ok(outcome) if outcome.is_success() => Ok(()),
        Ok(outcome) => {
            session::error(
                o,
                format!(
                    "Warning: Publish failed: {}.",
                    session::reason_name(outcome.reason, PacketType::PubAck)
                ),
            );
            Ok(())
        }
        Err(pigeon_client::Error::Closed | pigeon_client::Error::Disconnected(_)) => {
            session::error(o, "Error: The connection was lost.");
            Err(FAILURE)
        }
        Err(e) => {
            session::error(o, format!("Error: {e}"));
            Err(FAILURE)
        }
    }
}
