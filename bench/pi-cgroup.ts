// A Linux control group that stands for a Raspberry-Pi-class board: a CPU quota (a fraction of one
// of this machine's cores) and optionally a memory limit. `npm run test:slow` runs the suite in one,
// `npm run bench -- envelope` the gateway. cgroup v1 (cpu, cpuacct, memory hierarchies) and v2
// (unified) are both handled; creating one needs root.
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = '/sys/fs/cgroup';
const CFS_PERIOD_US = 100_000;

export class CgroupUnavailableError extends Error {
  readonly code = 'CGROUP_UNAVAILABLE';
}

export interface PiLimits {
  /** Share of one core, e.g. 0.25; null: no quota (the group only measures). */
  cpuCores: number | null;
  memoryBytes: number | null;
}

export interface CgroupUsage {
  cpuSeconds: number;
  /** Highest memory charged to the group (RSS and page cache), when the kernel reports it. */
  memoryPeakBytes: number | null;
  oomKills: number;
  /** Periods in which the quota ran out (the group wanted more CPU than it had). */
  throttledPeriods: number;
  /** Quota periods in which the group ran at all. */
  periods: number;
}

export class PiCgroup {
  private constructor(
    readonly name: string,
    /** The `cgroup.procs` files a process joins (one per v1 hierarchy, one for v2). */
    private readonly dirs: { cpu: string; cpuacct: string; memory: string },
    private readonly v2: boolean,
  ) {}

  /** Creates `name` with `limits`; a clear error where this machine cannot. */
  static create(name: string, limits: PiLimits): PiCgroup {
    if (typeof process.getuid === 'function' && process.getuid() !== 0)
      throw new CgroupUnavailableError('a CPU-limited cgroup needs root (run as root, or with sudo)');
    if (limits.cpuCores !== null && !(limits.cpuCores > 0 && limits.cpuCores <= 64))
      throw new CgroupUnavailableError(`cpuCores must be in (0, 64], got ${limits.cpuCores}`);
    const quotaUs = limits.cpuCores === null ? null : String(Math.round(limits.cpuCores * CFS_PERIOD_US));
    try {
      if (existsSync(join(ROOT, 'cgroup.controllers'))) {
        const dir = join(ROOT, name);
        writeFileSync(join(ROOT, 'cgroup.subtree_control'), '+cpu +memory');
        mkdirSync(dir);
        writeFileSync(join(dir, 'cpu.max'), `${quotaUs ?? 'max'} ${CFS_PERIOD_US}`);
        if (limits.memoryBytes !== null) {
          writeFileSync(join(dir, 'memory.max'), String(limits.memoryBytes));
          writeFileSync(join(dir, 'memory.swap.max'), '0');
        }
        return new PiCgroup(name, { cpu: dir, cpuacct: dir, memory: dir }, true);
      }
      for (const h of ['cpu', 'cpuacct', 'memory'])
        if (!existsSync(join(ROOT, h, 'cgroup.procs')))
          throw new CgroupUnavailableError(`no cgroup ${h} hierarchy at ${join(ROOT, h)}`);
      const dirs = {
        cpu: join(ROOT, 'cpu', name),
        cpuacct: join(ROOT, 'cpuacct', name),
        memory: join(ROOT, 'memory', name),
      };
      // cpu and cpuacct are often one hierarchy mounted twice: the second mkdir then finds it made.
      for (const dir of Object.values(dirs)) if (!existsSync(dir)) mkdirSync(dir);
      writeFileSync(join(dirs.cpu, 'cpu.cfs_period_us'), String(CFS_PERIOD_US));
      writeFileSync(join(dirs.cpu, 'cpu.cfs_quota_us'), quotaUs ?? '-1');
      if (limits.memoryBytes !== null) {
        writeFileSync(join(dirs.memory, 'memory.limit_in_bytes'), String(limits.memoryBytes));
        // Without this a limited group swaps instead of meeting its limit, where swap is on.
        if (existsSync(join(dirs.memory, 'memory.memsw.limit_in_bytes')))
          writeFileSync(join(dirs.memory, 'memory.memsw.limit_in_bytes'), String(limits.memoryBytes));
      }
      return new PiCgroup(name, dirs, false);
    } catch (err) {
      if (err instanceof CgroupUnavailableError) throw err;
      throw new CgroupUnavailableError(`cannot create cgroup ${name} under ${ROOT}: ${(err as Error).message}`);
    }
  }

  /** A command line that joins this group, then runs `cmd args` (so every child it starts is in it too). */
  wrap(cmd: string, args: readonly string[]): [string, string[]] {
    const procs = [...new Set(Object.values(this.dirs))].map((d) => join(d, 'cgroup.procs'));
    return [
      'sh',
      ['-c', `for f in ${procs.join(' ')}; do echo $$ > "$f" || exit 97; done; exec "$@"`, 'pi-cgroup', cmd, ...args],
    ];
  }

  /** Processes still in the group. */
  pids(): number[] {
    return readFileSync(join(this.dirs.cpu, 'cgroup.procs'), 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map(Number);
  }

  usage(): CgroupUsage {
    const read = (dir: string, file: string): string => readFileSync(join(dir, file), 'utf8');
    const stat = (text: string, key: string): number => Number(new RegExp(`^${key} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
    if (this.v2) {
      const mem = this.dirs.memory;
      return {
        cpuSeconds: stat(read(this.dirs.cpu, 'cpu.stat'), 'usage_usec') / 1e6,
        memoryPeakBytes: existsSync(join(mem, 'memory.peak')) ? Number(read(mem, 'memory.peak')) : null,
        oomKills: stat(read(mem, 'memory.events'), 'oom_kill'),
        throttledPeriods: stat(read(this.dirs.cpu, 'cpu.stat'), 'nr_throttled'),
        periods: stat(read(this.dirs.cpu, 'cpu.stat'), 'nr_periods'),
      };
    }
    const mem = this.dirs.memory;
    return {
      cpuSeconds: Number(read(this.dirs.cpuacct, 'cpuacct.usage')) / 1e9,
      memoryPeakBytes: Number(read(mem, 'memory.max_usage_in_bytes')),
      oomKills: stat(read(mem, 'memory.oom_control'), 'oom_kill'),
      throttledPeriods: stat(read(this.dirs.cpu, 'cpu.stat'), 'nr_throttled'),
      periods: stat(read(this.dirs.cpu, 'cpu.stat'), 'nr_periods'),
    };
  }

  /** Kills what is left in the group (returning those pids: a leak) and removes it. */
  remove(): number[] {
    const left = this.pids();
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone meanwhile */
      }
    }
    for (const dir of new Set(Object.values(this.dirs))) {
      // A killed process leaves the group a moment later.
      for (let i = 0; i < 50; i++) {
        try {
          rmdirSync(dir);
          break;
        } catch {
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
        }
      }
    }
    return left;
  }
}
