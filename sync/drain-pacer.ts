// Keeps bulk sending (batches, uploads) within a share of the CPU the process may use. A drain that
// takes all of it leaves a live event queued behind its work, and in a CPU-quota'd cgroup (systemd
// CPUQuota, a container) behind whole throttled periods: P0 latency went from ms to 600 ms (issue 14).
// Live records are never paced; only the start of the next bulk message waits.
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
    const { allowedCores, share, maxCores, windowMs } = this.settings;
    const target = Math.min(allowedCores * share, maxCores);
    // Neither the share nor the cap binds: no pacing.
    if (target >= allowedCores) return 0;
    const now = this.clock.monoMs();
    const elapsed = now - this.lastWallMs;
    if (elapsed > 0) {
      const cpu = this.cpuMicros();
      const cores = (cpu - this.lastCpuMicros) / 1000 / elapsed;
      this.usage += (1 - Math.exp(-elapsed / windowMs)) * (cores - this.usage);
      this.lastWallMs = now;
      this.lastCpuMicros = cpu;
    }
    if (this.usage <= target) return 0;
    this.counters.holds++;
    // Idle from now on, the average falls to the target in this long; at least a tenth of the
    // window, so a usage just over the target does not become a timer firing every millisecond.
    return Math.ceil(windowMs * Math.max(0.1, Math.log(this.usage / target)));
  }
}
