// The Node peer: `ws` with ioredis, one subscriber, client.send to every open client,
// compression off (perMessageDeflate: false, as ws' README recommends for throughput).
//
//     node node_server.js PORT REDIS_URL CHANNEL
//
// Prints READY once it listens and its subscription is in place. Its modules are installed by
// bench/peers/environments.py into bench/.build/peers/node/node_modules (NODE_PATH).
'use strict';

const { WebSocketServer, WebSocket } = require('ws');
const Redis = require('ioredis');

const [port, url, channel] = process.argv.slice(2);
const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: Number(port),
  backlog: 2048,
  perMessageDeflate: false,
});
const subscriber = new Redis(url);

subscriber.on('message', (_channel, message) => {
  for (const client of wss.clients) {
    if (client.readyState === WebSocket.OPEN) client.send(message);
  }
});

Promise.all([
  new Promise((resolve) => wss.on('listening', resolve)),
  subscriber.subscribe(channel),
]).then(() => console.log('READY'));
