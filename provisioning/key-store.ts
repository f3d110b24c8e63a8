// Where the device key lives. The gateway reaches it only through DeviceKeyStore, so a TPM or
// PKCS#11 store can replace the file store; key material is read once and written nowhere but
// into a new release of the installation, with mode 0600.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { readInputFile } from '../core/input-file.js';

/** A key, a certificate or a CA bundle: kilobytes. */
const MAX_PEM_BYTES = 1 << 20;
import { join } from 'node:path';
import {
  checkCredentials,
  CredentialError,
  keyModeProblem,
  type CertificateFacts,
  type CredentialFiles,
  type CredentialTexts,
} from './credential-checks.js';
import { Installation, RELEASE_FILES } from './installation.js';
import { createCsr, generateEcKey } from './pki.js';

export interface DeviceCredentials extends CredentialTexts {
  files: CredentialFiles;
}

/** A key made for renewal and not yet in use. */
export interface PendingRenewal {
  csrPem: string;
  /**
   * Checks the signed certificate against the pending key, the CA bundle and the vehicle id,
   * writes it with the key as a new release and switches to it; the old release stays until
   * `commit`. Throws CredentialError when a check fails (nothing is written then).
   */
  install(certPem: string, now: Date): { credentials: DeviceCredentials; facts: CertificateFacts };
  /** The new credentials connected: the old key and certificate are removed. */
  commit(): void;
  /** The new credentials did not connect: back to the old release. */
  rollback(): void;
}

export interface DeviceKeyStore {
  readonly description: string;
  /** Reads the key, certificate and CA bundle (once per call: callers keep the result). */
  load(): DeviceCredentials;
  /** A new key and its CSR, or null when this store cannot renew (files not installed by provisioning). */
  beginRenewal(vehicleId: string): Promise<PendingRenewal | null>;
}

export class FileKeyStore implements DeviceKeyStore {
  constructor(private readonly files: CredentialFiles) {}

  get description(): string {
    return `key file ${this.files.key}`;
  }

  load(): DeviceCredentials {
    const read = (file: string, code: 'KEY_UNREADABLE' | 'CERT_UNREADABLE' | 'CA_UNREADABLE'): string => {
      try {
        return readInputFile(file, MAX_PEM_BYTES).toString('utf8');
      } catch (err) {
        throw new CredentialError([{ code, file, message: `cannot read: ${(err as Error).message}` }]);
      }
    };
    const keyPem = read(this.files.key, 'KEY_UNREADABLE');
    const modeProblem = keyModeProblem(statSync(this.files.key).mode, this.files.key);
    if (modeProblem !== null) throw new CredentialError([modeProblem]);
    return {
      keyPem,
      certPem: read(this.files.cert, 'CERT_UNREADABLE'),
      caPem: read(this.files.ca, 'CA_UNREADABLE'),
      files: this.files,
    };
  }

  async beginRenewal(vehicleId: string): Promise<PendingRenewal | null> {
    const installation = Installation.containing(this.files.key);
    if (installation === null) return null;
    const keyPem = await generateEcKey();
    const csrPem = await createCsr(keyPem, vehicleId);
    let previous: string | null = null;
    let next: string | null = null;
    return {
      csrPem,
      install: (certPem, now) => {
        const caPem = readFileSync(this.files.ca, 'utf8');
        const files = { key: '(new key)', cert: '(signed certificate)', ca: this.files.ca };
        const result = checkCredentials({ keyPem, certPem, caPem }, files, { vehicleId, now, expiringWithinDays: 0 });
        if (result.problems.length > 0 || result.facts === null) throw new CredentialError(result.problems);
        const active = installation.activeRelease();
        const activeDir = join(installation.releasesDir, active ?? '');
        // Everything else in the release (config, CA bundle, DBC) is carried over unchanged.
        const carried =
          active === null
            ? []
            : readdirSync(activeDir)
                .filter((f) => f !== RELEASE_FILES.key && f !== RELEASE_FILES.cert)
                .map((name) => ({
                  name,
                  content: readFileSync(join(activeDir, name)),
                  mode: statSync(join(activeDir, name)).mode & 0o777,
                }));
        next = installation.stage([
          ...carried,
          { name: RELEASE_FILES.key, content: keyPem, mode: 0o600 },
          { name: RELEASE_FILES.cert, content: certPem, mode: 0o644 },
        ]);
        previous = installation.activate(next);
        return { credentials: { keyPem, certPem, caPem, files: this.files }, facts: result.facts };
      },
      commit: () => {
        if (next !== null) installation.prune([next]);
      },
      rollback: () => {
        if (previous === null || next === null) return;
        installation.activate(previous);
        installation.discard(next);
      },
    };
  }
}
