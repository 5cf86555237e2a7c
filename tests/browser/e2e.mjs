// End-to-end test of the browser side: the demo page (assets/index.html), the
// corrected client (assets/socketbox.js) and the seed's original SocketBox
// client, each in headless Chromium against a running SocketBox server.
//
//   SOCKETBOX_URL=http://127.0.0.1:8080 node e2e.mjs   test a server already running
//   SOCKETBOX_BIN=../../target/debug/socketbox node e2e.mjs
//                                                       start the server (and restart it
//                                                       for the reconnect-after-restart test)
// Optional: CHROMIUM (default /usr/bin/chromium), SOCKETBOX_SEED (the seed .txt),
// SOCKETBOX_SCREENSHOT (path of a PNG of two users chatting).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..', '..');
const WAIT_MS = 8000;

// The whole run is bounded: a hang anywhere fails the run instead of blocking CI.
const deadline = setTimeout(() => {
  console.error('e2e: still running after 55 s, giving up');
  stopServer();
  process.exit(1);
}, 55_000);
deadline.unref();

// ---------------------------------------------------------------- server

let server = null; // { child, addr } while the server this test started runs
let baseUrl = process.env.SOCKETBOX_URL ? process.env.SOCKETBOX_URL.replace(/\/+$/, '') : null;
const ownServer = !baseUrl && Boolean(process.env.SOCKETBOX_BIN);

