// The resolution each record field is sent at in a batch: the DBC factor and offset of the signal
// it comes from, so quantising loses nothing the CAN bus carried (a window mean loses at most half a step).
import type { DbcDatabase } from '../drivers/dbc/model.js';
import type { Resolution, ResolutionTable } from '../proto/record-columns.js';
import type { FieldName, GatewayConfig } from '../core/config.js';

/** Where each configured field lands in VehicleTelemetry (camel-cased .proto paths). */
const FIELD_PATHS: Record<FieldName, string> = {
  speedKmh: 'speedKmh',
  engineRpm: 'engineRpm',
  gear: 'gear',
  batteryVoltageV: 'batteryVoltageV',
  stateOfChargePct: 'stateOfChargePct',
  coolantTempC: 'coolantTempC',
  fuelLevelPct: 'fuelLevelPct',
  odometerKm: 'odometerKm',
  gpsLatitude: 'gps.latitudeDeg',
  gpsLongitude: 'gps.longitudeDeg',
  tyreFrontLeftKpa: 'tyrePressure.frontLeftKpa',
  tyreFrontRightKpa: 'tyrePressure.frontRightKpa',
  tyreRearLeftKpa: 'tyrePressure.rearLeftKpa',
  tyreRearRightKpa: 'tyrePressure.rearRightKpa',
  milOn: 'diagnostics.milOn',
  activeDtc: 'diagnostics.dtcs',
};

const STATS = /^signals\.([^.]+)\.(min|max|mean|last)$/;

export function resolutionTable(db: DbcDatabase, fields: GatewayConfig['pipeline']['fields']): ResolutionTable {
  const bySignal = new Map<string, Resolution>();
  for (const message of db.messages) {
    for (const s of message.signals) {
      // The same name in two messages: the finer step wins, so neither copy loses precision beyond it.
      const known = bySignal.get(s.name);
      if (s.factor > 0 && (known === undefined || s.factor < known.scale))
        bySignal.set(s.name, { scale: Math.abs(s.factor), offset: s.offset });
    }
  }
  const byPath = new Map<string, Resolution>();
  for (const [field, mapping] of Object.entries(fields) as Array<[FieldName, { signal: string } | undefined]>) {
    const r = mapping === undefined ? undefined : bySignal.get(mapping.signal);
    if (r !== undefined) byPath.set(FIELD_PATHS[field], r);
  }
  return (path) => {
    const stats = STATS.exec(path);
    return stats !== null ? bySignal.get(stats[1] as string) : byPath.get(path);
  };
}
