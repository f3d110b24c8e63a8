// The checks a device's key, certificate and CA bundle must pass, at setup and at every start:
// pure functions of the PEM texts and the time, each problem a typed value naming the file and
// what was expected, so a technician on a bench reads what to fix.
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';

export type CredentialProblemCode =
  | 'KEY_UNREADABLE'
  | 'CERT_UNREADABLE'
  | 'CA_UNREADABLE'
  | 'KEY_TYPE'
  | 'KEY_TOO_SMALL'
  | 'KEY_MISMATCH'
  | 'KEY_PERMISSIONS'
  | 'CHAIN_UNTRUSTED'
  | 'CN_MISMATCH'
  | 'NOT_CLIENT_CERTIFICATE'
  | 'CERT_NOT_YET_VALID'
  | 'CERT_EXPIRED'
  | 'CERT_EXPIRING'
  | 'BROKER_URL';

/** One thing wrong with the credentials, with the file it is about. */
export interface CredentialProblem {
  code: CredentialProblemCode;
  file: string;
  message: string;
}

/** Credentials that cannot be used; `problems` holds every check that failed, not only the first. */
export class CredentialError extends Error {
  readonly code: CredentialProblemCode;
  constructor(readonly problems: CredentialProblem[]) {
    super(problems.map((p) => `${p.file}: ${p.message}`).join('\n'));
    this.name = 'CredentialError';
    this.code = problems[0]?.code ?? 'CERT_UNREADABLE';
  }
}

export interface CredentialFiles {
  key: string;
  cert: string;
  ca: string;
}

export interface CredentialTexts {
  keyPem: string;
  certPem: string;
  caPem: string;
}

export interface CheckOptions {
  vehicleId: string;
  now: Date;
  /** A certificate ending within this many days is a problem at setup (the running gateway only warns). */
  expiringWithinDays: number;
}

/** What the checks learned about valid credentials (for the setup summary and the metrics). */
export interface CertificateFacts {
  subject: string;
  commonName: string;
  issuer: string;
  notBefore: Date;
  notAfter: Date;
  daysToExpiry: number;
  keyDescription: string;
  fingerprint256: string;
}

export interface CheckResult {
  problems: CredentialProblem[];
  facts: CertificateFacts | null;
}

const DAY_MS = 86_400_000;
const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Every certificate in a PEM bundle, in order. */
export function parseCertificates(pem: string): X509Certificate[] {
  return (pem.match(PEM_CERT) ?? []).map((block) => new X509Certificate(block));
}

/** The subject's CN (Node prints the subject one attribute per line). */
export function commonName(cert: X509Certificate): string {
  return (
    cert.subject
      .split('\n')
      .find((l) => l.startsWith('CN='))
      ?.slice(3) ?? ''
  );
}

/** "EC P-256" / "RSA 2048", and whether the setup accepts it (ECC P-256, or RSA of 2048 bits or more). */
export function describeKey(key: KeyObject): { description: string; problem: Omit<CredentialProblem, 'file'> | null } {
  const d = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec') {
    const curve = d.namedCurve === 'prime256v1' ? 'P-256' : (d.namedCurve ?? 'unknown curve');
    return {
      description: `EC ${curve}`,
      problem:
        curve === 'P-256'
          ? null
          : { code: 'KEY_TYPE', message: `the key is EC ${curve}; expected EC P-256 (or RSA of at least 2048 bits)` },
    };
  }
  if (key.asymmetricKeyType === 'rsa') {
    const bits = d.modulusLength ?? 0;
    return {
      description: `RSA ${bits}`,
      problem:
        bits >= 2048
          ? null
          : { code: 'KEY_TOO_SMALL', message: `the RSA key has ${bits} bits; expected at least 2048` },
    };
  }
  return {
    description: key.asymmetricKeyType ?? 'unknown',
    problem: {
      code: 'KEY_TYPE',
      message: `the key is ${key.asymmetricKeyType ?? 'of an unknown type'}; expected EC P-256 (or RSA of at least 2048 bits)`,
    },
  };
}

/**
 * Walks from the leaf to a certificate of the CA bundle, through intermediates from either file;
 * each link must name and be signed by the next, and be valid at `now`. Returns why it fails, or null.
 */
export function chainProblem(
  leaf: X509Certificate,
  intermediates: X509Certificate[],
  anchors: X509Certificate[],
  now: Date,
): string | null {
  const pool = [...intermediates, ...anchors];
  let current = leaf;
  for (let depth = 0; depth < 8; depth++) {
    const issuer = pool.find((c) => current.checkIssued(c) && current.verify(c.publicKey));
    if (issuer === undefined)
      return `no certificate in the CA bundle issued "${current.subject.replace(/\n/g, ', ')}" (issuer "${current.issuer.replace(/\n/g, ', ')}")`;
    if (!issuer.ca)
      return `"${issuer.subject.replace(/\n/g, ', ')}" signed the certificate but is not a CA certificate`;
    if (now < new Date(issuer.validFrom) || now > new Date(issuer.validTo))
      return `the CA certificate "${issuer.subject.replace(/\n/g, ', ')}" is not valid now (valid ${issuer.validFrom} to ${issuer.validTo})`;
    if (anchors.some((a) => a.fingerprint256 === issuer.fingerprint256)) return null;
    current = issuer;
  }
  return 'the chain is longer than 8 certificates';
}

