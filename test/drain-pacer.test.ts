import t from 'tap';
import { coresFromCpuMax, coresFromQuota, cpuAllowanceCores, cpuCgroupOf } from '../core/cpu-allowance.js';
import { DrainPacer } from '../sync/drain-pacer.js';
import type { Clock } from '../core/clock.js';

t.test('cgroup CPU limits are read as cores (table)', async (t) => {
  const cpuMax: Array<[string, number | null]> = [
    ['20000 100000\n', 0.2],
    ['max 100000\n', null],
    ['150000 100000', 1.5],
    ['', null],
    ['garbage', null],
    ['-5 100000', null],
  ];
  for (const [text, cores] of cpuMax) t.equal(coresFromCpuMax(text), cores, `cpu.max ${JSON.stringify(text)}`);
  const quota: Array<[number, number, number | null]> = [
    [20_000, 100_000, 0.2],
    [-1, 100_000, null],
    [50_000, 0, null],
    [Number.NaN, 100_000, null],
  ];
  for (const [q, p, cores] of quota) t.equal(coresFromQuota(q, p), cores, `quota ${q} / period ${p}`);
});

t.test('the CPU cgroup is found in /proc/self/cgroup: the v1 cpu hierarchy first, else the v2 line', async (t) => {
  t.same(cpuCgroupOf('4:memory:/a\n2:cpu,cpuacct:/pi\n0::/\n'), {
    version: 1,
    controllers: 'cpu,cpuacct',
    path: '/pi',
  });
  t.same(cpuCgroupOf('0::/system.slice/v2c-gateway.service\n'), {
    version: 2,
    controllers: '',
    path: '/system.slice/v2c-gateway.service',
  });
  t.equal(cpuCgroupOf('not a cgroup file'), null);
  t.equal(cpuCgroupOf('2:cpuacct:/x\n'), null, 'cpuacct alone is not the cpu controller');
});

t.test('the allowance is the tightest quota on the path, at most one core', async (t) => {
  const files = (map: Record<string, string>) => (path: string) => map[path] ?? null;
  t.equal(
    cpuAllowanceCores(
      files({
        '/proc/self/cgroup': '0::/system.slice/v2c-gateway.service\n',
        '/sys/fs/cgroup/system.slice/v2c-gateway.service/cpu.max': '50000 100000',
        '/sys/fs/cgroup/system.slice/cpu.max': '30000 100000',
        '/sys/fs/cgroup/cpu.max': 'max 100000',
      }),
    ),
    0.3,
    'v2: the parent slice binds tighter than the service',
  );
  t.equal(
    cpuAllowanceCores(
      files({
        '/proc/self/cgroup': '3:cpu,cpuacct:/pi\n',
        '/sys/fs/cgroup/cpu,cpuacct/pi/cpu.cfs_quota_us': '20000\n',
        '/sys/fs/cgroup/cpu,cpuacct/pi/cpu.cfs_period_us': '100000\n',
        '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '-1\n',
      }),
    ),
    0.2,
    'v1 quota',
  );
  t.equal(cpuAllowanceCores(files({ '/proc/self/cgroup': '0::/\n' })), 1, 'no quota: one core (one event loop)');
  t.equal(cpuAllowanceCores(files({})), 1, 'no /proc: one core');
  const live = cpuAllowanceCores();
  t.ok(live > 0 && live <= 1, `this machine: ${live} core(s)`);
});

class StepClock implements Clock {
  now = 1_000;
  monoMs(): number {
    return this.now;
  }
  wallMs(): number {
    return this.now;
  }
  sleep(): Promise<void> {
    return Promise.resolve();
  }
}

t.test('the pacer holds bulk back while the process uses more than its share, and not for ever', async (t) => {
  const clock = new StepClock();
  let cpuUs = 0;
  const pacer = new DrainPacer({ allowedCores: 0.2, share: 0.5, maxCores: 1, windowMs: 500 }, clock, () => cpuUs);
  t.equal(pacer.delayMs(), 0, 'idle: a drain may start at once');
  // One batch's burst (20 ms of CPU in 25 ms) is smoothed over the window: the next may start.
  clock.now += 25;
  cpuUs += 20_000;
  t.equal(pacer.delayMs(), 0, 'one burst does not hold the next batch back');
  // Batches back to back at 0.8 cores against 0.1 allowed: held back once the average is over.
  let wait = 0;
  for (let i = 0; i < 40 && wait === 0; i++) {
    clock.now += 25;
    cpuUs += 20_000;
    wait = pacer.delayMs();
  }
  t.ok(wait > 0, `held back after a busy spell (${wait} ms)`);
  t.ok(wait <= Math.ceil(500 * Math.log(0.8 / 0.1)), 'no longer than the average takes to fall from 0.8 to 0.1 cores');
  t.ok(pacer.counters.holds >= 1);
  clock.now += wait;
  t.equal(pacer.delayMs(), 0, 'idle for that long, it may go');
});

t.test('a long busy spell (start-up, a purge) is not owed afterwards', async (t) => {
  const clock = new StepClock();
  let cpuUs = 0;
  const pacer = new DrainPacer({ allowedCores: 1, share: 0.1, maxCores: 1, windowMs: 500 }, clock, () => cpuUs);
  // 30 s at a full core, then 2 s idle.
  clock.now += 30_000;
  cpuUs += 30_000_000;
  const wait = pacer.delayMs();
  t.ok(wait > 0 && wait <= 1_200, `held for at most the window's decay from 1 core to 0.1 (${wait} ms)`);
  clock.now += 2_000;
  t.equal(pacer.delayMs(), 0, 'two seconds later the debt is gone');
});

t.test('a share of 1 under a cap above the allowance never holds anything back', async (t) => {
  const clock = new StepClock();
  let cpuUs = 0;
  const pacer = new DrainPacer({ allowedCores: 0.2, share: 1, maxCores: 0.25, windowMs: 500 }, clock, () => cpuUs);
  cpuUs += 10_000_000;
  clock.now += 1;
  t.equal(pacer.delayMs(), 0);
  t.equal(pacer.counters.holds, 0);
});

t.test('the drain keeps to the lower of its share of the allowance and the cap in cores', async (t) => {
  // [allowed cores, share, cap, the process's steady use in cores, held back?]
  const cases: [number, number, number, number, boolean][] = [
    [1, 0.5, 0.25, 0.3, true], // unconstrained: the cap binds before the share
    [1, 0.5, 0.25, 0.2, false],
    [1, 1, 0.25, 0.3, true], // share 1 does not lift the cap
    [0.2, 0.5, 0.25, 0.12, true], // a Pi-sized quota: the share binds (0.1)
    [0.2, 0.5, 0.25, 0.08, false],
    [1, 0.5, 1, 0.45, false], // cap 1: the share alone (0.5)
    [1, 0.5, 1, 0.55, true],
  ];
  for (const [allowedCores, share, maxCores, use, held] of cases) {
    const clock = new StepClock();
    let cpuUs = 0;
    const pacer = new DrainPacer({ allowedCores, share, maxCores, windowMs: 500 }, clock, () => cpuUs);
    let wait = 0;
    // Five seconds of steady use, ten windows: the average has settled on it.
    for (let i = 0; i < 200; i++) {
      clock.now += 25;
      cpuUs += use * 25_000;
      wait = pacer.delayMs();
    }
    t.equal(wait > 0, held, `allowed ${allowedCores}, share ${share}, cap ${maxCores}, using ${use}: ${wait} ms`);
  }
});
