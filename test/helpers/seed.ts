/**
 * Reproducible randomness for tests that pick random moments: the seed comes
 * from IBEX_TEST_SEED (or is drawn once per process), every failure names it,
 * and `IBEX_TEST_SEED=<seed>` replays the same choices.
 */

/** The seed of this test process: IBEX_TEST_SEED, else a random one. */
export function testSeed(): number {
  const given = process.env.IBEX_TEST_SEED;
  if (given !== undefined && given !== '') {
    const n = Number(given);
    if (!Number.isInteger(n) || n < 0) throw new Error(`IBEX_TEST_SEED="${given}" is not a non-negative integer`);
    return n >>> 0;
  }
  return Math.floor(Math.random() * 2 ** 32) >>> 0;
}

/** A small deterministic generator (mulberry32). */
export interface Rng {
  readonly seed: number;
  /** A number in [0, 1). */
  next(): number;
  /** An integer in [min, max]. */
  int(min: number, max: number): number;
}

/** A generator seeded with `seed`. */
export function rng(seed: number): Rng {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { seed, next, int: (min, max) => min + Math.floor(next() * (max - min + 1)) };
}

/**
 * Run `fn`; if it throws, add the seed (and `context()`, e.g. a daemon log
 * tail) to the error's message, so the failure can be replayed.
 */
export async function withSeed<T>(seed: number, fn: () => Promise<T>, context?: () => string): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const extra = `\n  reproduce with IBEX_TEST_SEED=${seed}${context ? `\n${context()}` : ''}`;
    if (err instanceof Error) {
      err.message += extra;
      throw err;
    }
    throw new Error(`${String(err)}${extra}`);
  }
}
