// Pure building blocks of the pipeline: per-signal windows and event rules. No I/O, no timers.
import type { EventRule } from '../../core/config.js';
import { formatDtc } from '../../drivers/obd/dtc.js';
import type { SignalStats, TelemetryEvent } from '../../proto/telemetry-codec.js';

interface RunningStats {
  min: number;
  max: number;
  sum: number;
  last: number;
  count: number;
}

export interface ClosedWindow {
  startMono: number;
  endMono: number;
  /** Time of the last sample in the window (monotonic ms). */
  lastMono: number;
  stats: Map<string, SignalStats>;
}

/** Aggregates samples into aligned windows of capture time (min/max/mean/last/count per signal). */
export class WindowAggregator {
  private stats = new Map<string, RunningStats>();
  private index = Number.NaN;
  private lastMono = 0;

  constructor(readonly windowMs: number) {}

  /** Adds a sample; returns the previous window when this sample starts a new one. */
  add(tMono: number, name: string, value: number): ClosedWindow | null {
    const index = Math.floor(tMono / this.windowMs);
    let closed: ClosedWindow | null = null;
    // A late sample from a reordered source (the window just before the open one) counts in the open
    // window; one further back is a new timeline (a recording that steps back) and starts a window.
    if (index > this.index || index < this.index - 1 || Number.isNaN(this.index)) {
      closed = this.close(false);
      this.index = index;
      this.lastMono = tMono;
    }
    this.lastMono = Math.max(this.lastMono, tMono);
    const s = this.stats.get(name);
    if (s === undefined) this.stats.set(name, { min: value, max: value, sum: value, last: value, count: 1 });
    else {
      if (value < s.min) s.min = value;
      if (value > s.max) s.max = value;
      s.sum += value;
      s.last = value;
      s.count++;
    }
    return closed;
  }

  /** The most recent value of a signal in the open window. */
  last(name: string): number | undefined {
    return this.stats.get(name)?.last;
  }

  /** The most recent value of each signal in the open window. */
  lastValues(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [name, s] of this.stats) out.set(name, s.last);
    return out;
  }

  /** Whether the open window ended before `tMono` (for closing it after silence). */
  expiredBy(tMono: number): boolean {
    return this.stats.size > 0 && tMono >= (this.index + 1) * this.windowMs;
  }

  /** Closes the open window; `partial` ends it at its last sample instead of its full length. */
  close(partial: boolean): ClosedWindow | null {
    if (this.stats.size === 0) return null;
    const stats = new Map<string, SignalStats>();
    for (const [name, s] of this.stats)
      stats.set(name, { min: s.min, max: s.max, mean: s.sum / s.count, last: s.last, count: s.count });
    const startMono = this.index * this.windowMs;
    const closed: ClosedWindow = {
      startMono,
      endMono: partial ? this.lastMono : startMono + this.windowMs,
      lastMono: this.lastMono,
      stats,
    };
    this.stats = new Map();
    return closed;
  }
}

/** Evaluates event rules per sample; a rule fires on crossing and re-arms past its hysteresis. */
export class EventDetector {
  private readonly bySignal = new Map<string, EventRule[]>();
  private readonly armed = new Map<string, boolean>();
  private readonly lastDtc = new Map<string, number>();
  private readonly lastDtcSet = new Map<string, ReadonlySet<string>>();

  constructor(rules: readonly EventRule[]) {
    for (const rule of rules) {
      const list = this.bySignal.get(rule.signal) ?? [];
      list.push(rule);
      this.bySignal.set(rule.signal, list);
      this.armed.set(rule.name, true);
    }
  }

  /** Whether any rule watches this signal (lets the caller skip the call). */
  watches(signal: string): boolean {
    return this.bySignal.has(signal);
  }

  /**
   * `dtc` rules on a signal that stands for a set of DTCs (J1939 DM1): one event per code that
   * was not in the previous set; the event's value is the set's size.
   */
  checkDtcSet(signal: string, dtcs: readonly string[]): TelemetryEvent[] {
    const fired: TelemetryEvent[] = [];
    for (const rule of this.bySignal.get(signal) ?? []) {
      if (rule.kind !== 'dtc') continue;
      const previous = this.lastDtcSet.get(rule.name);
      for (const dtc of dtcs)
        if (previous?.has(dtc) !== true)
          fired.push({ rule: rule.name, signal, value: dtcs.length, threshold: 0, detail: `DTC ${dtc} appeared` });
      this.lastDtcSet.set(rule.name, new Set(dtcs));
    }
    return fired;
  }

  check(signal: string, value: number): TelemetryEvent[] {
    const rules = this.bySignal.get(signal);
    if (rules === undefined) return [];
    const fired: TelemetryEvent[] = [];
    for (const rule of rules) {
      if (rule.kind === 'dtc') {
        const previous = this.lastDtc.get(rule.name) ?? 0;
        this.lastDtc.set(rule.name, value);
        if (value !== 0 && value !== previous)
          fired.push({ rule: rule.name, signal, value, threshold: 0, detail: `DTC ${formatDtc(value)} appeared` });
        continue;
      }
      const above = rule.above !== undefined;
      const threshold = (above ? rule.above : rule.below) as number;
      const crossed = above ? value > threshold : value < threshold;
      const cleared = above ? value <= threshold - rule.hysteresis : value >= threshold + rule.hysteresis;
      if (this.armed.get(rule.name) === true && crossed) {
        this.armed.set(rule.name, false);
        fired.push({
          rule: rule.name,
          signal,
          value,
          threshold,
          detail: `${signal} ${value} ${above ? 'above' : 'below'} ${threshold}`,
        });
      } else if (cleared) this.armed.set(rule.name, true);
    }
    return fired;
  }
}
