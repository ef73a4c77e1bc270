#!/usr/bin/env node
// A socket.io-client@2 (EIO=3) peer for the Python tests: a small CLI, not a test runner.
//
//   node peer.js '{"url": "http://127.0.0.1:8000", "cookie": "sid=…",
//                  "transports": ["polling", "websocket"], "subscribe": [{"store": "orders"}],
//                  "events": 3, "timeoutMs": 10000}'
//
// Prints one JSON object per line on stdout:
//   {"kind": "connect", "transport": "polling"}   connected (namespace "/" joined)
//   {"kind": "upgrade", "transport": "websocket"} the engine upgraded its transport
//   {"kind": "ack", "request": {...}, "answer": {...}}   one per subscribe, in order
//   {"kind": "event", "name": "entity.created", "data": {...}, "transport": "websocket"}
//   {"kind": "connect_error", "message": "…"}   then exits 2
//   {"kind": "disconnect", "reason": "…"}
//   {"kind": "done"}   after `events` events (exit 0), or {"kind": "timeout"} (exit 3)
const io = require('socket.io-client');

const options = JSON.parse(process.argv[2] || '{}');
const print = (line) => process.stdout.write(JSON.stringify(line) + '\n');

const socket = io(options.url, {
  path: '/socket.io',
  transports: options.transports || ['polling', 'websocket'],
  reconnection: false,
  forceNew: true,
  extraHeaders: options.cookie ? { Cookie: options.cookie } : {},
  timeout: 5000,
});

let received = 0;
const wanted = options.events || 0;
const finish = (code, line) => {
  print(line);
  socket.close();
  setTimeout(() => process.exit(code), 50);
};

setTimeout(() => finish(3, { kind: 'timeout' }), options.timeoutMs || 10000);

socket.io.engine.on('upgrade', (transport) => print({ kind: 'upgrade', transport: transport.name }));

socket.on('connect', () => {
  print({ kind: 'connect', transport: socket.io.engine.transport.name });
  const requests = options.subscribe || [];
  const next = (i) => {
    if (i >= requests.length) return;
    socket.emit('subscribe', requests[i], (answer) => {
      print({ kind: 'ack', request: requests[i], answer });
      next(i + 1);
    });
  };
  next(0);
});

for (const name of ['entity.created', 'entity.updated', 'entity.deleted']) {
  socket.on(name, (data) => {
    print({ kind: 'event', name, data, transport: socket.io.engine.transport.name });
    received += 1;
    if (wanted && received >= wanted) finish(0, { kind: 'done' });
  });
}

socket.on('connect_error', (error) => finish(2, { kind: 'connect_error', message: String(error && (error.message || error)) }));
socket.on('error', (error) => finish(2, { kind: 'connect_error', message: String(error && (error.message || error)) }));
socket.on('disconnect', (reason) => print({ kind: 'disconnect', reason }));
