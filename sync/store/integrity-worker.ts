// Worker thread: `PRAGMA quick_check` on its own read-only connection, so a large database is
// checked while the gateway already captures (WAL lets the two run side by side).
import Database from 'better-sqlite3';
import { parentPort, workerData } from 'node:worker_threads';

const { path } = workerData as { path: string };
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
