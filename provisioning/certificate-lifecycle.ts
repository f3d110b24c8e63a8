// The device certificate while the gateway runs: days to expiry (metric), a warning from
// `warnDays` before the end, and renewal once `renewAtFraction` of the validity has passed: a new
// key and CSR published on …/cert/csr, the signed certificate taken from …/cert/response, checked,
// installed as a new release, and used for a new connection; the old key stays until that
// connection succeeds, and is put back if it does not.
import { randomBytes } from 'node:crypto';
import { filter, firstValueFrom, skip, timeout, type Subscription } from 'rxjs';
import type { Clock } from '../core/clock.js';
import type { MqttSession, SessionTls, TlsPolicy } from '../sync/session/mqtt-session.js';
import { CredentialError, type CertificateFacts } from './credential-checks.js';
import type { DeviceCredentials, DeviceKeyStore, PendingRenewal } from './key-store.js';

export interface LifecycleSettings {
  vehicleId: string;
  region: string;
  warnDays: number;
  renewAtFraction: number;
  checkIntervalMs: number;
  responseTimeoutMs: number;
  connectTimeoutMs: number;
  tls: TlsPolicy;
}

export interface RenewalCounters {
  requested: number;
  installed: number;
  /** Signed certificates that failed a check (nothing installed). */
  rejected: number;
  /** Installed certificates that did not connect (the old one was put back). */
  rolledBack: number;
  timedOut: number;
}

const DAY_MS = 86_400_000;
export const CSR_CONTENT_TYPE = 'application/pkcs10';

export function certTopics(region: string, vehicleId: string): { csr: string; response: string } {
  return { csr: `v2c/v1/${region}/${vehicleId}/cert/csr`, response: `v2c/v1/${region}/${vehicleId}/cert/response` };
}

export class CertificateLifecycle {
  readonly counters: RenewalCounters = { requested: 0, installed: 0, rejected: 0, rolledBack: 0, timedOut: 0 };
  /** Called once a renewed certificate has connected (other TLS clients, such as the HTTPS offload, switch to it). */
  onRenewed: (credentials: DeviceCredentials) => void = () => undefined;
  private pending: { renewal: PendingRenewal; correlation: Buffer; sentAtMs: number } | null = null;
  private busy = false;
  private renewalUnsupported = false;
  private lastWarningDay = -1;
  private timer: NodeJS.Timeout | null = null;
  private readonly subscriptions: Subscription[] = [];
  private readonly topics: { csr: string; response: string };

  constructor(
    private readonly keyStore: DeviceKeyStore,
    private readonly session: MqttSession,
    private credentials: DeviceCredentials,
    private factsNow: CertificateFacts,
    private readonly settings: LifecycleSettings,
    private readonly clock: Clock,
    private readonly log: (msg: string) => void,
  ) {
    this.topics = certTopics(settings.region, settings.vehicleId);
  }

  get facts(): CertificateFacts {
    return this.factsNow;
  }

  daysToExpiry(): number {
    return (this.factsNow.notAfter.getTime() - this.clock.wallMs()) / DAY_MS;
  }

  /** Whether `renewAtFraction` of the validity has passed. */
  renewalDue(): boolean {
    const start = this.factsNow.notBefore.getTime();
    const span = this.factsNow.notAfter.getTime() - start;
    return (this.clock.wallMs() - start) / span >= this.settings.renewAtFraction;
  }

  start(): void {
    this.subscriptions.push(
      this.session.messages.pipe(filter((m) => m.topic === this.topics.response)).subscribe((m) => {
        this.onResponse(m.payload, m.packet.properties?.correlationData).catch((err: unknown) =>
          this.log(`certificate: the renewal response could not be handled: ${(err as Error).message}`),
        );
      }),
    );
    this.subscriptions.push(this.session.keepSubscribed(this.topics.response, () => this.checkLogged()));
    this.timer = setInterval(() => this.checkLogged(), this.settings.checkIntervalMs);
    this.checkLogged();
  }

  /** A check from a timer or an event: whatever fails is logged, never an unhandled rejection. */
  private checkLogged(): void {
    this.check().catch((err: unknown) => this.log(`certificate: check failed: ${(err as Error).message}`));
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    for (const s of this.subscriptions) s.unsubscribe();
  }

