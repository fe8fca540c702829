//! Reloading the configuration while the broker runs (SIGHUP), as Mosquitto's reload signal
//! does.
//!
//! The settings in force are one [`ServerSettings`] behind [`LiveSettings`]: readers take the
//! whole snapshot (an `Arc`) and never hold a lock while they wait; a reload replaces it whole.
//! A connection takes the snapshot when it is accepted and takes it again when a reload
//! replaced it; the `$SYS` and session expiry tasks wait for replacements.
//!
//! [`ServerSettings::reloaded`] decides what a reload changes: everything the configuration
//! says, except what only a restart changes, as in Mosquitto, whose manual marks these "Not
//! reloaded on reload signal": the listeners themselves (their sockets are not opened again:
//! `listener`, `port`, `bind_address`, `bind_interface`, `socket_domain`), and each
//! listener's `max_connections` and `max_qos`. What differs there is logged and waits for the
//! next start.

use std::fmt;
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::LogTypes;
use crate::server::{ListenerSettings, ServerSettings};

/// The settings in force, replaced whole by a reload.
#[derive(Debug)]
pub struct LiveSettings(watch::Sender<Arc<ServerSettings>>);

impl LiveSettings {
    /// Starts with `settings`.
    pub fn new(settings: ServerSettings) -> Self {
        LiveSettings(watch::Sender::new(Arc::new(settings)))
    }

    /// The settings in force now.
    pub fn load(&self) -> Arc<ServerSettings> {
        Arc::clone(&self.0.borrow())
    }

    /// A receiver that sees every later replacement (`has_changed`, `changed`); its first
    /// value counts as seen.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ServerSettings>> {
        self.0.subscribe()
    }

    /// Replaces the settings in force.
    pub fn store(&self, settings: ServerSettings) {
        self.0.send_replace(Arc::new(settings));
    }
}

/// What a reload makes of the settings in force: see [`ServerSettings::reloaded`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// The settings to run with from now on.
    pub settings: ServerSettings,
    /// Lines for the log, each with its type: what the reload could not apply.
    pub notes: Vec<(LogTypes, String)>,
}

impl ServerSettings {
    /// The settings to run with once a reload read `new` from the configuration, `self` being
    /// the settings in force.
    ///
    /// Everything comes from `new` except what only a restart changes, which stays as in
    /// `self`: the listeners themselves (the list keeps its shape, each listener its address,
    /// `bind_interface` and whether binding it was optional) and each listener's
    /// `max_connections` and `max_qos`. Each listener in force takes the other settings of
    /// its counterpart in `new`: the listener from the same `listener` block (by position in
    /// the configuration) and, when a block binds several addresses, the same one of them.
    ///
    /// The notes say what differs and waits for a restart: a notice for each such setting,
    /// and a warning when listeners were added or removed (those in force without a
    /// counterpart keep their settings).
    pub fn reloaded(&self, new: ServerSettings) -> Reloaded {
        let mut notes = Vec::new();
        let running_keys = keys(&self.listeners);
        let new_keys = keys(&new.listeners);
        if running_keys != new_keys {
            notes.push((
                LogTypes::WARNING,
                format!(
                    "Warning: It is not currently possible to add/remove listeners when \
                     reloading the config file: {} listener addresses are configured now, {} \
                     at start. Listeners are matched by their position in the file; the \
                     others wait for a restart.",
                    new.listeners.len(),
                    self.listeners.len()
                ),
            ));
        }
        let listeners = self
            .listeners
            .iter()
            .zip(&running_keys)
            .map(
                |(running, key)| match new_keys.iter().position(|k| k == key) {
                    Some(i) => merge_listener(running, &new.listeners[i], &mut notes),
                    None => running.clone(),
                },
            )
            .collect();
        Reloaded {
            settings: ServerSettings { listeners, ..new },
            notes,
        }
    }
}

/// Each listener's key: its `listener` block, and its rank among that block's addresses.
fn keys(listeners: &[ListenerSettings]) -> Vec<(usize, usize)> {
    listeners
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let rank = listeners[..i]
                .iter()
                .filter(|o| o.config_index == l.config_index)
                .count();
            (l.config_index, rank)
        })
        .collect()
}

