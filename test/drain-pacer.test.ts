import t from 'tap';
import { cpuAllowance, cpuCgroupOf, quotaFromCfs, quotaFromCpuMax, type CpuQuota } from '../core/cpu-allowance.js';
import { DrainPacer } from '../sync/drain-pacer.js';
import type { Clock } from '../core/clock.js';

t.test('cgroup CPU limits are read as cores per period (table)', async (t) => {
  const cpuMax: Array<[string, CpuQuota | null]> = [
    ['20000 100000\n', { cores: 0.2, periodMs: 100 }],
    ['max 100000\n', null],
    ['150000 100000', { cores: 1.5, periodMs: 100 }],
    ['10000 50000', { cores: 0.2, periodMs: 50 }],
    ['', null],
    ['garbage', null],
    ['-5 100000', null],
  ];
  for (const [text, quota] of cpuMax) t.same(quotaFromCpuMax(text), quota, `cpu.max ${JSON.stringify(text)}`);
  const cfs: Array<[number, number, CpuQuota | null]> = [
    [20_000, 100_000, { cores: 0.2, periodMs: 100 }],
    [-1, 100_000, null],
    [50_000, 0, null],
    [Number.NaN, 100_000, null],
  ];
  for (const [q, p, quota] of cfs) t.same(quotaFromCfs(q, p), quota, `quota ${q} / period ${p}`);
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

t.test('the allowance is the tightest quota on the path, at most one core, with its period', async (t) => {
  const files = (map: Record<string, string>) => (path: string) => map[path] ?? null;
  t.same(
    cpuAllowance(
      files({
        '/proc/self/cgroup': '0::/system.slice/v2c-gateway.service\n',
        '/sys/fs/cgroup/system.slice/v2c-gateway.service/cpu.max': '50000 100000',
        '/sys/fs/cgroup/system.slice/cpu.max': '15000 50000',
        '/sys/fs/cgroup/cpu.max': 'max 100000',
      }),
    ),
    { cores: 0.3, quotaPeriodMs: 50 },
    'v2: the parent slice binds tighter than the service, in its own period',
  );
  t.same(
    cpuAllowance(
      files({
        '/proc/self/cgroup': '3:cpu,cpuacct:/pi\n',
        '/sys/fs/cgroup/cpu,cpuacct/pi/cpu.cfs_quota_us': '20000\n',
        '/sys/fs/cgroup/cpu,cpuacct/pi/cpu.cfs_period_us': '100000\n',
        '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '-1\n',
      }),
    ),
    { cores: 0.2, quotaPeriodMs: 100 },
    'v1 quota',
  );
  t.same(
    cpuAllowance(files({ '/proc/self/cgroup': '0::/a\n', '/sys/fs/cgroup/a/cpu.max': '200000 100000' })),
    { cores: 1, quotaPeriodMs: null },
    'a quota of two cores does not bind: one core (one event loop), no period',
  );
  t.same(cpuAllowance(files({ '/proc/self/cgroup': '0::/\n' })), { cores: 1, quotaPeriodMs: null }, 'no quota');
  t.same(cpuAllowance(files({})), { cores: 1, quotaPeriodMs: null }, 'no /proc: one core');
  const live = cpuAllowance();
  t.ok(live.cores > 0 && live.cores <= 1, `this machine: ${live.cores} core(s)`);
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
  const pacer = new DrainPacer(
    { allowedCores: 0.2, share: 0.5, maxCores: 1, windowMs: 500, quotaPeriodMs: null, burstShare: 0.25 },
    clock,
    () => cpuUs,
  );
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
  const pacer = new DrainPacer(
    { allowedCores: 1, share: 0.1, maxCores: 1, windowMs: 500, quotaPeriodMs: null, burstShare: 0.25 },
    clock,
    () => cpuUs,
  );
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
  const pacer = new DrainPacer(
    { allowedCores: 0.2, share: 1, maxCores: 0.25, windowMs: 500, quotaPeriodMs: null, burstShare: 0.25 },
    clock,
    () => cpuUs,
  );
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
    const pacer = new DrainPacer(
      { allowedCores, share, maxCores, windowMs: 500, quotaPeriodMs: null, burstShare: 0.25 },
      clock,
      () => cpuUs,
    );
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

t.test(
  'under a quota a batch waits for room in the quota period, as long as the last burst takes to age',
  async (t) => {
    // A Pi-sized quota: 20 ms of CPU per 100 ms period; a batch may start while the last period used ≤ 5.
    const quotaed = { allowedCores: 0.2, share: 1, maxCores: 1, windowMs: 500, quotaPeriodMs: 100, burstShare: 0.25 };
    const clock = new StepClock();
    let cpuUs = 0;
    const pacer = new DrainPacer(quotaed, clock, () => cpuUs);
    t.equal(pacer.delayMs(), 0, 'an idle period: the batch starts');
    // Its burst: 12 ms of CPU in 15 ms, then packed.
    clock.now += 15;
    cpuUs += 12_000;
    pacer.note();
    clock.now += 25;
    t.equal(pacer.delayMs(), 75, '40 ms later the next waits until the burst is a period old (at +115 ms)');
    clock.now += 74;
    t.ok(pacer.delayMs() > 0, 'still within the period at +114 ms');
    clock.now += 1;
    t.equal(pacer.delayMs(), 0, 'at +115 ms the period has room');
    t.ok(pacer.counters.holds >= 2);

    // Without the note at the end of the burst, the next sample is the late one: the wait runs from it.
    const unnoted = new DrainPacer(quotaed, clock, () => cpuUs);
    unnoted.delayMs();
    clock.now += 40;
    cpuUs += 12_000;
    t.equal(unnoted.delayMs(), 100, 'the burst is known only from the sample 40 ms later');
  },
);

t.test('the quota-period check (table): what the last period used against burstShare of its quota', async (t) => {
  // [quota period ms (null: no quota binds), burstShare, CPU µs used 10 ms ago, held back?]
  const cases: [number | null, number, number, boolean][] = [
    [100, 0.25, 4_000, false],
    [100, 0.25, 6_000, true],
    [100, 0.5, 9_000, false],
    [100, 0.5, 11_000, true],
    [50, 0.25, 3_000, true], // a 50 ms period: 0.2 × 50 × 0.25 = 2.5 ms
    [null, 0.25, 90_000, false], // no quota: nothing to run out of (the average still paces)
  ];
  for (const [quotaPeriodMs, burstShare, used, held] of cases) {
    const clock = new StepClock();
    let cpuUs = 0;
    const pacer = new DrainPacer(
      { allowedCores: 0.2, share: 1, maxCores: 1, windowMs: 500, quotaPeriodMs, burstShare },
      clock,
      () => cpuUs,
    );
    pacer.delayMs();
    clock.now += 10;
    cpuUs += used;
    pacer.note();
    t.equal(pacer.delayMs() > 0, held, `period ${quotaPeriodMs}, share ${burstShare}, used ${used / 1000} ms`);
  }
});

t.test('the quota-period samples stay bounded however often the pacer is asked', async (t) => {
  const clock = new StepClock();
  let cpuUs = 0;
  const pacer = new DrainPacer(
    { allowedCores: 0.2, share: 0.5, maxCores: 1, windowMs: 500, quotaPeriodMs: 100, burstShare: 0.25 },
    clock,
    () => cpuUs,
  );
  for (let i = 0; i < 100_000; i++) {
    clock.now += 0.25;
    cpuUs += 50;
    pacer.delayMs();
    pacer.note();
  }
  const samples = (pacer as unknown as { samples: unknown[] }).samples.length;
  t.ok(samples <= 102, `samples kept: ${samples} (one a millisecond over one period)`);
});
