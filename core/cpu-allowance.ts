// How much CPU this process may use: the tightest cgroup CPU quota on its path (v2 `cpu.max`, v1
// `cpu.cfs_quota_us`), never more than the one core its event loop can occupy, and the period the
// quota is granted in. The drain pacer budgets bulk sending against both, so a systemd CPUQuota or
// a container limit is honoured.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const CGROUP_ROOT = '/sys/fs/cgroup';

/** A CFS quota: cores allowed on average, granted afresh each period. */
export interface CpuQuota {
  cores: number;
  periodMs: number;
}

export interface CpuAllowance {
  /** Cores this process may use, at most 1 (one event loop). */
  cores: number;
  /**
   * The period of the quota that sets `cores`, or null when no quota binds: within a period a
   * process that used up its quota is stopped until the next one.
   */
  quotaPeriodMs: number | null;
}

/** The quota a v2 `cpu.max` sets ("20000 100000" → 0.2 core per 100 ms); null when unlimited ("max …") or unreadable. */
export function quotaFromCpuMax(text: string): CpuQuota | null {
  const [quota, period] = text.trim().split(/\s+/);
  if (quota === undefined || quota === 'max') return null;
  return quotaFromCfs(Number(quota), Number(period ?? 100_000));
}

/** The quota a v1 quota/period pair sets; null when unlimited (quota -1) or not numbers. */
export function quotaFromCfs(quotaUs: number, periodUs: number): CpuQuota | null {
  if (!Number.isFinite(quotaUs) || !Number.isFinite(periodUs) || quotaUs <= 0 || periodUs <= 0) return null;
  return { cores: quotaUs / periodUs, periodMs: periodUs / 1000 };
}

/** This process's CPU cgroup: the v1 `cpu` hierarchy's line if there is one, else the v2 line. */
export function cpuCgroupOf(procSelfCgroup: string): { version: 1 | 2; controllers: string; path: string } | null {
  let v2: { version: 2; controllers: string; path: string } | null = null;
  for (const line of procSelfCgroup.split('\n')) {
    const match = /^\d+:([^:]*):(.*)$/.exec(line.trim());
    if (match === null) continue;
    const [, controllers = '', path = '/'] = match;
    if (controllers.split(',').includes('cpu')) return { version: 1, controllers, path };
    if (controllers === '') v2 = { version: 2, controllers, path };
  }
  return v2;
}

/** Every directory from `path` up to the hierarchy's root: a parent's quota binds its children too. */
function ancestors(path: string): string[] {
  const parts = path.split('/').filter((p) => p !== '');
  return parts.map((_, i) => '/' + parts.slice(0, parts.length - i).join('/')).concat('/');
}

/** What this process may use. `read` returns a file's text or null; the default reads the live system. */
export function cpuAllowance(read: (path: string) => string | null = readText): CpuAllowance {
  const group = cpuCgroupOf(read('/proc/self/cgroup') ?? '');
  const allowance: CpuAllowance = { cores: 1, quotaPeriodMs: null };
  if (group === null) return allowance;
  const mounts = group.version === 2 ? [CGROUP_ROOT] : [join(CGROUP_ROOT, group.controllers), join(CGROUP_ROOT, 'cpu')];
  for (const dir of ancestors(group.path)) {
    for (const mount of mounts) {
      const quota =
        group.version === 2
          ? quotaFromCpuMax(read(join(mount, dir, 'cpu.max')) ?? 'max')
          : quotaFromCfs(
              Number(read(join(mount, dir, 'cpu.cfs_quota_us')) ?? -1),
              Number(read(join(mount, dir, 'cpu.cfs_period_us')) ?? 100_000),
            );
      if (quota !== null && quota.cores < allowance.cores) {
        allowance.cores = quota.cores;
        allowance.quotaPeriodMs = quota.periodMs;
      }
    }
  }
  return allowance;
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}
