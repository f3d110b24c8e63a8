// The compact encoding of one live record (CompactRecord in telemetry.proto, issue 15). A row-wise
// record repeats every signal name, both UUIDs and a random id, and sends each statistic as a
// double: 1,651 B on the wire for a reference window. Here the field paths, resolutions and the
// run's context go once into a RecordLayout the receiver keeps, and the record carries integers at
// their DBC resolution, each less a prediction made from the same record and its layout only (never
// from another record, which QoS 1 redelivery or reordering could keep from the receiver). Version 2
// adds the layout's bases (the values of the record that made it) to predict from: slow signals,
// odometer, position and the clocks then cost a byte or two less each (bench -- wire).
import { createHash } from 'node:crypto';
import { fromColumns, toColumns, type ResolutionTable } from './record-columns.js';
import {
  decodeCompact,
  encodeCompact,
  encodeLayout,
  type CompactRecord,
  type RecordColumns,
  type RecordLayout,
  type VehicleTelemetry,
} from './telemetry-codec.js';

export const COMPACT_VERSION = 2;
/** Versions a receiver decodes: 1 from gateways not yet upgraded (no bases), and this one. */
const DECODABLE_VERSIONS = new Set([1, COMPACT_VERSION]);
/** The run's context: the same in every record of a run, so it lives in the layout. */
const CONTEXT_PATHS = ['vehicleId', 'schemaVersion', 'correlationId', 'bootId'] as const;
const CONTEXT = new Set<string>(CONTEXT_PATHS);
/** Layouts a gateway keeps at once (a run has one for windows and a few for events). */
const MAX_LAYOUTS = 64;
const STAT = /^signals\.(.+)\.(mean|min|max|last|count)$/;
const STAT_ORDER: Record<string, number> = { mean: 0, min: 1, max: 2, last: 3, count: 4 };

export type CompactRecordErrorCode = 'COMPACT_VERSION' | 'COMPACT_UNKNOWN_LAYOUT' | 'COMPACT_INVALID';

/** A compact record or layout that cannot be read; `UNKNOWN_LAYOUT` may resolve once the layout arrives. */
export class CompactRecordError extends Error {
  constructor(
    readonly code: CompactRecordErrorCode,
    message: string,
    /** The layout the record asked for (hex), when that is what is wrong. */
    readonly layoutKey: string | null = null,
  ) {
    super(message);
    this.name = 'CompactRecordError';
  }
}

type NumberLayout = RecordLayout['numbers'][number];

/** The id a layout must carry: the first 8 bytes of the SHA-256 of its encoding without the id. */
export function layoutIdOf(layout: Omit<RecordLayout, 'layoutId'>): Uint8Array {
  // A base of 0 is no base: left off, as proto3 leaves it off the wire (so version 1 ids still hold).
  const numbers = layout.numbers.map(({ base, ...n }) => (base === undefined || base === 0 ? n : { ...n, base }));
  const bytes = encodeLayout({ ...layout, numbers, layoutId: new Uint8Array(0) });
  return new Uint8Array(createHash('sha256').update(bytes).digest().subarray(0, 8));
}

export function layoutKey(id: Uint8Array): string {
  return Buffer.from(id).toString('hex');
}

/**
 * How each layout number is predicted: `from` the index of the number it is predicted from (-1:
 * from its base alone), and whether the prediction is that number `shifted` by the two bases'
 * difference. Predictors come first in a layout's order (see canonicalOrder), so a decoder has
 * them when it needs them.
 */
interface Predictors {
  from: Int32Array;
  shifted: Uint8Array;
}

function predictors(numbers: readonly NumberLayout[], version: number): Predictors {
  const index = new Map(numbers.map((n, i) => [n.path, i]));
  const shifted = new Uint8Array(numbers.length);
  let previousCount = -1;
  const from = Int32Array.from(numbers, (n, i) => {
    const same = (j: number | undefined): number => {
      const p = j === undefined ? undefined : numbers[j];
      return p !== undefined && j !== undefined && j < i && p.scale === n.scale && p.offset === n.offset ? j : -1;
    };
    if (n.scale === 0) return -1;
    if (n.path === 'correctedTimeMs') return same(index.get('deviceTimeMs'));
    if (n.path === 'monoTimeMs' && version >= 2) {
      const j = same(index.get('deviceTimeMs'));
      shifted[i] = j >= 0 ? 1 : 0;
      return j;
    }
    const stat = STAT.exec(n.path);
    if (stat === null) return -1;
    if (stat[2] === 'count') {
      const j = same(previousCount >= 0 ? previousCount : undefined);
      previousCount = i;
      return j;
    }
    return stat[2] === 'mean' ? -1 : same(index.get(`signals.${stat[1] as string}.mean`));
  });
  return { from, shifted };
}

