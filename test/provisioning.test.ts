// The setup command as a technician runs it (`provisioning/setup`, the CLI underneath): bench PKI,
// install into a prefix, re-run, refusals that leave the installation untouched, the two-step
// CSR flow, and the systemd unit.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfigFile } from '../core/config.js';
import { projectRoot } from '../core/project-root.js';
import { BENCH_VEHICLE_ID } from '../provisioning/dev-pki.js';
import { daysFrom, issueCertificate, readCsr } from '../provisioning/pki.js';
import { renderServiceUnit } from '../provisioning/provision.js';

const setup = join(projectRoot(), 'provisioning', 'setup');
const run = (args: string[]) => spawnSync(setup, args, { encoding: 'utf8' });
const dir = mkdtempSync(join(tmpdir(), 'v2c-provision-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const pki = join(dir, 'pki');
const prefix = join(dir, 'root');
const configDir = join(prefix, 'etc', 'v2c-gateway');
const device = (name: string) => ({
  cert: join(pki, 'devices', name, 'device.crt'),
  key: join(pki, 'devices', name, 'device.key'),
});
const base = [
  '--vehicle-id',
  BENCH_VEHICLE_ID,
  '--region',
  'eu-central-1',
  '--broker',
  'mqtts://127.0.0.1:8883',
  '--ca',
  join(pki, 'ca.crt'),
  '--prefix',
  prefix,
];
const install = (name: string, extra: string[] = []) =>
  run([...base, '--cert', device(name).cert, '--key', device(name).key, ...extra]);

/** Every file of the installation with its bytes, to prove a refused run changed nothing. */
function snapshot(): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string): void => {
    for (const e of readdirSync(d)) {
      const p = join(d, e);
      const st = lstatSync(p);
      if (st.isSymbolicLink()) out.set(p, `-> ${readlinkSync(p)}`);
      else if (st.isDirectory()) walk(p);
      else out.set(p, `${(st.mode & 0o777).toString(8)} ${readFileSync(p, 'hex')}`);
    }
  };
  walk(prefix);
  return out;
}

t.test('dev-pki makes the bench CA, broker, cloud and four device certificates', async (t) => {
  const r = run(['dev-pki', '--out', pki]);
  t.equal(r.status, 0, r.stderr);
  for (const f of [
    'ca.crt',
    'broker.crt',
    'cloud.crt',
    'devices/valid/device.crt',
    'devices/expired/device.crt',
    'devices/other-vehicle/device.crt',
    'devices/unknown-ca/device.crt',
  ])
    t.ok(existsSync(join(pki, f)), f);
  for (const f of ['ca.key', 'broker.key', 'devices/valid/device.key'])
    t.equal(statSync(join(pki, f)).mode & 0o777, 0o600, `${f} is 0600`);
});

t.test('install: checks pass, files in place with the right modes, a valid config, a summary', async (t) => {
  const r = install('valid');
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, `vehicle:      ${BENCH_VEHICLE_ID} (region eu-central-1)`);
  t.match(r.stdout, /certificate: {2}CN=V2CREF00000000001, issued by CN=v2c bench CA/);
  t.match(r.stdout, /expires: {6}\S+ \(36[45] days\); key EC P-256/);
  t.match(r.stdout, 'broker:       mqtts://127.0.0.1:8883');
  t.match(r.stdout, /service: {6}.*v2c-gateway\.service written/);
  t.equal(statSync(join(configDir, 'current', 'device.key')).mode & 0o777, 0o600, 'private key 0600');
  t.ok(lstatSync(join(configDir, 'current')).isSymbolicLink(), 'current is a symlink to the release');
  const config = loadConfigFile(join(configDir, 'gateway.yaml'));
  t.equal(config.vehicle.id, BENCH_VEHICLE_ID);
  t.equal(config.mqtt.url, 'mqtts://127.0.0.1:8883');
  t.same(config.mqtt.tls && { key: config.mqtt.tls.key, min: config.mqtt.tls.minVersion }, {
    key: join(configDir, 'current', 'device.key'),
    min: 'TLSv1.2',
  });
  t.equal(config.store.dir, join(prefix, 'var', 'lib', 'v2c-gateway'));
  t.equal(
    readFileSync(config.mqtt.tls?.cert ?? '', 'utf8'),
    readFileSync(device('valid').cert, 'utf8'),
    'the certificate installed as given',
  );
  t.notOk(readFileSync(join(configDir, 'gateway.yaml'), 'utf8').includes('BEGIN'), 'no key material in the config');
});

