// Making keys, CSRs and certificates: the device's own key and CSR (setup and renewal), and the
// bench PKI and test signer. Node's crypto can verify certificates but cannot build them, so the
// ASN.1 side is @peculiar/x509 on Node's WebCrypto; checking lives in credential-checks.ts.
// @peculiar/x509 resolves its algorithms through tsyringe, which needs the Reflect metadata polyfill.
import 'reflect-metadata';
import { createPrivateKey, createPublicKey, webcrypto, type KeyObject } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type SigningKeys = {
  privateKey: webcrypto.CryptoKey;
  publicKey: webcrypto.CryptoKey;
  algorithm: webcrypto.RsaHashedImportParams | (webcrypto.EcKeyImportParams & { hash: string });
};

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;

/** A private key and certificate, both PEM. */
export interface KeyAndCertificate {
  keyPem: string;
  certPem: string;
}

/** An ECC P-256 private key as PKCS#8 PEM (the device key DESIGN §7 asks for). */
export async function generateEcKey(): Promise<string> {
  const pair = await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
  const der = await webcrypto.subtle.exportKey('pkcs8', pair.privateKey);
  return pemFile(x509.PemConverter.encode(der, 'PRIVATE KEY'));
}

/** The WebCrypto pair of a PEM private key (EC P-256/384 or RSA), for signing with @peculiar/x509. */
async function cryptoKeys(keyPem: string): Promise<SigningKeys> {
  const key: KeyObject = createPrivateKey(keyPem);
  const details = key.asymmetricKeyDetails ?? {};
  let algorithm: SigningKeys['algorithm'];
  if (key.asymmetricKeyType === 'rsa') algorithm = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  else if (
    key.asymmetricKeyType === 'ec' &&
    (details.namedCurve === 'prime256v1' || details.namedCurve === 'secp384r1')
  ) {
    algorithm = { name: 'ECDSA', namedCurve: details.namedCurve === 'prime256v1' ? 'P-256' : 'P-384', hash: 'SHA-256' };
  } else
    throw new Error(`cannot sign with a ${key.asymmetricKeyType ?? 'unknown'} key ${details.namedCurve ?? ''}`.trim());
  const privateKey = await webcrypto.subtle.importKey(
    'pkcs8',
    key.export({ type: 'pkcs8', format: 'der' }),
    algorithm,
    true,
    ['sign'],
  );
  const publicKey = await webcrypto.subtle.importKey(
    'spki',
    createPublicKey(key).export({ type: 'spki', format: 'der' }),
    algorithm,
    true,
    ['verify'],
  );
  return { privateKey, publicKey, algorithm };
}

/** A PKCS#10 request with subject CN = `commonName`, signed by `keyPem`. */
export async function createCsr(keyPem: string, commonName: string): Promise<string> {
  const keys = await cryptoKeys(keyPem);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: [{ CN: [commonName] }],
    keys,
    signingAlgorithm: keys.algorithm,
    extensions: [new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true)],
  });
  return pemFile(csr.toString('pem'));
}

export interface CertificateRequestInfo {
  commonName: string;
  /** The request's public key, SPKI DER. */
  publicKeyDer: Buffer;
}

/** Parses a PEM CSR and checks its self-signature (proof the requester holds the key). */
export async function readCsr(csrPem: string): Promise<CertificateRequestInfo> {
  const csr = new x509.Pkcs10CertificateRequest(csrPem);
  if (!(await csr.verify())) throw new Error('the CSR signature does not verify');
  const cn = csr.subjectName.getField('CN')[0];
  if (cn === undefined) throw new Error('the CSR has no subject CN');
  return { commonName: cn, publicKeyDer: Buffer.from(csr.publicKey.rawData) };
}

export type CertificateProfile = 'ca' | 'server' | 'client';

export interface IssueOptions {
  commonName: string;
  profile: CertificateProfile;
  /** SPKI DER of the subject's key (from a CSR), or its PEM private key. */
  subjectKey: { publicKeyDer: Buffer } | { keyPem: string };
  /** The issuer; absent for a self-signed CA. */
  issuer?: KeyAndCertificate;
  notBefore: Date;
  notAfter: Date;
  /** Server certificates: DNS names and IP addresses for the subjectAltName. */
  dnsNames?: string[];
  ipAddresses?: string[];
}

/** Issues an X.509 v3 certificate with the extensions of its profile. */
export async function issueCertificate(o: IssueOptions): Promise<string> {
  const subjectPublicKey =
    'publicKeyDer' in o.subjectKey
      ? o.subjectKey.publicKeyDer
      : createPublicKey(o.subjectKey.keyPem).export({ type: 'spki', format: 'der' });
  const signer = await cryptoKeys(o.issuer?.keyPem ?? ('keyPem' in o.subjectKey ? o.subjectKey.keyPem : ''));
  const issuerCert = o.issuer === undefined ? null : new x509.X509Certificate(o.issuer.certPem);
  const subjectKeyPublic = await x509.PublicKey.create(subjectPublicKey);
  const extensions: x509.Extension[] = [await x509.SubjectKeyIdentifierExtension.create(subjectKeyPublic)];
  if (issuerCert !== null) extensions.push(await x509.AuthorityKeyIdentifierExtension.create(issuerCert.publicKey));
  if (o.profile === 'ca') {
    extensions.push(
      new x509.BasicConstraintsExtension(true, 1, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    );
  } else {
    extensions.push(
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([
        o.profile === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth,
      ]),
    );
    const names = [
      ...(o.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
      ...(o.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
    ];
    if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names));
  }
  const cert = await x509.X509CertificateGenerator.create({
    subject: [{ CN: [o.commonName] }],
    issuer: issuerCert?.subject ?? [{ CN: [o.commonName] }],
    publicKey: subjectPublicKey,
    signingKey: signer.privateKey,
    signingAlgorithm: signer.algorithm,
    notBefore: o.notBefore,
    notAfter: o.notAfter,
    extensions,
  });
  return pemFile(cert.toString('pem'));
}

/** PEM as files hold it: ending in a newline, so files concatenate into valid bundles. */
function pemFile(pem: string): string {
  return `${pem.trimEnd()}\n`;
}

/** `days` after (or, negative, before) `from`. */
export function daysFrom(from: Date, days: number): Date {
  return new Date(from.getTime() + days * DAY_MS);
}
