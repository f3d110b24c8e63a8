// Stage 4: windows and events into telemetry records; owns the sequence and the wall-clock mapping.
import { randomUUID } from 'node:crypto';
import { Observable, type OperatorFunction } from 'rxjs';
import { formatDtc } from '../../drivers/obd/dtc.js';
import type { DiagnosticReport, WallAnchor } from './decode-stage.js';
import type { EventInWindow, WindowClosed } from './window-stage.js';
import type { Clock } from '../../core/clock.js';
import type { FieldName, GatewayConfig } from '../../core/config.js';
import { recordId, traceIdOf } from '../../proto/record-id.js';
import {
  RecordKind,
  SCHEMA_VERSION,
  TimeQuality,
  type SignalStats,
  type VehicleTelemetry,
} from '../../proto/telemetry-codec.js';

export interface RecordContext {
  vehicleId: string;
  fields: GatewayConfig['pipeline']['fields'];
  /** Signals never reported as extra window signals. */
  exclude: readonly string[];
  clock: Clock;
  bootId: string;
  /** First sequence number to use (continues the store's). */
  firstSequence: number;
}

/** Builds a record for each window and event. */
export function buildRecords(ctx: RecordContext): OperatorFunction<WindowClosed | EventInWindow, VehicleTelemetry> {
  return (source) =>
    new Observable<VehicleTelemetry>((subscriber) => {
      const records = new RecordFactory(ctx);
      return source.subscribe({
        next: (item) => {
          subscriber.next(item.kind === 'window' ? records.fromWindow(item) : records.fromEvent(item));
        },
        error: (err: unknown) => subscriber.error(err),
        complete: () => subscriber.complete(),
      });
    });
}

class RecordFactory {
  private sequence: number;
  private readonly session = randomUUID();
  private readonly mapped: Set<string>;
  private readonly excluded: Set<string>;

  constructor(private readonly ctx: RecordContext) {
    this.sequence = ctx.firstSequence;
    this.mapped = new Set(Object.values(ctx.fields).map((f) => f.signal));
    this.excluded = new Set(ctx.exclude);
  }

  private wallOf(mono: number, anchor: WallAnchor | null): number {
    if (anchor !== null) return Math.round(anchor.wallMs + (mono - anchor.mono));
    return Math.round(this.ctx.clock.wallMs() - (this.ctx.clock.monoMs() - mono));
  }

  private base(
    kind: RecordKind,
    priority: number,
    mono: number,
    windowMs: number,
    anchor: WallAnchor | null,
  ): VehicleTelemetry {
    const wall = this.wallOf(mono, anchor);
    // A recording keeps its own wall time; the clock corrector corrects only this boot's captures.
    const timeQuality = anchor !== null ? TimeQuality.Recorded : TimeQuality.Unsynced;
    const sequence = this.sequence++;
    // The capture run (correlation_id) and sequence name the record; batches derive the id from them.
    const messageId = recordId(this.session, sequence);
    return {
      messageId,
      vehicleId: this.ctx.vehicleId,
      schemaVersion: SCHEMA_VERSION,
      deviceTimeMs: wall,
      correctedTimeMs: wall,
      timeQuality,
      timeErrorMs: 0,
      correlationId: this.session,
      traceId: traceIdOf(messageId),
      priority,
      kind,
      windowMs,
      bootId: this.ctx.bootId,
      monoTimeMs: Math.round(mono),
      sequence,
      signals: {},
    };
  }

  fromWindow({ window: w, wall, diagnostics }: WindowClosed): VehicleTelemetry {
    const record = this.base(RecordKind.Window, 1, w.endMono, Math.round(w.endMono - w.startMono), wall);
    this.applyFields(record, (name, stat) => w.stats.get(name)?.[stat], diagnostics);
    for (const [name, stats] of w.stats)
      if (!this.mapped.has(name) && !this.excluded.has(name)) record.signals[name] = stats;
    return record;
  }

  fromEvent(fired: EventInWindow): VehicleTelemetry {
    const record = this.base(RecordKind.Event, 0, fired.frame.tsMono, 0, fired.frame.wall);
    record.event = fired.event;
    this.applyFields(record, (name) => fired.latest.get(name), fired.diagnostics);
    return record;
  }

  private applyFields(
    record: VehicleTelemetry,
    value: (signal: string, stat: keyof Omit<SignalStats, 'count'>) => number | undefined,
    report: DiagnosticReport | null,
  ): void {
    const get = (field: FieldName): number | undefined => {
      const m = this.ctx.fields[field];
      return m === undefined ? undefined : value(m.signal, m.stat);
    };
    const set = <K extends keyof VehicleTelemetry>(key: K, v: VehicleTelemetry[K] | undefined): void => {
      if (v !== undefined) record[key] = v;
    };
    set('speedKmh', get('speedKmh'));
    set('engineRpm', get('engineRpm'));
    const gear = get('gear');
    set('gear', gear === undefined ? undefined : Math.round(gear));
    set('batteryVoltageV', get('batteryVoltageV'));
    set('stateOfChargePct', get('stateOfChargePct'));
    set('coolantTempC', get('coolantTempC'));
    set('fuelLevelPct', get('fuelLevelPct'));
    set('odometerKm', get('odometerKm'));
    const lat = get('gpsLatitude');
    const lon = get('gpsLongitude');
    if (lat !== undefined && lon !== undefined) record.gps = { latitudeDeg: lat, longitudeDeg: lon };
    const tyres = {
      frontLeftKpa: get('tyreFrontLeftKpa'),
      frontRightKpa: get('tyreFrontRightKpa'),
      rearLeftKpa: get('tyreRearLeftKpa'),
      rearRightKpa: get('tyreRearRightKpa'),
    };
    if (Object.values(tyres).some((v) => v !== undefined)) {
      record.tyrePressure = Object.fromEntries(Object.entries(tyres).filter(([, v]) => v !== undefined));
    }
    const mil = get('milOn');
    const dtc = get('activeDtc');
    if (mil !== undefined || dtc !== undefined || report !== null)
      record.diagnostics = {
        milOn: mil !== undefined ? mil >= 0.5 : report?.milOn === true,
        dtcs: [...(dtc !== undefined && dtc !== 0 ? [formatDtc(dtc)] : []), ...(report?.dtcs ?? [])],
      };
  }
}
