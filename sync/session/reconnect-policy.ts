// When to try the broker again after a failed or lost connection (DESIGN §5), as a pure function
// of what happened and how many attempts in a row have failed; the session only runs the timer.
import { backoffDelayMs, type BackoffSettings } from '../../core/backoff.js';

/** The backoff doubles per failure from baseMs up to capMs: 2, 4, 8, 16, 32 s with the defaults. */
export interface ReconnectSettings extends BackoffSettings {
  /** After this many failures in a row the session goes offline and retries every offlineRetryMs. */
  offlineAfterFailures: number;
  offlineRetryMs: number;
  /** CONNACK / DISCONNECT 0x97 (quota exceeded): wait quotaWaitMs plus up to quotaJitterMs. */
  quotaWaitMs: number;
  quotaJitterMs: number;
}

export const DEFAULT_RECONNECT: ReconnectSettings = {
  baseMs: 2000,
  capMs: 60_000,
  jitter: 0.2,
  offlineAfterFailures: 5,
  offlineRetryMs: 300_000,
  quotaWaitMs: 60_000,
  quotaJitterMs: 30_000,
};

/** Why the last attempt ended. */
export type ConnectOutcome =
  | { kind: 'network'; detail: string }
  | { kind: 'connack'; reasonCode: number }
  | { kind: 'tls-certificate'; detail: string }
  | { kind: 'server-disconnect'; reasonCode: number }
  | { kind: 'lost'; detail: string };

export type SessionState =
  'connecting' | 'online' | 'backoff' | 'offline' | 'quota-wait' | 'certificate-renewal' | 'stopped';

export interface NextAttempt {
  state: SessionState;
  delayMs: number;
  /** Whether this outcome counts towards offlineAfterFailures. */
  countsAsFailure: boolean;
}

/** CONNACK / DISCONNECT codes that say our credentials are not accepted: retrying soon cannot help. */
const CREDENTIAL_CODES = new Set([0x86, 0x87, 0x8a, 0x8c]);
const QUOTA = 0x97;

/**
 * `failures` counts failed attempts in a row including this one (0 when a working connection was
 * lost: the first retry then waits baseMs). `random` returns [0, 1).
 */
export function nextAttempt(
  outcome: ConnectOutcome,
  failures: number,
  s: ReconnectSettings,
  random: () => number,
): NextAttempt {
  const code = outcome.kind === 'connack' || outcome.kind === 'server-disconnect' ? outcome.reasonCode : null;
  if (code === QUOTA)
    return { state: 'quota-wait', delayMs: s.quotaWaitMs + random() * s.quotaJitterMs, countsAsFailure: false };
  if (outcome.kind === 'tls-certificate' || (code !== null && CREDENTIAL_CODES.has(code))) {
    // No hot loop: a renewed certificate (issue 6) or a fixed policy is picked up at the slow retry.
    return { state: 'certificate-renewal', delayMs: s.offlineRetryMs, countsAsFailure: false };
  }
  const n = Math.max(1, failures);
  if (n > s.offlineAfterFailures) return { state: 'offline', delayMs: s.offlineRetryMs, countsAsFailure: true };
  return { state: 'backoff', delayMs: backoffDelayMs(n, s, random), countsAsFailure: true };
}

/** TLS errors that mean our certificate or key is refused (as opposed to a network fault). */
export function isCertificateError(err: Error & { code?: unknown }): boolean {
  const code = typeof err.code === 'string' ? err.code : '';
  return /CERT|SSLV3_ALERT_(CERTIFICATE|BAD_CERTIFICATE|UNKNOWN_CA|HANDSHAKE_FAILURE)|TLSV1_ALERT_(UNKNOWN_CA|ACCESS_DENIED)|KEY_VALUES_MISMATCH/.test(
    code,
  );
}
