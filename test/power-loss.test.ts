// Power loss, not SIGKILL: the store runs on a FUSE filesystem that keeps each file as of its last
// fsync (test/lossy-fs.py, after LazyFS). A SIGKILL keeps the page cache and proves atomicity; a
// power cut throws away everything not synced, which is what `synchronous=FULL` is for. With it,
// every write reported committed survives 20 cuts; with `synchronous=OFF` the same test loses writes.
import t, { type Test } from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SeededRandom } from '../drivers/reference-vehicle/seeded-random.js';
import { projectRoot } from '../gateway/project-root.js';
import { killWriterAt, verify, type Reported } from './power-cut-check.js';
import { waitUntil } from './helpers.js';

const LOSSY_FS = join(projectRoot(), 'test', 'lossy-fs.py');
const PYTHON = '/usr/bin/python3';
const CUTS = Number(process.env.V2C_POWER_CUTS ?? 20);

/** Why FUSE cannot run here, or null. */
function unavailable(): string | null {
  if (process.getuid?.() !== 0) return 'needs root to mount FUSE';
  if (!existsSync('/dev/fuse')) return 'no /dev/fuse';
  const probe = spawnSync(PYTHON, ['-c', 'import fusepy'], { encoding: 'utf8' });
  if (probe.status !== 0) return 'python3-fusepy is not installed (the test bootstrap installs it: apt-get install python3-fusepy fuse3)';
  return null;
}

const mounted = (mountpoint: string): boolean => readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === mountpoint);

/** The lossy filesystem, mounted, and how to cut its power. */
class LossyFs {
  private child: ChildProcess | null = null;
  private stderr = '';

  constructor(readonly backing: string, readonly mountpoint: string) {
    mkdirSync(backing, { recursive: true });
    mkdirSync(mountpoint, { recursive: true });
  }

  async mount(): Promise<void> {
    this.child = spawn(PYTHON, [LOSSY_FS, this.backing, this.mountpoint], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child.stderr?.on('data', (d: Buffer) => { this.stderr += d.toString(); });
    await waitUntil(`the FUSE mount at ${this.mountpoint}`, () => {
      if (this.child?.exitCode !== null) throw new Error(`lossy-fs exited: ${this.stderr}`);
      return mounted(this.mountpoint);
    }, 30_000);
  }

  async unmount(): Promise<void> {
    if (this.child === null) return;
    const exited = new Promise((resolve) => this.child?.once('exit', resolve));
    if (mounted(this.mountpoint)) spawnSync('umount', [this.mountpoint]);
    if (this.child.exitCode === null) await exited;
    this.child = null;
  }

  /** The power goes: unmounted, every file back to what its last fsync made durable, mounted again. */
  async cut(): Promise<void> {
    await this.unmount();
    const r = spawnSync(PYTHON, [LOSSY_FS, '--cut', this.backing], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`lossy-fs --cut: ${r.stderr}`);
    await this.mount();
  }
}

const skip = unavailable();

/** `cuts` power cuts at random moments of a writer on the lossy filesystem; the failures after each. */
async function powerCuts(t: Test, synchronous: 'FULL' | 'OFF', cuts: number, stopAtFirstFailure: boolean): Promise<string[][]> {
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
    if (synchronous === 'FULL') t.same(failures, [], `cut ${g + 1}: ${rows} rows after the cut, ${reported.batches.size} batches reported committed, all present and whole, integrity_check ok`);
    if (stopAtFirstFailure && failures.length > 0) break;
  }
  return results;
}

t.test(`power cut ${CUTS} times at random moments (FUSE, files kept as of their last fsync): nothing reported committed is lost`, { skip: skip ?? false }, async (t) => {
  const results = await powerCuts(t, 'FULL', CUTS, false);
  t.equal(results.length, CUTS);
});

t.test('mutation check: with synchronous=OFF the same power cuts lose committed writes', { skip: skip ?? false }, async (t) => {
  const results = await powerCuts(t, 'OFF', CUTS, true);
  const failed = results.find((f) => f.length > 0);
  t.ok(failed !== undefined, `lost after ${results.length} cut(s): ${(failed ?? []).slice(0, 2).join('; ')}`);
});
