// Split-brain detection (FMEA "network partition", DESIGN §5): a QoS 1 heartbeat whose PUBACK must
// arrive within the timeout. A socket that looks alive but carries nothing is closed (by the session,
// as for any PUBLISH whose PUBACK does not come), so it reconnects instead of waiting for TCP or the
// 5-minute keep-alive to notice.
import type { MqttSession } from './mqtt-session.js';
import type { Clock } from '../../core/clock.js';

export interface HeartbeatCounters {
  sent: number;
  acked: number;
  missed: number;
  /** How long the last missed heartbeat took to close the connection, from its publish. */
  lastDetectionMs: number | null;
}

export class Heartbeat {
  readonly counters: HeartbeatCounters = { sent: 0, acked: 0, missed: 0, lastDetectionMs: null };
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly session: MqttSession,
    private readonly topic: string,
    private intervalMs: number,
    private readonly timeoutMs: number,
    private readonly status: () => Record<string, unknown>,
    private readonly clock: Clock,
  ) {}

  start(): void {
    this.schedule();
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  get interval(): number {
    return this.intervalMs;
  }

  /** Changes the interval (the `set_interval` command); takes effect from the next beat. */
  setInterval(ms: number): void {
    this.intervalMs = ms;
    this.stop();
    this.schedule();
  }

  private schedule(): void {
    this.timer = setTimeout(
      () =>
        void this.beat().finally(() => {
          if (this.timer !== null) this.schedule();
        }),
      this.intervalMs,
    );
  }

  private async beat(): Promise<void> {
    if (!this.session.isConnected) return;
    const sentAt = this.clock.monoMs();
    this.counters.sent++;
    try {
      const payload = Buffer.from(JSON.stringify({ time_ms: this.clock.wallMs(), ...this.status() }));
      await this.session.publish(
        this.topic,
        payload,
        { contentType: 'application/json', userProperties: {} },
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
