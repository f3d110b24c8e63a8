// A socat pseudo-terminal pair: the simulated USB adapter on one end, the gateway on the other.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface PtyPair {
  /** Path the adapter simulator opens. */
  adapterEnd: string;
  /** Path the gateway opens, as it would /dev/ttyACM0. */
  gatewayEnd: string;
  dir: string;
  /** Ends socat, as when the adapter is unplugged; `keepDir` leaves the folder for a re-plug. */
  close(keepDir?: boolean): Promise<void>;
}

/** Opens a pair; passing the `dir` of an earlier pair recreates the same paths (a re-plugged adapter). */
export async function openPtyPair(dir = mkdtempSync(join(tmpdir(), 'v2c-pty-'))): Promise<PtyPair> {
  const adapterEnd = join(dir, 'adapter');
  const gatewayEnd = join(dir, 'ttyV2C0');
  const child: ChildProcess = spawn(
    'socat',
    [`pty,raw,echo=0,link=${adapterEnd}`, `pty,raw,echo=0,link=${gatewayEnd}`],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const spawnError = new Promise<never>((_, reject) =>
    child.once('error', (err) => reject(new Error(`cannot start socat (apt-get install -y socat): ${err.message}`))),
  );
  const deadline = Date.now() + 5000;
  while (!(existsSync(adapterEnd) && existsSync(gatewayEnd))) {
    if (child.exitCode !== null) throw new Error(`socat exited with ${child.exitCode}: ${stderr.trim()}`);
    if (Date.now() > deadline) throw new Error(`socat did not create the pty pair within 5 s: ${stderr.trim()}`);
    await Promise.race([sleep(20), spawnError]);
  }
  return {
    adapterEnd,
    gatewayEnd,
    dir,
    async close(keepDir = false) {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((resolve) => child.once('exit', resolve));
      }
      if (!keepDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}
