// What the store keeps for each record, and the schema RxDB stores it under.
import type { RxJsonSchema } from 'rxdb';
import type { VehicleTelemetry } from '../../proto/telemetry-codec.js';

export interface StoredRecord {
  id: string;
  priority: number;
  seq: number;
  createdMs: number;
  record: VehicleTelemetry;
}

/** Priorities run 0 (most urgent) to this. */
export const MAX_PRIORITY = 9;

export const telemetrySchema: RxJsonSchema<StoredRecord> = {
  version: 0,
  primaryKey: 'id',
  type: 'object',
  properties: {
    id: { type: 'string', maxLength: 40 },
    priority: { type: 'integer', minimum: 0, maximum: MAX_PRIORITY, multipleOf: 1 },
    seq: { type: 'integer', minimum: 0, maximum: 1e15, multipleOf: 1 },
    createdMs: { type: 'number' },
    record: { type: 'object' },
  },
  required: ['id', 'priority', 'seq', 'createdMs', 'record'],
  // The outbox reads "oldest first within the highest priority": one index range scan.
  indexes: [['priority', 'seq']],
};

/** What a record weighs against its class quota: its stored JSON. */
export function recordBytes(record: VehicleTelemetry): number {
  return JSON.stringify(record).length;
}
