// Worker thread: `PRAGMA quick_check` on its own read-only connection, so a large database is
// checked while the gateway already captures (WAL lets the two run side by side).
import Database from 'better-sqlite3';
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';

const { path } = workerData as { path: string };
// This thread only (Linux: a thread id is a pid for setpriority), at the lowest priority: on a large
// store it reads the whole file for minutes, competing for the same CPU quota as capture and sending.
// Where /proc or the call is not available the check still runs, at normal priority.
try {
  setPriority(Number(readlinkSync('/proc/thread-self').split('/').pop()), 19);
} catch {
  /* not Linux, or not permitted */
}
let verdict: string;
try {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    verdict = String(db.pragma('quick_check(5)', { simple: true }));
  } finally {
    db.close();
  }
} catch (err) {
  verdict = `cannot check: ${(err as Error).message}`;
}
parentPort?.postMessage(verdict);
