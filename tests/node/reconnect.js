#!/usr/bin/env node
// A socket.io-client@2 (EIO=3) peer that reconnects by itself, as an app would across a deploy:
// on every connect it subscribes to one store with `since` = the last event id it saw.
//
//   node reconnect.js '{"url": "http://127.0.0.1:8000", "cookie": "sid=…", "store": "orders",
//                       "transports": ["polling", "websocket"]}'
//
// Prints one JSON object per line on stdout, and runs until killed:
//   {"kind": "connect", "transport": "polling"}
//   {"kind": "ack", "request": {...}, "answer": {...}}
//   {"kind": "event", "name": "entity.created", "id": "<event id>", "entityId": "…"}
//   {"kind": "disconnect", "reason": "transport close"}
//   {"kind": "reconnect_attempt"}
const io = require('socket.io-client');

const options = JSON.parse(process.argv[2] || '{}');
const print = (line) => process.stdout.write(JSON.stringify(line) + '\n');

const socket = io(options.url, {
  path: '/socket.io',
  transports: options.transports || ['polling', 'websocket'],
  reconnection: true,
  reconnectionDelay: 100,
  reconnectionDelayMax: 500,
  randomizationFactor: 0,
  forceNew: true,
  extraHeaders: options.cookie ? { Cookie: options.cookie } : {},
  timeout: 5000,
});

let lastId = null;

socket.on('connect', () => {
  print({ kind: 'connect', transport: socket.io.engine.transport.name });
  const request = lastId ? { store: options.store, since: lastId } : { store: options.store };
  socket.emit('subscribe', request, (answer) => print({ kind: 'ack', request, answer }));
});

for (const name of ['entity.created', 'entity.updated', 'entity.deleted']) {
  socket.on(name, (event) => {
    lastId = event.id;
    print({ kind: 'event', name, id: event.id, entityId: event.entityId });
  });
}

socket.on('disconnect', (reason) => print({ kind: 'disconnect', reason }));
socket.on('reconnect_attempt', () => print({ kind: 'reconnect_attempt' }));
socket.on('connect_error', (error) => print({ kind: 'connect_error', message: String(error && (error.message || error)) }));
