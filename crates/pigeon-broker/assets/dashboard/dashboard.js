// Pigeon's dashboard: built into the broker (no CDN, no framework). The page talks MQTT 3.1.1
// over WebSocket to a `protocol websockets` listener with the user's own credentials (so the
// broker's password file and ACLs apply as to any client), and reads the JSON API of the
// HTTP listener (docs/http.md) with the same credentials. DOM updates are batched once per
// animation frame so that thousands of topics stay responsive.
'use strict';

// ------------------------------------------------------------------------------------------
// A small MQTT 3.1.1 client over WebSocket
// ------------------------------------------------------------------------------------------

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8');

function mqttString(s) {
    const bytes = utf8.encode(s);
    const out = new Uint8Array(2 + bytes.length);
    out[0] = bytes.length >> 8;
    out[1] = bytes.length & 0xff;
    out.set(bytes, 2);
    return out;
}

function packet(first, parts) {
    let length = 0;
    for (const p of parts) length += p.length;
    const header = [first];
    let n = length;
    do {
        let byte = n % 128;
        n = Math.floor(n / 128);
        if (n > 0) byte |= 0x80;
        header.push(byte);
    } while (n > 0);
    const out = new Uint8Array(header.length + length);
    out.set(header, 0);
    let at = header.length;
    for (const p of parts) {
        out.set(p, at);
        at += p.length;
    }
    return out;
}

const u16 = (n) => new Uint8Array([n >> 8, n & 0xff]);

class MqttClient {
    constructor(url, { clientId, username, password, keepAlive = 30 }) {
        this.url = url;
        this.clientId = clientId;
        this.username = username;
        this.password = password;
        this.keepAlive = keepAlive;
        this.buffer = new Uint8Array(0);
        this.nextId = 1;
        this.pending = new Map(); // packet id -> { resolve, reject, kind }
        this.onmessage = () => {};
        this.onclose = () => {};
    }

    connect() {
        return new Promise((resolve, reject) => {
            this.connack = { resolve, reject };
            const ws = new WebSocket(this.url, ['mqtt']);
            ws.binaryType = 'arraybuffer';
            this.ws = ws;
            ws.onopen = () => this.sendConnect();
            ws.onmessage = (e) => this.receive(new Uint8Array(e.data));
            ws.onerror = () => {
                if (this.connack) {
                    this.connack.reject(new Error('cannot reach ' + this.url));
                    this.connack = null;
                }
            };
            ws.onclose = () => {
                clearInterval(this.pinger);
                if (this.connack) {
                    this.connack.reject(new Error('connection closed by the broker'));
                    this.connack = null;
                }
                for (const p of this.pending.values()) p.reject(new Error('connection closed'));
                this.pending.clear();
                this.onclose();
            };
        });
    }

    sendConnect() {
        let flags = 0x02; // clean session
        const payload = [mqttString(this.clientId)];
        if (this.username) {
            flags |= 0x80;
            payload.push(mqttString(this.username));
            if (this.password) {
                flags |= 0x40;
                payload.push(mqttString(this.password));
            }
        }
        const header = [mqttString('MQTT'), new Uint8Array([4, flags]), u16(this.keepAlive)];
        this.send(packet(0x10, header.concat(payload)));
        this.pinger = setInterval(() => this.send(new Uint8Array([0xc0, 0])), this.keepAlive * 500);
    }

    send(bytes) {
        if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(bytes);
    }

    allocateId() {
        for (let i = 0; i < 65535; i++) {
            const id = this.nextId;
            this.nextId = (this.nextId % 65535) + 1;
            if (!this.pending.has(id)) return id;
        }
        throw new Error('no free packet identifier');
    }

    receive(chunk) {
        const joined = new Uint8Array(this.buffer.length + chunk.length);
        joined.set(this.buffer, 0);
        joined.set(chunk, this.buffer.length);
        let at = 0;
        for (;;) {
            // Fixed header: type byte, then the Remaining Length in 1 to 4 bytes.
            let length = 0, multiplier = 1, i = at + 1, complete = false;
            while (i < joined.length && i < at + 5) {
                const byte = joined[i++];
                length += (byte & 0x7f) * multiplier;
                multiplier *= 128;
                if ((byte & 0x80) === 0) { complete = true; break; }
            }
            if (!complete || i + length > joined.length) break;
            this.handle(joined[at], joined.subarray(i, i + length));
            at = i + length;
        }
        this.buffer = joined.slice(at);
    }

