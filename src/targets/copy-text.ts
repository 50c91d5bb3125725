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

/** A streaming COPY text decoder: feed chunks, get the rows they complete. */
export class CopyTextParser {
  private rest: Buffer = Buffer.alloc(0);

  /** The rows completed by this chunk. */
  push(chunk: Buffer): TextRow[] {
    const buf = this.rest.length ? Buffer.concat([this.rest, chunk]) : chunk;
    const rows: TextRow[] = [];
    let from = 0;
    for (let nl = buf.indexOf(NL, from); nl >= 0; nl = buf.indexOf(NL, from)) {
      rows.push(decodeLine(buf, from, nl));
      from = nl + 1;
    }
    this.rest = from < buf.length ? Buffer.from(buf.subarray(from)) : Buffer.alloc(0);
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
