// Clock-skew correction (DESIGN §5): a Pi has no real-time clock, so its wall clock can be days off
// after a cold start. Every record keeps its monotonic capture time and boot id; once a reference
// (NTP, GPS, the broker's time) says what true time was at some monotonic instant of this boot,
// every record of the boot — including those captured before it — is sent with its corrected time
// and an error bound. Nothing is rewritten in the store: correction happens as a record is sent.
import { Subject, type Observable } from 'rxjs';
import type { Clock } from '../gateway/clock.js';
import { TimeQuality, type VehicleTelemetry } from '../proto/telemetry-codec.js';

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

export class ClockCorrector {
  private best: TimeReference | null = null;
  private readonly adopted = new Subject<TimeReference>();
  readonly counters = { references: 0, flagged: 0 };

  constructor(
    readonly bootId: string,
    private readonly clock: Clock,
    private readonly settings: CorrectorSettings,
    private readonly log: (msg: string) => void,
  ) {}

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

  /** Keeps `ref` if it is the best known now (smallest error today, drift included). */
  offer(ref: TimeReference): boolean {
    const now = this.clock.monoMs();
    if (this.best !== null && this.errorAt(ref, now) >= this.errorAt(this.best, now)) return false;
    const first = this.best === null;
    this.best = ref;
    this.counters.references++;
    this.adopted.next(ref);
    const offset = this.offsetMs() ?? 0;
    if (first || Math.abs(offset) > 1000) {
      this.log(`clock: ${first ? 'first ' : ''}reference from ${ref.source} (±${ref.errorMs.toFixed(0)} ms): the system clock is ${(Math.abs(offset) / 1000).toFixed(1)} s ${offset >= 0 ? 'behind' : 'ahead'}; records of this boot are sent corrected`);
    }
    return true;
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
    if (ref !== null && r.bootId === this.bootId) {
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
