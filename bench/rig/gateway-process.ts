// The gateway as the board runs it: the CLI's `run` in a child process, its log collected, its
// store read beside it (WAL allows a reader while it writes).
import Database from 'better-sqlite3';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { projectRoot } from '../../core/project-root.js';

const CLI = join(projectRoot(), 'dist', 'app', 'cli.js');

export interface GatewayProcess {
  child: ChildProcess;
  log: () => string;
  exited: Promise<number | null>;
}

export function runGateway(configPath: string): GatewayProcess {
  const child = spawn(process.execPath, [CLI, 'run', '--config', configPath], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr?.on('data', (c: Buffer) => {
    log += c.toString();
  });
  return { child, log: () => log, exited: new Promise((resolve) => child.on('exit', (code) => resolve(code))) };
}

export interface StoredRow {
  id: string;
  seq: number;
  correlationId: string;
}

/** Live records in the gateway's database. */
export function storedRecords(path: string): StoredRow[] {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return db
      .prepare(
        `SELECT id, json_extract(data, '$.seq') AS seq, json_extract(data, '$.record.correlationId') AS correlationId FROM "telemetry-v0" WHERE deleted = 0`,
      )
      .all() as StoredRow[];
  } finally {
    db.close();
  }
}

/** `integrity_check` of the database at `path`: "ok" or what it found. */
export function integrityOf(path: string): string {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return String(db.pragma('integrity_check', { simple: true }));
  } finally {
    db.close();
  }
}

/**
 * A metric's value from the gateway's /metrics endpoint: the sum of its series whose labels include `labels` (all of them by default),
 * or null when the endpoint does not answer or has no such series.
 */
export async function metricValue(
  port: number,
  name: string,
  labels: Record<string, string> = {},
): Promise<number | null> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
    let sum: number | null = null;
    for (const line of text.matchAll(new RegExp(`^${name}(?:\\{([^}]*)\\})? (\\S+)$`, 'gm'))) {
      const have = (line[1] ?? '').split(',');
      if (wanted.every((w) => have.includes(w))) sum = (sum ?? 0) + Number(line[2]);
    }
    return sum;
  } catch {
    return null;
  }
}
