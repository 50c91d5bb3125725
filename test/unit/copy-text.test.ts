import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CopyTextParser, decodeLine, parseCopyText } from '../../src/targets/copy-text.js';

describe('COPY text decoding', () => {
  it('splits rows and fields and reads \\N as NULL, an empty field as an empty string', () => {
    assert.deepEqual(parseCopyText('1\ta\n2\t\\N\n3\t\n'), [['1', 'a'], ['2', null], ['3', '']]);
  });

  it('decodes every escape: \\\\ \\t \\n \\r \\b \\f \\v, octal, hex, and any other character as itself', () => {
    assert.deepEqual(parseCopyText('a\\\\b\\tc\\nd\\re\\bf\\fg\\vh\n'), [['a\\b\tc\nd\re\bf\fg\vh']]);
    assert.deepEqual(parseCopyText('\\101\\1\\0123\\x41\\x4a\\x4\\q\n'), [['A\u0001\n3AJ\u0004q']]);
  });

  it('reads the text \\N (an escaped backslash then N) as text, not NULL', () => {
    assert.deepEqual(parseCopyText('\\\\N\n'), [['\\N']]);
  });

  it('decodes multi-byte UTF-8, also when built from octal escapes', () => {
    assert.deepEqual(parseCopyText('é€😀\t\\303\\251\n'), [['é€😀', 'é']]);
  });

  it('keeps rows whole across chunks that split a row, an escape or a UTF-8 sequence', () => {
    const text = Buffer.from('1\tx\\ty😀\n2\t\\N\n3\t\\303\\251\n', 'utf8');
    const whole = parseCopyText(text);
    for (let size = 1; size <= 5; size++) {
      const p = new CopyTextParser();
      const rows = [];
      for (let i = 0; i < text.length; i += size) rows.push(...p.push(text.subarray(i, i + size)));
      rows.push(...p.end());
      assert.deepEqual(rows, whole, `chunks of ${size}`);
    }
    assert.deepEqual(whole, [['1', 'x\ty😀'], ['2', null], ['3', 'é']]);
  });

  it('decodes random lines of escapes and multi-byte text exactly as the byte-level decoder does', () => {
    const atoms = ['a', 'é', '😀', '\\', '\\\\', '\\N', '\\t', '\\n', '\\r', '\\b', '\\v', '\\f', '\\x4', '\\x4a', '\\xg', '\\303\\251',
      '\\7', '\\08', '\\q', '\\é', '\t', '\t\\N\t', ' '];
    let x = 7;
    const lines: string[] = [];
    for (let i = 0; i < 3000; i++) {
      let line = '';
      const n = i % 9;
      for (let k = 0; k < n; k++) {
        x = (x * 1103515245 + 12345) % 2 ** 31;
        line += atoms[x % atoms.length];
      }
      lines.push(line);
    }
    const text = Buffer.from(lines.join('\n') + '\n', 'utf8');
    const want = lines.map((l) => {
      const b = Buffer.from(l, 'utf8');
      return decodeLine(b, 0, b.length);
    });
    for (const size of [7, 64, 65_536]) {
      const p = new CopyTextParser();
      const rows = [];
      for (let i = 0; i < text.length; i += size) rows.push(...p.push(text.subarray(i, i + size)));
      rows.push(...p.end());
      assert.deepEqual(rows, want, `chunks of ${size}`);
    }
  });

  it('reads a row without its final newline at the end', () => {
    assert.deepEqual(parseCopyText('1\t2'), [['1', '2']]);
  });
});
