//! TLS with rustls (the `ring` provider): [`TlsOptions`], loaded into a rustls client
//! configuration once per [`Client::connect`](crate::Client::connect).
//!
//! Trust: the CA file and the CA directory when given (both may be), else the system's trust
//! store (through `rustls-native-certs`, which reads the same OpenSSL locations and
//! `SSL_CERT_FILE`/`SSL_CERT_DIR` variables as Mosquitto's clients do). The server's
//! certificate chain is always verified; [`TlsOptions::insecure`] skips only the check of its
//! name, like `mosquitto_pub --insecure`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// A TLS protocol version that rustls speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum TlsVersion {
    /// TLS 1.2 (`tlsv1.2`).
    V1_2,
    /// TLS 1.3 (`tlsv1.3`).
    V1_3,
}

impl TlsVersion {
    /// Mosquitto's name for the version: `tlsv1.2` or `tlsv1.3`.
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::V1_2 => "tlsv1.2",
            TlsVersion::V1_3 => "tlsv1.3",
        }
    }

    fn rustls(self) -> &'static rustls::SupportedProtocolVersion {
        match self {
            TlsVersion::V1_2 => &rustls::version::TLS12,
            TlsVersion::V1_3 => &rustls::version::TLS13,
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TlsVersion {
    type Err = TlsError;

    /// Parses Mosquitto's names (`tlsv1.2`, `tlsv1.3`). `tlsv1` and `tlsv1.1` are an error:
    /// rustls does not implement them.
    fn from_str(s: &str) -> Result<Self, TlsError> {
        match s {
            "tlsv1.2" => Ok(TlsVersion::V1_2),
            "tlsv1.3" => Ok(TlsVersion::V1_3),
            "tlsv1" | "tlsv1.0" | "tlsv1.1" => Err(TlsError::Config(format!(
                "{s} is not supported: only tlsv1.2 and tlsv1.3 are"
            ))),
            _ => Err(TlsError::Config(format!(
                "unknown TLS version {s:?} (expected tlsv1.2 or tlsv1.3)"
            ))),
        }
    }
}

/// What went wrong with TLS: loading the configuration, or the handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file (CA, certificate, key) or the CA directory could not be read or holds nothing
    /// usable.
    #[error("{}: {message}", path.display())]
    File {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The options cannot make a TLS configuration (unsupported version, a certificate
    /// without its key, an invalid server name, an empty system trust store...).
    #[error("invalid TLS options: {0}")]
    Config(String),
    /// The server's certificate was refused: not signed by a trusted CA, expired, not valid
    /// for the host name...
    #[error("certificate verify failed: {0}")]
    CertificateVerifyFailed(String),
    /// The handshake failed otherwise (an alert from the server, no common version or cipher
    /// suite, not TLS at all...).
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
}

impl TlsError {
    fn file(path: &Path, message: impl Into<String>) -> TlsError {
        TlsError::File {
            path: path.to_owned(),
            message: message.into(),
        }
    }

    /// The error rustls reported on a connection, described.
    pub(crate) fn from_rustls(error: &rustls::Error) -> TlsError {
        match error {
            rustls::Error::InvalidCertificate(e) => {
                TlsError::CertificateVerifyFailed(describe_certificate_error(e))
            }
            rustls::Error::AlertReceived(alert) => {
                TlsError::Handshake(format!("the server sent the alert {alert:?}"))
            }
            other => TlsError::Handshake(other.to_string()),
        }
    }
}

fn describe_certificate_error(error: &CertificateError) -> String {
    match error {
        CertificateError::UnknownIssuer => {
            "unable to get local issuer certificate (the server's certificate is not signed by \
             a trusted CA)"
                .to_owned()
        }
        CertificateError::BadSignature => "certificate signature failure".to_owned(),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            format!("certificate has expired ({error})")
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            format!("certificate is not yet valid ({error})")
        }
        CertificateError::Revoked => "certificate revoked".to_owned(),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!("host name mismatch ({error})")
        }
        other => other.to_string(),
    }
}

/// TLS options: whom to trust, the client's certificate, versions and ALPN.
///
/// With neither [`ca_file`](Self::ca_file) nor [`ca_dir`](Self::ca_dir), the system's trust
/// store is used. The server name sent (SNI) and checked against the certificate is the host
/// connected to, unless [`server_name`](Self::server_name) says otherwise.
///
/// ```
/// use pigeon_client::{ConnectOptions, TlsOptions, TlsVersion, Transport};
///
/// let tls = TlsOptions::new()
///     .ca_file("/etc/mosquitto/ca_certificates/ca.crt")
///     .client_certificate("client.crt", "client.key")
///     .min_version(TlsVersion::V1_3);
/// let options = ConnectOptions::new("broker.example", 8883).transport(Transport::Tls(tls));
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    ca_file: Option<PathBuf>,
    ca_dir: Option<PathBuf>,
    system_roots: bool,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    insecure: bool,
    min_version: Option<TlsVersion>,
    max_version: Option<TlsVersion>,
    alpn: Vec<Vec<u8>>,
    server_name: Option<String>,
}