    handle(first, body) {
        const type = first >> 4;
        const id = body.length >= 2 ? (body[0] << 8) | body[1] : 0;
        switch (type) {
            case 2: { // CONNACK
                const rc = body[1];
                if (this.connack) {
                    if (rc === 0) this.connack.resolve();
                    else this.connack.reject(new Error(CONNACK_CODES[rc] || 'refused (' + rc + ')'));
                    this.connack = null;
                }
                break;
            }
            case 3: { // PUBLISH
                const qos = (first >> 1) & 3;
                const topicLength = (body[0] << 8) | body[1];
                const topic = fromUtf8.decode(body.subarray(2, 2 + topicLength));
                let at = 2 + topicLength;
                let packetId = 0;
                if (qos > 0) {
                    packetId = (body[at] << 8) | body[at + 1];
                    at += 2;
                }
                const payload = body.slice(at);
                if (qos === 1) this.send(packet(0x40, [u16(packetId)]));
                if (qos === 2) this.send(packet(0x50, [u16(packetId)]));
                this.onmessage(topic, payload, { qos, retain: (first & 1) === 1 });
                break;
            }
            case 4: // PUBACK
            case 7: // PUBCOMP
            case 9: // SUBACK
                this.settle(id, body);
                break;
            case 5: // PUBREC: release it
                this.send(packet(0x62, [u16(id)]));
                break;
            case 6: // PUBREL: complete it
                this.send(packet(0x70, [u16(id)]));
                break;
            default: // PINGRESP, UNSUBACK
                break;
        }
    }

    settle(id, body) {
        const waiting = this.pending.get(id);
        if (!waiting) return;
        this.pending.delete(id);
        waiting.resolve(body);
    }

    subscribe(filter, qos) {
        const id = this.allocateId();
        return new Promise((resolve, reject) => {
            this.pending.set(id, { resolve: (body) => resolve(body[2]), reject });
            this.send(packet(0x82, [u16(id), mqttString(filter), new Uint8Array([qos])]));
        });
    }

    publish(topic, payload, qos, retain) {
        const body = typeof payload === 'string' ? utf8.encode(payload) : payload;
        const first = 0x30 | (qos << 1) | (retain ? 1 : 0);
        if (qos === 0) {
            this.send(packet(first, [mqttString(topic), body]));
            return Promise.resolve();
        }
        const id = this.allocateId();
        return new Promise((resolve, reject) => {
            this.pending.set(id, { resolve: () => resolve(), reject });
            this.send(packet(first, [mqttString(topic), u16(id), body]));
        });
    }

    close() {
        if (this.ws) {
            this.send(new Uint8Array([0xe0, 0]));
            this.ws.close();
        }
    }
}

const CONNACK_CODES = {
    1: 'protocol version refused',
    2: 'client identifier refused',
    3: 'server unavailable',
    4: 'bad username or password',
    5: 'not authorised',
};

// ------------------------------------------------------------------------------------------
// Page state
// ------------------------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);
const HISTORY = 240; // numeric points kept per topic
const NUMBER = /^\s*-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$/;

const state = {
    client: null,
    auth: {},
    nodes: new Map(), // path -> node
    sorted: [], // paths, sorted
    structureDirty: false,
    dirty: new Set(),
    selected: null,
    frame: 0,
    lastStructure: 0,
    lastStats: null,
};

function node(path) {
    let n = state.nodes.get(path);
    if (n) return n;
    const slash = path.lastIndexOf('/');
    if (slash >= 0) node(path.slice(0, slash)); // the branch above
    n = {
        path,
        name: slash >= 0 ? path.slice(slash + 1) : path,
        depth: path.split('/').length - 1,
        value: null,
        count: 0,
        counted: 0,
        rate: 0,
        history: [],
        row: null,
    };
    state.nodes.set(path, n);
    // Insert in order (binary search) rather than sorting thousands of paths again.
    let lo = 0, hi = state.sorted.length;
    while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (state.sorted[mid] < path) lo = mid + 1; else hi = mid;
    }
    state.sorted.splice(lo, 0, path);
    state.structureDirty = true;
    return n;
}

