// How the service unit starts the gateway (its node flags and environment), for the benches that
// must measure the gateway as a board runs it.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../../core/project-root.js';

/** The node flags and environment the service unit starts the gateway with: the envelope measures what a board runs. */
export function serviceUnitLaunch(
  unit: string = readFileSync(join(projectRoot(), 'provisioning', 'v2c-gateway.service'), 'utf8'),
): { nodeFlags: string[]; env: Record<string, string> } {
  const exec = /^ExecStart=@NODE@ (.*?)\s*@APP@\//m.exec(unit);
  const nodeFlags = (exec?.[1] ?? '').split(/\s+/).filter((f) => f !== '');
  const env: Record<string, string> = {};
  for (const [, name = '', value = ''] of unit.matchAll(/^Environment=([A-Z_][A-Z0-9_]*)=(\S*)$/gm)) env[name] = value;
  return { nodeFlags, env };
}
