// The dashboard in Debian's headless Chromium, driven by playwright-core; run by
// crates/pigeon-cli/tests/dashboard.rs.
//
//   node dashboard_check.js HTTP_URL USER PASS WRONG_PASS SCREENSHOT
//
// Loads the page with a fresh profile, tries WRONG_PASS (when not empty) and expects the login
// to be refused, logs in with USER/PASS and prints "ready". The test then publishes
// dash/temp=21.5 from a TCP client: once its row shows the value this prints "seen", publishes
// "hello from chromium" to dash/from-browser at QoS 1 from the page's form, prints
// "published" once the broker acknowledged it; with LOAD_TOPICS=N it then prints
// "waiting-load" and waits until N topics under load/ (published by the test) have rows,
// prints "load N" and narrows the tree with the filter box; then it saves SCREENSHOT and
// exits 0. Failures print
// "error ..." and exit 1.
//
// With IGNORE_TLS_ERRORS=1 the browser accepts any certificate (the test's self-signed one,
// for a page served over https:// connecting to a wss:// listener).
//
// With RETAINED_TOPICS=N, the test has published N retained topics retained/I/J (J < 100,
// payload I*100+J) before the page loads: once logged in, this waits until the topic count
// covers them, prints "retained-levels L" and "retained-first V" (the value of retained/0/0
// in the unfiltered tree), narrows the tree to retained/I/ for the last I and prints
// "retained-narrowed ROWS LAST" (its leaf rows, and the value of its last topic), then clears
// the filter.
//
// Before the publish above, the page publishes "forbidden" to secret/from-browser, which the
// ACL does not let USER write; "published-forbidden ..." shows what the page said. At the
// end, "client-row ID|STATE|PROTOCOL|QUEUED|SUBSCRIPTIONS" is printed for the clients panel's
// rows of the test's TCP subscriber (CLIENT_ID) and of the page itself (once it shows the
// subscription to dash/# at QoS 2 the page made with its subscribe form, printing
// "subscribed ..."). Clicking dash/temp charts it: "chart TOPIC".
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const [url, user, pass, wrongPass, screenshot] = process.argv.slice(2);
const fail = (what) => {
    console.log('error ' + what);
    process.exit(1);
};
setTimeout(() => fail('timed out'), 90000).unref();