function onMessage(topic, payload) {
    const n = node(topic);
    const text = fromUtf8.decode(payload.subarray(0, 512));
    n.value = payload.length > 512 ? text + '…' : text;
    n.count += 1;
    if (NUMBER.test(text)) {
        n.history.push([Date.now(), parseFloat(text)]);
        if (n.history.length > HISTORY) n.history.shift();
    }
    n.flash = true;
    state.dirty.add(n);
    schedule();
}

function schedule() {
    if (!state.frame) state.frame = requestAnimationFrame(render);
}

// ------------------------------------------------------------------------------------------
// Rendering, once per frame
// ------------------------------------------------------------------------------------------

function rowFor(n) {
    if (n.row) return n.row;
    const tr = document.createElement('tr');
    tr.dataset.topic = n.path;
    tr.innerHTML = '<td class="topic"></td><td class="value"></td><td class="num count"></td><td class="num rate"></td>';
    tr.cells[0].style.paddingLeft = (0.4 + n.depth * 1.1) + 'rem';
    tr.cells[0].textContent = n.name === '' ? '(empty)' : n.name;
    tr.addEventListener('click', () => select(n));
    n.row = tr;
    return tr;
}

function fill(n) {
    const tr = rowFor(n);
    const leaf = n.count > 0;
    tr.className = (leaf ? 'leaf' : 'branch') + (state.selected === n ? ' selected' : '');
    if (leaf) {
        tr.cells[1].textContent = n.value;
        tr.cells[1].title = n.value;
        tr.cells[2].textContent = n.count;
        tr.cells[3].textContent = n.rate >= 0.05 ? n.rate.toFixed(1) : '0';
    }
}

function render(now) {
    state.frame = 0;
    const filter = $('topic-filter').value.trim();
    if (state.structureDirty && now - state.lastStructure > 250) {
        state.structureDirty = false;
        state.lastStructure = now;
        const body = $('topic-rows');
        const fragment = document.createDocumentFragment();
        let shown = 0;
        for (const path of state.sorted) {
            if (filter && !(path + '/').includes(filter)) continue;
            if (++shown > 5000) break; // a filter narrows the rest
            const n = state.nodes.get(path);
            fill(n);
            fragment.appendChild(n.row);
        }
        body.replaceChildren(fragment);
        $('topic-count').textContent = `(${state.nodes.size} levels${shown > 5000 ? ', first 5000 shown' : ''})`;
        state.dirty.clear();
    } else if (state.structureDirty) {
        schedule(); // later, at most four rebuilds a second
    }
    for (const n of state.dirty) {
        if (n.row && n.row.isConnected) {
            fill(n);
            if (n.flash) {
                n.row.classList.add('flash');
                setTimeout(() => n.row.classList.remove('flash'), 300);
            }
        }
        n.flash = false;
    }
    state.dirty.clear();
    if (state.selected) drawChart(state.selected);
}

function select(n) {
    const previous = state.selected;
    state.selected = n;
    if (previous) state.dirty.add(previous);
    state.dirty.add(n);
    $('chart-topic').textContent = n.path + (n.history.length ? '' : ' (no numeric values yet)');
    $('pub-topic').value = n.path;
    schedule();
}

