// How much CPU this process may use: the tightest cgroup CPU quota on its path (v2 `cpu.max`, v1
// `cpu.cfs_quota_us`), never more than the one core its event loop can occupy. The drain pacer
// budgets bulk sending against it, so a systemd CPUQuota or a container limit is honoured.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const CGROUP_ROOT = '/sys/fs/cgroup';

/** Cores a v2 `cpu.max` allows ("20000 100000" → 0.2); null when unlimited ("max …") or unreadable. */
export function coresFromCpuMax(text: string): number | null {
  const [quota, period] = text.trim().split(/\s+/);
  if (quota === undefined || quota === 'max') return null;
  return coresFromQuota(Number(quota), Number(period ?? 100_000));
}

/** Cores a v1 quota/period pair allows; null when unlimited (quota -1) or not numbers. */
export function coresFromQuota(quotaUs: number, periodUs: number): number | null {
  if (!Number.isFinite(quotaUs) || !Number.isFinite(periodUs) || quotaUs <= 0 || periodUs <= 0) return null;
  return quotaUs / periodUs;
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

/**
 * Cores this process may use, at most 1 (one event loop). `read` returns a file's text or null; the
 * default reads the live system.
 */
export function cpuAllowanceCores(read: (path: string) => string | null = readText): number {
  const group = cpuCgroupOf(read('/proc/self/cgroup') ?? '');
  let cores = 1;
  if (group === null) return cores;
  const mounts = group.version === 2 ? [CGROUP_ROOT] : [join(CGROUP_ROOT, group.controllers), join(CGROUP_ROOT, 'cpu')];
  for (const dir of ancestors(group.path)) {
    for (const mount of mounts) {
      const allowed =
        group.version === 2
          ? coresFromCpuMax(read(join(mount, dir, 'cpu.max')) ?? 'max')
          : coresFromQuota(
              Number(read(join(mount, dir, 'cpu.cfs_quota_us')) ?? -1),
              Number(read(join(mount, dir, 'cpu.cfs_period_us')) ?? 100_000),
            );
      if (allowed !== null) cores = Math.min(cores, allowed);
    }
  }
  return cores;
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}
