// What a command costs before it does anything (issue 14, in part): `decode` and `simulate` load
// neither rxdb, mqtt nor zstd, and tools that are not installed are not spawned again and again.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { systemClock } from '../core/clock.js';
import { projectRoot } from '../core/project-root.js';
import { ClockCorrector } from '../sync/time/clock-corrector.js';
import { NtpStateSource } from '../sync/time/time-sources.js';
import { createRequire } from 'node:module';
import protobuf from 'protobufjs';
import { prepareCodecs, recordType } from '../proto/telemetry-codec.js';
import { startLocalBroker } from '../bench/rig/local-broker.js';
import { MqttSession } from '../sync/session/mqtt-session.js';
import { sessionSettings, waitUntil } from './helpers.js';

// The unbundled CLI: its module graph shows what each command imports (the shipped bundle in
// dist/app keeps the same dynamic imports as separate chunks; the other CLI tests run that one).
const CLI = join(projectRoot(), 'dist', 'gateway', 'cli.js');
const dir = mkdtempSync(join(tmpdir(), 'v2c-cost-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

/** The packages a CLI command imports, seen by a module resolve hook. */
function packagesLoaded(args: string[], input = ''): { status: number | null; packages: Set<string>; stderr: string } {
  const log = join(dir, `modules-${Math.random().toString(36).slice(2)}.log`);
  const hook = join(dir, 'log-resolve.mjs');
  writeFileSync(
    hook,
    `import { appendFileSync } from 'node:fs';\nexport async function resolve(s, c, next) { const r = await next(s, c); appendFileSync(${JSON.stringify(log)}, r.url + '\\n'); return r; }\n`,
  );
  const register = join(dir, 'register.mjs');
  writeFileSync(
    register,
    `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hook).href)});\n`,
  );
  writeFileSync(log, '');
  const r = spawnSync(process.execPath, ['--import', pathToFileURL(register).href, CLI, ...args], {
    input,
    encoding: 'utf8',
  });
  const packages = new Set(
    readFileSync(log, 'utf8')
      .split('\n')
      .map((u) => /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(u)?.[1])
      .filter((p): p is string => p !== undefined),
  );
  return { status: r.status, packages, stderr: r.stderr };
}

t.test("decode and --help load none of the gateway's heavy or native packages", async (t) => {
  const heavy = [
    'rxdb',
    'mqtt',
    '@mongodb-js/zstd',
    '@bokuweb/zstd-wasm',
    'better-sqlite3',
    'serialport',
    'onoff',
    'node-wifi',
    'protobufjs',
    'prom-client',
  ];
  const decode = packagesLoaded(
    ['decode', '--dbc', join(projectRoot(), 'drivers', 'reference-vehicle', 'v2c-reference.dbc'), '-'],
    '(1.0) can0 0C0#000000003A000001\n',
  );
  t.equal(decode.status, 0, decode.stderr);
  t.same(
    heavy.filter((p) => decode.packages.has(p)),
    [],
    `decode loads only ${[...decode.packages].join(', ') || 'no package'}`,
  );
  const help = packagesLoaded(['--help']);
  t.same([...help.packages], [], 'the usage text loads no package');
  const run = packagesLoaded(['run']);
  t.equal(run.status, 2, 'run without --config: a usage error');
  t.same([...run.packages], [], 'found before anything is loaded');
});

t.test('timedatectl that is not installed is looked for once, not every interval', async (t) => {
  const path = process.env.PATH;
  process.env.PATH = '/nonexistent';
  t.teardown(() => {
    process.env.PATH = path;
  });
  const logs: string[] = [];
  const ntp = new NtpStateSource(
    new ClockCorrector('boot', systemClock, { driftPpm: 50, windowMs: 3_600_000 }, () => undefined),
    systemClock,
    { intervalMs: 20, errorMs: 100 },
    (m) => logs.push(m),
  );
  ntp.start();
  t.teardown(() => ntp.stop());
  await waitUntil('the refusal logged', () => logs.length > 0, 10_000);
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.equal(ntp.checks, 1, 'run once');
  t.match(logs.join('\n'), /timedatectl cannot tell the NTP state .*ENOENT/);
});

t.test(
  'a timedatectl that fails (no systemd) is asked half as often after each failure, and again when it works',
  async (t) => {
    const bin = mkdtempSync(join(tmpdir(), 'v2c-fake-timedatectl-'));
    t.teardown(() => rmSync(bin, { recursive: true, force: true }));
    const tool = join(bin, 'timedatectl');
    writeFileSync(
      tool,
      '#!/bin/sh\necho "System has not been booted with systemd as init system (PID 1)." >&2\nexit 1\n',
      { mode: 0o755 },
    );
    const path = process.env.PATH;
    process.env.PATH = bin;
    t.teardown(() => {
      process.env.PATH = path;
    });
    const corrector = new ClockCorrector('boot', systemClock, { driftPpm: 50, windowMs: 3_600_000 }, () => undefined);
    const logs: string[] = [];
    const ntp = new NtpStateSource(corrector, systemClock, { intervalMs: 20, errorMs: 100 }, (m) => logs.push(m));
    ntp.start();
    t.teardown(() => ntp.stop());
    await waitUntil('four checks', () => ntp.checks >= 4, 10_000);
    const started = Date.now();
    const before = ntp.checks;
    await waitUntil('a fifth and sixth check', () => ntp.checks >= before + 2, 10_000);
    // After 4 failures the gaps are 320 and 640 ms (interval 20 ms): a fixed interval would have run ~48 times.
    t.ok(Date.now() - started >= 800, `checks ${before + 1} and ${before + 2} came ${Date.now() - started} ms later`);
    t.equal(logs.filter((l) => l.includes('timedatectl cannot tell')).length, 1, 'said once');
    writeFileSync(tool, '#!/bin/sh\necho yes\n', { mode: 0o755 });
    await waitUntil('NTP as a reference', () => corrector.reference?.source === 'ntp', 20_000);
    const working = ntp.checks;
    await waitUntil('checks at the interval again', () => ntp.checks >= working + 5, 5000);
  },
);

t.test("a session that connects and publishes builds no cache of MQTT's 65,536 message ids", async (t) => {
  // mqtt-packet's number cache (module state shared with the client): 6.6 MiB of heap when built.
  const { cache } = createRequire(import.meta.url)('mqtt-packet/numbers.js') as { cache: Record<number, Buffer> };
  const broker = await startLocalBroker();
  t.teardown(() => broker.stop());
  const session = new MqttSession({ ...sessionSettings(broker.url, 'start-cost'), pubackTimeoutMs: 60_000 }, () => {});
  t.teardown(() => session.close());
  session.start();
  await waitUntil('connected', () => session.isConnected, 60_000);
  await session.publish('v2c/test/cache', new Uint8Array([1, 2, 3]), { userProperties: {} });
  t.equal(Object.keys(cache).length, 0, 'no message-id buffers built');
});

t.test("prepareCodecs generates every message type's coders before the first record needs them", async (t) => {
  const types = (namespace: protobuf.NamespaceBase): protobuf.Type[] =>
    namespace.nestedArray.flatMap((n) => [
      ...(n instanceof protobuf.Type ? [n] : []),
      ...(n instanceof protobuf.Namespace ? types(n) : []),
    ]);
  // protobufjs replaces the prototype's setup stubs with generated functions of the type's own.
  const ready = (type: protobuf.Type): boolean =>
    ['encode', 'decode', 'fromObject'].every((m) => Object.hasOwn(type, m));
  const all = types(recordType.root);
  t.ok(all.length >= 10, `${all.length} message types`);
  t.notOk(all.every(ready), 'not generated on load');
  prepareCodecs();
  t.same(
    all.filter((type) => !ready(type)).map((type) => type.name),
    [],
    'all generated',
  );
});