function drawChart(n) {
    const canvas = $('chart');
    const ctx = canvas.getContext('2d');
    const w = canvas.width, h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    const points = n.history;
    if (points.length === 0) return;
    let min = Infinity, max = -Infinity;
    for (const [, v] of points) { min = Math.min(min, v); max = Math.max(max, v); }
    if (min === max) { min -= 1; max += 1; }
    const t0 = points[0][0], t1 = Math.max(points[points.length - 1][0], t0 + 1);
    const x = (t) => 40 + ((t - t0) / (t1 - t0)) * (w - 50);
    const y = (v) => h - 15 - ((v - min) / (max - min)) * (h - 30);
    ctx.fillStyle = '#6b7280';
    ctx.font = '11px sans-serif';
    ctx.fillText(String(+max.toFixed(3)), 2, 12);
    ctx.fillText(String(+min.toFixed(3)), 2, h - 4);
    ctx.strokeStyle = '#2563eb';
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    points.forEach(([t, v], i) => (i ? ctx.lineTo(x(t), y(v)) : ctx.moveTo(x(t), y(v))));
    ctx.stroke();
    if (points.length < 60) {
        ctx.fillStyle = '#2563eb';
        for (const [t, v] of points) ctx.fillRect(x(t) - 2, y(v) - 2, 4, 4);
    }
}

// Rates: messages per second per topic, smoothed, once a second.
setInterval(() => {
    for (const n of state.nodes.values()) {
        if (n.count === 0) continue;
        const delta = n.count - n.counted;
        n.counted = n.count;
        const rate = n.rate * 0.6 + delta * 0.4;
        if (Math.abs(rate - n.rate) > 0.01 || (rate < 0.05 && n.rate >= 0.05)) {
            n.rate = rate < 0.01 ? 0 : rate;
            state.dirty.add(n);
        }
    }
    if (state.dirty.size) schedule();
}, 1000);

// ------------------------------------------------------------------------------------------
// The JSON API: broker figures and clients
// ------------------------------------------------------------------------------------------

async function api(path) {
    const response = await fetch(path, { headers: state.auth, cache: 'no-store' });
    if (!response.ok) throw new Error(path + ': ' + response.status);
    return response.json();
}

async function refreshStats() {
    try {
        const stats = await api('/api/stats');
        const now = Date.now();
        const last = state.lastStats;
        let rates = '';
        if (last) {
            const seconds = (now - last.at) / 1000;
            const inRate = (stats.messages_received_total - last.stats.messages_received_total) / seconds;
            const outRate = (stats.messages_sent_total - last.stats.messages_sent_total) / seconds;
            rates = `in ${inRate.toFixed(1)}/s · out ${outRate.toFixed(1)}/s · `;
            stats['messages_in_per_second'] = +inRate.toFixed(1);
            stats['messages_out_per_second'] = +outRate.toFixed(1);
        }
        state.lastStats = { at: now, stats };
        $('figures').textContent = `${rates}${stats.clients_connected} clients · ` +
            `${(stats.resident_memory_bytes / 1048576).toFixed(1)} MB`;
        const rows = Object.entries(stats).map(([k, v]) => {
            const tr = document.createElement('tr');
            tr.innerHTML = '<td></td><td class="num"></td>';
            tr.cells[0].textContent = k.replace(/_/g, ' ');
            // Counts by QoS come as [QoS 0, QoS 1, QoS 2].
            tr.cells[1].textContent = Array.isArray(v) ? v.map((n, q) => `q${q}: ${n}`).join(' · ') : v;
            return tr;
        });
        $('broker-figures').replaceChildren(...rows);
    } catch (e) {
        $('figures').textContent = 'stats unavailable: ' + e.message;
    }
}

async function refreshClients() {
    try {
        const [clients, subscriptions] = await Promise.all([api('/api/clients'), api('/api/subscriptions')]);
        const byClient = new Map();
        for (const s of subscriptions) {
            if (!byClient.has(s.client_id)) byClient.set(s.client_id, []);
            byClient.get(s.client_id).push(`${s.filter} (q${s.qos})`);
        }
        const rows = clients.slice(0, 1000).map((c) => {
            const tr = document.createElement('tr');
            tr.innerHTML = '<td></td><td></td><td></td><td class="num"></td><td></td>';
            tr.dataset.client = c.client_id;
            tr.cells[0].textContent = c.client_id;
            tr.cells[1].textContent = c.connected ? 'connected' : 'disconnected';
            tr.cells[2].textContent = c.protocol || '';
            tr.cells[3].textContent = c.queued;
            tr.cells[4].textContent = (byClient.get(c.client_id) || []).join(', ') ||
                (c.offline_subscriptions ? c.offline_subscriptions + ' (offline)' : '');
            return tr;
        });
        $('client-rows').replaceChildren(...rows);
        $('client-count').textContent = `(${clients.length})`;
    } catch (e) {
        $('client-count').textContent = 'unavailable: ' + e.message;
    }
}

