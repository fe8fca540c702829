#!/usr/bin/env python3
"""MQTT 5.0 scenarios for tests/v5.rs, played with paho-mqtt 2.x against a broker.

    python -u scenarios.py HOST PORT SCENARIO

Each scenario prints what the clients observed as `key=<json>` lines (tests/v5.rs asserts on
them) and a last line `done`. It exits non-zero when something it waits for does not happen
within WAIT seconds, on any exception, and in any case after a minute (an alarm), so a test
never hangs.
"""

import json
import signal
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

HOST = sys.argv[1]
PORT = int(sys.argv[2])
SCENARIO = sys.argv[3]
# How long to wait for something that should happen promptly.
WAIT = 10.0


class Failed(Exception):
    pass


def emit(key, value):
    print(f"{key}={json.dumps(value, sort_keys=True)}", flush=True)


def emit_props(prefix, props):
    """One line per property: `prefix.Name=<json>`."""
    for name, value in (props or {}).items():
        emit(f"{prefix}.{name}", value)


def props_dict(props):
    if props is None:
        return {}
    data = props.json()
    if "UserProperty" in data:
        data["UserProperty"] = [list(p) for p in data["UserProperty"]]
    return data


def properties(packet_type, **values):
    p = Properties(packet_type)
    for name, value in values.items():
        setattr(p, name, value)
    return p


def publish_props(**values):
    return properties(PacketTypes.PUBLISH, **values)


def connect_props(**values):
    return properties(PacketTypes.CONNECT, **values)


def reason(rc):
    """A paho ReasonCode (or plain int) as its number."""
    return rc if isinstance(rc, int) else rc.value


