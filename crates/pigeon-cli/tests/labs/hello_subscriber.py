"""IoT lab: subscribe to test/topic and print every message received.

Usage: hello_subscriber.py [HOST [PORT]]  (or MQTT_HOST / MQTT_PORT; default localhost 1883).
"""

import os
import sys

import paho.mqtt.client as mqtt

HOST = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("MQTT_HOST", "localhost")
PORT = int(sys.argv[2] if len(sys.argv) > 2 else os.environ.get("MQTT_PORT", "1883"))
TOPIC = "test/topic"


def on_connect(client, userdata, flags, reason_code, properties):
    print(f"Connected with result code {reason_code}", flush=True)
    client.subscribe(TOPIC)


def on_subscribe(client, userdata, mid, reason_codes, properties):
    print(f"Subscribed to {TOPIC}", flush=True)


def on_message(client, userdata, msg):
    print(f"Received message '{msg.payload.decode()}' on topic '{msg.topic}'", flush=True)


client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_message = on_message
client.connect(HOST, PORT, 60)
client.loop_forever()
