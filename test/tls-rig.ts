// Rig for the mutual-TLS tests: the bench PKI, a Mosquitto that requires client certificates and
// lets a device use only its own vehicle's topics, the reference sink on the cloud certificate,
// and gateways started from the real composition root with a chosen device certificate.
import type { Test } from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLocalBroker, type LocalBroker } from '../bench/rig/local-broker.js';
import { SampleRecords } from '../bench/rig/sample-records.js';
import { systemClock } from '../core/clock.js';
import { referenceVehicleConfig, type GatewayConfig } from '../core/config.js';
import { startGateway, type GatewayDevices, type GatewayHandle } from '../gateway/gateway.js';
import { benchBrokerTls, benchCloudTls, createDevPki, type DevPki, type PkiFiles } from '../provisioning/dev-pki.js';
import { TelemetrySink } from '../receiver/telemetry-sink.js';
import { insertSamples } from './helpers.js';

export interface TlsRig {
  pki: DevPki;
  broker: LocalBroker;
  sink: TelemetrySink;
  seen: Set<string>;
  dir: string;
  /** PEM texts of the cloud side's client certificate (sink, signer). */
  cloudTls: { ca: string; cert: string; key: string };
  /** The reference config with an empty trace, fast timers and `device`'s certificate. */
  config(device: PkiFiles, ca?: string): GatewayConfig;
  /** Starts a gateway that is stopped when `owner` ends, pass or fail (the next subtest opens its own store). */
  start(
    owner: Test,
    config: GatewayConfig,
    devices?: GatewayDevices,
  ): Promise<{ gateway: GatewayHandle; logs: string[] }>;
  insert(gateway: GatewayHandle, from: number, n: number, priority?: (seq: number) => number): Promise<string[]>;
}

export async function tlsRig(t: Test): Promise<TlsRig> {
  const dir = mkdtempSync(join(tmpdir(), 'v2c-tls-'));
  const pki = await createDevPki(join(dir, 'pki'));
  const broker = await startLocalBroker({ tls: benchBrokerTls(pki) });
  const cloudTls = benchCloudTls(pki);
  const sink = await TelemetrySink.start({
    url: broker.url,
    clientId: `sink-${process.pid}`,
    deadLetterDir: join(dir, 'sink-dead-letter'),
    dedupWindowMs: 3_600_000,
    tls: cloudTls,
  });
  const seen = new Set<string>();
  sink.onRecord = (r) => seen.add(r.messageId);
  const emptyTrace = join(dir, 'empty.log');
  writeFileSync(emptyTrace, '');
  t.teardown(async () => {
    await sink.close().catch(() => undefined);
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const samples = new SampleRecords(11);
  let stores = 0;
  return {
    pki,
    broker,
    sink,
    seen,
    dir,
    cloudTls,
    config(device, ca = pki.ca.cert) {
      const config = referenceVehicleConfig({
        mqttUrl: broker.url,
        trace: emptyTrace,
        storeDir: join(dir, `store-${stores++}`),
        tls: { ca, cert: device.cert, key: device.key },
      });
      Object.assign(config.mqtt, {
        connectTimeoutMs: 2000,
        pubackTimeoutMs: 1000,
        retryDelayMs: 200,
        heartbeatS: 5,
        reconnect: {
          baseMs: 100,
          capMs: 1000,
          jitter: 0.2,
          offlineAfterFailures: 5,
          offlineRetryMs: 1500,
          quotaWaitMs: 500,
          quotaJitterMs: 200,
        },
      });
      return config;
    },
    async start(owner, config, devices) {
      const logs: string[] = [];
      const gateway = await startGateway(config, systemClock, (m) => logs.push(m), devices);
      owner.teardown(() => gateway.stop(0).then(() => undefined));
      return { gateway, logs };
    },
    insert: (gateway, from, n, priority = () => 1) => insertSamples(gateway.store, samples, from, n, priority),
  };
}