class Client:
    """A paho client whose network loop runs on a thread of our own that ends with the
    connection (paho's loop_start() would reconnect, which these scenarios must not do), and
    which records everything it sees."""

    def __init__(self, client_id, protocol=mqtt.MQTTv5, manual_ack=False, alias_map=False):
        self.name = client_id or "(empty id)"
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            manual_ack=manual_ack,
        )
        self.v5 = protocol == mqtt.MQTTv5
        self.cond = threading.Condition()
        self.connacks = []
        self.messages = []
        self.subacks = {}
        self.pubacks = {}
        self.disconnects = []
        self.aliases = {} if alias_map else None
        self.thread = None
        self.stopping = False
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        self.c.on_publish = self._on_publish
        self.c.on_disconnect = self._on_disconnect

    # -- callbacks (paho's network thread) ------------------------------------------------

    def _record(self, what):
        with self.cond:
            what()
            self.cond.notify_all()

    def _on_connect(self, _c, _u, flags, rc, props):
        self._record(
            lambda: self.connacks.append(
                {
                    "reason": reason(rc),
                    "session_present": bool(flags.session_present),
                    "props": props_dict(props),
                }
            )
        )

    def _on_message(self, _c, _u, msg):
        props = props_dict(getattr(msg, "properties", None))
        raw_topic = msg.topic
        topic = raw_topic
        if self.aliases is not None and "TopicAlias" in props:
            # paho 2.x does not resolve Topic Aliases the broker sends: do it here
            # (section 3.3.2.3.4).
            alias = props["TopicAlias"]
            if raw_topic:
                self.aliases[alias] = raw_topic
            else:
                topic = self.aliases.get(alias, "")
        m = {
            "topic": topic,
            "raw_topic": raw_topic,
            "payload": msg.payload.decode("utf-8", "replace"),
            "qos": msg.qos,
            "retain": bool(msg.retain),
            "mid": msg.mid,
            "props": props,
            "at": time.monotonic(),
        }
        self._record(lambda: self.messages.append(m))

    def _on_subscribe(self, _c, _u, mid, rcs, _props):
        self._record(lambda: self.subacks.__setitem__(mid, [reason(r) for r in rcs]))

    def _on_publish(self, _c, _u, mid, rc, _props):
        self._record(lambda: self.pubacks.__setitem__(mid, reason(rc)))

    def _on_disconnect(self, _c, _u, _flags, rc, _props):
        self._record(lambda: self.disconnects.append(reason(rc)))

    # -- waiting -----------------------------------------------------------------------------

    def wait(self, what, predicate, timeout=WAIT):
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise Failed(f"{self.name}: no {what} within {timeout} s")

    def wait_messages(self, n, timeout=WAIT):
        self.wait(f"{n} messages (have {len(self.messages)})", lambda: len(self.messages) >= n, timeout)
        return list(self.messages)

    def wait_payload(self, payload, timeout=WAIT):
        self.wait(
            f"message {payload!r} (have {[m['payload'] for m in self.messages]})",
            lambda: any(m["payload"] == payload for m in self.messages),
            timeout,
        )
        return list(self.messages)

    def payloads(self):
        with self.cond:
            return [m["payload"] for m in self.messages]

    # -- actions -----------------------------------------------------------------------------

    def connect(self, clean_start=True, props=None, keepalive=60, expect_success=True):
        """Connects and waits for the CONNACK; returns what on_connect saw."""
        before = len(self.connacks)
        kwargs = {"clean_start": clean_start, "properties": props} if self.v5 else {}
        self.c.connect(HOST, PORT, keepalive, **kwargs)
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        # Tells paho a thread runs the loop: packets queued from the main thread are then
        # written by that thread.
        self.c._thread = self.thread
        self.thread.start()
        self.wait("CONNACK", lambda: len(self.connacks) > before)
        ack = self.connacks[-1]
        if expect_success and ack["reason"] != 0:
            raise Failed(f"{self.name}: CONNACK {ack}")
        return ack

    def _loop(self):
        while not self.stopping:
            if self.c.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                break

    def stop_loop(self):
        self.stopping = True
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(WAIT)

    def subscribe(self, topic, qos=1, props=None, **options):
        if self.v5:
            opts = SubscribeOptions(qos=qos, **options)
            rc, mid = self.c.subscribe(topic, options=opts, properties=props)
        else:
            rc, mid = self.c.subscribe(topic, qos)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise Failed(f"{self.name}: subscribe {topic}: {rc}")
        self.wait(f"SUBACK for {topic}", lambda: mid in self.subacks)
        return self.subacks[mid]

    def publish(self, topic, payload, qos=1, retain=False, props=None, wait=True):
        """Publishes; at QoS > 0 waits for the acknowledgement and returns its reason code."""
        kwargs = {"properties": props} if self.v5 else {}
        info = self.c.publish(topic, payload, qos=qos, retain=retain, **kwargs)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise Failed(f"{self.name}: publish {topic}: {info.rc}")
        if qos == 0 or not wait:
            return None
        self.wait(f"PUBACK for {topic} {payload!r}", lambda: info.mid in self.pubacks)
        return self.pubacks[info.mid]

    def disconnect(self, props=None):
        """A normal DISCONNECT, and waits for the loop to end."""
        if self.v5:
            self.c.disconnect(properties=props)
        else:
            self.c.disconnect()
        if self.thread is not None:
            self.thread.join(WAIT)
            if self.thread.is_alive():
                raise Failed(f"{self.name}: still connected after DISCONNECT")

    def drop(self):
        """Ends the connection without DISCONNECT: stops the loop and closes the socket."""
        self.stop_loop()
        sock = self.c.socket()
        if sock is not None:
            sock.close()


def session_props(seconds):
    return connect_props(SessionExpiryInterval=seconds)


# ---------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------


def connack():
    c = Client("v5-connack")
    ack = c.connect(keepalive=60)
    emit("connack.reason", ack["reason"])
    emit("connack.session_present", ack["session_present"])
    emit_props("connack", ack["props"])
    c.disconnect()
    # A Keep Alive within max_keepalive is not overridden.
    short = Client("v5-connack-short")
    ack = short.connect(keepalive=5)
    emit_props("short", ack["props"])
    short.disconnect()
    anon = Client("")
    ack = anon.connect()
    emit("anon.reason", ack["reason"])
    emit_props("anon", ack["props"])
    # The assigned identifier is a working one: the client subscribes and gets a message.
    anon.subscribe("connack/anon")
    anon.publish("connack/anon", "hi")
    anon.wait_payload("hi")
    emit("anon.received", anon.payloads())
    anon.disconnect()


