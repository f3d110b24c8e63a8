// A ballast file beside the database. When the filesystem fills up, SQLite cannot even copy its WAL
// back or record a deletion; giving the ballast back frees exactly the room those need.
import { closeSync, existsSync, openSync, statfsSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

export class DiskReserve {
  constructor(
    readonly path: string,
    readonly bytes: number,
  ) {}

  /** Creates the ballast if it is missing; false (and nothing left behind) when there is no room. */
  ensure(): boolean {
    if (this.bytes <= 0 || existsSync(this.path)) return true;
    let fd: number | null = null;
    try {
      fd = openSync(this.path, 'w', 0o600);
      // Real blocks, not a sparse file: the room must exist when it is given back.
      const chunk = Buffer.alloc(64 * 1024);
      for (let written = 0; written < this.bytes; written += chunk.length)
        writeSync(fd, chunk, 0, Math.min(chunk.length, this.bytes - written));
      closeSync(fd);
      return true;
    } catch {
      if (fd !== null) closeSync(fd);
      this.release();
      return false;
    }
  }

  /** Gives the room back; true if there was a ballast to give. */
  release(): boolean {
    try {
      unlinkSync(this.path);
      return true;
    } catch {
      return false;
    }
  }

  /** Bytes an unprivileged writer can still use on the filesystem holding the ballast. */
  filesystemFreeBytes(): number {
    const fs = statfsSync(dirname(this.path));
    return fs.bavail * fs.bsize;
  }
}
