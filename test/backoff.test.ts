import t from 'tap';
import { backoffDelayMs } from '../core/backoff.js';
import { DEFAULT_RECONNECT, nextAttempt } from '../sync/session/reconnect-policy.js';

t.test('backoff doubles from the base to the cap, jittered by ± the share given (table)', async (t) => {
  const s = { baseMs: 300, capMs: 60_000, jitter: 0.2 };
  const cases: Array<[failures: number, random: number, ms: number]> = [
    [0, 0.5, 300], // no failure yet counts as the first
    [1, 0.5, 300],
    [2, 0.5, 600],
    [3, 0.5, 1200],
    [8, 0.5, 38_400],
    [9, 0.5, 60_000],
    [40, 0.5, 60_000],
    [1, 0, 240],
    [1, 0.999_999, 360],
    [9, 0, 48_000],
    [9, 0.999_999, 60_000], // never above the cap
  ];
  for (const [failures, random, ms] of cases)
    t.equal(Math.round(backoffDelayMs(failures, s, () => random)), ms, `failure ${failures}, random ${random}`);
});

t.test('a lost connection backs off 2, 4, 8, 16, 32 s, then goes offline', async (t) => {
  const lost = { kind: 'lost', detail: 'reset' } as const;
  const delays = [1, 2, 3, 4, 5, 6].map((n) => nextAttempt(lost, n, DEFAULT_RECONNECT, () => 0.5));
  t.same(
    delays.map((d) => [d.state, Math.round(d.delayMs)]),
    [
      ['backoff', 2000],
      ['backoff', 4000],
      ['backoff', 8000],
      ['backoff', 16_000],
      ['backoff', 32_000],
      ['offline', 300_000],
    ],
  );
});
