import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { rng, testSeed } from '../helpers/seed.js';
import {
  canonicalIntText,
  canonicalJson,
  canonicalNumeric,
  canonicalText,
  civilFromDays,
  CodecError,
  daysFromCivil,
  decode,
  intervalFields,
  isoFromMicros,
  isoInterval,
  parseArrayLiteral,
  parseType,
  plainNumericCanonical,
  utcTimestamptzIso,
} from '../../src/targets/codec.js';

describe('parseType', () => {
  it('reads modifiers, widths and time zones from format_type text', () => {
    assert.deepEqual(parseType('numeric(10,2)'), { cls: 'decimal', base: 'numeric', precision: 10, scale: 2 });
    assert.deepEqual(parseType('numeric'), { cls: 'decimal', base: 'numeric', precision: undefined, scale: undefined });
    assert.deepEqual(parseType('numeric(7)'), { cls: 'decimal', base: 'numeric', precision: 7, scale: 0 });
    assert.equal(parseType('bigint').width, 8);
    assert.equal(parseType('smallint').width, 2);
    assert.equal(parseType('real').width, 4);
    assert.equal(parseType('timestamp(3) with time zone').cls, 'timestamptz');
    assert.equal(parseType('timestamp(3) with time zone').precision, 3);
    assert.equal(parseType('timestamp without time zone').cls, 'timestamp');
    assert.equal(parseType('time with time zone').base, 'time with time zone');
    assert.deepEqual(parseType('character varying(20)'), { cls: 'text', base: 'character varying', precision: 20 });
    assert.equal(parseType('character(3)').padded, true);
    assert.equal(parseType('jsonb').binaryJson, true);
  });
  it('treats arrays by their element and unknown types (domains, enums) as text', () => {
    const a = parseType('numeric(5,1)[]');
    assert.equal(a.cls, 'array');
    assert.equal(a.element?.cls, 'decimal');
    assert.equal(a.element?.scale, 1);
    assert.equal(parseType('integer[][]').element?.cls, 'int');
    assert.equal(parseType('public.mood').cls, 'text');
    assert.equal(parseType('"My Type"').cls, 'text');
    assert.equal(parseType('inet').cls, 'text');
  });
});