t.test('a vehicle read through OBD-II only: the template has no DBC, none is installed', async (t) => {
  const template = join(dir, 'obd-template.yaml');
  writeFileSync(
    template,
    [
      'vehicle: { id: X, region: eu-central-1 }',
      'can: { source: slcan, port: /dev/ttyACM0, protocols: [obd] }',
      'obd: { maxRequestsPerSecond: 5 }',
      'pipeline: { fields: { speedKmh: { signal: OBD_VehicleSpeed, stat: mean } } }',
      'mqtt: { url: mqtt://127.0.0.1:1 }',
      '',
    ].join('\n'),
  );
  const r = install('valid', ['--template', template]);
  t.equal(r.status, 0, r.stderr);
  const config = loadConfigFile(join(configDir, 'gateway.yaml'));
  t.equal(config.dbc, undefined, 'no dbc in the configuration');
  t.same([config.can.protocols, config.obd.maxRequestsPerSecond], [['obd'], 5]);
  t.notOk(existsSync(join(configDir, 'current', 'vehicle.dbc')), 'no vehicle.dbc installed');
  const noProtocol = join(dir, 'no-dbc-template.yaml');
  writeFileSync(noProtocol, 'vehicle: { id: X, region: eu-central-1 }\ncan: { source: slcan, port: /dev/ttyACM0 }\n');
  const refused = install('valid', ['--template', noProtocol]);
  t.equal(refused.status, 1);
  t.match(refused.stderr, /dbc: required unless can\.protocols names obd or j1939/);
});

t.test('re-running is safe: a new release, the previous one kept for rollback, older ones removed', async (t) => {
  const first = readlinkSync(join(configDir, 'current'));
  t.equal(install('valid').status, 0);
  const second = readlinkSync(join(configDir, 'current'));
  t.not(second, first);
  t.equal(install('valid').status, 0);
  const third = readlinkSync(join(configDir, 'current'));
  t.same(
    readdirSync(join(configDir, 'releases')).sort(),
    [second, third].map((p) => p.replace('releases/', '')).sort(),
  );
});

t.test('refusals: each bad input gets its message, exit 1, and the installation is untouched', async (t) => {
  const before = snapshot();
  const rows: [string, string[], RegExp][] = [
    [
      'expired certificate',
      ['--cert', device('expired').cert, '--key', device('expired').key],
      /device\.crt: the certificate expired on .*; a new one must be issued/,
    ],
    [
      'certificate of another vehicle',
      ['--cert', device('other-vehicle').cert, '--key', device('other-vehicle').key],
      /subject CN is "V2CREF00000000002"; expected the vehicle id "V2CREF00000000001"/,
    ],
    [
      'unknown CA',
      ['--cert', device('unknown-ca').cert, '--key', device('unknown-ca').key],
      /does not chain to the CA bundle .*ca\.crt: no certificate in the CA bundle issued/,
    ],
    [
      'key of another certificate',
      ['--cert', device('valid').cert, '--key', device('other-vehicle').key],
      /device\.key: the private key does not belong to the certificate/,
    ],
    [
      'missing key file',
      ['--cert', device('valid').cert, '--key', join(dir, 'nope.key')],
      /nope\.key: cannot read the private key: ENOENT/,
    ],
    [
      'vehicle id with a space',
      ['--vehicle-id', 'VIN 1', '--cert', device('valid').cert, '--key', device('valid').key],
      /--vehicle-id "VIN 1": expected 1-64 letters, digits/,
    ],
  ];
  for (const [name, extra, message] of rows) {
    const r = run([...base, ...extra]);
    t.equal(r.status, 1, `${name}: exit 1`);
    t.match(r.stderr, /^v2c-gateway: setup refused, nothing was changed:/, `${name}: one clear refusal`);
    t.match(r.stderr, message, `${name}: says what is wrong`);
  }
  const url = run([
    ...base.map((a) => (a === 'mqtts://127.0.0.1:8883' ? 'mqtt://127.0.0.1:1883' : a)),
    '--cert',
    device('expired').cert,
    '--key',
    device('valid').key,
  ]);
  t.match(
    url.stderr,
    /--broker: "mqtt:\/\/127\.0\.0\.1:1883" uses mqtt:\/\/; expected mqtts:\/\/host:port/,
    'the broker URL',
  );
  t.match(url.stderr, /certificate expired/, 'and every other problem in the same run');
  t.match(url.stderr, /does not belong to the certificate/);
  t.same(snapshot(), before, 'not one byte of the installation changed');
});

