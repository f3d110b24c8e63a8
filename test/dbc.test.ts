import t from 'tap';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { DbcDecoder, DecodeError, type DecodedMessage } from '../drivers/dbc/decoder.js';
import { encodeMessage } from '../drivers/dbc/encoder.js';
import { decodeDbcBytes, parseDbc } from '../drivers/dbc/parser.js';
import { projectRoot } from '../core/project-root.js';
import { frame } from './helpers.js';

const HEADER = 'VERSION ""\n\nNS_ :\n\tCM_\n\tVAL_\n\nBS_:\n\nBU_: ECU\n\n';

// Cross-checks with published cases of established DBC tools. The first two are cantools'
// published test vectors for its "ExampleMessage" (big-endian, signed, scaled, value table).
const DBC =
  HEADER +
  `
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
  return d.signals;
};
const le = (write: (b: Buffer) => void, size = 8): string => {
  const b = Buffer.alloc(size);
  write(b);
  return b.toString('hex');
};

t.test('published cantools vectors: big-endian, signed, scaled, value table', async (t) => {
  t.same(signalsOf(frame(496, 'c006e00000000000')), { Temperature: 250.55, AverageRadius: 3.2, Enable: 'Enabled' });
  t.same(signalsOf(frame(496, '0100200000000000')), { Temperature: 229.53, AverageRadius: 0, Enable: 'Disabled' });
  t.same(
    signalsOf(frame(496, 'c006e00000000000'), false),
    { Temperature: 250.55, AverageRadius: 3.2, Enable: 1 },
    'numbers without choices',
  );
});

t.test('IEEE floats (SIG_VALTYPE_)', async (t) => {
  t.same(
    signalsOf(
      frame(
        1024,
        le((b) => b.writeDoubleLE(-129.448)),
      ),
    ),
    { Value: -129.448 },
  );
  t.same(
    signalsOf(
      frame(
        1025,
        le((b) => {
          b.writeFloatLE(1.5, 0);
          b.writeFloatLE(-0.25, 4);
        }),
      ),
    ),
    { First: 1.5, Second: -0.25 },
  );
});

t.test('multiplexing: the multiplexer value selects the signals; extended id from bit 31', async (t) => {
  const mux = db.messages.find((m) => m.name === 'MuxMessage');
  t.equal(mux?.id, 0x123456);
  t.equal(mux?.extended, true);
  t.same(signalsOf(frame(0x123456, '2000040100000000', { extended: true })), { BIT_L: 1, BIT_J: 1, Multiplexor: 8 });
  t.same(signalsOf(frame(0x123456, '6000000082000000', { extended: true })), { BIT_F: 1, BIT_B: 1, Multiplexor: 24 });
  t.same(
    signalsOf(frame(0x123456, '0400000000000000', { extended: true })),
    { Multiplexor: 1 },
    'no signal for an unused value',
  );
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
  const rnd = (): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
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
      const decoded = refDecoder.decode(
        frame(msg.id, Buffer.from(encodeMessage(msg, values)).toString('hex'), { extended: msg.extended }),
        false,
      );
      if (decoded instanceof DecodeError) throw new Error(decoded.reason);
      for (const [name, v] of Object.entries(values)) {
        const sig = msg.signals.find((s) => s.name === name);
        if (
          !t.ok(
            Math.abs((decoded.signals[name] as number) - v) <= Math.abs(sig?.factor ?? 1) / 2 + 1e-9,
            `${msg.name}.${name}`,
          )
        )
          t.bailout();
        checked++;
      }
    }
  }
  t.ok(checked > 5000, `${checked} signal values round-tripped`);
});

/** A second, sound message: a file that loses one message must still load the others. */
const GOOD = 'BO_ 2 Good: 8 ECU\n SG_ G : 0|8@1+ (1,0) [0|0] "" ECU\n';

// Lenient per statement, strict per message: [case, body, messages kept, warning (file:line + what), its line].
const leniencyRows: Array<[string, string, string[], RegExp | null, number]> = [
  [
    'unterminated string before the next statement',
    'BO_ 1 M: 8 ECU\n SG_ S : 0|8@1+ (1,0) [0|0] "unit ECU\n' + GOOD,
    ['M', 'Good'],
    /unterminated string: expected a closing "; ended at line 12/,
    12,
  ],
  [
    'missing @',
    'BO_ 1 M: 8 ECU\n SG_ S : 0|8 1+ (1,0) [0|0] "" ECU\n' + GOOD,
    ['Good'],
    /expected '@', found '1'; message M \(0x1\) refused/,
    12,
  ],
  [
    'bad byte order',
    'BO_ 1 M: 8 ECU\n SG_ S : 0|8@2+ (1,0) [0|0] "" ECU\n' + GOOD,
    ['Good'],
    /byte order 0 or 1.*message M \(0x1\) refused/,
    12,
  ],
  ['bad sign', 'BO_ 1 M: 8 ECU\n SG_ S : 0|8@1* (1,0) [0|0] "" ECU\n' + GOOD, ['Good'], /sign.*refused/, 12],
  [
    'bad mux indicator',
    'BO_ 1 M: 8 ECU\n SG_ S X1 : 0|8@1+ (1,0) [0|0] "" ECU\n' + GOOD,
    ['Good'],
    /multiplex indicator.*refused/,
    12,
  ],
  [
    'a bare m multiplex indicator',
    'BO_ 1 M: 8 ECU\n SG_ S m : 0|8@1+ (1,0) [0|0] "" ECU\n' + GOOD,
    ['Good'],
    /multiplex indicator.*refused/,
    12,
  ],
  [
    'unknown keyword',
    'BO_ 1 M: 8 ECU\nFOO_ 1 2;\n' + GOOD,
    ['M', 'Good'],
    /unknown keyword 'FOO_'.*statement skipped/,
    12,
  ],
  [
    'signal beyond message',
    'BO_ 1 M: 2 ECU\n SG_ S : 12|8@1+ (1,0) [0|0] "" ECU\n' + GOOD,
    ['Good'],
    /outside message M's 2 bytes; message M \(0x1\) refused/,
    12,
  ],
  [
    'big-endian beyond message',
    'BO_ 1 M: 1 ECU\n SG_ S : 0|2@0+ (1,0) [0|0] "" ECU\n' + GOOD,
    ['Good'],
    /reaches bit 15.*refused/,
    12,
  ],
  [
    'SG_ before BO_',
    ' SG_ S : 0|8@1+ (1,0) [0|0] "" ECU\n' + GOOD,
    ['Good'],
    /outside a message.*statement skipped/,
    11,
  ],
  [
    'float of wrong width',
    'BO_ 1 M: 8 ECU\n SG_ S : 0|16@1+ (1,0) [0|0] "" ECU\nSIG_VALTYPE_ 1 S : 1;\n' + GOOD,
    ['Good'],
    /needs 32; message M \(0x1\) refused/,
    13,
  ],
  [
    'duplicate id',
    'BO_ 1 M: 8 ECU\nBO_ 1 N: 8 ECU\n SG_ X : 0|8@1+ (1,0) [0|0] "" ECU\n' + GOOD,
    ['M', 'Good'],
    /defined twice \(also by M at line 11\); this one refused/,
    12,
  ],
  [
    'message too long',
    'BO_ 1 M: 65 ECU\n SG_ S : 0|8@1+ (1,0) [0|0] "" ECU\n' + GOOD,
    ['Good'],
    /expected 0-64 bytes; statement skipped/,
    11,
  ],
  [
    'statement without ; before a message',
    'CM_ "never ends"\n' + GOOD,
    ['Good'],
    /CM_ statement has no terminating ';'; read up to line 12/,
    11,
  ],
  [
    'BA_DEF_ without ; swallowed every message after it',
    'BA_DEF_ BO_ "GenMsgCycleTime" INT 0 10000\nBO_ 1 M: 8 ECU\n SG_ S : 0|8@1+ (1,0) [0|0] "" ECU\n' + GOOD,
    ['M', 'Good'],
    /BA_DEF_ statement has no terminating ';'/,
    11,
  ],
  [
    'unterminated CM_ string mid-file swallowed the messages after it',
    'CM_ SG_ 1 S "a comment\nthat never ends;\nBO_ 1 M: 8 ECU\n SG_ S : 0|8@1+ (1,0) [0|0] "" ECU\n' + GOOD,
    ['M', 'Good'],
    /unterminated string/,
    11,
  ],
  ['-. before a non-digit crashed the tokenizer', 'CM_ "x" -.a;\n' + GOOD, ['Good'], null, 0],
  ['+. likewise', 'CM_ "x" +.;\n' + GOOD, ['Good'], null, 0],
  ['a BU_ node list over several lines', 'BU_: A B\n C D\n' + GOOD, ['Good'], null, 0],
  [
    'VECTOR__INDEPENDENT_SIG_MSG placeholder at another id',
    'BO_ 3221225473 VECTOR__INDEPENDENT_SIG_MSG: 0 Vector__XXX\n SG_ Orphan : 0|8@1+ (1,0) [0|0] "" Vector__XXX\n' +
      GOOD,
    ['Good'],
    null,
    0,
  ],
  [
    'VAL_ without ; at the end of the file',
    GOOD + 'VAL_ 2 G 0 "off" 1 "on"',
    ['Good'],
    /VAL_ for G has no terminating ';'; read up to the end of the file/,
    13,
  ],
];

t.test(
  'DBC files as they are in the wild: each problem skips its statement or refuses its message, with file:line',
  async (t) => {
    for (const [label, body, kept, warning, line] of leniencyRows) {
      let db;
      try {
        db = parseDbc(HEADER + body, 'broken.dbc');
      } catch (err) {
        t.fail(`${label}: refused the whole file: ${(err as Error).message}`);
        continue;
      }
      t.same(
        db.messages.map((m) => m.name),
        kept,
        `${label}: messages kept`,
      );
      if (warning === null) {
        t.same(db.warnings, [], `${label}: no warning`);
        continue;
      }
      const found = db.warnings.find((w) => warning.test(w));
      t.ok(found !== undefined, `${label}: warned (${db.warnings.join(' | ')})`);
      t.match(found ?? '', new RegExp(`^broken\\.dbc:${line}: `), `${label}: the warning names file:line`);
    }
    const g = parseDbc(HEADER + GOOD + 'VAL_ 2 G 0 "off" 1 "on"', 'x.dbc').messages[0]?.signals[0];
    t.same(
      [...(g?.choices ?? [])],
      [
        [0, 'off'],
        [1, 'on'],
      ],
      'the unterminated value table is kept',
    );
  },
);

t.test('CR-only and CRLF line endings read like LF', async (t) => {
  for (const [name, eol] of [
    ['CR', '\r'],
    ['CRLF', '\r\n'],
  ] as const) {
    const db = parseDbc(DBC.replace(/\n/g, eol), `${name}.dbc`);
    t.same(
      db.messages.map((m) => m.name),
      parseDbc(DBC).messages.map((m) => m.name),
      `${name}: every message`,
    );
    t.same(db.warnings, [], `${name}: no warning`);
  }
});

t.test('a file with no usable message is refused, saying why', async (t) => {
  const rows: Array<[string, RegExp]> = [
    ['', /no usable message \(BO_\) in the file: the file is empty/],
    [HEADER, /no usable message/],
    [
      HEADER + 'BO_ 1 M: 2 ECU\n SG_ S : 12|8@1+ (1,0) [0|0] "" ECU\n',
      /no usable message .* 1 problem\(s\), the first: .*outside message M's 2 bytes/,
    ],
    ['\u0000\u0001garbage ;;; ((', /no usable message .*expected a DBC keyword/],
  ];
  for (const [text, message] of rows) {
    t.throws(() => parseDbc(text, 'empty.dbc'), { name: 'DbcSyntaxError', message }, JSON.stringify(text.slice(0, 30)));
  }
});

t.test('long names (SystemMessageLongSymbol, SystemSignalLongSymbol) replace the 32-character cut', async (t) => {
  const db = parseDbc(
    HEADER +
      'BO_ 2 Short_Msg_Name_Cut_At_32_Chr: 8 ECU\n SG_ Short_Sig_Name_Cut_At_32_Chr : 0|8@1+ (1,0) [0|0] "" ECU\n' +
      'BA_DEF_ BO_ "SystemMessageLongSymbol" STRING ;\nBA_ "SystemMessageLongSymbol" BO_ 2 "Short_Msg_Name_Cut_At_32_Chr_And_The_Rest";\n' +
      'BA_ "SystemSignalLongSymbol" SG_ 2 Short_Sig_Name_Cut_At_32_Chr "Short_Sig_Name_Cut_At_32_Chr_Whole";\nBA_ "GenMsgCycleTime" BO_ 2 100;\n',
    'long.dbc',
  );
  t.equal(db.messages[0]?.name, 'Short_Msg_Name_Cut_At_32_Chr_And_The_Rest');
  t.equal(db.messages[0]?.signals[0]?.name, 'Short_Sig_Name_Cut_At_32_Chr_Whole');
  t.same(db.warnings, []);
});

t.test('encoding: Windows-1252 by default, UTF-8 when valid or with a BOM', async (t) => {
  const unit = (bytes: Buffer): string | undefined => parseDbc(decodeDbcBytes(bytes)).messages[0]?.signals[0]?.unit;
  const body = (u: Buffer): Buffer =>
    Buffer.concat([
      Buffer.from(HEADER + 'BO_ 2 M: 8 ECU\n SG_ S : 0|8@1+ (1,0) [0|0] "', 'latin1'),
      u,
      Buffer.from('" ECU\n'),
    ]);
  t.equal(
    unit(body(Buffer.from([0x80, 0x93, 0x94, 0xb0]))),
    '€“”°',
    'cp1252 bytes 0x80-0x9F are the Windows characters, not C1 controls',
  );
  t.equal(unit(body(Buffer.from('€°C', 'utf8'))), '€°C', 'valid UTF-8');
  t.equal(
    unit(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), body(Buffer.from('µs', 'utf8'))])),
    'µs',
    'UTF-8 with a BOM',
  );
});

const realDir = join(projectRoot(), '..', 'shared', 'fixtures', 'real-dbc');
t.test(
  'real production DBC files parse and decode plausibly',
  { skip: existsSync(realDir) ? false : `no ${realDir}` },
  async (t) => {
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
    t.ok(
      toyota.messages.every((m) => m.signals.every((x) => !x.littleEndian)),
      'every Toyota signal is big-endian',
    );
    const sp1 = toyota.messages.find((m) => m.id === 0xb4);
    t.ok(sp1 !== undefined, 'SP1 vehicle speed message present');
  },
);

t.test('extended multiplexing: SG_MUL_VAL_ switches, nested mNM multiplexors, several value ranges', async (t) => {
  const db = parseDbc(
    HEADER +
      `BO_ 100 Ext: 3 ECU
 SG_ S0 M : 0|8@1+ (1,0) [0|0] "" ECU
 SG_ S1 m1M : 8|8@1+ (1,0) [0|0] "" ECU
 SG_ A m2 : 16|8@1+ (1,0) [0|0] "" ECU
 SG_ B m3 : 16|8@1+ (1,0) [0|0] "" ECU
 SG_ C m0 : 8|8@1+ (1,0) [0|0] "" ECU

