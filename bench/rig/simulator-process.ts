// The adapter simulator as a child process (a separate "device"), for the demo and the tests.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { projectRoot } from '../../core/project-root.js';
import type { Clock } from '../../core/clock.js';

export interface SimulatorProcess {
  /** Resolves with the exit code once the trace has been played. */
  done: Promise<number>;
  log(): string;
  /** Ends the simulator if it still runs (a gateway that never opened the channel leaves it waiting). */
  stop(): void;
}

/** Starts `v2c-gateway simulate` on `port` (the reference drive, or `trace`) and resolves once the adapter listens. */
export async function spawnSimulator(
  port: string,
  speed: number,
  clock: Clock,
  trace?: string,
  /** More `simulate` options (`--obd`). */
  extra: readonly string[] = [],
): Promise<SimulatorProcess> {
  const cli = join(projectRoot(), 'dist', 'app', 'cli.js');
  const child = spawn(
    process.execPath,
    [
      cli,
      'simulate',
      '--port',
      port,
      '--speed',
      String(speed),
      ...(trace !== undefined ? ['--trace', trace] : []),
      ...extra,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let output = '';
  child.stderr.on('data', (d: Buffer) => {
    output += d.toString();
  });
  const done = new Promise<number>((resolve) => child.once('exit', (code) => resolve(code ?? 1)));
  while (!output.includes('ready') && child.exitCode === null) await clock.sleep(20);
  return {
    done,
    log: () => output,
    stop: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill();
    },
  };
}

/** Waits until `count()` stops changing for one `intervalMs` (the last bytes crossed the pty). */
export async function waitUntilSteady(count: () => number, clock: Clock, intervalMs = 300): Promise<void> {
  let last = -1;
  while (count() !== last) {
    last = count();
    await clock.sleep(intervalMs);
  }
}
