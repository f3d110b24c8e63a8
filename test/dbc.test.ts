import t from 'tap';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { DbcDecoder, DecodeError, type DecodedMessage } from '../drivers/dbc/decoder.js';
import { encodeMessage } from '../drivers/dbc/encoder.js';
import { DbcSyntaxError } from '../drivers/dbc/model.js';
import { parseDbc } from '../drivers/dbc/parser.js';
import { projectRoot } from '../gateway/project-root.js';
import { frame } from './helpers.js';

const HEADER = 'VERSION ""\n\nNS_ :\n\tCM_\n\tVAL_\n\nBS_:\n\nBU_: ECU\n\n';

// Cross-checks with published cases of established DBC tools. The first two are cantools'
// published test vectors for its "ExampleMessage" (big-endian, signed, scaled, value table).
const DBC = HEADER + `
BO_ 496 ExampleMessage: 8 ECU
 SG_ Temperature : 0|12@0- (0.01,250) [229.52|270.47] "degK" ECU
 SG_ AverageRadius : 6|6@0+ (0.1,0) [0|5] "m" ECU
 SG_ Enable : 7|1@0+ (1,0) [0|0] "-" ECU

BO_ 1024 DoubleMessage: 8 ECU
 SG_ Value : 0|64@1- (1,0) [0|0] "" ECU

BO_ 1025 FloatPair: 8 ECU
 SG_ First : 0|32@1- (1,0) [0|0] "" ECU
 SG_ Second : 32|32@1- (1,0) [0|0] "" ECU

BO_ 2148676694 MuxMessage: 8 ECU
 SG_ BIT_F m24 : 39|1@1+ (1,0) [0|0] "" ECU
 SG_ BIT_B m24 : 33|1@1+ (1,0) [0|0] "" ECU
 SG_ BIT_L m8 : 24|1@1+ (1,0) [0|0] "" ECU
 SG_ BIT_J m8 : 18|1@1+ (1,0) [0|0] "" ECU
 SG_ Multiplexor M : 2|6@1+ (1,0) [0|0] "" ECU

BO_ 1536 Wide: 16 ECU
 SG_ U64 : 0|64@1+ (1,0) [0|0] "" ECU
 SG_ S64 : 64|64@1- (1,0) [0|0] "" ECU

BO_ 1537 WideMotorola: 8 ECU
 SG_ BE64 : 7|64@0+ (1,0) [0|0] "" ECU

BO_ 1538 Wide48: 8 ECU
 SG_ S48 : 0|48@1- (0.5,1) [0|0] "" ECU

BO_ 1792 FdMessage: 64 ECU
 SG_ Head : 0|8@1+ (1,0) [0|255] "" ECU
 SG_ Tail : 496|16@1+ (0.1,-5) [0|0] "V" ECU
 SG_ TailBe : 487|16@0+ (1,0) [0|0] "" ECU

BO_ 496 ExampleMessageDup: 8 ECU

CM_ SG_ 496 Temperature "A comment spanning
two lines with a \\"quote\\".";
SIG_VALTYPE_ 1024 Value : 2;
SIG_VALTYPE_ 1025 First : 1;
SIG_VALTYPE_ 1025 Second : 1;
VAL_ 496 Enable 0 "Disabled" 1 "Enabled" ;
VAL_ 1538 S48 -1 "Minus one raw" ;
`.replace('BO_ 496 ExampleMessageDup: 8 ECU\n', '');

const db = parseDbc(DBC, 'cases.dbc');
const decoder = new DbcDecoder(db);
const signalsOf = (f: ReturnType<typeof frame>, choices = true): Record<string, unknown> => {
  const d = decoder.decode(f, choices);
  if (d instanceof DecodeError) throw new Error(d.reason);
  return (d as DecodedMessage).signals;
};
const le = (write: (b: Buffer) => void, size = 8): string => { const b = Buffer.alloc(size); write(b); return b.toString('hex'); };

t.test('published cantools vectors: big-endian, signed, scaled, value table', async (t) => {
  t.same(signalsOf(frame(496, 'c006e00000000000')), { Temperature: 250.55, AverageRadius: 3.2, Enable: 'Enabled' });
  t.same(signalsOf(frame(496, '0100200000000000')), { Temperature: 229.53, AverageRadius: 0, Enable: 'Disabled' });
  t.same(signalsOf(frame(496, 'c006e00000000000'), false), { Temperature: 250.55, AverageRadius: 3.2, Enable: 1 }, 'numbers without choices');
});

t.test('IEEE floats (SIG_VALTYPE_)', async (t) => {
  t.same(signalsOf(frame(1024, le((b) => b.writeDoubleLE(-129.448)))), { Value: -129.448 });
  t.same(signalsOf(frame(1025, le((b) => { b.writeFloatLE(1.5, 0); b.writeFloatLE(-0.25, 4); }))), { First: 1.5, Second: -0.25 });
});

