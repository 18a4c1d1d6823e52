// Grafana's published types (npm @grafana/schema) as one JSON Schema document:
//   node generate.mjs OUT.json
// {"grafanaSchema": version, "dashboard": <Dashboard>, "panels": {<type>: {options, fieldConfig}}}
// Objects are closed (additionalProperties false) as the TypeScript interfaces are, so a key
// Grafana does not define fails. Panel options and field config come from each panel type's
// own types (raw/composable/<type>/panelcfg).
import { createGenerator } from "ts-json-schema-generator";
import { existsSync, readFileSync, writeFileSync } from "node:fs";

const pkg = "node_modules/@grafana/schema";
const raw = `${pkg}/dist/types/raw`;
const PANELS = ["timeseries", "bargauge", "stat", "table", "heatmap"];

function schema(path, type) {
  return createGenerator({
    path, type, skipTypeCheck: true, additionalProperties: false, expose: "export", topRef: true,
  }).createSchema(type);
}

const out = {
  grafanaSchema: JSON.parse(readFileSync(`${pkg}/package.json`, "utf8")).version,
  dashboard: schema(`${raw}/dashboard/x/types.gen.d.ts`, "Dashboard"),
  panels: {},
};
for (const type of PANELS) {
  const path = `${raw}/composable/${type}/panelcfg/x/types.gen.d.ts`;
  if (!existsSync(path)) throw new Error(`@grafana/schema has no panel type ${type}`);
  const hasFieldConfig = /export interface FieldConfig\b/.test(readFileSync(path, "utf8"));
  out.panels[type] = {
    options: schema(path, "Options"),
    fieldConfig: hasFieldConfig ? schema(path, "FieldConfig") : null,
  };
}
writeFileSync(process.argv[2], JSON.stringify(out));
