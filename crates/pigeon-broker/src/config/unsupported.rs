//! Mosquitto directives Pigeon recognises but does not implement, and why.
//!
//! Every directive of the Mosquitto 2.0 manual, and every other name Mosquitto 2.0 accepts
//! (older aliases such as `clientid` for `remote_clientid`), is either implemented by the
//! parser or listed here, so that a Mosquitto configuration never meets "unknown
//! configuration directive" for a real directive.

use super::error::ConfigErrorKind::{self, NotSupportedYet, RefusedByRustls, Unsupported};

/// Client certificate checks Pigeon does not have yet.
const CLIENT_CERT_DATES: &str =
    "client certificates are always checked for expiry; turning that off is not implemented";
/// Bridges to other brokers.
const BRIDGES: &str = "bridges are not planned yet";
/// Directives added to Mosquitto after 2.0, the version Pigeon follows.
const NEWER: &str = "a directive of Mosquitto versions after 2.0";
/// Mosquitto's plugin interface.
const PLUGINS: &str = "Mosquitto plugins are C libraries built for the Mosquitto process";
/// TLS with pre-shared keys.
const PSK: &str = "rustls does not implement TLS-PSK (pre-shared keys)";
/// Finite-field Diffie-Hellman parameters.
const DHPARAM: &str = "rustls has no finite-field Diffie-Hellman key exchange (it uses ECDHE)";
/// OpenSSL engines (hardware keys through OpenSSL).
pub(crate) const ENGINE: &str = "OpenSSL engines do not exist in rustls";
/// TLS before 1.2.
pub(crate) const OLD_TLS: &str = "rustls supports TLS 1.2 and TLS 1.3 only";

/// The bridge directives of Mosquitto 2.0, with their older aliases.
const BRIDGE_DIRECTIVES: &[&str] = &[
    "address",
    "addresses",
    "bridge_alpn",
    "bridge_attempt_unsubscribe",
    "bridge_bind_address",
    "bridge_cafile",
    "bridge_capath",
    "bridge_certfile",
    "bridge_insecure",
    "bridge_keyfile",
    "bridge_max_packet_size",
    "bridge_outgoing_retain",
    "bridge_protocol_version",
    "bridge_require_ocsp",
    "bridge_tls_version",
    "cleansession",
    "clientid",
    "connection",
    "idle_timeout",
    "keepalive_interval",
    "local_cleansession",
    "local_clientid",
    "local_password",
    "local_username",
    "notification_topic",
    "notifications",
    "notifications_local_only",
    "password",
    "remote_clientid",
    "remote_password",
    "remote_username",
    "restart_timeout",
    "round_robin",
    "start_type",
    "threshold",
    "topic",
    "try_private",
    "username",
    // Added after Mosquitto 2.0.
    "bridge_ciphers",
    "bridge_ciphers_tls1.3",
    "bridge_max_topic_alias",
    "bridge_receive_maximum",
    "bridge_reload_type",
    "bridge_session_expiry_interval",
    "bridge_tcp_keepalive",
    "bridge_tcp_user_timeout",
];

/// The error for `directive` if it is a Mosquitto directive Pigeon does not implement;
/// `None` if Pigeon implements it or Mosquitto does not know it. `args` is the rest of the
/// line (unused today; kept for directives whose support depends on their value).
pub(crate) fn unsupported(directive: &str, _args: &str) -> Option<ConfigErrorKind> {
    let kind = match directive {
        "disable_client_cert_date_checks" => NotSupportedYet(CLIENT_CERT_DATES),
        "tls_engine" | "tls_engine_kpass_sha1" => RefusedByRustls(ENGINE),
        "psk_file" | "psk_hint" | "bridge_identity" | "bridge_psk" => RefusedByRustls(PSK),
        "dhparamfile" => RefusedByRustls(DHPARAM),
        "auth_plugin" | "plugin" | "global_plugin" | "auth_plugin_deny_special_chars" => {
            Unsupported(PLUGINS)
        }
        d if d.starts_with("auth_opt_") || d.starts_with("plugin_opt_") => Unsupported(PLUGINS),
        "accept_protocol_versions"
        | "websockets_origin"
        | "enable_control_api"
        | "global_max_clients"
        | "global_max_connections"
        | "max_topic_alias_broker" => NotSupportedYet(NEWER),
        d if BRIDGE_DIRECTIVES.contains(&d) => NotSupportedYet(BRIDGES),
        _ => return None,
    };
    Some(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(directive: &str, args: &str) -> Option<String> {
        unsupported(directive, args).map(|k| k.to_string())
    }

    #[test]
    fn tls_directives_are_implemented_except_date_checks() {
        for d in [
            "cafile",
            "capath",
            "certfile",
            "keyfile",
            "require_certificate",
            "tls_version",
            "tls_keyform",
            "ciphers",
            "ciphers_tls1.3",
            "crlfile",
            "use_identity_as_username",
            "use_subject_as_username",
        ] {
            assert_eq!(message(d, "x"), None, "{d}");
        }
        assert!(
            message("disable_client_cert_date_checks", "true")
                .unwrap()
                .starts_with("not supported yet (")
        );
    }

    #[test]
    fn rustls_refusals_say_why() {
        for d in [
            "psk_file",
            "psk_hint",
            "bridge_psk",
            "dhparamfile",
            "tls_engine",
        ] {
            let m = message(d, "x").unwrap();
            assert!(
                m.starts_with("not supported by Pigeon (rustls): "),
                "{d}: {m}"
            );
        }
    }

    #[test]
    fn other_families() {
        assert_eq!(message("http_dir", "/www"), None);
        assert_eq!(message("websockets_headers_size", "4096"), None);
        assert_eq!(
            message("websockets_origin", "https://example.com").as_deref(),
            Some("not supported yet (a directive of Mosquitto versions after 2.0)")
        );
        assert_eq!(
            message("connection", "b1").as_deref(),
            Some("not supported yet (bridges are not planned yet)")
        );
        assert_eq!(
            message("topic", "# both 0").as_deref(),
            Some("not supported yet (bridges are not planned yet)")
        );
        assert!(
            message("auth_opt_db_host", "x")
                .unwrap()
                .starts_with("not supported by Pigeon: ")
        );
        assert!(message("plugin_opt_x", "y").is_some());
        assert!(message("enable_control_api", "true").is_some());
    }

    #[test]
    fn implemented_and_unknown_directives_are_not_listed() {
        for d in [
            "listener",
            "allow_anonymous",
            "log_dest",
            "bogus",
            "auth_opt",
            "tls",
        ] {
            assert_eq!(message(d, ""), None, "{d}");
        }
    }
}
