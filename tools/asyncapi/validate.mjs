// Validates an AsyncAPI document with the AsyncAPI parser (the JSON Schema
// of the specification, then its rules). Prints every diagnostic and exits
// 1 if any is an error or a warning.
//
//	node tools/asyncapi/validate.mjs docs/asyncapi.yaml
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Parser, DiagnosticSeverity } from '@asyncapi/parser';

const file = resolve(process.argv[2] ?? 'docs/asyncapi.yaml');
const parser = new Parser();
const { document, diagnostics } = await parser.parse(await readFile(file, 'utf8'), {
  source: file,
});
const names = ['error', 'warning', 'information', 'hint'];
let failed = document === undefined;
for (const d of diagnostics) {
  const where = d.path?.length ? d.path.join('.') : '(document)';
  const line = d.range ? `:${d.range.start.line + 1}` : '';
  console.log(`${file}${line}: ${names[d.severity] ?? d.severity}: ${d.code}: ${d.message} (${where})`);
  if (d.severity === DiagnosticSeverity.Error || d.severity === DiagnosticSeverity.Warning) {
    failed = true;
  }
}
if (failed) {
  console.log(`${file}: invalid`);
  process.exit(1);
}
console.log(`${file}: valid AsyncAPI ${document.version()}, ${document.channels().length} channels, ${document.operations().length} operations, ${document.messages().length} messages`);