/** Whether number `i`'s prediction starts from its base (so the layout must carry one). */
function usesBase(p: Predictors, i: number): boolean {
  return (p.from[i] as number) < 0 || p.shifted[i] === 1;
}

function predicted(p: Predictors, numbers: readonly NumberLayout[], quantised: readonly number[], i: number): number {
  const j = p.from[i] as number;
  const base = (numbers[i] as NumberLayout).base ?? 0;
  if (j < 0) return base;
  const q = quantised[j] as number;
  return p.shifted[i] === 1 ? base + q - ((numbers[j] as NumberLayout).base ?? 0) : q;
}

/** Paths in a layout's order: each signal's mean before its other statistics, device time before corrected. */
function canonicalOrder(a: NumberLayout, b: NumberLayout): number {
  const key = (path: string): string => {
    if (path === 'correctedTimeMs') return 'deviceTimeMs.1';
    const stat = STAT.exec(path);
    return stat === null ? path : `signals.${stat[1] as string}.${STAT_ORDER[stat[2] as string] as number}`;
  };
  const [ka, kb] = [key(a.path), key(b.path)];
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

interface KnownLayout {
  layout: RecordLayout;
  key: string;
  predict: Predictors;
}

/** Encodes live records compactly; a record whose fields differ from every layout so far makes a new one. */
export class CompactEncoder {
  private readonly layouts = new Map<string, KnownLayout>();

  constructor(private readonly resolution: ResolutionTable) {}

  /** The payload of `record`, and the layout it follows (a receiver must have it first). */
  encode(record: VehicleTelemetry): { layout: RecordLayout; key: string; payload: Uint8Array } {
    const columns = toColumns([record], this.resolution);
    const byPath = new Map(columns.numbers.map((c) => [c.path, c]));
    const quantisedOf = (path: string): number => byPath.get(path)?.deltas[0] ?? 0;
    const numbers = columns.numbers.map(({ path, scale, offset }) => ({ path, scale, offset })).sort(canonicalOrder);
    const texts = columns.texts.map((c) => c.path).filter((p) => !CONTEXT.has(p));
    const context: Partial<VehicleTelemetry> = {};
    for (const path of CONTEXT_PATHS) (context as Record<string, unknown>)[path] = record[path];
    const known = this.layoutFor(numbers, texts, context, quantisedOf);
    const quantised = known.layout.numbers.map((n) => quantisedOf(n.path));
    const values: number[] = [];
    const exact: number[] = [];
    known.layout.numbers.forEach((n, i) => {
      if (n.scale === 0) exact.push(byPath.get(n.path)?.exact[0] ?? 0);
      else values.push((quantised[i] as number) - predicted(known.predict, known.layout.numbers, quantised, i));
    });
    const textOf = new Map(columns.texts.map((c) => [c.path, c.dictionary[0] ?? '']));
    const compact: CompactRecord = {
      version: COMPACT_VERSION,
      layoutId: known.layout.layoutId,
      values,
      exact,
      texts: known.layout.texts.map((p) => textOf.get(p) ?? ''),
      ...(columns.remainders[0] !== undefined ? { rest: columns.remainders[0].fields } : {}),
    };
    return { layout: known.layout, key: known.key, payload: encodeCompact(compact) };
  }

  /** The layout for these fields; a new one takes its bases from the record that makes it (`quantised`). */
  private layoutFor(
    numbers: NumberLayout[],
    texts: string[],
    context: Partial<VehicleTelemetry>,
    quantised: (path: string) => number,
  ): KnownLayout {
    const signature = JSON.stringify([numbers, texts, context]);
    const known = this.layouts.get(signature);
    if (known !== undefined) return known;
    const predict = predictors(numbers, COMPACT_VERSION);
    const based = numbers.map((n, i) =>
      n.scale !== 0 && usesBase(predict, i) ? { ...n, base: quantised(n.path) } : n,
    );
    const layout: RecordLayout = {
      layoutId: layoutIdOf({ numbers: based, texts, context }),
      numbers: based,
      texts,
      context,
    };
    const made = { layout, key: layoutKey(layout.layoutId), predict };
    if (this.layouts.size >= MAX_LAYOUTS) this.layouts.delete(this.layouts.keys().next().value as string);
    this.layouts.set(signature, made);
    return made;
  }
}

/**
 * A layout as received: its numbers normalised (proto3 leaves a 0 scale or offset off the wire)
 * and its id checked against its content, so a wrong or forged layout is never used.
 */
export function checkedLayout(layout: RecordLayout): RecordLayout {
  const numbers = layout.numbers.map((n) => ({
    path: n.path,
    scale: n.scale ?? 0,
    offset: n.offset ?? 0,
    base: n.base ?? 0,
  }));
  const normalised = { ...layout, numbers, texts: layout.texts ?? [], context: layout.context ?? {} };
  const expected = layoutKey(layoutIdOf(normalised));
  if (layoutKey(layout.layoutId) !== expected)
    throw new CompactRecordError(
      'COMPACT_INVALID',
      `layout ${layoutKey(layout.layoutId)} does not match its content (expected id ${expected})`,
    );
  return normalised;
}

/** Predictors of each layout a receiver decodes with, by version (its layouts are kept objects). */
const decodePredictors = new WeakMap<RecordLayout, Map<number, Predictors>>();

/** Rebuilds a record from its compact payload; `layoutOf` finds a checked layout by its key. */
export function decodeCompactRecord(
  payload: Uint8Array,
  layoutOf: (key: string) => RecordLayout | undefined,
): VehicleTelemetry {
  const compact = decodeCompact(payload);
  if (!DECODABLE_VERSIONS.has(compact.version))
    throw new CompactRecordError(
      'COMPACT_VERSION',
      `compact record version ${compact.version}; expected one of ${[...DECODABLE_VERSIONS].join(', ')}`,
    );
  const key = layoutKey(compact.layoutId);
  const layout = layoutOf(key);
  if (layout === undefined) throw new CompactRecordError('COMPACT_UNKNOWN_LAYOUT', `no layout ${key} received`, key);
  const scaled = layout.numbers.filter((n) => n.scale !== 0).length;
  if (compact.values.length !== scaled || compact.exact.length !== layout.numbers.length - scaled)
    throw new CompactRecordError(
      'COMPACT_INVALID',
      `layout ${key} has ${scaled} scaled and ${layout.numbers.length - scaled} exact numbers; the record has ${compact.values.length} and ${compact.exact.length}`,
    );
  if (compact.texts.length !== layout.texts.length)
    throw new CompactRecordError(
      'COMPACT_INVALID',
      `layout ${key} has ${layout.texts.length} texts; the record has ${compact.texts.length}`,
    );
  if (compact.version === 1 && layout.numbers.some((n) => (n.base ?? 0) !== 0))
    throw new CompactRecordError(
      'COMPACT_INVALID',
      `a version 1 record under layout ${key}, which has bases (version 2)`,
    );
  let byVersion = decodePredictors.get(layout);
  if (byVersion === undefined) decodePredictors.set(layout, (byVersion = new Map<number, Predictors>()));
  let predict = byVersion.get(compact.version);
  if (predict === undefined) byVersion.set(compact.version, (predict = predictors(layout.numbers, compact.version)));
  const quantised: number[] = [];
  let [v, x] = [0, 0];
  const numbers = layout.numbers.map((n, i) => {
    if (n.scale === 0) return { ...n, present: new Uint8Array(0), deltas: [], exact: [compact.exact[x++] as number] };
    quantised[i] = (compact.values[v++] as number) + predicted(predict, layout.numbers, quantised, i);
    return { ...n, present: new Uint8Array(0), deltas: [quantised[i]], exact: [] };
  });
  const text = (path: string, value: string): RecordColumns['texts'][number] => ({
    path,
    present: new Uint8Array(0),
    dictionary: [value],
    indexes: [0],
  });
  const context = CONTEXT_PATHS.flatMap((p) => {
    const value = (layout.context as Record<string, unknown>)[p];
    return typeof value === 'string' ? [text(p, value)] : [];
  });
  const columns: RecordColumns = {
    count: 1,
    numbers,
    texts: [...context, ...layout.texts.map((p, i) => text(p, compact.texts[i] as string))],
    remainders: compact.rest !== undefined ? [{ index: 0, fields: compact.rest }] : [],
  };
  return fromColumns(columns)[0] as VehicleTelemetry;
}