// ------------------------------------------------------------------------------------------
// Login, forms
// ------------------------------------------------------------------------------------------

function basic(user, pass) {
    const bytes = utf8.encode(user + ':' + pass);
    let binary = '';
    for (const b of bytes) binary += String.fromCharCode(b);
    return 'Basic ' + btoa(binary);
}

function setStatus(text, ok) {
    const status = $('status');
    status.textContent = text;
    status.className = 'status ' + (ok ? 'ok' : 'bad');
}

async function login(event) {
    event.preventDefault();
    const user = $('user').value;
    const pass = $('pass').value;
    $('login-error').textContent = '';
    // The header tells the broker not to challenge: a 401 with WWW-Authenticate would open
    // the browser's own login dialog.
    state.auth = { 'X-Pigeon-Dashboard': '1' };
    if (user) state.auth.Authorization = basic(user, pass);
    try {
        const info = await api('/api/info').catch((e) => {
            throw new Error(e.message.endsWith('401') ? 'login refused' : e.message);
        });
        const select = $('listener');
        if (select.options.length === 1) {
            // A page served over HTTPS may only open wss:// connections: those come first.
            const https = location.protocol === 'https:';
            const listeners = https
                ? [...info.websockets.filter((l) => l.tls), ...info.websockets.filter((l) => !l.tls)]
                : info.websockets;
            for (const l of listeners) {
                const option = document.createElement('option');
                option.value = `${l.tls ? 'wss' : 'ws'}://${location.hostname}:${l.port}/mqtt`;
                option.textContent = option.value;
                select.appendChild(option);
            }
        }
        const url = select.value || (select.options[1] && select.options[1].value);
        if (!url) throw new Error('the broker has no protocol websockets listener');
        const client = new MqttClient(url, {
            clientId: 'pigeon-dashboard-' + Math.random().toString(36).slice(2, 10),
            username: user,
            password: pass,
        });
        client.onmessage = onMessage;
        client.onclose = () => setStatus('disconnected', false);
        await client.connect();
        state.client = client;
        await client.subscribe('#', 0);
        await client.subscribe('$SYS/#', 0);
        setStatus(`connected to ${url}${user ? ' as ' + user : ''}`, true);
        $('login-panel').hidden = true;
        $('app').hidden = false;
        refreshStats();
        refreshClients();
        setInterval(refreshStats, 2000);
        setInterval(refreshClients, 3000);
    } catch (e) {
        $('login-error').textContent = 'Cannot connect: ' + e.message;
        setStatus('not connected', false);
    }
}

async function publishForm(event) {
    event.preventDefault();
    const topic = $('pub-topic').value;
    const qos = Number($('pub-qos').value);
    const retain = $('pub-retain').checked;
    $('pub-result').textContent = 'publishing…';
    try {
        await state.client.publish(topic, $('pub-payload').value, qos, retain);
        $('pub-result').textContent = `published to ${topic} at QoS ${qos}` +
            (qos ? ' (acknowledged)' : '') + (retain ? ', retained' : '');
    } catch (e) {
        $('pub-result').textContent = 'failed: ' + e.message;
    }
}

async function subscribeForm(event) {
    event.preventDefault();
    const filter = $('sub-filter').value;
    try {
        const granted = await state.client.subscribe(filter, Number($('sub-qos').value));
        $('sub-result').textContent = granted >= 0x80
            ? `refused: ${filter}` : `subscribed to ${filter} (granted QoS ${granted})`;
    } catch (e) {
        $('sub-result').textContent = 'failed: ' + e.message;
    }
}

$('login-form').addEventListener('submit', login);
$('publish-form').addEventListener('submit', publishForm);
$('subscribe-form').addEventListener('submit', subscribeForm);
$('topic-filter').addEventListener('input', () => {
    state.structureDirty = true;
    state.lastStructure = 0;
    schedule();
});
