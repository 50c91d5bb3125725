/**
 * Reading a configuration file: YAML (JSON is YAML too) parsed with source positions, then
 * checked against the document schema. Every error is one line naming the file, line and
 * column of the value at fault.
 */
import { readFileSync } from 'node:fs';
import { LineCounter, isNode, parseDocument, stringify } from 'yaml';
import { IbexError } from '../errors.js';
import { DOCUMENT, type ConfigDocument } from './document.js';

function fileError(message: string): IbexError {
  return new IbexError('usage', message);
}

/** Parse and validate the text of a configuration file (`file` names it in errors). */
export function parseConfigText(text: string, file: string): ConfigDocument {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number): string => {
    const p = lines.linePos(offset);
    return `${file}:${p.line}:${p.col}`;
  };
  const bad = doc.errors[0];
  if (bad) throw fileError(`${at(bad.pos[0])}: ${bad.message.split('\n')[0]}: fix the YAML syntax there`);
  const value: unknown = doc.toJS();
  const r = DOCUMENT.safeParse(value ?? {});
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const path = issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p));
  // The deepest node that exists on the path: a missing key is reported at its parent.
  let node: unknown;
  for (let n = path.length; n >= 0 && !isNode(node); n--) node = n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true);
  const offset = isNode(node) && node.range ? node.range[0] : 0;
  const where = path.length ? path.join('.') : '(top)';
  const extra = issue.code === 'unrecognized_keys' ? ` (${issue.keys.join(', ')})` : '';
  throw fileError(`${at(offset)}: ${where}: ${issue.message}${extra}`);
}

/** Read and validate a configuration file. */
export function readConfigFile(path: string): ConfigDocument {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw fileError(`cannot read ${path}: ${(err as Error).message}: give the path of an ibex configuration file (ibex export > ibex.yaml writes one)`);
  }
  return parseConfigText(text, path);
}

/** A document as YAML or JSON text. */
export function formatDocument(doc: unknown, format: 'yaml' | 'json'): string {
  return format === 'json' ? JSON.stringify(doc, null, 2) + '\n' : stringify(doc, { lineWidth: 0 });
}
