// Drives imgate's hub with the official @microsoft/signalr client, unmodified.
// Environment: HUB_URL, HUB_TOKEN, HUB_TRANSPORT (websockets|sse|longpolling),
// HUB_SKIP_NEGOTIATION=1, HUB_PROTOCOL (json, the default, or messagepack), HUB_STATEFUL=1
// (withStatefulReconnect). Prints one JSON object per line on stdout (connected, recv,
// result, reconnecting, reconnected, closed, start_failed); reads commands as JSON lines on
// stdin: {"cmd":"invoke","tag","method","args"}, {"cmd":"send",…}, {"cmd":"stop"}.
"use strict";
const signalR = require("@microsoft/signalr");
const readline = require("readline");

const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const transports = {
  websockets: signalR.HttpTransportType.WebSockets,
  sse: signalR.HttpTransportType.ServerSentEvents,
  longpolling: signalR.HttpTransportType.LongPolling,
};
const transport = transports[process.env.HUB_TRANSPORT || "websockets"];
const protocol =
  process.env.HUB_PROTOCOL === "messagepack"
    ? new (require("@microsoft/signalr-protocol-msgpack").MessagePackHubProtocol)()
    : new signalR.JsonHubProtocol();
const builder = new signalR.HubConnectionBuilder()
  .withUrl(process.env.HUB_URL, {
    transport,
    skipNegotiation: process.env.HUB_SKIP_NEGOTIATION === "1",
    accessTokenFactory: () => process.env.HUB_TOKEN,
  })
  .withHubProtocol(protocol)
  .withAutomaticReconnect([0, 200, 500, 1000, 2000])
  .configureLogging(signalR.LogLevel.Warning);
if (process.env.HUB_STATEFUL === "1") builder.withStatefulReconnect();
const connection = builder.build();

for (const target of [
  "getRoomMessageNotification",
  "getRoomSubscriptionChangedNotification",
  "messageDeleted",
  "typing",
]) {
  // A handler that returns a value would answer as a "client result"; this one returns nothing.
  connection.on(target, (arg) => {
    out({ event: "recv", target, arg });
  });
}
// A host target of the tests: every argument, as the host pushed them.
connection.on("notify", (...args) => {
  out({ event: "recv", target: "notify", args });
});
connection.onreconnecting((error) => out({ event: "reconnecting", error: error ? String(error) : null }));
connection.onreconnected((connectionId) => out({ event: "reconnected", connectionId: connectionId ?? null }));
connection.onclose((error) => out({ event: "closed", error: error ? String(error) : null }));

async function handle(command) {
  const { cmd, tag, method, args } = command;
  if (cmd === "invoke") {
    try {
      const value = await connection.invoke(method, ...(args || []));
      out({ event: "result", tag, ok: true, value: value === undefined ? null : value });
    } catch (error) {
      out({ event: "result", tag, ok: false, error: error.message });
    }
  } else if (cmd === "send") {
    await connection.send(method, ...(args || []));
    out({ event: "sent", tag });
  } else if (cmd === "stop") {
    await connection.stop();
    out({ event: "stopped" });
    // stop() does not wait for its Close message to be posted; a page would live on, so
    // give it a moment as well before the process ends.
    setTimeout(() => process.exit(0), 300);
  }
}

const input = readline.createInterface({ input: process.stdin });
input.on("line", (line) => {
  if (line.trim()) handle(JSON.parse(line)).catch((error) => out({ event: "error", error: String(error) }));
});
input.on("close", async () => {
  await connection.stop();
  process.exit(0);
});

connection
  .start()
  .then(() => out({ event: "connected", connectionId: connection.connectionId ?? null }))
  .catch((error) => {
    out({ event: "start_failed", error: String(error) });
    process.exit(2);
  });
