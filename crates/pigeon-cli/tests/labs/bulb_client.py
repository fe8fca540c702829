"""IoT lab: subscribe to a bulb's topic, switch it OFF, unsubscribe and disconnect.

Usage: bulb_client.py [HOST [PORT]]  (or MQTT_HOST / MQTT_PORT; default localhost 1883).
Exits 0 when the client saw its own OFF message come back exactly once.
"""

import os
import sys
import threading

import paho.mqtt.client as mqtt

HOST = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("MQTT_HOST", "localhost")
PORT = int(sys.argv[2] if len(sys.argv) > 2 else os.environ.get("MQTT_PORT", "1883"))
TOPIC = "house/bulbs/bulb1"
TIMEOUT = 5

subscribed = threading.Event()
got_message = threading.Event()
unsubscribed = threading.Event()
disconnected = threading.Event()
received = []


def on_connect(client, userdata, flags, reason_code, properties):
    print(f"Connected with result code {reason_code}", flush=True)


def on_subscribe(client, userdata, mid, reason_codes, properties):
    print(f"Subscribed to {TOPIC} with {[str(rc) for rc in reason_codes]}", flush=True)
    subscribed.set()


def on_message(client, userdata, msg):
    received.append(msg.payload.decode())
    print(f"Received message '{msg.payload.decode()}' on topic '{msg.topic}'", flush=True)
    got_message.set()


def on_unsubscribe(client, userdata, mid, reason_codes, properties):
    print(f"Unsubscribed from {TOPIC}", flush=True)
    unsubscribed.set()


def on_disconnect(client, userdata, flags, reason_code, properties):
    print(f"Disconnected with result code {reason_code}", flush=True)
    disconnected.set()


client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bulb-controller")
client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_message = on_message
client.on_unsubscribe = on_unsubscribe
client.on_disconnect = on_disconnect

client.connect(HOST, PORT, 60)
client.loop_start()
client.subscribe(TOPIC, qos=1)
subscribed.wait(TIMEOUT)
client.publish(TOPIC, "OFF", qos=1).wait_for_publish(TIMEOUT)
print(f"Published OFF to {TOPIC}", flush=True)
got_message.wait(TIMEOUT)
client.unsubscribe(TOPIC)
unsubscribed.wait(TIMEOUT)
client.disconnect()
disconnected.wait(TIMEOUT)
client.loop_stop()
sys.exit(0 if received == ["OFF"] and unsubscribed.is_set() else 1)
