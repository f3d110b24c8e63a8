// WiFi offload over HTTPS with mutual TLS: the gateway PUTs batches to the bench receiver, which
// hands them to the same sink that reads MQTT, so records delivered by either path count once.
import t from 'tap';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { request as httpsRequest } from 'node:https';
import { systemClock } from '../core/clock.js';
import { BENCH_OTHER_VEHICLE_ID, BENCH_VEHICLE_ID } from '../provisioning/dev-pki.js';
import { BATCH_CONTENT_TYPE, packBatch } from '../proto/batch-packer.js';
import { ClockCorrector } from '../sync/time/clock-corrector.js';
import { HttpsOffloadUploader, UploadError } from '../sync/offload/https-offload.js';
import { BenchLinkMonitor } from '../sync/link/link-monitor.js';
import { OffloadReceiver } from '../receiver/offload-receiver.js';
import { SampleRecords } from '../bench/rig/sample-records.js';
import { waitUntil } from './helpers.js';
import { tlsRig } from './tls-rig.js';
import { join } from 'node:path';
import { TelemetrySink } from '../receiver/telemetry-sink.js';

t.test('HTTPS offload', async (t) => {
  const rig = await tlsRig(t);
  const read = (f: string): string => readFileSync(f, 'utf8');
  const receiver = await OffloadReceiver.start(
    rig.sink,
    {
      host: '127.0.0.1',
      port: 0,
      basePath: '/v1/vehicles',
      maxBodyBytes: 16 << 20,
      tls: { ca: read(rig.pki.ca.cert), cert: read(rig.pki.broker.cert), key: read(rig.pki.broker.key) },
    },
    () => undefined,
  );
  t.teardown(() => receiver.close());
  const url = `https://127.0.0.1:${receiver.port}/v1/vehicles`;
  const offloadConfig = () => {
    const config = rig.config(rig.pki.devices.valid);
    config.offload.url = url;
    config.link.allowedSsids = ['Depot'];
    return config;
  };

  t.test('at the depot: a backlog goes up as 500-record PUTs; the Date header is a time reference', async (t) => {
    const link = new BenchLinkMonitor({ kind: 'none' });
    const config = offloadConfig();
    config.clock.brokerTime = false;
    config.clock.ntp = false;
    const { gateway, logs } = await rig.start(t, config, { linkMonitor: link, ignition: null, led: null });
    const ids = await rig.insert(gateway, 1, 3000, (s) => (s % 100 === 0 ? 0 : s % 2 === 0 ? 1 : 2));
    const started = Date.now();
    link.set({ kind: 'wifi', ssid: 'Depot' });
    await waitUntil('the backlog at the sink', () => ids.every((id) => rig.seen.has(id)), 60_000, logs);
    const seconds = (Date.now() - started) / 1000;
    t.comment(
      `offload over HTTPS on loopback: 3,000 records in ${seconds.toFixed(2)} s = ${Math.round(3000 / seconds)} records/s`,
    );
    // The sink sees the last batch before its 2xx has removed it from the store.
    await waitUntil('the store empty', async () => (await gateway.store.count()) === 0, 10_000, logs);
    t.ok(
      gateway.sender.counters.uploads >= 6 && gateway.sender.counters.uploads <= 12,
      `${gateway.sender.counters.uploads} uploads`,
    );
    t.equal(gateway.sender.counters.uploadedRecords, 3000, 'every record acknowledged by a 2xx');
    t.equal(gateway.sender.counters.singles + gateway.sender.counters.batches, 0, 'nothing of it over MQTT');
    t.equal(gateway.time.reference?.source, 'http-date', "the receiver's Date header became the time reference");
    t.ok((gateway.time.reference?.errorMs ?? 0) >= 500, "with the Date header's ±0.5 s");
    t.match(await gateway.metrics.text(), /v2c_telemetry_records_acked_total\{topic="offload"\} 3000/);
    await gateway.stop(0);
  });

  t.test(
    'flapping between depot WiFi (HTTPS) and cellular (MQTT): one set of records at the sink, duplicates only by id',
    async (t) => {
      const link = new BenchLinkMonitor({ kind: 'none' });
      const config = offloadConfig();
      // No cellular budget: P1 goes over MQTT on cellular, P2 only over WiFi, so both paths carry records.
      config.link.dailyCellularBudgetBytes = 0;
      const { gateway, logs } = await rig.start(t, config, { linkMonitor: link, ignition: null, led: null });
      await waitUntil('online', () => gateway.session.isConnected, 10_000, logs);
      const before = { ...rig.sink.counts };
      const ids = await rig.insert(gateway, 10_000, 2000, (s) => (s % 3 === 0 ? 1 : 2));
      link.set({ kind: 'cellular', iface: 'wwan0' });
      await waitUntil(
        'some records over MQTT first',
        () => gateway.sender.counters.singles + gateway.sender.counters.batches > 0,
        10_000,
        logs,
      );
      for (let i = 0; i < 20; i++) {
        link.set(i % 2 === 0 ? { kind: 'wifi', ssid: 'Depot' } : { kind: 'cellular', iface: 'wwan0' });
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      // The flapping ends at the depot: on cellular with no budget P2 waits by design, so ending there
      // passed only when the WiFi windows happened to carry the whole backlog (not on a loaded machine).
      link.set({ kind: 'wifi', ssid: 'Depot' });
      await waitUntil('every record', () => ids.every((id) => rig.seen.has(id)), 60_000, logs);
      const s = gateway.sender.counters;
      t.ok(
        s.uploads > 0 && s.singles + s.batches > 0,
        `both paths carried records (${s.uploads} uploads, ${s.singles + s.batches} MQTT messages)`,
      );
      const received = rig.sink.counts.received - before.received;
      const unique = rig.sink.counts.unique - before.unique;
      const duplicates = rig.sink.counts.duplicates - before.duplicates;
      t.equal(unique, 2000, 'every record once in the set');
      t.equal(received, unique + duplicates, `anything else a duplicate by id (${duplicates})`);
      t.equal(rig.sink.counts.rejected, 0);
      await gateway.stop(0);
    },
  );

  t.test(
    'permanent refusals split the batch: 413 until it fits, 400 down to the record refused, which is dead-lettered',
    async (t) => {
      const serverTls = { ca: read(rig.pki.ca.cert), cert: read(rig.pki.broker.cert), key: read(rig.pki.broker.key) };
      const small = await OffloadReceiver.start(
        rig.sink,
        { host: '127.0.0.1', port: 0, basePath: '/v1/vehicles', maxBodyBytes: 5000, tls: serverTls },
        () => undefined,
      );
      t.teardown(() => small.close());
      const link = new BenchLinkMonitor({ kind: 'wifi', ssid: 'Depot' });
      const config = offloadConfig();
      config.offload.url = `https://127.0.0.1:${small.port}/v1/vehicles`;
      const { gateway, logs } = await rig.start(t, config, { linkMonitor: link, ignition: null, led: null });
      const ids = await rig.insert(gateway, 30_000, 40, () => 2);
      await waitUntil(
        'every record through the small receiver',
        () => ids.every((id) => rig.seen.has(id)),
        20_000,
        logs,
      );
      t.ok(
        gateway.sender.counters.splits > 0 && small.counts.refused > 0,
        `split after ${small.counts.refused} refusals with 413 (${gateway.sender.counters.splits} splits)`,
      );
      await gateway.stop(0);

      // A receiver that accepts no schema version we send: every batch is refused (400).
      const strict = await TelemetrySink.start({
        url: rig.broker.url,
        clientId: 'strict-sink',
        deadLetterDir: join(rig.dir, 'strict-dl'),
        dedupWindowMs: 60_000,
        tls: rig.cloudTls,
        acceptedSchemaVersions: ['9.9'],
        filter: 'v2c/v1/none/+/telemetry/#',
      });
      t.teardown(() => strict.close());
      const refusing = await OffloadReceiver.start(
        strict,
        { host: '127.0.0.1', port: 0, basePath: '/v1/vehicles', maxBodyBytes: 1 << 20, tls: serverTls },
        () => undefined,
      );
      t.teardown(() => refusing.close());
      const config2 = offloadConfig();
      config2.offload.url = `https://127.0.0.1:${refusing.port}/v1/vehicles`;
      const link2 = new BenchLinkMonitor({ kind: 'none' });
      const second = await rig.start(t, config2, { linkMonitor: link2, ignition: null, led: null });
      await rig.insert(second.gateway, 40_000, 10, () => 2);
      link2.set({ kind: 'wifi', ssid: 'Depot' });
      await waitUntil('the store empty', async () => (await second.gateway.store.count()) === 0, 20_000, second.logs);
      const letters = readFileSync(second.gateway.deadLetters.path, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { reason: string; detail: string });
      t.equal(letters.length, 10, 'each refused record in the dead-letter file, none lost, none retried forever');
      t.ok(
        letters.every((l) => l.reason === 'refused_by_receiver' && /HTTP 400/.test(l.detail)),
        "with the receiver's answer",
      );
      t.equal(refusing.counts.uploads, 19, 'halving 10 records down to singles: 19 PUTs');
      await second.gateway.stop(0);
    },
  );

  t.test(
    "refusals keep the records: another vehicle's path (403), a corrupted body (400), the receiver down",
    async (t) => {
      const corrector = new ClockCorrector('boot', systemClock, { driftPpm: 50, windowMs: 3_600_000 }, () => undefined);
      const tls = {
        ca: read(rig.pki.ca.cert),
        cert: read(rig.pki.devices.valid.cert),
        key: read(rig.pki.devices.valid.key),
        minVersion: 'TLSv1.2' as const,
      };
      const records = new SampleRecords(3);
      const batch = await packBatch([records.record(1, 2), records.record(2, 2)], {
        vehicleId: BENCH_OTHER_VEHICLE_ID,
        createdMs: Date.now(),
        resolution: () => undefined,
        zstdLevel: 3,
      });
      const intruder = new HttpsOffloadUploader(
        { url, vehicleId: BENCH_OTHER_VEHICLE_ID, concurrency: 1, timeoutMs: 5000, tls },
        corrector,
        systemClock,
      );
      t.teardown(() => intruder.close());
      const forbidden = await intruder.upload(batch).then(
        () => null,
        (err: unknown) => err,
      );
      t.ok(
        forbidden instanceof UploadError && forbidden.status === 403,
        'HTTP 403 for a certificate of another vehicle',
      );
      const own = new HttpsOffloadUploader(
        { url, vehicleId: BENCH_VEHICLE_ID, concurrency: 1, timeoutMs: 5000, tls },
        corrector,
        systemClock,
      );
      t.teardown(() => own.close());
      const good = await packBatch([records.record(3, 2)], {
        vehicleId: BENCH_VEHICLE_ID,
        createdMs: Date.now(),
        resolution: () => undefined,
        zstdLevel: 3,
      });
      const corrupt = { ...good, payload: Buffer.from(good.payload).fill(7, 20, 30) };
      const bad = await own.upload(corrupt).then(
        () => null,
        (err: unknown) => err,
      );
      t.ok(
        bad instanceof UploadError && bad.status === 400 && /failed its checks/.test(bad.message),
        'HTTP 400 for a body whose digest does not match',
      );
      await own.upload(good);
      // After a certificate change (renewal), new connections present the new certificate: here one
      // for another vehicle, which the receiver refuses under this vehicle's path.
      own.useCredentials({
        ...tls,
        cert: read(rig.pki.devices.otherVehicle.cert),
        key: read(rig.pki.devices.otherVehicle.key),
      });
      const switched = await own.upload(good).then(
        () => null,
        (err: unknown) => err,
      );
      t.ok(switched instanceof UploadError && switched.status === 403, 'the new credentials are the ones presented');

      const link = new BenchLinkMonitor({ kind: 'wifi', ssid: 'Depot' });
      const config = offloadConfig();
      const down = await OffloadReceiver.start(
        rig.sink,
        {
          host: '127.0.0.1',
          port: 0,
          basePath: '/v1/vehicles',
          maxBodyBytes: 1 << 20,
          tls: { ca: read(rig.pki.ca.cert), cert: read(rig.pki.broker.cert), key: read(rig.pki.broker.key) },
        },
        () => undefined,
      );
      const port = down.port;
      await down.close();
      config.offload.url = `https://127.0.0.1:${port}/v1/vehicles`;
      const { gateway, logs } = await rig.start(t, config, { linkMonitor: link, ignition: null, led: null });
      const ids = await rig.insert(gateway, 20_000, 40, () => 2);
      await waitUntil('a failed upload', () => gateway.sender.counters.failed > 0, 10_000, logs);
      t.equal(
        await gateway.store.count(),
        40,
        `records kept while the receiver is down (${await gateway.store.count()})`,
      );
      // A slow board inserts the 40 slowly, so the uploader may have taken them in several smaller PUTs.
      const refused = logs.filter((l) =>
        /upload of \d+ records failed: PUT .* ECONNREFUSED.*; kept for the next cycle/.test(l),
      );
      t.ok(
        refused.length > 0 && refused.length === logs.filter((l) => l.includes('upload of')).length,
        `every failed upload said so and kept its records: ${refused.length} failed PUTs`,
      );
      const back = await OffloadReceiver.start(
        rig.sink,
        {
          host: '127.0.0.1',
          port,
          basePath: '/v1/vehicles',
          maxBodyBytes: 1 << 20,
          tls: { ca: read(rig.pki.ca.cert), cert: read(rig.pki.broker.cert), key: read(rig.pki.broker.key) },
        },
        () => undefined,
      );
      t.teardown(() => back.close());
      await waitUntil('delivery once it is back', () => ids.every((id) => rig.seen.has(id)), 15_000, logs);
      await gateway.stop(0);
    },
  );

  t.test(
    'the receiver bounds what a client sends: a declared 10 GB and a 40 MiB body get their 413 without being read; dead letters are bounded',
    async (t) => {
      const serverTls = { ca: read(rig.pki.ca.cert), cert: read(rig.pki.broker.cert), key: read(rig.pki.broker.key) };
      const bounded = await OffloadReceiver.start(
        rig.sink,
        { host: '127.0.0.1', port: 0, basePath: '/v1/vehicles', maxBodyBytes: 1 << 20, tls: serverTls },
        () => undefined,
      );
      t.teardown(() => bounded.close());
      const device = { ca: serverTls.ca, cert: read(rig.pki.devices.valid.cert), key: read(rig.pki.devices.valid.key) };
      /** A PUT that declares `declared` bytes and writes `body` bytes of them (as fast as the server takes them). */
      const put = (
        declared: number,
        body: number,
      ): Promise<{ status: number | null; written: number; closed: boolean }> =>
        new Promise((resolve) => {
          let written = 0;
          let status: number | null = null;
          const req = httpsRequest({
            host: '127.0.0.1',
            port: bounded.port,
            method: 'PUT',
            path: `/v1/vehicles/${BENCH_VEHICLE_ID}/batches/bomb`,
            ...device,
            headers: { 'content-type': BATCH_CONTENT_TYPE, 'content-length': String(declared) },
          });
          const finish = (closed: boolean): void => resolve({ status, written, closed });
          req.on('response', (res) => {
            status = res.statusCode ?? null;
            res.resume();
            res.on('end', () => finish(true));
            res.on('error', () => finish(true));
          });
          req.on('error', () => finish(true));
          req.flushHeaders();
          const chunk = Buffer.alloc(256 * 1024);
          const pump = (): void => {
            while (written < body && status === null) {
              written += chunk.length;
              if (!req.write(chunk)) {
                req.once('drain', pump);
                return;
              }
            }
          };
          pump();
        });
      const started = Date.now();
      const huge = await put(10 * 2 ** 30, 0);
      t.equal(huge.status, 413, 'a declared 10 GB body: 413 at once');
      t.ok(Date.now() - started < 20_000, 'without waiting for the body');
      const big = await put(40 << 20, 40 << 20);
      t.equal(big.status, 413, 'a 40 MiB body: 413');
      t.ok(
        big.written < 40 << 20,
        `the client stopped after ${(big.written / 2 ** 20).toFixed(1)} MiB: the receiver did not read it all`,
      );

      const dir = join(rig.dir, 'bounded-dl');
      const small = await TelemetrySink.start({
        url: rig.broker.url,
        clientId: 'bounded-sink',
        deadLetterDir: dir,
        dedupWindowMs: 60_000,
        tls: rig.cloudTls,
        filter: 'v2c/v1/none/+/telemetry/#',
        maxDeadLetterBytes: 3 << 20,
      });
      t.teardown(() => small.close());
      // Refused uploads of 1 MiB of noise each: every one counted, the directory kept within its bound.
      for (let i = 0; i < 6; i++)
        t.not(
          await small.receiveUpload(BENCH_VEHICLE_ID, `noise-${i}`, randomBytes(1 << 20), {
            compression: 'zstd',
            sha256: 'x',
          }),
          null,
        );
      t.equal(small.counts.rejected, 6, 'six refusals counted');
      const bytes = readdirSync(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0);
      t.ok(bytes <= 3 << 20, `the dead-letter directory holds ${(bytes / 2 ** 20).toFixed(1)} MiB, within its 3 MiB`);
      t.ok(small.deadLettersNotKept > 0, `${small.deadLettersNotKept} refusals counted but not written`);
    },
  );
});
