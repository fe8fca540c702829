//! TLS listeners with rustls (the `ring` provider): [`ListenerTls`], the server configuration
//! built from a listener's `certfile`, `keyfile`, `cafile`, `capath`, `require_certificate`,
//! `tls_version`, `ciphers`, `ciphers_tls1.3` and `crlfile`, and the client certificate's
//! identity for `use_identity_as_username` and `use_subject_as_username`.
//!
//! The files are read when the settings are made: at start and on each reload, so that a
//! reload (SIGHUP) puts renewed certificates in force for the connections that follow.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{CertificateError, CipherSuite, RootCertStore, ServerConfig, SupportedCipherSuite};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::auth::Notes;
use crate::config::{LogTypes, Tls};

/// What becomes the username of a client with a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertUsername {
    /// Nothing: the client's own username counts (the certificate is not used).
    Off,
    /// `use_identity_as_username`: the certificate's Common Name.
    CommonName,
    /// `use_subject_as_username`: the certificate's whole subject, as RFC 2253 writes it.
    Subject,
}

/// A TLS listener's server configuration, loaded.
///
/// Two are equal when they come from the same settings (the files are not compared).
pub struct ListenerTls {
    /// The rustls configuration for new connections.
    pub config: Arc<ServerConfig>,
    /// What becomes the username of a client.
    pub username: CertUsername,
    source: Tls,
}

impl fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerTls")
            .field("source", &self.source)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl PartialEq for ListenerTls {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.username == other.username
    }
}

impl Eq for ListenerTls {}

/// An error about one TLS directive of `tls`, in the form of configuration errors:
/// `Error: FILE:LINE: DIRECTIVE: MESSAGE`.
fn error(tls: &Tls, directive: &str, message: impl fmt::Display) -> String {
    let name = tls.directive(directive);
    match tls.location(directive) {
        Some(at) => format!("Error: {at}: {name}: {message}"),
        None => format!("Error: {name}: {message}"),
    }
}

/// The names of the cipher suites rustls offers, as OpenSSL names them (`ciphers`,
/// `ciphers_tls1.3`).
const SUITE_NAMES: &[(CipherSuite, &str)] = &[
    (
        CipherSuite::TLS13_AES_256_GCM_SHA384,
        "TLS_AES_256_GCM_SHA384",
    ),
    (
        CipherSuite::TLS13_AES_128_GCM_SHA256,
        "TLS_AES_128_GCM_SHA256",
    ),
    (
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
        "TLS_CHACHA20_POLY1305_SHA256",
    ),
    (
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-ECDSA-AES256-GCM-SHA384",
    ),
    (
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-ECDSA-AES128-GCM-SHA256",
    ),
    (
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    ),
    (
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-RSA-AES256-GCM-SHA384",
    ),
    (
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-RSA-AES128-GCM-SHA256",
    ),
    (
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        "ECDHE-RSA-CHACHA20-POLY1305",
    ),
];

fn openssl_name(suite: SupportedCipherSuite) -> &'static str {
    let id = suite.suite();
    SUITE_NAMES
        .iter()
        .find(|(s, _)| *s == id)
        .map_or("?", |(_, n)| n)
}

/// OpenSSL's cipher list keywords that stand for every suite rustls has (all of them are
/// strong, forward-secret AEAD suites).
const ALL_KEYWORDS: &[&str] = &["DEFAULT", "ALL", "HIGH", "COMPLEMENTOFDEFAULT"];