impl TlsOptions {
    /// The defaults: the system's trust store, no client certificate, TLS 1.2 and 1.3, the
    /// host name verified, no ALPN.
    pub fn new() -> Self {
        TlsOptions::default()
    }

    /// Trusts the CA certificates of this PEM file (one or several; Mosquitto's `--cafile`).
    #[must_use]
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Trusts the CA certificates of every PEM file in this directory (Mosquitto's
    /// `--capath`). Files holding no certificate are skipped; the directory must hold at
    /// least one.
    #[must_use]
    pub fn ca_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_dir = Some(path.into());
        self
    }

    /// Also trusts the system's trust store when a CA file or directory is given (Mosquitto's
    /// `--tls-use-os-certs`). Without a CA file or directory, the system's store is used
    /// anyway.
    #[must_use]
    pub fn system_roots(mut self, on: bool) -> Self {
        self.system_roots = on;
        self
    }

    /// The client's certificate chain and private key, both PEM (Mosquitto's `--cert` and
    /// `--key`). The key may be PKCS#8, PKCS#1 (RSA) or SEC1 (EC); encrypted keys are not
    /// supported.
    #[must_use]
    pub fn client_certificate(
        mut self,
        cert_file: impl Into<PathBuf>,
        key_file: impl Into<PathBuf>,
    ) -> Self {
        self.cert_file = Some(cert_file.into());
        self.key_file = Some(key_file.into());
        self
    }

    /// Skips the check that the server's certificate is valid for the host name (Mosquitto's
    /// `--insecure`). The certificate chain is still verified against the trusted CAs.
    #[must_use]
    pub fn insecure(mut self, on: bool) -> Self {
        self.insecure = on;
        self
    }

    /// The lowest TLS version offered (TLS 1.2 by default).
    #[must_use]
    pub fn min_version(mut self, version: TlsVersion) -> Self {
        self.min_version = Some(version);
        self
    }

    /// The highest TLS version offered (TLS 1.3 by default).
    #[must_use]
    pub fn max_version(mut self, version: TlsVersion) -> Self {
        self.max_version = Some(version);
        self
    }

    /// Offers this protocol with ALPN (for instance `mqtt`); may be called several times, in
    /// order of preference.
    #[must_use]
    pub fn alpn_protocol(mut self, protocol: impl Into<Vec<u8>>) -> Self {
        self.alpn.push(protocol.into());
        self
    }

    /// The name sent in SNI and checked against the server's certificate, instead of the host
    /// connected to (which may then be an address).
    #[must_use]
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Whether the host name check is skipped.
    pub fn is_insecure(&self) -> bool {
        self.insecure
    }

    /// Loads every file the options name and builds the TLS configuration, as
    /// [`Client::connect`](crate::Client::connect) does, to report bad options early.
    ///
    /// # Errors
    /// [`TlsError::File`] for a file or directory that cannot be read or holds nothing
    /// usable, [`TlsError::Config`] for inconsistent options.
    pub fn check(&self) -> Result<(), TlsError> {
        self.client_config().map(drop)
    }

