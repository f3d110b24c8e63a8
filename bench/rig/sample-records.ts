// Realistic telemetry records for tests and benchmarks: the shape and size the pipeline produces
// for the reference vehicle (a one-minute window with two dozen signals), with seeded values.
import { SeededRandom } from './seeded-random.js';
import { recordId, traceIdOf } from '../../proto/record-id.js';
import {
  RecordKind,
  SCHEMA_VERSION,
  TimeQuality,
  type SignalStats,
  type VehicleTelemetry,
} from '../../proto/telemetry-codec.js';

const SIGNALS = [
  'VehicleSpeed',
  'WheelSpeedFL',
  'WheelSpeedFR',
  'WheelSpeedRL',
  'WheelSpeedRR',
  'EngineSpeed',
  'CoolantTemp',
  'ThrottlePosition',
  'EngineLoad',
  'GearPosition',
  'Battery12V',
  'StateOfCharge',
  'FuelLevel',
  'FuelRate',
  'Odometer',
  'TripDistance',
  'Latitude',
  'Longitude',
  'Altitude',
  'GnssSatellites',
  'TyrePressureFL',
  'TyrePressureFR',
  'TyrePressureRL',
  'TyrePressureRR',
];

export class SampleRecords {
  private readonly r: SeededRandom;
  private readonly startMs = 1_763_800_000_000;

  constructor(
    seed = 1,
    readonly vehicleId = 'V2CREF00000000001',
    readonly bootId = '3f1e0c1a-7d55-4f0e-9a43-0b1f2d9c6e21',
    readonly runId = '6b0d4f7e-2c1a-4e8b-9f3d-5a7c1e2b4d60',
  ) {
    this.r = new SeededRandom(seed);
  }

  /** A window record (P1) or, for priority 0, an event record, with sequence `seq`. */
  record(seq: number, priority = 1): VehicleTelemetry {
    const r = this.r;
    const q = (v: number, step: number): number => Math.round(v / step) * step;
    const signals: Record<string, SignalStats> = {};
    for (const name of SIGNALS) {
      const base = r.float() * 200;
      const lo = q(base - r.float() * 5, 0.01);
      const hi = q(base + r.float() * 5, 0.01);
      signals[name] = {
        min: lo,
        max: hi,
        mean: q((lo + hi) / 2, 0.001),
        last: q(lo + (hi - lo) * r.float(), 0.01),
        count: r.int(590, 610),
      };
    }
    const deviceTimeMs = this.startMs + seq * 60_000;
    const event =
      priority === 0
        ? {
            rule: 'coolant_over_temperature',
            signal: 'CoolantTemp',
            value: 107,
            threshold: 105,
            detail: 'CoolantTemp 107 > 105',
          }
        : undefined;
    return {
      messageId: recordId(this.runId, seq),
      vehicleId: this.vehicleId,
      schemaVersion: SCHEMA_VERSION,
      deviceTimeMs,
      correctedTimeMs: deviceTimeMs,
      timeQuality: TimeQuality.Unsynced,
      timeErrorMs: 0,
      correlationId: this.runId,
      traceId: traceIdOf(recordId(this.runId, seq)),
      priority,
      kind: priority === 0 ? RecordKind.Event : RecordKind.Window,
      windowMs: priority === 0 ? 0 : 60_000,
      bootId: this.bootId,
      monoTimeMs: seq * 60_000,
      sequence: seq,
      speedKmh: q(r.float() * 130, 0.1),
      engineRpm: q(800 + r.float() * 3000, 1),
      gear: r.int(0, 6),
      batteryVoltageV: q(12 + r.float() * 2, 0.01),
      coolantTempC: q(80 + r.float() * 20, 1),
      fuelLevelPct: q(r.float() * 100, 0.1),
      odometerKm: q(12_000 + seq * 1.2, 0.1),
      gps: { latitudeDeg: q(48 + r.float(), 1e-6), longitudeDeg: q(11 + r.float(), 1e-6) },
      tyrePressure: { frontLeftKpa: 230, frontRightKpa: 231, rearLeftKpa: 229, rearRightKpa: 230 },
      diagnostics: { milOn: false, dtcs: [] },
      signals,
      ...(event ? { event } : {}),
    };
  }
}