def session_expiry():
    pub = Client("v5-se-pub")
    pub.connect()
    sub = Client("v5-se-sub")
    ack = sub.connect(clean_start=False, props=session_props(300))
    emit("first.session_present", ack["session_present"])
    sub.subscribe("se/t", qos=1)
    sub.disconnect()
    emit("offline.puback", pub.publish("se/t", "queued"))
    sub2 = Client("v5-se-sub")
    ack = sub2.connect(clean_start=False, props=session_props(300))
    emit("resumed.session_present", ack["session_present"])
    got = sub2.wait_payload("queued")
    emit("resumed.messages", [(m["topic"], m["payload"], m["qos"]) for m in got])
    sub2.disconnect()

    # Session Expiry Interval 0: the session ends with the connection.
    gone = Client("v5-se-zero")
    gone.connect(clean_start=False, props=session_props(0))
    gone.subscribe("se/zero", qos=1)
    gone.disconnect()
    emit("zero.offline_puback", pub.publish("se/zero", "lost"))
    again = Client("v5-se-zero")
    ack = again.connect(clean_start=False, props=session_props(0))
    emit("zero.session_present", ack["session_present"])
    # Nothing subscribed any more: a marker on the topic reaches nobody; no queued message
    # either, as a subscription made now shows.
    again.subscribe("se/zero", qos=1)
    pub.publish("se/zero", "marker")
    again.wait_payload("marker")
    emit("zero.messages", again.payloads())
    again.disconnect()
    pub.disconnect()


def message_expiry():
    pub = Client("v5-me-pub")
    pub.connect()
    sub = Client("v5-me-sub")
    sub.connect(clean_start=True, props=session_props(300))
    sub.subscribe("me/t", qos=1)
    sub.disconnect()
    pub.publish("me/t", "short", props=publish_props(MessageExpiryInterval=1))
    pub.publish("me/t", "long", props=publish_props(MessageExpiryInterval=60))
    pub.publish("me/t", "forever")
    time.sleep(2.5)
    sub2 = Client("v5-me-sub")
    ack = sub2.connect(clean_start=False, props=session_props(300))
    emit("session_present", ack["session_present"])
    got = sub2.wait_payload("forever")
    emit("payloads", [m["payload"] for m in got])
    for m in got:
        emit(f"expiry.{m['payload']}", m["props"].get("MessageExpiryInterval"))
    sub2.disconnect()
    pub.disconnect()


def request_response():
    responder = Client("v5-rr-responder")
    responder.connect()
    responder.subscribe("rr/request", qos=1)
    requester = Client("v5-rr-requester")
    requester.connect()
    requester.subscribe("rr/response/requester", qos=1)
    user = [("a", "1"), ("b", "2"), ("a", "3")]
    props = publish_props(
        ResponseTopic="rr/response/requester",
        CorrelationData=b"\x00\x01corr\xff",
        UserProperty=user,
        ContentType="application/json",
        PayloadFormatIndicator=1,
    )
    requester.publish("rr/request", '{"op":"ping"}', props=props)
    req = responder.wait_messages(1)[0]
    emit("request.payload", req["payload"])
    emit_props("request", req["props"])
    # The responder answers on the Response Topic with the Correlation Data.
    answer = publish_props(CorrelationData=bytes.fromhex(req["props"]["CorrelationData"]))
    responder.publish(req["props"]["ResponseTopic"], "pong", props=answer)
    resp = requester.wait_messages(1)[0]
    emit("response.topic", resp["topic"])
    emit("response.payload", resp["payload"])
    emit_props("response", resp["props"])
    requester.disconnect()
    responder.disconnect()


def subscription_ids():
    sub = Client("v5-sid-sub")
    sub.connect()
    sub.subscribe("a/#", qos=1, props=properties(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=7))
    sub.subscribe("a/b", qos=1, props=properties(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=9))
    # A subscription without an identifier.
    sub.subscribe("a/+", qos=0)
    pub = Client("v5-sid-pub")
    pub.connect()
    pub.publish("a/b", "both")
    pub.publish("a/c", "one")
    # Five copies in all (two of "one", three of "both"); more would come with them.
    sub.wait_messages(5)
    time.sleep(0.5)
    with sub.cond:
        got = list(sub.messages)
    copies = sorted(
        (m["payload"], m["props"].get("SubscriptionIdentifier", []), m["qos"]) for m in got
    )
    emit("copies", copies)
    sub.disconnect()
    pub.disconnect()


def no_local():
    me = Client("v5-nl-me")
    me.connect()
    me.subscribe("nl/t", qos=1, noLocal=True)
    watcher = Client("v5-nl-watcher")
    watcher.connect()
    watcher.subscribe("nl/t", qos=1)
    other = Client("v5-nl-other")
    other.connect()
    # Routed before its PUBACK: were it delivered to me, it would come before "theirs".
    emit("mine.puback", me.publish("nl/t", "mine"))
    other.publish("nl/t", "theirs")
    emit("me.received", [m["payload"] for m in me.wait_payload("theirs")])
    emit("watcher.received", [m["payload"] for m in watcher.wait_payload("theirs")])
    for c in (me, watcher, other):
        c.disconnect()


