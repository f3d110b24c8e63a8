// The numeric columns written by hand (proto/column-wire.ts) must be protobufjs's bytes exactly:
// compared with protobufjs's own encoder over a table of edge cases, real records and random columns.
import t from 'tap';
import protobuf from 'protobufjs';
import { join } from 'node:path';
import { projectRoot } from '../core/project-root.js';
import { toColumns } from '../proto/record-columns.js';
import {
  decodeBatch,
  encodeBatch,
  type NumericColumn,
  type RecordColumns,
  type TelemetryBatch,
} from '../proto/telemetry-codec.js';
import { SampleRecords } from '../bench/rig/sample-records.js';
import { SeededRandom } from '../bench/rig/seeded-random.js';

const reference = protobuf
  .loadSync(join(projectRoot(), 'proto', 'telemetry.proto'))
  .lookupType('v2c.telemetry.v1.TelemetryBatch');
const protobufjsBytes = (batch: TelemetryBatch): Buffer => Buffer.from(reference.encode(batch).finish());

const batchOf = (columns: RecordColumns): TelemetryBatch => ({
  batchId: '0b9f1c2e-aaaa-8bbb-9ccc-0123456789ab',
  vehicleId: 'V2CREF00000000001',
  schemaVersion: '1.0',
  createdMs: 1_763_800_000_123,
  records: [],
  columns,
});

const numeric = (path: string, fields: Partial<NumericColumn>): NumericColumn => ({
  path,
  scale: 0.01,
  offset: 0,
  present: new Uint8Array(0),
  deltas: [],
  exact: [],
  ...fields,
});

const columnsOf = (numbers: NumericColumn[], extra: Partial<RecordColumns> = {}): RecordColumns => ({
  count: 3,
  numbers,
  texts: [],
  remainders: [],
  ...extra,
});

t.test('the same bytes as protobufjs (table)', async (t) => {
  const cases: Array<[name: string, columns: RecordColumns]> = [
    ['no columns at all', columnsOf([], { count: 0 })],
    [
      'small deltas around the one-byte edges',
      columnsOf([numeric('speedKmh', { deltas: [0, 1, -1, 63, -64, 64, -65] })]),
    ],
    [
      'deltas at 32-bit and safe-integer edges',
      columnsOf([
        numeric('deviceTimeMs', {
          scale: 1,
          deltas: [2 ** 31 - 1, -(2 ** 31), 2 ** 32, -(2 ** 32), 2 ** 53 - 1, -(2 ** 53 - 1), 1.7e12, -1.7e12],
        }),
      ]),
    ],
    ['deltas beyond safe integers', columnsOf([numeric('x', { deltas: [2 ** 54, -(2 ** 60), 2 ** 63, -(2 ** 64)] })])],
    [
      'exact doubles, odd ones included',
      columnsOf([
        numeric('gps.latitudeDeg', { scale: 0, exact: [0, -0, NaN, Infinity, -Infinity, 1e-300, 48.675518] }),
      ]),
    ],
    [
      'a scale and an offset',
      columnsOf([numeric('batteryVoltageV', { scale: 0.05, offset: -40, deltas: [1000, 2, -3] })]),
    ],
    ['presence bits', columnsOf([numeric('gear', { scale: 1, present: Uint8Array.of(0b101), deltas: [3, 1] })])],
    ['a path in UTF-8 beyond ASCII', columnsOf([numeric('signals.Température_😀.mean', { deltas: [5] })])],
    [
      'texts and remainders beside numbers',
      columnsOf([numeric('engineRpm', { scale: 1, deltas: [800, 12] })], {
        texts: [{ path: 'bootId', present: new Uint8Array(0), dictionary: ['a', 'b'], indexes: [0, 1, 1] }],
        remainders: [{ index: 1, fields: { diagnostics: { milOn: true, dtcs: ['P0301'] } } }],
      }),
    ],
  ];
  for (const [name, columns] of cases) {
    const batch = batchOf(columns);
    t.same(Buffer.from(encodeBatch(batch)), protobufjsBytes(batch), name);
  }
});

t.test('the same bytes for real records, and they decode to the same columns', async (t) => {
  const samples = new SampleRecords(5);
  const records = Array.from({ length: 50 }, (_, i) => samples.record(i, i % 10 === 0 ? 0 : 1));
  const columns = toColumns(records, (path) => (path.startsWith('signals.') ? { scale: 0.001, offset: 0 } : undefined));
  const batch = batchOf(columns);
  const bytes = encodeBatch(batch);
  t.same(Buffer.from(bytes), protobufjsBytes(batch));
  t.equal(decodeBatch(bytes).columns?.numbers.length, columns.numbers.length, 'every numeric column decodes');
});

t.test('the same bytes for 300 random batches of numeric columns', async (t) => {
  const r = new SeededRandom(77);
  const value = (): number => {
    switch (r.int(0, 4)) {
      case 0:
        return r.int(-64, 64);
      case 1:
        return r.int(-(2 ** 31), 2 ** 31);
      case 2:
        return Math.round((r.float() - 0.5) * 2 ** 53);
      case 3:
        return (r.float() - 0.5) * 2 ** 70;
      default:
        return (r.float() - 0.5) * 1e6;
    }
  };
  let mismatches = 0;
  for (let b = 0; b < 300; b++) {
    const numbers = Array.from({ length: r.int(0, 12) }, (_, i) =>
      numeric(`signals.S${i}.mean`, {
        scale: r.int(0, 1) === 0 ? 0 : r.float(),
        offset: r.float() * 100 - 50,
        present: Uint8Array.from({ length: r.int(0, 3) }, () => r.int(0, 255)),
        deltas: Array.from({ length: r.int(0, 60) }, () => Math.trunc(value())),
        exact: Array.from({ length: r.int(0, 10) }, value),
      }),
    );
    const batch = batchOf(columnsOf(numbers, { count: r.int(0, 60) }));
    if (!Buffer.from(encodeBatch(batch)).equals(protobufjsBytes(batch))) mismatches++;
  }
  t.equal(mismatches, 0, 'no batch differs');
});
