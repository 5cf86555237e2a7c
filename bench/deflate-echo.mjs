// Echo messages/s with permessage-deflate (docs/benchmarks.md, "Compression").
//
//   node bench/deflate-echo.mjs client URL on|off [CONNS] [SECONDS]
//   node bench/deflate-echo.mjs server PORT      # Node ws echo, perMessageDeflate on
//
// The client (Node `ws`, from tests/browser/node_modules: run `npm ci` there)
// opens CONNS connections (default 16), each sending a 1 KiB JSON text and
// waiting for its echo, checked byte for byte, for SECONDS (default 5, after
// 1 s of warm-up). It prints the echoes per second and the negotiated
// extension. The same client drives every server, so the figures compare
// servers under one client; a single Node thread compresses for all 16
// connections, so the client may be the bottleneck (say so with the figures).
// The peer server answers like socketbox --deflate: no context takeover both
// ways, messages of 256 bytes and more compressed.
import { createRequire } from 'node:module';

const require = createRequire(new URL('../tests/browser/package.json', import.meta.url));
const { WebSocket, WebSocketServer } = require('ws');

const [mode, target, third, conns = '16', seconds = '5'] = process.argv.slice(2);

if (mode === 'server') {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: Number(target),
    perMessageDeflate: { threshold: 256, serverNoContextTakeover: true, clientNoContextTakeover: true },
    maxPayload: 16 * 1024 * 1024,
  });
  wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
  wss.on('listening', () => console.log(`listening on 127.0.0.1:${wss.address().port}`));
} else if (mode === 'client') {
  const compress = third === 'on';
  const text = JSON.stringify({
    rows: Array.from({ length: 40 }, (_, i) => ({ id: i, name: `user-${i % 7}`, online: i % 3 === 0 })),
  }).slice(0, 1024);
  let counting = false;
  let echoes = 0;
  let errors = 0;
  let extensions = '';
  const sockets = await Promise.all(Array.from({ length: Number(conns) }, () => new Promise((resolve, reject) => {
    const ws = new WebSocket(target, { perMessageDeflate: compress });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  })));
  extensions = sockets[0].extensions || 'none';
  for (const ws of sockets) {
    ws.on('message', (data) => {
      if (data.toString() !== text) errors += 1;
      if (counting) echoes += 1;
      ws.send(text);
    });
    ws.send(text);
  }
  await new Promise((r) => setTimeout(r, 1000));
  counting = true;
  const started = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, Number(seconds) * 1000));
  counting = false;
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  console.log(`${target} compression ${third}: ${Math.round(echoes / elapsed)} echoes/s `
    + `(${conns} connections, 1 KiB text, ${elapsed.toFixed(1)} s), ${errors} bad echoes; negotiated: ${extensions}`);
  for (const ws of sockets) ws.terminate();
  process.exit(errors ? 1 : 0);
} else {
  console.error('usage: deflate-echo.mjs client URL on|off [CONNS] [SECONDS] | server PORT');
  process.exit(64);
}
