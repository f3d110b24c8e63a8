// `v2c-gateway provision dev-pki`: a local CA and the certificates a bench needs — the broker's
// for 127.0.0.1/localhost, the cloud side's (sink, CSR signer), and device certificates that are
// valid, expired, for another vehicle, or from a CA nobody trusts. For benches and tests only.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { daysFrom, generateEcKey, issueCertificate, type KeyAndCertificate } from './pki.js';

export const BENCH_VEHICLE_ID = 'V2CREF00000000001';
export const BENCH_OTHER_VEHICLE_ID = 'V2CREF00000000002';
/** CN of the cloud side's client certificate (the sink and the CSR signer). */
export const BENCH_CLOUD_CN = 'v2c-cloud';

export interface PkiFiles {
  cert: string;
  key: string;
}

export interface DevPki {
  dir: string;
  ca: PkiFiles;
  broker: PkiFiles;
  cloud: PkiFiles;
  devices: { valid: PkiFiles; expired: PkiFiles; otherVehicle: PkiFiles; unknownCa: PkiFiles };
  /** The certificate of the CA nobody trusts (its key is not kept). */
  unknownCaCert: string;
  /** Signs with the bench CA (the test harness's CSR signer). */
  caMaterial: KeyAndCertificate;
}

function save(dir: string, name: string, material: KeyAndCertificate): PkiFiles {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const files = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  writeFileSync(files.key, material.keyPem, { mode: 0o600 });
  writeFileSync(files.cert, material.certPem, { mode: 0o644 });
  return files;
}

export async function createDevPki(dir: string, vehicleId = BENCH_VEHICLE_ID, now = new Date()): Promise<DevPki> {
  const makeCa = async (commonName: string): Promise<KeyAndCertificate> => {
    const keyPem = await generateEcKey();
    return {
      keyPem,
      certPem: await issueCertificate({
        commonName,
        profile: 'ca',
        subjectKey: { keyPem },
        notBefore: daysFrom(now, -1),
        notAfter: daysFrom(now, 3650),
      }),
    };
  };
  const leaf = async (
    issuer: KeyAndCertificate,
    commonName: string,
    profile: 'server' | 'client',
    fromDays: number,
    toDays: number,
  ): Promise<KeyAndCertificate> => {
    const keyPem = await generateEcKey();
    const certPem = await issueCertificate({
      commonName,
      profile,
      subjectKey: { keyPem },
      issuer,
      notBefore: daysFrom(now, fromDays),
      notAfter: daysFrom(now, toDays),
      ...(profile === 'server' ? { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] } : {}),
    });
    return { keyPem, certPem };
  };
  const ca = await makeCa('v2c bench CA');
  const stranger = await makeCa('unknown CA');
  const devices = join(dir, 'devices');
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  writeFileSync(join(dir, 'unknown-ca.crt'), stranger.certPem, { mode: 0o644 });
  return {
    dir,
    ca: save(dir, 'ca', ca),
    broker: save(dir, 'broker', await leaf(ca, 'localhost', 'server', -1, 825)),
    cloud: save(dir, 'cloud', await leaf(ca, BENCH_CLOUD_CN, 'client', -1, 365)),
    devices: {
      valid: save(join(devices, 'valid'), 'device', await leaf(ca, vehicleId, 'client', -1, 365)),
      expired: save(join(devices, 'expired'), 'device', await leaf(ca, vehicleId, 'client', -366, -1)),
      otherVehicle: save(
        join(devices, 'other-vehicle'),
        'device',
        await leaf(ca, BENCH_OTHER_VEHICLE_ID, 'client', -1, 365),
      ),
      unknownCa: save(join(devices, 'unknown-ca'), 'device', await leaf(stranger, vehicleId, 'client', -1, 365)),
    },
    unknownCaCert: join(dir, 'unknown-ca.crt'),
    caMaterial: ca,
  };
}

/** The bench broker's TLS settings: its certificate, the CA it requires clients to chain to, the cloud user. */
export function benchBrokerTls(pki: DevPki): { ca: string; cert: string; key: string; cloudUser: string } {
  return { ca: pki.ca.cert, cert: pki.broker.cert, key: pki.broker.key, cloudUser: BENCH_CLOUD_CN };
}

/** PEM texts of the cloud side's client certificate, for the sink and the CSR signer. */
export function benchCloudTls(pki: DevPki): { ca: string; cert: string; key: string } {
  return {
    ca: readFileSync(pki.ca.cert, 'utf8'),
    cert: readFileSync(pki.cloud.cert, 'utf8'),
    key: readFileSync(pki.cloud.key, 'utf8'),
  };
}