function startServer(listen) {
  const bin = path.resolve(process.env.SOCKETBOX_BIN);
  const child = spawn(bin, ['--listen', listen, '--heartbeat', '1'], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${bin} printed no "listening on" within 10 s`)); }, 10_000);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`${bin} exited with ${code} before listening`)); });
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const m = /listening on (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        child.removeAllListeners('exit');
        child.stdout.resume();
        resolve({ child, addr: m[1] });
      }
    });
  });
}

function stopServer() {
  if (!server) return Promise.resolve(null);
  const { child } = server;
  server = null;
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), 8000);
    child.once('exit', (code) => { clearTimeout(kill); resolve(code); });
    child.kill('SIGTERM');
  });
}

// ---------------------------------------------------------------- seed

/** The seed's SocketBox client: the last ```-fenced block of the seed document. */
function seedClientSource() {
  let file = process.env.SOCKETBOX_SEED;
  if (!file) {
    const dir = path.join(repoRoot, '..', 'shared', 'seed');
    const txt = fs.readdirSync(dir).filter((f) => f.endsWith('.txt')).sort();
    assert.ok(txt.length > 0, `no seed .txt in ${dir}`);
    file = path.join(dir, txt[0]);
  }
  const doc = fs.readFileSync(file, 'utf8');
  const blocks = [...doc.matchAll(/^```[^\n]*\n([\s\S]*?)^```/gm)];
  assert.ok(blocks.length > 0, `no fenced block in ${file}`);
  const source = blocks[blocks.length - 1][1];
  assert.match(source, /var SocketBox = \{/, 'the last fenced block of the seed is its SocketBox client');
  return source;
}

// What the seed uses but leaves undefined: MessageCode (PROTOCOL.md) and the
// page's answerTextMessage(body), here recording what it is given.
const SEED_PRELUDE = `
var MessageCode = {
  AUTH: 10000, MESS_CODE: 10002, BROADCAST: 10003, PING: 10015, PONG: 10016,
  PEER_MESSAGE: 30001, BROADCAST_MESSAGE: 30002, PUSH_MESSAGE: 30003
};
var answered = [];
function answerTextMessage(body) { answered.push(body); }
`;

// ---------------------------------------------------------------- browser

let browser;
const pages = [];

async function newPage(label) {
  const context = await browser.newContext({ viewport: { width: 900, height: 640 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const record = { label, page, errors: [], sent: [], received: [] };
  page.on('pageerror', (e) => record.errors.push(String(e)));
  // Failed connections while a server is down are logged by the browser itself, not the page.
  const networkNoise = /^(Failed to load resource|WebSocket connection to .* failed)/;
  page.on('console', (m) => { if (m.type() === 'error' && !networkNoise.test(m.text())) record.errors.push(m.text()); });
  page.on('websocket', (ws) => {
    ws.on('framesent', (f) => record.sent.push(f.payload));
    ws.on('framereceived', (f) => record.received.push(f.payload));
  });
  pages.push(record);
  return record;
}

/** A demo page logged in as `name`, once its status says online. */
async function demoUser(name) {
  const rec = await newPage(name);
  await rec.page.goto(`${baseUrl}/`);
  await rec.page.fill('#name', name);
  await rec.page.click('#login');
  await waitOnline(rec.page);
  return rec;
}

const waitOnline = (page) => page.locator('#status[data-state="online"]').waitFor();
const waitCount = (page, n) =>
  page.waitForFunction((want) => document.getElementById('count').textContent === want, String(n), { timeout: WAIT_MS });
const waitLine = (page, kind, from, text) =>
  page.locator(`#messages li[data-kind="${kind}"][data-from="${from}"]`, { hasText: text }).last().waitFor();

/** Polls `cond` until it holds, failing after WAIT_MS. */
async function until(cond, what) {
  const end = Date.now() + WAIT_MS;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function sendPeer(page, to, text) {
  await page.fill('#to', to);
  await page.fill('#text', text);
  await page.click('#send');
}

// ---------------------------------------------------------------- tests

let alice, bob;

before(async () => {
  if (!baseUrl) {
    assert.ok(process.env.SOCKETBOX_BIN, 'set SOCKETBOX_URL (a running server) or SOCKETBOX_BIN (a server binary to start)');
    server = await startServer('127.0.0.1:0');
    baseUrl = `http://${server.addr}`;
  }
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    timeout: 20_000,
  });
});

after(async () => {
  if (browser) await browser.close();
  await stopServer();
});

test('demo: alice and bob log in, see each other counted, chat peer to peer and by broadcast', async () => {
  alice = await demoUser('alice');
  bob = await demoUser('bob');
  await waitCount(alice.page, 2);
  await waitCount(bob.page, 2);
  assert.equal(await alice.page.evaluate(() => SocketBox.socket.protocol), 'socketbox.v1');

  await sendPeer(alice.page, 'bob', 'hello bob');
  await waitLine(bob.page, 'peer', 'alice', 'hello bob');
  await waitLine(alice.page, 'sent', 'alice', 'hello bob');

  // Quotes, apostrophes, markup and non-ASCII travel as data, not as JSON or HTML.
  const tricky = `it's <b>"bold"</b> \\ ünïcödé 中文`;
  await sendPeer(alice.page, 'bob', tricky);
  const line = bob.page.locator('#messages li[data-kind="peer"][data-from="alice"] .text').last();
  await line.filter({ hasText: 'ünïcödé' }).waitFor();
  assert.equal(await line.textContent(), tricky);
  assert.equal(await bob.page.locator('#messages b').count(), 0, 'no markup from a peer is rendered');

  await bob.page.fill('#text', 'hi everyone');
  await bob.page.click('#broadcast');
  await waitLine(alice.page, 'broadcast', 'bob', 'hi everyone');
  // Bob now appears in alice's list of people seen.
  await alice.page.locator('#seen button', { hasText: 'bob' }).waitFor();

  // A peer message to nobody gets the server's ERROR, shown to the sender.
  await sendPeer(alice.page, 'nobody-here', 'anyone?');
  await alice.page.locator('#messages li[data-kind="error"]', { hasText: '40400' }).waitFor();

  for (const rec of [alice, bob]) {
    for (const payload of rec.sent) assert.doesNotThrow(() => JSON.parse(payload), `strict JSON sent: ${payload}`);
  }
  if (process.env.SOCKETBOX_SCREENSHOT) {
    await bob.page.screenshot({ path: process.env.SOCKETBOX_SCREENSHOT });
  }
});

test("seed: the seed's unchanged SocketBox client chats with a demo page user", async () => {
  const seed = await newPage('seeduser');
  await seed.page.goto(`${baseUrl}/healthz`);
  await seed.page.addScriptTag({ content: SEED_PRELUDE });
  await seed.page.addScriptTag({ content: seedClientSource() });
  const wsUrl = `${baseUrl.replace(/^http/, 'ws')}/ws`;
  await seed.page.evaluate((url) => SocketBox.init('seeduser', url), wsUrl);
  // The seed keeps its state in accidental globals: isAuth and userCount.
  await seed.page.waitForFunction(() => window.isAuth === true, null, { timeout: WAIT_MS });
  await waitCount(alice.page, 3);

  await sendPeer(alice.page, 'seeduser', "hello seed, it's alice");
  const body = await seed.page.waitForFunction(
    () => window.answered.find((b) => b.from === 'alice'), null, { timeout: WAIT_MS },
  ).then((h) => h.jsonValue());
  assert.equal(body.type, 30001);
  assert.equal(body.to, 'seeduser');
  assert.deepEqual(body.data, { to: 'seeduser', text: "hello seed, it's alice" });

  // The seed sends lax JSON: single quotes around JSON.stringify output. No
  // apostrophe in the text (the seed cannot send one), but quotes, a
  // backslash and non-ASCII go through.
  const fromSeed = 'hello from seed, "quoted" back\\slash 中文';
  await seed.page.evaluate((text) => SocketBox.sendPeerTextMessage({ to: 'alice', text }), fromSeed);
  assert.ok(seed.sent.some((p) => p.startsWith("{'code':10002,'data':'")), 'the seed really sent its lax JSON');
  await waitLine(alice.page, 'peer', 'seeduser', 'hello from seed');
  const text = await alice.page.locator('#messages li[data-kind="peer"][data-from="seeduser"] .text').last().textContent();
  assert.equal(text, fromSeed);
  assert.deepEqual(seed.errors, []);

  await seed.page.context().close();
  await waitCount(alice.page, 2);
});

test('socketbox.js answers the server PING (476) with {"code":10016}', { skip: !ownServer && 'needs SOCKETBOX_BIN (--heartbeat 1)' }, async () => {
  // The server this test started sends a PING every second.
  await until(() => alice.received.some((p) => JSON.parse(p).code === 476), 'a PING from the server');
  await until(() => alice.sent.includes('{"code":10016}'), 'the PONG back');
});

test('socketbox.js reconnects and authenticates again when its connection drops', async () => {
  const authsBefore = alice.sent.filter((p) => JSON.parse(p).code === 10000).length;
  // Close the socket under the client, as a network failure would.
  await alice.page.evaluate(() => SocketBox.socket.close(4999, 'test drop'));
  await alice.page.locator('#messages li[data-kind="system"]', { hasText: 'reconnecting' }).waitFor();
  await waitOnline(alice.page);
  assert.equal(alice.sent.filter((p) => JSON.parse(p).code === 10000).length, authsBefore + 1, 'one more AUTH');
  await waitCount(alice.page, 2);
  await sendPeer(bob.page, 'alice', 'welcome back');
  await waitLine(alice.page, 'peer', 'bob', 'welcome back');
});

test('demo pages reconnect by themselves after the server restarts', { skip: !ownServer && 'needs SOCKETBOX_BIN' }, async () => {
  const addr = server.addr;
  assert.equal(await stopServer(), 0, 'the server exits 0 on SIGTERM');
  await alice.page.locator('#status[data-state="reconnecting"]').waitFor();
  await bob.page.locator('#status[data-state="reconnecting"]').waitFor();
  // The same port again; allow a few tries while the old socket lingers.
  for (let i = 0; ; i++) {
    try {
      server = await startServer(addr);
      break;
    } catch (e) {
      if (i >= 4) throw e;
      await new Promise((r) => setTimeout(r, 300));
    }
  }
  await waitOnline(alice.page);
  await waitOnline(bob.page);
  await waitCount(alice.page, 2);
  await sendPeer(alice.page, 'bob', 'still here');
  await waitLine(bob.page, 'peer', 'alice', 'still here');
});

test('socketbox.js against a scripted fake WebSocket: rejection, backoff, no eval, non-fatal errors', async () => {
  const rec = await newPage('fake');
  await rec.page.goto(`${baseUrl}/healthz`);
  await rec.page.addScriptTag({ url: `${baseUrl}/socketbox.js` });
  const result = await rec.page.evaluate(() => {
    const made = [];
    class FakeSocket {
      constructor(url, protocols) {
        Object.assign(this, { url, protocols, readyState: 0, sent: [], closedWith: null });
        made.push(this);
      }
      send(text) { this.sent.push(text); }
      close(code) { this.closedWith = code || 1005; this.readyState = 3; }
      open() { this.readyState = 1; this.onopen({}); }
      recv(obj) { this.onmessage({ data: typeof obj === 'string' ? obj : JSON.stringify(obj) }); }
      drop(code) { this.readyState = 3; this.onclose({ code, reason: '' }); }
    }
    FakeSocket.OPEN = 1;
    window.WebSocket = FakeSocket;
    const states = [], errors = [], bodies = [], answered = [];
    window.answerTextMessage = (body) => answered.push(body);
    Object.assign(SocketBox, {
      onStateChange: (s, d) => states.push([s, d]), onError: (e) => errors.push(e), onMessage: (b) => bodies.push(b),
    });
    const out = {};

    // Rejected authentication is final: no retry is scheduled.
    SocketBox.init('x', 'ws://fake/ws', { token: 't.1' });
    made[0].open();
    out.auth = made[0].sent[0];
    out.protocols = made[0].protocols;
    made[0].recv({ code: 988, extend: { code: 20002, mess: false } });
    made[0].recv({ code: 1244, extend: { code: 40101, mess: 'bad token' } });
    made[0].drop(1008);
    out.rejected = { state: SocketBox.state, retry: SocketBox._retryTimer, sockets: made.length };

    // A dropped connection is retried after a jittered, growing delay.
    SocketBox.init('y', 'ws://fake/ws');
    made[1].open();
    made[1].recv({ code: 988, extend: { code: 20002, mess: true } });
    out.online = SocketBox.state;
    made[1].recv({ code: 476 });
    out.pong = made[1].sent[1];
    made[1].recv('(window.pwned = 1)');
    out.pwned = window.pwned === 1;
    made[1].recv({ code: 1244, extend: { code: 40400, mess: 'bob is not online' } });
    out.afterError = { state: SocketBox.state, closed: made[1].closedWith };
    made[1].recv({ code: 1756, body: { type: 30001, from: 'bob', to: 'y', data: { text: 'hi' }, time: 1, seq: 1 } });
    made[1].recv({ code: 1756, body: { type: 30002, from: 'bob', to: null, data: { text: 'all' }, time: 2, seq: 2 } });
    out.delivered = { answered: answered.length, bodies: bodies.length, lastSeq: SocketBox.lastSeq };
    SocketBox.reconnectBaseMs = 1000;
    SocketBox.reconnectMaxMs = 4000;
    const delays = [];
    for (let i = 0; i < 4; i++) {
      made[made.length - 1].drop(1006);
      delays.push(states[states.length - 1][1].delayMs);
      SocketBox.reconnectNow();
    }
    out.delays = delays;
    out.sockets = made.length;
    SocketBox.close();
    out.closed = { state: SocketBox.state, lastClosedWith: made[made.length - 1].closedWith };
    out.errors = errors.map((e) => e.code);
    return out;
  });
  assert.deepEqual(JSON.parse(result.auth), { code: 10000, id: 'x', token: 't.1' });
  assert.deepEqual(result.protocols, ['socketbox.v1']);
  assert.deepEqual(result.rejected, { state: 'rejected', retry: null, sockets: 1 });
  assert.equal(result.online, 'online');
  assert.equal(result.pong, '{"code":10016}');
  assert.equal(result.pwned, false, 'server data is never evaluated');
  assert.deepEqual(result.afterError, { state: 'online', closed: null });
  assert.deepEqual(result.delivered, { answered: 1, bodies: 2, lastSeq: 2 });
  // Ceilings 1 s, 2 s, 4 s, 4 s; each delay is between half the ceiling and the ceiling.
  [1000, 2000, 4000, 4000].forEach((ceiling, i) => {
    assert.ok(result.delays[i] >= ceiling / 2 && result.delays[i] <= ceiling, `delay ${i}: ${result.delays[i]}`);
  });
  assert.equal(result.sockets, 6);
  assert.deepEqual(result.closed, { state: 'closed', lastClosedWith: 1000 });
  assert.deepEqual(result.errors, [40101, 40400]);
  await rec.page.context().close();
});

test('no page logged an error', () => {
  for (const rec of pages) assert.deepEqual(rec.errors, [], `errors on ${rec.label}'s page`);
});