/// The suites of `available` an OpenSSL cipher list selects: exact names and the keywords of
/// [`ALL_KEYWORDS`] add, `!NAME` and `-NAME` remove, `@STRENGTH` and the like are ignored.
/// Names rustls does not have are noted and skipped, as OpenSSL skips names it does not
/// know; a list that selects nothing is an error.
fn select_suites(
    tls: &Tls,
    directive: &str,
    list: &str,
    available: &[SupportedCipherSuite],
    notes: &mut Notes,
) -> Result<Vec<SupportedCipherSuite>, String> {
    let mut chosen: Vec<SupportedCipherSuite> = Vec::new();
    let mut removed: Vec<SupportedCipherSuite> = Vec::new();
    let by_name = |name: &str| {
        available
            .iter()
            .copied()
            .filter(|s| openssl_name(*s).eq_ignore_ascii_case(name))
            .collect::<Vec<_>>()
    };
    for token in list.split([':', ',', ' ']).filter(|t| !t.is_empty()) {
        if token.starts_with('@') {
            continue;
        }
        if let Some(name) = token.strip_prefix(['!', '-']) {
            if ALL_KEYWORDS.contains(&name) {
                removed.extend_from_slice(available);
            } else {
                removed.extend(by_name(name));
            }
            continue;
        }
        let name = token.strip_prefix('+').unwrap_or(token);
        let found = if ALL_KEYWORDS.contains(&name) {
            available.to_vec()
        } else {
            by_name(name)
        };
        if found.is_empty() {
            notes.push((
                LogTypes::WARNING,
                format!(
                    "Warning: {}: {}: {name} is not a cipher suite rustls offers; \
                     ignored.",
                    tls.location(directive)
                        .map_or_else(String::new, ToString::to_string),
                    tls.directive(directive)
                ),
            ));
        }
        for suite in found {
            if !chosen.iter().any(|c| c.suite() == suite.suite()) {
                chosen.push(suite);
            }
        }
    }
    chosen.retain(|s| !removed.iter().any(|r| r.suite() == s.suite()));
    if chosen.is_empty() {
        let offered: Vec<&str> = available.iter().map(|s| openssl_name(*s)).collect();
        return Err(error(
            tls,
            directive,
            format!(
                "no cipher suite rustls offers matches {list:?}; rustls offers {}",
                offered.join(":")
            ),
        ));
    }
    Ok(chosen)
}