def retain():
    pub = Client("v5-ret-pub")
    pub.connect()
    pub.publish("ret/t", "kept", retain=True)

    # Retain As Published.
    rap = Client("v5-ret-rap")
    rap.connect()
    rap.subscribe("ret/t", qos=1, retainAsPublished=True)
    plain = Client("v5-ret-plain")
    plain.connect()
    plain.subscribe("ret/t", qos=1, retainAsPublished=False)
    pub.publish("ret/t", "live", retain=True)
    for name, c in (("rap", rap), ("plain", plain)):
        got = c.wait_payload("live")
        emit(f"{name}.seen", [(m["payload"], m["retain"]) for m in got])
    pub.publish("ret/t", "kept", retain=True)

    def marker(c, text):
        # A non-retained message after the SUBACK: retained messages the subscription
        # brought come before it.
        pub.publish("ret/t", text, retain=False)
        return [(m["payload"], m["retain"]) for m in c.wait_payload(text)]

    # Retain Handling 1: sent for a new subscription, not for an existing one; 0 sends them
    # even for an existing one.
    rh = Client("v5-ret-rh")
    rh.connect()
    rh.subscribe("ret/t", qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
    marker(rh, "m1")
    rh.subscribe("ret/t", qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
    marker(rh, "m2")
    rh.subscribe("ret/t", qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_ON_SUBSCRIBE)
    emit("rh.seen", marker(rh, "m3"))

    # Retain Handling 2: never.
    never = Client("v5-ret-never")
    never.connect()
    never.subscribe("ret/t", qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
    emit("never.seen", marker(never, "m4"))
    for c in (pub, rap, plain, rh, never):
        c.disconnect()


def shared():
    members = [
        Client("v5-sh-1"),
        Client("v5-sh-2"),
        Client("v311-sh-3", protocol=mqtt.MQTTv311),
    ]
    for m in members:
        m.connect()
        emit(f"suback.{m.name}", m.subscribe("$share/g/sh/#", qos=1))
    pub = Client("v5-sh-pub")
    pub.connect()
    n = 12
    for i in range(n):
        pub.publish(f"sh/{i % 3}", f"m{i}")

    def total():
        return sum(len(m.messages) for m in members)

    # The messages arrive at three clients, each with its own condition: poll the sum.
    deadline = time.monotonic() + WAIT
    while total() < n and time.monotonic() < deadline:
        time.sleep(0.02)
    if total() < n:
        raise Failed(f"{n} messages in all: have {total()}")
    # Duplicates would arrive with the rest; give them a moment to show up.
    time.sleep(1.0)
    for m in members:
        emit(f"got.{m.name}", sorted(m.payloads(), key=lambda p: int(p[1:])))
    every = sorted((p for m in members for p in m.payloads()), key=lambda p: int(p[1:]))
    emit("all", every)
    for m in members + [pub]:
        m.disconnect()


def will_delay():
    watcher = Client("v5-will-watcher")
    watcher.connect()
    watcher.subscribe("will/#", qos=1)

    def will_client(client_id, topic, payload, delay):
        c = Client(client_id)
        c.c.will_set(
            topic,
            payload,
            qos=1,
            properties=properties(PacketTypes.WILLMESSAGE, WillDelayInterval=delay),
        )
        c.connect(clean_start=True, props=session_props(10))
        return c

    # Dropped: the will comes after the delay.
    dying = will_client("v5-will-dying", "will/dying", "gone", 2)
    dying.drop()
    dropped_at = time.monotonic()
    time.sleep(0.5)
    emit("early", watcher.payloads())
    got = watcher.wait_payload("gone", timeout=15)
    will = next(m for m in got if m["payload"] == "gone")
    emit("will.topic", will["topic"])
    emit("will.after_seconds", round(will["at"] - dropped_at, 1))

    # Back within the delay: no will.
    back = will_client("v5-will-back", "will/back", "gone too", 2)
    back.drop()
    again = Client("v5-will-back")
    ack = again.connect(clean_start=False, props=session_props(10))
    emit("back.session_present", ack["session_present"])
    # Past the delay, with a margin, then a marker through the same path.
    time.sleep(4.0)
    again.publish("will/marker", "marker")
    watcher.wait_payload("marker")
    emit("watcher.payloads", watcher.payloads())
    again.disconnect()
    watcher.disconnect()


def will_takeover():
    watcher = Client("v5-wt-watcher")
    watcher.connect()
    watcher.subscribe("wt/#", qos=1)

    def will_client(client_id, payload):
        c = Client(client_id)
        c.c.will_set(
            "wt/will",
            payload,
            qos=1,
            properties=properties(PacketTypes.WILLMESSAGE, WillDelayInterval=2),
        )
        c.connect(clean_start=True, props=session_props(60))
        return c

    # Taken over by a connection that resumes the session: the client is back in time.
    first = will_client("v5-wt-resumed", "resumed will")
    second = Client("v5-wt-resumed")
    ack = second.connect(clean_start=False, props=session_props(60))
    emit("resumed.session_present", ack["session_present"])
    first.wait("DISCONNECT", lambda: first.disconnects)
    emit("resumed.first_disconnects", first.disconnects)

    # Taken over by a Clean Start connection: the old session ends, and its will goes.
    third = will_client("v5-wt-clean", "clean will")
    fourth = Client("v5-wt-clean")
    ack = fourth.connect(clean_start=True, props=session_props(60))
    emit("clean.session_present", ack["session_present"])
    watcher.wait_payload("clean will")

    # Past the first will's delay, with a margin, then a marker through the same path.
    time.sleep(4.0)
    second.publish("wt/marker", "marker")
    watcher.wait_payload("marker")
    emit("watcher.payloads", watcher.payloads())
    for c in (second, fourth, watcher):
        c.disconnect()


def topic_alias():
    long_topic = "alias/" + "x" * 80 + "/t"
    sub = Client("v5-alias-sub", alias_map=True)
    sub.connect(props=connect_props(TopicAliasMaximum=10))
    sub.subscribe(long_topic, qos=1)
    sub.subscribe("alias/mine/#", qos=1)
    pub = Client("v5-alias-pub")
    pub.connect()
    n = 5
    for i in range(n):
        pub.publish(long_topic, f"m{i}")
    got = sub.wait_messages(n)
    emit("resolved", [(m["topic"] == long_topic, m["payload"]) for m in got])
    emit("raw_topic_empty", [m["raw_topic"] == "" for m in got])
    emit("aliases", [m["props"].get("TopicAlias") for m in got])

    # The publisher's own alias: topic and alias 1, then only the alias.
    mine = "alias/mine/" + "y" * 40
    pub.publish(mine, "with topic", props=publish_props(TopicAlias=1))
    pub.publish("", "alias only", props=publish_props(TopicAlias=1))
    got = sub.wait_payload("alias only")
    emit("mine", [(m["topic"] == mine, m["payload"]) for m in got if m["payload"] in ("with topic", "alias only")])
    sub.disconnect()
    pub.disconnect()


def takeover():
    first = Client("v5-dup")
    first.connect()
    second = Client("v5-dup")
    second.connect()
    first.wait("DISCONNECT", lambda: first.disconnects)
    emit("first.disconnects", first.disconnects)
    # The second connection is the one in use.
    second.subscribe("dup/t", qos=1)
    second.publish("dup/t", "still here")
    second.wait_payload("still here")
    emit("second.disconnects", second.disconnects)
    second.disconnect()


def shutdown():
    c = Client("v5-shutdown")
    c.connect()
    print("ready", flush=True)
    # tests/v5.rs stops the broker now.
    c.wait("DISCONNECT", lambda: c.disconnects, timeout=30)
    emit("disconnects", c.disconnects)


def payload_format():
    sub = Client("v5-pf-sub")
    sub.connect()
    sub.subscribe("pf/t", qos=1)
    pub = Client("v5-pf-pub")
    pub.connect()
    emit("invalid.puback", pub.publish("pf/t", b"\xff\xfe not utf-8", props=publish_props(PayloadFormatIndicator=1)))
    emit("binary.puback", pub.publish("pf/t", b"\xff\xfe binary", props=publish_props(PayloadFormatIndicator=0)))
    emit("valid.puback", pub.publish("pf/t", "caf\u00e9", props=publish_props(PayloadFormatIndicator=1)))
    got = sub.wait_payload("caf\u00e9")
    emit("received", [(m["payload"], m["props"].get("PayloadFormatIndicator")) for m in got])
    sub.disconnect()
    pub.disconnect()


def mixed():
    old_sub = Client("v311-mx-sub", protocol=mqtt.MQTTv311)
    old_sub.connect()
    old_sub.subscribe("mx/from5", qos=1)
    new_sub = Client("v5-mx-sub")
    new_sub.connect()
    new_sub.subscribe("mx/from311", qos=1)
    new_pub = Client("v5-mx-pub")
    new_pub.connect()
    old_pub = Client("v311-mx-pub", protocol=mqtt.MQTTv311)
    old_pub.connect()
    emit(
        "v5.puback",
        new_pub.publish(
            "mx/from5", "from five", props=publish_props(UserProperty=[("k", "v")], ContentType="text/plain")
        ),
    )
    emit("v311.puback", old_pub.publish("mx/from311", "from three"))
    m = old_sub.wait_messages(1)[0]
    emit("v311_sub.got", (m["topic"], m["payload"], m["qos"]))
    m = new_sub.wait_messages(1)[0]
    emit("v5_sub.got", (m["topic"], m["payload"], m["qos"]))
    emit("v5_sub.props", m["props"])

    # A retained message with properties, for a later v5 subscriber and a later 3.1.1 one.
    user = [("origin", "v5"), ("n", "1")]
    new_pub.publish(
        "mx/retained",
        "stored",
        retain=True,
        props=publish_props(UserProperty=user, ContentType="text/plain", PayloadFormatIndicator=1),
    )
    late = Client("v5-mx-late")
    late.connect()
    late.subscribe("mx/retained", qos=1)
    m = late.wait_messages(1)[0]
    emit("late.got", (m["topic"], m["payload"], m["retain"]))
    emit_props("late", m["props"])
    late_old = Client("v311-mx-late", protocol=mqtt.MQTTv311)
    late_old.connect()
    late_old.subscribe("mx/retained", qos=1)
    m = late_old.wait_messages(1)[0]
    emit("late311.got", (m["topic"], m["payload"], m["retain"]))
    new_pub.publish("mx/retained", "", retain=True)
    for c in (old_sub, new_sub, new_pub, old_pub, late, late_old):
        c.disconnect()


def receive_maximum():
    sub = Client("v5-rm-sub", manual_ack=True)
    sub.connect(props=connect_props(ReceiveMaximum=2))
    sub.subscribe("rm/t", qos=1)
    pub = Client("v5-rm-pub")
    pub.connect()
    n = 6
    for i in range(n):
        pub.publish("rm/t", f"m{i}")
    acked = 0
    most = 0
    windows = []
    while acked < n:
        # Wait until the window is full (or everything left has come), then give the broker
        # time to overstep it before acknowledging one message.
        want = min(acked + 2, n)
        sub.wait_messages(want)
        time.sleep(0.5)
        with sub.cond:
            unacked = len(sub.messages) - acked
            first = sub.messages[acked]
        windows.append(unacked)
        most = max(most, unacked)
        sub.c.ack(first["mid"], first["qos"])
        acked += 1
    emit("windows", windows)
    emit("most_unacked", most)
    emit("payloads", sub.payloads())
    sub.disconnect()
    pub.disconnect()


def no_subscribers():
    pub = Client("v5-nosub-pub")
    pub.connect()
    emit("nobody.puback", pub.publish("nosub/nobody", "lonely"))
    sub = Client("v5-nosub-sub")
    sub.connect()
    sub.subscribe("nosub/somebody", qos=1)
    emit("somebody.puback", pub.publish("nosub/somebody", "heard"))
    sub.wait_payload("heard")
    # QoS 2 too: PUBREC carries the reason.
    emit("nobody_qos2.pubcomp_seen", pub.publish("nosub/nobody", "lonely", qos=2) is not None)
    sub.disconnect()
    pub.disconnect()


def auth_method():
    c = Client("v5-auth")
    ack = c.connect(props=connect_props(AuthenticationMethod="SCRAM-SHA-1"), expect_success=False)
    emit("connack.reason", ack["reason"])
    # The broker closes the connection after refusing it.
    c.thread.join(WAIT)
    emit("closed", not c.thread.is_alive())


SCENARIOS = {
    f.__name__: f
    for f in (
        connack,
        session_expiry,
        message_expiry,
        request_response,
        subscription_ids,
        no_local,
        retain,
        shared,
        will_delay,
        will_takeover,
        topic_alias,
        takeover,
        shutdown,
        payload_format,
        mixed,
        receive_maximum,
        no_subscribers,
        auth_method,
    )
}


def main():
    signal.alarm(60)
    try:
        SCENARIOS[SCENARIO]()
    except Failed as e:
        print(f"FAILED: {e}", flush=True)
        sys.exit(1)
    print("done", flush=True)


if __name__ == "__main__":
    main()
