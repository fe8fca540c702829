"""IoT lab, paho-mqtt 1.6 style: a bulb that follows ON / OFF commands on house/bulbs/bulb1
and reports its state on house/bulbs/bulb1/state.

Usage: classic_led_bulb.py [HOST [PORT]]  (default localhost 1883).
On a Raspberry Pi the lab drives a GPIO pin where this prints; exits after COUNT commands
(default 2).
"""

import os
import sys

import paho.mqtt.client as mqtt

broker_address = sys.argv[1] if len(sys.argv) > 1 else "localhost"
port = int(sys.argv[2]) if len(sys.argv) > 2 else 1883
count = int(os.environ.get("COUNT", "2"))
commands = 0


def on_connect(client, userdata, flags, rc):
    print("Connected with result code " + str(rc), flush=True)
    client.subscribe("house/bulbs/bulb1", 1)


def on_subscribe(client, userdata, mid, granted_qos):
    print("Bulb ready", flush=True)


def on_message(client, userdata, msg):
    global commands
    command = msg.payload.decode()
    if command in ("ON", "OFF"):
        print("Bulb is " + command, flush=True)
        client.publish("house/bulbs/bulb1/state", command, qos=1, retain=True)
    else:
        print("Unknown command " + command, flush=True)
    commands += 1
    if commands >= count:
        client.disconnect()


client = mqtt.Client("bulb1")
client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_message = on_message
client.connect(broker_address, port, 60)
client.loop_forever()
