// MQTT.js against Pigeon over ws:// or wss://, driven by crates/pigeon-cli/tests/websockets.rs.
//
//   node mqttjs_interop.js URL [CA_FILE]
//
// Connects (MQTT 3.1.1 unless PROTOCOL_VERSION says 5), subscribes to js/in/# at QoS 2 and
// prints "subscribed"; the test then publishes three messages from a TCP client (QoS 0, 1, 2),
// each printed here as "recv TOPIC QOS PAYLOAD". Once all three are in, this publishes
// js/out/q0..q2 at QoS 0, 1 and 2 (for a TCP subscriber), prints "published", and exits 0
// after a clean disconnect. Any error prints "error ..." and exits 1.
'use strict';
const fs = require('fs');
const mqtt = require('mqtt');

const [url, caFile] = process.argv.slice(2);
const options = {
    clientId: 'mqttjs-' + process.pid,
    protocolVersion: Number(process.env.PROTOCOL_VERSION || 4),
    reconnectPeriod: 0,
    connectTimeout: 10000,
};
if (caFile) options.ca = fs.readFileSync(caFile);

const fail = (what) => {
    console.log('error ' + what);
    process.exit(1);
};
setTimeout(() => fail('timed out'), 60000).unref();

const client = mqtt.connect(url, options);
client.on('error', (e) => fail(e.message));
let received = 0;
client.on('connect', () => {
    client.subscribe('js/in/#', { qos: 2 }, (err, granted) => {
        if (err) return fail('subscribe: ' + err.message);
        console.log('subscribed ' + granted.map((g) => g.qos).join(','));
    });
});
client.on('message', async (topic, payload, packet) => {
    console.log(`recv ${topic} ${packet.qos} ${payload.toString()}`);
    if (++received < 3) return;
    try {
        for (const qos of [0, 1, 2]) {
            await client.publishAsync(`js/out/q${qos}`, `from mqtt.js at qos ${qos}`, { qos });
        }
        console.log('published');
        await client.endAsync();
        process.exit(0);
    } catch (e) {
        fail('publish: ' + e.message);
    }
});
