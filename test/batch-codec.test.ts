import t from 'tap';
import type { Test } from 'tap';
import { randomBytes, randomUUID } from 'node:crypto';
import { referenceDriveRecords as buildDriveRecords, type DriveRecords } from '../bench/rig/drive-records.js';
import { BatchRejectedError, packBatch, sha256Hex, unpackBatch, type PackedBatch } from '../proto/batch-packer.js';
import { fromColumns, toColumns } from '../proto/record-columns.js';
import { isDerivedRecordId, recordId, traceIdOf } from '../proto/record-id.js';
import {
  decodeTelemetry,
  encodeBatch,
  encodeTelemetry,
  SCHEMA_VERSION,
  type VehicleTelemetry,
} from '../proto/telemetry-codec.js';
import {
  chooseZstd,
  loadZstd,
  zstdChoice,
  zstdCompress,
  zstdCompressedBound,
  zstdDecompress,
  ZSTD_IMPLEMENTATIONS,
  type ZstdCodec,
} from '../proto/zstd.js';

const RUN = '6b0d4f7e-2c1a-4e8b-9f3d-5a7c1e2b4d60';
const drives = new Map<number, Promise<DriveRecords>>();
/** One pipeline run per window length for the whole file. */
function referenceDriveRecords(windowMs: number): Promise<DriveRecords> {
  if (!drives.has(windowMs)) drives.set(windowMs, buildDriveRecords(windowMs));
  return drives.get(windowMs) as Promise<DriveRecords>;
}
const unpackOptions = { maxUncompressedBytes: 1 << 22, acceptedSchemaVersions: [SCHEMA_VERSION] };

t.test('record ids: derived from run and sequence, UUID version 8, distinct per sequence and run', async (t) => {
  const rows: Array<[string, number, string]> = [
    [RUN, 0, '6b0d4f7e-2c1a-8e8b-9f00-000000000000'],
    [RUN, 1, '6b0d4f7e-2c1a-8e8b-9f00-000000000001'],
    [RUN, 0x0102030405, '6b0d4f7e-2c1a-8e8b-9f00-000102030405'],
    [RUN, Number.MAX_SAFE_INTEGER, '6b0d4f7e-2c1a-8e8b-9f1f-ffffffffffff'],
  ];
  for (const [run, seq, expected] of rows) t.equal(recordId(run, seq), expected, `sequence ${seq}`);
  t.not(recordId(RUN, 7), recordId(randomUUID(), 7), 'another run gives another id');
  t.equal(traceIdOf(recordId(RUN, 1)), '6b0d4f7e2c1a8e8b9f00000000000001');
  t.throws(() => recordId('not-a-uuid', 1), /expected a UUID as the run id/);
  t.throws(() => recordId(RUN, -1), /non-negative safe integer/);
  t.ok(isDerivedRecordId(recordId(RUN, 5), RUN, 5));
  t.notOk(isDerivedRecordId(randomUUID(), RUN, 5));
  t.notOk(isDerivedRecordId(recordId(RUN, 5), 'bad', 5), 'malformed run: not derived, no throw');
});

/** Field-by-field comparison: numbers within `tolerance(path)`, everything else exact. */
function compareRecords(
  t: Test,
  got: VehicleTelemetry,
  want: VehicleTelemetry,
  tolerance: (path: string) => number,
): void {
  const diffs: string[] = [];
  const visit = (a: unknown, b: unknown, path: string): void => {
    if (typeof b === 'number' && typeof a === 'number') {
      if (Math.abs(a - b) > tolerance(path) + Math.abs(b) * 1e-12) diffs.push(`${path}: ${a} vs ${b}`);
    } else if (b !== null && typeof b === 'object') {
      const keys = new Set([...Object.keys((a as object) ?? {}), ...Object.keys(b)]);
      for (const k of keys)
        visit(
          (a as Record<string, unknown> | undefined)?.[k],
          (b as Record<string, unknown>)[k],
          path === '' ? k : `${path}.${k}`,
        );
    } else if (a !== b) {
      diffs.push(`${path}: ${String(a)} vs ${String(b)}`);
    }
  };
  visit(got, want, '');
  t.same(diffs, [], `record ${want.sequence}`);
}