(async () => {
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'pigeon-chromium-'));
    const context = await chromium.launchPersistentContext(profile, {
        executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
        headless: true,
        args: [
            '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
            '--disable-background-networking', '--disable-component-update', '--disable-sync',
        ],
        viewport: { width: 1400, height: 900 },
        // IGNORE_TLS_ERRORS=1: the test's self-signed certificate for https:// and wss:// on
        // loopback is accepted.
        ignoreHTTPSErrors: process.env.IGNORE_TLS_ERRORS === '1',
    });
    try {
        const page = context.pages()[0] || (await context.newPage());
        page.on('console', (m) => console.log('console ' + m.text()));
        page.on('pageerror', (e) => console.log('pageerror ' + e.message));
        await page.goto(url);
        if (wrongPass) {
            await page.fill('#user', user);
            await page.fill('#pass', wrongPass);
            await page.click('#login');
            await page.waitForFunction(() => document.getElementById('login-error').textContent !== '');
            console.log('refused ' + (await page.textContent('#login-error')));
        }
        await page.fill('#user', user);
        await page.fill('#pass', pass);
        await page.click('#login');
        await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('connected'));
        console.log('ready ' + (await page.textContent('#status')));
        const retained = Number(process.env.RETAINED_TOPICS || 0);
        if (retained) {
            // Every level of the tree is counted, shown or not (the table shows 5000 rows).
            await page.waitForFunction((n) => {
                const m = /\((\d+) levels/.exec(document.getElementById('topic-count').textContent);
                return m && Number(m[1]) >= n;
            }, retained, { timeout: 60000 });
            const levels = /\((\d+) levels/.exec(await page.textContent('#topic-count'))[1];
            console.log('retained-levels ' + levels);
            const first = page.locator('tr[data-topic="retained/0/0"] td.value');
            await first.waitFor({ timeout: 30000 });
            console.log('retained-first ' + (await first.textContent()));
            const lastBranch = Math.floor((retained - 1) / 100);
            const last = `retained/${lastBranch}/${(retained - 1) % 100}`;
            await page.fill('#topic-filter', `retained/${lastBranch}/`);
            await page.waitForFunction((t) => {
                const rows = document.querySelectorAll('#topic-rows tr');
                return rows.length < 200 && document.querySelector(`tr[data-topic="${t}"]`);
            }, last);
            const rows = await page.locator('#topic-rows tr.leaf').count();
            const value = await page.textContent(`tr[data-topic="${last}"] td.value`);
            console.log(`retained-narrowed ${rows} ${value}`);
            await page.fill('#topic-filter', '');
            await page.waitForFunction(() => document.querySelectorAll('#topic-rows tr').length > 1000);
        }
        const value = page.locator('tr[data-topic="dash/temp"] td.value');
        await value.waitFor({ timeout: 30000 });
        await page.waitForFunction(
            () => document.querySelector('tr[data-topic="dash/temp"] td.value').textContent === '21.5');
        console.log('seen dash/temp ' + (await value.textContent()));
        // What the ACL keeps from this user never shows (the test published secret/x first).
        console.log('secret-rows ' + (await page.locator('tr[data-topic^="secret"]').count()));
        await page.click('tr[data-topic="dash/temp"]');
        console.log('chart ' + (await page.textContent('#chart-topic')));
        // The ACL is the broker's: a topic the user may not write is not delivered (MQTT 3.1.1
        // acknowledges it all the same). Sent first, on the same connection and QoS as the next.
        await page.fill('#pub-topic', 'secret/from-browser');
        await page.fill('#pub-payload', 'forbidden');
        await page.selectOption('#pub-qos', '1');
        await page.click('#pub-send');
        await page.waitForFunction(() => document.getElementById('pub-result').textContent.includes('secret/from-browser'));
        console.log('published-forbidden ' + (await page.textContent('#pub-result')));
        await page.fill('#pub-topic', 'dash/from-browser');
        await page.fill('#pub-payload', 'hello from chromium');
        await page.selectOption('#pub-qos', '1');
        await page.click('#pub-send');
        await page.waitForFunction(() => {
            const text = document.getElementById('pub-result').textContent;
            return text.includes('dash/from-browser') && text.includes('acknowledged');
        });
        console.log('published ' + (await page.textContent('#pub-result')));
        // The subscribe form: a filter of the user's choice, at the QoS asked for.
        await page.fill('#sub-filter', 'dash/#');
        await page.selectOption('#sub-qos', '2');
        await page.click('#sub-send');
        await page.waitForFunction(() => document.getElementById('sub-result').textContent !== '');
        console.log('subscribed ' + (await page.textContent('#sub-result')));
        // Thousands of topics: the test publishes LOAD_TOPICS of them now; all get a row.
        const load = Number(process.env.LOAD_TOPICS || 0);
        if (load) {
            console.log('waiting-load');
            await page.waitForFunction(
                (n) => document.querySelectorAll('tr.leaf[data-topic^="load/"]').length >= n,
                load, { timeout: 60000 });
            console.log('load ' + (await page.locator('tr.leaf[data-topic^="load/"]').count()));
            await page.fill('#topic-filter', 'dash/');
            await page.waitForFunction(() => document.querySelectorAll('#topic-rows tr').length < 10);
        }
        // Let the API panels fill in before the picture.
        await page.waitForFunction(() => document.getElementById('client-rows').children.length > 0);
        const clientId = process.env.CLIENT_ID;
        if (clientId) {
            await page.waitForFunction((id) => document.querySelector(`tr[data-client="${id}"]`), clientId);
            // The panel is refreshed every few seconds: until it has the form's subscription.
            await page.waitForFunction(() => [...document.querySelectorAll('tr[data-client^="pigeon-dashboard-"]')]
                .some((tr) => tr.textContent.includes('dash/# (q2)')), null, { timeout: 30000 });
            for (const row of await page.locator(
                `tr[data-client="${clientId}"], tr[data-client^="pigeon-dashboard-"]`).all()) {
                const cells = await row.locator('td').allTextContents();
                console.log('client-row ' + cells.join('|'));
            }
        }
        fs.mkdirSync(path.dirname(screenshot), { recursive: true });
        await page.screenshot({ path: screenshot, fullPage: true });
        console.log('screenshot ' + screenshot);
    } finally {
        await context.close();
        fs.rmSync(profile, { recursive: true, force: true });
    }
    process.exit(0);
})().catch((e) => fail(e.message));
