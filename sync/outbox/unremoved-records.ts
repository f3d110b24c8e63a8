// Records that left for good (delivered, or moved to the dead-letter file) but that the store failed
// to remove: a failing disk. Sending them again would only cost bytes and make duplicates, so they
// are left alone and their removal retried with backoff. Issue 14 found the outbox resending such
// records as fast as the broker acknowledged them, for as long as the disk failed.
import { backoffDelayMs } from '../../core/backoff.js';
import { rateLimited } from '../../core/log.js';
import type { RecordRef } from '../store/stored-record.js';
import type { OutboxStore } from './outbox-parts.js';

/** Retries of a failed removal back off from the outbox's retry delay up to this. */
const RETRY_CAP_MS = 60_000;
const RETRY_JITTER = 0.2;

export type Departure = 'delivered' | 'dead-lettered';

export class UnremovedRecords {
  private readonly waiting = new Map<string, RecordRef>();
  private failures = 0;
  private timer: NodeJS.Timeout | null = null;
  /** When the running timer fires (performance.now()). */
  private retryAt = 0;
  private stopped = false;
  private readonly retryLog: (msg: string) => void;

  constructor(
    private readonly store: Pick<OutboxStore, 'remove'>,
    private readonly retryBaseMs: number,
    private readonly random: () => number,
    private readonly log: (msg: string) => void,
    /** Records were removed at a retry: bulk sending may go on. */
    private readonly removedLater: () => void,
  ) {
    this.retryLog = rateLimited(log, 60_000);
  }

  /** Removes records that have left; those the store fails to remove wait for a retry. */
  async remove(records: readonly RecordRef[], departure: Departure): Promise<void> {
    try {
      await this.store.remove(records);
    } catch (err) {
      for (const r of records) this.waiting.set(r.id, r);
      this.failures++;
      const delayMs = this.schedule();
      this.log(
        `outbox: ${records.length} ${departure} record(s) could not be removed from the store: ${(err as Error).message}; not sent again, removal retried in ${(delayMs / 1000).toFixed(1)} s`,
      );
    }
  }

  /** Ids of the records waiting: the outbox must not pick them. */
  ids(): IterableIterator<string> {
    return this.waiting.keys();
  }

  get size(): number {
    return this.waiting.size;
  }

  /** A record the store let go of by itself (evicted, dropped): nothing to retry. */
  forget(id: string): void {
    this.waiting.delete(id);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Starts the retry timer unless one runs; the time until it fires, ms. */
  private schedule(): number {
    if (this.timer !== null) return Math.max(0, this.retryAt - performance.now());
    const delayMs = backoffDelayMs(
      this.failures,
      { baseMs: this.retryBaseMs, capMs: RETRY_CAP_MS, jitter: RETRY_JITTER },
      this.random,
    );
    if (this.stopped) return delayMs;
    this.retryAt = performance.now() + delayMs;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.retry();
    }, delayMs);
    return delayMs;
  }

  private async retry(): Promise<void> {
    const records = [...this.waiting.values()];
    try {
      await this.store.remove(records);
    } catch (err) {
      this.failures++;
      const delayMs = this.schedule();
      this.retryLog(
        `outbox: ${records.length} record(s) that left still cannot be removed from the store: ${(err as Error).message}; retried in ${(delayMs / 1000).toFixed(1)} s`,
      );
      return;
    }
    this.failures = 0;
    // Records added while the removal ran wait for their own retry.
    for (const r of records) this.waiting.delete(r.id);
    if (this.waiting.size > 0) this.schedule();
    this.removedLater();
  }
}
