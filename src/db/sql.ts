/**
 * The `sql` tag: values become `$n` parameters, identifiers and reviewed
 * fragments (see ident.ts) are spliced. Concatenating a value into SQL text is
 * a bug; this tag makes the safe way the short way.
 */
import { SqlFragment } from './ident.js';

/** A parameterised query, ready for `client.query(q.text, q.values)`. */
export interface Query {
  readonly text: string;
  readonly values: unknown[];
}

/** Build a parameterised query from a template. */
export function sql(strings: TemplateStringsArray, ...args: unknown[]): Query {
  let text = strings[0] ?? '';
  const values: unknown[] = [];
  args.forEach((arg, i) => {
    if (arg instanceof SqlFragment) text += arg.text;
    else {
      values.push(arg);
      text += `$${values.length}`;
    }
    text += strings[i + 1] ?? '';
  });
  return { text, values };
}

/** Join SQL fragments with a separator into one fragment. */
export function joinSql(parts: readonly SqlFragment[], sep = ', '): SqlFragment {
  return new SqlFragment(parts.map((p) => p.text).join(sep));
}
