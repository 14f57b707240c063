// Generates TypeScript models from an AsyncAPI document with Modelina (@asyncapi/modelina, the
// AsyncAPI initiative's model generator), classes with marshal/unmarshal, one file per model.
//
//   node scripts/contracts/modelina.mjs ASYNCAPI_JSON OUT_DIR
//
// scripts/contracts/check compiles them with tsc --strict and decodes real records with them
// (scripts/contracts/decode-records.cjs). EVENTBUS_NPM_DIR: where the npm packages are installed.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

const npmDir = process.env.EVENTBUS_NPM_DIR || join(homedir(), ".cache", "eventbus-npm");
const require = createRequire(join(npmDir, "node_modules", "_"));
const { TypeScriptFileGenerator, TS_COMMON_PRESET } = require("@asyncapi/modelina");

const [documentPath, out] = process.argv.slice(2);
if (!documentPath || !out) {
  console.error("usage: node modelina.mjs ASYNCAPI_JSON OUT_DIR");
  process.exit(2);
}
const generator = new TypeScriptFileGenerator({
  modelType: "class",
  presets: [{ preset: TS_COMMON_PRESET, options: { marshalling: true } }],
});
const document = JSON.parse(readFileSync(documentPath, "utf8"));
const models = await generator.generateToFiles(document, out, { exportType: "named" }, true);
console.log(`Modelina: ${models.length} TypeScript models: ${models.map((m) => m.modelName).join(", ")}`);
