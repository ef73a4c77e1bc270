// Reference peer for scripts/bench_peers: socket.io 4 (allowEIO3), one broadcast per trigger.
//   PORT=3000 node server.js
//   POST /trigger {"lt": "...", "pad": "..."}  -> io.emit("bench", body) to every client
// The body is relayed as is (about 100 bytes of JSON), so the load client finds its marker.
const http = require("http");
const { Server } = require("socket.io");

const port = Number(process.env.PORT || 3000);
const server = http.createServer((req, res) => {
  if (req.method === "POST" && req.url === "/trigger") {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      let body;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString());
      } catch (e) {
        res.writeHead(400).end();
        return;
      }
      io.emit("bench", body);
      res.writeHead(204).end();
    });
    return;
  }
  if (req.url === "/healthz") {
    res.writeHead(200, { "Content-Type": "application/json" }).end('{"status":"ok"}');
    return;
  }
});
const io = new Server(server, {
  allowEIO3: true,
  transports: ["websocket", "polling"],
  pingInterval: Number(process.env.PING_INTERVAL_MS || 25000),
  pingTimeout: Number(process.env.PING_TIMEOUT_MS || 60000),
});
server.listen(port, "127.0.0.1", () => console.log(`node socket.io peer on ${port}`));
process.on("SIGTERM", () => { io.close(); server.close(); process.exit(0); });
