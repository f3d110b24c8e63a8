// Drains the outbox into the MQTT session. P0 and live P1 go out one by one on the vehicle topic;
// P2 and any P1 backlog (after an outage) go out as compressed batches on the batch topic. A record
// leaves the store only when the PUBACK of the message carrying it arrives (DESIGN §5, issue 4).
import { setImmediate as nextLoopTurn } from 'node:timers/promises';
import { Subscription } from 'rxjs';
import type { BatchUploader } from './offload/https-offload.js';
import { damageOf, type StoredRecord } from './store/stored-record.js';
import {
  newSenderCounters,
  withDefaults,
  type OutboxCollaborators,
  type OutboxMessage,
  type OutboxParts,
  type OutboxSettings,
  type SenderCounters,
} from './outbox/outbox-parts.js';
import { RecordHolds } from './outbox/record-holds.js';
import { MessageDelivery } from './outbox/message-delivery.js';

export type { OutboxParts, OutboxSettings, Route, SenderCounters } from './outbox/outbox-parts.js';

export class OutboxSender {
  readonly counters: SenderCounters = newSenderCounters();
  private readonly parts: OutboxCollaborators;
  private readonly holds: RecordHolds;
  private readonly delivery: MessageDelivery;
  private readonly inflightIds = new Set<string>();
  /** Records the store let go of while they were in flight: forgotten when their send is over. */
  private readonly goneInFlight = new Set<string>();
  private inflightMessages = 0;
  private inflightBatches = 0;
  private flushRequested = false;
  private running = false;
  private stopped = false;
  private again = false;
  private wakeTimer: NodeJS.Timeout | null = null;
  private readonly subscriptions = new Subscription();
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly settings: OutboxSettings,
    parts: OutboxParts,
  ) {
    this.parts = withDefaults(parts, settings);
    this.holds = new RecordHolds(
      settings,
      this.counters,
      parts.clock,
      parts.log,
      this.parts.random,
      (delayMs) => this.wakeIn(delayMs),
      () => this.kick(),
    );
    this.delivery = new MessageDelivery(settings, this.parts, this.counters, this.holds, () => this.kick());
  }

  start(): void {
    this.subscriptions.add(this.parts.store.inserted.subscribe(() => this.kick()));
    // Sent, then evicted or dropped before its PUBACK: what was kept about it would stay for ever.
    this.subscriptions.add(
      this.parts.store.drops.subscribe(({ id }) => {
        // In flight: its send may still fail and mark it again; forgotten once that send is over.
        if (this.inflightIds.has(id)) this.goneInFlight.add(id);
        else this.forget(id);
      }),
    );
    this.subscriptions.add(
      this.parts.session.connected.subscribe((up) => {
        if (!up) return;
        this.holds.newConnection();
        this.kick();
      }),
    );
  }

  private forget(id: string): void {
    this.holds.forget(id);
    this.delivery.forget(id);
  }

  /** Records the sender keeps state about beyond those in flight (DUP marks, resend counts, holds): bounded by the store. */
  get trackedRecords(): number {
    return this.delivery.tracked + this.holds.tracked;
  }

  /** Records that left (delivered, dead-lettered) but that the store has not removed yet (a failing disk). */
  get unremovedRecords(): number {
    return this.delivery.unremoved.size;
  }

  stop(): void {
    this.stopped = true;
    this.subscriptions.unsubscribe();
    this.holds.stop();
    this.delivery.stop();
    if (this.wakeTimer !== null) clearTimeout(this.wakeTimer);
  }

  get inFlight(): number {
    return this.inflightIds.size;
  }

  /** Topics the broker does not authorise on this connection (PUBACK 0x87). */
  get blockedTopics(): ReadonlySet<string> {
    return this.holds.blockedTopics;
  }

  /** Records kept but not sent now: their topic is not authorised, or they exceed this broker's packet limit. */
  get parkedRecords(): number {
    return this.holds.parkedRecords;
  }

  get parkedByReason(): { notAuthorised: number; exceedsBrokerPacketSize: number } {
    return this.holds.parkedByReason;
  }

  /** Sends P2 now, whatever its age or count (the `flush` command, a drain at stop). */
  flush(): void {
    this.flushRequested = true;
    this.kick();
  }

  /** Resolves true once the store holds nothing sendable and nothing is in flight, false at the deadline. */
  async drain(timeoutMs: number): Promise<boolean> {
    const deadline = this.parts.clock.monoMs() + timeoutMs;
    this.flush();
    while ((await this.parts.store.count()) > this.holds.parkedRecords || this.inflightIds.size > 0) {
      const left = deadline - this.parts.clock.monoMs();
      if (left <= 0) return false;
      this.flushRequested = true;
      await Promise.race([
        new Promise<void>((resolve) => this.idleWaiters.push(resolve)),
        this.parts.clock.sleep(Math.min(left, 250)),
      ]);
    }
    return true;
  }

  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.fill()
      .catch((err: unknown) => this.parts.log(`outbox: ${(err as Error).message}`))
      .finally(() => {
        this.running = false;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  private async fill(): Promise<void> {
    // Timers may fire a little before the monotonic clock reaches the end of a pause: look again then.
    const pausedForMs = this.holds.pausedForMs();
    if (pausedForMs > 0) {
      this.wakeIn(pausedForMs + 1);
      return;
    }
    // Reading a bulk page and packing it each take milliseconds of this one thread: they run on
    // turns of the event loop of their own, so a live frame waits for one of them, not for both
    // twice over (unconstrained drain: P0 → PUBACK P99 18–23 → 13 ms).
    for (;;) {
      const uploader = this.parts.link.current.mode === 'offload' ? this.parts.uploader : null;
      // Uploads need no broker connection, only the receiver; they have their own concurrency.
      if (
        uploader === null
          ? !this.parts.session.isConnected || this.inflightMessages >= this.mqttInflightCap()
          : this.inflightMessages >= uploader.concurrency
      )
        break;
      const exclude = this.holds.excluding(this.inflightIds, this.delivery.unremoved.ids());
      const chosen = uploader === null ? await this.nextMessage(exclude) : await this.nextUpload(exclude);
      if (chosen === null) break;
      const next = await this.withoutDamaged(chosen);
      if (next === null) continue;
      // The callbacks below keep the ids only: a batch lets go of its records once packed (SentRecord).
      const ids = next.records.map((r) => r.id);
      for (const id of ids) this.inflightIds.add(id);
      this.inflightMessages++;
      const isBatch = next.route === 'batch';
      if (isBatch) this.inflightBatches++;
      const bulk = next.route !== 'single';
      if (bulk) await nextLoopTurn();
      const done =
        next.route === 'single'
          ? this.delivery.sendSingle(next.records[0] as StoredRecord)
          : isBatch
            ? this.delivery.sendBatch(next.records)
            : this.delivery.sendUpload(next.records, uploader as BatchUploader);
      void done
        .catch((err: unknown) => this.holds.unexpected(err, ids))
        .finally(() => {
          this.inflightMessages--;
          if (isBatch) this.inflightBatches--;
          for (const id of ids) {
            this.inflightIds.delete(id);
            if (this.goneInFlight.delete(id)) this.forget(id);
          }
          for (const wake of this.idleWaiters.splice(0)) wake();
          // On the next turn of the event loop: a publish that fails at once must not spin in microtasks.
          setImmediate(() => this.kick());
        });
      if (bulk) {
        await nextLoopTurn();
        // Stopped meanwhile (shutdown): the message chosen went out, no other starts.
        if (this.stopped) return;
      }
    }
    this.flushRequested = false;
  }

  /** The message less any damaged rows (set aside); null when nothing is left of it. */
  private async withoutDamaged(message: OutboxMessage): Promise<OutboxMessage | null> {
    const damaged = message.records.flatMap((stored) => {
      const damage = damageOf(stored);
      return damage === null ? [] : [{ stored, damage }];
    });
    if (damaged.length === 0) return message;
    await this.delivery.setAsideDamaged(damaged);
    const setAside = new Set(damaged.map((d) => d.stored));
    const records = message.records.filter((r) => !setAside.has(r));
    return records.length === 0 ? null : { ...message, records };
  }

  /**
   * Messages of ours in flight at most: our setting, within the server's Receive Maximum less one
   * slot for heartbeats, time requests and replies (the session queues anything beyond it).
   */
  private mqttInflightCap(): number {
    const serverMax = this.parts.session.sendQuota.limit;
    return Math.min(this.settings.inflight, serverMax > 1 ? serverMax - 1 : 1);
  }

  /**
   * The next message to send: P0 singly, P1 singly unless backlogged, P2 as batches when due. While
   * `batchInflight` batches are out, or while bulk is held back, only P0 goes (a drain never
   * delays an event; a live P1 waits for the pacer as a batch would, a fraction of a second).
   */
  private async nextMessage(exclude: ReadonlySet<string>): Promise<OutboxMessage | null> {
    const s = this.settings;
    const link = this.parts.link.current;
    if (link.mode === 'store') return null;
    const batchMax = link.batchMaxRecords;
    const batchSlot = this.inflightBatches < s.batchInflight;
    const [event] = await this.parts.store.pending(1, exclude, 0);
    if (event !== undefined) {
      const route = this.holds.routeFor('single');
      if (route === 'single' || (route === 'batch' && batchSlot)) return { route, records: [event] };
    }
    if (!batchSlot || this.bulkHeld()) return null;
    const holdMs = this.parts.timeHoldMs();
    if (holdMs > 0) {
      this.wakeIn(holdMs);
      return null;
    }
    const p1 = await this.parts.store.pending(batchMax, exclude, 1);
    if (p1.length > 0) {
      // Offloading sends any backlog as batches; otherwise a backlog longer than batchMinRecords.
      const route = this.holds.routeFor(p1.length > (link.drainAll ? 1 : s.batchMinRecords) ? 'batch' : 'single');
      if (route !== null) return { route, records: route === 'batch' ? p1 : p1.slice(0, 1) };
    }
    // P2 waits while the link forbids bulk (cellular budget used up); a `flush` command overrides.
    if (!link.sendBulk && !this.flushRequested) return null;
    const dueAnyway = this.flushRequested || link.drainAll;
    // Fewer stored than a batch needs (the stored count includes those in flight, so it never says
    // too few wrongly): only the oldest is read, to know when it is due. Each insert wakes the sender,
    // which read and parsed up to batchMinRecords - 1 records to learn that.
    if (!dueAnyway && (await this.parts.store.count(2)) < s.batchMinRecords) {
      const [oldest] = await this.parts.store.pending(1, exclude, 2);
      if (oldest === undefined) return null;
      const dueInMs = this.dueInMs(oldest);
      if (dueInMs > 0) {
        this.wakeIn(dueInMs);
        return null;
      }
    }
    const bulk = await this.parts.store.pending(batchMax, exclude, 2);
    const oldest = bulk[0];
    if (oldest === undefined) return null;
    const dueInMs = this.dueInMs(oldest);
    if (dueAnyway || bulk.length >= s.batchMinRecords || dueInMs <= 0) {
      const route = this.holds.routeFor('batch');
      if (route !== null) return { route, records: route === 'batch' ? bulk : bulk.slice(0, 1) };
    } else {
      this.wakeIn(dueInMs);
    }
    return null;
  }

  /** Until a P2 record has waited `batchMaxAgeMs` for a batch. */
  private dueInMs(oldest: StoredRecord): number {
    return oldest.createdMs + this.settings.batchMaxAgeMs - this.parts.clock.wallMs();
  }

  /**
   * True while bulk waits: for the removal of records that left (each delivery would only add to
   * them while the disk fails), or for the pacer; the sender looks again when either allows.
   */
  private bulkHeld(): boolean {
    if (this.delivery.unremoved.size > 0) return true;
    const delayMs = this.parts.pacer?.delayMs() ?? 0;
    if (delayMs > 0) this.wakeIn(delayMs);
    return delayMs > 0;
  }

  /** Offloading over HTTPS: the oldest records of the highest priority waiting, as one large batch. */
  private async nextUpload(exclude: ReadonlySet<string>): Promise<OutboxMessage | null> {
    for (const priority of [0, 1, 2]) {
      if (priority > 0 && this.bulkHeld()) return null;
      const records = await this.parts.store.pending(this.parts.link.current.batchMaxRecords, exclude, priority);
      if (records.length > 0) return { route: 'upload', records };
    }
    return null;
  }

  /** Looks again after a pause, or once the oldest waiting P2 record is due, even if nothing else happens meanwhile. */
  private wakeIn(delayMs: number): void {
    if (this.wakeTimer !== null) clearTimeout(this.wakeTimer);
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = null;
      this.kick();
    }, delayMs);
    this.wakeTimer.unref();
  }
}
