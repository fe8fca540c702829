"""IoT lab: an LED controller that publishes its state to home/led every 2 seconds.

Usage: led_publisher.py [HOST [PORT]]  (or MQTT_HOST / MQTT_PORT; default localhost 1883).
LED_INTERVAL overrides the 2 s period (the integration tests shorten it).
"""

import os
import sys
import time

import paho.mqtt.client as mqtt

HOST = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("MQTT_HOST", "localhost")
PORT = int(sys.argv[2] if len(sys.argv) > 2 else os.environ.get("MQTT_PORT", "1883"))
TOPIC = "home/led"
INTERVAL = float(os.environ.get("LED_INTERVAL", "2"))


def on_connect(client, userdata, flags, reason_code, properties):
    print(f"Connected with result code {reason_code}", flush=True)


client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="led-publisher")
client.on_connect = on_connect
client.connect(HOST, PORT, 60)
client.loop_start()

state = "ON"
try:
    while True:
        info = client.publish(TOPIC, state)
        info.wait_for_publish()
        print(f"Published {state} to {TOPIC}", flush=True)
        state = "OFF" if state == "ON" else "ON"
        time.sleep(INTERVAL)
except KeyboardInterrupt:
    pass
finally:
    client.loop_stop()
    client.disconnect()
