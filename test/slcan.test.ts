import t from 'tap';
import { PassThrough } from 'node:stream';
import { ReadlineParser } from '@serialport/parser-readline';
import { MalformedLine } from '../drivers/can-frame.js';
import { formatSlcanFrame, parseSlcanLine, slcanBitrateCode } from '../drivers/slcan.js';
import { frame, frameView } from './helpers.js';

const ok = (id: number, data: string, extra: Record<string, unknown> = {}) => ({
  id,
  extended: false,
  rtr: false,
  fd: false,
  brs: false,
  error: false,
  data,
  bus: null,
  tsWall: null,
  ...extra,
});

const rows: Array<[string, ReturnType<typeof ok> | string | null]> = [
  ['t1230', ok(0x123, '')],
  ['t7FF8DEADBEEF00112233', ok(0x7ff, 'DEADBEEF00112233')],
  ['t12330A0B0C', ok(0x123, '0A0B0C')],
  ['t12330a0b0c', ok(0x123, '0A0B0C')],
  ['t12330A0B0C1F40', ok(0x123, '0A0B0C')], // with adapter timestamp 8000 ms
  ['T1FFFFFFF2CAFE', ok(0x1fffffff, 'CAFE', { extended: true })],
  ['r1234', ok(0x123, '00000000', { rtr: true })],
  ['R000001230', ok(0x123, '', { extended: true, rtr: true })],
  ['d1239' + '11'.repeat(12), ok(0x123, '11'.repeat(12), { fd: true })],
  ['b123F' + 'AB'.repeat(64), ok(0x123, 'AB'.repeat(64), { fd: true, brs: true })],
  ['D12345678D' + '00'.repeat(32), ok(0x12345678, '00'.repeat(32), { extended: true, fd: true })],
  ['B0000000A8' + '01'.repeat(8) + 'EA5F', ok(0xa, '01'.repeat(8), { extended: true, fd: true, brs: true })],
  ['', null],
  ['z', null],
  ['Z', null],
  ['V1013', null],
  ['NA123', null],
  ['F00', null],
  ['t12X0', 'non-hex'],
  ['tfff0', 'id-out-of-range'],
  ['T200000000', 'id-out-of-range'],
  ['t1239' + '00'.repeat(9), 'bad-dlc'],
  ['t123G', 'bad-dlc'],
  ['t1232AA', 'dlc-data-mismatch'],
  ['t1232AABBCC', 'dlc-data-mismatch'],
  ['t1231ZZ', 'non-hex'],
  ['t1231AAZZZZ', 'non-hex'],
  ['t1231AAFFFF', 'bad-timestamp'],
  ['t12', 'too-short'],
  ['T1234', 'too-short'],
  ['x123', 'unknown-command'],
  ['\x07t1230', 'unknown-command'],
  ['t123F' + '00'.repeat(70), 'too-long'],
];

t.test('parseSlcanLine table', async (t) => {
  for (const [line, expected] of rows) {
    const got = parseSlcanLine(line);
    if (expected === null) t.equal(got, null, `${JSON.stringify(line)} is an adapter reply`);
    else if (typeof expected === 'string') {
      t.ok(got instanceof MalformedLine, `${JSON.stringify(line.slice(0, 30))} is malformed`);
      t.equal((got as MalformedLine).code, expected, `${JSON.stringify(line.slice(0, 30))} → ${expected}`);
      t.ok((got as MalformedLine).reason.length > 10, 'reason explains');
      t.equal((got as MalformedLine).line, line, 'error keeps the input line');
    } else {
      t.notOk(
        got instanceof MalformedLine,
        `${line.slice(0, 30)} parses: ${got instanceof MalformedLine ? got.reason : ''}`,
      );
      t.same(frameView(got as never), expected, line.slice(0, 30));
    }
  }
});

t.test('formatSlcanFrame writes upper-case hex and round-trips every parsable row', async (t) => {
  t.equal(formatSlcanFrame(frame(0x1ab, 'deadbeef')), 't1AB4DEADBEEF\r');
  t.equal(formatSlcanFrame(frame(0x1ab, 'deadbeef'), 61_234), 't1AB4DEADBEEF04D2\r', 'timestamp wraps at 60 s');
  t.equal(formatSlcanFrame(frame(0x12345, '', { extended: true, rtr: true, data: new Uint8Array(3) })), 'R000123453\r');
  t.equal(formatSlcanFrame(frame(0x10, '00'.repeat(64), { fd: true, brs: true })), 'b010F' + '00'.repeat(64) + '\r');
  t.throws(() => formatSlcanFrame(frame(0x10, '00'.repeat(12))), RangeError, '12 bytes needs CAN FD');
  for (const [line, expected] of rows) {
    if (expected === null || typeof expected === 'string') continue;
    const parsed = parseSlcanLine(line);
    const again = parseSlcanLine(formatSlcanFrame(parsed as never).slice(0, -1));
    t.same(frameView(again as never), frameView(parsed as never), `round trip ${line.slice(0, 20)}`);
  }
});

t.test('bitrate codes', async (t) => {
  t.equal(slcanBitrateCode(500000), 'S6');
  t.equal(slcanBitrateCode(1000000), 'S8');
  t.equal(slcanBitrateCode(33333), undefined);
});

t.test('ReadlineParser reassembles lines split across serial chunks', async (t) => {
  const parser = new ReadlineParser({ delimiter: '\r', encoding: 'latin1' });
  const lines: string[] = [];
  parser.on('data', (l: string) => lines.push(l));
  const src = new PassThrough();
  src.pipe(parser);
  for (const chunk of ['t12', '32AB', 'CD\rT0000', '0001', '0\r\x07', '\rt7FF0\r'])
    src.write(Buffer.from(chunk, 'latin1'));
  src.end();
  await new Promise((r) => parser.once('end', r));
  t.same(lines, ['t1232ABCD', 'T000000010', '\x07', 't7FF0']);
  t.same(
    lines.map((l) => {
      const p = parseSlcanLine(l);
      return p === null || p instanceof MalformedLine ? null : p.id;
    }),
    [0x123, 1, null, 0x7ff],
  );
});
