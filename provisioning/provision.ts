// `v2c-gateway provision`: from a blank board to an installed, validated gateway. Every check runs
// before anything is written; the new installation is staged as a release and switched to with
// one atomic rename, so a failed run leaves the previous installation as it was.
import { spawnSync } from 'node:child_process';
import { readInputFile } from '../core/input-file.js';
import {
  chownSync,
  closeSync,
  constants,
  existsSync,
  fchmodSync,
  fstatSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { ConfigError, referenceVehicleSettings, validateConfig, vehicleIdSchema } from '../core/config.js';
import { projectRoot } from '../core/project-root.js';
import {
  brokerUrlProblem,
  checkCredentials,
  keyModeProblem,
  type CertificateFacts,
  type CredentialProblem,
} from './credential-checks.js';
import { Installation, RELEASE_FILES, type ReleaseFile } from './installation.js';
import { createCsr, generateEcKey } from './pki.js';

export interface ProvisionOptions {
  vehicleId: string;
  region: string;
  model: string;
  broker: string;
  /** CA bundle the broker's and our certificate chain to. */
  ca?: string;
  cert?: string;
  key?: string;
  /** Make a new ECC P-256 key and a CSR for it, and stop (the second run loads the signed certificate). */
  generateKey: boolean;
  /** Write the CSR for the existing or new key and stop. */
  csrOnly: boolean;
  /** Root for every installed path (tests and benches); `/` on a real board. */
  prefix: string;
  configDir: string;
  dataDir: string;
  /** The vehicle's DBC; the reference vehicle's when absent. */
  dbc?: string;
  /** YAML/JSON whose pipeline/can settings are used (the reference vehicle's when absent). */
  template?: string;
  canPort: string;
  service: boolean;
  serviceUser: string;
  now: Date;
}

/** A setup that cannot go on: every problem found, each naming its file or option. */
export class ProvisionError extends Error {
  readonly code = 'PROVISION_REFUSED';
  constructor(readonly problems: CredentialProblem[] | string[]) {
    super(
      `setup refused, nothing was changed:\n  ${problems.map((p) => (typeof p === 'string' ? p : `${p.file}: ${p.message}`)).join('\n  ')}`,
    );
    this.name = 'ProvisionError';
  }
}

export interface ProvisionResult {
  /** Lines for the technician. */
  summary: string[];
  facts: CertificateFacts | null;
  configFile: string | null;
  csrFile: string | null;
}

const EXPIRY_MARGIN_DAYS = 7;

function under(prefix: string, path: string): string {
  return prefix === '/' ? path : join(prefix, path);
}

function readInput(path: string, what: string): string {
  try {
    return readInputFile(path, 1 << 20).toString('utf8');
  } catch (err) {
    throw new ProvisionError([`${path}: cannot read the ${what}: ${(err as Error).message}`]);
  }
}

export async function provision(o: ProvisionOptions): Promise<ProvisionResult> {
  const installation = new Installation(under(o.prefix, o.configDir));
  const pendingDir = join(installation.configDir, 'pending');
  const pendingKey = join(pendingDir, RELEASE_FILES.key);

  const vehicleId = vehicleIdSchema.safeParse(o.vehicleId);
  if (!vehicleId.success)
    throw new ProvisionError([`--vehicle-id "${o.vehicleId}": ${vehicleId.error.issues[0]?.message ?? 'invalid'}`]);
  if (o.generateKey || o.csrOnly) return writeCsr(o, pendingDir, pendingKey);
  // Before anything is installed: a service unit that cannot be written must not leave half a setup.
  if (o.service) serviceUnit(o);

  const urlProblem = brokerUrlProblem(o.broker);
  const missing: string[] = [];
  if (o.ca === undefined) missing.push('--ca: required (the CA bundle of the fleet PKI)');
  if (o.cert === undefined)
    missing.push('--cert: required (the device certificate; make a CSR first with --generate-key --csr-only)');
  const keyFile = o.key ?? (existsSync(pendingKey) ? pendingKey : undefined);
  if (keyFile === undefined)
    missing.push(`--key: required (or run --generate-key --csr-only first, which keeps the key in ${pendingKey})`);
  if (o.ca === undefined || o.cert === undefined || keyFile === undefined)
    throw new ProvisionError(urlProblem === null ? missing : [`${urlProblem.file}: ${urlProblem.message}`, ...missing]);

  const texts = {
    keyPem: readInput(keyFile, 'private key'),
    certPem: readInput(o.cert, 'certificate'),
    caPem: readInput(o.ca, 'CA bundle'),
  };
  const check = checkCredentials(
    texts,
    { key: keyFile, cert: o.cert, ca: o.ca },
    { vehicleId: o.vehicleId, now: o.now, expiringWithinDays: EXPIRY_MARGIN_DAYS },
  );
  const problems = urlProblem === null ? check.problems : [urlProblem, ...check.problems];
  if (problems.length > 0 || check.facts === null) throw new ProvisionError(problems);

  const dataDir = under(o.prefix, o.dataDir);
  const settings = gatewaySettings(o, installation, dataDir);
  // A template without a `dbc` (a vehicle read through OBD-II or J1939 only) installs none.
  const dbcSource =
    settings.dbc === undefined
      ? null
      : (o.dbc ?? join(projectRoot(), 'drivers', 'reference-vehicle', 'v2c-reference.dbc'));
  const dbc = dbcSource === null ? null : readFileSync(dbcSource);
  try {
    validateConfig(settings, 'the generated configuration');
  } catch (err) {
    if (err instanceof ConfigError) throw new ProvisionError(err.issues);
    throw err;
  }

  const files: ReleaseFile[] = [
    {
      name: RELEASE_FILES.config,
      content: `# Written by v2c-gateway provision on ${o.now.toISOString()}; re-run provision to change it.\n${stringifyYaml(settings)}`,
      mode: 0o640,
    },
    { name: RELEASE_FILES.key, content: texts.keyPem, mode: 0o600 },
    { name: RELEASE_FILES.cert, content: texts.certPem, mode: 0o644 },
    { name: RELEASE_FILES.ca, content: texts.caPem, mode: 0o644 },
    ...(dbc === null ? [] : [{ name: RELEASE_FILES.dbc, content: dbc, mode: 0o644 }]),
  ];
  // The installed copy is 0600 whatever the source's mode; a readable source is said, not refused.
  const modeWarning = keyModeProblem(statSync(keyFile).mode, keyFile);
  mkdirSync(installation.configDir, { recursive: true, mode: 0o755 });
  mkdirSync(dataDir, { recursive: true, mode: 0o750 });
  const release = installation.stage(files);
  const previous = installation.activate(release);
  // The release before this one stays for a manual rollback; older ones go.
  installation.prune(previous === null ? [release] : [release, previous]);
  if (keyFile === pendingKey) rmSync(pendingDir, { recursive: true, force: true });

  const facts = check.facts;
  const summary = [
    `vehicle:      ${o.vehicleId} (region ${o.region})`,
    `certificate:  ${facts.subject}, issued by ${facts.issuer}`,
    `expires:      ${facts.notAfter.toISOString()} (${Math.floor(facts.daysToExpiry)} days); key ${facts.keyDescription}`,
    `broker:       ${o.broker} (mutual TLS, TLS 1.2 minimum)`,
    `installed:    ${installation.configDir}/current -> releases/${release}${previous !== null ? ` (previous: ${previous})` : ''}`,
    `config:       ${join(installation.configDir, RELEASE_FILES.config)}`,
    `private key:  ${installation.path('key')} (mode 0600)`,
    `data:         ${dataDir}`,
  ];
  if (modeWarning !== null)
    summary.push(
      `warning:      the source key ${keyFile} is readable by others; delete it or run chmod 600 ${keyFile}`,
    );
  summary.push(
    ...(o.service ? installService(o, installation, dataDir) : ['service:      not installed (--no-service)']),
  );
  return { summary, facts, configFile: join(installation.configDir, RELEASE_FILES.config), csrFile: null };
}

/**
 * Creates `path` for a private key: O_EXCL (never into an existing file, whoever made it) and
 * O_NOFOLLOW (never through a planted symlink), 0600 at creation, and checked after writing.
 */
export function writeNewPrivateFile(path: string, content: string): void {
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ProvisionError([
      code === 'EEXIST'
        ? `${path} already exists (a key from an earlier run, or something planted there): use it with --key, or remove it first`
        : `${path}: cannot create the key file: ${code ?? (err as Error).message}`,
    ]);
  }
  try {
    fchmodSync(fd, 0o600);
    writeSync(fd, content);
    fsyncSync(fd);
    const st = fstatSync(fd);
    if (!st.isFile() || (st.mode & 0o077) !== 0)
      throw new ProvisionError([
        `${path}: the key file is not a private regular file after writing (mode ${(st.mode & 0o777).toString(8)})`,
      ]);
  } finally {
    closeSync(fd);
  }
}

