//! The image request system's camera service: waits for requests on `camera/request`, takes
//! a picture and publishes it (a binary payload, QoS 1) on `camera/image`.
//!
//! ```text
//! cargo run -p pigeon-client --example camera_service
//! cargo run -p pigeon-client --example image_requester -- --output photo.jpg
//! ```
//!
//! With `--source auto` (the default) the picture comes from a V4L2 webcam when
//! `/dev/video*` exists, captured as a JPEG by `fswebcam` or, failing that, `ffmpeg` (Debian
//! packages of the same names; the Raspberry Pi labs' usual tools); else the service
//! generates a PNG test pattern of `--width` x `--height` pixels (uncompressed pixel data, so
//! its size is about 3 x width x height bytes: 1280 x 1366 makes a 5 MB message).
//! `--source test-pattern` always generates one, `--source camera` insists on the webcam.
//!
//! Prints `Sent 5246974-byte PNG test pattern to 'camera/image' (request 'photo-1')` per
//! request.

mod common;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::{Parser, ValueEnum};
use pigeon_client::{Event, QoS};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Source {
    /// The webcam when there is one, else a test pattern.
    Auto,
    /// The webcam.
    Camera,
    /// A generated PNG test pattern.
    TestPattern,
}

#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    broker: common::Broker,
    /// The topic requests arrive on.
    #[arg(long, default_value = "camera/request")]
    request_topic: String,
    /// The topic pictures are published on.
    #[arg(long, default_value = "camera/image")]
    reply_topic: String,
    /// Where pictures come from.
    #[arg(long, value_enum, default_value_t = Source::Auto)]
    source: Source,
    /// The webcam (default: the first /dev/video*).
    #[arg(long)]
    device: Option<PathBuf>,
    /// Picture width in pixels.
    #[arg(long, default_value_t = 640)]
    width: u32,
    /// Picture height in pixels.
    #[arg(long, default_value_t = 480)]
    height: u32,
    /// Exit after this many requests (0: run until interrupted).
    #[arg(short, long, default_value_t = 0)]
    count: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (client, mut events) = args.broker.connect(args.broker.options()).await?;
    client
        .subscribe(&args.request_topic, QoS::AtLeastOnce)
        .await?;
    println!("Waiting for requests on '{}'", args.request_topic);

    let mut served = 0;
    let mut frame = 0u32;
    let mut queued = VecDeque::new();
    while args.count == 0 || served < args.count {
        let request = match queued.pop_front() {
            Some(request) => request,
            None => {
                let event = tokio::select! {
                    event = events.recv() => event,
                    () = common::interrupted() => break,
                };
                match event {
                    Some(Event::Message(message)) => message,
                    Some(_) => continue,
                    None => anyhow::bail!("the connection to the broker ended"),
                }
            }
        };
        frame = frame.wrapping_add(1);
        let (image, what) = picture(&args, frame)?;
        let size = image.len();
        // The publish is awaited in its own task: this loop must keep reading events (the
        // PUBACK comes through the same connection).
        let client = client.clone();
        let topic = args.reply_topic.clone();
        let request_text = String::from_utf8_lossy(&request.payload).into_owned();
        let done = tokio::spawn(async move {
            client
                .publish(&topic, image, QoS::AtLeastOnce, false)
                .await?;
            println!("Sent {size}-byte {what} to '{topic}' (request '{request_text}')");
            Ok::<_, pigeon_client::Error>(())
        });
        // Read events while the picture is in flight; requests arriving meanwhile wait
        // their turn.
        tokio::pin!(done);
        loop {
            tokio::select! {
                result = &mut done => { result??; break; }
                event = events.recv() => match event {
                    Some(Event::Message(message)) => queued.push_back(message),
                    Some(_) => {}
                    None => anyhow::bail!("the connection to the broker ended"),
                },
            }
        }
        served += 1;
    }
    client.disconnect().await?;
    Ok(())
}

