//! MQTT 5.0 enhanced authentication with SCRAM-SHA-512 (`enhanced_auth_method scram-sha-512`)
//! against the real broker on 127.0.0.1: a client written here from RFC 5802 runs the
//! exchange over CONNECT, AUTH and CONNACK with a user of the password file, and checks the
//! server's signature.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use pigeon_proto::properties::AuthProperties;
use pigeon_proto::{
    Auth, Bytes, BytesMut, Connect, Decoder, MqttString, Packet, Protocol, ReasonCode,
};
use pigeon_test::{Broker, PATIENCE, TempDir};
use sha2::{Digest, Sha512};

const PIGEON: &str = env!("CARGO_BIN_EXE_pigeon");
const PIGEON_PASSWD: &str = env!("CARGO_BIN_EXE_pigeon-passwd");

/// A broker whose listener takes alice (password `pencil`) by SCRAM-SHA-512 or by password.
fn broker(dir: &TempDir) -> Broker {
    let passwords = pigeon_test::password_file(
        PIGEON_PASSWD,
        dir.path(),
        "passwords",
        &[("alice", "pencil")],
    );
    Broker::start(
        PIGEON,
        &format!(
            "allow_anonymous false\npassword_file {}\nenhanced_auth_method scram-sha-512\n",
            passwords.display()
        ),
        &[],
    )
}

struct Client {
    stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
}

