/**
 * Write docs/ibex.schema.json, the JSON Schema of the configuration file, from its zod schema
 * (src/config/document.ts). Run after changing the schema: npm run json-schema
 * (test/unit/config-document.test.ts fails while the published file is out of date).
 */
import { writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { jsonSchemaText } from '../src/config/document.js';

const out = join(dirname(fileURLToPath(import.meta.url)), '..', 'docs', 'ibex.schema.json');
writeFileSync(out, jsonSchemaText());
console.log(`wrote ${out}`);
