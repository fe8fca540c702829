//! The image request system's requester: asks the camera service for a picture and saves it.
//!
//! ```text
//! cargo run -p pigeon-client --example image_requester -- --output photo.png
//! ```
//!
//! Subscribes to `camera/image`, publishes a request on `camera/request` (QoS 1) and writes
//! the first picture that arrives to `--output`, then prints `Saved 5246974-byte PNG image to
//! 'photo.png'`. Gives up after `--timeout` seconds.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use pigeon_client::{Event, QoS};

#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    broker: common::Broker,
    /// The topic to send the request to.
    #[arg(long, default_value = "camera/request")]
    request_topic: String,
    /// The topic the picture comes back on.
    #[arg(long, default_value = "camera/image")]
    reply_topic: String,
    /// The request's payload (the service echoes it in its log).
    #[arg(short, long, default_value = "photo")]
    message: String,
    /// Where to save the picture.
    #[arg(short, long, default_value = "image.bin")]
    output: PathBuf,
    /// Seconds to wait for the picture.
    #[arg(long, default_value = "30", value_parser = common::seconds)]
    timeout: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (client, mut events) = args.broker.connect(args.broker.options()).await?;
    // Subscribe first, so that the reply cannot arrive before the subscription exists.
    client
        .subscribe(&args.reply_topic, QoS::AtLeastOnce)
        .await?;
    let request = {
        let client = client.clone();
        let (topic, message) = (args.request_topic.clone(), args.message.clone());
        tokio::spawn(async move {
            client
                .publish(&topic, message, QoS::AtLeastOnce, false)
                .await
        })
    };
    println!("Requested a picture on '{}'", args.request_topic);

    let image = tokio::time::timeout(args.timeout, async {
        while let Some(event) = events.recv().await {
            if let Event::Message(message) = event {
                return Some(message.payload);
            }
        }
        None
    })
    .await
    .map_err(|_| {
        anyhow::anyhow!(
            "no picture on '{}' within {:?}",
            args.reply_topic,
            args.timeout
        )
    })?
    .ok_or_else(|| anyhow::anyhow!("the connection to the broker ended"))?;
    request.await??;

    std::fs::write(&args.output, &image)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", args.output.display()))?;
    let kind = if image.starts_with(b"\x89PNG") {
        "PNG"
    } else if image.starts_with(&[0xFF, 0xD8]) {
        "JPEG"
    } else {
        "unknown"
    };
    println!(
        "Saved {}-byte {kind} image to '{}'",
        image.len(),
        args.output.display()
    );
    client.disconnect().await?;
    Ok(())
}
