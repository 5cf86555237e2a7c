// Node's `ws` with permessage-deflate on, against a socketbox started with
// --deflate (tests/deflate.rs runs this): `node deflate_peer.mjs ws://HOST:PORT`.
// /echo: the extension is negotiated and large text and binary messages
// come back intact; /ws: a PEER message of realistic JSON reaches the other
// client. Prints "ok" and exits 0, or says what went wrong and exits 1.
import WebSocket from 'ws';

const base = process.argv[2];
const fail = (why) => { console.error(`deflate_peer: ${why}`); process.exit(1); };
setTimeout(() => fail('timed out'), 20000).unref();

function open(path) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(base + path, { perMessageDeflate: true });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

function next(ws, accept = () => true) {
  return new Promise((resolve) => {
    const on = (data, isBinary) => {
      const value = isBinary ? data : data.toString();
      if (accept(value)) { ws.off('message', on); resolve(value); }
    };
    ws.on('message', on);
  });
}

const echo = await open('/echo');
if (!echo.extensions.startsWith('permessage-deflate')) fail(`/echo extensions: ${echo.extensions}`);
const text = JSON.stringify({ rows: Array.from({ length: 400 }, (_, i) => ({ i, name: `user-${i % 17}` })) });
echo.send(text);
if ((await next(echo)) !== text) fail('/echo text differs');
const bytes = Buffer.alloc(100000, 7);
echo.send(bytes);
const back = await next(echo);
if (!Buffer.isBuffer(back) || !back.equals(bytes)) fail('/echo binary differs');
echo.close();

const json = (v) => JSON.parse(v);
const alice = await open('/ws');
const bob = await open('/ws');
if (!bob.extensions.startsWith('permessage-deflate')) fail(`/ws extensions: ${bob.extensions}`);
for (const [ws, id] of [[alice, 'alice'], [bob, 'bob']]) {
  const ready = next(ws, (v) => json(v).extend?.code === 20001);
  ws.send(JSON.stringify({ code: 10000, id }));
  await ready;
}
const data = { to: 'bob', text: 'hello from node '.repeat(40), n: [1, 2, 3] };
const got = next(bob, (v) => json(v).body?.type === 30001);
alice.send(JSON.stringify({ code: 10002, data }));
const body = json(await got).body;
if (body.from !== 'alice' || body.data.text !== data.text) fail(`/ws PEER: ${JSON.stringify(body)}`);
alice.close();
bob.close();
console.log('ok');
process.exit(0);
