// Shared by the power-cut tests: a writer child killed at a chosen moment, everything it reported
// as committed collected, and the database file checked against it.
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { projectRoot } from '../core/project-root.js';
import { digest, type PowerCutDoc } from './power-cut-writer.js';

const WRITER = join(projectRoot(), 'dist', 'test', 'power-cut-writer.js');

export interface Reported {
  batches: Map<string, number>;
  versions: Map<string, number>;
}

/** Starts a writer and SIGKILLs it after `killAfterMs` (counted from its first commit when `afterReady`). */
export async function killWriterAt(
  dir: string,
  generation: number,
  seed: number,
  killAfterMs: number,
  afterReady: boolean,
  reported: Reported,
  synchronous = 'FULL',
): Promise<{ lines: number; signal: string | null }> {
  const child = spawn(process.execPath, [WRITER, dir, String(generation), String(seed), synchronous], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let buffer = '';
  let lines = 0;
  let stderr = '';
  let armed = false;
  const arm = () => {
    if (!armed) {
      armed = true;
      setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    }
  };
  child.stderr.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  child.stdout.on('data', (c: Buffer) => {
    buffer += c.toString();
    let nl: number;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const [what, id, n] = buffer.slice(0, nl).split(' ');
      buffer = buffer.slice(nl + 1);
      lines++;
      if (what === 'committed') {
        reported.batches.set(id!, Number(n));
        arm();
      } else if (what === 'updated') reported.versions.set(id!, Math.max(reported.versions.get(id!) ?? 0, Number(n)));
    }
  });
  if (!afterReady) arm();
  const signal = await new Promise<string | null>((resolve) => child.on('exit', (_code, sig) => resolve(sig)));
  if (signal !== 'SIGKILL') throw new Error(`writer ended by itself: ${stderr}`);
  return { lines, signal };
}

export function verify(path: string, reported: Reported): { rows: number; failures: string[] } {
  const db = new Database(path);
  const failures: string[] = [];
  try {
    const integrity = db.pragma('integrity_check', { simple: true });
    if (integrity !== 'ok') failures.push(`integrity_check: ${String(integrity)}`);
    const rows = db.prepare('SELECT id, deleted, data FROM "docs-v0"').all() as {
      id: string;
      deleted: number;
      data: string;
    }[];
    const byId = new Map<string, PowerCutDoc>();
    const perBatch = new Map<string, number>();
    for (const row of rows) {
      const doc = JSON.parse(row.data) as PowerCutDoc;
      byId.set(row.id, doc);
      if (doc.sha !== digest(doc.payload))
        failures.push(`${row.id}: payload does not match its checksum (half-written)`);
      perBatch.set(doc.batch, (perBatch.get(doc.batch) ?? 0) + 1);
    }
    for (const [batch, n] of perBatch) {
      const size = byId.get(`${batch}-0`)?.batchSize;
      if (size !== n)
        failures.push(`batch ${batch}: ${n} of ${size ?? '?'} documents visible (a transaction was split)`);
    }
    for (const [batch, size] of reported.batches) {
      for (let i = 0; i < size; i++)
        if (!byId.has(`${batch}-${i}`)) failures.push(`${batch}-${i}: reported committed, missing`);
    }
    for (const [id, version] of reported.versions) {
      const v = byId.get(id)?.version ?? -1;
      if (v < version) failures.push(`${id}: reported version ${version}, found ${v}`);
    }
    return { rows: rows.length, failures };
  } finally {
    db.close();
  }
}
