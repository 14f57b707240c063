// Validates sample payloads against the JSON Schemas generated for them, with ajv (JSON Schema
// 2020-12) and ajv-formats (uuid, date, date-time), installed by scripts/contracts/check.
//
//   node scripts/contracts/check-payloads.mjs DIR
//
// DIR holds `manifest.json` (written by `cargo test -p eventbus-tests --test contracts`): a list
// of `{schema, payload, valid, what}`. A payload marked valid must pass; one marked invalid must
// be rejected (so the check can fail). EVENTBUS_NPM_DIR: where the npm packages are installed.
import { createRequire } from "node:module";
import { readFileSync, readdirSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

const npmDir = process.env.EVENTBUS_NPM_DIR || join(homedir(), ".cache", "eventbus-npm");
const require = createRequire(join(npmDir, "node_modules", "_"));
const Ajv2020 = require("ajv/dist/2020").default;
const addFormats = require("ajv-formats").default;

const dir = process.argv[2];
if (!dir) {
  console.error("usage: node check-payloads.mjs DIR");
  process.exit(2);
}
const read = (name) => JSON.parse(readFileSync(join(dir, name), "utf8"));
const manifest = read("manifest.json");
// Strict mode, the standard formats only: a schema with an unknown format or keyword fails.
const ajv = new Ajv2020({ strict: true, allErrors: true });
addFormats(ajv);

const compiled = new Map();
let failures = 0;
// Every schema in DIR compiles, whether or not a payload names it.
for (const schema of readdirSync(dir).filter((f) => f.endsWith(".schema.json")).sort()) {
  try {
    compiled.set(schema, ajv.compile(read(schema)));
  } catch (e) {
    console.error(`FAIL ${schema}: does not compile in strict mode: ${e.message}`);
    failures++;
  }
}
console.log(`JSON Schema: ${compiled.size} schemas compile in strict mode`);
for (const { schema, payload, valid, what } of manifest) {
  let validate = compiled.get(schema);
  if (!validate) {
    try {
      validate = ajv.compile(read(schema));
    } catch (e) {
      console.error(`FAIL ${schema}: does not compile: ${e.message}`);
      failures++;
      continue;
    }
    compiled.set(schema, validate);
  }
  const ok = validate(read(payload));
  if (ok === valid) {
    const why = ok ? "" : `: ${ajv.errorsText(validate.errors)}`;
    console.log(`ok   ${payload} (${what}) ${ok ? "accepted" : "rejected"}${why}`);
  } else {
    failures++;
    const why = ok ? "accepted, but it must be rejected" : `rejected: ${ajv.errorsText(validate.errors)}`;
    console.error(`FAIL ${payload} (${what}) against ${schema}: ${why}`);
  }
}
if (failures > 0) {
  console.error(`JSON Schema: ${failures} of ${manifest.length} checks failed`);
  process.exit(1);
}
console.log(`JSON Schema: ${manifest.length} payloads against ${compiled.size} schemas, as expected`);
