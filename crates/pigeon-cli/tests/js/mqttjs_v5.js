// MQTT.js in MQTT 5.0 mode against Pigeon over TCP, driven by crates/pigeon-cli/tests/mqttjs_v5.rs.
//
//   node mqttjs_v5.js mqtt://127.0.0.1:PORT
//
// Runs the steps below one after the other and prints what MQTT.js saw, one `key json` line
// each; the Rust test asserts on them. Ends with "done" and exit status 0; any error prints
// "error ..." and exits 1.
'use strict';
const mqtt = require('mqtt');

const url = process.argv[2];
const fail = (what) => {
    console.log('error ' + what);
    process.exit(1);
};
setTimeout(() => fail('timed out'), 60000).unref();

const show = (key, value) => console.log(key + ' ' + JSON.stringify(value));

/** Connects with `options`; resolves with the client and its CONNACK. */
function connect(options) {
    return new Promise((resolve, reject) => {
        const client = mqtt.connect(url, {
            protocolVersion: 5,
            reconnectPeriod: 0,
            connectTimeout: 10000,
            ...options,
        });
        // Every message and acknowledgement is kept from the start, so that none arriving
        // right after CONNACK is missed.
        client.inbox = [];
        client.on('message', (topic, payload, packet) => {
            client.inbox.push({ topic, payload, packet });
            client.emit('inbox');
        });
        client.pubacks = [];
        client.on('packetreceive', (packet) => {
            if (packet.cmd === 'puback') client.pubacks.push(packet.reasonCode || 0);
        });
        // Topic aliases as they are on the wire (before MQTT.js resolves them).
        client.wire = [];
        const wire = (dir) => (packet) => {
            if (packet.cmd !== 'publish' || !String(packet.topic).includes('alias')
                && !(packet.properties && packet.properties.topicAlias)) return;
            const alias = packet.properties && packet.properties.topicAlias;
            client.wire.push({ dir, alias: alias || null, topic: packet.topic.length > 0 });
        };
        client.on('packetreceive', wire('in'));
        client.on('packetsend', wire('out'));
        client.once('connect', (connack) => resolve({ client, connack }));
        client.once('error', reject);
    });
}

/** Takes the first `n` messages on topics starting with `prefix` from `client`'s inbox,
 * waiting for them as needed. */
function messages(client, prefix, n) {
    return new Promise((resolve) => {
        const check = () => {
            const mine = client.inbox.filter((m) => m.topic.startsWith(prefix));
            if (mine.length < n) return;
            client.removeListener('inbox', check);
            const taken = mine.slice(0, n);
            client.inbox = client.inbox.filter((m) => !taken.includes(m));
            resolve(taken.map((m) => ({ ...m, payload: m.payload.toString() })));
        };
        client.on('inbox', check);
        check();
    });
}

/** The next message on a topic starting with `prefix`. */
async function nextMessage(client, prefix) {
    return (await messages(client, prefix, 1))[0];
}

/** The reason code of the PUBACK answering a QoS 1 publish. MQTT.js hides codes below 0x80
 * (its callback gets no packet) and raises an error for the others, so the PUBACK is read as
 * it arrives. */
async function pubackReason(client, topic, payload, options) {
    const before = client.pubacks.length;
    try {
        await client.publishAsync(topic, payload, { qos: 1, ...options });
    } catch (e) {
        if (e.code === undefined) throw e;
    }
    if (client.pubacks.length !== before + 1) throw new Error('no PUBACK for ' + topic);
    return client.pubacks[before];
}

