// Clock-skew correction (DESIGN §5): a Pi has no real-time clock, so its wall clock can be days off
// after a cold start. Every record keeps its monotonic capture time and boot id; once a reference
// (NTP, GPS, the broker's time) says what true time was at some monotonic instant of this boot,
// every record of the boot — including those captured before it — is sent with its corrected time
// and an error bound. Nothing is rewritten in the store: correction happens as a record is sent.
import { Subject, type Observable } from 'rxjs';
import type { Clock } from '../../core/clock.js';
import { rateLimited, type Log } from '../../core/log.js';
import { TimeQuality, type VehicleTelemetry } from '../../proto/telemetry-codec.js';

export type ReferenceSource = 'ntp' | 'gps' | 'broker' | 'http-date';

/** True time `wallMs` at monotonic instant `monoMs` of this boot, within ± `errorMs`. */
export interface TimeReference {
  source: ReferenceSource;
  wallMs: number;
  monoMs: number;
  errorMs: number;
}

export interface CorrectorSettings {
  /** Oscillator drift assumed between the reference and a record (crystal: tens of ppm). */
  driftPpm: number;
  /** A corrected time further than this from true now is flagged (the cloud's ±1 h window). */
  windowMs: number;
}

/** No true time is before this software's first release or after 2100: a reference saying so is broken. */
export const EARLIEST_TRUE_TIME_MS = Date.UTC(2025, 0, 1);
export const LATEST_TRUE_TIME_MS = Date.UTC(2100, 0, 1);
/** Two sources may differ by their error bounds plus this before one of them is called wrong. */
const AGREEMENT_SLACK_MS = 5_000;

export type RefusalReason = 'implausible' | 'disagrees';

export class ClockCorrector {
  private best: TimeReference | null = null;
  private readonly adopted = new Subject<TimeReference>();
  readonly counters = { references: 0, flagged: 0, refused: new Map<RefusalReason, number>() };

  private readonly refusalLog: Log;

  constructor(
    readonly bootId: string,
    private readonly clock: Clock,
    private readonly settings: CorrectorSettings,
    private readonly log: Log,
  ) {
    this.refusalLog = rateLimited(log, 60_000);
  }

  get reference(): TimeReference | null {
    return this.best;
  }

  /** Each reference adopted as the best. */
  get references(): Observable<TimeReference> {
    return this.adopted.asObservable();
  }

  /** The error of `ref` at monotonic instant `monoMs`: its own plus drift since it was taken. */
  private errorAt(ref: TimeReference, monoMs: number): number {
    return ref.errorMs + (Math.abs(monoMs - ref.monoMs) * this.settings.driftPpm) / 1e6;
  }

  /**
   * Keeps `ref` if it is plausible and the best known now (smallest error today, drift included).
   * Refused and counted: a time outside 2025-2100, or one that disagrees with the reference held
   * beyond both error bounds (a broken or hostile source must not move every record's time).
   */
  offer(ref: TimeReference): boolean {
    const now = this.clock.monoMs();
    const problem = this.implausible(ref, now);
    if (problem !== null) {
      this.counters.refused.set(problem.reason, (this.counters.refused.get(problem.reason) ?? 0) + 1);
      this.refusalLog(`clock: reference from ${ref.source} refused: ${problem.detail}`);
      return false;
    }
    if (this.best !== null && this.errorAt(ref, now) >= this.errorAt(this.best, now)) return false;
    const first = this.best === null;
    this.best = ref;
    this.counters.references++;
    this.adopted.next(ref);
    const offset = this.offsetMs() ?? 0;
    if (first || Math.abs(offset) > 1000) {
      this.log(
        `clock: ${first ? 'first ' : ''}reference from ${ref.source} (±${ref.errorMs.toFixed(0)} ms): the system clock is ${(Math.abs(offset) / 1000).toFixed(1)} s ${offset >= 0 ? 'behind' : 'ahead'}; records of this boot are sent corrected`,
      );
    }
    return true;
  }

  private implausible(ref: TimeReference, now: number): { reason: RefusalReason; detail: string } | null {
    if (
      !Number.isFinite(ref.wallMs) ||
      !Number.isFinite(ref.monoMs) ||
      !Number.isFinite(ref.errorMs) ||
      ref.errorMs < 0
    ) {
      return { reason: 'implausible', detail: 'not a finite time with an error bound' };
    }
    const trueNow = ref.wallMs + (now - ref.monoMs);
    if (trueNow < EARLIEST_TRUE_TIME_MS || trueNow >= LATEST_TRUE_TIME_MS) {
      return { reason: 'implausible', detail: `it says it is ${String(ref.wallMs)} ms since 1970, outside 2025-2100` };
    }
    const held = this.best;
    if (held === null) return null;
    const gap = Math.abs(trueNow - (held.wallMs + (now - held.monoMs)));
    const allowed = this.errorAt(ref, now) + this.errorAt(held, now) + AGREEMENT_SLACK_MS;
    if (gap > allowed)
      return {
        reason: 'disagrees',
        detail: `it differs from the ${held.source} reference by ${(gap / 1000).toFixed(1)} s (allowed ${(allowed / 1000).toFixed(1)} s)`,
      };
    return null;
  }

  /** True time minus the system clock, or null before the first reference. */
  offsetMs(): number | null {
    const ref = this.best;
    if (ref === null) return null;
    const mono = this.clock.monoMs();
    return ref.wallMs + (mono - ref.monoMs) - this.clock.wallMs();
  }

  quality(): TimeQuality {
    return this.best === null ? TimeQuality.Unsynced : TimeQuality.Synced;
  }

  /** The record as it should be sent: corrected time, quality, error bound, window flag. */
  correct(r: VehicleTelemetry): VehicleTelemetry {
    const ref = this.best;
    const out = { ...r };
    // Only this boot's own captures: a recorded trace's records keep the time it recorded.
    if (ref !== null && r.bootId === this.bootId && r.timeQuality === TimeQuality.Unsynced) {
      out.correctedTimeMs = Math.round(ref.wallMs + (r.monoTimeMs - ref.monoMs));
      out.timeErrorMs = Math.ceil(this.errorAt(ref, r.monoTimeMs));
      // Synced: the reference was there when the record was captured; estimated: found later.
      out.timeQuality = r.monoTimeMs >= ref.monoMs ? TimeQuality.Synced : TimeQuality.Estimated;
    }
    const trueNow = ref === null ? this.clock.wallMs() : ref.wallMs + (this.clock.monoMs() - ref.monoMs);
    // Set only when true: an absent flag costs no bytes on the wire.
    delete out.timeOutsideWindow;
    if (Math.abs(trueNow - out.correctedTimeMs) > this.settings.windowMs) {
      out.timeOutsideWindow = true;
      this.counters.flagged++;
    }
    return out;
  }
}
