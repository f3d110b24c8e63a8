// Certificate renewal in the running gateway, over mutual TLS with a real Mosquitto: a device
// whose certificate is past 11/12 of its validity sends a CSR, a small signer (the harness's
// fleet PKI) answers, and the gateway checks, swaps and reconnects — or refuses, or rolls back.
import t, { type Test } from 'tap';
import mqtt from 'mqtt';
import { lstatSync, readFileSync, readdirSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { loadConfigFile, type GatewayConfig } from '../core/config.js';
import { projectRoot } from '../core/project-root.js';
import { BENCH_VEHICLE_ID } from '../provisioning/dev-pki.js';
import { daysFrom, generateEcKey, issueCertificate, readCsr, type KeyAndCertificate } from '../provisioning/pki.js';
import { waitUntil } from './helpers.js';
import { tlsRig, type TlsRig } from './tls-rig.js';

type SignerMode = 'good' | 'wrong-cn' | 'foreign-ca';

/** The fleet PKI's side: signs every CSR on …/cert/csr and answers on its response topic. */
async function startSigner(
  t: Test,
  rig: TlsRig,
  mode: SignerMode,
  foreign: KeyAndCertificate,
): Promise<{ signed: number; stop: () => Promise<void> }> {
  const client = await mqtt.connectAsync(rig.broker.url, {
    protocolVersion: 5,
    clientId: `signer-${mode}`,
    reconnectPeriod: 0,
    ...rig.cloudTls,
  });
  t.teardown(() => client.endAsync());
  const state = { signed: 0, stop: () => client.endAsync() };
  await client.subscribeAsync('v2c/v1/+/+/cert/csr', { qos: 1 });
  client.on('message', (_topic, payload, packet) => {
    void (async () => {
      const csr = await readCsr(payload.toString('utf8'));
      const issuer = mode === 'foreign-ca' ? foreign : rig.pki.caMaterial;
      const certPem = await issueCertificate({
        commonName: mode === 'wrong-cn' ? 'V2CREF00000000009' : csr.commonName,
        profile: 'client',
        subjectKey: csr,
        issuer,
        notBefore: daysFrom(new Date(), -0.01),
        notAfter: daysFrom(new Date(), 365),
      });
      state.signed++;
      const { responseTopic, correlationData } = packet.properties ?? {};
      // A signature that finishes after the test ended (and closed this client) is not sent.
      if (responseTopic !== undefined && !client.disconnecting && !client.disconnected)
        await client.publishAsync(responseTopic, certPem, {
          qos: 1,
          properties: { correlationData, contentType: 'application/pem-certificate-chain' },
        });
    })().catch((err: unknown) => {
      if (!client.disconnecting && !client.disconnected) throw err;
    });
  });
  return state;
}

/** Installs the device with `provision` (so renewal has releases to swap) and starts a gateway from the installed config. */
async function installedGateway(t: Test, rig: TlsRig, name: string, caBundle: string) {
  // 335 of 360 days passed: past 11/12, still more than the 7 days provision asks for.
  const keyPem = await generateEcKey();
  const certPem = await issueCertificate({
    commonName: BENCH_VEHICLE_ID,
    profile: 'client',
    subjectKey: { keyPem },
    issuer: rig.pki.caMaterial,
    notBefore: daysFrom(new Date(), -335),
    notAfter: daysFrom(new Date(), 25),
  });
  const cert = join(rig.dir, `${name}.crt`);
  const key = join(rig.dir, `${name}.key`);
  writeFileSync(cert, certPem);
  writeFileSync(key, keyPem, { mode: 0o600 });
  const prefix = join(rig.dir, `root-${name}`);
  const setup = spawnSync(
    join(projectRoot(), 'provisioning', 'setup'),
    [
      '--vehicle-id',
      BENCH_VEHICLE_ID,
      '--broker',
      rig.broker.url,
      '--ca',
      caBundle,
      '--cert',
      cert,
      '--key',
      key,
      '--prefix',
      prefix,
      '--no-service',
    ],
    { encoding: 'utf8' },
  );
  t.equal(setup.status, 0, setup.stderr);
  const configDir = join(prefix, 'etc', 'v2c-gateway');
  const installed = loadConfigFile(join(configDir, 'gateway.yaml'));
  const base = rig.config(rig.pki.devices.valid);
  const config: GatewayConfig = {
    ...installed,
    can: base.can,
    mqtt: { ...base.mqtt, tls: installed.mqtt.tls },
    store: base.store,
    certificate: { ...installed.certificate, checkIntervalMs: 300, connectTimeoutMs: 5000 },
  };
  const before = {
    release: readlinkSync(join(configDir, 'current')),
    key: readFileSync(join(configDir, 'current', 'device.key'), 'utf8'),
    cert: certPem,
  };
  const { gateway, logs } = await rig.start(t, config);
  return { gateway, logs, configDir, before };
}

const noKeyMaterial = (t: Test, logs: string[], secrets: string[]): void => {
  const text = logs.join('\n');
  t.notMatch(text, /-----BEGIN/, 'no PEM block (key, certificate, CSR) in the logs');
  for (const s of secrets) {
    const body = s.split('\n').filter((l) => l.length > 0 && !l.startsWith('-----'));
    t.notOk(
      body.some((line) => text.includes(line)),
      'no line of key or certificate bodies in the logs',
    );
  }
};

t.test('certificate renewal', async (t) => {
  const rig = await tlsRig(t);
  const foreignKey = await generateEcKey();
  const foreign = {
    keyPem: foreignKey,
    certPem: await issueCertificate({
      commonName: 'Rogue CA',
      profile: 'ca',
      subjectKey: { keyPem: foreignKey },
      notBefore: daysFrom(new Date(), -1),
      notAfter: daysFrom(new Date(), 100),
    }),
  };

  t.test(
    'at 11/12 of the validity: new key, CSR, signed certificate checked, swapped, reconnected; the old key removed',
    async (t) => {
      const signer = await startSigner(t, rig, 'good', foreign);
      const { gateway, logs, configDir, before } = await installedGateway(t, rig, 'good', rig.pki.ca.cert);
      const certificate = gateway.certificate;
      if (certificate === null) throw new Error('no certificate lifecycle');
      t.ok(certificate.renewalDue(), 'renewal due at start');
      t.ok(certificate.daysToExpiry() < 26, 'the old certificate has 25 days left');
      await waitUntil('the renewal', () => certificate.counters.installed === 1, 20_000, logs);
      t.equal(signer.signed, 1, 'one CSR signed');
      await waitUntil('online with the new certificate', () => gateway.session.isConnected, 10_000, logs);
      // The old session's ticket would carry the old certificate's identity: not offered after a renewal.
      t.same(
        gateway.session.counters.tlsHandshakes,
        { full: 2, resumed: 0 },
        'the new certificate shook hands in full',
      );
      const release = readlinkSync(join(configDir, 'current'));
      t.not(release, before.release, 'current points at a new release');
      t.same(
        readdirSync(join(configDir, 'releases')),
        [release.replace('releases/', '')],
        'the old release (old key) is gone once the new connection worked',
      );
      const key = join(configDir, 'current', 'device.key');
      t.equal(statSync(key).mode & 0o777, 0o600, 'new key 0600');
      t.not(readFileSync(key, 'utf8'), before.key, 'a new key');
      t.ok(lstatSync(join(configDir, 'current')).isSymbolicLink());
      t.ok(certificate.daysToExpiry() > 364, `new certificate: ${certificate.daysToExpiry().toFixed(1)} days`);
      t.match(await gateway.metrics.text(), /v2c_certificate_renewals_total\{result="installed"\} 1/);
      const ids = await rig.insert(gateway, 1, 3);
      await waitUntil('records over the new connection', () => ids.every((id) => rig.seen.has(id)), 10_000, logs);
      t.notOk(certificate.renewalDue(), 'no further renewal due');
      noKeyMaterial(t, logs, [
        before.key,
        readFileSync(key, 'utf8'),
        before.cert,
        readFileSync(join(configDir, 'current', 'device.crt'), 'utf8'),
      ]);
      await gateway.stop(2000);
    },
  );

  t.test(
    'a signed certificate for another vehicle is refused: nothing installed, the old one stays in use',
    async (t) => {
      const signer = await startSigner(t, rig, 'wrong-cn', foreign);
      const { gateway, logs, configDir, before } = await installedGateway(t, rig, 'wrong-cn', rig.pki.ca.cert);
      const certificate = gateway.certificate;
      if (certificate === null) throw new Error('no certificate lifecycle');
      await waitUntil('the refusal', () => certificate.counters.rejected >= 1, 20_000, logs);
      t.ok(signer.signed >= 1);
      t.equal(certificate.counters.installed, 0);
      t.equal(readlinkSync(join(configDir, 'current')), before.release, 'same release');
      t.equal(readFileSync(join(configDir, 'current', 'device.key'), 'utf8'), before.key, 'same key');
      t.ok(
        logs.some((l) =>
          /the signed certificate was refused, the current one stays: .*CN is "V2CREF00000000009"/.test(l),
        ),
      );
      t.ok(gateway.session.isConnected, 'still connected with the old certificate');
      await gateway.stop(0);
    },
  );

  t.test(
    'a certificate the broker does not accept is rolled back: the old key and certificate reconnect',
    async (t) => {
      // Our CA bundle trusts the rogue CA, the broker does not: the new certificate passes our checks and fails the handshake.
      const bundle = join(rig.dir, 'bundle-with-rogue.crt');
      writeFileSync(bundle, readFileSync(rig.pki.ca.cert, 'utf8') + foreign.certPem);
      const signer = await startSigner(t, rig, 'foreign-ca', foreign);
      const { gateway, logs, configDir, before } = await installedGateway(t, rig, 'rollback', bundle);
      const certificate = gateway.certificate;
      if (certificate === null) throw new Error('no certificate lifecycle');
      await waitUntil('the rollback', () => certificate.counters.rolledBack >= 1, 30_000, logs);
      // Renewal is still due and checked every 300 ms here: the signer would answer each new CSR with
      // another rogue certificate and another reconnect. Stopped, what follows is the old certificate alone.
      await signer.stop();
      await waitUntil('online again with the old certificate', () => gateway.session.isConnected, 10_000, logs);
      t.equal(certificate.counters.installed, 0);
      t.equal(readlinkSync(join(configDir, 'current')), before.release, 'current points at the old release again');
      t.equal(readFileSync(join(configDir, 'current', 'device.key'), 'utf8'), before.key, 'the old key');
      t.ok(
        logs.some((l) =>
          l.includes('the new certificate did not connect; the old key and certificate are back in use'),
        ),
      );
      const ids = await rig.insert(gateway, 10, 2);
      await waitUntil('records after the rollback', () => ids.every((id) => rig.seen.has(id)), 10_000, logs);
      await gateway.stop(0);
    },
  );
});