t.test('multiplexing: the multiplexer value selects the signals; extended id from bit 31', async (t) => {
  const mux = db.messages.find((m) => m.name === 'MuxMessage');
  t.equal(mux?.id, 0x123456);
  t.equal(mux?.extended, true);
  t.same(signalsOf(frame(0x123456, '2000040100000000', { extended: true })), { BIT_L: 1, BIT_J: 1, Multiplexor: 8 });
  t.same(signalsOf(frame(0x123456, '6000000082000000', { extended: true })), { BIT_F: 1, BIT_B: 1, Multiplexor: 24 });
  t.same(signalsOf(frame(0x123456, '0400000000000000', { extended: true })), { Multiplexor: 1 }, 'no signal for an unused value');
  const std = decoder.decode(frame(0x123456 & 0x7ff, '2000040100000000'));
  t.ok(std instanceof DecodeError && std.code === 'unknown-id', 'a standard frame with the low bits does not match');
});

t.test('integers wider than 53 bits stay exact', async (t) => {
  const s = signalsOf(frame(1536, 'efcdab8967452301' + '1032547698badcfe'));
  t.equal(s.U64, 0x0123456789abcdefn);
  t.equal(s.S64, -0x0123456789abcdf0n);
  t.equal(signalsOf(frame(1537, '0123456789abcdef')).BE64, 0x0123456789abcdefn, 'big-endian 64-bit');
  t.equal(signalsOf(frame(1536, '0100000000000000' + '0000000000000000')).U64, 1, 'small values come back as numbers');
  t.equal(signalsOf(frame(1538, 'feffffffffff0000')).S48, 0, '48-bit signed -2 * 0.5 + 1');
  t.equal(signalsOf(frame(1538, 'ffffffffffff0000')).S48, 'Minus one raw', 'negative value-table key');
});

t.test('CAN FD: 64-byte payloads, signals in the last bytes', async (t) => {
  const data = Buffer.alloc(64);
  data[0] = 7;
  data.writeUInt16LE(1234, 62);
  data.writeUInt16BE(0xbeef, 60);
  t.same(signalsOf(frame(1792, data.toString('hex'), { fd: true })), { Head: 7, Tail: 118.4, TailBe: 0xbeef });
});

t.test('length mismatch, remote and error frames are errors, never guesses', async (t) => {
  for (const [f, code] of [
    [frame(496, 'c006e000'), 'wrong-length'],
    [frame(1792, '00'.repeat(48), { fd: true }), 'wrong-length'],
    [frame(496, '', { rtr: true, data: new Uint8Array(8) }), 'remote-frame'],
    [frame(0x80, '0000000000000000', { error: true }), 'error-frame'],
    [frame(0x7ff, '00'), 'unknown-id'],
  ] as const) {
    const d = decoder.decode(f);
    t.ok(d instanceof DecodeError, `${code}`);
    t.equal((d as DecodeError).code, code);
  }
});

t.test('encoder and decoder agree on random values for every signal of the reference DBC', async (t) => {
  const ref = parseDbc(readFileSync(join(projectRoot(), 'drivers/reference-vehicle/v2c-reference.dbc'), 'utf8'), 'ref');
  const refDecoder = new DbcDecoder(ref);
  let seed = 7;
  const rnd = (): number => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
  let checked = 0;
  for (let i = 0; i < 200; i++) {
    for (const msg of ref.messages) {
      const muxSig = msg.signals.find((s) => s.isMultiplexer);
      const muxValue = muxSig === undefined ? null : Math.floor(rnd() * 4);
      const values: Record<string, number> = {};
      for (const s of msg.signals) {
        if (s.multiplexValue !== null && s.multiplexValue !== muxValue) continue;
        const rawMax = 2 ** (s.length - (s.signed ? 1 : 0)) - 1;
        const rawMin = s.signed ? -(2 ** (s.length - 1)) : 0;
        const raw = rawMin + Math.floor(rnd() * (rawMax - rawMin + 1));
        values[s.name] = s === muxSig ? (muxValue as number) : raw * s.factor + s.offset;
      }
      const decoded = refDecoder.decode(frame(msg.id, Buffer.from(encodeMessage(msg, values)).toString('hex'), { extended: msg.extended }), false);
      if (decoded instanceof DecodeError) throw new Error(decoded.reason);
      for (const [name, v] of Object.entries(values)) {
        const sig = msg.signals.find((s) => s.name === name);
        t.ok(Math.abs((decoded.signals[name] as number) - v) <= Math.abs(sig?.factor ?? 1) / 2 + 1e-9, `${msg.name}.${name}`) || t.bailout();
        checked++;
      }
    }
  }
  t.ok(checked > 5000, `${checked} signal values round-tripped`);
});