/// One picture and what it is.
fn picture(args: &Args, frame: u32) -> anyhow::Result<(Vec<u8>, &'static str)> {
    let device = args.device.clone().or_else(first_video_device);
    match (args.source, device) {
        (Source::TestPattern, _) | (Source::Auto, None) => Ok((
            test_pattern(args.width, args.height, frame),
            "PNG test pattern",
        )),
        (Source::Camera, None) => anyhow::bail!("no webcam: /dev/video* does not exist"),
        (Source::Auto | Source::Camera, Some(device)) => match capture(&device, args) {
            Ok(jpeg) => Ok((jpeg, "JPEG from the webcam")),
            Err(e) if args.source == Source::Auto => {
                eprintln!("{e}; sending a test pattern instead");
                Ok((
                    test_pattern(args.width, args.height, frame),
                    "PNG test pattern",
                ))
            }
            Err(e) => Err(e),
        },
    }
}

fn first_video_device() -> Option<PathBuf> {
    let mut devices: Vec<PathBuf> = std::fs::read_dir("/dev")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("video"))
        })
        .collect();
    devices.sort();
    devices.into_iter().next()
}

/// One JPEG frame from the V4L2 `device`, through fswebcam or ffmpeg.
fn capture(device: &Path, args: &Args) -> anyhow::Result<Vec<u8>> {
    let size = format!("{}x{}", args.width, args.height);
    let dev = device.display().to_string();
    let tools: [(&str, Vec<&str>); 2] = [
        (
            "fswebcam",
            vec![
                "-q",
                "-d",
                &dev,
                "-r",
                &size,
                "--no-banner",
                "--jpeg",
                "90",
                "-",
            ],
        ),
        (
            "ffmpeg",
            vec![
                "-loglevel",
                "error",
                "-f",
                "v4l2",
                "-video_size",
                &size,
                "-i",
                &dev,
                "-frames:v",
                "1",
                "-f",
                "image2",
                "-c:v",
                "mjpeg",
                "-",
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (tool, tool_args) in tools {
        match Command::new(tool)
            .args(&tool_args)
            .stdin(Stdio::null())
            .output()
        {
            Ok(out) if out.status.success() && out.stdout.starts_with(&[0xFF, 0xD8]) => {
                return Ok(out.stdout);
            }
            Ok(out) => failures.push(format!(
                "{tool}: {} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => failures.push(format!("{tool}: {e}")),
        }
    }
    anyhow::bail!("cannot capture from {dev}: {}", failures.join("; "))
}

/// A PNG test pattern: eight colour bars fading to black downwards, and a moving white
/// stripe so that successive frames differ. The pixel data is stored uncompressed (deflate
/// "stored" blocks), which keeps the encoder short and the size predictable.
fn test_pattern(width: u32, height: u32, frame: u32) -> Vec<u8> {
    const BARS: [[u8; 3]; 8] = [
        [255, 255, 255],
        [255, 255, 0],
        [0, 255, 255],
        [0, 255, 0],
        [255, 0, 255],
        [255, 0, 0],
        [0, 0, 255],
        [0, 0, 0],
    ];
    let (w, h) = (width.max(1) as usize, height.max(1) as usize);
    let stripe = (frame as usize * 16) % w;
    let mut raw = Vec::with_capacity((w * 3 + 1) * h);
    for y in 0..h {
        raw.push(0); // filter type None
        let fade = 255 - (y * 255 / h) as u32;
        for x in 0..w {
            if x.abs_diff(stripe) < 4 {
                raw.extend_from_slice(&[255, 255, 255]);
                continue;
            }
            let bar = BARS[x * BARS.len() / w];
            raw.extend(bar.iter().map(|&c| (u32::from(c) * fade / 255) as u8));
        }
    }

    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&(w as u32).to_be_bytes());
    ihdr.extend_from_slice(&(h as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8 bits, RGB, deflate, adaptive, no interlace
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &zlib_stored(&raw));
    chunk(&mut png, b"IEND", &[]);
    png
}

fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    png.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = png.len();
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    let crc = crc32(&png[start..]);
    png.extend_from_slice(&crc.to_be_bytes());
}

/// A zlib stream of stored (uncompressed) deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let mut blocks = data.chunks(0xFFFF).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xFF, 0xFF]);
    }
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none())); // BFINAL on the last block, BTYPE 00
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
