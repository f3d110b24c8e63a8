import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectRoot } from '../core/project-root.js';

const cli = join(projectRoot(), 'dist', 'app', 'cli.js');
const dbc = join(projectRoot(), 'drivers', 'reference-vehicle', 'v2c-reference.dbc');
const run = (args: string[], input?: string) =>
  spawnSync(process.execPath, [cli, ...args], { input, encoding: 'utf8' });

t.test('decode prints one JSON object per line: frames, signals and errors', async (t) => {
  const input = [
    '(1700000000.250000) can0 1F0#0F3A0000',
    '(1700000000.260000) can0 18FF4A17#0173550000000000',
    '(1700000000.270000) can0 1F0#0F3A000000000000',
    '(1700000000.280000) can0 7FF#00',
    '(1700000000.290000) can0 1G0#00',
    '',
    '  can0  1F0   [4]  01 3A 00 00',
  ].join('\n');
  const r = run(['decode', '--dbc', dbc, '-'], input);
  t.equal(r.status, 0, r.stderr);
  const lines = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  t.same(lines[0], {
    t: 1700000000.25,
    bus: 'can0',
    id: 0x1f0,
    extended: false,
    name: 'TCM_Transmission',
    signals: { GearPosition: 'Reverse', TransOilTemp: 18, TorqueConverterLocked: 0 },
  });
  t.same(lines[1], {
    t: 1700000000.26,
    bus: 'can0',
    id: 0x18ff4a17,
    extended: true,
    name: 'TPMS_Status',
    signals: { TyreIndex: 'FrontRight', TyrePressureFR: 230, TyreTempFR: 45 },
  });
  t.match(lines[2]?.error, /^wrong-length: TCM_Transmission/);
  t.equal(lines[2]?.line, '(1700000000.270000) can0 1F0#0F3A000000000000');
  t.match(lines[3]?.error, /^unknown-id/);
  t.match(lines[4]?.error, /^non-hex/);
  t.same(lines[5], {
    t: null,
    bus: 'can0',
    id: 0x1f0,
    extended: false,
    name: 'TCM_Transmission',
    signals: { GearPosition: 'First', TransOilTemp: 18, TorqueConverterLocked: 0 },
  });
  t.equal(lines.length, 6, 'blank lines print nothing');
});

t.test('decode without a DBC prints the frames; SLCAN input', async (t) => {
  const r = run(
    ['decode', '--format', 'slcan', '-'],
    't1F040F3A0000\rb12390102030405060708090A0B0C\r\x07\rt12X0\r'.replace(/\r/g, '\n'),
  );
  t.equal(r.status, 0, r.stderr);
  const lines = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  t.same(lines[0], {
    t: null,
    bus: null,
    id: 0x1f0,
    extended: false,
    rtr: false,
    fd: false,
    brs: false,
    data: '0F3A0000',
  });
  t.same(lines[1], {
    t: null,
    bus: null,
    id: 0x123,
    extended: false,
    rtr: false,
    fd: true,
    brs: true,
    data: '0102030405060708090A0B0C',
  });
  t.match(lines[2]?.error, /^unknown-command/);
  t.match(lines[3]?.error, /^non-hex/);
});

t.test('a corrupt DBC or a bad option exits non-zero with one clear line', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'v2c-dbc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bad = join(dir, 'bad.dbc');
  writeFileSync(bad, 'VERSION ""\nBO_ 1 M: 8 ECU\n SG_ S : 0|8@1+ (1,0) [0|0 "" ECU\n');
  const r = run(['decode', '--dbc', bad, '-'], '');
  t.equal(r.status, 1);
  t.equal(
    r.stderr.trim(),
    `v2c-gateway: ${bad}:3: no usable message (BO_) in the file; 1 problem(s), the first: ${bad}:3: expected ']', found string ""; message M (0x1) refused`,
  );
  // One broken message among good ones: decoded with the rest, the skip said on stderr.
  const partial = join(dir, 'partial.dbc');
  writeFileSync(
    partial,
    'VERSION ""\nBO_ 1 M: 8 ECU\n SG_ S : 0|8@1+ (1,0) [0|0 "" ECU\nBO_ 2 N: 1 ECU\n SG_ T : 0|8@1+ (1,0) [0|0] "" ECU\n',
  );
  const p = run(['decode', '--dbc', partial, '-'], '(1.0) can0 002#2A\n');
  t.equal(p.status, 0);
  t.match(p.stdout, /"name":"N","signals":\{"T":42\}/);
  t.equal(p.stderr.trim(), `v2c-gateway: dbc: ${partial}:3: expected ']', found string ""; message M (0x1) refused`);
  const u = run(['decode', '--format', 'asc', '-'], '');
  t.equal(u.status, 2);
  t.match(u.stderr, /--format asc: expected candump or slcan/);
  const m = run(['decode', '--dbc', join(dir, 'missing.dbc'), '-'], '');
  t.equal(m.status, 1);
  t.match(m.stderr, /cannot read DBC .*missing\.dbc/);
});
