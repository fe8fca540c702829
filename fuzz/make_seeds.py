#!/usr/bin/env python3
"""Writes the committed seed inputs under seeds/decode and seeds/topic.

Every packet is built byte by byte from the MQTT 3.1.1 and 5.0 specifications (no codec
is used), so the seeds do not inherit the decoder's own mistakes. Rerun after editing:

    python3 make_seeds.py

The files are rewritten in place; a seed that no longer exists here is not deleted.
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def var_int(n):
    """Variable Byte Integer (section 1.5.5)."""
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        if n:
            byte |= 0x80
        out.append(byte)
        if not n:
            return bytes(out)


def u16(n):
    return struct.pack(">H", n)


def u32(n):
    return struct.pack(">I", n)


def string(s):
    """UTF-8 Encoded String: two-byte length, then the bytes."""
    b = s.encode("utf-8") if isinstance(s, str) else s
    return u16(len(b)) + b


binary = string


def packet(first, body):
    """Fixed header (type and flags, Remaining Length) followed by the body."""
    return bytes([first]) + var_int(len(body)) + body


def props(*items):
    """A property block: Property Length, then the concatenated properties."""
    body = b"".join(items)
    return var_int(len(body)) + body


# Property encoders, by type (section 2.2.2.2).
def p_byte(ident, v):
    return bytes([ident, v])


def p_u16(ident, v):
    return bytes([ident]) + u16(v)


def p_u32(ident, v):
    return bytes([ident]) + u32(v)


def p_varint(ident, v):
    return bytes([ident]) + var_int(v)


def p_str(ident, s):
    return bytes([ident]) + string(s)


def p_pair(k, v):
    return bytes([0x26]) + string(k) + string(v)


def connect_v311(client_id, clean=True, keep_alive=60, will=None, user=None, password=None):
    flags = 0x02 if clean else 0
    tail = b""
    if will is not None:
        topic, payload, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        tail += string(topic) + binary(payload)
    if user is not None:
        flags |= 0x80
        tail += string(user)
    if password is not None:
        flags |= 0x40
        tail += binary(password)
    body = string("MQTT") + bytes([4, flags]) + u16(keep_alive) + string(client_id) + tail
    return packet(0x10, body)


def seeds_decode():
    s = {}

    # ---- MQTT 3.1 and 3.1.1 ----
    s["v31-connect"] = packet(
        0x10, string("MQIsdp") + bytes([3, 0x02]) + u16(30) + string("legacy-client")
    )
    s["v311-connect-minimal"] = connect_v311("c1")
    s["v311-connect-empty-client-id"] = connect_v311("", keep_alive=0)
    s["v311-connect-will-user-pass"] = connect_v311(
        "sensor-42",
        clean=False,
        keep_alive=120,
        will=("status/sensor-42", b"offline", 1, True),
        user="alice",
        password=b"s3cret\x00\xff",
    )
    s["v311-connack-accepted"] = packet(0x20, bytes([0x00, 0x00]))
    s["v311-connack-session-present"] = packet(0x20, bytes([0x01, 0x00]))
    s["v311-connack-not-authorized"] = packet(0x20, bytes([0x00, 0x05]))
    s["v311-publish-qos0"] = packet(0x30, string("a/b") + b"hello")
    s["v311-publish-qos0-retain-empty"] = packet(0x31, string("retained/clear"))
    s["v311-publish-qos1"] = packet(0x32, string("sensors/temp") + u16(1) + b"21.5")
    s["v311-publish-qos2-dup"] = packet(0x3C, string("x/y/z") + u16(0xFFFF) + bytes(range(32)))
    s["v311-publish-utf8-topic"] = packet(0x30, string("m\u00e9t\u00e9o/\u6771\u4eac") + b"{}")
    s["v311-puback"] = packet(0x40, u16(7))
    s["v311-pubrec"] = packet(0x50, u16(8))
    s["v311-pubrel"] = packet(0x62, u16(8))
    s["v311-pubcomp"] = packet(0x70, u16(8))
    s["v311-subscribe"] = packet(
        0x82,
        u16(10)
        + string("sport/tennis/+")
        + bytes([0])
        + string("sport/#")
        + bytes([1])
        + string("#")
        + bytes([2]),
    )
    s["v311-subscribe-share"] = packet(0x82, u16(11) + string("$share/group/a/+") + bytes([1]))
    s["v311-suback"] = packet(0x90, u16(10) + bytes([0x00, 0x01, 0x02, 0x80]))
    s["v311-unsubscribe"] = packet(0xA2, u16(12) + string("sport/tennis/+") + string("#"))
    s["v311-unsuback"] = packet(0xB0, u16(12))
    s["v311-pingreq"] = packet(0xC0, b"")
    s["v311-pingresp"] = packet(0xD0, b"")
    s["v311-disconnect"] = packet(0xE0, b"")
    # A whole 3.1.1 session: the decoder learns the version from CONNECT.
    s["v311-stream"] = (
        connect_v311("stream")
        + packet(0x82, u16(1) + string("t/#") + bytes([1]))
        + packet(0x32, string("t/1") + u16(2) + b"payload")
        + packet(0x40, u16(2))
        + packet(0xC0, b"")
        + packet(0xE0, b"")
    )

    # ---- MQTT 5.0 ----
    connect_props = props(
        p_u32(0x11, 3600),  # Session Expiry Interval
        p_u16(0x21, 20),  # Receive Maximum
        p_u32(0x27, 65536),  # Maximum Packet Size
        p_u16(0x22, 10),  # Topic Alias Maximum
        p_byte(0x19, 1),  # Request Response Information
        p_byte(0x17, 0),  # Request Problem Information
        p_pair("region", "eu-west"),
        p_pair("region", "eu-west"),  # user properties may repeat
    )
    will_props = props(
        p_u32(0x18, 5),  # Will Delay Interval
        p_byte(0x01, 1),  # Payload Format Indicator: UTF-8
        p_u32(0x02, 600),  # Message Expiry Interval
        p_str(0x03, "text/plain"),  # Content Type
        p_str(0x08, "replies/will"),  # Response Topic
        p_str(0x09, b"\x01\x02\x03"),  # Correlation Data
        p_pair("k", "v"),
    )
    flags = 0x02 | 0x04 | (1 << 3) | 0x80 | 0x40  # clean, will QoS 1, user name, password
    connect_v5 = packet(
        0x10,
        string("MQTT")
        + bytes([5, flags])
        + u16(30)
        + connect_props
        + string("v5-client")
        + will_props
        + string("clients/v5-client/status")
        + binary(b"gone")
        + string("bob")
        + binary(b"pw"),
    )
    s["v5-connect-props-will"] = connect_v5
    s["v5-connect-minimal"] = packet(
        0x10, string("MQTT") + bytes([5, 0x02]) + u16(60) + props() + string("")
    )
    # Password without user name is allowed in 5.0.
    s["v5-connect-password-only"] = packet(
        0x10, string("MQTT") + bytes([5, 0x40]) + u16(10) + props() + string("p") + binary(b"x")
    )
    s["v5-connect-enhanced-auth"] = packet(
        0x10,
        string("MQTT")
        + bytes([5, 0x00])
        + u16(0)
        + props(p_str(0x15, "SCRAM-SHA-1"), p_str(0x16, b"client-first"))
        + string("auth-client"),
    )
    s["v5-connack-props"] = packet(
        0x20,
        bytes([0x00, 0x00])
        + props(
            p_u32(0x11, 0),
            p_u16(0x21, 100),
            p_byte(0x24, 1),  # Maximum QoS
            p_byte(0x25, 1),  # Retain Available
            p_u32(0x27, 1 << 20),
            p_str(0x12, "auto-7F3A"),  # Assigned Client Identifier
            p_u16(0x22, 16),
            p_str(0x1F, "welcome"),
            p_byte(0x28, 1),
            p_byte(0x29, 1),
            p_byte(0x2A, 1),
            p_u16(0x13, 45),  # Server Keep Alive
            p_str(0x1A, "resp/"),  # Response Information
            p_pair("server", "pigeon"),
        ),
    )
    s["v5-connack-refused"] = packet(0x20, bytes([0x00, 0x87]) + props(p_str(0x1F, "no")))
    s["v5-publish-qos0"] = packet(0x30, string("a/b") + props() + b"hello")
    s["v5-publish-qos1-props"] = packet(
        0x32,
        string("sensors/temp")
        + u16(1)
        + props(
            p_byte(0x01, 1),
            p_u32(0x02, 30),
            p_u16(0x23, 3),  # Topic Alias
            p_str(0x08, "sensors/temp/reply"),
            p_str(0x09, b"corr-1"),
            p_str(0x03, "application/json"),
            p_pair("unit", "celsius"),
        )
        + b'{"t":21.5}',
    )
    s["v5-publish-qos2-subids"] = packet(
        0x35,  # QoS 2, retain
        string("x/y")
        + u16(513)
        + props(p_varint(0x0B, 1), p_varint(0x0B, 268_435_455))  # Subscription Identifiers
        + bytes(range(256))[:64],
    )
    # Empty topic name with a Topic Alias (MQTT 5.0, 3.3.2.3.4).
    s["v5-publish-alias-only"] = packet(0x30, string("") + props(p_u16(0x23, 3)) + b"x")
    s["v5-puback-success-short"] = packet(0x40, u16(1))
    s["v5-puback-reason"] = packet(0x40, u16(1) + bytes([0x10]))
    s["v5-puback-reason-props"] = packet(
        0x40, u16(1) + bytes([0x87]) + props(p_str(0x1F, "denied"), p_pair("a", "b"))
    )
    s["v5-pubrec"] = packet(0x50, u16(2) + bytes([0x80]) + props())
    s["v5-pubrel"] = packet(0x62, u16(2) + bytes([0x92]))
    s["v5-pubcomp"] = packet(0x70, u16(2) + bytes([0x00]) + props(p_str(0x1F, "ok")))
    s["v5-subscribe-share-options"] = packet(
        0x82,
        u16(20)
        + props(p_varint(0x0B, 42), p_pair("sub", "prop"))
        + string("$share/workers/jobs/#")
        + bytes([0x01 | 0x08 | (2 << 4)])  # QoS 1, retain as published, do not send
        + string("local/+/events")
        + bytes([0x02 | 0x04 | (1 << 4)]),  # QoS 2, no local, send if new
    )
    s["v5-suback"] = packet(
        0x90, u16(20) + props(p_str(0x1F, "partial")) + bytes([0x01, 0x02, 0x00, 0x80, 0x9E, 0xA2])
    )
    s["v5-unsubscribe"] = packet(
        0xA2, u16(21) + props(p_pair("x", "y")) + string("$share/workers/jobs/#") + string("a")
    )
    s["v5-unsuback"] = packet(0xB0, u16(21) + props() + bytes([0x00, 0x11, 0x87]))
    s["v5-disconnect-empty"] = packet(0xE0, b"")
    s["v5-disconnect-reason"] = packet(0xE0, bytes([0x04]))
    s["v5-disconnect-props"] = packet(
        0xE0,
        bytes([0x9C])  # Use another server
        + props(p_u32(0x11, 0), p_str(0x1F, "moving"), p_str(0x1C, "other.example:1883")),
    )
    s["v5-auth-empty"] = packet(0xF0, b"")
    s["v5-auth-continue"] = packet(
        0xF0, bytes([0x18]) + props(p_str(0x15, "SCRAM-SHA-1"), p_str(0x16, b"server-first"))
    )
    # A whole 5.0 session, so that the stream decoder switches to 5.0 after CONNECT.
    s["v5-stream"] = (
        connect_v5
        + packet(0x82, u16(1) + props() + string("t/#") + bytes([1]))
        + packet(0x32, string("t/1") + u16(2) + props(p_u16(0x23, 1)) + b"payload")
        + packet(0x30, string("") + props(p_u16(0x23, 1)) + b"aliased")
        + packet(0x40, u16(2) + bytes([0x00]) + props())
        + packet(0xF0, bytes([0x19]) + props(p_str(0x15, "SCRAM-SHA-1")))
        + packet(0xC0, b"")
        + packet(0xE0, bytes([0x00]) + props(p_u32(0x11, 10)))
    )
    # Remaining Length near the four-byte limit: a header-only fragment.
    s["large-remaining-length-prefix"] = bytes([0x30, 0xFF, 0xFF, 0xFF, 0x7F]) + string("a")
    # A PUBLISH whose Remaining Length takes two bytes.
    s["v311-publish-200-bytes"] = packet(0x30, string("big/payload") + bytes(200))
    return s


def seeds_topic():
    names = [
        "a",
        "a/b/c",
        "/",
        "//",
        "/leading",
        "trailing/",
        "sport/tennis/player1",
        "sport/tennis/+",
        "sport/#",
        "#",
        "+",
        "+/+",
        "+/tennis/#",
        "sport+",
        "sport/#/x",
        "$SYS/broker/uptime",
        "$SYS/#",
        "$share/group/a/b",
        "$share/group/#",
        "$share/group",
        "$share//a",
        "$share/g+/a",
        "m\u00e9t\u00e9o/\u6771\u4eac",
        "a\u0000b",
        "\ufeff/bom",
        "x" * 300,
    ]
    return {f"{i:02}": n.encode("utf-8") for i, n in enumerate(names)}


def write(directory, seeds):
    path = os.path.join(HERE, "seeds", directory)
    os.makedirs(path, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(path, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    write("decode", seeds_decode())
    write("topic", seeds_topic())
