// The wire bytes of a batch's numeric columns, written straight into one buffer. protobufjs queues
// one write operation per packed number (and a LongBits object per sint64), and a 50-record batch
// has ~6,000 of them: a third of everything a drain allocated, kept alive across scavenges until
// the batch was finished, so promoted (issue 14). The bytes are protobufjs's own, field for field
// (same order, same checks, its sint64 arithmetic), which the tests compare.
import protobuf from 'protobufjs';
import type { NumericColumn, RecordColumns, TelemetryBatch } from './telemetry-codec.js';

const { utf8 } = protobuf.util;

/** protobufjs's encoders for the parts written as they were (few and small). */
export interface ColumnBatchParts {
  /** The batch without its columns. */
  head(batch: Omit<TelemetryBatch, 'columns'>): Uint8Array;
  text(column: RecordColumns['texts'][number]): Uint8Array;
  remainder(remainder: RecordColumns['remainders'][number]): Uint8Array;
}

// Field keys (field number << 3 | wire type).
const BATCH_COLUMNS = (6 << 3) | 2;
const COLUMNS_COUNT = (1 << 3) | 0;
const COLUMNS_NUMBERS = (2 << 3) | 2;
const COLUMNS_TEXTS = (3 << 3) | 2;
const COLUMNS_REMAINDERS = (4 << 3) | 2;
const NUMERIC_PATH = (1 << 3) | 2;
const NUMERIC_SCALE = (2 << 3) | 1;
const NUMERIC_OFFSET = (3 << 3) | 1;
const NUMERIC_PRESENT = (4 << 3) | 2;
const NUMERIC_DELTAS = (5 << 3) | 2;
const NUMERIC_EXACT = (6 << 3) | 2;

function varint32Size(value: number): number {
  const v = value >>> 0;
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;
}

// The zigzag halves [lo, hi] of the last number given to zigzag64: a typed array, so no object per
// value (a module-level `let` holding a uint32 boxed it on every store).
const zz = new Uint32Array(2);

/** protobufjs's LongBits.fromNumber(value).zzEncode(), into `zz`. */
function zigzag64(value: number): void {
  const negative = value < 0;
  const magnitude = negative ? -value : value;
  let lo = magnitude >>> 0;
  let hi = ((magnitude - lo) / 4294967296) >>> 0;
  if (negative) {
    hi = ~hi >>> 0;
    lo = ~lo >>> 0;
    if (++lo > 0xffffffff) {
      lo = 0;
      if (++hi > 0xffffffff) hi = 0;
    }
  }
  const mask = hi >> 31;
  zz[1] = ((hi << 1) | (lo >>> 31)) ^ mask;
  zz[0] = (lo << 1) ^ mask;
}

function varint64Size(): number {
  const lo = zz[0] as number;
  const hi = zz[1] as number;
  const part1 = ((lo >>> 28) | (hi << 4)) >>> 0;
  const part2 = hi >>> 24;
  if (part2 !== 0) return part2 < 128 ? 9 : 10;
  if (part1 !== 0) return part1 < 0x4000 ? (part1 < 0x80 ? 5 : 6) : part1 < 0x200000 ? 7 : 8;
  return lo < 0x4000 ? (lo < 0x80 ? 1 : 2) : lo < 0x200000 ? 3 : 4;
}

// The per-value loops index the arrays: a for-of there made an iterator result per value
// (~7 KB per drained record, the allocation profile's largest item; issue 14).
function deltasSize(deltas: readonly number[]): number {
  let size = 0;
  for (let i = 0; i < deltas.length; i++) {
    zigzag64(deltas[i] as number);
    size += varint64Size();
  }
  return size;
}

/** Length of a length-delimited field with `size` bytes of content, key included. */
function fieldSize(size: number): number {
  return 1 + varint32Size(size) + size;
}

interface NumericSizes {
  /** The column's fields (without its own key and length). */
  total: number;
  /** Its packed deltas. */
  deltas: number;
}