impl ListenerTls {
    /// Reads the files `tls` names and builds the server configuration; `None` for a
    /// listener without TLS settings. Lines worth logging (cipher names rustls does not have)
    /// are added to `notes`.
    ///
    /// # Errors
    /// A certificate without its key (or the reverse), TLS settings without either, a file
    /// that cannot be read or holds nothing usable (an encrypted key among them), a cipher
    /// list that selects nothing, `require_certificate` without `cafile` or `capath`.
    pub fn load(tls: &Tls, notes: &mut Notes) -> Result<Option<Arc<ListenerTls>>, String> {
        if !tls.is_set() {
            return Ok(None);
        }
        let (certfile, keyfile) = match (&tls.certfile, &tls.keyfile) {
            (Some(c), Some(k)) => (c, k),
            (Some(_), None) => {
                return Err(error(
                    tls,
                    "certfile",
                    format!("a TLS listener needs {} as well", tls.directive("keyfile")),
                ));
            }
            (None, Some(_)) => {
                return Err(error(
                    tls,
                    "keyfile",
                    format!("a TLS listener needs {} as well", tls.directive("certfile")),
                ));
            }
            (None, None) => {
                let first = tls.locations.first().map_or("certfile", |(d, _)| *d);
                return Err(error(
                    tls,
                    first,
                    "TLS settings need certfile and keyfile on the same listener",
                ));
            }
        };
        let username = match (tls.use_identity_as_username, tls.use_subject_as_username) {
            (_, true) => CertUsername::Subject,
            (true, false) => CertUsername::CommonName,
            (false, false) => CertUsername::Off,
        };
        if username != CertUsername::Off && !tls.require_certificate {
            let directive = if username == CertUsername::Subject {
                "use_subject_as_username"
            } else {
                "use_identity_as_username"
            };
            return Err(error(
                tls,
                directive,
                "needs require_certificate true (without it no client certificate is asked \
                 for)",
            ));
        }

        let base = rustls::crypto::ring::default_provider();
        let versions: Vec<&'static rustls::SupportedProtocolVersion> =
            match tls.tls_version.as_deref() {
                // The minimum version, as in Mosquitto 2.0.
                Some("tlsv1.3") => vec![&rustls::version::TLS13],
                _ => vec![&rustls::version::TLS13, &rustls::version::TLS12],
            };
        let (tls13, tls12): (Vec<_>, Vec<_>) = base
            .cipher_suites
            .iter()
            .copied()
            .partition(|s| s.version() == &rustls::version::TLS13);
        let tls12 = match &tls.ciphers {
            Some(list) => select_suites(tls, "ciphers", list, &tls12, notes)?,
            None => tls12,
        };
        let tls13 = match &tls.ciphers_tls13 {
            Some(list) => select_suites(tls, "ciphers_tls1.3", list, &tls13, notes)?,
            None => tls13,
        };
        let provider = Arc::new(CryptoProvider {
            cipher_suites: tls13.into_iter().chain(tls12).collect(),
            ..base
        });

        let chain = load_certificates(certfile).map_err(|e| {
            error(
                tls,
                "certfile",
                format!("unable to load server certificate: {e}"),
            )
        })?;
        let key = load_key(keyfile)
            .map_err(|e| error(tls, "keyfile", format!("unable to load server key: {e}")))?;

        let roots = load_roots(tls)?;
        let crls = match &tls.crlfile {
            Some(path) => load_crls(path).map_err(|e| error(tls, "crlfile", e))?,
            None => Vec::new(),
        };
        let verifier: Arc<dyn ClientCertVerifier> = if tls.require_certificate {
            let Some(roots) = roots else {
                return Err(error(
                    tls,
                    "require_certificate",
                    "needs cafile or capath, the CAs client certificates are checked against",
                ));
            };
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .with_crls(crls)
                .build()
                .map_err(|e| error(tls, "require_certificate", e))?
        } else {
            // As Mosquitto: without require_certificate no certificate is asked for.
            WebPkiClientVerifier::no_client_auth()
        };
        let config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(|e| {
                let directive = if tls.ciphers_tls13.is_some() {
                    "ciphers_tls1.3"
                } else if tls.ciphers.is_some() {
                    "ciphers"
                } else {
                    "tls_version"
                };
                error(tls, directive, e)
            })?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| {
                error(
                    tls,
                    "keyfile",
                    format!("the key does not fit the certificate of certfile: {e}"),
                )
            })?;
        Ok(Some(Arc::new(ListenerTls {
            config: Arc::new(config),
            username,
            source: tls.clone(),
        })))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("\"{}\": {}", path.display(), crate::log::strerror(&e)))
}

fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("\"{}\": {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "\"{}\": no PEM certificate in the file",
            path.display()
        ));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read(path)?;
    let text = String::from_utf8_lossy(&pem);
    if text.contains("ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(format!(
            "\"{}\": the key is encrypted, and Pigeon cannot ask for its passphrase; decrypt \
             it (openssl pkey -in KEY -out PLAIN_KEY)",
            path.display()
        ));
    }
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        format!(
            "\"{}\": no PEM private key (PKCS#8, PKCS#1 or SEC1) in the file ({e})",
            path.display()
        )
    })
}

fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let pem = read(path)?;
    let crls = CertificateRevocationListDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("\"{}\": {e}", path.display()))?;
    if crls.is_empty() {
        return Err(format!("\"{}\": no PEM CRL in the file", path.display()));
    }
    Ok(crls)
}

