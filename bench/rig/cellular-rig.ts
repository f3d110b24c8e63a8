// The cellular benches' rig: Mosquitto over mutual TLS with the bench PKI, the reference sink on
// the cloud certificate, and a byte-counting relay in front of the broker that the gateway
// connects through. Torn down whatever the bench did.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { countingRelay, type CountingRelay } from './counting-relay.js';
import { startLocalBroker } from './local-broker.js';
import { systemClock } from '../../core/clock.js';
import { referenceVehicleConfig, type GatewayConfig } from '../../core/config.js';
import { startGateway, type GatewayHandle } from '../../gateway/gateway.js';
import { benchBrokerTls, benchCloudTls, createDevPki } from '../../provisioning/dev-pki.js';
import { BenchLinkMonitor } from '../../sync/link/link-monitor.js';
import { TelemetrySink } from '../../receiver/telemetry-sink.js';

export interface CellularRig {
  relay: CountingRelay;
  sink: TelemetrySink;
  /** The reference config through the relay, records from the bench (an empty trace), one store per name. */
  config(store: string): GatewayConfig;
  /** A gateway on a cellular link, started and waited for: connected, with its first broker time. */
  start(config: GatewayConfig): Promise<GatewayHandle>;
  /** Stops a gateway `start` gave (the rig stops any left running when the bench ends). */
  stop(gateway: GatewayHandle): Promise<void>;
}

export async function withCellularRig<T>(prefix: string, bench: (rig: CellularRig) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const gateways: GatewayHandle[] = [];
  const closers: (() => Promise<void>)[] = [];
  try {
    const pki = await createDevPki(join(dir, 'pki'));
    const broker = await startLocalBroker({ tls: benchBrokerTls(pki) });
    closers.push(() => broker.stop());
    const sink = await TelemetrySink.start({
      url: broker.url,
      clientId: `${prefix}sink`,
      deadLetterDir: join(dir, 'dl'),
      dedupWindowMs: 3_600_000,
      tls: benchCloudTls(pki),
    });
    closers.push(() => sink.close());
    const relay = await countingRelay(broker.port);
    closers.push(() => relay.close());
    const emptyTrace = join(dir, 'empty.log');
    writeFileSync(emptyTrace, '');
    return await bench({
      relay,
      sink,
      config(store) {
        const c = referenceVehicleConfig({
          mqttUrl: `mqtts://127.0.0.1:${relay.port}`,
          storeDir: join(dir, store),
          tls: { ca: pki.ca.cert, ...pki.devices.valid },
          trace: emptyTrace,
        });
        c.clock.ntp = false;
        return c;
      },
      async start(config) {
        const gateway = await startGateway(config, systemClock, () => undefined, {
          linkMonitor: new BenchLinkMonitor({ kind: 'cellular', iface: 'wwan0' }),
          ignition: null,
          led: null,
        });
        gateways.push(gateway);
        while (!gateway.session.isConnected || gateway.time.reference === null) await sleep(20);
        return gateway;
      },
      async stop(gateway) {
        gateways.splice(gateways.indexOf(gateway), 1);
        await gateway.stop(2000);
      },
    });
  } finally {
    for (const g of gateways) await g.stop(0).catch(() => undefined);
    for (const close of closers.reverse()) await close().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Waits until the relay has carried nothing for `quietMs` (the exchange in progress is over). */
export async function quiet(relay: CountingRelay, quietMs = 200): Promise<void> {
  let last = relay.bytes();
  for (;;) {
    await sleep(quietMs);
    const now = relay.bytes();
    if (now === last) return;
    last = now;
  }
}
