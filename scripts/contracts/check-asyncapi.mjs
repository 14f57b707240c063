// Parses an AsyncAPI document with the official parser (@asyncapi/parser, installed by
// scripts/contracts/check outside the repository) and fails on any diagnostic of severity error.
//
//   node scripts/contracts/check-asyncapi.mjs asyncapi.json
//
// EVENTBUS_NPM_DIR: where the npm packages are installed (default ~/.cache/eventbus-npm).
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

const npmDir = process.env.EVENTBUS_NPM_DIR || join(homedir(), ".cache", "eventbus-npm");
const require = createRequire(join(npmDir, "node_modules", "_"));
const { Parser, DiagnosticSeverity } = require("@asyncapi/parser");

const file = process.argv[2];
if (!file) {
  console.error("usage: node check-asyncapi.mjs ASYNCAPI_FILE");
  process.exit(2);
}
const severityName = ["error", "warning", "information", "hint"];
const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(file, "utf8"), { source: file });
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
for (const d of diagnostics) {
  const where = d.range ? `${d.range.start.line + 1}:${d.range.start.character + 1}` : "?";
  const path = d.path && d.path.length ? ` at ${d.path.join(".")}` : "";
  console.log(`${file}:${where}: ${severityName[d.severity] ?? d.severity}: ${d.message} (${d.code})${path}`);
}
if (errors.length > 0 || document === undefined) {
  console.error(`AsyncAPI: ${errors.length} error(s) in ${file}`);
  process.exit(1);
}
const channels = document.channels().length;
const messages = document.messages().length;
console.log(`AsyncAPI ${document.version()}: ${channels} channels, ${messages} messages, no errors (${diagnostics.length} other diagnostics) in ${file}`);