/** Runs every check; a file that cannot be parsed stops only the checks that need it. */
export function checkCredentials(texts: CredentialTexts, files: CredentialFiles, options: CheckOptions): CheckResult {
  const problems: CredentialProblem[] = [];
  const problem = (file: string, code: CredentialProblemCode, message: string): void => {
    problems.push({ code, file, message });
  };

  let key: KeyObject | null = null;
  try {
    key = createPrivateKey(texts.keyPem);
  } catch (err) {
    problem(files.key, 'KEY_UNREADABLE', `not a PEM private key (${(err as Error).message})`);
  }
  const bundle = (
    pem: string,
    file: string,
    code: 'CERT_UNREADABLE' | 'CA_UNREADABLE',
    what: string,
  ): X509Certificate[] => {
    try {
      const certs = parseCertificates(pem);
      if (certs.length === 0) problem(file, code, `no PEM certificate (-----BEGIN CERTIFICATE-----) in the ${what}`);
      return certs;
    } catch (err) {
      problem(file, code, `not a valid PEM ${what} (${(err as Error).message})`);
      return [];
    }
  };
  const certs = bundle(texts.certPem, files.cert, 'CERT_UNREADABLE', 'certificate file');
  const anchors = bundle(texts.caPem, files.ca, 'CA_UNREADABLE', 'CA bundle');

  const leaf = certs[0];
  let keyDescription = '';
  if (key !== null) {
    const { description, problem: keyProblem } = describeKey(key);
    keyDescription = description;
    if (keyProblem !== null) problem(files.key, keyProblem.code, keyProblem.message);
  }
  if (leaf === undefined) return { problems, facts: null };

  if (key !== null && !leaf.checkPrivateKey(key)) {
    problem(
      files.key,
      'KEY_MISMATCH',
      `the private key does not belong to the certificate ${files.cert} (certificate key: ${describeKey(leaf.publicKey).description}, this key: ${keyDescription}); expected the key the CSR was made with`,
    );
  }
  if (anchors.length > 0) {
    const why = chainProblem(leaf, certs.slice(1), anchors, options.now);
    if (why !== null)
      problem(files.cert, 'CHAIN_UNTRUSTED', `the certificate does not chain to the CA bundle ${files.ca}: ${why}`);
  }
  const cn = commonName(leaf);
  if (cn !== options.vehicleId)
    problem(
      files.cert,
      'CN_MISMATCH',
      `the certificate's subject CN is "${cn}"; expected the vehicle id "${options.vehicleId}"`,
    );
  if (leaf.ca)
    problem(files.cert, 'NOT_CLIENT_CERTIFICATE', 'this is a CA certificate; expected the device (client) certificate');
  const notBefore = new Date(leaf.validFrom);
  const notAfter = new Date(leaf.validTo);
  const daysToExpiry = (notAfter.getTime() - options.now.getTime()) / DAY_MS;
  if (options.now < notBefore)
    problem(
      files.cert,
      'CERT_NOT_YET_VALID',
      `the certificate is valid only from ${notBefore.toISOString()} (check the system clock)`,
    );
  else if (daysToExpiry < 0)
    problem(
      files.cert,
      'CERT_EXPIRED',
      `the certificate expired on ${notAfter.toISOString()} (${Math.max(1, Math.floor(-daysToExpiry))} day(s) ago); a new one must be issued`,
    );
  else if (daysToExpiry < options.expiringWithinDays)
    problem(
      files.cert,
      'CERT_EXPIRING',
      `the certificate expires on ${notAfter.toISOString()}, in ${daysToExpiry.toFixed(1)} days; expected at least ${options.expiringWithinDays} days left`,
    );

  return {
    problems,
    facts: {
      subject: leaf.subject.replace(/\n/g, ', '),
      commonName: cn,
      issuer: leaf.issuer.replace(/\n/g, ', '),
      notBefore,
      notAfter,
      daysToExpiry,
      keyDescription,
      fingerprint256: leaf.fingerprint256,
    },
  };
}

/** File modes that let anyone but the owner read the key. */
export function keyModeProblem(mode: number, keyFile: string): CredentialProblem | null {
  if ((mode & 0o077) === 0) return null;
  return {
    code: 'KEY_PERMISSIONS',
    file: keyFile,
    message: `the private key is readable by group/others (mode ${(mode & 0o777).toString(8).padStart(4, '0')}); run: chmod 600 ${keyFile}`,
  };
}

/** The broker URL a gateway with mutual TLS needs. */
export function brokerUrlProblem(url: string): CredentialProblem | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { code: 'BROKER_URL', file: '--broker', message: `"${url}" is not a URL; expected mqtts://host:port` };
  }
  if (parsed.protocol !== 'mqtts:')
    return {
      code: 'BROKER_URL',
      file: '--broker',
      message: `"${url}" uses ${parsed.protocol.replace(/:$/, '')}://; expected mqtts://host:port (mutual TLS)`,
    };
  if (
    parsed.hostname === '' ||
    (parsed.pathname !== '' && parsed.pathname !== '/') ||
    parsed.username !== '' ||
    parsed.search !== ''
  ) {
    return {
      code: 'BROKER_URL',
      file: '--broker',
      message: `"${url}": expected mqtts://host:port with no path, query or user`,
    };
  }
  return null;
}
