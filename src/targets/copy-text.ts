/**
 * PostgreSQL's COPY text format, decoded into rows of text (what a target that is not PostgreSQL
 * receives: `TextRow`). A row ends at a raw newline, fields are split at raw tabs (both are always
 * escaped inside data), `\N` is NULL, and a backslash escapes: `\\ \t \n \r \b \f \v`, `\ooo`
 * (one to three octal digits) and `\xhh` (one or two hex digits) give bytes, any other character
 * stands for itself. Bytes from escapes may form multi-byte UTF-8, so a field is decoded as bytes
 * first. The parser is streaming: chunks may split a row, a field or a UTF-8 sequence anywhere.
 */
import type { TextRow } from './target.js';

const NL = 0x0a;
const TAB = 0x09;
const BACKSLASH = 0x5c;

const SIMPLE: Readonly<Record<number, number>> = {
  0x62: 0x08, // \b
  0x66: 0x0c, // \f
  0x6e: 0x0a, // \n
  0x72: 0x0d, // \r
  0x74: 0x09, // \t
  0x76: 0x0b, // \v
};

const isOctal = (b: number | undefined): b is number => b !== undefined && b >= 0x30 && b <= 0x37;
function hexValue(b: number | undefined): number {
  if (b === undefined) return -1;
  if (b >= 0x30 && b <= 0x39) return b - 0x30;
  if (b >= 0x61 && b <= 0x66) return b - 0x61 + 10;
  if (b >= 0x41 && b <= 0x46) return b - 0x41 + 10;
  return -1;
}

/** Decode one field (bytes `buf[start, end)`, no raw tab or newline inside). */
export function decodeField(buf: Buffer, start: number, end: number): string | null {
  if (end - start === 2 && buf[start] === BACKSLASH && buf[start + 1] === 0x4e) return null; // \N
  const first = buf.indexOf(BACKSLASH, start);
  if (first < 0 || first >= end) return buf.toString('utf8', start, end);
  const out = Buffer.allocUnsafe(end - start);
  let n = buf.copy(out, 0, start, first);
  for (let i = first; i < end;) {
    const b = buf[i]!;
    if (b !== BACKSLASH || i + 1 >= end) {
      out[n++] = b;
      i++;
      continue;
    }
    const c = buf[i + 1]!;
    if (SIMPLE[c] !== undefined) {
      out[n++] = SIMPLE[c]!;
      i += 2;
    } else if (isOctal(c)) {
      let v = 0;
      let j = i + 1;
      for (; j < end && j < i + 4 && isOctal(buf[j]); j++) v = v * 8 + (buf[j]! - 0x30);
      out[n++] = v & 0xff;
      i = j;
    } else if (c === 0x78 && hexValue(buf[i + 2]) >= 0 && i + 2 < end) {
      let v = hexValue(buf[i + 2]);
      let j = i + 3;
      if (j < end && hexValue(buf[j]) >= 0) v = v * 16 + hexValue(buf[j++]);
      out[n++] = v;
      i = j;
    } else {
      out[n++] = c; // \\ and any other escaped character: itself
      i += 2;
    }
  }
  return out.toString('utf8', 0, n);
}

/** Decode one line (without its newline) into a row. */
export function decodeLine(buf: Buffer, start: number, end: number): TextRow {
  const row: TextRow = [];
  let from = start;
  for (;;) {
    const tab = buf.indexOf(TAB, from);
    if (tab < 0 || tab >= end) {
      row.push(decodeField(buf, from, end));
      return row;
    }
    row.push(decodeField(buf, from, tab));
    from = tab + 1;
  }
}

const STRING_ESCAPES: Readonly<Record<string, string>> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v' };
/** An escape that gives a byte (octal, hex): the field must be decoded as bytes. */
const BYTE_ESCAPE = /\\(?:[0-7]|x[0-9a-fA-F])/;
const SIMPLE_ESCAPE = /\\([\s\S])/g;

/**
 * One field of a line already decoded as UTF-8 text. Escapes are ASCII and every other byte
 * passes through, so unescaping the text gives what unescaping the bytes would, except for the
 * escapes that make bytes (octal, hex), which may form one multi-byte character together: those
 * fields go through `decodeField`.
 */
function fieldOfText(f: string): string | null {
  if (f.indexOf('\\') < 0) return f;
  if (f === '\\N') return null;
  if (BYTE_ESCAPE.test(f)) {
    const b = Buffer.from(f, 'utf8');
    return decodeField(b, 0, b.length);
  }
  // A backslash at the very end stands for itself (as in decodeField).
  return f.replace(SIMPLE_ESCAPE, (_m, c: string) => STRING_ESCAPES[c] ?? c);
}

/** A streaming COPY text decoder: feed chunks, get the rows they complete. */
export class CopyTextParser {
  private rest: Buffer = Buffer.alloc(0);

  /**
   * The rows completed by this chunk. The complete lines are decoded to text at once (a raw
   * newline or tab is never inside a multi-byte character), then split: one UTF-8 decode per
   * chunk instead of one per field.
   */
  push(chunk: Buffer): TextRow[] {
    const buf = this.rest.length ? Buffer.concat([this.rest, chunk]) : chunk;
    const last = buf.lastIndexOf(NL);
    if (last < 0) {
      this.rest = Buffer.from(buf);
      return [];
    }
    const lines = buf.toString('utf8', 0, last).split('\n');
    const rows: TextRow[] = new Array<TextRow>(lines.length);
    for (let i = 0; i < lines.length; i++) {
      const fields = (lines[i] as string).split('\t');
      const row: TextRow = new Array<string | null>(fields.length);
      for (let j = 0; j < fields.length; j++) row[j] = fieldOfText(fields[j] as string);
      rows[i] = row;
    }
    this.rest = last + 1 < buf.length ? Buffer.from(buf.subarray(last + 1)) : Buffer.alloc(0);
    return rows;
  }

  /** The end of the stream: a last row without its newline, if any (COPY always ends rows with one). */
  end(): TextRow[] {
    if (this.rest.length === 0) return [];
    const last = this.rest;
    this.rest = Buffer.alloc(0);
    // The end-of-data marker of the old protocol is not a row.
    if (last.length === 2 && last[0] === BACKSLASH && last[1] === 0x2e) return [];
    return [decodeLine(last, 0, last.length)];
  }
}

/** Decode a whole COPY text into rows. */
export function parseCopyText(text: Buffer | string): TextRow[] {
  const p = new CopyTextParser();
  return [...p.push(typeof text === 'string' ? Buffer.from(text, 'utf8') : text), ...p.end()];
}