async function writeCsr(o: ProvisionOptions, pendingDir: string, pendingKey: string): Promise<ProvisionResult> {
  let keyPem: string;
  if (o.generateKey) {
    keyPem = await generateEcKey();
    mkdirSync(pendingDir, { recursive: true, mode: 0o700 });
    writeNewPrivateFile(pendingKey, keyPem);
  } else {
    if (o.key === undefined) throw new ProvisionError(['--csr-only needs --key FILE or --generate-key']);
    keyPem = readInput(o.key, 'private key');
  }
  const csrFile = join(pendingDir, 'device.csr');
  mkdirSync(pendingDir, { recursive: true, mode: 0o700 });
  writeFileSync(csrFile, await createCsr(keyPem, o.vehicleId), { mode: 0o644 });
  return {
    summary: [
      `vehicle:      ${o.vehicleId}`,
      `key:          ${o.generateKey ? `new EC P-256 key kept in ${pendingKey} (mode 0600)` : (o.key ?? '')}`,
      `CSR:          ${csrFile} (subject CN=${o.vehicleId}); have the fleet PKI sign it, then run provision again with --cert SIGNED.crt`,
    ],
    facts: null,
    configFile: null,
    csrFile,
  };
}

/** The gateway configuration: the template's vehicle-specific parts plus what this setup knows. */
function gatewaySettings(o: ProvisionOptions, installation: Installation, dataDir: string): Record<string, unknown> {
  const base =
    o.template !== undefined
      ? parseTemplate(o.template)
      : referenceVehicleSettings({ mqttUrl: o.broker, port: o.canPort });
  const withDbc = o.dbc !== undefined || o.template === undefined || base.dbc !== undefined;
  const mqtt = typeof base.mqtt === 'object' && base.mqtt !== null ? base.mqtt : {};
  const store = typeof base.store === 'object' && base.store !== null ? base.store : {};
  return {
    ...base,
    vehicle: { id: o.vehicleId, region: o.region, model: o.model },
    ...(withDbc ? { dbc: installation.path('dbc') } : {}),
    store: { ...store, dir: dataDir },
    mqtt: {
      ...mqtt,
      url: o.broker,
      tls: {
        ca: installation.path('ca'),
        cert: installation.path('cert'),
        key: installation.path('key'),
        minVersion: 'TLSv1.2',
      },
    },
    metrics: { port: 9464 },
  };
}

