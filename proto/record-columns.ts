// Column-wise encoding of a batch's records (RecordColumns in telemetry.proto). Row-wise protobuf
// repeats every signal name and a random id per record; here each field path appears once per
// batch, numbers become integers of their resolution coded as deltas (a slowly changing signal
// costs one byte per record, and zstd folds the runs), and ids are derived from run + sequence.
import protobuf from 'protobufjs';
import {
  decodeTelemetry,
  encodeTelemetry,
  recordType,
  type NumericColumn,
  type RecordColumns,
  type TextColumn,
  type VehicleTelemetry,
} from './telemetry-codec.js';
import { isDerivedRecordId, recordId, traceIdOf } from './record-id.js';

/** value = offset + integer × scale: the resolution a field is stored at in a batch. */
export interface Resolution {
  scale: number;
  offset: number;
}

/** The resolution of a field path ("speed_kmh" style paths use the .proto's camel-cased names). */
export type ResolutionTable = (path: string) => Resolution | undefined;

/** A batch whose columns do not describe valid records. */
export class RecordColumnsError extends Error {
  readonly code = 'RECORD_COLUMNS_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'RecordColumnsError';
  }
}

const INTEGER_TYPES = new Set([
  'int32',
  'uint32',
  'sint32',
  'fixed32',
  'sfixed32',
  'int64',
  'uint64',
  'sint64',
  'fixed64',
  'sfixed64',
  'bool',
]);
const UNIT: Resolution = { scale: 1, offset: 0 };
/** Map keys become one path segment; anything else keeps the entry row-wise. */
const PATH_SEGMENT = /^[A-Za-z0-9_]+$/;

interface Leaf {
  field: protobuf.Field;
  text: boolean;
}

type Visit = (path: string, leaf: Leaf, value: unknown) => void;

/** Calls `visit` for each scalar field of `value`; repeated fields and odd map keys go to `rest`. */
function walk(
  value: Record<string, unknown>,
  type: protobuf.Type,
  prefix: string,
  visit: Visit,
  rest: Record<string, unknown>,
): void {
  for (const field of type.fieldsArray) {
    const v = value[field.name];
    if (v === undefined || v === null) continue;
    const path = prefix + field.name;
    if (field.map) {
      for (const [key, entry] of Object.entries(v as Record<string, unknown>)) {
        if (PATH_SEGMENT.test(key))
          walk(entry as Record<string, unknown>, field.resolvedType as protobuf.Type, `${path}.${key}.`, visit, {});
        else ((rest[field.name] ??= {}) as Record<string, unknown>)[key] = entry;
      }
    } else if (field.repeated) {
      if ((v as unknown[]).length > 0) rest[field.name] = v;
    } else if (field.resolvedType instanceof protobuf.Type) {
      const sub: Record<string, unknown> = {};
      walk(v as Record<string, unknown>, field.resolvedType, `${path}.`, visit, sub);
      if (Object.keys(sub).length > 0) rest[field.name] = sub;
    } else {
      visit(path, { field, text: field.type === 'string' }, v);
    }
  }
}

/** Sets `value` at a dotted path, creating the objects on the way. */
function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let node = target;
  for (let i = 0; i < parts.length - 1; i++) node = (node[parts[i] as string] ??= {}) as Record<string, unknown>;
  node[parts[parts.length - 1] as string] = value;
}

function mergeInto(target: Record<string, unknown>, source: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(source)) {
    if (value !== null && typeof value === 'object' && !Array.isArray(value))
      mergeInto((target[key] ??= {}) as Record<string, unknown>, value as Record<string, unknown>);
    else target[key] = value;
  }
}

function bitmap(flags: boolean[]): Uint8Array {
  if (flags.every(Boolean)) return new Uint8Array(0);
  const bits = new Uint8Array(Math.ceil(flags.length / 8));
  flags.forEach((on, i) => {
    if (on) bits[i >> 3] = (bits[i >> 3] as number) | (1 << (i & 7));
  });
  return bits;
}

function isPresent(bits: Uint8Array, i: number): boolean {
  return bits.length === 0 || (((bits[i >> 3] ?? 0) >> (i & 7)) & 1) === 1;
}

class NumericBuilder {
  readonly values: Array<number | undefined> = [];
  constructor(
    readonly path: string,
    readonly resolution: Resolution | undefined,
  ) {}

  build(count: number): NumericColumn {
    // Records without the field are holes in `values`; array methods would skip them.
    const all = Array.from({ length: count }, (_, i) => this.values[i]);
    const present = all.map((v) => v !== undefined);
    const values = all.filter((v): v is number => v !== undefined);
    const r = this.resolution;
    if (r !== undefined && r.scale > 0) {
      const ints = values.map((v) => Math.round((v - r.offset) / r.scale));
      if (ints.every(Number.isSafeInteger)) {
        let previous = 0;
        const deltas = ints.map((q) => {
          const d = q - previous;
          previous = q;
          return d;
        });
        return { path: this.path, scale: r.scale, offset: r.offset, present: bitmap(present), deltas, exact: [] };
      }
    }
    return { path: this.path, scale: 0, offset: 0, present: bitmap(present), deltas: [], exact: values };
  }
}