impl Client {
    fn connect(broker: &Broker, connect: Connect) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", broker.port())).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut c = Client {
            stream,
            decoder: Decoder::new(Some(Protocol::V5), Decoder::MAX_PACKET_SIZE),
            buf: BytesMut::new(),
        };
        c.send(Packet::Connect(Box::new(connect)));
        c
    }

    fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        packet.encode(Protocol::V5, &mut out).unwrap();
        self.stream.write_all(&out).unwrap();
    }

    /// The next packet, or `None` when the broker closed the connection.
    fn read(&mut self) -> Option<Packet> {
        loop {
            if let Some(packet) = self.decoder.decode(&mut self.buf).unwrap() {
                return Some(packet);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha512> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn scram_connect(id: &str, client_first: &str) -> Connect {
    let mut c = Connect::new(Protocol::V5, MqttString::try_from(id.to_owned()).unwrap());
    c.keep_alive = 30;
    c.properties.authentication_method = Some(MqttString::from_static("SCRAM-SHA-512"));
    c.properties.authentication_data = Some(Bytes::from(client_first.to_owned()));
    c
}

/// Runs SCRAM-SHA-512 as `user` with `password`; returns the broker's answer to the
/// client-final message and the AuthMessage (for checking the server signature).
fn scram(broker: &Broker, user: &str, password: &str) -> (Client, Option<Packet>, Vec<u8>, String) {
    let client_first_bare = format!("n={user},r=fyko+d2lbbFgONRv9qkxdawL");
    let mut c = Client::connect(
        broker,
        scram_connect("scram-client", &format!("n,,{client_first_bare}")),
    );
    let Some(Packet::Auth(challenge)) = c.read() else {
        panic!("no AUTH challenge; broker log:\n{}", broker.log());
    };
    assert_eq!(challenge.reason, ReasonCode::CONTINUE_AUTHENTICATION);
    assert_eq!(
        challenge
            .properties
            .authentication_method
            .as_ref()
            .map(MqttString::as_str),
        Some("SCRAM-SHA-512"),
        "AUTH names the method [MQTT-4.12.0-5]"
    );
    let server_first =
        String::from_utf8(challenge.properties.authentication_data.unwrap().to_vec()).unwrap();
    let fields: Vec<&str> = server_first.split(',').collect();
    let nonce = fields[0].strip_prefix("r=").unwrap();
    assert!(nonce.starts_with("fyko+d2lbbFgONRv9qkxdawL") && nonce.len() > 24);
    let salt = BASE64
        .decode(fields[1].strip_prefix("s=").unwrap())
        .unwrap();
    let iterations: u32 = fields[2].strip_prefix("i=").unwrap().parse().unwrap();

    let mut salted = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), &salt, iterations, &mut salted);
    let without_proof = format!("c=biws,r={nonce}");
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha512::digest(&client_key);
    let signature = hmac(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(k, s)| k ^ s)
        .collect();
    let mut properties = AuthProperties::default();
    properties.authentication_method = Some(MqttString::from_static("SCRAM-SHA-512"));
    properties.authentication_data = Some(Bytes::from(format!(
        "{without_proof},p={}",
        BASE64.encode(proof)
    )));
    c.send(Packet::Auth(Auth {
        reason: ReasonCode::CONTINUE_AUTHENTICATION,
        properties,
    }));
    let answer = c.read();
    let server_key = hmac(&salted, b"Server Key");
    (c, answer, server_key, auth_message)
}

// Section 4.12: the exchange ends with CONNACK Success naming the method and carrying
// server-final, whose signature proves the broker knows alice's salted password (RFC 5802
// section 3); the connection then works like any other.
#[test]
fn scram_sha_512_authenticates_a_password_file_user() {
    let dir = TempDir::new("scram");
    let b = broker(&dir);
    let (mut c, answer, server_key, auth_message) = scram(&b, "alice", "pencil");
    let Some(Packet::ConnAck(ack)) = answer else {
        panic!("no CONNACK: {answer:?}; broker log:\n{}", b.log());
    };
    assert_eq!(ack.reason, ReasonCode::SUCCESS, "broker log:\n{}", b.log());
    assert_eq!(
        ack.properties
            .authentication_method
            .as_ref()
            .map(MqttString::as_str),
        Some("SCRAM-SHA-512")
    );
    let server_final =
        String::from_utf8(ack.properties.authentication_data.unwrap().to_vec()).unwrap();
    let expected = BASE64.encode(hmac(&server_key, auth_message.as_bytes()));
    assert_eq!(server_final, format!("v={expected}"));
    // Connected: a PINGREQ is answered.
    c.send(Packet::PingReq(pigeon_proto::PingReq));
    assert!(matches!(c.read(), Some(Packet::PingResp(_))));
    assert!(b.log().contains("as scram-client"), "{}", b.log());
}

// A wrong password fails at the proof: CONNACK 0x87 (Not authorized), then the connection
// closes [MQTT-3.2.2-7]; an unknown user fails the same way, at the same point.
#[test]
fn scram_with_a_wrong_password_or_unknown_user_is_refused() {
    let dir = TempDir::new("scram");
    let b = broker(&dir);
    for (user, password) in [("alice", "pen"), ("mallory", "pencil")] {
        let (mut c, answer, _, _) = scram(&b, user, password);
        assert!(
            matches!(&answer, Some(Packet::ConnAck(a)) if a.reason == ReasonCode::NOT_AUTHORIZED),
            "{user}: {answer:?}"
        );
        c.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert!(c.read().is_none(), "{user}: closed after the refusal");
    }
}

// A method the listener does not offer is refused with 0x8C [MQTT-4.12.0-1]; the password
// file still lets alice in the usual way.
#[test]
fn other_methods_are_refused_and_passwords_still_work() {
    let dir = TempDir::new("scram");
    let b = broker(&dir);
    let mut c = Client::connect(&b, {
        let mut connect = scram_connect("other", "n,,n=alice,r=abc");
        connect.properties.authentication_method = Some(MqttString::from_static("SCRAM-SHA-1"));
        connect
    });
    assert!(
        matches!(c.read(), Some(Packet::ConnAck(a)) if a.reason == ReasonCode::BAD_AUTHENTICATION_METHOD)
    );
    let mut connect = Connect::new(Protocol::V5, MqttString::from_static("by-password"));
    connect.username = Some(MqttString::from_static("alice"));
    connect.password = Some(Bytes::from_static(b"pencil"));
    let mut c = Client::connect(&b, connect);
    assert!(matches!(c.read(), Some(Packet::ConnAck(a)) if a.reason == ReasonCode::SUCCESS));
}
