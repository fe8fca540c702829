//! SCRAM-SHA-512 (RFC 5802's mechanism with SHA-512, named as in RFC 7677) as an MQTT 5.0
//! enhanced authentication method, checked against the password file.
//!
//! The password file's `$7$` entries are PBKDF2-HMAC-SHA512 of the password with the entry's
//! salt and iteration count: exactly SCRAM's SaltedPassword. So the broker can run SCRAM with
//! the users `pigeon-passwd` (or `mosquitto_passwd`) wrote, and the password never crosses the
//! network, not even inside TLS. `$6$` entries (one round of SHA-512) cannot take part: such a
//! user is refused as an unknown one would be.
//!
//! The Authentication Data of CONNECT, AUTH and CONNACK carry SCRAM's messages as they are:
//! client-first (`n,,n=USER,r=CNONCE`), server-first (`r=NONCE,s=SALT,i=N`), client-final
//! (`c=biws,r=NONCE,p=PROOF`) and server-final (`v=SIGNATURE`), in that order. Channel
//! binding is not offered (`n` or `y` GS2 headers only). An unknown user goes through the
//! same exchange with made-up parameters and fails at the proof, so the exchange does not tell
//! which usernames exist.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use pigeon_proto::{Bytes, ReasonCode};
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use super::passwd::Credentials;
use crate::session::{AuthExchange, AuthMethod, AuthStep};

/// The method's name in the Authentication Method property.
pub const SCRAM_SHA_512: &str = "SCRAM-SHA-512";

/// SCRAM-SHA-512 against a password file's users.
#[derive(Debug, Clone)]
pub struct ScramSha512 {
    credentials: Arc<Credentials>,
}

impl ScramSha512 {
    /// The method for the users of `credentials`.
    pub fn new(credentials: Arc<Credentials>) -> Self {
        ScramSha512 { credentials }
    }
}

impl AuthMethod for ScramSha512 {
    fn name(&self) -> &str {
        SCRAM_SHA_512
    }

    fn start(
        &self,
        _client_id: &str,
        _username: Option<&str>,
        data: Option<&[u8]>,
    ) -> (Box<dyn AuthExchange>, AuthStep) {
        let Some(first) = data.and_then(ClientFirst::parse) else {
            return (Box::new(Done), AuthStep::Failed(ReasonCode::PROTOCOL_ERROR));
        };
        let mut server_nonce = [0u8; 18];
        if getrandom::fill(&mut server_nonce).is_err() {
            return (
                Box::new(Done),
                AuthStep::Failed(ReasonCode::UNSPECIFIED_ERROR),
            );
        }
        let nonce = format!("{}{}", first.nonce, BASE64.encode(server_nonce));
        // A user without a usable entry gets made-up parameters and a key nothing matches.
        let (salt, iterations, salted, known) = match self
            .credentials
            .get(&first.username)
            .and_then(|h| Some((h.salt().to_vec(), h.iterations(), *h.salted_password()?)))
        {
            Some((salt, iterations, salted)) => (salt, iterations.get(), salted, true),
            None => {
                let mut salt = vec![0u8; 12];
                let _ = getrandom::fill(&mut salt);
                (salt, 101, [0u8; 64], false)
            }
        };
        let server_first = format!("r={nonce},s={},i={iterations}", BASE64.encode(&salt));
        let exchange = Exchange {
            username: first.username,
            gs2_header: first.gs2_header,
            client_first_bare: first.bare,
            server_first: server_first.clone(),
            nonce,
            salted,
            known,
        };
        (
            Box::new(exchange),
            AuthStep::Continue(Bytes::from(server_first)),
        )
    }
}

/// An exchange that already ended: any further step fails.
#[derive(Debug)]
struct Done;

impl AuthExchange for Done {
    fn step(&mut self, _data: Option<&[u8]>) -> AuthStep {
        AuthStep::Failed(ReasonCode::PROTOCOL_ERROR)
    }
}

/// The parts of client-first-message the exchange needs.
struct ClientFirst {
    gs2_header: String,
    bare: String,
    username: String,
    nonce: String,
}

