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

t.test(
  'the pacer holds bulk back once the process uses more than its share, and lets it go when it is below',
  async (t) => {
    const clock = new StepClock();
    let cpuUs = 0;
    const pacer = new DrainPacer({ allowedCores: 0.2, share: 0.5, burstMs: 10 }, clock, () => cpuUs);
    t.equal(pacer.delayMs(), 0, 'idle: a drain may start at once');
    // A batch took 30 ms of CPU in 50 ms of wall time: 0.6 cores against 0.1 allowed.
    clock.now += 50;
    cpuUs += 30_000;
    const wait = pacer.delayMs();
    // Credit: 10 + 50 × 0.1 − 30 = −15 CPU-ms, repaid at 0.1 CPU-ms per ms.
    t.equal(wait, 150, 'held until the average is back within the share');
    t.equal(pacer.counters.holds, 1);
    clock.now += wait;
    t.equal(pacer.delayMs(), 0, 'after the wait it may go');
    // Long idle builds credit only up to the burst.
    clock.now += 60_000;
    t.equal(pacer.delayMs(), 0);
    clock.now += 1;
    cpuUs += 15_000;
    t.ok(pacer.delayMs() > 0, 'idle time does not bank more than the burst');
  },
);

t.test('a share of 1 never holds anything back', async (t) => {
  const clock = new StepClock();
  let cpuUs = 0;
  const pacer = new DrainPacer({ allowedCores: 0.2, share: 1, burstMs: 10 }, clock, () => cpuUs);
  cpuUs += 10_000_000;
  clock.now += 1;
  t.equal(pacer.delayMs(), 0);
  t.equal(pacer.counters.holds, 0);
});
