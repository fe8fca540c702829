//! `pigeon`: the MQTT broker, started the way `mosquitto` is.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use pigeon_broker::auth::Notes;
use pigeon_broker::config::{Config, LogTypes};
use pigeon_broker::log::{Log, strerror};
use pigeon_broker::server::{Server, ServerSettings, Shared};
use pigeon_cli::systemd;
use tokio::signal::unix::{SignalKind, signal};

/// jemalloc: no header per allocation and size classes that fit the broker's per-connection
/// objects (an idle connection is a few allocations of a few hundred bytes each).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
            eprintln!("{}", error_text(&e));
            ExitCode::from(1)
        }
    }
}

/// An error as the broker words it: configuration errors already read
/// "Error: FILE:LINE: DIRECTIVE: ...", others get the "Error: " prefix.
fn error_text(e: &anyhow::Error) -> String {
    let message = format!("{e:#}");
    if message.starts_with("Error: ") {
        message
    } else {
        format!("Error: {message}")
    }
}

/// The configuration: the file `-c` names, or the default one, with the `-p` ports.
fn load_config(args: &Args) -> anyhow::Result<Config> {
    let mut config = match &args.config_file {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    config.apply_cli_ports(&args.port)?;
    Ok(config)
}

/// The settings `config` gives, with what the command line overrides, and the lines to log
/// about the password and ACL files it reads.
fn settings_for(config: &Config, args: &Args) -> anyhow::Result<(ServerSettings, Notes)> {
    let (mut settings, notes) = ServerSettings::from_config_with_notes(config)?;
    if args.verbose {
        // As Mosquitto's -v: every type, whatever log_type says; destinations unchanged.
        settings.log.types = LogTypes::ALL;
    }
    Ok((settings, notes))
}

fn run(args: Args) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    let (settings, notes) = settings_for(&config, &args)?;
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
    runtime.block_on(serve(settings, notes, &config, &args))
}