impl ClientFirst {
    /// `gs2-header client-first-message-bare`: `n,,n=USER,r=NONCE[,extensions]`.
    fn parse(data: &[u8]) -> Option<ClientFirst> {
        let text = std::str::from_utf8(data).ok()?;
        // gs2-cbind-flag "," [authzid] ",": no channel binding ("n", or "y": the client could
        // have but thinks the server cannot), and no authorisation identity.
        let (flag, rest) = text.split_once(',')?;
        let (authzid, bare) = rest.split_once(',')?;
        if !matches!(flag, "n" | "y") || !authzid.is_empty() {
            return None;
        }
        let mut attributes = bare.split(',');
        let username = unescape(attributes.next()?.strip_prefix("n=")?)?;
        let nonce = attributes.next()?.strip_prefix("r=")?;
        if username.is_empty() || nonce.is_empty() || !nonce.bytes().all(printable_not_comma) {
            return None;
        }
        Some(ClientFirst {
            gs2_header: format!("{flag},,"),
            bare: bare.to_owned(),
            username,
            nonce: nonce.to_owned(),
        })
    }
}

/// RFC 5802's `printable` characters: `%x21-2B / %x2D-7E`.
fn printable_not_comma(b: u8) -> bool {
    (0x21..=0x7E).contains(&b) && b != b','
}

