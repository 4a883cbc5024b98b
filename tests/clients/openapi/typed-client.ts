// A host's browser code against imgate's REST API, typed by the types openapi-typescript
// generates from /openapi.json (`./api-types`) and called through openapi-fetch. The
// end-to-end tests generate the types from a running gateway and type-check this file, and a
// copy with a misspelt path, which must not compile.
import createClient from "openapi-fetch";
import type { paths } from "./api-types";

export async function chat(baseUrl: string, token: string, roomId: string) {
  const api = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${token}` } });

  const sent = await api.POST("/api/v1/rooms/{roomId}/messages", {
    params: { path: { roomId } },
    body: { text: "hello", clientMessageId: "retry-key-1" },
  });
  if (sent.error) {
    console.log(sent.error.error, sent.error.message);
    return;
  }
  console.log(sent.data.id, sent.data.sender.name, sent.data.createdAt);

  const history = await api.GET("/api/v1/rooms/{roomId}/messages", {
    params: { path: { roomId }, query: { limit: 20 } },
  });
  for (const message of history.data?.messages ?? []) {
    console.log(message.sender.username, message.text, message.editedAt ?? "");
  }

  const unread = await api.GET("/api/v1/unread");
  if (unread.data) {
    console.log(unread.data.total, Object.keys(unread.data.rooms).length);
  }
}