  async check(): Promise<void> {
    const days = this.daysToExpiry();
    const today = Math.floor(this.clock.wallMs() / DAY_MS);
    if (days < this.settings.warnDays && this.lastWarningDay !== today) {
      this.lastWarningDay = today;
      this.log(
        `certificate: WARNING: the device certificate ${days < 0 ? 'has expired' : `expires in ${days.toFixed(1)} days`} (${this.factsNow.notAfter.toISOString()})`,
      );
    }
    if (this.pending !== null && this.clock.monoMs() - this.pending.sentAtMs > this.settings.responseTimeoutMs) {
      this.counters.timedOut++;
      this.log(
        `certificate: no signed certificate on ${this.topics.response} within ${this.settings.responseTimeoutMs} ms; asking again with a new key`,
      );
      this.pending = null;
    }
    if (
      this.pending !== null ||
      this.busy ||
      this.renewalUnsupported ||
      !this.session.isConnected ||
      !this.renewalDue()
    )
      return;
    this.busy = true;
    try {
      await this.request();
    } catch (err) {
      this.pending = null;
      this.log(`certificate: renewal request failed: ${(err as Error).message}`);
    } finally {
      this.busy = false;
    }
  }

  private async request(): Promise<void> {
    const renewal = await this.keyStore.beginRenewal(this.settings.vehicleId);
    if (renewal === null) {
      this.renewalUnsupported = true;
      this.log(
        `certificate: renewal is due but ${this.keyStore.description} is not in an installation made by v2c-gateway provision; renew it with provision`,
      );
      return;
    }
    const correlation = randomBytes(16);
    this.pending = { renewal, correlation, sentAtMs: this.clock.monoMs() };
    this.counters.requested++;
    await this.session.publish(this.topics.csr, Buffer.from(renewal.csrPem), {
      contentType: CSR_CONTENT_TYPE,
      userProperties: { vehicle_id: this.settings.vehicleId },
      responseTopic: this.topics.response,
      correlationData: correlation,
    });
    this.log(
      `certificate: renewal due (${(this.settings.renewAtFraction * 100).toFixed(1)} % of the validity passed); new EC P-256 key made, CSR sent on ${this.topics.csr}`,
    );
  }

  private async onResponse(payload: Buffer, correlation: Buffer | undefined): Promise<void> {
    const pending = this.pending;
    if (pending === null || correlation === undefined || !pending.correlation.equals(correlation)) {
      this.log(`certificate: ignored a message on ${this.topics.response} that answers no request of ours`);
      return;
    }
    this.pending = null;
    let installed: ReturnType<PendingRenewal['install']>;
    try {
      installed = pending.renewal.install(payload.toString('utf8'), new Date(this.clock.wallMs()));
    } catch (err) {
      this.counters.rejected++;
      const why =
        err instanceof CredentialError ? err.problems.map((p) => p.message).join('; ') : (err as Error).message;
      this.log(`certificate: the signed certificate was refused, the current one stays: ${why}`);
      return;
    }
    const old = { credentials: this.credentials, facts: this.factsNow };
    const online = firstValueFrom(
      this.session.states.pipe(
        skip(1),
        filter((s) => s.state === 'online' || s.state === 'certificate-renewal'),
        timeout(this.settings.connectTimeoutMs),
      ),
    ).then(
      (s) => s.state === 'online',
      () => false,
    );
    this.session.useCredentials(this.tls(installed.credentials));
    if (await online) {
      pending.renewal.commit();
      this.credentials = installed.credentials;
      this.factsNow = installed.facts;
      this.counters.installed++;
      this.onRenewed(installed.credentials);
      this.log(
        `certificate: renewed; connected with the new certificate (valid until ${installed.facts.notAfter.toISOString()}, SHA-256 ${installed.facts.fingerprint256.slice(0, 23)}…); the old key is deleted`,
      );
      return;
    }
    pending.renewal.rollback();
    this.counters.rolledBack++;
    this.log('certificate: the new certificate did not connect; the old key and certificate are back in use');
    this.session.useCredentials(this.tls(old.credentials));
  }

  private tls(c: DeviceCredentials): SessionTls {
    return sessionTls(c, this.settings.tls);
  }
}

/** The MQTT session's TLS settings for a set of credentials. */
export function sessionTls(c: DeviceCredentials, policy: TlsPolicy): SessionTls {
  return { ...policy, ca: c.caPem, cert: c.certPem, key: c.keyPem };
}
