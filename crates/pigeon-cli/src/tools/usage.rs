//! The `--help` texts (Pigeon's own wording, listing Mosquitto's flags).

/// The connection, identity, will and TLS flags both tools take.
const COMMON: &str = "\
Connecting:
 -h host      the broker's host name or address (localhost).
 -p port      the broker's port (1883; 8883 with TLS).
 -L url       mqtt://[user[:password]@]host[:port]/topic: user, password, host, port and
              topic in one go (mqtts:// for TLS; ws:// and wss:// for MQTT over
              WebSockets, path /mqtt).
 --unix path  a Unix domain socket instead of TCP (plain MQTT).
 -A address   the local address to connect from.
 --nodelay    accepted; pigeon always sends without Nagle's delay.
 --proxy url  a SOCKS5 proxy (not supported yet).
 -S           find the broker with DNS SRV records (not supported yet).
Session:
 -V version   the MQTT version: mqttv5 (5), mqttv311 (311, the default) or mqttv31 (31).
 -i id        the client identifier. Without it, MQTT 3.1.1 and 5.0 let the broker choose
              one and MQTT 3.1 makes up a random one.
 -I prefix    the client identifier is this prefix followed by the process id.
 -k seconds   keep alive, 5 to 65535 (60).
 -c           keep the session when disconnecting (clean session off); needs -i.
 -x seconds   MQTT 5.0 session expiry interval: 0 to 4294967294, or -1 / 4294967295 / ∞ for
              never (default: never with -c, else 0).
 -u user      the user name.
 -P password  the password.
 -M count     the most QoS 1 and 2 messages in flight at once (20).
 -D command property value [value]
              an MQTT 5.0 property for one kind of packet (CONNECT, PUBLISH, SUBSCRIBE, WILL,
              DISCONNECT, ...); user-property takes a name and a value. Implies -V 5.
Will:
 --will-topic topic     the topic the broker publishes the will on if the client vanishes.
 --will-payload text    the will's payload (empty by default).
 --will-qos qos         the will's QoS (0).
 --will-retain          retain the will.
TLS:
 --cafile file          trust the CA certificates in this PEM file (turns TLS on).
 --capath dir           trust the CA certificates in this directory (turns TLS on).
 --cert file            the client certificate (PEM), with --key.
 --key file             the client's private key (PEM), with --cert.
 --insecure             do not check that the certificate matches the host name.
 --tls-version version  tlsv1.3 or tlsv1.2 only.
 --tls-use-os-certs     also trust the system's CA certificates.
 --ciphers, --tls-alpn, --tls-engine, --keyform, --tls-engine-kpass-sha1, --psk,
 --psk-identity         not supported yet.
Output:
 -d           print every packet sent and received.
 --quiet      print no run-time errors (mistakes on the command line are still reported).
 --help       print this text.
";

