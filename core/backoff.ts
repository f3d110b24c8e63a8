// Exponential backoff with jitter (DESIGN §5), as a pure function: each caller runs its own timer.

export interface BackoffSettings {
  /** First delay; doubles per failure up to capMs. */
  baseMs: number;
  capMs: number;
  /** ± share of each delay drawn at random, so a fleet does not retry in step. */
  jitter: number;
}

/** The delay after the `failures`-th failure in a row (1 = the first); `random` returns [0, 1). */
export function backoffDelayMs(failures: number, s: BackoffSettings, random: () => number): number {
  const nominal = Math.min(s.capMs, s.baseMs * 2 ** (Math.max(1, failures) - 1));
  return Math.min(s.capMs, nominal * (1 + s.jitter * (2 * random() - 1)));
}
