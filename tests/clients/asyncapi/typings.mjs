// TypeScript typings for a hub from its AsyncAPI document (docs/hub.md):
//   node typings.mjs <asyncapi.json> > hub-types.ts
// Every schema becomes an interface; `ServerToClient` maps each target the hub sends to its
// arguments, `ClientToServer` each method to its arguments and its completion's result.
import { readFileSync } from "node:fs";
import { compile } from "json-schema-to-typescript";

const doc = JSON.parse(readFileSync(process.argv[2], "utf8"));
// References point at `definitions`; a reference's sibling keywords (its description) and a
// parameter's title would each make a type of their own, so they go.
const local = (schema) =>
  JSON.parse(
    JSON.stringify(schema).replaceAll('"#/components/schemas/', '"#/definitions/'),
    (key, value) => {
      if (value && typeof value === "object" && !Array.isArray(value)) {
        if (typeof value.$ref === "string") return { $ref: value.$ref };
        if (typeof value.title === "string" && key !== "") delete value.title;
      }
      return value;
    },
  );
const messages = doc.components.messages;
const payload = (ref) => local(messages[ref.$ref.split("/").pop()].payload);
const targets = {};
const methods = {};
for (const operation of Object.values(doc.operations)) {
  const [ref] = operation.messages;
  const { name } = messages[ref.$ref.split("/").pop()];
  if (operation.action === "send") {
    targets[name] = payload(ref);
  } else {
    methods[name] = {
      type: "object",
      properties: { arguments: payload(ref), result: payload(operation.reply.messages[0]) },
      required: ["arguments", "result"],
      additionalProperties: false,
    };
  }
}
const map = (properties) => ({
  type: "object",
  properties,
  required: Object.keys(properties),
  additionalProperties: false,
});
const schema = {
  title: "Hub",
  type: "object",
  properties: { serverToClient: { title: "ServerToClient", ...map(targets) },
    clientToServer: { title: "ClientToServer", ...map(methods) } },
  required: ["serverToClient", "clientToServer"],
  additionalProperties: false,
  definitions: local(doc.components.schemas),
};
process.stdout.write(
  await compile(schema, "Hub", {
    bannerComment: `/* The hub's types, from ${doc.info.title} ${doc.info.version}'s AsyncAPI document. */`,
    additionalProperties: false,
    unreachableDefinitions: true,
  }),
);
