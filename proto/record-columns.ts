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

/**
 * A field path of one batch ("signals.EngineLoad.mean"), made once per batch with the column it
 * fills: walking a record then builds no path strings (they were most of a batch's garbage).
 */
class PathNode {
  private children: Map<string, PathNode | null> | undefined;
  column: NumericBuilder | TextBuilder | undefined;
  constructor(readonly path: string) {}

  /** The child path; null for a map key that cannot be a path segment (kept row-wise). */
  child(name: string, isMapKey = false): PathNode | null {
    this.children ??= new Map();
    let node = this.children.get(name);
    if (node === undefined) {
      node =
        isMapKey && !PATH_SEGMENT.test(name) ? null : new PathNode(this.path === '' ? name : `${this.path}.${name}`);
      this.children.set(name, node);
    }
    return node;
  }
}

type Visit = (node: PathNode, field: protobuf.Field, value: unknown) => void;

/**
 * Calls `visit` for each scalar field of `value` and returns what is left: repeated fields and odd
 * map keys, or undefined when nothing is (most records: no object made for them).
 */
function walk(
  value: Record<string, unknown>,
  type: protobuf.Type,
  parent: PathNode,
  visit: Visit,
): Record<string, unknown> | undefined {
  let rest: Record<string, unknown> | undefined;
  for (const field of type.fieldsArray) {
    const v = value[field.name];
    if (v === undefined || v === null) continue;
    const node = parent.child(field.name) as PathNode;
    if (field.map) {
      const entries = v as Record<string, unknown>;
      for (const key in entries) {
        const keyNode = node.child(key, true);
        if (keyNode !== null)
          walk(entries[key] as Record<string, unknown>, field.resolvedType as protobuf.Type, keyNode, visit);
        else (((rest ??= {})[field.name] ??= {}) as Record<string, unknown>)[key] = entries[key];
      }
    } else if (field.repeated) {
      if ((v as unknown[]).length > 0) (rest ??= {})[field.name] = v;
    } else if (field.resolvedType instanceof protobuf.Type) {
      const sub = walk(v as Record<string, unknown>, field.resolvedType, node, visit);
      if (sub !== undefined) (rest ??= {})[field.name] = sub;
    } else {
      visit(node, field, v);
    }
  }
  return rest;
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

function isPresent(bits: Uint8Array, i: number): boolean {
  return bits.length === 0 || (((bits[i >> 3] ?? 0) >> (i & 7)) & 1) === 1;
}

/** Bit i set when record i has the field; empty when every record has it. */
function presence(count: number, has: (i: number) => boolean): Uint8Array {
  const bits = new Uint8Array((count + 7) >> 3);
  let all = true;
  for (let i = 0; i < count; i++) {
    if (!has(i)) all = false;
    else bits[i >> 3] = (bits[i >> 3] as number) | (1 << (i & 7));
  }
  return all ? new Uint8Array(0) : bits;
}

class NumericBuilder {
  // Typed by record index: an array of numbers with holes boxed each value (most of a batch's garbage).
  private readonly values: Float64Array;
  private readonly has: Uint8Array;
  constructor(
    readonly path: string,
    readonly resolution: Resolution | undefined,
    count: number,
  ) {
    this.values = new Float64Array(count);
    this.has = new Uint8Array(count);
  }

  set(index: number, value: number): void {
    this.values[index] = value;
    this.has[index] = 1;
  }

  // Arrays of their final length, filled by index: grown by push, and through an array of the values
  // on the way to the deltas, they were the largest allocation left in packing a batch.
  build(count: number): NumericColumn {
    const present = presence(count, (i) => this.has[i] === 1);
    let n = 0;
    for (let i = 0; i < count; i++) n += this.has[i] as number;
    const r = this.resolution;
    if (r !== undefined && r.scale > 0) {
      const deltas = new Array<number>(n);
      let previous = 0;
      for (let i = 0, k = 0; i < count; i++) {
        if (this.has[i] !== 1) continue;
        const q = Math.round(((this.values[i] as number) - r.offset) / r.scale);
        if (!Number.isSafeInteger(q))
          return { path: this.path, scale: 0, offset: 0, present, deltas: [], exact: this.exact(count, n) };
        deltas[k++] = q - previous;
        previous = q;
      }
      return { path: this.path, scale: r.scale, offset: r.offset, present, deltas, exact: [] };
    }
    return { path: this.path, scale: 0, offset: 0, present, deltas: [], exact: this.exact(count, n) };
  }

  /** The `n` values present, in record order. */
  private exact(count: number, n: number): number[] {
    const values = new Array<number>(n);
    for (let i = 0, k = 0; i < count; i++) if (this.has[i] === 1) values[k++] = this.values[i] as number;
    return values;
  }
}

class TextBuilder {
  readonly values: Array<string | undefined> = [];
  constructor(readonly path: string) {}

  build(count: number): TextColumn {
    const dictionary: string[] = [];
    const slot = new Map<string, number>();
    const indexes: number[] = [];
    for (let i = 0; i < count; i++) {
      const v = this.values[i];
      if (v === undefined) continue;
      let k = slot.get(v);
      if (k === undefined) {
        k = dictionary.push(v) - 1;
        slot.set(v, k);
      }
      indexes.push(k);
    }
    return { path: this.path, present: presence(count, (i) => this.values[i] !== undefined), dictionary, indexes };
  }
}

/** Turns records into columns. Numbers with a resolution are stored at it (lossy by at most half a step). */
export function toColumns(records: readonly VehicleTelemetry[], resolution: ResolutionTable): RecordColumns {
  const root = new PathNode('');
  const numbers: NumericBuilder[] = [];
  const texts: TextBuilder[] = [];
  const remainders: RecordColumns['remainders'] = [];
  records.forEach((record, index) => {
    const rest = walk(record as unknown as Record<string, unknown>, recordType, root, (node, field, value) => {
      if (field.type === 'string') {
        // Ids that follow from run + sequence are left out; the receiver derives them.
        if (node.path === 'messageId' && isDerivedRecordId(record.messageId, record.correlationId, record.sequence))
          return;
        if (node.path === 'traceId' && value === traceIdOf(record.messageId)) return;
        if (node.column === undefined) texts.push((node.column = new TextBuilder(node.path)));
        (node.column as TextBuilder).values[index] = value as string;
        return;
      }
      if (node.column === undefined) {
        const unit = INTEGER_TYPES.has(field.type) || field.resolvedType instanceof protobuf.Enum;
        numbers.push(
          (node.column = new NumericBuilder(node.path, unit ? UNIT : resolution(node.path), records.length)),
        );
      }
      (node.column as NumericBuilder).set(index, Number(value));
    });
    if (rest !== undefined) remainders.push({ index, fields: rest });
  });
  return {
    count: records.length,
    numbers: numbers.map((c) => c.build(records.length)),
    texts: texts.map((c) => c.build(records.length)),
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
