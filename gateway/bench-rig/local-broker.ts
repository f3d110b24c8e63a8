// Mosquitto on a free loopback port with a generated config, for the demo and the tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface LocalBroker {
  port: number;
  url: string;
  /** Directory holding the config (and persistence, when enabled). */
  dir: string;
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Stops the broker with `signal` (SIGKILL: a crash) and starts it again on the same port and directory. */
  restart(signal?: NodeJS.Signals): Promise<void>;
  log(): string;
}

export interface BrokerOptions {
  port?: number;
  /** Extra mosquitto.conf lines (ACLs, limits, TLS listeners…). */
  extraConfig?: string[];
  persistence?: boolean;
  dir?: string;
}

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === 'string') throw new Error('could not pick a free port');
  return address.port;
}

function mosquittoBinary(): string {
  for (const candidate of ['/usr/sbin/mosquitto', '/usr/local/sbin/mosquitto']) if (existsSync(candidate)) return candidate;
  return 'mosquitto';
}

export async function startLocalBroker(options: BrokerOptions = {}): Promise<LocalBroker> {
  const port = options.port ?? (await freePort());
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'v2c-broker-'));
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(conf, [
    `listener ${port} 127.0.0.1`,
    'allow_anonymous true',
    `persistence ${options.persistence === true ? 'true' : 'false'}`,
    `persistence_location ${dir}/`,
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    'log_type notice',
    ...(options.extraConfig ?? []),
    '',
  ].join('\n'));
  let child = await spawnBroker(conf, port);
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    dir,
    log: () => child.output,
    async restart(signal: NodeJS.Signals = 'SIGKILL') {
      await child.kill(signal);
      child = await spawnBroker(conf, port);
    },
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      await child.kill(signal);
      if (options.dir === undefined) rmSync(dir, { recursive: true, force: true });
    },
  };
}

interface BrokerProcess {
  readonly output: string;
  kill(signal: NodeJS.Signals): Promise<void>;
}

/** Starts mosquitto and resolves once it accepts connections on `port`. */
async function spawnBroker(conf: string, port: number): Promise<BrokerProcess> {
  const child: ChildProcess = spawn(mosquittoBinary(), ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let output = '';
  child.stderr?.on('data', (d: Buffer) => { output += d.toString(); });
  child.once('error', (err) => { output += `\nspawn error: ${err.message}`; });
  const broker: BrokerProcess = {
    get output() { return output; },
    async kill(signal) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill(signal);
      await exited;
    },
  };
  const deadline = Date.now() + 5000;
  for (;;) {
    if (child.exitCode !== null || output.includes('spawn error')) throw new Error(`mosquitto failed to start (apt-get install -y mosquitto): ${output.trim()}`);
    if (await canConnect(port)) return broker;
    if (Date.now() > deadline) throw new Error(`mosquitto did not listen on 127.0.0.1:${port} within 5 s: ${output.trim()}`);
    await sleep(25);
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
  });
}
