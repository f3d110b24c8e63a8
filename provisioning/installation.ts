// The configuration directory as releases: every setup or certificate renewal writes a complete
// new release beside the old one, then points the `current` symlink at it with one rename, which
// is atomic. A run that fails before the swap leaves the previous release in use, untouched.
//
//   <configDir>/current -> releases/<id>      gateway.yaml -> current/gateway.yaml
//   <configDir>/releases/<id>/{gateway.yaml, device.key (0600), device.crt, ca.crt, vehicle.dbc}
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';

export interface ReleaseFile {
  name: string;
  content: string | Buffer;
  mode: number;
}

export const RELEASE_FILES = {
  config: 'gateway.yaml',
  key: 'device.key',
  cert: 'device.crt',
  ca: 'ca.crt',
  dbc: 'vehicle.dbc',
} as const;

function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export class Installation {
  constructor(readonly configDir: string) {}

  /** The installation a file reached through `<configDir>/current/<file>` belongs to, or null. */
  static containing(file: string): Installation | null {
    const current = dirname(file);
    if (basename(current) !== 'current') return null;
    try {
      return lstatSync(current).isSymbolicLink() ? new Installation(dirname(current)) : null;
    } catch {
      return null;
    }
  }

  /** Stable paths for the config to name: they resolve through `current`. */
  path(file: keyof typeof RELEASE_FILES): string {
    return join(this.configDir, 'current', RELEASE_FILES[file]);
  }

  get releasesDir(): string {
    return join(this.configDir, 'releases');
  }

  /** The release `current` points at, or null before the first installation. */
  activeRelease(): string | null {
    try {
      return basename(readlinkSync(join(this.configDir, 'current')));
    } catch {
      return null;
    }
  }

  /** Writes a complete release (each file and the directory flushed to disk) and returns its id. */
  stage(files: ReleaseFile[]): string {
    const id = `${new Date()
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d+Z$/, 'Z')}-${randomBytes(3).toString('hex')}`;
    const staging = join(this.releasesDir, `.staging-${id}`);
    mkdirSync(staging, { recursive: true, mode: 0o750 });
    try {
      for (const f of files) {
        const path = join(staging, f.name);
        // Mode at creation, so a key is never readable by others even for a moment.
        writeFileSync(path, f.content, { mode: f.mode, flag: 'wx' });
        fsyncPath(path);
      }
      fsyncPath(staging);
      renameSync(staging, join(this.releasesDir, id));
      fsyncPath(this.releasesDir);
    } catch (err) {
      rmSync(staging, { recursive: true, force: true });
      throw err;
    }
    return id;
  }

  /** Points `current` (and the top-level gateway.yaml link) at `release`; returns the previous one. */
  activate(release: string): string | null {
    const previous = this.activeRelease();
    const link = join(this.configDir, `.current-${randomBytes(3).toString('hex')}`);
    symlinkSync(join('releases', release), link);
    renameSync(link, join(this.configDir, 'current'));
    const configLink = join(this.configDir, RELEASE_FILES.config);
    if (!existsSync(configLink)) symlinkSync(join('current', RELEASE_FILES.config), configLink);
    fsyncPath(this.configDir);
    return previous;
  }

  /** Removes every release but the ones named (and any staging left by a crash). */
  prune(keep: readonly string[]): void {
    if (!existsSync(this.releasesDir)) return;
    for (const entry of readdirSync(this.releasesDir)) {
      if (!keep.includes(entry)) rmSync(join(this.releasesDir, entry), { recursive: true, force: true });
    }
  }

  discard(release: string): void {
    rmSync(join(this.releasesDir, release), { recursive: true, force: true });
  }
}