class TextBuilder {
  readonly values: Array<string | undefined> = [];
  constructor(readonly path: string) {}

  build(count: number): TextColumn {
    const all = Array.from({ length: count }, (_, i) => this.values[i]);
    const dictionary: string[] = [];
    const slot = new Map<string, number>();
    const indexes: number[] = [];
    for (const v of all) {
      if (v === undefined) continue;
      let i = slot.get(v);
      if (i === undefined) {
        i = dictionary.push(v) - 1;
        slot.set(v, i);
      }
      indexes.push(i);
    }
    return { path: this.path, present: bitmap(all.map((v) => v !== undefined)), dictionary, indexes };
  }
}

/** Turns records into columns. Numbers with a resolution are stored at it (lossy by at most half a step). */
export function toColumns(records: readonly VehicleTelemetry[], resolution: ResolutionTable): RecordColumns {
  const numbers = new Map<string, NumericBuilder>();
  const texts = new Map<string, TextBuilder>();
  const remainders: RecordColumns['remainders'] = [];
  records.forEach((record, index) => {
    const rest: Record<string, unknown> = {};
    walk(
      record as unknown as Record<string, unknown>,
      recordType,
      '',
      (path, leaf, value) => {
        if (leaf.text) {
          // Ids that follow from run + sequence are left out; the receiver derives them.
          if (path === 'messageId' && isDerivedRecordId(record.messageId, record.correlationId, record.sequence))
            return;
          if (path === 'traceId' && value === traceIdOf(record.messageId)) return;
          let column = texts.get(path);
          if (column === undefined) texts.set(path, (column = new TextBuilder(path)));
          column.values[index] = value as string;
          return;
        }
        let column = numbers.get(path);
        if (column === undefined)
          numbers.set(
            path,
            (column = new NumericBuilder(
              path,
              INTEGER_TYPES.has(leaf.field.type) || leaf.field.resolvedType instanceof protobuf.Enum
                ? UNIT
                : resolution(path),
            )),
          );
        column.values[index] = Number(value);
      },
      rest,
    );
    if (Object.keys(rest).length > 0) remainders.push({ index, fields: rest });
  });
  return {
    count: records.length,
    numbers: [...numbers.values()].map((c) => c.build(records.length)),
    texts: [...texts.values()].map((c) => c.build(records.length)),
    remainders,
  };
}

/** Rebuilds the records of a batch; throws RecordColumnsError when the columns do not fit together. */
export function fromColumns(columns: RecordColumns): VehicleTelemetry[] {
  const count = columns.count;
  if (!Number.isInteger(count) || count < 0 || count > 1_000_000)
    throw new RecordColumnsError(`record count ${count} out of range`);
  const rows: Array<Record<string, unknown>> = Array.from({ length: count }, () => ({}));
  for (const column of columns.numbers) {
    const stored = column.scale > 0 ? column.deltas.length : column.exact.length;
    let k = 0;
    let q = 0;
    for (let i = 0; i < count; i++) {
      if (!isPresent(column.present, i)) continue;
      if (k >= stored) throw new RecordColumnsError(`column ${column.path}: ${stored} values for more present records`);
      if (column.scale > 0) {
        q += column.deltas[k] as number;
        setPath(rows[i] as Record<string, unknown>, column.path, column.offset + q * column.scale);
      } else {
        setPath(rows[i] as Record<string, unknown>, column.path, column.exact[k]);
      }
      k++;
    }
    if (k !== stored) throw new RecordColumnsError(`column ${column.path}: ${stored} values for ${k} present records`);
  }
  for (const column of columns.texts) {
    let k = 0;
    for (let i = 0; i < count; i++) {
      if (!isPresent(column.present, i)) continue;
      const value = column.dictionary[column.indexes[k] ?? -1];
      if (value === undefined)
        throw new RecordColumnsError(`column ${column.path}: index ${k} has no dictionary entry`);
      setPath(rows[i] as Record<string, unknown>, column.path, value);
      k++;
    }
  }
  for (const { index, fields } of columns.remainders) {
    const row = rows[index];
    if (row === undefined) throw new RecordColumnsError(`remainder for record ${index} of ${count}`);
    mergeInto(row, fields);
  }
  return rows.map((row, i) => {
    if (typeof row.correlationId !== 'string' || typeof row.sequence !== 'number')
      throw new RecordColumnsError(`record ${i}: no run id or sequence to derive its id from`);
    row.messageId ??= recordId(row.correlationId, row.sequence);
    row.traceId ??= traceIdOf(row.messageId as string);
    // One encode/decode turns column values into the record shape every receiver sees (enums, bools, defaults).
    return decodeTelemetry(encodeTelemetry(row as unknown as VehicleTelemetry));
  });
}
