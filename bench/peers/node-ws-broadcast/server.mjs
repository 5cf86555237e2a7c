// Peer broadcast server for the benchmark: Node's `ws` package running the
// "Server broadcast" example of its README (every message to every other
// open client), with only the port taken from the command line and the
// address printed the way bench scripts expect.
//
//   node server.mjs [PORT]       (after `npm ci` in this folder)
import { WebSocketServer, WebSocket } from 'ws';

const port = Number(process.argv[2] || 9004);
const wss = new WebSocketServer({ host: '127.0.0.1', port });

wss.on('connection', function connection(ws) {
  ws.on('error', console.error);

  ws.on('message', function message(data, isBinary) {
    wss.clients.forEach(function each(client) {
      if (client !== ws && client.readyState === WebSocket.OPEN) {
        client.send(data, { binary: isBinary });
      }
    });
  });
});

wss.on('listening', () => console.log(`listening on 127.0.0.1:${wss.address().port}`));
