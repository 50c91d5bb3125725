/** Sequences (pure SQL text). */

/** A sequence's last value and whether it was called (`q`: its quoted name). */
export function sequenceValueSql(q: string): string {
  return `SELECT last_value::text AS v, is_called FROM ${q}`;
}

/** Set a sequence ($1: its quoted name) to a value ($2). */
export const SET_SEQUENCE_SQL = `SELECT setval($1::regclass, $2::bigint, true)`;
