/**
 * Names on the command line (pure: no I/O): object names, table names with
 * optional schema, double quotes and wildcards, and how they are printed.
 */
import { usage } from '../errors.js';

/** The nouns of the configuration verbs. */
export type Noun = 'db' | 'table' | 'sequence' | 'relgroup' | 'dbgroup' | 'sync' | 'customcode' | 'customname';

/** Every noun, for messages. */
export const NOUNS: readonly Noun[] = ['db', 'table', 'sequence', 'relgroup', 'dbgroup', 'sync', 'customcode', 'customname'];

const NOUN_WORDS: Record<string, Noun> = {
  db: 'db', dbs: 'db', database: 'db', databases: 'db',
  table: 'table', tables: 'table',
  sequence: 'sequence', sequences: 'sequence', seq: 'sequence',
  relgroup: 'relgroup', relgroups: 'relgroup', herd: 'relgroup', herds: 'relgroup',
  dbgroup: 'dbgroup', dbgroups: 'dbgroup',
  sync: 'sync', syncs: 'sync',
  customcode: 'customcode', customcodes: 'customcode', code: 'customcode', ccode: 'customcode',
  customname: 'customname', customnames: 'customname',
};

/** The other words that name a noun: its plural and Bucardo's aliases. */
export function nounAliases(noun: Noun): string[] {
  return Object.keys(NOUN_WORDS).filter((w) => NOUN_WORDS[w] === noun && w !== noun);
}

/** The noun a word names (plural and Bucardo's aliases accepted), or undefined. */
export function nounOf(word: string): Noun | undefined {
  return NOUN_WORDS[word.toLowerCase()];
}

const OBJECT_NAME = /^[A-Za-z][A-Za-z0-9_]*$/;
const RESERVED_SYNC_NAMES = ['all', 'sync', 'pushdelta', 'fullcopy', 'swap'];

/**
 * Check the name of a db, group, sync or customcode: Bucardo's rule (letters,
 * digits and _, starting with a letter, at most 63 bytes), since names become
 * NOTIFY payloads and parts of object names.
 */
export function checkObjectName(noun: Noun, name: string): void {
  if (!OBJECT_NAME.test(name) || Buffer.byteLength(name) > 63) {
    throw usage(`bad ${noun} name "${name}": use letters, digits and _, starting with a letter, at most 63 bytes`);
  }
  if (noun === 'sync' && RESERVED_SYNC_NAMES.includes(name.toLowerCase())) {
    throw usage(`"${name}" cannot name a sync (reserved: ${RESERVED_SYNC_NAMES.join(', ')}): choose another name`);
  }
}

/** One part (schema or name) of a relation name on the command line. */
export interface NamePart {
  /** The name, with quotes removed; for a pattern, a LIKE pattern. */
  text: string;
  /** True when the part holds `%` or `*` outside double quotes (then `_` matches one character, as in LIKE). */
  pattern: boolean;
}

/** A parsed `schema.table` term. */
export interface RelationTerm {
  schema: NamePart;
  name: NamePart;
  /** The term as given, for messages. */
  given: string;
}

/**
 * Parse `schema.table`, `table` (schema public), `"My Schema"."a.b"`, `public.%`.
 * Names are taken literally (no case folding); double quotes allow dots, and
 * `""` inside quotes is one `"`. A part with `%` or `*` outside quotes is a
 * pattern (LIKE: `*` means `%`, `_` any one character); quoted parts never are.
 */
export function parseRelationTerm(given: string): RelationTerm {
  const parts: NamePart[] = [];
  let i = 0;
  const s = given;
  const bad = (why: string): never => {
    throw usage(`bad table name "${given}": ${why}; write schema.table, and "double quotes" around names with dots`);
  };
  while (i <= s.length) {
    let text = '';
    let pattern = false;
    if (s[i] === '"') {
      i++;
      for (;;) {
        if (i >= s.length) bad('a double quote is not closed');
        if (s[i] === '"') {
          if (s[i + 1] === '"') {
            text += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        text += s[i];
        i++;
      }
      if (i < s.length && s[i] !== '.') bad('text follows a closing double quote');
      if (text === '') bad('a quoted name is empty');
    } else {
      while (i < s.length && s[i] !== '.') {
        text += s[i];
        i++;
      }
      if (text === '') bad('a name part is empty');
      if (/[%*]/.test(text)) {
        pattern = true;
        text = text.replace(/\*/g, '%');
      }
    }
    if (text.includes('\0')) bad('a name cannot contain a NUL byte');
    if (!pattern && Buffer.byteLength(text) > 63) {
      bad(`a part is ${Buffer.byteLength(text)} bytes long, but PostgreSQL names have at most 63 (it cuts longer ones when they are created, so give the name as stored)`);
    }
    parts.push({ text, pattern });
    if (i >= s.length) break;
    i++; // the dot
    if (i >= s.length) bad('it ends with a dot');
  }
  if (parts.length > 2) bad('it has more than one dot outside double quotes');
  if (parts.length === 1) return { schema: { text: 'public', pattern: false }, name: parts[0]!, given };
  return { schema: parts[0]!, name: parts[1]!, given };
}

/** A part as a LIKE pattern: literal parts have `\`, `%` and `_` escaped. */
export function likeOf(part: NamePart): string {
  return part.pattern ? part.text : part.text.replace(/[\\%_]/g, (m) => '\\' + m);
}

/** True when a term names exactly one relation (no pattern part). */
export function isExact(term: RelationTerm): boolean {
  return !term.schema.pattern && !term.name.pattern;
}

/** Print one name part so `parseRelationTerm` reads it back: quoted when it is not a plain lower-case word. */
export function displayPart(name: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(name) ? name : '"' + name.replaceAll('"', '""') + '"';
}

/** Print `schema.name` so that it can be given back on the command line. */
export function displayRelation(schema: string, name: string): string {
  return `${displayPart(schema)}.${displayPart(name)}`;
}

/** Match a name against a list filter: exact names, or `%`/`*` wildcards (case-sensitive). */
export function matchesFilter(name: string, filters: readonly string[]): boolean {
  if (filters.length === 0) return true;
  return filters.some((f) => {
    if (!/[%*]/.test(f)) return f === name;
    const re = new RegExp('^' + f.split(/[%*]/).map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$', 's');
    return re.test(name);
  });
}

/** Split `tables=a,b,"x,y".z` on commas outside double quotes. */
export function splitList(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (const ch of text) {
    if (ch === '"') quoted = !quoted;
    if (ch === ',' && !quoted) {
      out.push(cur.trim());
      cur = '';
    } else cur += ch;
  }
  out.push(cur.trim());
  return out.filter(Boolean);
}