async fn serve(
    settings: ServerSettings,
    notes: Notes,
    config: &Config,
    args: &Args,
) -> anyhow::Result<()> {
    // Before the listeners open: a SIGHUP from then on reloads rather than ends the process.
    let hangup = signal(SignalKind::hangup());
    let log = Arc::new(Log::open(settings.log.clone()));
    let version = env!("CARGO_PKG_VERSION");
    log.info(format_args!("pigeon version {version} starting"));
    match config.files.first() {
        Some(path) => log.info(format_args!("Config loaded from {}.", path.display())),
        None => log.info("Using default config."),
    }
    for (kind, line) in notes {
        log.log(kind, line);
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
    let persistence_dir = settings.persistence.as_ref().map(|p| p.layout.dir.clone());
    let server = Server::start_with_log(settings, Arc::clone(&log)).await?;
    drop_privileges(
        &config.user,
        log_file.as_deref(),
        persistence_dir.as_deref(),
    )?;
    // Read at start with the privileges the broker started with, the password and ACL files
    // are read again by each reload with those it runs with: as in Mosquitto, which reads
    // them after giving up root, they must be readable by `user`. Checked now rather than
    // at the first SIGHUP.
    security_files_readable(config).map_err(anyhow::Error::msg)?;
    log.info(format_args!("pigeon version {version} running"));
    // Under systemd (Type=notify), the unit is started now: the listeners accept.
    notify(&log, &format!("READY=1\nMAINPID={}", std::process::id()));
    let shared = Arc::clone(server.shared());
    server
        .run_until(async {
            let shutdown = shutdown_signal();
            tokio::pin!(shutdown);
            let Ok(mut hangup) = hangup else {
                return shutdown.await;
            };
            loop {
                tokio::select! {
                    () = &mut shutdown => return,
                    _ = hangup.recv() => {
                        notify(&shared.log, &systemd::reloading());
                        reload(&shared, config, args);
                        notify(&shared.log, "READY=1");
                    }
                }
            }
        })
        .await;
    notify(&log, "STOPPING=1");
    log.info(format_args!("pigeon version {version} terminating"));
    if let Some(pid_file) = &config.pid_file {
        let _ = std::fs::remove_file(pid_file);
    }
    Ok(())
}

/// Tells systemd `state` when it started the broker (`NOTIFY_SOCKET`); a failure is logged,
/// not fatal.
fn notify(log: &Log, state: &str) {
    if let Err(e) = systemd::notify(state) {
        log.warning(format_args!("Warning: Unable to notify systemd: {e}."));
    }
}

/// SIGHUP, Mosquitto's reload signal: reads the configuration file again (with the command
/// line's `-p` and `-v` applied as at start) and applies it ([`Shared::reload`]): what a
/// running broker cannot change (the listeners, `max_connections`, `max_qos`, `user`,
/// `pid_file`) is logged and waits for a restart. A configuration with an error, or one the
/// broker would refuse to start with, is not applied at all: the error is logged and the
/// settings in force stay. Either way the log file is reopened (for logrotate).
fn reload(shared: &Shared, started: &Config, args: &Args) {
    let log = &shared.log;
    log.notice("Reloading config.");
    if args.config_file.is_none() {
        // The default configuration: nothing to read again.
        let _ = log.reopen();
        return;
    }
    let loaded = load_config(args).and_then(|config| {
        let (settings, notes) = settings_for(&config, args)?;
        Ok((config, settings, notes))
    });
    match loaded {
        Ok((config, settings, notes)) => {
            for warning in &config.warnings {
                log.warning(warning);
            }
            for (kind, line) in notes {
                log.log(kind, line);
            }
            for line in restart_only_changes(started, &config) {
                log.notice(line);
            }
            // Reopens the log file too.
            shared.reload(settings);
        }
        Err(e) => {
            log.error(error_text(&e));
            log.error(
                "The configuration file has errors: the broker keeps running with the old one.",
            );
            let _ = log.reopen();
        }
    }
}

/// The process settings that only a restart changes (`user`, `pid_file`: "Not reloaded on
/// reload signal" in Mosquitto's manual), as lines saying so where `new` differs from the
/// configuration the broker started with.
fn restart_only_changes(started: &Config, new: &Config) -> Vec<String> {
    let display = |p: &Option<PathBuf>| {
        p.as_deref()
            .map_or_else(|| "none".to_owned(), |p| p.display().to_string())
    };
    let mut lines = Vec::new();
    if new.user != started.user {
        lines.push(format!(
            "user changed from {} to {}: this takes effect when the broker restarts.",
            started.user, new.user
        ));
    }
    if new.pid_file != started.pid_file {
        lines.push(format!(
            "pid_file changed from {} to {}: this takes effect when the broker restarts.",
            display(&started.pid_file),
            display(&new.pid_file)
        ));
    }
    lines
}

/// Checks that every `password_file` and `acl_file` of `config` can be opened (after the
/// privileges are dropped), with the error Mosquitto gives when one cannot.
fn security_files_readable(config: &Config) -> Result<(), String> {
    let securities =
        std::iter::once(&config.security).chain(config.listeners.iter().map(|l| &l.security));
    for security in securities {
        let files = [
            (&security.password_file, "pwfile"),
            (&security.acl_file, "acl_file"),
        ];
        for (path, what) in files {
            if let Some(path) = path
                && let Err(e) = std::fs::File::open(path)
            {
                return Err(format!(
                    "Error: Unable to open {what} \"{}\": {}.",
                    path.display(),
                    strerror(&e)
                ));
            }
        }
    }
    Ok(())
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
fn drop_privileges(
    user: &str,
    log_file: Option<&Path>,
    persistence_dir: Option<&Path>,
) -> anyhow::Result<()> {
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
    if let Some(dir) = persistence_dir {
        // The store goes on writing there (new log segments, snapshots) as `user`: the
        // directory and what the broker opened in it become `user`'s, as the log file does.
        // Best effort, like the log file: an error shows when the store next writes.
        let owner = (Some(found.uid.as_raw()), Some(found.gid.as_raw()));
        let _ = std::os::unix::fs::chown(dir, owner.0, owner.1);
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let _ = std::os::unix::fs::chown(entry.path(), owner.0, owner.1);
            }
        }
    }
    setgroups(&[found.gid])
        .and_then(|()| setgid(found.gid))
        .and_then(|()| setuid(found.uid))
        .map_err(|e| anyhow::anyhow!("Unable to drop privileges to '{}': {e}", found.name))?;
    Ok(())
}
