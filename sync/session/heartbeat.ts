// Split-brain detection (FMEA "network partition", DESIGN §5): a QoS 1 heartbeat whose PUBACK must
// arrive within the timeout. A socket that looks alive but carries nothing is closed (by the session,
// as for any PUBLISH whose PUBACK does not come), so it reconnects instead of waiting for TCP or the
// 5-minute keep-alive to notice. Any PUBACK proves the same (issue 15): a heartbeat goes out only
// when nothing was acknowledged for a whole interval, and is due an interval after the last PUBACK,
// so a partition is noticed no later than with a beat every interval. Nor does one go out while a
// publish is waiting for a PUBACK due before the beat's would be (a record racing the beat): that
// PUBACK, or the connection closed for want of it, answers the same question as soon.
import type { Subscription } from 'rxjs';
import type { MqttSession } from './mqtt-session.js';
import type { Clock } from '../../core/clock.js';

export interface HeartbeatCounters {
  sent: number;
  /** Beats not sent because another PUBACK within the interval had shown the connection alive. */
  skipped: number;
  acked: number;
  missed: number;
  /** How long the last missed heartbeat took to close the connection, from its publish. */
  lastDetectionMs: number | null;
}

const EMPTY = new Uint8Array(0);

export class Heartbeat {
  readonly counters: HeartbeatCounters = { sent: 0, skipped: 0, acked: 0, missed: 0, lastDetectionMs: null };
  private timer: NodeJS.Timeout | null = null;
  private pubacks: Subscription | null = null;
  /** When the broker last acknowledged anything (monotonic ms); null before the first PUBACK. */
  private lastPubackMs: number | null = null;

  constructor(
    private readonly session: MqttSession,
    private readonly topic: string,
    private intervalMs: number,
    private readonly timeoutMs: number,
    private readonly clock: Clock,
  ) {}

  start(): void {
    this.pubacks ??= this.session.pubacks.subscribe(() => {
      this.lastPubackMs = this.clock.monoMs();
    });
    this.schedule(this.intervalMs);
  }

  stop(): void {
    this.pubacks?.unsubscribe();
    this.pubacks = null;
    this.cancel();
  }

  private cancel(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  get interval(): number {
    return this.intervalMs;
  }

  /** Changes the interval (the `set_interval` command); takes effect from the next beat. */
  setInterval(ms: number): void {
    this.intervalMs = ms;
    this.cancel();
    this.schedule(this.intervalMs);
  }

  private schedule(delayMs: number): void {
    this.timer = setTimeout(() => {
      const quietMs = this.lastPubackMs === null ? Infinity : this.clock.monoMs() - this.lastPubackMs;
      // A timer may fire a hair before the interval is over by the clock: that is not "recently".
      const slackMs = Math.min(1000, this.intervalMs / 10);
      if (quietMs < this.intervalMs - slackMs) {
        this.counters.skipped++;
        this.schedule(this.intervalMs - quietMs);
        return;
      }
      if (this.session.awaitsPubackWithin(this.timeoutMs)) {
        this.schedule(slackMs);
        return;
      }
      void this.beat().finally(() => {
        if (this.timer !== null) this.schedule(this.intervalMs);
      });
    }, delayMs);
  }

  private async beat(): Promise<void> {
    if (!this.session.isConnected) return;
    const sentAt = this.clock.monoMs();
    this.counters.sent++;
    try {
      await this.session.publish(
        this.topic,
        // Empty: its PUBACK is the point. No receiver read the JSON status it carried (bench -- day:
        // 133 B a beat with TLS and PUBACK, 62 B empty); the `status` command and the metrics give it.
        EMPTY,
        { userProperties: {} },
        { timeoutMs: this.timeoutMs },
      );
      this.counters.acked++;
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'PUBACK_TIMEOUT') return;
      // The session has closed the connection already (PUBACK_TIMEOUT always does).
      this.counters.missed++;
      this.counters.lastDetectionMs = this.clock.monoMs() - sentAt;
    }
  }
}