const syntaxRows: Array<[string, string, number, RegExp]> = [
  ['unterminated string', 'BO_ 1 M: 8 ECU\n SG_ S : 0|8@1+ (1,0) [0|0] "unit ECU\n', 12, /unterminated string/],
  ['missing @', 'BO_ 1 M: 8 ECU\n SG_ S : 0|8 1+ (1,0) [0|0] "" ECU\n', 12, /expected '@'/],
  ['bad byte order', 'BO_ 1 M: 8 ECU\n SG_ S : 0|8@2+ (1,0) [0|0] "" ECU\n', 12, /byte order 0 or 1/],
  ['bad sign', 'BO_ 1 M: 8 ECU\n SG_ S : 0|8@1* (1,0) [0|0] "" ECU\n', 12, /sign/],
  ['bad mux indicator', 'BO_ 1 M: 8 ECU\n SG_ S X1 : 0|8@1+ (1,0) [0|0] "" ECU\n', 12, /multiplex indicator/],
  ['unknown keyword', 'BO_ 1 M: 8 ECU\nFOO_ 1 2;\n', 12, /unknown keyword 'FOO_'/],
  ['signal beyond message', 'BO_ 1 M: 2 ECU\n SG_ S : 12|8@1+ (1,0) [0|0] "" ECU\n', 12, /outside message M's 2 bytes/],
  ['big-endian beyond message', 'BO_ 1 M: 1 ECU\n SG_ S : 0|2@0+ (1,0) [0|0] "" ECU\n', 12, /reaches bit 15/],
  ['SG_ before BO_', ' SG_ S : 0|8@1+ (1,0) [0|0] "" ECU\n', 11, /outside a message/],
  ['float of wrong width', 'BO_ 1 M: 8 ECU\n SG_ S : 0|16@1+ (1,0) [0|0] "" ECU\nSIG_VALTYPE_ 1 S : 1;\n', 13, /needs 32/],
  ['duplicate id', 'BO_ 1 M: 8 ECU\nBO_ 1 N: 8 ECU\n', 12, /defined twice/],
  ['message too long', 'BO_ 1 M: 65 ECU\n', 11, /expected 0-64 bytes/],
  ['statement without ;', 'BO_ 1 M: 8 ECU\nCM_ "never ends"\n', 12, /no terminating ';'/],
];

t.test('DBC syntax errors name the file, the line and what was expected', async (t) => {
  for (const [label, body, line, message] of syntaxRows) {
    try {
      parseDbc(HEADER + body, 'broken.dbc');
      t.fail(`${label}: accepted`);
    } catch (err) {
      t.ok(err instanceof DbcSyntaxError, `${label}: DbcSyntaxError`);
      t.equal((err as DbcSyntaxError).line, line, `${label}: line ${line}`);
      t.match((err as Error).message, /^broken\.dbc:\d+: /, `${label}: message starts with file:line`);
      t.match((err as Error).message, message, `${label}: ${(err as Error).message}`);
    }
  }
});

const realDir = join(projectRoot(), '..', 'shared', 'fixtures', 'real-dbc');
t.test('real production DBC files parse and decode plausibly', { skip: existsSync(realDir) ? false : `no ${realDir}` }, async (t) => {
  const hyundai = parseDbc(readFileSync(join(realDir, 'hyundai_can.dbc'), 'latin1'), 'hyundai_can.dbc');
  t.equal(hyundai.messages.length, 146);
  const ems11 = hyundai.messages.find((m) => m.id === 0x316);
  t.equal(ems11?.name, 'EMS11');
  const hd = new DbcDecoder(hyundai);
  const data = encodeMessage(ems11!, { N: 2400, VS: 87 });
  const s = (hd.decode(frame(0x316, Buffer.from(data).toString('hex')), false) as DecodedMessage).signals;
  t.equal(s.N, 2400, 'EMS11 engine speed');
  t.equal(s.VS, 87, 'EMS11 vehicle speed');
  const muxed = hyundai.messages.filter((m) => m.signals.some((x) => x.isMultiplexer));
  t.equal(muxed.length, 2, 'two multiplexed messages');

  const toyota = parseDbc(readFileSync(join(realDir, 'toyota_2017_ref_pt.dbc'), 'latin1'), 'toyota.dbc');
  t.equal(toyota.messages.length, 143);
  t.equal(toyota.warnings.length, 32, 'the 32 ids with bit 30 instead of the extended flag are reported');
  t.ok(toyota.messages.every((m) => m.signals.every((x) => !x.littleEndian)), 'every Toyota signal is big-endian');
  const sp1 = toyota.messages.find((m) => m.id === 0xb4);
  t.ok(sp1 !== undefined, 'SP1 vehicle speed message present');
});
