// The lossy filesystem of test/lossy-fs.py (after LazyFS): a FUSE pass-through that keeps each file
// as of its last fsync, and a "power cut" that throws away everything newer.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../core/project-root.js';
import { waitUntil } from './helpers.js';

const LOSSY_FS = join(projectRoot(), 'test', 'lossy-fs.py');
const PYTHON = '/usr/bin/python3';

/** Why FUSE cannot run here, or null. */
export function lossyFsUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'needs root to mount FUSE';
  if (!existsSync('/dev/fuse')) return 'no /dev/fuse';
  const probe = spawnSync(PYTHON, ['-c', 'import fusepy'], { encoding: 'utf8' });
  if (probe.status !== 0)
    return 'python3-fusepy is not installed (the test bootstrap installs it: apt-get install python3-fusepy fuse3)';
  return null;
}

const mounted = (mountpoint: string): boolean =>
  readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[1] === mountpoint);

/** The lossy filesystem, mounted, and how to cut its power. */
export class LossyFs {
  private child: ChildProcess | null = null;
  private stderr = '';

  constructor(
    readonly backing: string,
    readonly mountpoint: string,
  ) {
    mkdirSync(backing, { recursive: true });
    mkdirSync(mountpoint, { recursive: true });
  }

  async mount(): Promise<void> {
    this.child = spawn(PYTHON, [LOSSY_FS, this.backing, this.mountpoint], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child.stderr?.on('data', (d: Buffer) => {
      this.stderr += d.toString();
    });
    await waitUntil(
      `the FUSE mount at ${this.mountpoint}`,
      () => {
        if (this.child?.exitCode !== null) throw new Error(`lossy-fs exited: ${this.stderr}`);
        return mounted(this.mountpoint);
      },
      30_000,
    );
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
