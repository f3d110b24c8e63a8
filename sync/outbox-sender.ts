// Drains the store into the transport: oldest first within priority, a bounded number in flight,
// and a record leaves the store only when its PUBACK has arrived.
import { Subscription } from 'rxjs';
import { encodeTelemetry, SCHEMA_VERSION } from '../proto/telemetry-codec.js';
import type { TelemetryStore } from './telemetry-store.js';
import { PublishError, type MqttTelemetryTransport } from './mqtt-transport.js';
import type { Clock } from '../gateway/clock.js';

export interface SenderCounters {
  published: number;
  acked: number;
  failed: number;
  bytesSent: number;
}

export interface SenderOptions {
  topic: string;
  inflight: number;
  /** Wait before retrying after a failed publish. */
  retryDelayMs: number;
}

export class OutboxSender {
  readonly counters: SenderCounters = { published: 0, acked: 0, failed: 0, bytesSent: 0 };
  /** Publish → PUBACK latencies in seconds, for the metrics histogram. */
  onAck: (latencyS: number) => void = () => undefined;
  private readonly inflight = new Set<string>();
  /** Records whose publish failed: left alone until the retry timer, so errors cannot loop hot. */
  private readonly resting = new Set<string>();
  private running = false;
  private again = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private readonly subscriptions = new Subscription();
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly store: TelemetryStore,
    private readonly transport: MqttTelemetryTransport,
    private readonly options: SenderOptions,
    private readonly clock: Clock,
    private readonly log: (msg: string) => void,
  ) {}

  start(): void {
    this.subscriptions.add(this.store.inserted.subscribe(() => this.kick()));
    this.subscriptions.add(this.transport.connected.subscribe((up) => { if (up) this.kick(); }));
  }

  stop(): void {
    this.subscriptions.unsubscribe();
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
  }

  get inFlight(): number {
    return this.inflight.size;
  }

  /** Resolves true once the store is empty and nothing is in flight, false at the deadline. */
  async drain(timeoutMs: number): Promise<boolean> {
    const deadline = this.clock.monoMs() + timeoutMs;
    this.kick();
    while ((await this.store.count()) > 0 || this.inflight.size > 0) {
      const left = deadline - this.clock.monoMs();
      if (left <= 0) return false;
      await Promise.race([new Promise<void>((resolve) => this.idleWaiters.push(resolve)), this.clock.sleep(Math.min(left, 250))]);
    }
    return true;
  }

  private kick(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.fill().finally(() => {
      this.running = false;
      if (this.again) {
        this.again = false;
        this.kick();
      }
    });
  }

  private async fill(): Promise<void> {
    while (this.transport.isConnected && this.inflight.size < this.options.inflight) {
      const skip = this.resting.size === 0 ? this.inflight : new Set([...this.inflight, ...this.resting]);
      const batch = await this.store.pending(this.options.inflight - this.inflight.size, skip);
      if (batch.length === 0) break;
      for (const stored of batch) this.send(stored.id, encodeTelemetry(stored.record));
    }
  }

  private send(id: string, payload: Uint8Array): void {
    this.inflight.add(id);
    this.counters.published++;
    this.counters.bytesSent += payload.byteLength;
    const sentAt = this.clock.monoMs();
    this.transport.publish(this.options.topic, payload, { contentType: 'application/x-protobuf', userProperties: { schema_version: SCHEMA_VERSION } })
      .then(async () => {
        await this.store.remove(id);
        this.counters.acked++;
        this.onAck((this.clock.monoMs() - sentAt) / 1000);
      })
      .catch((err: unknown) => {
        this.counters.failed++;
        const code = err instanceof PublishError && err.reasonCode !== null ? ` (reason 0x${err.reasonCode.toString(16)})` : '';
        this.log(`outbox: record ${id} not acknowledged${code}: ${(err as Error).message}; kept for retry`);
        this.resting.add(id);
        this.scheduleRetry();
      })
      .finally(() => {
        this.inflight.delete(id);
        for (const wake of this.idleWaiters.splice(0)) wake();
        this.kick();
      });
  }

  private scheduleRetry(): void {
    if (this.retryTimer !== null) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.resting.clear();
      this.kick();
    }, this.options.retryDelayMs);
  }
}
