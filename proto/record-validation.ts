// What a receiver accepts as a telemetry record: the spec's validator rules. The reference sink
// refuses what fails them, and the gateway checks each record before storing it, so a record it
// keeps until the PUBACK is one the receiver will take.
import { EARLIEST_RECORD_MS, LATEST_RECORD_MS } from './record-time.js';
import { RecordKind, type VehicleTelemetry } from './telemetry-codec.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Physical ranges a record's typed fields must lie in; outside them the record is refused. */
const RANGES: Array<[keyof VehicleTelemetry | 'gps.latitudeDeg' | 'gps.longitudeDeg', number, number]> = [
  ['speedKmh', 0, 500],
  ['engineRpm', 0, 20_000],
  ['gear', -1, 15],
  ['batteryVoltageV', 0, 60],
  ['stateOfChargePct', 0, 100],
  ['coolantTempC', -60, 250],
  ['fuelLevelPct', 0, 100],
  ['odometerKm', 0, 10_000_000],
  ['gps.latitudeDeg', -90, 90],
  ['gps.longitudeDeg', -180, 180],
];

/** Why a record is not acceptable, or null. `vehicleId` is the one its topic names. */
export function validateRecord(r: VehicleTelemetry, vehicleId: string, accepted: readonly string[]): string | null {
  if (!UUID.test(r.messageId)) return `message_id "${r.messageId}" is not a UUID`;
  if (r.vehicleId !== vehicleId) return `vehicle_id "${r.vehicleId}" does not match the topic's "${vehicleId}"`;
  if (!accepted.includes(r.schemaVersion))
    return `schema_version "${r.schemaVersion}" is not one of ${accepted.join(', ')}`;
  for (const [name, v] of [
    ['device_time_ms', r.deviceTimeMs],
    ['corrected_time_ms', r.correctedTimeMs],
  ] as const) {
    if (!(v >= EARLIEST_RECORD_MS && v < LATEST_RECORD_MS))
      return `${name} ${String(v)} is not a time between 2000 and 2100`;
  }
  if (!Number.isFinite(r.monoTimeMs) || r.monoTimeMs < 0) return `mono_time_ms ${String(r.monoTimeMs)} is not a time`;
  if (r.priority > 2) return `priority ${r.priority} is not 0, 1 or 2`;
  if (r.kind !== RecordKind.Window && r.kind !== RecordKind.Event) return `kind ${r.kind} is not a window or an event`;
  if (r.kind === RecordKind.Event && r.event === undefined) return 'an event record without its event';
  if (r.bootId === '') return 'boot_id is required';
  for (const [path, lo, hi] of RANGES) {
    const v =
      path === 'gps.latitudeDeg' ? r.gps?.latitudeDeg : path === 'gps.longitudeDeg' ? r.gps?.longitudeDeg : r[path];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi)
      return `${path} ${typeof v === 'object' ? JSON.stringify(v) : String(v)} outside ${lo}..${hi}`;
  }
  return null;
}
