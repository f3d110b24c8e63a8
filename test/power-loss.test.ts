// Power loss, not SIGKILL: the store runs on a FUSE filesystem that keeps each file as of its last
// fsync (test/lossy-fs.py, after LazyFS). A SIGKILL keeps the page cache and proves atomicity; a
// power cut throws away everything not synced, which is what `synchronous=FULL` is for. With it,
// every write reported committed survives 20 cuts; with `synchronous=OFF` the same test loses writes.
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SeededRandom } from '../bench/rig/seeded-random.js';
import { killWriterAt, verify, type Reported } from './power-cut-check.js';
import { LossyFs, lossyFsUnavailable } from './lossy-fs.js';

const CUTS = Number(process.env.V2C_POWER_CUTS ?? 20);
const skip = lossyFsUnavailable();

/** `cuts` power cuts at random moments of a writer on the lossy filesystem; the failures after each. */
async function powerCuts(
  t: Test,
  synchronous: 'FULL' | 'OFF',
  cuts: number,
  stopAtFirstFailure: boolean,
): Promise<string[][]> {
  const root = mkdtempSync(join(tmpdir(), 'v2c-powerloss-'));
  const fs = new LossyFs(join(root, 'backing'), join(root, 'mnt'));
  t.teardown(async () => {
    await fs.unmount();
    rmSync(root, { recursive: true, force: true });
  });
  await fs.mount();
  const r = new SeededRandom(synchronous === 'FULL' ? 2024 : 4048);
  const reported: Reported = { batches: new Map(), versions: new Map() };
  const results: string[][] = [];
  for (let g = 0; g < cuts; g++) {
    await killWriterAt(fs.mountpoint, g, 7000 + g, r.int(0, 400), true, reported, synchronous);
    await fs.cut();
    let rows = 0;
    let failures: string[];
    try {
      ({ rows, failures } = verify(join(fs.mountpoint, 'powercut.sqlite'), reported));
    } catch (err) {
      // Nothing of the file survived to read (its schema was never synced).
      failures = [`the database cannot be read after the cut: ${(err as Error).message}`];
    }
    results.push(failures);
    if (synchronous === 'FULL')
      t.same(
        failures,
        [],
        `cut ${g + 1}: ${rows} rows after the cut, ${reported.batches.size} batches reported committed, all present and whole, integrity_check ok`,
      );
    if (stopAtFirstFailure && failures.length > 0) break;
  }
  return results;
}

t.test(
  `power cut ${CUTS} times at random moments (FUSE, files kept as of their last fsync): nothing reported committed is lost`,
  { skip: skip ?? false },
  async (t) => {
    const results = await powerCuts(t, 'FULL', CUTS, false);
    t.equal(results.length, CUTS);
  },
);

t.test(
  'mutation check: with synchronous=OFF the same power cuts lose committed writes',
  { skip: skip ?? false },
  async (t) => {
    const results = await powerCuts(t, 'OFF', CUTS, true);
    const failed = results.find((f) => f.length > 0);
    t.ok(failed !== undefined, `lost after ${results.length} cut(s): ${(failed ?? []).slice(0, 2).join('; ')}`);
  },
);