/// A `saslname`: `=2C` for `,` and `=3D` for `=`, no other `=`.
fn unescape(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3)?;
        out.push(match code {
            "2C" => ',',
            "3D" => '=',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// One SCRAM exchange after server-first-message.
struct Exchange {
    username: String,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    salted: [u8; 64],
    known: bool,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the salted password.
        f.debug_struct("Exchange")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 64] {
    let mut mac = <Hmac<Sha512> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

impl AuthExchange for Exchange {
    fn step(&mut self, data: Option<&[u8]>) -> AuthStep {
        let failed = AuthStep::Failed(ReasonCode::NOT_AUTHORIZED);
        let Some(text) = data.and_then(|d| std::str::from_utf8(d).ok()) else {
            return failed;
        };
        // client-final-message: channel-binding "," nonce ["," extensions] "," proof.
        let Some((without_proof, proof)) = text.rsplit_once(",p=") else {
            return failed;
        };
        let mut attributes = without_proof.split(',');
        let binding = attributes.next().and_then(|c| c.strip_prefix("c="));
        let nonce = attributes.next().and_then(|r| r.strip_prefix("r="));
        if binding != Some(&BASE64.encode(&self.gs2_header)) || nonce != Some(&self.nonce) {
            return failed;
        }
        let Ok(proof) = BASE64.decode(proof) else {
            return failed;
        };
        if proof.len() != 64 {
            return failed;
        }
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let client_key = hmac(&self.salted, b"Client Key");
        let stored_key: [u8; 64] = Sha512::digest(client_key).into();
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let candidate: Vec<u8> = proof.iter().zip(signature).map(|(p, s)| p ^ s).collect();
        let candidate_stored: [u8; 64] = Sha512::digest(&candidate).into();
        let matches = bool::from(candidate_stored.ct_eq(&stored_key));
        if !(matches && self.known) {
            return failed;
        }
        let server_key = hmac(&self.salted, b"Server Key");
        let server_signature = hmac(&server_key, auth_message.as_bytes());
        AuthStep::Success {
            data: Some(Bytes::from(format!(
                "v={}",
                BASE64.encode(server_signature)
            ))),
            username: Some(self.username.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::passwd::PasswordFile;

    /// alice's entry for password `pencil`, salt `0123456789ab`, 101 iterations; the proof
    /// and signature below were computed with Python's hashlib and hmac for the nonces
    /// `clientnonce` + `servernonce` (an implementation independent of this one).
    const ALICE: &str = "alice:$7$101$MDEyMzQ1Njc4OWFi$YzVegm3JE2wwo33oBs3P8TIdYw6KayfhEX7Lqm1ZOP9vZeN+zMZ4GnicRW9mJMk634XWrkzd+LUd8LPBiMO9pw==\n";
    const PROOF: &str =
        "5xzFTLSxPO9AcNw50IyVaVAuwWfynHqgBdkb2T3/IQCqBriPhzQ5E2op2semHM6Fc+T2QqZeUeB7UAw7jJLp0g==";
    const SERVER_SIGNATURE: &str =
        "OLUVjSEP921wRKWjKnEhHYY3ootbRsydyfGmUycvVE/7ltlWFoEQmEl62IqKfTIhm80AsFRAgunvGpeRAtK//Q==";

    fn method(file: &str) -> ScramSha512 {
        let (credentials, errors) = PasswordFile::parse(file).unwrap().credentials();
        assert!(errors.is_empty(), "{errors:?}");
        ScramSha512::new(Arc::new(credentials))
    }

    /// An exchange with the server nonce fixed to `servernonce`, as the vector has it.
    fn fixed_exchange(m: &ScramSha512, client_first: &str) -> Exchange {
        let first = ClientFirst::parse(client_first.as_bytes()).unwrap();
        let hash = m.credentials.get(&first.username).unwrap();
        Exchange {
            username: first.username,
            gs2_header: first.gs2_header,
            client_first_bare: first.bare,
            server_first: format!(
                "r={}servernonce,s={},i={}",
                first.nonce,
                BASE64.encode(hash.salt()),
                hash.iterations()
            ),
            nonce: format!("{}servernonce", first.nonce),
            salted: *hash.salted_password().unwrap(),
            known: true,
        }
    }

    #[test]
    fn the_known_answer_authenticates_and_signs() {
        let m = method(ALICE);
        let mut exchange = fixed_exchange(&m, "n,,n=alice,r=clientnonce");
        assert_eq!(
            exchange.server_first,
            "r=clientnonceservernonce,s=MDEyMzQ1Njc4OWFi,i=101"
        );
        let step = exchange.step(Some(
            format!("c=biws,r=clientnonceservernonce,p={PROOF}").as_bytes(),
        ));
        assert_eq!(
            step,
            AuthStep::Success {
                data: Some(Bytes::from(format!("v={SERVER_SIGNATURE}"))),
                username: Some("alice".to_owned()),
            }
        );
    }

    #[test]
    fn a_wrong_proof_nonce_or_binding_is_refused() {
        let m = method(ALICE);
        let refused = AuthStep::Failed(ReasonCode::NOT_AUTHORIZED);
        let mut flipped = BASE64.decode(PROOF).unwrap();
        flipped[0] ^= 1;
        for final_message in [
            format!(
                "c=biws,r=clientnonceservernonce,p={}",
                BASE64.encode(&flipped)
            ),
            format!("c=biws,r=clientnonceotherrnonce,p={PROOF}"),
            format!("c=eSws,r=clientnonceservernonce,p={PROOF}"),
            "c=biws,r=clientnonceservernonce".to_owned(),
            format!("c=biws,r=clientnonceservernonce,p={}", &PROOF[..20]),
        ] {
            let mut exchange = fixed_exchange(&m, "n,,n=alice,r=clientnonce");
            assert_eq!(
                exchange.step(Some(final_message.as_bytes())),
                refused,
                "{final_message}"
            );
        }
    }

    #[test]
    fn start_sends_server_first_with_the_entrys_salt_and_a_longer_nonce() {
        let m = method(ALICE);
        let (_, step) = m.start("c", None, Some(b"n,,n=alice,r=abc"));
        let AuthStep::Continue(data) = step else {
            panic!("{step:?}");
        };
        let text = std::str::from_utf8(&data).unwrap();
        let parts: Vec<&str> = text.split(',').collect();
        assert!(
            parts[0].starts_with("r=abc") && parts[0].len() > "r=abc".len() + 16,
            "{text}"
        );
        assert_eq!(&parts[1..], ["s=MDEyMzQ1Njc4OWFi", "i=101"]);
    }

    // An unknown user, or a `$6$` entry, goes through server-first like a known one (the
    // exchange does not tell them apart) and is refused at the proof.
    #[test]
    fn unknown_users_are_refused_only_at_the_end() {
        let m = method(&format!(
            "{ALICE}old:$6$c2FsdA==$6eVdMq4I5n/QFfgZ0/M9n4vpSI7CRVQSApIGU+7jLnaJc6uSeeYJVVj+vSVOhyOXs0nStcL5iykHFunAzR5sag==\n"
        ));
        for user in ["mallory", "old"] {
            let (mut exchange, step) =
                m.start("c", None, Some(format!("n,,n={user},r=abc").as_bytes()));
            assert!(matches!(step, AuthStep::Continue(_)), "{user}: {step:?}");
            assert_eq!(
                exchange.step(Some(format!("c=biws,r=abc,p={PROOF}").as_bytes())),
                AuthStep::Failed(ReasonCode::NOT_AUTHORIZED),
                "{user}"
            );
        }
    }

    #[test]
    fn client_first_is_parsed_strictly() {
        for bad in [
            "p=tls-unique,,n=alice,r=abc",
            "n,a=admin,n=alice,r=abc",
            "n,,r=abc",
            "n,,n=alice",
            "n,,n=al=ice,r=abc",
            "n,,n=,r=abc",
        ] {
            assert!(ClientFirst::parse(bad.as_bytes()).is_none(), "{bad}");
        }
        let first = ClientFirst::parse(b"y,,n=a=2Cb=3Dc,r=xyz,ext=1").unwrap();
        assert_eq!(
            (
                first.username.as_str(),
                first.nonce.as_str(),
                first.gs2_header.as_str()
            ),
            ("a,b=c", "xyz", "y,,")
        );
    }
}
