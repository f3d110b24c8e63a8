// Mosquitto on a free loopback port with a generated config, for the demo and the tests.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface LocalBroker {
  port: number;
  /** mqtt://127.0.0.1:port, or mqtts:// with TLS. */
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
  /**
   * Mutual TLS (DESIGN §7): only clients with a certificate from `ca` connect, their CN is their
   * user name, and the ACL lets a device use only its own vehicle's topics; `cloudUser` (the
   * sink, the CSR signer) may use every topic.
   */
  tls?: { ca: string; cert: string; key: string; cloudUser: string };
}

/** mosquitto.conf lines for a mutual-TLS listener and its per-vehicle ACL (written to `dir`). */
function tlsConfig(dir: string, tls: NonNullable<BrokerOptions['tls']>): string[] {
  const acl = join(dir, 'acl');
  writeFileSync(
    acl,
    [
      `user ${tls.cloudUser}`,
      'topic readwrite v2c/#',
      '',
      '# every other client: its certificate CN is its vehicle id (the second level of the topic tree below the region)',
      'pattern readwrite v2c/v1/+/%u/#',
      '',
    ].join('\n'),
    { mode: 0o644 },
  );
  // Started as root, Mosquitto drops to its own user before it reads the ACL and its TLS files,
  // which may sit in a private directory: they are copied beside its config, the key still 0600
  // and owned by that user.
  chmodSync(dir, 0o755);
  const copies = { cafile: join(dir, 'ca.crt'), certfile: join(dir, 'broker.crt'), keyfile: join(dir, 'broker.key') };
  copyFileSync(tls.ca, copies.cafile);
  copyFileSync(tls.cert, copies.certfile);
  copyFileSync(tls.key, copies.keyfile);
  chmodSync(copies.cafile, 0o644);
  chmodSync(copies.certfile, 0o644);
  chmodSync(copies.keyfile, 0o600);
  const owner = process.getuid?.() === 0 ? mosquittoUser() : null;
  if (owner !== null) chownSync(copies.keyfile, owner.uid, owner.gid);
  return [
    ...Object.entries(copies).map(([k, v]) => `${k} ${v}`),
    'require_certificate true',
    'use_identity_as_username true',
    'tls_version tlsv1.2',
    `acl_file ${acl}`,
  ];
}

function mosquittoUser(): { uid: number; gid: number } | null {
  const id = (flag: string): number =>
    Number(spawnSync('id', [flag, 'mosquitto'], { encoding: 'utf8' }).stdout.trim() || NaN);
  const uid = id('-u');
  const gid = id('-g');
  return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : null;
}

/** A TCP server listening on a free port of 127.0.0.1. */
export async function loopbackServer(): Promise<{ server: Server; port: number }> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no loopback port');
  return { server, port: address.port };
}

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const { server, port } = await loopbackServer();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function mosquittoBinary(): string {
  for (const candidate of ['/usr/sbin/mosquitto', '/usr/local/sbin/mosquitto'])
    if (existsSync(candidate)) return candidate;
  return 'mosquitto';
}

export async function startLocalBroker(options: BrokerOptions = {}): Promise<LocalBroker> {
  const port = options.port ?? (await freePort());
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'v2c-broker-'));
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      `persistence ${options.persistence === true ? 'true' : 'false'}`,
      `persistence_location ${dir}/`,
      ...(options.tls !== undefined ? tlsConfig(dir, options.tls) : []),
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      'log_type notice',
      ...(options.extraConfig ?? []),
      '',
    ].join('\n'),
  );
  let child = await spawnBroker(conf, port);
  return {
    port,
    url: `${options.tls !== undefined ? 'mqtts' : 'mqtt'}://127.0.0.1:${port}`,
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
  child.stderr?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  child.once('error', (err) => {
    output += `\nspawn error: ${err.message}`;
  });
  const broker: BrokerProcess = {
    get output() {
      return output;
    },
    async kill(signal) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill(signal);
      await exited;
    },
  };
  const deadline = Date.now() + 5000;
  for (;;) {
    if (child.exitCode !== null || output.includes('spawn error'))
      throw new Error(`mosquitto failed to start (apt-get install -y mosquitto): ${output.trim()}`);
    if (await canConnect(port)) return broker;
    if (Date.now() > deadline)
      throw new Error(`mosquitto did not listen on 127.0.0.1:${port} within 5 s: ${output.trim()}`);
    await sleep(25);
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