t.test('two-step setup: --generate-key --csr-only, the PKI signs, the second run installs the kept key', async (t) => {
  const r = run(['--vehicle-id', BENCH_VEHICLE_ID, '--generate-key', '--csr-only', '--prefix', prefix]);
  t.equal(r.status, 0, r.stderr);
  const pendingKey = join(configDir, 'pending', 'device.key');
  t.equal(statSync(pendingKey).mode & 0o777, 0o600, 'the new key is 0600 from the start');
  const keyText = readFileSync(pendingKey, 'utf8');
  t.match(keyText, /BEGIN PRIVATE KEY/);
  const csrFile = join(configDir, 'pending', 'device.csr');
  t.match(r.stdout, `CSR:          ${csrFile} (subject CN=${BENCH_VEHICLE_ID})`);
  const csr = await readCsr(readFileSync(csrFile, 'utf8'));
  const ca = { keyPem: readFileSync(join(pki, 'ca.key'), 'utf8'), certPem: readFileSync(join(pki, 'ca.crt'), 'utf8') };
  const signed = join(dir, 'signed.crt');
  writeFileSync(
    signed,
    await issueCertificate({
      commonName: csr.commonName,
      profile: 'client',
      subjectKey: csr,
      issuer: ca,
      notBefore: daysFrom(new Date(), -0.01),
      notAfter: daysFrom(new Date(), 365),
    }),
  );
  const second = run([...base, '--cert', signed]);
  t.equal(second.status, 0, second.stderr);
  t.equal(
    readFileSync(join(configDir, 'current', 'device.key'), 'utf8'),
    keyText,
    'the key made in the first run is the one installed',
  );
  t.notOk(existsSync(join(configDir, 'pending')), 'the pending key was moved into the release, not left behind');
  t.equal(readFileSync(join(configDir, 'current', 'device.crt'), 'utf8'), readFileSync(signed, 'utf8'));
});

t.test(
  'systemd unit: restart policy, watchdog, dedicated user, hardening; systemd-analyze verify (the test bootstrap installs systemd)',
  async (t) => {
    const unit = readFileSync(join(prefix, 'etc', 'systemd', 'system', 'v2c-gateway.service'), 'utf8');
    for (const line of [
      'Restart=on-failure',
      'WatchdogSec=60',
      'Type=notify',
      'User=v2c-gateway',
      'ProtectSystem=strict',
      'NoNewPrivileges=yes',
      'ReadWritePaths=/var/lib/v2c-gateway /etc/v2c-gateway',
      'CapabilityBoundingSet=',
      'ProtectHome=yes',
      'PrivateTmp=yes',
    ]) {
      t.ok(unit.split('\n').includes(line), line);
    }
    t.match(
      unit,
      `ExecStart=${process.execPath} --single-threaded-gc --max-semi-space-size=2 ${projectRoot()}/dist/app/cli.js run --config /etc/v2c-gateway/gateway.yaml`,
    );
    t.notMatch(unit, /@[A-Z_]+@/, 'every field filled in');
    // verify resolves ExecStart and WorkingDirectory, so the paths must exist: point them into the test's tree.
    const unitDir = join(dir, 'unit');
    const dataDir = join(dir, 'data');
    spawnSync('mkdir', ['-p', unitDir, dataDir]);
    const unitFile = join(unitDir, 'v2c-gateway.service');
    writeFileSync(
      unitFile,
      renderServiceUnit({
        node: process.execPath,
        app: projectRoot(),
        config: join(configDir, 'gateway.yaml'),
        dataDir,
        configDir,
        user: 'v2c-gateway',
      }),
    );
    const verify = spawnSync('systemd-analyze', ['verify', unitFile], { encoding: 'utf8' });
    const complaints = `${verify.stdout}${verify.stderr}`.split('\n').filter((l) => l.includes('v2c-gateway.service'));
    t.same(complaints, [], 'systemd-analyze verify has nothing to say about the unit');
    t.equal(verify.status, 0, `systemd-analyze verify exit 0 (${verify.stderr.trim().slice(0, 300)})`);
  },
);