function numericSizes(c: NumericColumn): NumericSizes {
  const deltas = deltasSize(c.deltas);
  // path, scale, offset and present are always set, so always written (protobufjs writes what is set).
  let total = fieldSize(utf8.length(c.path)) + 9 + 9 + fieldSize(c.present.length);
  if (c.deltas.length > 0) total += fieldSize(deltas);
  if (c.exact.length > 0) total += fieldSize(8 * c.exact.length);
  return { total, deltas };
}

class WireWriter {
  private pos = 0;
  private readonly view: DataView;
  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get written(): number {
    return this.pos;
  }

  varint32(value: number): void {
    let v = value >>> 0;
    while (v > 127) {
      this.bytes[this.pos++] = (v & 127) | 128;
      v >>>= 7;
    }
    this.bytes[this.pos++] = v;
  }

  /** The number zigzag64 left in `zz`. */
  varint64(): void {
    let lo = zz[0] as number;
    let hi = zz[1] as number;
    while (hi !== 0) {
      this.bytes[this.pos++] = (lo & 127) | 128;
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>>= 7;
    }
    while (lo > 127) {
      this.bytes[this.pos++] = (lo & 127) | 128;
      lo >>>= 7;
    }
    this.bytes[this.pos++] = lo;
  }

  double(value: number): void {
    this.view.setFloat64(this.pos, value, true);
    this.pos += 8;
  }

  raw(bytes: Uint8Array): void {
    this.bytes.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  delimited(key: number, bytes: Uint8Array): void {
    this.varint32(key);
    this.varint32(bytes.length);
    this.raw(bytes);
  }

  string(key: number, text: string): void {
    this.varint32(key);
    this.varint32(utf8.length(text));
    this.pos += utf8.write(text, this.bytes, this.pos);
  }

  numeric(c: NumericColumn, sizes: NumericSizes): void {
    this.varint32(COLUMNS_NUMBERS);
    this.varint32(sizes.total);
    this.string(NUMERIC_PATH, c.path);
    this.varint32(NUMERIC_SCALE);
    this.double(c.scale);
    this.varint32(NUMERIC_OFFSET);
    this.double(c.offset);
    this.delimited(NUMERIC_PRESENT, c.present);
    if (c.deltas.length > 0) {
      this.varint32(NUMERIC_DELTAS);
      this.varint32(sizes.deltas);
      const deltas = c.deltas;
      for (let i = 0; i < deltas.length; i++) {
        zigzag64(deltas[i] as number);
        this.varint64();
      }
    }
    if (c.exact.length > 0) {
      this.varint32(NUMERIC_EXACT);
      this.varint32(8 * c.exact.length);
      const exact = c.exact;
      for (let i = 0; i < exact.length; i++) this.double(exact[i] as number);
    }
  }
}

/** A batch that carries `columns`, encoded as protobufjs would, in one buffer of its exact size. */
export function encodeColumnBatch(batch: TelemetryBatch, columns: RecordColumns, parts: ColumnBatchParts): Uint8Array {
  const head = parts.head(batch);
  const sizes = columns.numbers.map(numericSizes);
  const texts = columns.texts.map((t) => parts.text(t));
  const remainders = columns.remainders.map((r) => parts.remainder(r));
  let size = 1 + varint32Size(columns.count);
  for (const n of sizes) size += fieldSize(n.total);
  for (const t of texts) size += fieldSize(t.length);
  for (const r of remainders) size += fieldSize(r.length);
  const out = new WireWriter(new Uint8Array(head.length + fieldSize(size)));
  out.raw(head);
  out.varint32(BATCH_COLUMNS);
  out.varint32(size);
  out.varint32(COLUMNS_COUNT);
  out.varint32(columns.count);
  columns.numbers.forEach((c, i) => out.numeric(c, sizes[i] as NumericSizes));
  for (const t of texts) out.delimited(COLUMNS_TEXTS, t);
  for (const r of remainders) out.delimited(COLUMNS_REMAINDERS, r);
  if (out.written !== out.bytes.length)
    throw new Error(`column batch: wrote ${out.written} of the ${out.bytes.length} bytes sized`);
  return out.bytes;
}
