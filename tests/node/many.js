#!/usr/bin/env node
// Many socket.io-client@2 (EIO=3) clients in one node process, for the Python tests.
//
//   node many.js '{"url": "http://127.0.0.1:8000", "cookie": "sid=…", "clients": 50,
//                  "transports": ["polling", "websocket"], "upgrade": true,
//                  "store": "orders", "events": 5, "timeoutMs": 20000}'
//
// Every client connects (and, with "upgrade", waits for its transport to become websocket)
// and subscribes to `store`. Then it prints {"kind": "ready", "sids": [...]} once, and waits
// until each client has `events` events, then 300 ms more (to see a duplicate), and prints
//   {"kind": "done", "clients": [{"sid", "transport", "ids": [event ids], "errors": [...]}]}
// and exits 0; {"kind": "timeout", "clients": …} and exit 3 if that takes over timeoutMs.
const io = require('socket.io-client');

const options = JSON.parse(process.argv[2] || '{}');
const print = (line) => process.stdout.write(JSON.stringify(line) + '\n');
const count = options.clients || 1;
const wanted = options.events || 0;

const clients = [];
let readyCount = 0;
let finished = false;

const summary = () => clients.map((c) => ({
  sid: c.sid, transport: c.socket.io.engine ? c.socket.io.engine.transport.name : null,
  ids: c.ids, errors: c.errors,
}));

const finish = (code, kind) => {
  if (finished) return;
  finished = true;
  print({ kind, clients: summary() });
  for (const c of clients) c.socket.close();
  setTimeout(() => process.exit(code), 50);
};

setTimeout(() => finish(3, 'timeout'), options.timeoutMs || 20000);

const maybeDone = () => {
  if (wanted && clients.every((c) => c.ids.length >= wanted)) {
    setTimeout(() => finish(0, 'done'), 300);
  }
};

for (let i = 0; i < count; i += 1) {
  const socket = io(options.url, {
    path: '/socket.io',
    transports: options.transports || ['polling', 'websocket'],
    reconnection: false,
    forceNew: true,
    extraHeaders: options.cookie ? { Cookie: options.cookie } : {},
    timeout: 10000,
  });
  const client = { socket, sid: null, ids: [], errors: [], subscribed: false, upgraded: false };
  clients.push(client);
  const markReady = () => {
    if (client.ready || !client.subscribed || (options.upgrade && !client.upgraded)) return;
    client.ready = true;
    readyCount += 1;
    if (readyCount === count) print({ kind: 'ready', sids: clients.map((c) => c.sid) });
  };
  socket.io.on('open', () => {
    socket.io.engine.on('upgrade', () => { client.upgraded = true; markReady(); });
  });
  socket.on('connect', () => {
    client.sid = socket.io.engine.id;
    socket.emit('subscribe', { store: options.store }, (answer) => {
      if (!answer || !answer.success) client.errors.push({ ack: answer });
      client.subscribed = true;
      markReady();
    });
  });
  socket.on('entity.created', (event) => { client.ids.push(event.id); maybeDone(); });
  const fail = (what) => (error) => {
    client.errors.push({ [what]: String(error && (error.message || error)) });
  };
  socket.on('connect_error', fail('connect_error'));
  socket.on('error', fail('error'));
  socket.on('disconnect', fail('disconnect'));
}
