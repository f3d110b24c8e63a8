// The credential checks, table-driven: each row feeds one bad (or good) key/certificate/CA set
// made by the PKI code and asserts the problem codes and the words a technician reads.
import t from 'tap';
import { generateKeyPairSync } from 'node:crypto';
import {
  brokerUrlProblem,
  checkCredentials,
  keyModeProblem,
  type CredentialProblemCode,
  type CredentialTexts,
} from '../provisioning/credential-checks.js';
import {
  createCsr,
  daysFrom,
  generateEcKey,
  issueCertificate,
  readCsr,
  type KeyAndCertificate,
} from '../provisioning/pki.js';

const VIN = 'V2CTEST0000000001';
const now = new Date();
const files = { key: 'device.key', cert: 'device.crt', ca: 'ca.crt' };

async function ca(commonName: string, issuer?: KeyAndCertificate): Promise<KeyAndCertificate> {
  const keyPem = await generateEcKey();
  return {
    keyPem,
    certPem: await issueCertificate({
      commonName,
      profile: 'ca',
      subjectKey: { keyPem },
      ...(issuer ? { issuer } : {}),
      notBefore: daysFrom(now, -10),
      notAfter: daysFrom(now, 3650),
    }),
  };
}

async function device(
  issuer: KeyAndCertificate,
  o: { cn?: string; from?: number; to?: number; keyPem?: string } = {},
): Promise<KeyAndCertificate> {
  const keyPem = o.keyPem ?? (await generateEcKey());
  return {
    keyPem,
    certPem: await issueCertificate({
      commonName: o.cn ?? VIN,
      profile: 'client',
      subjectKey: { keyPem },
      issuer,
      notBefore: daysFrom(now, o.from ?? -1),
      notAfter: daysFrom(now, o.to ?? 365),
    }),
  };
}

const pem = (type: 'rsa' | 'ec', o: { modulusLength?: number; namedCurve?: string }): string => {
  const { privateKey } =
    type === 'rsa'
      ? generateKeyPairSync('rsa', { modulusLength: o.modulusLength ?? 2048 })
      : generateKeyPairSync('ec', { namedCurve: o.namedCurve ?? 'prime256v1' });
  return privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
};

t.test('checkCredentials: one row per fault, every problem named', async (t) => {
  const root = await ca('Fleet Root');
  const intermediate = await ca('Fleet Issuing CA', root);
  const stranger = await ca('Somebody Else');
  const good = await device(root);
  const other = await device(root);
  const viaIntermediate = await device(intermediate);
  const rsa2048 = await device(root, { keyPem: pem('rsa', { modulusLength: 2048 }) });
  const rsa1024 = await device(root, { keyPem: pem('rsa', { modulusLength: 1024 }) });
  const p384 = await device(root, { keyPem: pem('ec', { namedCurve: 'secp384r1' }) });

  const rows: {
    name: string;
    texts: CredentialTexts;
    margin?: number;
    codes: CredentialProblemCode[];
    message?: RegExp;
  }[] = [
    { name: 'valid EC P-256', texts: { ...good, caPem: root.certPem }, codes: [] },
    { name: 'valid RSA 2048', texts: { ...rsa2048, caPem: root.certPem }, codes: [] },
    {
      name: 'chain through an intermediate in the CA bundle',
      texts: { ...viaIntermediate, caPem: root.certPem + intermediate.certPem },
      codes: [],
    },
    {
      name: 'intermediate sent with the certificate',
      texts: {
        keyPem: viaIntermediate.keyPem,
        certPem: viaIntermediate.certPem + intermediate.certPem,
        caPem: root.certPem,
      },
      codes: [],
    },
    {
      name: 'intermediate missing',
      texts: { ...viaIntermediate, caPem: root.certPem },
      codes: ['CHAIN_UNTRUSTED'],
      message: /issuer "CN=Fleet Issuing CA"/,
    },
    {
      name: 'key of another certificate',
      texts: { keyPem: other.keyPem, certPem: good.certPem, caPem: root.certPem },
      codes: ['KEY_MISMATCH'],
      message: /does not belong to the certificate device\.crt/,
    },
    {
      name: 'unknown CA',
      texts: { ...(await device(stranger)), caPem: root.certPem },
      codes: ['CHAIN_UNTRUSTED'],
      message: /does not chain to the CA bundle ca\.crt/,
    },
    {
      name: 'another vehicle',
      texts: { ...(await device(root, { cn: 'V2CTEST0000000002' })), caPem: root.certPem },
      codes: ['CN_MISMATCH'],
      message: /CN is "V2CTEST0000000002"; expected the vehicle id "V2CTEST0000000001"/,
    },
    {
      name: 'expired',
      texts: { ...(await device(root, { from: -400, to: -2 })), caPem: root.certPem },
      codes: ['CERT_EXPIRED'],
      message: /expired on .* \(2 day\(s\) ago\)/,
    },
    {
      name: 'expiring within the margin',
      texts: { ...(await device(root, { to: 3 })), caPem: root.certPem },
      margin: 7,
      codes: ['CERT_EXPIRING'],
      message: /in 3\.0 days; expected at least 7 days/,
    },
    {
      name: 'expiring, no margin asked',
      texts: { ...(await device(root, { to: 3 })), caPem: root.certPem },
      margin: 0,
      codes: [],
    },
    {
      name: 'not yet valid',
      texts: { ...(await device(root, { from: 2, to: 300 })), caPem: root.certPem },
      codes: ['CERT_NOT_YET_VALID'],
      message: /check the system clock/,
    },
    {
      name: 'RSA 1024',
      texts: { ...rsa1024, caPem: root.certPem },
      codes: ['KEY_TOO_SMALL'],
      message: /1024 bits; expected at least 2048/,
    },
    {
      name: 'EC P-384',
      texts: { ...p384, caPem: root.certPem },
      codes: ['KEY_TYPE'],
      message: /EC secp384r1; expected EC P-256/,
    },
    {
      name: 'CA certificate given as the device certificate',
      texts: { keyPem: root.keyPem, certPem: root.certPem, caPem: root.certPem },
      codes: ['CN_MISMATCH', 'NOT_CLIENT_CERTIFICATE'],
    },
    {
      name: 'garbage key',
      texts: { keyPem: 'not a key', certPem: good.certPem, caPem: root.certPem },
      codes: ['KEY_UNREADABLE'],
      message: /not a PEM private key/,
    },
    {
      name: 'garbage certificate',
      texts: { keyPem: good.keyPem, certPem: 'hello', caPem: root.certPem },
      codes: ['CERT_UNREADABLE'],
      message: /no PEM certificate/,
    },
    {
      name: 'truncated certificate',
      texts: {
        keyPem: good.keyPem,
        certPem: good.certPem.slice(0, 120) + good.certPem.slice(-26),
        caPem: root.certPem,
      },
      codes: ['CERT_UNREADABLE'],
    },
    { name: 'empty CA bundle', texts: { ...good, caPem: '' }, codes: ['CA_UNREADABLE'] },
  ];
  for (const row of rows) {
    const result = checkCredentials(row.texts, files, { vehicleId: VIN, now, expiringWithinDays: row.margin ?? 7 });
    t.same(
      result.problems.map((p) => p.code).sort(),
      [...row.codes].sort(),
      `${row.name}: ${row.codes.join(', ') || 'accepted'}`,
    );
    if (row.message)
      t.match(
        result.problems.map((p) => p.message).join('\n'),
        row.message,
        `${row.name}: the message says what is wrong`,
      );
    if (row.codes.length === 0) t.equal(result.facts?.commonName, VIN, `${row.name}: facts for the summary`);
  }
});