async function main() {
    // CONNACK properties [MQTT-3.2.2-*].
    const { client: responder, connack } = await connect({
        clientId: 'js5-responder',
        clean: false,
        properties: { sessionExpiryInterval: 300, topicAliasMaximum: 10 },
    });
    show('connack.reason', connack.reasonCode);
    show('connack.session_present', connack.sessionPresent);
    show('connack.properties', connack.properties || {});

    // Subscription identifiers on each matching copy.
    await responder.subscribeAsync('js5/req/#', { qos: 1, properties: { subscriptionIdentifier: 42 } });
    await responder.subscribeAsync('js5/alias/#', { qos: 0 });

    const { client: requester } = await connect({
        clientId: 'js5-requester',
        properties: { topicAliasMaximum: 10 },
        autoAssignTopicAlias: true,
    });
    await requester.subscribeAsync('js5/resp/#', { qos: 1 });

    // Request/response: the request's properties arrive unchanged; the reply goes to the
    // Response Topic with the Correlation Data.
    const request = nextMessage(responder, 'js5/req/');
    const requestReason = await pubackReason(requester, 'js5/req/time', 'what time is it', {
        properties: {
            responseTopic: 'js5/resp/time',
            correlationData: Buffer.from('corr-17'),
            userProperties: { app: 'lab', step: '4' },
            contentType: 'text/plain',
            payloadFormatIndicator: true,
            messageExpiryInterval: 120,
        },
    });
    show('request.puback', requestReason);
    const got = await request;
    const p = got.packet.properties || {};
    show('request.received', {
        topic: got.topic,
        payload: got.payload.toString(),
        qos: got.packet.qos,
        responseTopic: p.responseTopic,
        correlationData: p.correlationData && p.correlationData.toString(),
        userProperties: p.userProperties,
        contentType: p.contentType,
        payloadFormatIndicator: p.payloadFormatIndicator,
        messageExpiryInterval: p.messageExpiryInterval,
        subscriptionIdentifier: p.subscriptionIdentifier,
    });
    const reply = nextMessage(requester, 'js5/resp/');
    await responder.publishAsync(p.responseTopic, 'noon', {
        qos: 1,
        properties: { correlationData: p.correlationData },
    });
    const answer = await reply;
    show('reply.received', {
        topic: answer.topic,
        payload: answer.payload.toString(),
        correlationData: answer.packet.properties.correlationData.toString(),
    });

    // Reason codes on PUBACK: 0x10 when nobody subscribes, 0x99 for a payload that is not
    // the UTF-8 its Payload Format Indicator promises.
    show('nobody.puback', await pubackReason(requester, 'js5/nobody/here', 'x'));
    show(
        'bad_utf8.puback',
        await pubackReason(requester, 'js5/req/bad', Buffer.from([0xff, 0xfe]), {
            properties: { payloadFormatIndicator: true },
        }),
    );

    // Topic aliases: the requester's MQTT.js assigns them on its own; the responder receives
    // through the broker's aliases; both ends resolve them to the full topic.
    const long = 'js5/alias/building1/room2/temperature3/readings/celsius';
    const aliased = messages(responder, 'js5/alias/', 3);
    for (const i of [1, 2, 3]) {
        await requester.publishAsync(long, `reading ${i}`, { qos: 0 });
    }
    show(
        'alias.received',
        (await aliased).map((m) => ({ topic: m.topic, payload: m.payload })),
    );
    show('alias.sent_wire', requester.wire.filter((w) => w.dir === 'out'));
    show('alias.received_wire', responder.wire.filter((w) => w.dir === 'in'));

    // Session Expiry: the responder leaves, a request is queued for it, and it comes back
    // to its session.
    await responder.endAsync();
    show('offline.puback', await pubackReason(requester, 'js5/req/queued', 'while away'));
    const { client: back, connack: again } = await connect({
        clientId: 'js5-responder',
        clean: false,
        properties: { sessionExpiryInterval: 300 },
    });
    show('resumed.session_present', again.sessionPresent);
    const queued = await nextMessage(back, 'js5/req/');
    show('resumed.received', {
        topic: queued.topic,
        payload: queued.payload.toString(),
        subscriptionIdentifier: (queued.packet.properties || {}).subscriptionIdentifier,
    });

    // Takeover: the session's first connection is told 0x8E (Session taken over).
    const disconnected = new Promise((resolve) => back.once('disconnect', (packet) => resolve(packet)));
    const { client: thief } = await connect({
        clientId: 'js5-responder',
        clean: false,
        properties: { sessionExpiryInterval: 0 },
    });
    show('takeover.reason', (await disconnected).reasonCode);

    await thief.endAsync();
    await requester.endAsync();
    back.end(true);
    console.log('done');
    process.exit(0);
}

main().catch((e) => fail(e && e.stack ? e.stack : String(e)));