t.test(
  'columns round trip: the reference drive comes back field for field, numbers within half a DBC step',
  async (t) => {
    const { records, resolution } = await referenceDriveRecords(10_000);
    t.ok(
      records.some((r) => r.event !== undefined),
      'the drive has event records',
    );
    t.ok(
      records.some((r) => (r.diagnostics?.dtcs.length ?? 0) > 0),
      'and records with a DTC list (a repeated field, kept row-wise)',
    );
    // Records as a receiver of single messages sees them.
    const want = records.map((r) => decodeTelemetry(encodeTelemetry(r)));
    const back = fromColumns(toColumns(records, resolution));
    t.equal(back.length, want.length);
    const tolerance = (path: string): number => {
      const r = resolution(path);
      if (r === undefined) return 0;
      // A signal's min, max and last are DBC steps and come back exact; means (also those mapped
      // to typed fields such as engine_rpm) fall between steps and are rounded to the nearest one.
      return /^signals\.[^.]+\.(min|max|last)$/.test(path) ? r.scale * 1e-6 : r.scale / 2;
    };
    back.forEach((r, i) => compareRecords(t, r, want[i] as VehicleTelemetry, tolerance));
  },
);

t.test('columns: ids that do not follow run + sequence, unknown map keys and absent fields survive', async (t) => {
  const { records, resolution } = await referenceDriveRecords(60_000);
  const odd = records.slice(0, 4).map((r) => ({ ...r, signals: { ...r.signals } }));
  odd[0] = { ...(odd[0] as VehicleTelemetry), messageId: randomUUID(), traceId: 'f'.repeat(32) };
  (odd[1] as VehicleTelemetry).signals['name with spaces'] = { min: 1.5, max: 2.5, mean: 2, last: 2.25, count: 3 };
  delete (odd[2] as VehicleTelemetry).speedKmh;
  delete (odd[3] as VehicleTelemetry).gps;
  const back = fromColumns(toColumns(odd, resolution));
  t.equal(back[0]?.messageId, odd[0]?.messageId, 'random message id kept in a text column');
  t.equal(back[0]?.traceId, 'f'.repeat(32));
  t.equal(back[1]?.messageId, odd[1]?.messageId, 'derived id re-derived');
  t.same(back[1]?.signals['name with spaces'], { min: 1.5, max: 2.5, mean: 2, last: 2.25, count: 3 });
  t.equal(back[2]?.speedKmh, undefined, 'absent optional stays absent');
  t.equal(back[3]?.gps, undefined);
  t.ok(back[2]?.gps !== undefined);
});

t.test('batch encoding: 25 records at least 80 % smaller than 25 single protobuf messages', async (t) => {
  const { records, resolution } = await referenceDriveRecords(10_000);
  for (const n of [25, 50]) {
    const batch = records.filter((r) => r.priority === 1).slice(0, n);
    t.equal(batch.length, n);
    const singles = batch.reduce((sum, r) => sum + encodeTelemetry(r).byteLength, 0);
    const packed = await packBatch(batch, { vehicleId: 'V2CREF00000000001', createdMs: 0, resolution, zstdLevel: 19 });
    const reduction = 1 - packed.payload.byteLength / singles;
    t.comment(
      `${n} records: ${singles} bytes as single messages, ${packed.payload.byteLength} as one batch: ${(reduction * 100).toFixed(1)} % smaller`,
    );
    t.ok(reduction >= 0.8, `${n} records: ${(reduction * 100).toFixed(1)} % >= 80 %`);
  }
});

// @mongodb-js/zstd publishes no binary for 32-bit ARM (armv7): there only the WebAssembly one runs.
const nativeZstdExpected = process.arch !== 'arm';
/** The implementations that load here; one that should and does not fails the test. */
async function availableZstd(t: Test): Promise<ZstdCodec[]> {
  const codecs: ZstdCodec[] = [];
  for (const implementation of ZSTD_IMPLEMENTATIONS) {
    const codec = await loadZstd(implementation).catch((err: unknown) => {
      if (implementation === 'native' && !nativeZstdExpected)
        t.comment(
          `native zstd does not load on linux-${process.arch} (expected): ${(err as Error).message.split('\n')[0]}`,
        );
      else t.fail(`zstd ${implementation} does not load: ${(err as Error).message}`);
      return null;
    });
    if (codec !== null) codecs.push(codec);
  }
  return codecs;
}

