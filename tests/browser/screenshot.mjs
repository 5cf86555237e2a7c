// Makes docs/demo.png: alice's demo page after a short chat with bob, in
// headless Chromium against a server this script starts. Not a test; run it
// after a visible change to assets/index.html and look at the result.
//
//   cargo build && cd tests/browser && npm ci
//   SOCKETBOX_BIN=../../target/debug/socketbox node screenshot.mjs [OUT.png]
//
// OUT.png defaults to ../../docs/demo.png. CHROMIUM as in e2e.mjs.

import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.resolve(process.argv[2] || path.join(here, '..', '..', 'docs', 'demo.png'));
const bin = process.env.SOCKETBOX_BIN;
if (!bin) {
  console.error('set SOCKETBOX_BIN to the server binary');
  process.exit(2);
}
setTimeout(() => { console.error('screenshot: gave up after 30 s'); process.exit(1); }, 30_000).unref();

const server = spawn(path.resolve(bin), ['--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'] });
const addr = await new Promise((resolve, reject) => {
  let text = '';
  server.on('exit', (code) => reject(new Error(`server exited with ${code}`)));
  server.stdout.on('data', (chunk) => {
    text += chunk;
    const m = /listening on (\S+)/.exec(text);
    if (m) resolve(m[1]);
  });
});
const base = `http://${addr}`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu'],
});
try {
  const open = async (name) => {
    const page = await (await browser.newContext({ viewport: { width: 880, height: 740 } })).newPage();
    await page.goto(`${base}/?id=${name}`);
    await page.locator('#status[data-state="online"]').waitFor();
    return page;
  };
  const alice = await open('alice');
  const bob = await open('bob');
  const say = async (page, to, text) => {
    await page.fill('#to', to);
    await page.fill('#text', text);
    await page.click('#send');
  };
  const heard = (page, text) => page.locator('#messages li', { hasText: text }).last().waitFor();

  await bob.fill('#text', 'Morning all! Server restarted fine?');
  await bob.click('#broadcast');
  await heard(alice, 'Morning all');
  await say(alice, 'bob', 'Yes, it\'s back. Did you reconnect on your own?');
  await heard(bob, 'reconnect on your own');
  await say(bob, 'alice', 'Without touching anything: backoff, then AUTH again. Here is what the tab logged: '
    + 'connecting, open, AUTH sent, 20002 true, 20001 count 2, then nothing until the restart; '
    + 'close 1001 "server shutting down", reconnecting in 0.4 s, connection refused, reconnecting in 0.9 s, '
    + 'connection refused, reconnecting in 1.6 s, open, AUTH sent again, 20002 true, 20001 count 1, 20001 count 2. '
    + 'Long messages like this one fold away behind the button below.');
  await heard(alice, 'fold away');
  await say(alice, 'bob', 'Nice. Try sending "quotes" and <tags>, they stay text.');
  await heard(bob, 'they stay text');
  await say(alice, 'carol', 'Are you there?');
  await alice.locator('#messages li[data-kind="error"]', { hasText: '40400' }).waitFor();
  await alice.locator('#count', { hasText: '2' }).waitFor();
  await alice.locator('#text').blur();
  await alice.screenshot({ path: out });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
  server.kill('SIGTERM');
}
