#!/usr/bin/env node
// Entry point for `npm run demo|test|bench|release|test:arm`: installs what a fresh clone lacks (npm packages,
// Debian's mosquitto and socat), compiles, then runs the job. Plain JS with no dependencies,
// because it must work before `npm ci` has run.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const job = process.argv[2];
const jobs = {
  demo: () => ['node', ['--enable-source-maps', 'dist/app/cli.js', 'demo', ...process.argv.slice(3)]],
  // tap skips git-ignored paths when it searches, so the compiled tests are named explicitly.
  test: () => ['npx', ['tap', ...testFiles()]],
  // The suite as a Pi runs it: one file at a time inside a cgroup holding a quarter of one core.
  'test-slow': () => ['npx', ['tap', '--jobs', '1', '--timeout', '3600', ...testFiles()]],
  bench: () => ['node', ['--enable-source-maps', '--expose-gc', 'dist/bench/run.js', ...process.argv.slice(3)]],
  // Board releases, cross-built and checked under qemu-user (release.mjs).
  release: () => ['node', ['.ci/release.mjs', ...process.argv.slice(3)]],
  arm: () => ['node', ['.ci/release.mjs', '--arch', 'arm64', '--arch', 'armv7', '--test']],
};
if (!(job in jobs)) fail(`unknown job "${job}"; expected one of ${Object.keys(jobs).join(', ')}`);

/** The files named after `--` (source paths such as test/slcan.test.ts run compiled), else all. */
function testFiles() {
  const named = process.argv.slice(3).map((a) => a.replace(/^(?:\.\/)?test\/(.+)\.ts$/, 'dist/test/$1.js'));
  return named.length > 0 ? named : compiledTests();
}

function compiledTests() {
  const dir = join(root, 'dist', 'test');
  return existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => f.endsWith('.test.js'))
        .map((f) => join('dist', 'test', f))
    : ['dist/test'];
}

function run(cmd, args, what) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.error) fail(`${what}: ${r.error.message}`);
  return r.status ?? 1;
}
function fail(message) {
  console.error(`v2c-gateway: ${message}`);
  process.exit(1);
}
function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

if (!existsSync(join(root, 'node_modules'))) {
  // npm before 11 ignores allowScripts and --strict-allow-scripts: every install script would run.
  const npmMajor = Number(spawnSync('npm', ['--version'], { encoding: 'utf8' }).stdout?.split('.')[0]);
  if (!(npmMajor >= 11))
    fail(
      `npm ${npmMajor || '(not found)'} would run every package's install script (allowScripts needs npm 11 or later); run: npm install -g npm@11`,
    );
  console.error('v2c-gateway: node_modules is missing; running npm ci --strict-allow-scripts');
  if (run('npm', ['ci', '--strict-allow-scripts', '--no-audit', '--no-fund'], 'npm ci') !== 0)
    fail('npm ci failed (see above)');
}

// Debian package -> the command it provides (systemd: systemd-notify and systemd-analyze for the service tests).
const debs = { mosquitto: 'mosquitto', socat: 'socat', systemd: 'systemd-notify' };
// Installed when we can (as root); without them only the power-loss test (FUSE) skips.
const optionalDebs = { fuse3: '/usr/bin/fusermount3', 'python3-fusepy': '/usr/lib/python3/dist-packages/fusepy.py' };
const missing = Object.keys(debs).filter((pkg) => !have(debs[pkg]) && !existsSync(`/usr/sbin/${debs[pkg]}`));
const missingOptional = Object.keys(optionalDebs).filter((pkg) => !existsSync(optionalDebs[pkg]));
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
if (!isRoot && missing.length > 0)
  fail(
    `missing Debian packages: ${missing.join(' ')}; run: sudo apt-get update && sudo apt-get install -y ${missing.join(' ')}`,
  );
const toInstall = isRoot ? [...missing, ...missingOptional] : [];
if (toInstall.length > 0) {
  console.error(`v2c-gateway: installing Debian packages: ${toInstall.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [
    ['update', '-qq'],
    ['install', '-y', '-qq', ...toInstall],
  ]) {
    const r = spawnSync('apt-get', args, { stdio: 'inherit', env });
    if (r.status !== 0)
      fail(`apt-get ${args.join(' ')} failed; install them by hand: apt-get install -y ${toInstall.join(' ')}`);
  }
}

if (run('npx', ['tsc', '-p', 'tsconfig.json'], 'tsc') !== 0) fail('TypeScript compilation failed (see above)');
if (run('node', ['.ci/bundle.mjs'], 'bundle') !== 0) fail('bundling the CLI failed (see above)');
let [cmd, args] = jobs[job]();
if (!job.startsWith('test')) process.exit(run(cmd, args, job));

const SLOW_CPU_CORES = 0.25;
let cgroup = null;
if (job === 'test-slow') {
  const { PiCgroup } = await import('../dist/bench/pi-cgroup.js');
  try {
    cgroup = PiCgroup.create(`v2c-test-slow-${process.pid}`, { cpuCores: SLOW_CPU_CORES, memoryBytes: null });
  } catch (err) {
    fail(`test:slow: ${err.message}`);
  }
  [cmd, args] = cgroup.wrap(cmd, args);
  console.error(
    `v2c-gateway: running the suite in cgroup ${cgroup.name}: ${SLOW_CPU_CORES} of one core, one test file at a time`,
  );
}

// Each run gets its own temporary directory: whatever a test leaves behind in it is a failure.
const testTmp = mkdtempSync(join(tmpdir(), 'v2c-test-run-'));
// Mosquitto drops root for its own user and must reach the broker directories inside it.
chmodSync(testTmp, 0o755);
const started = Date.now();
// Echo tap's output and close with a plain "N passed, N failed, N skipped" line from its summary.
const child = spawn(cmd, args, {
  cwd: root,
  stdio: ['ignore', 'pipe', 'inherit'],
  env: { ...process.env, TMPDIR: testTmp },
});
let tail = '';
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  tail = (tail + chunk.toString()).slice(-4096);
});
child.on('exit', (code) => {
  let status = code ?? 1;
  const summary = /# \{ total: (\d+)(.*)\}/.exec(tail);
  if (summary) {
    const count = (what) => Number(new RegExp(`${what}: (\\d+)`).exec(summary[2])?.[1] ?? 0);
    console.log(`tests: ${count('pass')} passed, ${count('fail')} failed, ${count('skip')} skipped`);
  }
  // tap compiles its own plugins on a fresh install through ts-node, which caches in TMPDIR: the
  // runner's cache, not a test's leftover.
  const leftBehind = readdirSync(testTmp).filter((f) => !f.startsWith('v8-compile-cache'));
  if (leftBehind.length > 0) {
    console.log(`tests: temporary files left behind in ${testTmp}: ${leftBehind.slice(0, 20).join(', ')}`);
    status = status === 0 ? 1 : status;
  } else {
    rmSync(testTmp, { recursive: true, force: true });
  }
  if (cgroup !== null) {
    const usage = cgroup.usage();
    const leaked = cgroup.remove();
    console.log(
      `tests: ${((Date.now() - started) / 60_000).toFixed(1)} min at ${SLOW_CPU_CORES} of one core; CPU ${usage.cpuSeconds.toFixed(0)} s, throttled in ${usage.throttledPeriods} periods`,
    );
    if (leaked.length > 0) {
      console.log(`tests: processes left running after the suite (killed): ${leaked.join(', ')}`);
      status = status === 0 ? 1 : status;
    }
  }
  process.exit(status);
});