for (const implementation of ZSTD_IMPLEMENTATIONS) {
  t.test(
    `zstd (${implementation}): the configured level is the level applied; batches round-trip; corrupt and oversized input refused`,
    async (t) => {
      const zstd = (await availableZstd(t)).find((c) => c.implementation === implementation);
      if (zstd === undefined) return;
      t.equal(zstd.implementation, implementation);
      const { records, resolution } = await referenceDriveRecords(10_000);
      const at = async (level: number): Promise<PackedBatch> =>
        packBatch(records.slice(0, 50), { vehicleId: 'V', createdMs: 0, resolution, zstdLevel: level, zstd });
      const [fast, small] = [await at(1), await at(19)];
      t.equal(fast.userProperties.sha256, small.userProperties.sha256, 'same batch');
      t.ok(
        small.payload.byteLength < fast.payload.byteLength,
        `level 19 (${small.payload.byteLength} B) smaller than level 1 (${fast.payload.byteLength} B)`,
      );
      const back = await unpackBatch(small.payload, small.userProperties, { ...unpackOptions, zstd });
      t.same(
        back.records.map((r) => r.messageId),
        records.slice(0, 50).map((r) => r.messageId),
        'the batch unpacks to its 50 records',
      );
      const plain = encodeBatch({
        batchId: 'b',
        vehicleId: 'v',
        schemaVersion: SCHEMA_VERSION,
        createdMs: 0,
        records: records.slice(0, 50),
      });
      const sizes = new Set<number>();
      for (const level of [1, 3, 9, 19]) {
        const packed = await zstdCompress(plain, level, zstd);
        sizes.add(packed.byteLength);
        t.ok((await zstdDecompress(packed, 1 << 22, zstd)).equals(plain), `level ${level} round-trips`);
      }
      t.equal(sizes.size, 4, 'four levels, four sizes');
      await t.rejects(zstdCompress(plain, 0, zstd), /zstd level must be an integer 1..22/);
      await t.rejects(zstdCompress(plain, 23, zstd), /zstd level/);
      await t.rejects(zstdDecompress(await zstdCompress(plain, 1, zstd), 100, zstd), /more than the 100 allowed/);
      const flipped = Buffer.from(await zstdCompress(plain, 3, zstd));
      flipped.fill(0xa5, 12, 40);
      await t.rejects(
        zstdDecompress(flipped, 1 << 22, zstd),
        { code: 'ZSTD_FAILED' },
        'a corrupt frame is a ZstdError',
      );
    },
  );
}

