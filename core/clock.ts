import { setTimeout as sleep } from 'node:timers/promises';

/** Time as the gateway sees it; tests substitute their own (STYLE §3). */
export interface Clock {
  /** Milliseconds on the monotonic clock (CLOCK_MONOTONIC: since boot on Linux). */
  monoMs(): number;
  /** Milliseconds since the Unix epoch, as the (possibly wrong) system clock says. */
  wallMs(): number;
  sleep(ms: number): Promise<void>;
}

// performance.now() is cheap and monotonic; anchoring it to hrtime once puts it on the boot clock.
const monoOffset = Number(process.hrtime.bigint() / 1000n) / 1000 - performance.now();

export const systemClock: Clock = {
  monoMs: () => performance.now() + monoOffset,
  wallMs: () => Date.now(),
  sleep: (ms) => sleep(ms).then(() => undefined),
};
