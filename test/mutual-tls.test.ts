// Mutual TLS against a real Mosquitto (require_certificate, use_identity_as_username, an ACL that
// confines each device to its own vehicle id), with certificates from the bench PKI.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { systemClock } from '../core/clock.js';
import { projectRoot } from '../core/project-root.js';
import { loadDecoder, vehicleTopic } from '../gateway/gateway.js';
import { resolutionTable } from '../gateway/wire-resolution.js';
import { BENCH_OTHER_VEHICLE_ID, BENCH_VEHICLE_ID } from '../provisioning/dev-pki.js';
import { daysFrom, generateEcKey, issueCertificate } from '../provisioning/pki.js';
import { CredentialError } from '../provisioning/credential-checks.js';
import { DeadLetterFile } from '../sync/store/dead-letter.js';
import { MqttSession, PublishError, type StateChange } from '../sync/session/mqtt-session.js';
import { OutboxSender } from '../sync/outbox-sender.js';
import { sessionSettings, waitUntil } from './helpers.js';
import { packBatch } from '../proto/batch-packer.js';
import { ClockCorrector } from '../sync/time/clock-corrector.js';
import { HttpsOffloadUploader } from '../sync/offload/https-offload.js';
import { SampleRecords } from '../bench/rig/sample-records.js';
import { tlsRig } from './tls-rig.js';