t.test(
  "zstd: the implementations read each other's frames (one contract on the wire), and the choice falls back when the native binary is missing",
  async (t) => {
    const { records } = await referenceDriveRecords(10_000);
    const plain = encodeBatch({
      batchId: 'b',
      vehicleId: 'v',
      schemaVersion: SCHEMA_VERSION,
      createdMs: 0,
      records: records.slice(0, 50),
    });
    const codecs = await availableZstd(t);
    for (const from of codecs) {
      for (const to of codecs) {
        const packed = await zstdCompress(plain, 9, from);
        t.ok(
          (await zstdDecompress(packed, 1 << 22, to)).equals(plain),
          `${from.implementation} -> ${to.implementation}`,
        );
      }
    }
    t.equal(
      (await zstdChoice()).codec.implementation,
      nativeZstdExpected ? 'native' : 'wasm',
      'native where its binary loads, else WebAssembly',
    );
    // armv7: @mongodb-js/zstd has no binary there and its require fails as below.
    const missing = (): Promise<ZstdCodec> =>
      Promise.reject(new Error("Cannot find module '@mongodb-js/zstd-linux-arm-gnueabihf'\nRequire stack: ..."));
    const choice = await chooseZstd([
      { name: 'native', load: missing },
      { name: 'wasm', load: () => loadZstd('wasm') },
    ]);
    t.equal(choice.codec.implementation, 'wasm', 'without it, WebAssembly');
    t.same(
      choice.passedOver,
      ["native: Cannot find module '@mongodb-js/zstd-linux-arm-gnueabihf'"],
      'and the reason it passed over the native one, in one line',
    );
    await t.rejects(chooseZstd([{ name: 'native', load: missing }]), {
      code: 'ZSTD_UNAVAILABLE',
      message: /no zstd implementation loads on this machine \(native: Cannot find module/,
    });
  },
);

t.test('packBatch: a record that cannot be encoded is a rejection, never a throw', async (t) => {
  const { records, resolution } = await referenceDriveRecords(10_000);
  const damaged = { ...records[0], signals: { X: null } } as unknown as VehicleTelemetry;
  let packing: Promise<PackedBatch> | undefined;
  t.doesNotThrow(() => {
    packing = packBatch([damaged], { vehicleId: 'V', createdMs: 0, resolution, zstdLevel: 3 });
  }, 'returns a promise');
  await t.rejects(packing as Promise<PackedBatch>, TypeError, 'that rejects with what failed');
});

t.test("zstd's compressed bound holds for incompressible input of every size class, with each codec", async (t) => {
  // The outbox lets go of a batch's records before compressing when the packet fits at this bound.
  for (const zstd of await availableZstd(t))
    for (const bytes of [0, 1, 100, 2047, 2048, 4096, 65_536, 131_071, 131_072, 131_073, 300_000]) {
      const plain = randomBytes(bytes);
      for (const level of [1, 9, 19]) {
        const packed = await zstdCompress(plain, level, zstd);
        const bound = zstdCompressedBound(bytes);
        t.ok(
          packed.byteLength <= bound && bound - packed.byteLength <= bytes / 200 + 80,
          `${zstd.implementation}, ${bytes} random bytes at level ${level}: ${packed.byteLength} B, bound ${bound} B`,
        );
      }
    }
});

t.test('unpackBatch: every corruption is rejected with its reason before it reaches a record', async (t) => {
  const { records, resolution } = await referenceDriveRecords(60_000);
  const good = await packBatch(records.slice(0, 10), {
    vehicleId: 'V2CREF00000000001',
    createdMs: 1,
    resolution,
    zstdLevel: 3,
  });
  const ok = await unpackBatch(good.payload, good.userProperties, unpackOptions);
  t.equal(ok.records.length, 10);
  t.equal(ok.batchId, good.batchId);
  const again = await packBatch(records.slice(0, 10), {
    vehicleId: 'V2CREF00000000001',
    createdMs: 99,
    resolution,
    zstdLevel: 3,
  });
  t.equal(again.batchId, good.batchId, 'same records, same batch id');

  const flipped = Buffer.from(good.payload);
  flipped[flipped.length >> 1] = (flipped[flipped.length >> 1] as number) ^ 0xff;
  const garbage = Buffer.from('definitely not zstd');
  const plain = encodeBatch({ batchId: 'b', vehicleId: 'v', schemaVersion: '9.9', createdMs: 0, records: [] });
  const bad = (payload: Uint8Array, props: Record<string, string>): [Uint8Array, Record<string, string>] => [
    payload,
    props,
  ];
  const rows: Array<[string, [Uint8Array, Record<string, string>], string]> = [
    ['payload altered in transit', bad(flipped, good.userProperties), 'checksum'],
    ['batch digest wrong', bad(good.payload, { ...good.userProperties, sha256: '0'.repeat(64) }), 'checksum'],
    [
      'no batch digest',
      bad(good.payload, { ...good.userProperties, sha256: undefined as unknown as string }),
      'checksum',
    ],
    [
      'not zstd (payload digest matches)',
      bad(garbage, { ...good.userProperties, payload_sha256: sha256Hex(garbage) }),
      'decompress',
    ],
    ['unknown compression', bad(good.payload, { ...good.userProperties, compression: 'lz4' }), 'decompress'],
    ['unsupported schema', bad(plain, { compression: 'none', sha256: sha256Hex(plain) }), 'schema'],
    [
      'not a batch',
      bad(Buffer.from([0xff, 0xff, 0xff]), { compression: 'none', sha256: sha256Hex(Buffer.from([0xff, 0xff, 0xff])) }),
      'decode',
    ],
    ['message_count wrong', bad(good.payload, { ...good.userProperties, message_count: '11' }), 'count'],
  ];
  for (const [name, [payload, props], reason] of rows) {
    const err = await unpackBatch(payload, props, unpackOptions).then(
      () => null,
      (e: unknown) => e,
    );
    t.ok(
      err instanceof BatchRejectedError && err.reason === reason,
      `${name}: rejected for ${reason} (${(err as Error | null)?.message})`,
    );
  }
  const columns = toColumns(records.slice(0, 3), resolution);
  (columns.numbers[0] as { deltas: number[] }).deltas.pop();
  const broken = encodeBatch({
    batchId: 'b',
    vehicleId: 'v',
    schemaVersion: SCHEMA_VERSION,
    createdMs: 0,
    records: [],
    columns,
  });
  const err = await unpackBatch(broken, { compression: 'none', sha256: sha256Hex(broken) }, unpackOptions).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(
    err instanceof BatchRejectedError && err.reason === 'columns',
    `a column short of values: ${(err as Error | null)?.message}`,
  );
});
