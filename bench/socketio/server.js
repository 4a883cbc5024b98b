// The Socket.IO peer of `make bench`: what a team might deploy instead of the gateway to push
// events to browsers. Every `publish` event is sent to every other connection, as the
// gateway and the limit server do. WebSocket transport only, no compression: the
// fairest setting for a server that pushes small messages.
const http = require("node:http");
const { Server } = require("socket.io");

const server = http.createServer();
const io = new Server(server, { transports: ["websocket"], perMessageDeflate: false });
io.on("connection", (socket) => {
  socket.on("publish", (text) => socket.broadcast.emit("event", text));
});
server.listen(0, "127.0.0.1", () => {
  console.log(`socketio listening on ws://127.0.0.1:${server.address().port}`);
});