t.test('--generate-key never writes through a planted symlink or into an existing file', async (t) => {
  const root = join(dir, 'planted');
  const pending = join(root, 'etc', 'v2c-gateway', 'pending');
  mkdirSync(pending, { recursive: true });
  const target = join(dir, 'planted-target');
  writeFileSync(target, 'not a key\n', { mode: 0o644 });
  symlinkSync(target, join(pending, 'device.key'));
  const r = run(['--vehicle-id', BENCH_VEHICLE_ID, '--generate-key', '--csr-only', '--prefix', root]);
  t.not(r.status, 0, 'refused');
  t.match(r.stderr, /pending\/device\.key already exists .*use it with --key, or remove it first/, 'one line says why');
  t.equal(readFileSync(target, 'utf8'), 'not a key\n', 'the symlink target is untouched (no key written through it)');
  t.equal(statSync(target).mode & 0o777, 0o644);
  rmSync(join(pending, 'device.key'));
  writeFileSync(join(pending, 'device.key'), 'an existing file\n', { mode: 0o644 });
  const again = run(['--vehicle-id', BENCH_VEHICLE_ID, '--generate-key', '--csr-only', '--prefix', root]);
  t.not(again.status, 0, 'an existing (0644) file is not overwritten with a key either');
  t.equal(readFileSync(join(pending, 'device.key'), 'utf8'), 'an existing file\n');
  rmSync(join(pending, 'device.key'));
  const fresh = run(['--vehicle-id', BENCH_VEHICLE_ID, '--generate-key', '--csr-only', '--prefix', root]);
  t.equal(fresh.status, 0, fresh.stderr);
  t.equal(statSync(join(pending, 'device.key')).mode & 0o777, 0o600, 'a fresh key is 0600');
});

t.test(
  '--user and unit values that would inject lines into the systemd unit are refused before anything is installed',
  async (t) => {
    const before = snapshot();
    for (const user of ['v2c\nExecStartPre=/bin/sh -c id', 'root;id', 'Upper', '-dash', 'a'.repeat(33), '']) {
      const r = install('valid', [`--user=${user}`]);
      t.not(r.status, 0, `--user ${JSON.stringify(user)} refused`);
      t.match(r.stderr, /--user .*expected a user name as useradd takes it/);
    }
    t.same(snapshot(), before, 'the installation is byte for byte what it was');
    t.throws(
      () =>
        renderServiceUnit({
          node: '/usr/bin/node',
          app: '/opt/v2c gateway',
          config: '/etc/v2c/gateway.yaml',
          dataDir: '/var/lib/v2c',
          configDir: '/etc/v2c',
          user: 'v2c',
        }),
      /app "\/opt\/v2c gateway": expected an absolute path without spaces/,
    );
    t.throws(
      () =>
        renderServiceUnit({
          node: '/usr/bin/node',
          app: '/opt/v2c',
          config: '/etc/v2c/gateway.yaml\nExecStartPre=/bin/id',
          dataDir: '/var/lib/v2c',
          configDir: '/etc/v2c',
          user: 'v2c',
        }),
      /config .*expected an absolute path/,
    );
  },
);

t.test(
  'an install killed (SIGKILL) at any moment leaves either the previous release in use, byte for byte, or the new one complete',
  async (t) => {
    /** What the gateway would use: the config through its link and every file of the current release. */
    const inUse = (): Map<string, string> => {
      const view = new Map<string, string>([['gateway.yaml', readFileSync(join(configDir, 'gateway.yaml'), 'hex')]]);
      for (const f of readdirSync(join(configDir, 'current')))
        view.set(f, readFileSync(join(configDir, 'current', f), 'hex'));
      return view;
    };
    const args = (model: string): string[] => [
      ...base,
      '--cert',
      device('valid').cert,
      '--key',
      device('valid').key,
      '--model',
      model,
    ];
    // How long a whole install takes here, to spread the kills over it.
    const started = Date.now();
    t.equal(run(args('timing')).status, 0);
    const duration = Date.now() - started;
    let kept = 0;
    let replaced = 0;
    for (let k = 0; k < 16; k++) {
      const before = inUse();
      const model = `kill-${k}`;
      const child = spawn(setup, args(model), { stdio: 'ignore' });
      // Most of a run is Node starting and the checks; the writes come at the end: kills from half the run to past its end.
      const killAt = Math.round(duration * (0.5 + k / 20));
      const timer = setTimeout(() => child.kill('SIGKILL'), killAt);
      await new Promise((resolve) => child.once('exit', resolve));
      clearTimeout(timer);
      const after = inUse();
      const yaml = Buffer.from(after.get('gateway.yaml') ?? '', 'hex').toString('utf8');
      if (yaml.includes(`model: ${model}`)) {
        replaced++;
        t.same(
          [...after.keys()].sort(),
          [...before.keys()].sort(),
          `kill at ${killAt} ms: the new release is in use and complete`,
        );
        t.equal(after.get('device.key'), before.get('device.key'), `kill at ${killAt} ms: with the same key`);
      } else {
        kept++;
        t.same(after, before, `kill at ${killAt} ms: the previous release still in use, byte for byte`);
      }
    }
    t.comment(
      `16 kills over a ${duration} ms install: ${kept} left the previous release, ${replaced} the complete new one`,
    );
    t.ok(kept > 0, 'some kills landed before the switch');
  },
);
