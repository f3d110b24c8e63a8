// Keeps bulk sending (batches, uploads) within a share of the CPU the process may use. A drain that
// takes all of it leaves a live event queued behind its work, and in a CPU-quota'd cgroup (systemd
// CPUQuota, a container) behind whole throttled periods: P0 latency went from ms to 600 ms (issue 14).
// Live records are never paced; only the start of the next bulk message waits. Under a quota a
// batch also waits for room in the current quota period: the 500 ms average let two or three batches
// start back to back, and the quota ran out mid-period with an event behind it (see burstDelayMs).
import type { Clock } from '../core/clock.js';

export interface DrainPacerSettings {
  /** Cores this process may use (core/cpu-allowance.ts). */
  allowedCores: number;
  /** Share of them the process may be using when a bulk message starts. */
  share: number;
  /**
   * Cores the process may be using when a bulk message starts, whatever its allowance: the event loop
   * is one thread, so a live event queues behind the part of its time the drain takes.
   */
  maxCores: number;
  /**
   * Time constant of the usage average, ms: a batch's burst is smoothed over it, and a busy spell
   * (start-up, a purge) is forgotten after a few of it instead of owed for ever.
   */
  windowMs: number;
  /** The period of the CPU quota that binds (core/cpu-allowance.ts), or null when none does. */
  quotaPeriodMs: number | null;
  /**
   * Under a quota: the share of one period's quota the process may have used in the last period
   * when a bulk message starts (the message itself takes most of the rest).
   */
  burstShare: number;
}

/** Process CPU time (all threads: the event loop, compression, GC), in microseconds. */
export type CpuMicros = () => number;

const processCpuMicros: CpuMicros = () => {
  const { user, system } = process.cpuUsage();
  return user + system;
};

export class DrainPacer {
  /** Cores in use, averaged exponentially over `windowMs`. */
  private usage = 0;
  private lastWallMs: number;
  private lastCpuMicros: number;
  /** Process CPU at moments of the last quota period and the newest one before it, oldest first. */
  private readonly samples: Array<{ ms: number; us: number }> = [];
  /** Times the next bulk message was held back. */
  readonly counters = { holds: 0 };

  constructor(
    private readonly settings: DrainPacerSettings,
    private readonly clock: Clock,
    private readonly cpuMicros: CpuMicros = processCpuMicros,
  ) {
    this.lastWallMs = clock.monoMs();
    this.lastCpuMicros = cpuMicros();
  }

  /** Milliseconds until the next bulk message may start; 0 = now. */
  delayMs(): number {
    const now = this.clock.monoMs();
    const cpu = this.cpuMicros();
    const delay = Math.max(this.averageDelayMs(now, cpu), this.burstDelayMs(now, cpu));
    if (delay > 0) this.counters.holds++;
    return delay;
  }

  /**
   * Notes the CPU used so far: called when a bulk message is packed, the end of its burst, so the
   * quota period can be seen to have room again as soon as that burst is a period old.
   */
  note(): void {
    this.sample(this.clock.monoMs(), this.cpuMicros());
  }

  /** Until the usage average is back at the target. */
  private averageDelayMs(now: number, cpu: number): number {
    const { allowedCores, share, maxCores, windowMs } = this.settings;
    const target = Math.min(allowedCores * share, maxCores);
    // Neither the share nor the cap binds: no pacing.
    if (target >= allowedCores) return 0;
    const elapsed = now - this.lastWallMs;
    if (elapsed > 0) {
      const cores = (cpu - this.lastCpuMicros) / 1000 / elapsed;
      this.usage += (1 - Math.exp(-elapsed / windowMs)) * (cores - this.usage);
      this.lastWallMs = now;
      this.lastCpuMicros = cpu;
    }
    if (this.usage <= target) return 0;
    // Idle from now on, the average falls to the target in this long; at least a tenth of the
    // window, so a usage just over the target does not become a timer firing every millisecond.
    return Math.ceil(windowMs * Math.max(0.1, Math.log(this.usage / target)));
  }

  /**
   * Until the last quota period holds at most `burstShare` of its quota. A batch takes ~12 ms of a
   * Pi-sized quota's 20 per 100 ms: started when the period had used more than a few, it used the
   * quota up, and an event arriving then waited for the next period (40,000-record drains in the
   * envelope, alternating: P0 P99 46–52 ms, 31–42 with this; docs/decisions.md). The usage is counted
   * from the newest sample at or before the period's start: over, never under (to a millisecond).
   */
  private burstDelayMs(now: number, cpu: number): number {
    const { quotaPeriodMs: period, burstShare, allowedCores } = this.settings;
    if (period === null) return 0;
    this.sample(now, cpu);
    const budgetUs = allowedCores * period * burstShare * 1000;
    const from = this.samples[0] as { ms: number; us: number };
    if (cpu - from.us <= budgetUs) return 0;
    // Idle from now on, the period has room again once the samples up to the first within the
    // budget of now are more than a period old.
    const within = this.samples.find((s) => cpu - s.us <= budgetUs) as { ms: number };
    return Math.max(1, Math.ceil(within.ms + period - now));
  }

  private sample(ms: number, us: number): void {
    const period = this.settings.quotaPeriodMs;
    if (period === null) return;
    const last = this.samples[this.samples.length - 1];
    // At most one sample a millisecond (the later CPU reading), so a period holds a bounded number.
    if (last !== undefined && ms - last.ms < 1) {
      last.us = us;
      return;
    }
    this.samples.push({ ms, us });
    while (this.samples.length > 1 && (this.samples[1] as { ms: number }).ms <= ms - period) this.samples.shift();
  }
}
