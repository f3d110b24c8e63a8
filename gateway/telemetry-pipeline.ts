// The RxJS stage from frames to telemetry records: decode, window, detect events, build records.
import { randomUUID } from 'node:crypto';
import { recordId, traceIdOf } from '../proto/record-id.js';
import { Observable } from 'rxjs';
import { type CanFrame, MalformedLine } from '../drivers/can-frame.js';
import { DecodeError, type DbcDecoder, type DecodeErrorCode } from '../drivers/dbc/decoder.js';
import { EventDetector, WindowAggregator, formatDtc, type ClosedWindow } from './aggregation.js';
import type { FieldName, GatewayConfig } from '../core/config.js';
import type { Clock } from '../core/clock.js';
import {
  RecordKind,
  SCHEMA_VERSION,
  TimeQuality,
  type SignalStats,
  type TelemetryEvent,
  type VehicleTelemetry,
} from '../proto/telemetry-codec.js';

export interface PipelineCounters {
  frames: number;
  malformed: number;
  decoded: number;
  decodeErrors: Record<DecodeErrorCode, number>;
  windows: number;
  events: number;
}

export function newPipelineCounters(): PipelineCounters {
  return {
    frames: 0,
    malformed: 0,
    decoded: 0,
    decodeErrors: { 'unknown-id': 0, 'wrong-length': 0, 'error-frame': 0, 'remote-frame': 0 },
    windows: 0,
    events: 0,
  };
}

export interface PipelineContext {
  config: GatewayConfig;
  decoder: DbcDecoder;
  clock: Clock;
  counters: PipelineCounters;
  bootId: string;
  /** First sequence number to use (continues the store's). */
  firstSequence: number;
  /** Live sources (serial) close windows after silence; replays close them on data time only. */
  live: boolean;
}

/** Builds records from windows and events; owns the sequence and the wall-clock mapping. */
class RecordFactory {
  private sequence: number;
  private readonly session = randomUUID();
  private readonly mapped: Set<string>;
  private readonly excluded: Set<string>;
  private readonly fields: GatewayConfig['pipeline']['fields'];
  /** Wall time of the latest frame, paired with its monotonic time (recorded traces carry it). */
  private anchor: { mono: number; wall: number } | null = null;

  constructor(private readonly ctx: PipelineContext) {
    this.sequence = ctx.firstSequence;
    this.fields = ctx.config.pipeline.fields;
    this.mapped = new Set(Object.values(this.fields).map((f) => f.signal));
    this.excluded = new Set(ctx.config.pipeline.exclude);
  }

  noteFrameTime(frame: CanFrame): void {
    if (frame.tsWall !== null) this.anchor = { mono: frame.tsMono, wall: frame.tsWall * 1000 };
  }

  private wallOf(mono: number): number {
    if (this.anchor !== null) return Math.round(this.anchor.wall + (mono - this.anchor.mono));
    return Math.round(this.ctx.clock.wallMs() - (this.ctx.clock.monoMs() - mono));
  }

  private base(kind: RecordKind, priority: number, mono: number, windowMs: number): VehicleTelemetry {
    const wall = this.wallOf(mono);
    // A recording keeps its own wall time; the clock corrector corrects only this boot's captures.
    const timeQuality = this.anchor !== null ? TimeQuality.Recorded : TimeQuality.Unsynced;
    const sequence = this.sequence++;
    // The capture run (correlation_id) and sequence name the record; batches derive the id from them.
    const messageId = recordId(this.session, sequence);
    return {
      messageId,
      vehicleId: this.ctx.config.vehicle.id,
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

  fromWindow(w: ClosedWindow): VehicleTelemetry {
    const record = this.base(RecordKind.Window, 1, w.endMono, Math.round(w.endMono - w.startMono));
    this.applyFields(record, (name, stat) => w.stats.get(name)?.[stat]);
    for (const [name, stats] of w.stats)
      if (!this.mapped.has(name) && !this.excluded.has(name)) record.signals[name] = stats;
    return record;
  }

  fromEvent(event: TelemetryEvent, mono: number, current: WindowAggregator): VehicleTelemetry {
    const record = this.base(RecordKind.Event, 0, mono, 0);
    record.event = event;
    this.applyFields(record, (name) => current.last(name));
    return record;
  }

  private applyFields(
    record: VehicleTelemetry,
    value: (signal: string, stat: keyof Omit<SignalStats, 'count'>) => number | undefined,
  ): void {
    const get = (field: FieldName): number | undefined => {
      const m = this.fields[field];
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
    if (mil !== undefined || dtc !== undefined)
      record.diagnostics = { milOn: (mil ?? 0) >= 0.5, dtcs: dtc !== undefined && dtc !== 0 ? [formatDtc(dtc)] : [] };
  }
}

/** Frames (and malformed lines) in, telemetry records out. Completing the input flushes the open window. */
export function telemetryPipeline(
  frames: Observable<CanFrame | MalformedLine>,
  ctx: PipelineContext,
): Observable<VehicleTelemetry> {
  return new Observable<VehicleTelemetry>((subscriber) => {
    const { counters, decoder, clock } = ctx;
    const windows = new WindowAggregator(ctx.config.pipeline.windowMs);
    const events = new EventDetector(ctx.config.pipeline.events);
    const records = new RecordFactory(ctx);
    const emitWindow = (w: ClosedWindow | null): void => {
      if (w === null) return;
      counters.windows++;
      subscriber.next(records.fromWindow(w));
    };
    const onFrame = (item: CanFrame | MalformedLine): void => {
      if (item instanceof MalformedLine) {
        counters.malformed++;
        return;
      }
      counters.frames++;
      const decoded = decoder.decode(item, false);
      if (decoded instanceof DecodeError) {
        counters.decodeErrors[decoded.code]++;
        return;
      }
      counters.decoded++;
      records.noteFrameTime(item);
      const t = item.tsMono;
      for (const name in decoded.signals) {
        const value = Number(decoded.signals[name]);
        emitWindow(windows.add(t, name, value));
        if (events.watches(name)) {
          for (const event of events.check(name, value)) {
            counters.events++;
            subscriber.next(records.fromEvent(event, t, windows));
          }
        }
      }
    };
    const idle =
      ctx.live && ctx.config.pipeline.idleFlushMs > 0
        ? setInterval(
            () => {
              if (windows.expiredBy(clock.monoMs() - ctx.config.pipeline.idleFlushMs)) emitWindow(windows.close(false));
            },
            Math.min(1000, ctx.config.pipeline.idleFlushMs),
          )
        : null;
    const subscription = frames.subscribe({
      next: onFrame,
      error: (err: unknown) => subscriber.error(err),
      complete: () => {
        emitWindow(windows.close(true));
        subscriber.complete();
      },
    });
    return () => {
      if (idle !== null) clearInterval(idle);
      subscription.unsubscribe();
    };
  });
}