function parseTemplate(path: string): Record<string, unknown> {
  const raw: unknown = parseYaml(readInput(path, 'configuration template'));
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new ProvisionError([`${path}: expected a YAML/JSON mapping`]);
  return raw as Record<string, unknown>;
}

/** A user name as useradd takes it (shadow-utils' default rule), at most 32 characters. */
const USER_NAME = /^[a-z_][a-z0-9_-]{0,30}[a-z0-9_$-]?$/;
/** A path systemd reads as one word: no whitespace, control characters, quotes, `\\` or `%` specifiers. */
// Control characters are exactly what this refuses.
// eslint-disable-next-line no-control-regex
const UNIT_PATH = /^\/[^\s\u0000-\u001f\u007f"'\\%;]*$/;

/** The unit file with its @…@ fields filled in; a value that would change the unit's meaning is refused. */
export function renderServiceUnit(fields: {
  node: string;
  app: string;
  config: string;
  dataDir: string;
  configDir: string;
  user: string;
}): string {
  const problems: string[] = [];
  if (!USER_NAME.test(fields.user))
    problems.push(
      `--user ${JSON.stringify(fields.user)}: expected a user name as useradd takes it (lower-case letters, digits, _ and -, at most 32 characters)`,
    );
  for (const [name, value] of Object.entries(fields)) {
    if (name !== 'user' && !UNIT_PATH.test(value))
      problems.push(
        `${name} ${JSON.stringify(value)}: expected an absolute path without spaces, quotes, control characters, ';' or '%' (systemd would read it differently)`,
      );
  }
  if (problems.length > 0) throw new ProvisionError(problems);
  const template = readFileSync(join(projectRoot(), 'provisioning', 'v2c-gateway.service'), 'utf8');
  return template
    .replace(/@NODE@/g, fields.node)
    .replace(/@APP@/g, fields.app)
    .replace(/@CONFIG@/g, fields.config)
    .replace(/@DATA_DIR@/g, fields.dataDir)
    .replace(/@CONFIG_DIR@/g, fields.configDir)
    .replace(/@USER@/g, fields.user);
}

function serviceUnit(o: ProvisionOptions): string {
  return renderServiceUnit({
    node: process.execPath,
    app: projectRoot(),
    config: join(o.configDir, RELEASE_FILES.config),
    dataDir: o.dataDir,
    configDir: o.configDir,
    user: o.serviceUser,
  });
}

/** Writes the unit; on a real root (prefix /) also makes the service user, hands it the data and key, and enables the unit. */
function installService(o: ProvisionOptions, installation: Installation, dataDir: string): string[] {
  const unitPath = under(o.prefix, '/etc/systemd/system/v2c-gateway.service');
  mkdirSync(resolve(unitPath, '..'), { recursive: true });
  writeFileSync(unitPath, serviceUnit(o), { mode: 0o644 });
  if (o.prefix !== '/') return [`service:      ${unitPath} written (prefix ${o.prefix}: systemctl not run)`];
  const run = (cmd: string, args: string[]): boolean => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
  if (
    !run('id', ['-u', o.serviceUser]) &&
    !run('useradd', [
      '--system',
      '--no-create-home',
      '--shell',
      '/usr/sbin/nologin',
      '--groups',
      'dialout',
      o.serviceUser,
    ])
  ) {
    throw new ProvisionError([`cannot create the service user ${o.serviceUser} (useradd failed; run as root)`]);
  }
  const uid = Number(spawnSync('id', ['-u', o.serviceUser], { encoding: 'utf8' }).stdout.trim());
  const gid = Number(spawnSync('id', ['-g', o.serviceUser], { encoding: 'utf8' }).stdout.trim());
  chownSync(dataDir, uid, gid);
  chownSync(installation.configDir, uid, gid);
  const release = join(installation.releasesDir, installation.activeRelease() ?? '');
  chownSync(installation.releasesDir, uid, gid);
  chownSync(release, uid, gid);
  for (const f of Object.values(RELEASE_FILES)) chownSync(join(release, f), uid, gid);
  if (!run('systemctl', ['daemon-reload']))
    return [
      `service:      ${unitPath} written; systemctl is not usable here, enable it with: systemctl enable --now v2c-gateway`,
    ];
  const enabled = run('systemctl', ['enable', 'v2c-gateway']);
  const restarted = run('systemctl', ['try-restart', 'v2c-gateway']);
  return [
    `service:      ${unitPath}${enabled ? ', enabled' : ', NOT enabled (systemctl enable failed)'}${restarted ? '' : '; restart it with systemctl restart v2c-gateway'}`,
  ];
}
