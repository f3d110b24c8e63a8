// `v2c-gateway run` under a systemd-like supervisor: a real unix datagram socket (socat) as
// NOTIFY_SOCKET receives READY=1, WATCHDOG=1 at half of WATCHDOG_USEC, and STOPPING=1.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { startLocalBroker } from '../bench/rig/local-broker.js';
import { projectRoot } from '../core/project-root.js';
import { waitUntil } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'v2c-notify-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const cli = join(projectRoot(), 'dist', 'app', 'cli.js');

/** The first `seconds` of the reference drive, as a candump log. */
function shortTrace(seconds: number): string {
  const lines = gunzipSync(readFileSync(join(projectRoot(), 'drivers', 'reference-vehicle', 'drive.log.gz')))
    .toString('utf8')
    .split('\n');
  const t0 = Number(/^\((\d+\.\d+)\)/.exec(lines[0] ?? '')?.[1]);
  const kept = lines.filter((l) => Number(/^\((\d+\.\d+)\)/.exec(l)?.[1]) - t0 < seconds);
  const file = join(dir, 'short.log');
  writeFileSync(file, `${kept.join('\n')}\n`);
  return file;
}

async function runUnderSupervisor(
  t: Test,
  env: Record<string, string>,
): Promise<{ messages: string; code: number | null }> {
  const broker = await startLocalBroker();
  t.teardown(() => broker.stop());
  const config = join(dir, `gateway-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(
    config,
    [
      'vehicle: { id: V2CREF00000000001, region: eu-central-1 }',
      `can: { source: candump, file: ${shortTrace(1.5)}, speed: 1 }`,
      `dbc: ${join(projectRoot(), 'drivers', 'reference-vehicle', 'v2c-reference.dbc')}`,
      `store: { dir: ${join(dir, `store-${Math.random().toString(36).slice(2)}`)} }`,
      `mqtt: { url: ${broker.url} }`,
      'metrics: { port: 0 }',
      '',
    ].join('\n'),
  );
  const socket = join(dir, `notify-${Math.random().toString(36).slice(2)}.sock`);
  const out = `${socket}.out`;
  const receiver = spawn('socat', ['-u', `UNIX-RECV:${socket}`, `OPEN:${out},creat,append`], { stdio: 'ignore' });
  t.teardown(() => {
    receiver.kill();
  });
  await waitUntil('the notify socket', () => existsSync(socket), 5000);
  const gateway = spawn(process.execPath, [cli, 'run', '--config', config], {
    env: { ...process.env, NOTIFY_SOCKET: socket, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  gateway.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const code = await new Promise<number | null>((resolve) => gateway.once('exit', resolve));
  t.equal(code, 0, `the run ends by itself at the end of the trace: ${stderr.slice(-400)}`);
  await new Promise((resolve) => setTimeout(resolve, 300));
  return { messages: existsSync(out) ? readFileSync(out, 'utf8') : '', code };
}

t.test('READY, WATCHDOG at half the period, STOPPING', async (t) => {
  const { messages } = await runUnderSupervisor(t, { WATCHDOG_USEC: '200000' });
  t.match(messages, /READY=1/, 'ready once running');
  t.match(messages, /STATUS=capturing \(candump\), broker mqtt:\/\/127\.0\.0\.1:\d+/);
  const pings = messages.match(/WATCHDOG=1/g)?.length ?? 0;
  t.ok(pings >= 8, `watchdog pinged every 100 ms through a 1.5 s run (${pings})`);
  t.match(messages, /STOPPING=1/, 'stopping said on the way out');
  t.ok(messages.indexOf('READY=1') < messages.indexOf('STOPPING=1'));
});

t.test('a watchdog meant for another process is left alone', async (t) => {
  const { messages } = await runUnderSupervisor(t, { WATCHDOG_USEC: '200000', WATCHDOG_PID: '1' });
  t.match(messages, /READY=1/);
  t.notMatch(messages, /WATCHDOG=1/);
});
