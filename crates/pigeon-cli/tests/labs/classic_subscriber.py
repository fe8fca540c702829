"""IoT lab, paho-mqtt 1.6 style: client "P2" prints what arrives on house/bulbs/bulb1.

Usage: classic_subscriber.py [HOST [PORT]]  (default localhost 1883).
Prints each message's payload, topic, QoS and retain flag, as the lab's on_message does;
exits after COUNT messages (default 1).
"""

import os
import sys

import paho.mqtt.client as mqtt

broker_address = sys.argv[1] if len(sys.argv) > 1 else "localhost"
port = int(sys.argv[2]) if len(sys.argv) > 2 else 1883
count = int(os.environ.get("COUNT", "1"))
received = 0


def on_connect(client, userdata, flags, rc):
    print("Connected with result code " + str(rc), flush=True)
    print("Subscribing to topic", "house/bulbs/bulb1", flush=True)
    client.subscribe("house/bulbs/bulb1")


def on_subscribe(client, userdata, mid, granted_qos):
    print("Subscribed with QoS " + str(granted_qos), flush=True)


def on_message(client, userdata, message):
    global received
    print("message received ", str(message.payload.decode("utf-8")), flush=True)
    print("message topic=", message.topic, flush=True)
    print("message qos=", message.qos, flush=True)
    print("message retain flag=", message.retain, flush=True)
    received += 1
    if received >= count:
        client.disconnect()


print("creating new instance", flush=True)
client = mqtt.Client("P2")
client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_message = on_message
print("connecting to broker", flush=True)
client.connect(broker_address, port, 60)
client.loop_forever()