/// `pigeon-pub --help`.
pub fn pub_usage() -> String {
    format!(
        "\
pigeon-pub publishes one message, or one per line of input, and exits once the broker has
acknowledged them all.

Usage: pigeon-pub {{[-h host] [--unix path] [-p port] [-u user] [-P password] -t topic | -L URL}}
                  {{-m message | -f file | -l | -n | -s}}
                  [-q qos] [-r] [--repeat count] [--repeat-delay seconds]
                  [-c] [-k keepalive] [-x session-expiry] [-A address] [--nodelay]
                  [-i id | -I id-prefix] [-d] [--quiet] [-M max-inflight] [-V version]
                  [-D command property value]
                  [--will-topic topic [--will-payload text] [--will-qos qos] [--will-retain]]
                  [{{--cafile file | --capath dir}} [--cert file --key file] [--insecure]
                   [--tls-version version] [--tls-use-os-certs]]
                  [--proxy url] [-S]
       pigeon-pub --help

Message:
 -t topic     the topic to publish on.
 -m text      the message.
 -f file      the contents of a file as the message.
 -l           each line of standard input as a message (blank lines are skipped).
 -s           all of standard input as one message.
 -n           an empty message.
 -q qos       the QoS: 0 (the default), 1 or 2.
 -r           ask the broker to retain the message (an empty one clears the topic's).
 --repeat n   publish the -m, -f or -s message n times.
 --repeat-delay seconds
              wait this long (fractions allowed) after each delivery before the next.
{COMMON}
Options may also be put in $XDG_CONFIG_HOME/pigeon_pub (or ~/.config/pigeon_pub), one per
line; the command line comes after them.
"
    )
}

/// `pigeon-sub --help`.
pub fn sub_usage() -> String {
    format!(
        "\
pigeon-sub subscribes to topics and prints the messages it receives.

Usage: pigeon-sub {{[-h host] [--unix path] [-p port] [-u user] [-P password] -t topic ... | -L URL [-t topic ...]}}
                  [-q qos] [-c] [-k keepalive] [-x session-expiry]
                  [-C count] [-E] [-R | --retained-only] [--remove-retained]
                  [--retain-as-published] [-T filter ...] [-U topic ...] [--random-filter chance]
                  [-F format] [--pretty] [-N] [-v] [-W seconds]
                  [-A address] [--nodelay] [-i id | -I id-prefix] [-d] [--quiet] [-V version]
                  [-D command property value]
                  [--will-topic topic [--will-payload text] [--will-qos qos] [--will-retain]]
                  [{{--cafile file | --capath dir}} [--cert file --key file] [--insecure]
                   [--tls-version version] [--tls-use-os-certs]]
                  [--proxy url] [-S]
       pigeon-sub --help

Subscribing:
 -t filter    a topic filter to subscribe to (repeatable).
 -q qos       the most QoS wanted: 0 (the default), 1 or 2.
 -U filter    unsubscribe from this filter after subscribing (repeatable).
 -T filter    do not print messages whose topic matches this filter (repeatable).
 -R           do not print retained (stale) messages.
 --retained-only
              print only retained messages; the first fresh one ends the program.
 --remove-retained
              clear every retained message received (publishes an empty retained message).
 --retain-as-published
              MQTT 5.0: keep the retain flag as the publisher set it.
 --random-filter chance
              print only this percentage of messages (0.1 to 100), at random.
Ending:
 -C count     exit after printing this many messages.
 -E           exit once the subscriptions are acknowledged.
 -W seconds   exit with status 27 if still running after this long.
Printing:
 -v           print the topic, a space, then the payload.
 -N           no newline after each message.
 -F format    print each message with this format (overrides -v):
                %% %  %t topic  %p payload  %x / %X payload in hex  %l payload length
                %q QoS  %r retain flag  %m message id  %I ISO 8601 time  %U Unix time
                %j JSON with the payload as a string  %J JSON with the payload as JSON
                MQTT 5.0 properties: %A topic alias  %C content type  %D correlation data
                %E message expiry  %F payload format  %P user properties  %R response topic
                %S subscription identifier
                flags 0 and -, a width and a .precision may follow % (%-10.5t)
                @@ @  @N nanoseconds  @X strftime's %X (@Y-@m-@d @H:@M:@S)
                \\\\ \\0 \\a \\e \\n \\r \\t \\v escapes
 --pretty     indent %j and %J output.
{COMMON}
Options may also be put in $XDG_CONFIG_HOME/pigeon_sub (or ~/.config/pigeon_sub), one per
line; the command line comes after them.
"
    )
}

/// `pigeon-rr --help`.
pub fn rr_usage() -> String {
    format!(
        "\
pigeon-rr sends one request and prints the first response: it subscribes to the response
topic, publishes the message with that topic as its MQTT 5.0 Response Topic, and exits once
a message arrives there. It speaks MQTT 5.0 unless -V says otherwise (with 3.1.1 or 3.1 the
request carries no Response Topic, so the responder must know where to answer).

Usage: pigeon-rr {{[-h host] [-p port] [-u user] [-P password] -t topic | -L URL}}
                 -e response-topic {{-m message | -f file | -n | -s}}
                 [-q qos] [-W seconds] [-F format] [--pretty] [-N] [-v] [-R]
                 [--retain-as-published] [-c] [-k keepalive] [-x session-expiry]
                 [-i id | -I id-prefix] [-d] [--quiet] [-V version]
                 [-D command property value]
                 [--will-topic topic [--will-payload text] [--will-qos qos] [--will-retain]]
                 [{{--cafile file | --capath dir}} [--cert file --key file] [--insecure]
                  [--tls-version version] [--tls-use-os-certs]]
       pigeon-rr --help

Request:
 -t topic     the topic to send the request on.
 -e topic     the response topic: subscribed to, and sent as the request's Response Topic.
 -m text      the request.
 -f file      the contents of a file as the request.
 -s           all of standard input as the request.
 -n           an empty request.
 -q qos       the QoS of the request and of the subscription: 0 (the default), 1 or 2.
 -W seconds   give up after this long: \"Timed out\", exit status 27.
Printing the response (as pigeon-sub prints a message):
 -v           print the topic, a space, then the payload.
 -N           no newline after the response.
 -F format    print the response with this format (see pigeon-sub --help).
 --pretty     indent %j and %J output.
 -R           ignore retained messages on the response topic.
{COMMON}
Options may also be put in $XDG_CONFIG_HOME/pigeon_rr (or ~/.config/pigeon_rr), one per
line; the command line comes after them.
"
    )
}
