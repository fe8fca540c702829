"""IoT lab, paho-mqtt 1.6 style: average the temperature readings of every room.

Usage: classic_sensor_average.py [HOST [PORT]]  (default localhost 1883).
Subscribes to sensors/+/temperature, and after every N readings (env N, default 4) prints
their average and publishes it, rounded to two decimals, on sensors/average/temperature.
Exits after ROUNDS averages (default 1).
"""

import os
import sys

import paho.mqtt.client as mqtt

broker_address = sys.argv[1] if len(sys.argv) > 1 else "localhost"
port = int(sys.argv[2]) if len(sys.argv) > 2 else 1883
n = int(os.environ.get("N", "4"))
rounds = int(os.environ.get("ROUNDS", "1"))
readings = []
averages = 0


def on_connect(client, userdata, flags, rc):
    print("Connected with result code " + str(rc), flush=True)
    client.subscribe("sensors/+/temperature")


def on_subscribe(client, userdata, mid, granted_qos):
    print("Waiting for readings", flush=True)


def on_message(client, userdata, msg):
    global averages
    if msg.topic == "sensors/average/temperature":
        return  # our own average, which the wildcard also matches
    try:
        value = float(msg.payload.decode())
    except ValueError:
        print("Ignoring " + msg.payload.decode() + " on " + msg.topic, flush=True)
        return
    readings.append(value)
    print("Reading " + str(value) + " from " + msg.topic.split("/")[1], flush=True)
    if len(readings) >= n:
        average = round(sum(readings) / len(readings), 2)
        print("Average of " + str(len(readings)) + " readings: " + str(average), flush=True)
        info = client.publish("sensors/average/temperature", str(average), qos=1)
        readings.clear()
        averages += 1
        if averages >= rounds:
            client.disconnect()


client = mqtt.Client("averager")
client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_message = on_message
client.connect(broker_address, port, 60)
client.loop_forever()
