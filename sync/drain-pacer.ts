// Keeps bulk sending (batches, uploads) within a share of the CPU the process may use. A drain that
// takes all of it leaves a live event queued behind its work, and in a CPU-quota'd cgroup (systemd
// CPUQuota, a container) behind whole throttled periods: P0 latency went from ms to 600 ms (issue 14).
// Live records are never paced; only the start of the next bulk message waits.
import type { Clock } from '../core/clock.js';

export interface DrainPacerSettings {
  /** Cores this process may use (core/cpu-allowance.ts). */
  allowedCores: number;
  /** Share of them the process may be using when a bulk message starts; 1 = no pacing. */
  share: number;
  /** CPU-ms of credit that can build up while idle: how large a burst a drain may start with. */
  burstMs: number;
}

/** Process CPU time (all threads: the event loop, compression, GC), in microseconds. */
export type CpuMicros = () => number;

const processCpuMicros: CpuMicros = () => {
  const { user, system } = process.cpuUsage();
  return user + system;
};

export class DrainPacer {
  /** CPU-ms the process may still spend before a bulk message has to wait. */
  private credit: number;
  private lastWallMs: number;
  private lastCpuMicros: number;
  /** Times the next bulk message was held back. */
  readonly counters = { holds: 0 };

  constructor(
    private readonly settings: DrainPacerSettings,
    private readonly clock: Clock,
    private readonly cpuMicros: CpuMicros = processCpuMicros,
  ) {
    this.credit = settings.burstMs;
    this.lastWallMs = clock.monoMs();
    this.lastCpuMicros = cpuMicros();
  }

  private get ratePerMs(): number {
    return this.settings.allowedCores * this.settings.share;
  }

  /** Milliseconds until the next bulk message may start; 0 = now. */
  delayMs(): number {
    if (this.settings.share >= 1) return 0;
    const now = this.clock.monoMs();
    const cpu = this.cpuMicros();
    this.credit = Math.min(
      this.settings.burstMs,
      this.credit + (now - this.lastWallMs) * this.ratePerMs - (cpu - this.lastCpuMicros) / 1000,
    );
    this.lastWallMs = now;
    this.lastCpuMicros = cpu;
    if (this.credit >= 0) return 0;
    this.counters.holds++;
    return Math.ceil(-this.credit / this.ratePerMs);
  }
}
