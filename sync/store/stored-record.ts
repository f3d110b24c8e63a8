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

/**
 * What the outbox keeps of a record once its batch is packed: enough to remove it. A drain that
 * kept each batch's records until the PUBACK had V8 promote them all to the old generation (~7 KB
 * a record), and a full GC ran every 3 s in a Pi's quota (issue 14).
 */
export interface SentRecord {
  readonly id: string;
  readonly priority: number;
  /** What it weighs against its class quota (0 when there are no quotas). */
  readonly bytes: number;
}

/** A record as the outbox holds it: read from the store, or sent. */
export type RecordRef = StoredRecord | SentRecord;

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

/**
 * Why a row read from the store is no record it stored (damaged on the medium or edited), or null:
 * its record must be an object carrying the row's id and priority. Such a row is set aside, where
 * it would fail its batch, and every batch after it, for ever.
 */
export function damageOf(stored: StoredRecord): string | null {
  const r: unknown = stored.record;
  if (r === null || typeof r !== 'object' || Array.isArray(r))
    return `its record is ${r === null ? 'null' : Array.isArray(r) ? 'an array' : typeof r}, expected an object`;
  const { messageId, priority } = r as Partial<VehicleTelemetry>;
  if (messageId !== stored.id) return `its record's messageId ${JSON.stringify(messageId)} is not the row's id`;
  if (priority !== stored.priority)
    return `its record's priority ${JSON.stringify(priority)} is not the row's ${stored.priority}`;
  return null;
}

/** What a record weighs against its class quota: its stored JSON. */
export function recordBytes(record: VehicleTelemetry): number {
  return JSON.stringify(record).length;
}
