// Parses an AsyncAPI document with the official parser and prints what a test needs to see:
// the parser's diagnostics (errors and warnings) and, when the document is valid, its
// operations with their action and message names, and each message's payload schema.
//   node check.mjs <document.json>
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";

const text = readFileSync(process.argv[2], "utf8");
const { document, diagnostics } = await new Parser().parse(text);
const severity = ["error", "warning", "information", "hint"];
const out = {
  diagnostics: diagnostics.map((d) => ({
    severity: severity[d.severity] ?? String(d.severity),
    code: d.code,
    message: d.message,
    path: d.path.join("."),
  })),
  operations: {},
};
if (document) {
  for (const operation of document.operations().all()) {
    out.operations[operation.id()] = {
      action: operation.action(),
      messages: operation.messages().all().map((m) => ({
        name: m.name(),
        payload: m.payload()?.json(),
      })),
      reply: operation.reply()?.messages().all().map((m) => m.name()) ?? null,
    };
  }
}
// The parser marks every schema with ids of its own (`x-parser-*`); they are not the document's.
console.log(JSON.stringify(out, (key, value) => (key.startsWith("x-parser-") ? undefined : value)));
