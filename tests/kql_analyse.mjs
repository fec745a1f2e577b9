// Parse and analyse KQL with Microsoft's Kusto language service (@kusto/language-service-next, the
// Kusto.Language library built for JavaScript), against a database schema given by the caller.
//
// stdin:  {"tables": {"<table>": {"<column>": "<type>", ...}, ...},
//          "queries": [{"name": "...", "text": "..."}, ...]}
// stdout: [{"name": "...", "diagnostics": [{"severity", "code", "message", "start", "length"}, ...]}, ...]
//
// Column types are Kusto's scalar type names (string, datetime, int, long, real, bool, dynamic, ...).
// One process analyses every query: loading the library is most of the cost.
// A test and development tool: tests/ is not deployed (.funcignore).

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
// The library is a Bridge.NET build: its scripts define the globals `Bridge` and `Kusto` when loaded.
require("@kusto/language-service-next/bridge.min.js");
require("@kusto/language-service-next/Kusto.Language.Bridge.min.js");
const Language = globalThis.Kusto.Language;

function globalsFor(tables) {
  const symbols = Object.entries(tables).map(([table, columns]) => {
    const schema = Object.entries(columns)
      .map(([column, type]) => `['${column}']:${type}`)
      .join(", ");
    return new Language.Symbols.TableSymbol.$ctor7(table, `(${schema})`, null);
  });
  const database = new Language.Symbols.DatabaseSymbol.ctor("workspace", symbols);
  return Language.GlobalState.Default.WithDatabase(database);
}

function diagnosticsOf(text, globals) {
  const found = Language.KustoCode.ParseAndAnalyze(text, globals).GetDiagnostics();
  const diagnostics = [];
  for (let i = 0; i < found.Count; i++) {
    const d = found.getItem(i);
    diagnostics.push({
      severity: d.Severity,
      code: d.Code,
      message: d.Message,
      start: d.Start,
      length: d.Length,
    });
  }
  return diagnostics;
}

const input = JSON.parse(readFileSync(0, "utf8"));
const globals = globalsFor(input.tables);
const results = input.queries.map(({ name, text }) => ({ name, diagnostics: diagnosticsOf(text, globals) }));
process.stdout.write(JSON.stringify(results));
