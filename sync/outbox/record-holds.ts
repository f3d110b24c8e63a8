// Which stored records the outbox leaves alone for now, and why: a failed publish rests them until
// the retry timer, a topic the broker does not authorise parks them, a packet over this broker's
// limit keeps them for the next connection, a quota answer pauses everything. The broker's answers
// (PublishError codes) are turned into these holds here.
import type { Clock } from '../../core/clock.js';
import { rateLimited } from '../../core/log.js';
import { PublishError } from '../session/mqtt-session.js';
import type { RecordRef } from '../store/stored-record.js';
import type { OutboxSettings, Route, SenderCounters } from './outbox-parts.js';

export class RecordHolds {
  /**
   * Topics the broker said we may not publish to (PUBACK 0x87) on this connection; their records
   * are parked. A new connection tries each once more: a fixed policy is picked up then.
   */
  readonly blockedTopics = new Set<string>();
  /** Records whose publish failed: left alone until the retry timer. */
  private readonly resting = new Set<string>();
  /** Records whose topic is not authorised: kept in the store, not sent again on this connection. */
  private readonly parked = new Set<string>();
  /** Records too large for this broker's Maximum Packet Size: kept, tried again after the next CONNACK. */
  private readonly oversize = new Set<string>();
  private oversizeLogged = false;
  /** PUBACK timeouts in a row, by record: past `resends` the record rests. */
  private readonly unanswered = new Map<string, number>();
  private pausedUntil = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private readonly failureLog: (msg: string) => void;

  constructor(
    private readonly settings: OutboxSettings,
    private readonly counters: SenderCounters,
    private readonly clock: Clock,
    private readonly log: (msg: string) => void,
    private readonly random: () => number,
    /** Look again in this long (a pause ends). */
    private readonly wakeIn: (delayMs: number) => void,
    /** Look again now (resting records may go). */
    private readonly retry: () => void,
  ) {
    this.failureLog = rateLimited(log, 60_000);
  }

  /** A new CONNACK may allow larger packets, or come after a policy fix: try those records once more. */
  newConnection(): void {
    this.oversize.clear();
    this.oversizeLogged = false;
    this.blockedTopics.clear();
    this.parked.clear();
  }

  stop(): void {
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
  }

  /** Every record not to pick now: those held, and the ids given (in flight, waiting for removal). */
  excluding(...also: Iterable<string>[]): Set<string> {
    const ids = new Set([...this.resting, ...this.parked, ...this.oversize]);
    for (const more of also) for (const id of more) ids.add(id);
    return ids;
  }

  /** How long publishing stays paused (PUBACK 0x97); 0 when it is not. */
  pausedForMs(): number {
    return Math.max(0, this.pausedUntil - this.clock.monoMs());
  }

  /** The route a message takes: the preferred one unless its topic is blocked, then the other, or none. */
  routeFor(preferred: Route): Route | null {
    const topic = (r: Route): string => (r === 'single' ? this.settings.vehicleTopic : this.settings.batchTopic);
    if (!this.blockedTopics.has(topic(preferred))) return preferred;
    const other: Route = preferred === 'single' ? 'batch' : 'single';
    return this.blockedTopics.has(topic(other)) ? null : other;
  }

  get parkedRecords(): number {
    return this.parked.size + this.oversize.size;
  }

  get parkedByReason(): { notAuthorised: number; exceedsBrokerPacketSize: number } {
    return { notAuthorised: this.parked.size, exceedsBrokerPacketSize: this.oversize.size };
  }

  /** Kept for a connection whose broker takes larger packets; true the first time on this connection (log it). */
  keepOversize(id: string): boolean {
    this.oversize.add(id);
    const first = !this.oversizeLogged;
    this.oversizeLogged = true;
    return first;
  }

  /** A record the store let go of (evicted, dropped): nothing is kept about it any more. */
  forget(id: string): void {
    this.resting.delete(id);
    this.parked.delete(id);
    this.oversize.delete(id);
    this.unanswered.delete(id);
  }

  /** Records something is kept about (resend counts and holds). */
  get tracked(): number {
    return this.resting.size + this.parked.size + this.oversize.size + this.unanswered.size;
  }

  /** Delivered: nothing is held against these records any more. */
  delivered(records: readonly RecordRef[]): void {
    for (const r of records) this.unanswered.delete(r.id);
  }

  /** The broker's answer to a publish that failed, turned into a hold. Anything but a PublishError is rethrown. */
  failed(err: unknown, records: readonly RecordRef[], topic: string): void {
    if (!(err instanceof PublishError)) throw err;
    this.counters.failed++;
    const ids = records.map((r) => r.id);
    const what = ids.length === 1 ? `record ${ids[0]}` : `${ids.length} records`;
    if (err.code === 'PUBACK_ERROR' && err.reasonCode === 0x87) {
      this.counters.notAuthorised++;
      if (!this.blockedTopics.has(topic))
        this.log(
          `outbox: SECURITY: the broker does not authorise publishing to ${topic} (PUBACK 0x87); no more attempts on it until the next connection, its records stay stored`,
        );
      this.blockedTopics.add(topic);
      for (const id of ids) this.parked.add(id);
      return;
    }
    if (err.code === 'PUBACK_ERROR' && err.reasonCode === 0x97) {
      this.counters.quotaPauses++;
      const pauseMs = this.settings.quotaBackoffMs * (1 + this.random() / 2);
      this.pausedUntil = this.clock.monoMs() + pauseMs;
      this.log(
        `outbox: the broker's quota is exceeded (PUBACK 0x97); publishing pauses for ${(pauseMs / 1000).toFixed(1)} s`,
      );
      this.wakeIn(pauseMs);
      return;
    }
    // A lost connection: sent again (with DUP) as soon as the session is back.
    if (err.code === 'CONNECTION_LOST' || err.code === 'NOT_CONNECTED') return;
    if (err.code === 'PUBACK_TIMEOUT') {
      // The session closed the connection: the next one carries the record again, up to `resends` times.
      const timeouts = Math.max(
        ...records.map((r) => {
          const n = (this.unanswered.get(r.id) ?? 0) + 1;
          this.unanswered.set(r.id, n);
          return n;
        }),
      );
      if (timeouts <= this.settings.resends) return;
      for (const id of ids) this.unanswered.delete(id);
      this.log(
        `outbox: ${what} not acknowledged after ${this.settings.resends} resends, each on a new connection (${err.message}); kept for the next cycle`,
      );
      this.rest(ids);
      return;
    }
    const reason = err.reasonCode !== null ? ` (reason 0x${err.reasonCode.toString(16)})` : '';
    this.log(`outbox: ${what} not acknowledged${reason}: ${err.message}; kept for the next cycle`);
    this.rest(ids);
  }

  /**
   * A failure that is not the broker's answer (the store, the dead-letter file, packing): the records
   * stay stored and rest until the retry timer, so a fault that repeats cannot loop hot.
   */
  unexpected(err: unknown, ids: readonly string[]): void {
    this.counters.failed++;
    this.failureLog(
      `outbox: ${ids.length} record(s) not sent: ${(err as Error).message ?? String(err)}; kept for the next cycle`,
    );
    this.rest(ids);
  }

  /** Leaves records alone until the retry timer, so a failure that repeats cannot loop hot. */
  rest(ids: readonly string[]): void {
    for (const id of ids) this.resting.add(id);
    if (this.retryTimer !== null) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.resting.clear();
      this.retry();
    }, this.settings.retryDelayMs);
  }
}
