// protobufjs codec for proto/telemetry.proto, loaded once at start-up from the .proto itself
// (one source of truth; no generated code to drift).
import protobuf from 'protobufjs';
import { join } from 'node:path';
import { projectRoot } from '../core/project-root.js';
import { encodeColumnBatch, type ColumnBatchParts } from './column-wire.js';

export const SCHEMA_VERSION = '1.0';

export enum TimeQuality {
  Unspecified = 0,
  Unsynced = 1,
  Estimated = 2,
  Synced = 3,
  Recorded = 4,
}
export enum RecordKind {
  Unspecified = 0,
  Window = 1,
  Event = 2,
}

export interface SignalStats {
  min: number;
  max: number;
  mean: number;
  last: number;
  count: number;
}
export interface TelemetryEvent {
  rule: string;
  signal: string;
  value: number;
  threshold: number;
  detail: string;
}

/** One telemetry record as the gateway builds it (field names as in the .proto, camel-cased). */
export interface VehicleTelemetry {
  messageId: string;
  vehicleId: string;
  schemaVersion: string;
  deviceTimeMs: number;
  correctedTimeMs: number;
  timeQuality: TimeQuality;
  timeErrorMs: number;
  correlationId: string;
  traceId: string;
  priority: number;
  kind: RecordKind;
  windowMs: number;
  bootId: string;
  monoTimeMs: number;
  sequence: number;
  timeOutsideWindow?: boolean;
  speedKmh?: number;
  engineRpm?: number;
  gear?: number;
  batteryVoltageV?: number;
  stateOfChargePct?: number;
  coolantTempC?: number;
  fuelLevelPct?: number;
  odometerKm?: number;
  gps?: { latitudeDeg: number; longitudeDeg: number };
  tyrePressure?: { frontLeftKpa?: number; frontRightKpa?: number; rearLeftKpa?: number; rearRightKpa?: number };
  diagnostics?: { milOn: boolean; dtcs: string[] };
  signals: Record<string, SignalStats>;
  event?: TelemetryEvent;
}

export interface NumericColumn {
  path: string;
  scale: number;
  offset: number;
  present: Uint8Array;
  deltas: number[];
  exact: number[];
}
export interface TextColumn {
  path: string;
  present: Uint8Array;
  dictionary: string[];
  indexes: number[];
}
export interface RecordColumns {
  count: number;
  numbers: NumericColumn[];
  texts: TextColumn[];
  remainders: Array<{ index: number; fields: Partial<VehicleTelemetry> }>;
}

export interface TelemetryBatch {
  batchId: string;
  vehicleId: string;
  schemaVersion: string;
  createdMs: number;
  /** Row-wise records; empty when the batch carries `columns`. */
  records: VehicleTelemetry[];
  columns?: RecordColumns;
}

/** A live record in the compact encoding (proto/compact-record.ts): values under a RecordLayout. */
export interface CompactRecord {
  version: number;
  layoutId: Uint8Array;
  values: number[];
  exact: number[];
  texts: string[];
  rest?: Partial<VehicleTelemetry>;
}

export interface RecordLayout {
  layoutId: Uint8Array;
  /** `base`: the integer predictions start from (compact version 2; absent or 0: none). */
  numbers: Array<{ path: string; scale: number; offset: number; base?: number }>;
  texts: string[];
  context: Partial<VehicleTelemetry>;
}

const root = protobuf.loadSync(join(projectRoot(), 'proto', 'telemetry.proto'));
/** The VehicleTelemetry message type, for code that walks its fields (proto/record-columns.ts). */
export const recordType = root.lookupType('v2c.telemetry.v1.VehicleTelemetry');
const batchType = root.lookupType('v2c.telemetry.v1.TelemetryBatch');
const compactType = root.lookupType('v2c.telemetry.v1.CompactRecord');
const layoutType = root.lookupType('v2c.telemetry.v1.RecordLayout');
const textColumnType = root.lookupType('v2c.telemetry.v1.TextColumn');
const remainderType = root.lookupType('v2c.telemetry.v1.RecordRemainder');
const toObjectOptions: protobuf.IConversionOptions = {
  longs: Number,
  enums: Number,
  defaults: true,
  arrays: true,
  objects: true,
};

/** A payload that is not a valid message of the expected type. */
export class TelemetryDecodeError extends Error {
  readonly code = 'TELEMETRY_DECODE';
  constructor(message: string) {
    super(message);
    this.name = 'TelemetryDecodeError';
  }
}

/** The encoder and decoder of one message type, typed as the objects the gateway uses. */
function codec<T extends object>(
  type: protobuf.Type,
): [encode: (value: T) => Uint8Array, decode: (payload: Uint8Array) => T] {
  return [
    (value) => type.encode(type.fromObject(value)).finish(),
    (payload) => fromWire(type, payload) as unknown as T,
  ];
}

export const [encodeTelemetry, decodeTelemetry] = codec<VehicleTelemetry>(recordType);
export const decodeBatch = codec<TelemetryBatch>(batchType)[1];
/**
 * Batches skip fromObject: their columns come from toColumns with every field in its wire type
 * already, and fromObject's copy (each sint64 delta as a Long) was three quarters of encoding a
 * batch (0.032 → 0.009 ms per record, same bytes; issue 14). Numeric columns are written by
 * proto/column-wire.ts, the rest by protobufjs.
 */
export function encodeBatch(batch: TelemetryBatch): Uint8Array {
  const { columns, ...head } = batch;
  if (columns === undefined) return batchType.encode(batch).finish();
  return encodeColumnBatch(head, columns, columnBatchParts);
}
const columnBatchParts: ColumnBatchParts = {
  head: (batch) => batchType.encode(batch).finish(),
  text: (column) => textColumnType.encode(column).finish(),
  remainder: (remainder) => remainderType.encode(remainder).finish(),
};
export const [encodeCompact, decodeCompact] = codec<CompactRecord>(compactType);
export const [encodeLayout, decodeLayout] = codec<RecordLayout>(layoutType);

/**
 * Generates every message type's encoder, decoder and converters now. protobufjs generates them on
 * first use, and a gateway's first live record waited for that: ~200 ms of a Pi-sized CPU quota
 * right after connecting (issue 14).
 */
export function prepareCodecs(): void {
  const visit = (namespace: protobuf.NamespaceBase): void => {
    for (const nested of namespace.nestedArray) {
      if (nested instanceof protobuf.Type) nested.setup();
      if (nested instanceof protobuf.Namespace) visit(nested);
    }
  };
  visit(root);
}

function fromWire(type: protobuf.Type, payload: Uint8Array): Record<string, unknown> {
  let message: protobuf.Message;
  try {
    message = type.decode(payload);
  } catch (err) {
    throw new TelemetryDecodeError(`not a valid ${type.name}: ${(err as Error).message}`);
  }
  // Optional scalars absent on the wire stay absent (proto3 `optional`), not 0.
  const object = type.toObject(message, { ...toObjectOptions, defaults: false });
  const defaults = type.toObject(type.create(), toObjectOptions);
  for (const field of type.fieldsArray) {
    if (field.options?.proto3_optional === true || field.partOf !== null) continue;
    if (!(field.name in object) && field.resolvedType === null) object[field.name] = defaults[field.name] as unknown;
    if (field.map && !(field.name in object)) object[field.name] = {};
  }
  return object;
}
