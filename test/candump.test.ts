import t from 'tap';
import { MalformedLine } from '../drivers/can-frame.js';
import { formatCandumpLog, parseCandumpLine } from '../drivers/candump.js';
import { frameView } from './helpers.js';

const f = (id: number, data: string, extra: Record<string, unknown> = {}) => ({
  id,
  extended: false,
  rtr: false,
  fd: false,
  brs: false,
  error: false,
  data,
  bus: 'can0',
  tsWall: null as number | null,
  ...extra,
});

const rows: Array<[string, ReturnType<typeof f> | string | null]> = [
  ['(1436509052.249713) can0 123#11223344', f(0x123, '11223344', { tsWall: 1436509052.249713 })],
  ['(1436509052.249713) vcan1 123#', f(0x123, '', { bus: 'vcan1', tsWall: 1436509052.249713 })],
  ['(0.000001) can0 12345678#DEADBEEF', f(0x12345678, 'DEADBEEF', { extended: true, tsWall: 0.000001 })],
  ['(0.5) can0 00000123#01', f(0x123, '01', { extended: true, tsWall: 0.5 })],
  ['(1.0) can0 123#R', f(0x123, '', { rtr: true, tsWall: 1 })],
  ['(1.0) can0 123#R4', f(0x123, '00000000', { rtr: true, tsWall: 1 })],
  ['(1.0) can0 123##1' + 'AA'.repeat(12), f(0x123, 'AA'.repeat(12), { fd: true, brs: true, tsWall: 1 })],
  ['(1.0) can0 123##0' + '01'.repeat(64), f(0x123, '01'.repeat(64), { fd: true, tsWall: 1 })],
  ['(1.0) can0 20000080#0000000000000000', f(0x80, '0000000000000000', { error: true, tsWall: 1 })],
  ['(1.0) can0 123#1122334455667788_9', f(0x123, '1122334455667788', { tsWall: 1 })],
  ['  can0  123   [8]  11 22 33 44 55 66 77 88', f(0x123, '1122334455667788')],
  ['  can0  1FFFFFFF   [2]  AB CD', f(0x1fffffff, 'ABCD', { extended: true })],
  ['  can0  123   [0] ', f(0x123, '')],
  ['  can0  123   [4]  remote request', f(0x123, '00000000', { rtr: true })],
  ['  can0  123  [12]  00 01 02 03 04 05 06 07 08 09 0A 0B', f(0x123, '000102030405060708090A0B', { fd: true })],
  [' (1436509052.249713)  can1  7FF   [1]  FF', f(0x7ff, 'FF', { bus: 'can1', tsWall: 1436509052.249713 })],
  ['  can0  20000004   [8]  00 04 00 00 00 00 00 00   ERRORFRAME', f(0x4, '0004000000000000', { error: true })],
  ['', null],
  ['# comment', null],
  ['   ', null],
  ['(1.0) can0 12G#11', 'non-hex'],
  ['(1.0) can0 800#11', 'id-out-of-range'],
  ['(1.0) can0 4FFFFFFF#11', 'id-out-of-range'],
  ['(1.0) can0 1234#11', 'bad-syntax'],
  ['(1.0) can0 123#112', 'dlc-data-mismatch'],
  ['(1.0) can0 123#112233445566778899', 'bad-dlc'],
  ['(1.0) can0 123##0' + '00'.repeat(10), 'bad-dlc'],
  ['(1.0) can0 123##X00', 'non-hex'],
  ['(1.0) can0 123#ZZ', 'non-hex'],
  ['(1.0) can0 123#R9', 'bad-dlc'],
  ['(abc) can0 123#11', 'bad-timestamp'],
  ['(1.0) can0', 'too-short'],
  ['  can0  123   [9]  00 00 00 00 00 00 00 00 00', 'bad-dlc'],
  ['  can0  123   [4]  11 22', 'dlc-data-mismatch'],
  ['  can0  123   [2]  1G 22', 'non-hex'],
  ['  can0  123   8  11', 'bad-syntax'],
  ['x'.repeat(600), 'too-long'],
];

t.test('parseCandumpLine table', async (t) => {
  for (const [line, expected] of rows) {
    const got = parseCandumpLine(line);
    const label = JSON.stringify(line.slice(0, 50));
    if (expected === null) t.equal(got, null, `${label} carries nothing`);
    else if (typeof expected === 'string') {
      t.ok(got instanceof MalformedLine, `${label} is malformed`);
      t.equal((got as MalformedLine).code, expected, `${label} → ${expected}: ${(got as MalformedLine).reason}`);
    } else {
      t.notOk(got instanceof MalformedLine, `${label} parses: ${got instanceof MalformedLine ? got.reason : ''}`);
      t.same(frameView(got as never), expected, label);
    }
  }
});

t.test("a logged time becomes the frame time; otherwise the caller's", async (t) => {
  const logged = parseCandumpLine('(12.5) can0 123#00', 99);
  t.equal((logged as { tsMono: number }).tsMono, 12500);
  const screen = parseCandumpLine('  can0  123   [1]  00', 99);
  t.equal((screen as { tsMono: number }).tsMono, 99);
});

t.test('formatCandumpLog round-trips', async (t) => {
  for (const [line, expected] of rows) {
    if (expected === null || typeof expected === 'string') continue;
    const parsed = parseCandumpLine(line) as never as Parameters<typeof formatCandumpLog>[0];
    const again = parseCandumpLine(formatCandumpLog(parsed, 7.25));
    t.same(
      { ...frameView(again as never), tsWall: null },
      { ...frameView(parsed), tsWall: null },
      `round trip ${JSON.stringify(line.slice(0, 40))}`,
    );
  }
});