    /// The rustls configuration.
    pub(crate) fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let min = self.min_version.unwrap_or(TlsVersion::V1_2);
        let max = self.max_version.unwrap_or(TlsVersion::V1_3);
        let versions: Vec<_> = [TlsVersion::V1_2, TlsVersion::V1_3]
            .into_iter()
            .filter(|v| (min..=max).contains(v))
            .map(TlsVersion::rustls)
            .collect();
        if versions.is_empty() {
            return Err(TlsError::Config(format!(
                "no TLS version between {min} and {max}"
            )));
        }
        let roots = Arc::new(self.root_store()?);
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&versions)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnlyVerifier {
                    roots,
                    algorithms: provider.signature_verification_algorithms,
                }))
        } else {
            let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_webpki_verifier(verifier)
        };
        let mut config = match (&self.cert_file, &self.key_file) {
            (Some(cert_file), Some(key_file)) => {
                let chain = load_certificates(cert_file)?;
                let key = load_key(key_file)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| TlsError::file(key_file, format!("unusable client key: {e}")))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(TlsError::Config(
                    "a client certificate needs its key, and a key its certificate".to_owned(),
                ));
            }
        };
        config.alpn_protocols = self.alpn.clone();
        Ok(Arc::new(config))
    }

    /// The server name for SNI and verification: the override, or `host`.
    pub(crate) fn server_name_for(&self, host: &str) -> Result<ServerName<'static>, TlsError> {
        let name = self.server_name.as_deref().unwrap_or(host);
        // An IPv6 address may come in brackets, as in URLs.
        let bare = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        ServerName::try_from(bare.to_owned())
            .map_err(|_| TlsError::Config(format!("invalid server name {name:?}")))
    }

    fn root_store(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        if let Some(path) = &self.ca_file {
            for cert in load_certificates(path)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError::file(path, format!("invalid CA certificate: {e}")))?;
            }
        }
        if let Some(dir) = &self.ca_dir {
            let entries = std::fs::read_dir(dir).map_err(|e| TlsError::file(dir, e.to_string()))?;
            let mut paths: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.is_file())
                .collect();
            paths.sort();
            let before = roots.len();
            for path in paths {
                // Not every file of a CA directory is a certificate (c_rehash links point to
                // the same ones; there may be CRLs or notes): take what parses.
                let Ok(pem) = std::fs::read(&path) else {
                    continue;
                };
                let certs = CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok);
                roots.add_parsable_certificates(certs);
            }
            if roots.len() == before {
                return Err(TlsError::file(
                    dir,
                    "no CA certificate found in the directory",
                ));
            }
        }
        if (self.ca_file.is_none() && self.ca_dir.is_none()) || self.system_roots {
            let native = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                let why = native
                    .errors
                    .first()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default();
                return Err(TlsError::Config(format!(
                    "no CA certificate found in the system's trust store{why}; give a CA file"
                )));
            }
        }
        Ok(roots)
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::file(path, e.to_string()))
}

/// Every certificate of a PEM file; at least one.
fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::file(path, format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::file(path, "no certificate found (expected PEM)"));
    }
    Ok(certs)
}

/// The first private key of a PEM file: PKCS#8, PKCS#1 or SEC1.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_file(path)?;
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(key) => Ok(key),
        Err(_) if pem.windows(9).any(|w| w == b"ENCRYPTED") => Err(TlsError::file(
            path,
            "encrypted private keys are not supported",
        )),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => Err(TlsError::file(
            path,
            "no private key found (expected PEM: PKCS#8, PKCS#1 or SEC1)",
        )),
        Err(e) => Err(TlsError::file(path, format!("invalid PEM: {e}"))),
    }
}

/// Verifies the server's certificate chain against the trusted CAs, but not its name: what
/// [`TlsOptions::insecure`] asks for.
#[derive(Debug)]
struct ChainOnlyVerifier {
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ChainOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_like_mosquitto() {
        assert_eq!("tlsv1.2".parse::<TlsVersion>(), Ok(TlsVersion::V1_2));
        assert_eq!("tlsv1.3".parse::<TlsVersion>(), Ok(TlsVersion::V1_3));
        let err = "tlsv1.1".parse::<TlsVersion>().unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");
        assert!("sslv3".parse::<TlsVersion>().is_err());
    }

    #[test]
    fn inverted_version_bounds_are_an_error() {
        let err = TlsOptions::new()
            .ca_file("/nonexistent")
            .min_version(TlsVersion::V1_3)
            .max_version(TlsVersion::V1_2)
            .check()
            .unwrap_err();
        assert!(matches!(err, TlsError::Config(_)), "{err}");
    }

    #[test]
    fn missing_files_name_the_path() {
        let err = TlsOptions::new()
            .ca_file("/nonexistent/ca.crt")
            .check()
            .unwrap_err();
        assert!(
            err.to_string().starts_with("/nonexistent/ca.crt: "),
            "{err}"
        );
    }

    #[test]
    fn a_certificate_needs_its_key() {
        let mut options = TlsOptions::new();
        options.cert_file = Some("/dev/null".into());
        // The system's store may be empty here: either error is about the options.
        assert!(options.check().is_err());
    }

    #[test]
    fn server_names() {
        let tls = TlsOptions::new();
        assert!(matches!(
            tls.server_name_for("127.0.0.1"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            tls.server_name_for("[::1]"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            tls.server_name_for("localhost"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(tls.server_name_for("bad name").is_err());
        let tls = tls.server_name("broker.example");
        assert!(matches!(
            tls.server_name_for("127.0.0.1"),
            Ok(ServerName::DnsName(_))
        ));
    }
}