describe('decode', () => {
  it('decodes integers as bigint, exactly at the int8 limits', () => {
    assert.deepEqual(decode('bigint', '9223372036854775807'), { kind: 'int', value: 9223372036854775807n });
    assert.deepEqual(decode('bigint', '-9223372036854775808'), { kind: 'int', value: -9223372036854775808n });
    assert.deepEqual(decode('integer', '0'), { kind: 'int', value: 0n });
    assert.throws(() => decode('integer', '1.5'), CodecError);
    assert.throws(() => decode('integer', ''), CodecError);
  });
  it('keeps numerics exact and flags NaN and infinities', () => {
    assert.deepEqual(decode('numeric', '12345678901234567890.123456789'), {
      kind: 'decimal', value: '12345678901234567890.123456789', special: null,
    });
    assert.deepEqual(decode('numeric(10,2)', '1.50'), { kind: 'decimal', value: '1.5', special: null });
    assert.deepEqual(decode('numeric', 'NaN'), { kind: 'decimal', value: 'NaN', special: 'NaN' });
    assert.deepEqual(decode('numeric', '-Infinity'), { kind: 'decimal', value: '-Infinity', special: '-Infinity' });
    assert.throws(() => decode('numeric', '1e5'), CodecError);
    assert.throws(() => decode('numeric', 'abc'), CodecError);
  });
  it('decodes floats with their specials flagged', () => {
    const f = decode('double precision', '0.1');
    assert.equal(f.kind === 'float' && f.value, 0.1);
    const n = decode('double precision', 'NaN');
    assert.equal(n.kind === 'float' && n.special, 'NaN');
    const i = decode('real', '-Infinity');
    assert.equal(i.kind === 'float' && i.special, '-Infinity');
    const r = decode('real', '0.1');
    assert.equal(r.kind === 'float' && r.value, Math.fround(0.1));
    assert.throws(() => decode('real', '0x10'), CodecError);
  });
  it('decodes booleans, bytea hex and uuids', () => {
    assert.deepEqual(decode('boolean', 't'), { kind: 'bool', value: true });
    assert.deepEqual(decode('boolean', 'f'), { kind: 'bool', value: false });
    assert.throws(() => decode('boolean', 'maybe'), CodecError);
    const b = decode('bytea', '\\x00ff10');
    assert.ok(b.kind === 'bytes' && b.value.equals(Buffer.from([0, 255, 16])));
    const e = decode('bytea', '\\x');
    assert.ok(e.kind === 'bytes' && e.value.length === 0);
    assert.throws(() => decode('bytea', '\\001'), /hex format/);
    assert.throws(() => decode('bytea', '\\x0'), CodecError);
    assert.deepEqual(decode('uuid', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'), { kind: 'uuid', value: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11' });
  });
  it('decodes timestamptz to epoch microseconds and a UTC ISO text', () => {
    const v = decode('timestamp with time zone', '2026-12-04 20:26:00.123456+00');
    assert.equal(v.kind, 'timestamptz');
    if (v.kind !== 'timestamptz') return;
    assert.equal(v.micros, BigInt(Date.UTC(2026, 11, 4, 20, 26, 0)) * 1000n + 123456n);
    assert.equal(v.iso, '2026-12-04T20:26:00.123456Z');
    assert.equal(v.special, null);
    const o = decode('timestamp with time zone', '2026-01-01 01:30:00+05:30');
    assert.equal(o.kind === 'timestamptz' && o.iso, '2025-12-31T20:00:00.000000Z');
    const pre = decode('timestamp with time zone', '1969-12-31 23:59:59.999999+00');
    assert.equal(pre.kind === 'timestamptz' && pre.micros, -1n);
    const inf = decode('timestamp with time zone', 'infinity');
    assert.equal(inf.kind === 'timestamptz' && inf.special, 'infinity');
    const bc = decode('timestamp with time zone', '0044-03-15 12:00:00+00 BC');
    assert.equal(bc.kind === 'timestamptz' && bc.iso, '-0043-03-15T12:00:00.000000Z');
    const big = decode('timestamp with time zone', '10000-01-01 00:00:00+00');
    assert.equal(big.kind === 'timestamptz' && big.iso, '+10000-01-01T00:00:00.000000Z');
  });
  it('decodes the pinned session\'s UTC text the same as any other spelling of the instant', () => {
    for (const t of ['2026-12-04 20:26:00.5', '1200-05-06 01:02:03.000004', '9999-12-31 23:59:59.999999', '2024-02-29 00:00:00', '1685-01-01 00:00:00.000001']) {
      assert.deepEqual(decode('timestamp with time zone', `${t}+00`), decode('timestamp with time zone', `${t}+00:00`), t);
    }
    assert.throws(() => decode('timestamp with time zone', '2026-02-30 00:00:00+00'), CodecError);
    assert.throws(() => decode('timestamp with time zone', '2026-13-01 00:00:00+00'), CodecError);
    assert.throws(() => decode('timestamp with time zone', '2026-01-01 24:00:00+00'), CodecError);
  });
  it('splits epoch microseconds exactly at day edges and on both sides of what a double holds', () => {
    const cases = [0n, -1n, 86_399_999_999n, 86_400_000_000n, -86_400_000_000n, -86_400_000_001n,
      9_007_199_254_740_991n, -9_007_199_254_740_991n, 9_007_199_254_740_992n, -9_007_199_254_740_992n];
    let x = 12345;
    for (let i = 0; i < 2000; i++) {
      x = (x * 1103515245 + 12345) % 2 ** 31;
      cases.push(BigInt(Math.floor((x / 2 ** 31 * 2 - 1) * 2 ** 53)) + BigInt(i % 1000));
    }
    for (const micros of cases) {
      const ms = micros / 1000n - (micros % 1000n < 0n ? 1n : 0n);
      const d = new Date(Number(ms));
      const text = `${d.toISOString().slice(0, 23).replace('T', ' ')}${String(micros - ms * 1000n).padStart(3, '0')}+00`;
      const v = decode('timestamp with time zone', text);
      assert.equal(v.kind === 'timestamptz' && v.micros, micros, text);
      assert.equal(v.kind === 'timestamptz' && v.iso, `${text.slice(0, 10)}T${text.slice(11, 26)}Z`, text);
    }
  });
  it('decodes timestamp, date and time into parts', () => {
    const ts = decode('timestamp without time zone', '2000-02-29 23:59:59.5');
    assert.ok(ts.kind === 'timestamp');
    if (ts.kind !== 'timestamp') return;
    assert.deepEqual(ts.parts, { year: 2000, month: 2, day: 29, hour: 23, minute: 59, second: 59, micro: 500000 });
    assert.equal(ts.iso, '2000-02-29T23:59:59.500000');
    assert.throws(() => decode('timestamp without time zone', '2001-02-29 00:00:00'), /valid date/);
    assert.throws(() => decode('timestamp without time zone', '2001-01-01 00:00:00+00'), /trailing/);
    const d = decode('date', '1999-12-31');
    assert.ok(d.kind === 'date' && d.iso === '1999-12-31' && d.parts.day === 31);
    const dinf = decode('date', '-infinity');
    assert.ok(dinf.kind === 'date' && dinf.special === '-infinity');
    const t = decode('time without time zone', '24:00:00');
    assert.ok(t.kind === 'time' && t.iso === '24:00:00.000000');
    assert.throws(() => decode('time without time zone', '24:00:01'), CodecError);
    const tz = decode('time with time zone', '10:00:00.25-05');
    assert.ok(tz.kind === 'time' && tz.iso === '10:00:00.250000-05:00' && tz.offset === '-05:00');
  });
  it('decodes intervals to months, days and microseconds with an ISO 8601 text', () => {
    const v = decode('interval', '1 year 2 mons -3 days +04:05:06.789');
    assert.deepEqual(v, { kind: 'interval', months: 14, days: -3, micros: 14706789000n, iso: 'P1Y2M-3DT4H5M6.789S' });
    const z = decode('interval', '00:00:00');
    assert.ok(z.kind === 'interval' && z.iso === 'PT0S');
    const n = decode('interval', '-02:03:00');
    assert.ok(n.kind === 'interval' && n.iso === 'PT-2H-3M');
    const h = decode('interval', '100:00:00.000001');
    assert.ok(h.kind === 'interval' && h.iso === 'PT100H0.000001S');
    assert.throws(() => decode('interval', 'soon'), CodecError);
  });
  it('decodes json and jsonb with the canonical text and a parsed value', () => {
    const v = decode('json', '{"b": [1, 2.50, {"x": null}], "a": "\\u00e9"}');
    assert.ok(v.kind === 'json');
    if (v.kind !== 'json') return;
    assert.equal(v.text, '{"a":"é","b":[1,2.5,{"x":null}]}');
    assert.deepEqual(v.value, { a: 'é', b: [1, 2.5, { x: null }] });
    assert.throws(() => decode('jsonb', '{"a":}'), CodecError);
  });
  it('decodes arrays: nesting, NULL elements, quotes and escapes', () => {
    const v = decode('text[]', '{{"a b","c\\"d",NULL},{"NULL",e\\,f,"\\\\"}}');
    assert.ok(v.kind === 'array');
    if (v.kind !== 'array') return;
    assert.deepEqual(v.items, [['a b', 'c"d', null], ['NULL', 'e,f', '\\']]);
    assert.deepEqual(v.value, [['a b', 'c"d', null], ['NULL', 'e,f', '\\']]);
    const n = decode('bigint[]', '{9223372036854775807,NULL,-1}');
    assert.ok(n.kind === 'array' && n.json === '[9223372036854775807,null,-1]');
    const b = decode('boolean[]', '{t,f}');
    assert.ok(b.kind === 'array' && b.json === '[true,false]');
    const e = decode('integer[]', '{}');
    assert.ok(e.kind === 'array' && e.json === '[]');
    const bounds = decode('integer[]', '[0:1]={5,6}');
    assert.ok(bounds.kind === 'array' && bounds.json === '[5,6]');
    const ts = decode('timestamp with time zone[]', '{"2020-01-01 00:00:00+00"}');
    assert.ok(ts.kind === 'array' && ts.json === '["2020-01-01T00:00:00.000000Z"]');
    const num = decode('numeric[]', '{1.50,NaN}');
    assert.ok(num.kind === 'array' && num.json === '[1.5,"NaN"]');
    const js = decode('jsonb[]', '{"{\\"a\\": 1}"}');
    assert.ok(js.kind === 'array' && js.json === '[{"a":1}]');
    assert.throws(() => decode('integer[]', '{1,2'), CodecError);
    assert.throws(() => decode('integer[]', '{1,}'), CodecError);
  });
  it('leaves text, enums and domains as the text itself', () => {
    assert.deepEqual(decode('text', ''), { kind: 'text', value: '' });
    assert.deepEqual(decode('public.mood', 'happy'), { kind: 'text', value: 'happy' });
    assert.deepEqual(decode('text', '\\N\t\n'), { kind: 'text', value: '\\N\t\n' });
  });
});