SG_MUL_VAL_ 100 S1 S0 1-1;
SG_MUL_VAL_ 100 A S1 2-2;
SG_MUL_VAL_ 100 B S1 3-5, 7-7;
SG_MUL_VAL_ 100 C S0 0-0, 4 - 6;
`,
    'ext.dbc',
  );
  t.same(db.warnings, []);
  const decoder = new DbcDecoder(db);
  const rows: Array<[string, Record<string, number>]> = [
    ['010209', { S0: 1, S1: 2, A: 9 }],
    ['010409', { S0: 1, S1: 4, B: 9 }],
    ['010709', { S0: 1, S1: 7, B: 9 }],
    ['010609', { S0: 1, S1: 6 }],
    ['024d09', { S0: 2 }],
    ['054d09', { S0: 5, C: 77 }],
    ['004d09', { S0: 0, C: 77 }],
  ];
  for (const [hex, expected] of rows) {
    const d = decoder.decode(frame(100, hex), false);
    t.same(d instanceof DecodeError ? d.reason : d.signals, expected, `${hex}: only the selected branch`);
  }
  const cyclic = parseDbc(
    HEADER +
      'BO_ 1 M: 2 ECU\n SG_ X m1M : 0|8@1+ (1,0) [0|0] "" ECU\n SG_ Y m1M : 8|8@1+ (1,0) [0|0] "" ECU\n' +
      GOOD +
      'SG_MUL_VAL_ 1 X Y 1-1;\nSG_MUL_VAL_ 1 Y X 1-1;\n',
    'cyc.dbc',
  );
  t.same(
    cyclic.messages.map((m) => m.name),
    ['Good'],
    'switches selecting each other: the message is refused',
  );
  t.match(cyclic.warnings.join('\n'), /cyc\.dbc:11: the multiplexors of M select each other/);
  const notSwitch = parseDbc(
    HEADER +
      'BO_ 1 M: 2 ECU\n SG_ X m1 : 0|8@1+ (1,0) [0|0] "" ECU\n SG_ Y : 8|8@1+ (1,0) [0|0] "" ECU\n' +
      GOOD +
      'SG_MUL_VAL_ 1 X Y 1-1;\n',
    'ns.dbc',
  );
  t.match(
    notSwitch.warnings.join('\n'),
    /ns\.dbc:16: SG_MUL_VAL_ names Y as the switch of X, but it is not a multiplexor \(M\) of M; message M \(0x1\) refused/,
  );
});
