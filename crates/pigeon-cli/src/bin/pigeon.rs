//! `pigeon`: the MQTT broker, started the way `mosquitto` is.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use pigeon_broker::config::{Config, LogTypes};
use pigeon_broker::log::Log;
use pigeon_broker::server::{Server, ServerSettings};
use tokio::signal::unix::{SignalKind, signal};

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
            // Configuration errors already read "Error: FILE:LINE: DIRECTIVE: ...".
            let message = format!("{e:#}");
            if message.starts_with("Error: ") {
                eprintln!("{message}");
            } else {
                eprintln!("Error: {message}");
            }
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
        // As Mosquitto's -v: every type, whatever log_type says; destinations unchanged.
        settings.log.types = LogTypes::ALL;
    }
    for warning in &config.warnings {
        eprintln!("{warning}");
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
    let log = Arc::new(Log::open(settings.log.clone()));
    let version = env!("CARGO_PKG_VERSION");
    log.info(format_args!("pigeon version {version} starting"));
    match config.files.first() {
        Some(path) => log.info(format_args!("Config loaded from {}.", path.display())),
        None => log.info("Using default config."),
    }
    if config.is_local_only() {
        log.warning(
            "Starting in local only mode. Connections will only be possible from clients \
             running on this machine.",
        );
        log.warning("Create a configuration file which defines a listener to allow remote access.");
        log.warning("For more details see docs/labs.md");
    }
    // As Mosquitto: the pid file is written while still privileged, then the listeners are
    // bound (ports below 1024 need root), then root gives itself up for `user`.
    if let Some(pid_file) = &config.pid_file {
        std::fs::write(pid_file, format!("{}\n", std::process::id()))
            .map_err(|e| anyhow::anyhow!("Unable to write pid file {}: {e}", pid_file.display()))?;
    }
    let log_file = settings.log.dest.file.clone();
    let server = Server::start_with_log(settings, Arc::clone(&log)).await?;
    drop_privileges(&config.user, log_file.as_deref())?;
    log.info(format_args!("pigeon version {version} running"));
    let config_file = config.files.first().cloned();
    server
        .run_until(async {
            let shutdown = shutdown_signal();
            tokio::pin!(shutdown);
            let Ok(mut hangup) = signal(SignalKind::hangup()) else {
                return shutdown.await;
            };
            loop {
                tokio::select! {
                    () = &mut shutdown => return,
                    _ = hangup.recv() => reload(&log, config_file.as_deref()),
                }
            }
        })
        .await;
    log.info(format_args!("pigeon version {version} terminating"));
    if let Some(pid_file) = &config.pid_file {
        let _ = std::fs::remove_file(pid_file);
    }
    Ok(())
}

/// SIGHUP: reopens the log file (for logrotate) and checks the configuration file again,
/// logging what is wrong with it. Changed settings take effect at the next start.
fn reload(log: &Log, config_file: Option<&Path>) {
    log.notice("Reloading config.");
    let _ = log.reopen();
    if let Some(path) = config_file
        && let Err(e) = Config::load(path)
    {
        log.error(format_args!("{e}"));
        log.error("The configuration file has errors: the broker keeps running with the old one.");
    }
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
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

/// When running as root, switches to `user` (`user` directive, default `mosquitto`), or to
/// `nobody` if that user does not exist, as Mosquitto does. Does nothing otherwise.
/// The log file, opened while still root, is given to that user so that SIGHUP can reopen it.
fn drop_privileges(user: &str, log_file: Option<&Path>) -> anyhow::Result<()> {
    use nix::unistd::{Uid, User, setgid, setgroups, setuid};

    if !Uid::effective().is_root() || user.is_empty() {
        return Ok(());
    }
    let found = match User::from_name(user)? {
        Some(found) => found,
        None => {
            eprintln!(
                "Warning: Unable to drop privileges to '{user}' because this user does not exist. Trying 'nobody' instead."
            );
            User::from_name("nobody")?.ok_or_else(|| {
                anyhow::anyhow!("Unable to drop privileges to 'nobody': no such user")
            })?
        }
    };
    if let Some(path) = log_file {
        // Best effort: a file on a read-only or foreign file system stays as it is.
        let _ = std::os::unix::fs::chown(path, Some(found.uid.as_raw()), Some(found.gid.as_raw()));
    }
    setgroups(&[found.gid])
        .and_then(|()| setgid(found.gid))
        .and_then(|()| setuid(found.uid))
        .map_err(|e| anyhow::anyhow!("Unable to drop privileges to '{}': {e}", found.name))?;
    Ok(())
}