describe('canonicalText', () => {
  it('is what both the source text and a target read-back become', () => {
    const cases: [string, string, string][] = [
      ['integer', '42', '42'],
      ['bigint', '-0', '0'],
      ['numeric(10,2)', '1.50', '1.5'],
      ['numeric', '0001.000', '1'],
      ['numeric', '-0.000', '0'],
      ['numeric', '.5', '0.5'],
      ['numeric', '12345678901234567890.123456789000000000000', '12345678901234567890.123456789'],
      ['numeric', 'NaN', 'NaN'],
      ['double precision', '1e+20', '100000000000000000000'],
      ['double precision', '0.30000000000000004', '0.30000000000000004'],
      ['double precision', '-0', '-0'],
      ['double precision', 'Infinity', 'Infinity'],
      ['real', '0.1', '0.1'],
      ['real', '0.10000000149011612', '0.1'],
      ['real', '3.4028235e+38', '3.4028235e+38'],
      ['boolean', 'true', 't'],
      ['boolean', '0', 'f'],
      ['bytea', '\\xDEADbeef', '\\xdeadbeef'],
      ['uuid', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'],
      ['timestamp with time zone', '2026-12-04 20:26:00+00', '2026-12-04T20:26:00.000000Z'],
      ['timestamp with time zone', '2026-12-04T20:26:00.000001Z', '2026-12-04T20:26:00.000001Z'],
      ['timestamp with time zone', '2026-12-04 20:26:00.5', '2026-12-04T20:26:00.500000Z'],
      ['timestamp with time zone', '-infinity', '-infinity'],
      ['timestamp without time zone', '2026-12-04 20:26:00.5', '2026-12-04T20:26:00.500000'],
      ['timestamp without time zone', '2026-12-04T20:26:00.500000', '2026-12-04T20:26:00.500000'],
      ['date', '2026-12-04', '2026-12-04'],
      ['time without time zone', '01:02:03', '01:02:03.000000'],
      ['interval', '3 days', 'P3D'],
      ['interval', 'P3D', 'P3D'],
      ['interval', '-1 years -2 mons', 'P-1Y-2M'],
      ['interval', 'P-1Y-2M', 'P-1Y-2M'],
      ['interval', 'PT-2H-3M-4.5S', 'PT-2H-3M-4.5S'],
      ['json', '{ "b":1, "a" : [ true ,null] }', '{"a":[true,null],"b":1}'],
      ['jsonb', '{"a": 1, "a": 2}', '{"a":2}'],
      ['jsonb', '{"n": 12345678901234567890123}', '{"n":12345678901234567890123}'],
      ['jsonb', '[1E2, 1.0e-2, -0]', '[100,0.01,0]'],
      ['jsonb', '"\\ud83d\\ude00 \\/"', '"😀 /"'],
      ['character(5)', 'ab   ', 'ab'],
      ['character varying(5)', 'ab   ', 'ab   '],
      ['text', ' x ', ' x '],
      ['integer[]', '{1,2,NULL}', '[1,2,null]'],
      ['integer[]', '[1, 2, null]', '[1,2,null]'],
      ['text[]', '{"a,b",c}', '["a,b","c"]'],
      ['text[]', '["a,b", "c"]', '["a,b","c"]'],
    ];
    for (const [type, text, want] of cases) assert.equal(canonicalText(type, text), want, `${type} ${JSON.stringify(text)}`);
    assert.equal(canonicalText('text', null), null);
  });
  it('keeps arbitrary text unchanged, however awkward', () => {
    for (const s of ['', '\\N', 'a\tb\nc\r', "it's \"q\"", '😀 ü', 'x'.repeat(1 << 20)]) assert.equal(canonicalText('text', s), s);
  });
});

describe('helpers', () => {
  it('round-trips civil dates over a wide range of days', () => {
    for (let d = -800_000; d <= 3_000_000; d += 997) {
      const p = civilFromDays(d);
      assert.equal(daysFromCivil(p.year, p.month, p.day), d);
    }
    assert.equal(daysFromCivil(1970, 1, 1), 0);
    assert.equal(daysFromCivil(2000, 3, 1), 11017);
  });
  it('formats epoch microseconds, including before 1970', () => {
    assert.equal(isoFromMicros(0n), '1970-01-01T00:00:00.000000Z');
    assert.equal(isoFromMicros(-1n), '1969-12-31T23:59:59.999999Z');
    assert.equal(isoFromMicros(951782400000000n), '2000-02-29T00:00:00.000000Z');
  });
  it('reads intervals from both styles to the same fields', () => {
    assert.deepEqual(intervalFields('1 day -00:00:01'), intervalFields('P1DT-1S'));
    assert.equal(isoInterval(intervalFields('-1 days +02:03:00')), 'P-1DT2H3M');
  });
  it('normalizes numerics and JSON', () => {
    assert.equal(canonicalNumeric('+007.100'), '7.1');
    assert.throws(() => canonicalNumeric('.'), CodecError);
    assert.throws(() => canonicalJson('[1,2] x'), CodecError);
    assert.throws(() => canonicalJson('"abc'), CodecError);
  });
  it('parses array literals with blanks around elements', () => {
    assert.deepEqual(parseArrayLiteral('{ 1 , 2 ,NULL}'), ['1', '2', null]);
    assert.deepEqual(parseArrayLiteral('{"",null}'), ['', null]);
  });
});

describe('fast forms', () => {
  const seed = testSeed();
  const r = rng(seed);
  const pick = (chars: string, max: number): string => Array.from({ length: r.int(0, max) }, () => chars[r.int(0, chars.length - 1)]).join('');
  const general = <T>(f: () => T): T | 'error' => {
    try {
      return f();
    } catch (e) {
      if (e instanceof CodecError) return 'error';
      throw e;
    }
  };
  it(`take only integers PostgreSQL prints, unchanged (seed ${seed})`, () => {
    for (const t of ['0', '-1', '9223372036854775807', '-9223372036854775808', '42']) assert.equal(canonicalIntText(t), t);
    for (const t of ['', '-', '-0', '00', '007', '+5', ' 5', '5 ', '1.0', '1e3']) assert.equal(canonicalIntText(t), null, t);
    for (let i = 0; i < 20_000; i++) {
      const t = pick('-+0123456789 .', 6);
      const fast = canonicalIntText(t);
      if (fast !== null) assert.equal(fast, (decode('bigint', t) as { value: bigint }).value.toString(), t);
    }
  });
  it(`give canonicalNumeric of plain decimals (seed ${seed})`, () => {
    assert.equal(plainNumericCanonical('123.40'), '123.4');
    assert.equal(plainNumericCanonical('-0.00'), '0');
    assert.equal(plainNumericCanonical('007'), '7');
    assert.equal(plainNumericCanonical('.50'), '0.5');
    assert.equal(plainNumericCanonical('5.'), '5');
    for (const t of ['', '.', '-', '-.', '+1', ' 1', '1e5', 'NaN', '1.2.3', '1-']) assert.equal(plainNumericCanonical(t), null, t);
    for (let i = 0; i < 20_000; i++) {
      const t = pick('-+00123456789. e', 8);
      const fast = plainNumericCanonical(t);
      if (fast !== null) assert.equal(fast, general(() => canonicalNumeric(t)), t);
    }
  });
  it(`give decode's ISO text of timestamptz in the pinned session's form, and refuse what it normalizes (seed ${seed})`, () => {
    assert.equal(utcTimestamptzIso('2026-12-04 23:30:00.5+00'), '2026-12-04T23:30:00.500000Z');
    assert.equal(utcTimestamptzIso('2024-02-29 00:00:00+00'), '2024-02-29T00:00:00.000000Z');
    for (const t of ['2023-02-29 00:00:00+00', '2026-01-01 24:00:00+00', '2026-01-01 23:59:60+00', '2026-01-01 00:00:00.+00',
      '2026-01-01 00:00:00.1234567+00', '2026-01-01T00:00:00+00', '2026-01-01 00:00:00+01', '2026-01-01 00:00:00+00:00', '2026-13-01 00:00:00+00']) {
      assert.equal(utcTimestamptzIso(t), null, t);
    }
    const two = (n: number): string => String(n).padStart(2, '0');
    for (let i = 0; i < 20_000; i++) {
      let t = `${String(r.int(0, 9999)).padStart(4, '0')}-${two(r.int(0, 13))}-${two(r.int(0, 32))} ${two(r.int(0, 24))}:${two(r.int(0, 60))}:${two(r.int(0, 60))}`;
      const frac = r.int(-1, 7);
      if (frac >= 0) t += '.' + pick('0123456789', frac).padEnd(frac, '7');
      t += '+00';
      if (r.next() < 0.2) {
        const at = r.int(0, t.length - 1);
        t = t.slice(0, at) + pick('0123456789 :-.+T', 1) + t.slice(at + 1);
      }
      const fast = utcTimestamptzIso(t);
      if (fast === null) continue;
      // The general path (an explicit '+00:00' offset does not take the fast form) is the reference.
      const ref = general(() => decode('timestamp with time zone', t.replace(/\+00$/, '+00:00')));
      assert.equal(fast, ref === 'error' ? 'error' : (ref as { iso: string }).iso, t);
      assert.equal((decode('timestamp with time zone', t) as { iso: string }).iso, fast, t);
    }
  });
});