/// The CAs of `cafile` and `capath`; `None` without either.
fn load_roots(tls: &Tls) -> Result<Option<RootCertStore>, String> {
    if tls.cafile.is_none() && tls.capath.is_none() {
        return Ok(None);
    }
    let mut roots = RootCertStore::empty();
    if let Some(path) = &tls.cafile {
        let certs = load_certificates(path).map_err(|e| {
            error(
                tls,
                "cafile",
                format!("unable to load CA certificates: {e}"),
            )
        })?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| error(tls, "cafile", format!("invalid CA certificate: {e}")))?;
        }
    }
    if let Some(dir) = &tls.capath {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            error(
                tls,
                "capath",
                format!("\"{}\": {}", dir.display(), crate::log::strerror(&e)),
            )
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.is_file())
            .collect();
        paths.sort();
        let before = roots.len();
        for path in paths {
            // Hash links, CRLs and notes may sit beside the certificates: take what parses.
            let Ok(pem) = std::fs::read(&path) else {
                continue;
            };
            roots.add_parsable_certificates(
                CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok),
            );
        }
        if roots.len() == before {
            return Err(error(
                tls,
                "capath",
                format!("\"{}\": no CA certificate in the directory", dir.display()),
            ));
        }
    }
    Ok(Some(roots))
}

/// Describes a handshake failure for the log.
pub fn describe_error(error: &std::io::Error) -> String {
    let Some(rustls_error) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return match error.kind() {
            std::io::ErrorKind::UnexpectedEof => "the client closed the connection".to_owned(),
            _ => crate::log::strerror(error),
        };
    };
    match rustls_error {
        rustls::Error::NoCertificatesPresented => "peer did not return a certificate".to_owned(),
        rustls::Error::InvalidCertificate(e) => {
            format!(
                "certificate verify failed: {}",
                describe_certificate_error(e)
            )
        }
        rustls::Error::InvalidMessage(_) => {
            format!("not a TLS handshake (plain MQTT on a TLS listener?): {rustls_error}")
        }
        rustls::Error::AlertReceived(alert) => format!("the client sent the alert {alert:?}"),
        other => other.to_string(),
    }
}

/// A client certificate's fault, in OpenSSL's words where it has some.
fn describe_certificate_error(error: &CertificateError) -> String {
    match error {
        CertificateError::UnknownIssuer => "unable to get local issuer certificate (not signed \
                                            by a CA of cafile or capath)"
            .to_owned(),
        CertificateError::BadSignature => "certificate signature failure".to_owned(),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            format!("certificate has expired ({error})")
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            format!("certificate is not yet valid ({error})")
        }
        CertificateError::Revoked => "certificate revoked".to_owned(),
        other => other.to_string(),
    }
}

// ---- The client certificate's subject -----------------------------------------------------

/// One DER element: its tag and contents; `input` moves past it.
fn der<'a>(input: &mut &'a [u8]) -> Option<(u8, &'a [u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = input.get(2..2 + n)?;
        (
            bytes
                .iter()
                .fold(0usize, |acc, b| acc << 8 | usize::from(*b)),
            2 + n,
        )
    };
    let body = input.get(header..header.checked_add(len)?)?;
    *input = &input[header + len..];
    Some((tag, body))
}

/// The expected element, or `None`.
fn der_tagged<'a>(input: &mut &'a [u8], tag: u8) -> Option<&'a [u8]> {
    match der(input)? {
        (t, body) if t == tag => Some(body),
        _ => None,
    }
}

/// An attribute of a name: its type (an OID, encoded) and its value (tag and contents).
struct Attribute<'a> {
    oid: &'a [u8],
    tag: u8,
    value: &'a [u8],
    /// The whole value element, for `#hex` dumps.
    value_der: &'a [u8],
}

