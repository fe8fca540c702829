"""IoT lab: publish "Hello, MQTT!" to test/topic once, then disconnect.

Usage: hello_publisher.py [HOST [PORT]]  (or MQTT_HOST / MQTT_PORT; default localhost 1883).
"""

import os
import sys

import paho.mqtt.client as mqtt

HOST = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("MQTT_HOST", "localhost")
PORT = int(sys.argv[2] if len(sys.argv) > 2 else os.environ.get("MQTT_PORT", "1883"))
TOPIC = "test/topic"

client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
client.connect(HOST, PORT, 60)
client.loop_start()
info = client.publish(TOPIC, "Hello, MQTT!", qos=1)
info.wait_for_publish()
print(f"Message published to {TOPIC}", flush=True)
client.loop_stop()
client.disconnect()
