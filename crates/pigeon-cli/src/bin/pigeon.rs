//! `pigeon`: the MQTT broker, started the way `mosquitto` is.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pigeon_broker::config::Config;
use pigeon_broker::server::{Server, ServerSettings};

/// Pigeon, an MQTT 3.1 / 3.1.1 / 5.0 broker that reads mosquitto.conf.
#[derive(Debug, Parser)]
#[command(name = "pigeon", disable_help_flag = true, disable_version_flag = true)]
struct Args {
    /// Read the configuration from FILE (mosquitto.conf syntax). Without it, the broker
    /// listens on localhost port 1883 only, with anonymous access.
    #[arg(short = 'c', long = "config-file", value_name = "FILE")]
    config_file: Option<PathBuf>,
    /// Fork into the background.
    #[arg(short = 'd', long = "daemon")]
    daemon: bool,
    /// Listen on PORT (repeatable). Only used when the configuration defines no listener.
    #[arg(short = 'p', long = "port", value_name = "PORT")]
    port: Vec<u16>,
    /// Log every message type, overriding log_type in the configuration.
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// Check the configuration and exit.
    #[arg(long = "test-config")]
    test_config: bool,
    /// Show this help.
    #[arg(short = 'h', long = "help", action = clap::ArgAction::Help)]
    help: Option<bool>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let mut config = match &args.config_file {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    config.apply_cli_ports(&args.port)?;
    let mut settings = ServerSettings::from_config(&config)?;
    if args.verbose {
        settings.log.debug = true;
        settings.log.notice = true;
    }
    for warning in &config.warnings {
        eprintln!("Warning: {warning}");
    }
    if args.test_config {
        println!(
            "{}: configuration OK",
            args.config_file
                .as_deref()
                .map_or_else(|| "<default>".to_owned(), |p| p.display().to_string())
        );
        return Ok(());
    }
    if args.daemon {
        // Before any thread exists: fork, new session, stdin/stdout/stderr to /dev/null.
        nix::unistd::daemon(true, false)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(settings, &config))
}

async fn serve(settings: ServerSettings, config: &Config) -> anyhow::Result<()> {
    let log_notice = settings.log.notice;
    if log_notice {
        eprintln!(
            "{}: pigeon version {} starting",
            unix_now(),
            env!("CARGO_PKG_VERSION")
        );
        if config.is_local_only() {
            eprintln!(
                "{}: Starting in local only mode. Connections will only be possible from clients running on this machine.",
                unix_now()
            );
            eprintln!(
                "{}: Create a configuration file which defines a listener to allow remote access (see docs/labs.md, or `listener 1883` and `allow_anonymous true` for a lab network).",
                unix_now()
            );
        }
    }
    let server = Server::start(settings).await?;
    if let Some(pid_file) = &config.pid_file {
        std::fs::write(pid_file, format!("{}\n", std::process::id()))?;
    }
    server.run_until(shutdown_signal()).await;
    if log_notice {
        eprintln!(
            "{}: pigeon version {} terminating",
            unix_now(),
            env!("CARGO_PKG_VERSION")
        );
    }
    if let Some(pid_file) = &config.pid_file {
        let _ = std::fs::remove_file(pid_file);
    }
    Ok(())
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers, run until killed.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn unix_now() -> u64 {
    pigeon_broker::clock::wall()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
