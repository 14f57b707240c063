// Decodes the real records of a contracts directory with the TypeScript models Modelina generated
// (compiled to CommonJS by tsc): each record's payload goes through its event's model
// (`Model.unmarshal`, then `marshal`) and must come back as the same JSON value.
//
//   node scripts/contracts/decode-records.cjs ASYNCAPI_JSON MODELS_JS_DIR PAYLOADS_DIR
//
// PAYLOADS_DIR holds manifest.json (scripts/contracts/records.py adds the records, `records/...`).
const { readFileSync } = require("node:fs");
const { join, resolve } = require("node:path");
const { isDeepStrictEqual } = require("node:util");

const [documentPath, modelsDir, dir] = process.argv.slice(2);
if (!dir) {
  console.error("usage: node decode-records.cjs ASYNCAPI_JSON MODELS_JS_DIR PAYLOADS_DIR");
  process.exit(2);
}
const document = JSON.parse(readFileSync(documentPath, "utf8"));
// `{service}.{name}.v{N}.schema.json` → the message's payload title (the Rust type's name).
const titles = new Map(
  Object.entries(document.components.messages).map(([id, m]) => [`${id}.schema.json`, m.payload.title]),
);
const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));
let decoded = 0;
let failures = 0;
const models = new Set();
for (const { schema, payload } of manifest.filter((e) => e.payload.startsWith("records/"))) {
  const title = titles.get(schema);
  if (!title) {
    console.error(`FAIL ${payload}: no message for ${schema} in the document`);
    failures++;
    continue;
  }
  const text = readFileSync(join(dir, payload), "utf8");
  try {
    const Model = require(resolve(modelsDir, `${title}.js`))[title];
    const back = JSON.parse(Model.unmarshal(text).marshal());
    if (!isDeepStrictEqual(back, JSON.parse(text))) {
      throw new Error(`decoded and re-encoded as ${JSON.stringify(back)}, not ${text}`);
    }
    decoded++;
    models.add(title);
  } catch (e) {
    console.error(`FAIL ${payload} with the ${title} model: ${e.message}`);
    failures++;
  }
}
if (failures > 0 || decoded === 0) {
  console.error(`Modelina models: ${failures} of ${decoded + failures} records failed`);
  process.exit(1);
}
console.log(`Modelina models: ${decoded} real records decoded by ${models.size} models (${[...models].sort().join(", ")})`);
