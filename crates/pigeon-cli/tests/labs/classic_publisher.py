"""IoT lab, paho-mqtt 1.6 style: client "P1" switches the bulb OFF on house/bulbs/bulb1.

Usage: classic_publisher.py [HOST [PORT]]  (default localhost 1883).
Written as the labs wrote it for paho-mqtt 1.x: mqtt.Client("P1") and the old callback
signatures. Under paho-mqtt 2.x this needs mqtt.CallbackAPIVersion.VERSION1 first.
"""

import sys
import time

import paho.mqtt.client as mqtt

broker_address = sys.argv[1] if len(sys.argv) > 1 else "localhost"
port = int(sys.argv[2]) if len(sys.argv) > 2 else 1883


def on_connect(client, userdata, flags, rc):
    print("Connected with result code " + str(rc), flush=True)


def on_publish(client, userdata, mid):
    print("Published message id " + str(mid), flush=True)


print("creating new instance", flush=True)
client = mqtt.Client("P1")
client.on_connect = on_connect
client.on_publish = on_publish
print("connecting to broker", flush=True)
client.connect(broker_address, port)
client.loop_start()
print("Publishing message to topic house/bulbs/bulb1", flush=True)
info = client.publish("house/bulbs/bulb1", "OFF", qos=1)
info.wait_for_publish()
time.sleep(0.2)
client.loop_stop()
client.disconnect()