t.test('key file modes: group/other bits refused with the chmod to run', async (t) => {
  for (const [mode, refused] of [
    [0o600, false],
    [0o400, false],
    [0o640, true],
    [0o644, true],
    [0o604, true],
  ] as const) {
    const problem = keyModeProblem(0o100000 | mode, '/etc/v2c-gateway/current/device.key');
    t.equal(problem !== null, refused, `mode ${mode.toString(8)}`);
    if (problem)
      t.match(problem.message, `(mode 0${mode.toString(8)}); run: chmod 600 /etc/v2c-gateway/current/device.key`);
  }
});

t.test('broker URL: mqtts://host:port only', async (t) => {
  const rows: [string, RegExp | null][] = [
    ['mqtts://broker.example.com:8883', null],
    ['mqtts://127.0.0.1:8883/', null],
    ['mqtt://broker.example.com:1883', /uses mqtt:\/\/; expected mqtts:\/\/host:port \(mutual TLS\)/],
    ['https://broker.example.com', /uses https:\/\//],
    ['mqtts://broker.example.com:8883/telemetry', /no path, query or user/],
    ['mqtts://user@broker.example.com:8883', /no path, query or user/],
    ['broker.example.com:8883', /uses broker\.example\.com:\/\//],
    ['not a url', /is not a URL/],
  ];
  for (const [url, expected] of rows) {
    const problem = brokerUrlProblem(url);
    if (expected === null) t.equal(problem, null, `${url} accepted`);
    else t.match(problem?.message ?? '', expected, `${url} refused`);
  }
});

t.test('CSR round trip: the subject and key survive, a tampered CSR is refused', async (t) => {
  const keyPem = await generateEcKey();
  const csr = await createCsr(keyPem, VIN);
  const info = await readCsr(csr);
  t.equal(info.commonName, VIN);
  const root = await ca('Fleet Root');
  const certPem = await issueCertificate({
    commonName: info.commonName,
    profile: 'client',
    subjectKey: info,
    issuer: root,
    notBefore: now,
    notAfter: daysFrom(now, 30),
  });
  t.same(
    checkCredentials({ keyPem, certPem, caPem: root.certPem }, files, {
      vehicleId: VIN,
      now: daysFrom(now, 0.001),
      expiringWithinDays: 7,
    }).problems,
    [],
    'the signed CSR makes a certificate for the same key',
  );
  const body = csr.split('\n');
  const i = Math.floor(body.length / 2);
  body[i] = (body[i] ?? '').replace(/[A-Za-z]/, (c) => (c === 'A' ? 'B' : 'A'));
  await t.rejects(readCsr(body.join('\n')), 'a tampered CSR does not verify or parse');
});