t.test('mutual TLS', async (t) => {
  const rig = await tlsRig(t);
  const read = (f: string): string => readFileSync(f, 'utf8');

  t.test('a valid device connects with its certificate, publishes, and reports days to expiry', async (t) => {
    const { gateway, logs } = await rig.start(t, rig.config(rig.pki.devices.valid));
    await waitUntil('online over TLS', () => gateway.session.isConnected, 10_000, logs);
    const ids = await rig.insert(gateway, 1, 5);
    await waitUntil('5 records at the sink', () => ids.every((id) => rig.seen.has(id)), 10_000, logs);
    const metrics = await gateway.metrics.text();
    const days = Number(/^v2c_certificate_expiry_days (\S+)$/m.exec(metrics)?.[1]);
    t.ok(days > 363 && days < 366, `v2c_certificate_expiry_days ${days}`);
    t.match(metrics, /v2c_certificate_renewal_required 0/);
    t.match(
      rig.broker.log(),
      /as V2CREF00000000001 .*u'V2CREF00000000001'/,
      'the broker took the certificate CN as the user name',
    );
    await gateway.stop(2000);
  });

  t.test('a reconnect resumes the TLS session from its ticket; the broker still knows the device', async (t) => {
    const logFrom = rig.broker.log().length;
    const cases = [
      { resume: true, maxVersion: 'TLSv1.3' as const },
      { resume: true, maxVersion: 'TLSv1.2' as const },
      { resume: false, maxVersion: 'TLSv1.3' as const },
    ];
    for (const [i, { resume, maxVersion }] of cases.entries()) {
      const config = rig.config(rig.pki.devices.valid);
      if (config.mqtt.tls) Object.assign(config.mqtt.tls, { sessionResumption: resume, maxVersion });
      const { gateway, logs } = await rig.start(t, config);
      const handshakes = gateway.session.counters.tlsHandshakes;
      await waitUntil('online over TLS', () => gateway.session.isConnected, 10_000, logs);
      for (let drop = 1; drop <= 2; drop++) {
        // A ticket arrives after the handshake: wait for one before dropping (the data path proves it is up).
        await rig.insert(gateway, 200 + 100 * i + 10 * drop, 2);
        gateway.session.dropConnection('test: cellular drop');
        await waitUntil(
          'back online',
          () => gateway.session.isConnected && handshakes.full + handshakes.resumed === drop + 1,
          10_000,
          logs,
        );
      }
      const ids = await rig.insert(gateway, 600 + 10 * i, 3);
      await waitUntil('records after the resumed reconnects', () => ids.every((id) => rig.seen.has(id)), 10_000, logs);
      const label = `${maxVersion}, resumption ${resume ? 'on' : 'off'}`;
      t.same(handshakes, resume ? { full: 1, resumed: 2 } : { full: 3, resumed: 0 }, `${label}: handshakes`);
      t.equal(gateway.session.tlsHandshake, `${maxVersion}${resume ? ', resumed' : ''}`, `${label}: the last one`);
      t.ok(logs.some((l) => l.includes(`(${maxVersion}${resume ? ', resumed' : ''}, session present: true`)));
      t.match(await gateway.metrics.text(), `v2c_tls_handshakes_total{kind="resumed"} ${resume ? 2 : 0}`);
      await gateway.stop(2000);
    }
    const identities =
      rig.broker
        .log()
        .slice(logFrom)
        .match(/as V2CREF00000000001 .*u'V2CREF00000000001'/g) ?? [];
    t.equal(
      identities.length,
      9,
      `every connection, resumed or not, had the certificate's identity (${identities.length})`,
    );
  });

  t.test('a certificate with 5 days left connects and logs the 7-day warning once', async (t) => {
    const keyPem = await generateEcKey();
    const certPem = await issueCertificate({
      commonName: BENCH_VEHICLE_ID,
      profile: 'client',
      subjectKey: { keyPem },
      issuer: rig.pki.caMaterial,
      notBefore: daysFrom(new Date(), -1),
      notAfter: daysFrom(new Date(), 5),
    });
    const files = { cert: join(rig.dir, 'five-days.crt'), key: join(rig.dir, 'five-days.key') };
    writeFileSync(files.cert, certPem);
    writeFileSync(files.key, keyPem, { mode: 0o600 });
    const config = rig.config(files);
    config.certificate.checkIntervalMs = 100;
    const { gateway, logs } = await rig.start(t, config);
    await waitUntil('online', () => gateway.session.isConnected, 10_000, logs);
    await new Promise((resolve) => setTimeout(resolve, 400));
    const warnings = logs.filter((l) => /certificate: WARNING: the device certificate expires in 5\.0 days/.test(l));
    t.equal(warnings.length, 1, 'warned once a day, not at every check');
    t.equal(
      gateway.certificate?.renewalDue(),
      false,
      '1 of 6 days passed: renewal is not due, the warning is what says it',
    );
    await gateway.stop(0);
  });

  t.test('an expired certificate is refused locally before connecting; records are kept', async (t) => {
    const { gateway, logs } = await rig.start(t, rig.config(rig.pki.devices.expired));
    t.equal(gateway.session.state, 'certificate-renewal', 'certificate-renewal state at once');
    await new Promise((resolve) => setTimeout(resolve, 500));
    t.equal(gateway.session.counters.attempts, 0, 'no connection attempt with an expired certificate');
    t.ok(
      logs.some((l) =>
        /mqtt: not connecting: .*device\.crt: the certificate expired on .*certificate renewal needed/.test(l),
      ),
      'the log says why, naming the file',
    );
    const metrics = await gateway.metrics.text();
    t.match(metrics, /v2c_certificate_renewal_required 1/);
    t.ok(Number(/^v2c_certificate_expiry_days (\S+)$/m.exec(metrics)?.[1]) < 0, 'expiry days negative');
    await rig.insert(gateway, 1, 3);
    t.equal(await gateway.store.count(), 3, 'capture goes on into the store');
    await gateway.stop(0);
  });

  t.test('an expired certificate, forced past the local check, is rejected by the broker', async (t) => {
    const session = new MqttSession(
      {
        ...sessionSettings(rig.broker.url, 'forced-expired'),
        tls: {
          ca: read(rig.pki.ca.cert),
          cert: read(rig.pki.devices.expired.cert),
          key: read(rig.pki.devices.expired.key),
          minVersion: 'TLSv1.2',
        },
      },
      () => undefined,
    );
    const states: StateChange[] = [];
    session.states.subscribe((s) => states.push(s));
    session.start();
    await waitUntil('the refusal', () => session.state === 'certificate-renewal', 10_000);
    await session.close();
    t.match(
      states.find((s) => s.state === 'certificate-renewal')?.reason ?? '',
      /tls-certificate: .*certificate expired/i,
      'TLS alert: certificate expired',
    );
    t.equal(session.counters.successes, 0);
  });

  t.test(
    'a certificate from an unknown CA is rejected by the broker: certificate-renewal state, no hot retries',
    async (t) => {
      // Trusted locally (its CA is in our bundle) so the broker is the one that refuses it.
      const bundle = join(rig.dir, 'bundle-with-unknown-ca.crt');
      writeFileSync(bundle, read(rig.pki.ca.cert) + read(rig.pki.unknownCaCert));
      const { gateway, logs } = await rig.start(t, rig.config(rig.pki.devices.unknownCa, bundle));
      await waitUntil('certificate-renewal', () => gateway.session.state === 'certificate-renewal', 10_000, logs);
      const attempts = gateway.session.counters.attempts;
      await new Promise((resolve) => setTimeout(resolve, 700));
      t.equal(gateway.session.counters.attempts, attempts, 'no new attempt before the slow retry');
      t.match(await gateway.metrics.text(), /v2c_certificate_renewal_required 1/);
      t.ok(
        logs.some((l) => /refuses our credentials \(tls-certificate: .*unknown ca/i.test(l)),
        `the log names the TLS alert: ${logs.filter((l) => l.includes('refuses')).join(' | ')}`,
      );
      await gateway.stop(0);
    },
  );

  t.test('refused at start: CN of another vehicle, untrusted chain, key readable by others', async (t) => {
    const refusal = async (config: ReturnType<typeof rig.config>): Promise<CredentialError> => {
      try {
        await rig.start(t, config);
      } catch (err) {
        if (err instanceof CredentialError) return err;
        throw err;
      }
      throw new Error('the gateway started');
    };
    const cn = await refusal(rig.config(rig.pki.devices.otherVehicle));
    t.equal(cn.code, 'CN_MISMATCH');
    t.match(
      cn.message,
      /device\.crt: the certificate's subject CN is "V2CREF00000000002"; expected the vehicle id "V2CREF00000000001"/,
    );
    const chain = await refusal(rig.config(rig.pki.devices.unknownCa));
    t.equal(chain.code, 'CHAIN_UNTRUSTED');
    const openKey = join(rig.dir, 'readable.key');
    copyFileSync(rig.pki.devices.valid.key, openKey);
    chmodSync(openKey, 0o644);
    const perms = await refusal(rig.config({ cert: rig.pki.devices.valid.cert, key: openKey }));
    t.equal(perms.code, 'KEY_PERMISSIONS');
    t.match(
      perms.message,
      `readable.key: the private key is readable by group/others (mode 0644); run: chmod 600 ${openKey}`,
    );
  });

  t.test(
    'the broker name is verified: a servername the broker certificate does not carry fails the handshake',
    async (t) => {
      const config = rig.config(rig.pki.devices.valid);
      if (config.mqtt.tls) config.mqtt.tls.servername = 'broker.elsewhere.example';
      const { gateway, logs } = await rig.start(t, config);
      await waitUntil(
        'the handshake failure',
        () => logs.some((l) => /broker\.elsewhere\.example/.test(l)),
        10_000,
        logs,
      );
      t.equal(gateway.session.counters.successes, 0, 'never connected');
      t.ok(logs.some((l) => /Hostname\/IP does not match certificate's altnames/.test(l)));
      await gateway.stop(0);
    },
  );

  t.test(
    'v2c-gateway sink over mutual TLS with the cloud certificate; an mqtts URL without certificates is a usage error',
    async (t) => {
      const cli = join(projectRoot(), 'dist', 'app', 'cli.js');
      const bare = spawnSync(process.execPath, [cli, 'sink', '--url', rig.broker.url], { encoding: 'utf8' });
      t.equal(bare.status, 2);
      t.match(bare.stderr, 'sink: an mqtts:// url needs --ca, --cert and --key');
      const sink = spawn(
        process.execPath,
        [
          cli,
          'sink',
          '--url',
          rig.broker.url,
          '--ca',
          rig.pki.ca.cert,
          '--cert',
          rig.pki.cloud.cert,
          '--key',
          rig.pki.cloud.key,
          '--client-id',
          'sink-cli',
          '--idle-exit',
          '3',
          '--dead-letter',
          join(rig.dir, 'cli-dead-letter'),
          '--offload-port',
          '0',
          '--server-cert',
          rig.pki.broker.cert,
          '--server-key',
          rig.pki.broker.key,
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let stdout = '';
      let stderr = '';
      sink.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
      });
      sink.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      const exited = new Promise<number | null>((resolve) => sink.once('exit', resolve));
      await waitUntil('the sink subscribed', () => rig.broker.log().includes('as sink-cli'), 10_000);
      const { gateway, logs } = await rig.start(t, rig.config(rig.pki.devices.valid));
      await waitUntil('online', () => gateway.session.isConnected, 10_000, logs);
      await rig.insert(gateway, 100, 4);
      // And one batch of two over its HTTPS offload port.
      await waitUntil('the offload port', () => /offload uploads on (https:\/\/\S+)/.test(stderr), 5000);
      const url = /offload uploads on (https:\/\/\S+)/.exec(stderr)?.[1] ?? '';
      const uploader = new HttpsOffloadUploader(
        {
          url,
          vehicleId: BENCH_VEHICLE_ID,
          concurrency: 1,
          timeoutMs: 5000,
          tls: {
            ca: read(rig.pki.ca.cert),
            cert: read(rig.pki.devices.valid.cert),
            key: read(rig.pki.devices.valid.key),
            minVersion: 'TLSv1.2',
          },
        },
        new ClockCorrector('boot', systemClock, { driftPpm: 50, windowMs: 3_600_000 }, () => undefined),
        systemClock,
      );
      const samples = new SampleRecords(21);
      await uploader.upload(
        await packBatch([samples.record(1, 2), samples.record(2, 2)], {
          vehicleId: BENCH_VEHICLE_ID,
          createdMs: Date.now(),
          resolution: () => undefined,
          zstdLevel: 3,
        }),
      );
      uploader.close();
      t.equal(await exited, 0);
      t.match(stdout, /^sink: received=6 unique=6 duplicates=0 rejected=0$/m, '4 over MQTT, 2 over HTTPS');
      await gateway.stop(0);
    },
  );

  t.test("publishing under another vehicle's topic: PUBACK 0x87, security event, records parked", async (t) => {
    const other = vehicleTopic(
      {
        ...rig.config(rig.pki.devices.valid),
        vehicle: { id: BENCH_OTHER_VEHICLE_ID, region: 'eu-central-1', model: 'x' },
      },
      'telemetry/vehicle',
    );
    const config = rig.config(rig.pki.devices.valid);
    const { gateway, logs } = await rig.start(t, config);
    await waitUntil('online', () => gateway.session.isConnected, 10_000, logs);
    const refused = await gateway.session
      .publish(other, Buffer.from('x'), { contentType: 'text/plain', userProperties: {} })
      .then(
        () => null,
        (err: unknown) => err,
      );
    t.ok(
      refused instanceof PublishError && refused.reasonCode === 0x87,
      'the broker answers PUBACK 0x87 Not authorized',
    );
    // The sync engine aimed at the other vehicle's topics (as a mis-provisioned device would be).
    gateway.sender.stop();
    const rogue = new OutboxSender(
      {
        vehicleId: BENCH_OTHER_VEHICLE_ID,
        vehicleTopic: other,
        batchTopic: other.replace('/vehicle', '/batch'),
        // Row-wise: the vehicle topic itself is what the broker must refuse here.
        liveEncoding: 'row',
        compactTopic: other.replace('/vehicle', '/compact'),
        layoutTopicPrefix: other.replace('/vehicle', '/layout'),
        inflight: 10,
        batchMinRecords: 25,
        batchMaxRecords: 50,
        batchInflight: 4,
        batchMaxAgeMs: 100,
        retryDelayMs: 100,
        resends: 3,
        quotaBackoffMs: 100,
        zstdLevel: 3,
        resolution: resolutionTable(loadDecoder(config.dbc).db, config.pipeline.fields),
      },
      {
        store: gateway.store,
        session: gateway.session,
        deadLetters: new DeadLetterFile(join(rig.dir, 'rogue-dead-letter.jsonl')),
        clock: systemClock,
        log: (m) => logs.push(m),
      },
    );
    rogue.start();
    t.teardown(() => rogue.stop());
    await rig.insert(gateway, 1, 3);
    await waitUntil('all three parked', () => rogue.parkedRecords === 3, 10_000, logs);
    const refusals = rogue.counters.notAuthorised;
    t.ok(refusals >= 1 && refusals <= 3, `refused once per message in flight (${refusals})`);
    await new Promise((resolve) => setTimeout(resolve, 600));
    t.equal(rogue.counters.notAuthorised, refusals, 'the topic is not tried again (6 retry delays later)');
    t.ok(rogue.blockedTopics.has(other));
    t.equal(await gateway.store.count(), 3, 'the records stay stored');
    t.ok(logs.some((l) => l.includes(`SECURITY: the broker does not authorise publishing to ${other} (PUBACK 0x87)`)));
    await gateway.stop(0);
  });
});
