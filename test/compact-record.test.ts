// The compact single-record encoding (proto/compact-record.ts): every field of the reference
// drive's records comes back at its resolution, in any order and as often as delivered; what is
// malformed, forged or unknown is refused with a code.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../core/project-root.js';
import { referenceDriveRecords } from '../bench/rig/drive-records.js';
import { CompactEncoder, checkedLayout, decodeCompactRecord, layoutKey } from '../proto/compact-record.js';
import { recordDifferences } from './helpers.js';
import {
  RecordKind,
  TelemetryDecodeError,
  decodeCompact,
  decodeLayout,
  decodeTelemetry,
  encodeCompact,
  encodeLayout,
  encodeTelemetry,
  type RecordLayout,
  type VehicleTelemetry,
} from '../proto/telemetry-codec.js';

/** A receiver's cache: layouts as they arrive on the wire, checked. */
class Layouts {
  private readonly known = new Map<string, RecordLayout>();
  learn(layout: RecordLayout): void {
    const received = checkedLayout(decodeLayout(encodeLayout(layout)));
    this.known.set(layoutKey(received.layoutId), received);
  }
  get = (key: string): RecordLayout | undefined => this.known.get(key);
}

t.test('the reference drive: every record round-trips at its resolution, in a fraction of the bytes', async (t) => {
  const { records, resolution } = await referenceDriveRecords(60_000);
  const encoder = new CompactEncoder(resolution);
  const layouts = new Layouts();
  const sent = records.map((r) => {
    const { layout, payload } = encoder.encode(r);
    layouts.learn(layout);
    return payload;
  });
  const windows = records.filter((r) => r.kind === RecordKind.Window);
  const events = records.filter((r) => r.kind === RecordKind.Event);
  t.ok(windows.length >= 10 && events.length >= 3, `${windows.length} windows and ${events.length} events`);
  // Reordered and redelivered: each payload stands on its own.
  const order = [...sent.keys()].reverse().concat([...sent.keys()]);
  for (const i of order) {
    const back = decodeCompactRecord(sent[i] as Uint8Array, layouts.get);
    t.same(
      recordDifferences(records[i] as VehicleTelemetry, back, resolution),
      [],
      `record ${i} (${order.indexOf(i)})`,
    );
  }
  const windowBytes = windows.map((r) => encoder.encode(r).payload.byteLength);
  const rowBytes = windows.map((r) => encodeTelemetry(r).byteLength);
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  t.comment(`P1 window: ${mean(windowBytes).toFixed(0)} B compact vs ${mean(rowBytes).toFixed(0)} B row-wise`);
  t.ok(Math.max(...windowBytes) <= 260, `every window ≤ 260 B (largest ${Math.max(...windowBytes)} B)`);
  t.ok(mean(windowBytes) * 5 < mean(rowBytes), 'a fifth of the row-wise bytes or less');
  // Version 1 (no bases) averaged 220 B on this drive; the bases take slow values, position and clocks to a byte or two.
  t.ok(mean(windowBytes) <= 200, `the layout's bases: ${mean(windowBytes).toFixed(0)} B a window on average (≤ 200)`);
  const keys = new Set(records.map((r) => encoder.encode(r).key));
  t.equal(keys.size, 2, 'one layout for the windows and one for the events of the whole drive');
});

t.test('version 1 records (gateways not yet upgraded) still decode, field for field', async (t) => {
  const fixture = JSON.parse(readFileSync(join(projectRoot(), 'test', 'fixtures', 'compact-v1.json'), 'utf8')) as {
    records: Array<{ layout: string; payload: string; record: string }>;
  };
  const { resolution } = await referenceDriveRecords(60_000);
  const layouts = new Layouts();
  for (const [i, { layout, payload, record }] of fixture.records.entries()) {
    layouts.learn(decodeLayout(Buffer.from(layout, 'base64')));
    const bytes = Buffer.from(payload, 'base64');
    t.equal(decodeCompact(bytes).version, 1);
    const back = decodeCompactRecord(bytes, layouts.get);
    t.same(recordDifferences(decodeTelemetry(Buffer.from(record, 'base64')), back, resolution), [], `record ${i}`);
  }
});

t.test('layouts follow content: another run, a value off its resolution, a DTC list', async (t) => {
  const { records, resolution } = await referenceDriveRecords(60_000);
  const encoder = new CompactEncoder(resolution);
  const layouts = new Layouts();
  const window = records.find((r) => r.kind === RecordKind.Window) as VehicleTelemetry;
  const otherRun = { ...window, correlationId: '11111111-2222-4333-8444-555555555555', messageId: 'x-1' };
  const huge = { ...window, speedKmh: 1e300 };
  const withDtcs = { ...window, diagnostics: { milOn: true, dtcs: ['P0217', 'U0100'] } };
  const cases: Array<[string, VehicleTelemetry]> = [
    ['window', window],
    ['another run', otherRun],
    ['a value no integer of its resolution can hold', huge],
    ['a DTC list', withDtcs],
  ];
  const keys = cases.map(([label, record]) => {
    const { layout, key, payload } = encoder.encode(record);
    layouts.learn(layout);
    const back = decodeCompactRecord(payload, layouts.get);
    t.same(recordDifferences(record, back, resolution), [], label);
    return key;
  });
  t.equal(new Set(keys).size, 3, 'a new run and an exact value need layouts of their own; a DTC list does not');
  t.equal(
    decodeCompactRecord(encoder.encode(otherRun).payload, layouts.get).messageId,
    'x-1',
    'ids not derived are sent',
  );
});

t.test(
  'refused with a code: unknown version, unknown layout, counts that do not fit, forged layouts, garbage',
  async (t) => {
    const { records, resolution } = await referenceDriveRecords(60_000);
    const encoder = new CompactEncoder(resolution);
    const { layout, payload } = encoder.encode(records[1] as VehicleTelemetry);
    const layouts = new Layouts();
    layouts.learn(layout);
    const compact = decodeCompact(payload);
    const variant = (change: (c: typeof compact) => void): Uint8Array => {
      const copy = structuredClone(compact);
      change(copy);
      return encodeCompact(copy);
    };
    const cases: Array<[string, Uint8Array, string]> = [
      ['version 3', variant((c) => (c.version = 3)), 'COMPACT_VERSION'],
      // Version 1 predicts nothing from bases: under a layout that has them, its values mean something else.
      ['version 1 under a layout with bases', variant((c) => (c.version = 1)), 'COMPACT_INVALID'],
      ['an unknown layout', variant((c) => (c.layoutId = new Uint8Array(8))), 'COMPACT_UNKNOWN_LAYOUT'],
      ['a value short', variant((c) => c.values.pop()), 'COMPACT_INVALID'],
      ['a value over', variant((c) => c.values.push(1)), 'COMPACT_INVALID'],
      ['a text over', variant((c) => c.texts.push('x')), 'COMPACT_INVALID'],
    ];
    for (const [label, bytes, code] of cases) t.throws(() => decodeCompactRecord(bytes, layouts.get), { code }, label);
    t.throws(
      () => decodeCompactRecord(Buffer.from('not protobuf at all \xff\xff\xff'), layouts.get),
      TelemetryDecodeError,
    );
    const forged = decodeLayout(encodeLayout(layout));
    forged.numbers[0] = { path: forged.numbers[0]?.path ?? '', scale: 1000, offset: 0 };
    t.throws(() => checkedLayout(forged), { code: 'COMPACT_INVALID', message: /does not match its content/ });
  },
);