/// The subject of a DER certificate: its relative distinguished names in order, each a set
/// of attributes.
fn subject_rdns(cert: &[u8]) -> Option<Vec<Vec<Attribute<'_>>>> {
    let mut input = cert;
    let mut certificate = der_tagged(&mut input, 0x30)?;
    let mut tbs = der_tagged(&mut certificate, 0x30)?;
    let (tag, _) = der(&mut tbs)?;
    if tag == 0xa0 {
        // The version came first: then the serial number.
        der(&mut tbs)?;
    }
    der(&mut tbs)?; // signature algorithm
    der(&mut tbs)?; // issuer
    der(&mut tbs)?; // validity
    let mut name = der_tagged(&mut tbs, 0x30)?;
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let mut set = der_tagged(&mut name, 0x31)?;
        let mut attributes = Vec::new();
        while !set.is_empty() {
            let mut pair = der_tagged(&mut set, 0x30)?;
            let oid = der_tagged(&mut pair, 0x06)?;
            let start = pair;
            let (tag, value) = der(&mut pair)?;
            let value_der = &start[..start.len() - pair.len()];
            attributes.push(Attribute {
                oid,
                tag,
                value,
                value_der,
            });
        }
        rdns.push(attributes);
    }
    Some(rdns)
}

const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// OpenSSL's short names of the usual attribute types.
fn attribute_name(oid: &[u8]) -> Option<&'static str> {
    Some(match oid {
        [0x55, 0x04, n] => match n {
            3 => "CN",
            4 => "SN",
            5 => "serialNumber",
            6 => "C",
            7 => "L",
            8 => "ST",
            9 => "street",
            10 => "O",
            11 => "OU",
            12 => "title",
            17 => "postalCode",
            42 => "GN",
            43 => "initials",
            44 => "generationQualifier",
            46 => "dnQualifier",
            65 => "pseudonym",
            _ => return None,
        },
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        _ => return None,
    })
}

/// An OID in dotted decimal.
fn dotted(oid: &[u8]) -> String {
    let mut parts: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    for b in oid {
        value = value << 7 | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if parts.is_empty() {
                let first = (value / 40).min(2);
                parts.push(first);
                parts.push(value - first * 40);
            } else {
                parts.push(value);
            }
            value = 0;
        }
    }
    parts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// The text of a string value, as UTF-8 bytes; `None` for a type that is not a string.
fn string_bytes(tag: u8, value: &[u8]) -> Option<Vec<u8>> {
    match tag {
        // UTF8String, NumericString, PrintableString, T61String, IA5String, VisibleString.
        0x0c | 0x12 | 0x13 | 0x14 | 0x16 | 0x1a => Some(value.to_vec()),
        // BMPString: UTF-16 big-endian.
        0x1e => {
            let units: Vec<u16> = value
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            Some(String::from_utf16_lossy(&units).into_bytes())
        }
        // UniversalString: UTF-32 big-endian.
        0x1c => Some(
            value
                .chunks_exact(4)
                .map(|c| {
                    char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                        .unwrap_or(char::REPLACEMENT_CHARACTER)
                })
                .collect::<String>()
                .into_bytes(),
        ),
        _ => None,
    }
}

/// A value escaped as RFC 2253 and OpenSSL's `XN_FLAG_RFC2253` write it: `,+"\<>;` escaped
/// with a backslash, as are `#` and a space at the start and a space at the end; control
/// characters and bytes above 0x7f as `\XX`.
fn escape_rfc2253(bytes: &[u8], out: &mut String) {
    for (i, &b) in bytes.iter().enumerate() {
        let first = i == 0;
        let last = i + 1 == bytes.len();
        match b {
            b',' | b'+' | b'"' | b'\\' | b'<' | b'>' | b';' => {
                out.push('\\');
                out.push(char::from(b));
            }
            b'#' if first => out.push_str("\\#"),
            b' ' if first || last => out.push_str("\\ "),
            0..0x20 | 0x7f.. => out.push_str(&format!("\\{b:02X}")),
            _ => out.push(char::from(b)),
        }
    }
}

