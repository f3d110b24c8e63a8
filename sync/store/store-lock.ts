// One gateway per store directory. Two would share the outbox and the MQTT client id and take the
// session from each other (every record sent twice, sessions flapping). The lock is a file made
// with O_EXCL naming its holder; a holder that is gone (crash, power cut, another boot, a reused
// pid with another start time) leaves a stale lock, which the next start takes over.
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export class StoreLockedError extends Error {
  readonly code = 'STORE_LOCKED';
  constructor(
    message: string,
    readonly holderPid: number,
  ) {
    super(message);
    this.name = 'StoreLockedError';
  }
}

interface Holder {
  pid: number;
  bootId: string;
  /** The process's start time (clock ticks since boot, /proc/<pid>/stat field 22): tells a reused pid apart. */
  startTicks: string;
}

export interface StoreLock {
  readonly path: string;
  release(): void;
}

/** Start time of `pid` in clock ticks since boot, or null when there is no such process. */
function startTicksOf(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (the command) may hold spaces and parentheses: count from the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

function readHolder(path: string): Holder | null {
  try {
    const h = JSON.parse(readFileSync(path, 'utf8')) as Partial<Holder>;
    return typeof h.pid === 'number' && typeof h.bootId === 'string' && typeof h.startTicks === 'string'
      ? (h as Holder)
      : null;
  } catch {
    return null;
  }
}

function alive(h: Holder, bootId: string): boolean {
  return h.bootId === bootId && startTicksOf(h.pid) === h.startTicks;
}

/** Takes the lock of `dir` for this process, or throws StoreLockedError naming the holder. */
export function lockStoreDir(dir: string, bootId: string): StoreLock {
  const path = join(dir, 'v2c.lock');
  const me: Holder = { pid: process.pid, bootId, startTicks: startTicksOf(process.pid) ?? 'unknown' };
  for (let attempt = 0; ; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, 'wx', 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw err;
      const holder = readHolder(path);
      if (holder !== null && alive(holder, bootId)) {
        throw new StoreLockedError(
          `${dir} is in use by another v2c-gateway (pid ${holder.pid}); stop it, or give this one its own store.dir`,
          holder.pid,
        );
      }
      // Stale (its holder is gone) or half-written by a start that was cut off: take it over.
      unlinkSync(path);
      continue;
    }
    try {
      writeSync(fd, JSON.stringify(me));
    } finally {
      closeSync(fd);
    }
    return {
      path,
      release: () => {
        // Only our own lock: never one a later holder took over.
        if (readHolder(path)?.pid === me.pid) unlinkSync(path);
      },
    };
  }
}
