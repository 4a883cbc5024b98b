// docs/hub.md's example: a TypeScript app typing the official client with the types
// typings.mjs derives from /asyncapi.json (`./hub-types`). The hub's tests compile it, and a
// copy with a misspelt target, which must not compile.
import * as signalR from "@microsoft/signalr";
import type { ClientToServer, ServerToClient } from "./hub-types";

/** `connection.on`, with the handler's arguments typed by target. */
export function on<K extends keyof ServerToClient>(
  connection: signalR.HubConnection,
  target: K,
  handler: (...args: ServerToClient[K]) => void,
) {
  connection.on(target, handler as (...args: unknown[]) => void);
}

/** `connection.invoke`, with the arguments and the result typed by method. */
export function invoke<K extends keyof ClientToServer>(
  connection: signalR.HubConnection,
  method: K,
  ...args: ClientToServer[K]["arguments"]
): Promise<ClientToServer[K]["result"]> {
  return connection.invoke(method, ...args);
}

export async function run(connection: signalR.HubConnection, roomId: string) {
  on(connection, "notify", (notice) => console.log(notice.message));
  on(connection, "getRoomMessageNotification", (message) => console.log(message.sender.name));
  const message = await invoke(connection, "SendMessage", roomId, "hello");
  console.log(message.id, message.createdAt);
}