/// `running` with the reloadable settings of `new`; notes for the others that differ.
fn merge_listener(
    running: &ListenerSettings,
    new: &ListenerSettings,
    notes: &mut Vec<(LogTypes, String)>,
) -> ListenerSettings {
    let addr = running.addr;
    let mut note = |what: &str, old: &dyn fmt::Display, now: &dyn fmt::Display| {
        notes.push((
            LogTypes::NOTICE,
            format!(
                "{what} of the listener on {addr} changed from {old} to {now}: this takes \
                 effect when the broker restarts."
            ),
        ));
    };
    if new.addr != running.addr {
        note("The address", &running.addr, &new.addr);
    }
    if new.bind_interface != running.bind_interface {
        let name = |i: &Option<String>| i.clone().unwrap_or_else(|| "none".to_owned());
        note(
            "bind_interface",
            &name(&running.bind_interface),
            &name(&new.bind_interface),
        );
    }
    if new.max_connections != running.max_connections {
        // As the configuration writes "no limit".
        let count = |n: Option<usize>| n.map_or_else(|| "-1".to_owned(), |n| n.to_string());
        note(
            "max_connections",
            &count(running.max_connections),
            &count(new.max_connections),
        );
    }
    let max_qos = running.connection.max_qos;
    if new.connection.max_qos != max_qos {
        note("max_qos", &(max_qos as u8), &(new.connection.max_qos as u8));
    }
    let protocol = |l: &ListenerSettings| match l.websockets {
        Some(_) => "websockets",
        None => "mqtt",
    };
    if protocol(new) != protocol(running) {
        note("The protocol", &protocol(running), &protocol(new));
    }
    let mut merged = new.clone();
    // The protocol stays; within it, `http_dir` and the header limit take effect at once.
    if merged.websockets.is_some() != running.websockets.is_some() {
        merged.websockets.clone_from(&running.websockets);
    }
    merged.addr = running.addr;
    merged.config_index = running.config_index;
    merged.bind_interface.clone_from(&running.bind_interface);
    merged.optional = running.optional;
    merged.max_connections = running.max_connections;
    Arc::make_mut(&mut merged.connection).max_qos = max_qos;
    merged
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::path::Path;
    use std::time::Duration;

    use pigeon_proto::QoS;

    use super::*;
    use crate::config::Config;

    fn settings(text: &str) -> ServerSettings {
        ServerSettings::from_config(&Config::parse(text, Path::new("test.conf")).unwrap()).unwrap()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_protocol_waits_for_a_restart_but_http_dir_does_not() {
        let running = settings("listener 8080 127.0.0.1\nprotocol websockets\nhttp_dir /a");
        let reloaded = running.reloaded(settings(
            "listener 8080 127.0.0.1\nprotocol websockets\nhttp_dir /b",
        ));
        let ws = reloaded.settings.listeners[0]
            .websockets
            .as_deref()
            .unwrap();
        assert_eq!(ws.http_dir.as_deref(), Some(Path::new("/b")));
        assert!(reloaded.notes.is_empty(), "{:?}", reloaded.notes);
        let reloaded = running.reloaded(settings("listener 8080 127.0.0.1"));
        assert!(reloaded.settings.listeners[0].websockets.is_some());
        assert_eq!(reloaded.notes.len(), 1);
        assert!(
            reloaded.notes[0].1.contains(
                "The protocol of the listener on 127.0.0.1:8080 changed from websockets to mqtt"
            ),
            "{:?}",
            reloaded.notes
        );
    }

    #[test]
    fn the_same_configuration_changes_nothing() {
        let text = "listener 1883 127.0.0.1\nlistener 1884 127.0.0.1\nmax_connections 3\n";
        let running = settings(text);
        let reloaded = running.reloaded(settings(text));
        assert_eq!(reloaded.settings, running);
        assert!(reloaded.notes.is_empty(), "{:?}", reloaded.notes);
    }

    #[test]
    fn reloadable_settings_are_taken() {
        let running = settings("listener 1883 127.0.0.1\n");
        let new = settings(
            "listener 1883 127.0.0.1\nallow_anonymous true\nallow_zero_length_clientid false\n\
             auto_id_prefix pre-\nclientid_prefixes ok-\nmax_packet_size 1000\n\
             message_size_limit 100\nretain_available false\nconnect_timeout 5\n\
             upgrade_outgoing_qos true\nmax_inflight_messages 3\nmax_queued_messages 4\n\
             queue_qos0_messages true\nsys_interval 0\npersistent_client_expiration 1h\n\
             set_tcp_nodelay true\nlog_type all\nlog_timestamp false\nconnection_messages false\n",
        );
        let reloaded = running.reloaded(new.clone());
        assert!(reloaded.notes.is_empty(), "{:?}", reloaded.notes);
        assert_eq!(reloaded.settings, new);
        let l = &reloaded.settings.listeners[0];
        assert!(l.allow_anonymous && !l.allow_zero_length_clientid);
        assert_eq!(l.auto_id_prefix, "pre-");
        assert!(!l.connection.retain_available);
        assert_eq!(l.connection.message_size_limit, 100);
        assert_eq!(l.connection.connect_timeout, Duration::from_secs(5));
        let s = &reloaded.settings;
        assert_eq!(s.clientid_prefixes, ["ok-"]);
        assert_eq!(s.max_packet_size, 1000);
        assert!(s.routing.upgrade_outgoing_qos && s.routing.outbound.queue_qos0_messages);
        assert_eq!(s.routing.outbound.max_inflight_messages, 3);
        assert_eq!(s.sys_interval, None);
        assert_eq!(
            s.persistent_client_expiration,
            Some(Duration::from_secs(3600))
        );
        assert!(s.nodelay && !s.log.timestamp && !s.log.connection_messages);
        assert_eq!(s.log.types, LogTypes::ALL);
    }

    #[test]
    fn listener_sockets_max_connections_and_max_qos_wait_for_a_restart() {
        let running = settings("listener 1883 127.0.0.1\nmax_connections 10\n");
        let new = settings(
            "listener 1884 127.0.0.1\nmax_connections 20\nmax_qos 1\nallow_anonymous true\n",
        );
        let reloaded = running.reloaded(new);
        let l = &reloaded.settings.listeners[0];
        assert_eq!(l.addr, addr("127.0.0.1:1883"));
        assert_eq!(l.max_connections, Some(10));
        assert_eq!(l.connection.max_qos, QoS::ExactlyOnce);
        // The rest of the block applies to the listener in force.
        assert!(l.allow_anonymous);
        let lines: Vec<&str> = reloaded.notes.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(
            lines,
            [
                "The address of the listener on 127.0.0.1:1883 changed from 127.0.0.1:1883 to \
                 127.0.0.1:1884: this takes effect when the broker restarts.",
                "max_connections of the listener on 127.0.0.1:1883 changed from 10 to 20: this \
                 takes effect when the broker restarts.",
                "max_qos of the listener on 127.0.0.1:1883 changed from 2 to 1: this takes \
                 effect when the broker restarts.",
            ]
        );
        assert!(reloaded.notes.iter().all(|(t, _)| *t == LogTypes::NOTICE));
    }

    #[test]
    fn listeners_match_by_block_and_address_rank() {
        let running = settings(
            "per_listener_settings true\nlistener 1883 127.0.0.1\nlistener 1884 127.0.0.1\n",
        );
        // A listener added at the end: the first two keep their places; the new one waits.
        let new = settings(
            "per_listener_settings true\nlistener 1883 127.0.0.1\nauto_id_prefix a-\n\
             listener 1884 127.0.0.1\nauto_id_prefix b-\nlistener 1885 127.0.0.1\n",
        );
        let reloaded = running.reloaded(new);
        let s = &reloaded.settings;
        assert_eq!(s.listeners.len(), 2);
        assert_eq!(s.listeners[0].auto_id_prefix, "a-");
        assert_eq!(s.listeners[1].auto_id_prefix, "b-");
        assert_eq!(s.listeners[1].addr, addr("127.0.0.1:1884"));
        assert_eq!(reloaded.notes.len(), 1, "{:?}", reloaded.notes);
        let (kind, line) = &reloaded.notes[0];
        assert_eq!(*kind, LogTypes::WARNING);
        assert!(
            line.starts_with(
                "Warning: It is not currently possible to add/remove listeners when reloading \
                 the config file: 3 listener addresses are configured now, 2 at start."
            ),
            "{line}"
        );
    }

    #[test]
    fn a_removed_listener_keeps_its_settings() {
        let running = settings(
            "per_listener_settings true\nlistener 1883 127.0.0.1\nallow_anonymous true\n\
             listener 1884 127.0.0.1\nallow_anonymous true\n",
        );
        let new = settings("per_listener_settings true\nlistener 1883 127.0.0.1\n");
        let reloaded = running.reloaded(new);
        let s = &reloaded.settings;
        assert_eq!(s.listeners.len(), 2);
        assert!(!s.listeners[0].allow_anonymous);
        assert!(s.listeners[1].allow_anonymous);
        assert_eq!(reloaded.notes[0].0, LogTypes::WARNING);
    }

    #[test]
    fn a_block_binding_several_addresses_matches_address_by_address() {
        // Local-only mode: one block for 127.0.0.1 and one for ::1.
        let running = settings("");
        let reloaded = running.reloaded(settings("allow_anonymous false\n"));
        assert!(reloaded.notes.is_empty(), "{:?}", reloaded.notes);
        assert!(
            reloaded
                .settings
                .listeners
                .iter()
                .all(|l| !l.allow_anonymous)
        );
        // `listener 1883` binds 0.0.0.0 and ::, both from block 0.
        let running = settings("listener 1883\n");
        let new = settings("listener 1883\nmax_qos 0\nmessage_size_limit 5\n");
        let reloaded = running.reloaded(new);
        assert_eq!(reloaded.settings.listeners.len(), 2);
        for l in &reloaded.settings.listeners {
            assert_eq!(l.connection.message_size_limit, 5);
            assert_eq!(l.connection.max_qos, QoS::ExactlyOnce);
        }
        assert_eq!(reloaded.notes.len(), 2, "{:?}", reloaded.notes);
    }

    #[test]
    fn live_settings_swap_whole_snapshots() {
        let live = LiveSettings::new(settings(""));
        let mut rx = live.subscribe();
        let before = live.load();
        assert!(!rx.has_changed().unwrap());
        live.store(settings("max_packet_size 100\n"));
        // A snapshot taken before is unchanged; a new one sees the new settings.
        assert_eq!(before.max_packet_size, settings("").max_packet_size);
        assert_eq!(live.load().max_packet_size, 100);
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update().max_packet_size, 100);
        assert!(!rx.has_changed().unwrap());
    }
}