/// The certificate's subject as `use_subject_as_username` makes it, as OpenSSL's
/// `X509_NAME_print_ex` with `XN_FLAG_RFC2253` writes it for Mosquitto: the last RDN first,
/// separated by commas, the attributes of one RDN by `+`, short names for the usual types,
/// dotted OIDs with `#hex` values for the others. `None` if the certificate cannot be read.
pub fn subject_name(cert: &[u8]) -> Option<String> {
    let rdns = subject_rdns(cert)?;
    let mut out = String::new();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attribute) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let name = attribute_name(attribute.oid);
            match (name, string_bytes(attribute.tag, attribute.value)) {
                (Some(name), Some(text)) => {
                    out.push_str(name);
                    out.push('=');
                    escape_rfc2253(&text, &mut out);
                }
                (name, _) => {
                    out.push_str(&name.map_or_else(|| dotted(attribute.oid), str::to_owned));
                    out.push_str("=#");
                    for b in attribute.value_der {
                        out.push_str(&format!("{b:02X}"));
                    }
                }
            }
        }
    }
    Some(out)
}

/// The certificate's first Common Name, as `use_identity_as_username` makes it; `None` if
/// it has none, or one with a NUL byte (Mosquitto refuses those too).
pub fn common_name(cert: &[u8]) -> Option<String> {
    let rdns = subject_rdns(cert)?;
    let attribute = rdns.iter().flatten().find(|a| a.oid == COMMON_NAME)?;
    let bytes = string_bytes(attribute.tag, attribute.value)?;
    if bytes.contains(&0) {
        return None;
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The username a client's certificate gives it under `mode`; `None` when the certificate is
/// missing or has no such name.
pub fn cert_username(mode: CertUsername, cert: Option<&[u8]>) -> Option<String> {
    let cert = cert?;
    match mode {
        CertUsername::Off => None,
        CertUsername::CommonName => common_name(cert),
        CertUsername::Subject => subject_name(cert),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(params: rcgen::CertificateParams) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn names_from_a_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CountryName, "GB");
        dn.push(rcgen::DnType::OrganizationName, "Pigeon, Ltd");
        dn.push(rcgen::DnType::CommonName, "sensor-1");
        params.distinguished_name = dn;
        let der = cert(params);
        assert_eq!(common_name(&der).as_deref(), Some("sensor-1"));
        assert_eq!(
            subject_name(&der).as_deref(),
            Some("CN=sensor-1,O=Pigeon\\, Ltd,C=GB")
        );
        assert_eq!(
            cert_username(CertUsername::CommonName, Some(&der)).as_deref(),
            Some("sensor-1")
        );
        assert_eq!(cert_username(CertUsername::CommonName, None), None);
    }

    #[test]
    fn a_certificate_without_common_name() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::OrganizationName, "O");
        params.distinguished_name = dn;
        let der = cert(params);
        assert_eq!(common_name(&der), None);
        assert_eq!(subject_name(&der).as_deref(), Some("O=O"));
        assert_eq!(common_name(b"\x30\x03junk"), None);
    }

    #[test]
    fn escaping_and_oids() {
        let mut out = String::new();
        escape_rfc2253(b"#a b;\xc3\xa9 ", &mut out);
        assert_eq!(out, "\\#a b\\;\\C3\\A9\\ ");
        assert_eq!(
            dotted(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]),
            "1.2.840.113549"
        );
    }

    #[test]
    fn cipher_lists() {
        let tls = Tls::default();
        let mut notes = Notes::new();
        let all = rustls::crypto::ring::default_provider().cipher_suites;
        let picked = select_suites(
            &tls,
            "ciphers",
            "ECDHE-RSA-AES128-GCM-SHA256:AES256-SHA:!aNULL",
            &all,
            &mut notes,
        )
        .unwrap();
        assert_eq!(picked.len(), 1);
        assert_eq!(notes.len(), 1, "AES256-SHA is noted");
        let picked = select_suites(
            &tls,
            "ciphers",
            "HIGH:!ECDHE-RSA-AES128-GCM-SHA256",
            &all,
            &mut notes,
        )
        .unwrap();
        assert_eq!(picked.len(), all.len() - 1);
        let e = select_suites(&tls, "ciphers", "RC4-MD5", &all, &mut notes).unwrap_err();
        assert!(e.contains("no cipher suite rustls offers"), "{e}");
    }
}
