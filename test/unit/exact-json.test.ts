import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ExactNumber, parseExactJson, stringifyExactJson } from '../../src/db/json.js';

describe('JSON read and written back exactly', () => {
  it('keeps numbers a double cannot hold, and only those, as their text', () => {
    const v = parseExactJson<Record<string, unknown>>('{"id": 9007199254740993, "small": 42, "f": 1.5, "n": -12345678901234567890.123, "e": 1.2345678901234567e5}');
    assert.ok(v.id instanceof ExactNumber);
    assert.equal(String(v.id), '9007199254740993');
    assert.equal(v.small, 42);
    assert.equal(v.f, 1.5);
    assert.equal(String(v.n), '-12345678901234567890.123');
    assert.equal(String(v.e), '1.2345678901234567e5');
    assert.equal(stringifyExactJson(v), '{"id":9007199254740993,"small":42,"f":1.5,"n":-12345678901234567890.123,"e":1.2345678901234567e5}');
  });

  it('leaves digits inside strings, keys and escapes alone', () => {
    const text = '{"9007199254740993": "12345678901234567890", "q": "a \\"12345678901234567\\" b", "arr": [12345678901234567, "x\\\\", 0.000000000000000001]}';
    const v = parseExactJson<Record<string, unknown>>(text);
    assert.equal(v['9007199254740993'], '12345678901234567890');
    assert.equal(v.q, 'a "12345678901234567" b');
    assert.equal(stringifyExactJson(v), JSON.stringify(JSON.parse(text)).replace('12345678901234568', '12345678901234567'));
  });

  it('keeps numerics beyond the range of a double, tiny or huge', () => {
    const tiny = `0.${'0'.repeat(340)}1`;
    const huge = `1${'0'.repeat(400)}`;
    const v = parseExactJson<Record<string, unknown>>(`{"tiny": ${tiny}, "huge": ${huge}, "zero": 0.000}`);
    assert.equal(String(v.tiny), tiny);
    assert.equal(String(v.huge), huge);
    assert.equal(v.zero, 0);
    assert.equal(stringifyExactJson(v), `{"tiny":${tiny},"huge":${huge},"zero":0}`);
  });

  it('is JSON.parse for everything else', () => {
    for (const t of ['null', 'true', '"text"', '[]', '{}', '[1, -2, 3.25, 1e3, 0]', '{"a": {"b": [null, false]}}']) {
      assert.deepEqual(parseExactJson(t), JSON.parse(t), t);
      assert.equal(stringifyExactJson(parseExactJson(t)), JSON.stringify(JSON.parse(t)), t);
    }
  });
});
