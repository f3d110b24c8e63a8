// J1939: identifiers, passive transport-protocol reassembly and DM1, against vectors built by hand
// from the J1939-21 / J1939-73 layouts (not from our own encoder).
import t from 'tap';
import { parseJ1939Id, pgnOf } from '../drivers/j1939/j1939-id.js';
import { MAX_SESSIONS, TransportReassembler, type TransportMessage } from '../drivers/j1939/transport.js';
import { decodeDm1, Dm1Error, formatJ1939Dtc } from '../drivers/j1939/dm1.js';

t.test('29-bit identifiers as priority, PGN, destination (PDU1 only) and source', async (t) => {
  const rows: Array<[number, number, number, number | null, number]> = [
    // id, priority, pgn, da, sa
    [0x0cf00400, 3, 0xf004, null, 0x00], // EEC1 from the engine
    [0x18fef100, 6, 0xfef1, null, 0x00], // CCVS
    [0x18feca03, 6, 0xfeca, null, 0x03], // DM1 from the transmission
    [0x1cecff00, 7, 0xec00, 0xff, 0x00], // TP.CM BAM (global)
    [0x1cec0300, 7, 0xec00, 0x03, 0x00], // TP.CM RTS engine → transmission
    [0x18ea00f9, 6, 0xea00, 0x00, 0xf9], // request to the engine
    [0x19feca00, 6, 0x1feca, null, 0x00], // data page 1
    [0x1bef0017, 6, 0x3ef00, 0x00, 0x17], // extended data page and data page, PDU1
    [0x00000000, 0, 0x0000, 0x00, 0x00],
    [0x1fffffff, 7, 0x3ffff, null, 0xff],
  ];
  for (const [id, priority, pgn, da, sa] of rows) {
    const hex = id.toString(16);
    t.same(parseJ1939Id(id), { priority, pgn, da, sa }, `0x${hex}`);
    t.equal(pgnOf(id), pgn, `pgnOf 0x${hex}`);
  }
});

const bytes = (hex: string): Uint8Array => Uint8Array.from(Buffer.from(hex.replace(/\s/g, ''), 'hex'));
const cmId = (sa: number, da: number): number => 0x1cec0000 | (da << 8) | sa;
const dtId = (sa: number, da: number): number => 0x1ceb0000 | (da << 8) | sa;

/** Feeds frames (id, hex payload, ms) and collects what completes. */
function feed(tp: TransportReassembler, frames: Array<[number, string, number]>): TransportMessage[] {
  const out: TransportMessage[] = [];
  for (const [id, hex, ms] of frames) {
    const m = tp.accept(id, bytes(hex), ms);
    if (m !== null) out.push({ ...m, data: m.data.slice() });
  }
  return out;
}

const PAYLOAD_20 = '0102030405060708090A0B0C0D0E0F1011121314';

t.test('BAM: 20 bytes in 3 packets, padding of the last packet left out', async (t) => {
  const tp = new TransportReassembler();
  const got = feed(tp, [
    [cmId(0x00, 0xff), '20 1400 03 FF CAFE00', 0],
    [dtId(0x00, 0xff), '01 01020304050607', 50],
    [dtId(0x00, 0xff), '02 08090A0B0C0D0E', 100],
    [dtId(0x00, 0xff), '03 0F101112131415', 150],
  ]);
  t.same(got, [{ pgn: 0xfeca, sa: 0, da: 0xff, transport: 'bam', data: bytes(PAYLOAD_20), tsMono: 150 }]);
  t.equal(tp.counters.bam, 1);
  t.equal(tp.open, 0);
});

t.test('BAM: two sources interleaved packet by packet are kept apart', async (t) => {
  const tp = new TransportReassembler();
  const got = feed(tp, [
    [cmId(0x00, 0xff), '20 0900 02 FF CAFE00', 0],
    [cmId(0x03, 0xff), '20 0A00 02 FF CAFE00', 1],
    [dtId(0x03, 0xff), '01 B1B2B3B4B5B6B7', 50],
    [dtId(0x00, 0xff), '01 A1A2A3A4A5A6A7', 51],
    [dtId(0x00, 0xff), '02 A8A9FFFFFFFFFF', 100],
    [dtId(0x03, 0xff), '02 B8B9BAFFFFFFFF', 101],
  ]);
  t.same(
    got.map((m) => [m.sa, Buffer.from(m.data).toString('hex')]),
    [
      [0x00, 'a1a2a3a4a5a6a7a8a9'],
      [0x03, 'b1b2b3b4b5b6b7b8b9ba'],
    ],
  );
  t.equal(tp.counters.bam, 2);
});

t.test('RTS/CTS: blocks of 2 by CTS, a re-request of packet 2, completed on the last packet', async (t) => {
  const tp = new TransportReassembler();
  const got = feed(tp, [
    [cmId(0x00, 0x03), '10 1400 03 02 CAFE00', 0], // RTS engine → transmission, 2 packets per CTS
    [cmId(0x03, 0x00), '11 02 01 FFFF CAFE00', 10], // CTS: 2 packets from 1
    [dtId(0x00, 0x03), '01 01020304050607', 20],
    [dtId(0x00, 0x03), '02 EEEEEEEEEEEEEE', 30], // corrupted on the way, say: the receiver asks again
    [cmId(0x03, 0x00), '11 02 02 FFFF CAFE00', 40], // CTS: 2 packets from 2
    [dtId(0x00, 0x03), '02 08090A0B0C0D0E', 50],
    [dtId(0x00, 0x03), '03 0F101112131415', 60],
    [cmId(0x03, 0x00), '13 1400 03 FF CAFE00', 70], // end of message acknowledgement
  ]);
  t.same(got, [{ pgn: 0xfeca, sa: 0, da: 3, transport: 'rts-cts', data: bytes(PAYLOAD_20), tsMono: 60 }]);
  t.same(
    { rtsCts: tp.counters.rtsCts, orphans: tp.counters.orphans, sequenceErrors: tp.counters.sequenceErrors },
    { rtsCts: 1, orphans: 0, sequenceErrors: 0 },
    'the acknowledgement is not an orphan',
  );
});

t.test('RTS/CTS: aborted by the receiver, then by the sender, mid-transfer', async (t) => {
  const tp = new TransportReassembler();
  const got = feed(tp, [
    [cmId(0x00, 0x03), '10 1400 03 FF CAFE00', 0],
    [cmId(0x03, 0x00), 'FF 03 FFFFFF CAFE00', 5], // receiver: resources
    [dtId(0x00, 0x03), '01 01020304050607', 10], // nothing open any more
    [cmId(0x00, 0x03), '10 1400 03 FF CAFE00', 100],
    [cmId(0x03, 0x00), '11 03 01 FFFF CAFE00', 105],
    [dtId(0x00, 0x03), '01 01020304050607', 110],
    [cmId(0x00, 0x03), 'FF 02 FFFFFF CAFE00', 115], // sender gives up
    [dtId(0x00, 0x03), '02 08090A0B0C0D0E', 120],
    [dtId(0x00, 0x03), '03 0F101112131415', 130],
  ]);
  t.same(got, []);
  t.equal(tp.counters.aborted, 2);
  t.equal(tp.counters.orphans, 3, 'the packets after each abort');
  t.equal(tp.open, 0);
});

t.test('timeouts follow the frames own clock: T1 after data, T2 after a CTS', async (t) => {
  const tp = new TransportReassembler();
  feed(tp, [
    [cmId(0x00, 0xff), '20 1400 03 FF CAFE00', 0],
    [dtId(0x00, 0xff), '01 01020304050607', 50],
    [dtId(0x00, 0xff), '02 08090A0B0C0D0E', 801], // 751 ms after packet 1: the BAM timed out
  ]);
  t.same([tp.counters.timedOut, tp.counters.orphans, tp.counters.bam], [1, 1, 0]);
  const slow = new TransportReassembler();
  const got = feed(slow, [
    [cmId(0x00, 0x03), '10 0900 02 FF CAFE00', 0],
    [cmId(0x03, 0x00), '11 00 01 FFFF CAFE00', 10], // hold (0 packets)
    [cmId(0x03, 0x00), '11 02 01 FFFF CAFE00', 1200],
    [dtId(0x00, 0x03), '01 01020304050607', 2400], // 1,200 ms after the CTS: within T2
    [dtId(0x00, 0x03), '02 0809FFFFFFFFFF', 3100], // 700 ms after data: within T1
  ]);
  t.equal(got.length, 1, 'a slow but legal transfer completes');
  slow.accept(cmId(0x00, 0x03), bytes('10 0900 02 FF CAFE00'), 4000);
  slow.expire(5251);
  t.same([slow.counters.timedOut, slow.open], [1, 0], 'an RTS with no CTS for 1,251 ms is dropped');
});

t.test('out-of-order data ends a BAM; an RTS/CTS waits for the receiver', async (t) => {
  const tp = new TransportReassembler();
  const got = feed(tp, [
    [cmId(0x00, 0xff), '20 1400 03 FF CAFE00', 0],
    [dtId(0x00, 0xff), '01 01020304050607', 50],
    [dtId(0x00, 0xff), '03 0F101112131415', 100], // packet 2 lost
    [dtId(0x00, 0xff), '02 08090A0B0C0D0E', 150],
    [cmId(0x00, 0x03), '10 0900 02 FF CAFE00', 200],
    [cmId(0x03, 0x00), '11 02 01 FFFF CAFE00', 210],
    [dtId(0x00, 0x03), '02 0809FFFFFFFFFF', 220],
    [cmId(0x03, 0x00), '11 02 01 FFFF CAFE00', 230],
    [dtId(0x00, 0x03), '01 01020304050607', 240],
    [dtId(0x00, 0x03), '02 0809FFFFFFFFFF', 250],
  ]);
  t.same(
    got.map((m) => m.transport),
    ['rts-cts'],
  );
  t.same([tp.counters.sequenceErrors, tp.counters.orphans, tp.counters.bam], [2, 1, 0]);
});

t.test('hostile announcements and frames are counted, never reassembled or thrown', async (t) => {
  const tp = new TransportReassembler();
  feed(tp, [
    [cmId(0x00, 0xff), '20 0000 00 FF CAFE00', 0], // 0 bytes
    [cmId(0x00, 0xff), '20 FA06 FF FF CAFE00', 0], // 1,786 bytes
    [cmId(0x00, 0xff), '20 1400 04 FF CAFE00', 0], // 20 bytes in 4 packets
    [cmId(0x00, 0xff), '20 1400', 0], // short
    [cmId(0x00, 0xff), '42 1400 03 FF CAFE00', 0], // no such control byte
    [cmId(0x03, 0x00), '11 02 01 FFFF CAFE00', 0], // CTS for nothing
  ]);
  t.same(
    [tp.counters.badAnnouncements, tp.counters.shortFrames, tp.counters.unknownControl, tp.counters.orphans, tp.open],
    [3, 1, 1, 1, 0],
  );
  const full = new TransportReassembler();
  for (let sa = 0; sa < MAX_SESSIONS + 10; sa++) full.accept(cmId(sa, 0xff), bytes('20 F906 FF FF CAFE00'), 0);
  t.same([full.open, full.counters.overflow], [MAX_SESSIONS, 10], 'sessions are bounded');
  full.accept(cmId(0, 0xff), bytes('20 0900 02 FF CAFE00'), 1);
  t.same([full.open, full.counters.replaced], [MAX_SESSIONS, 1], 'a new BAM from an open sender replaces its session');
  const max = feed(new TransportReassembler(), [
    [cmId(0x00, 0xff), '20 F906 FF FF CAFE00', 0],
    ...Array.from({ length: 255 }, (_, i): [number, string, number] => [
      dtId(0x00, 0xff),
      (i + 1).toString(16).padStart(2, '0') + 'AB'.repeat(7),
      i * 50,
    ]),
  ]);
  t.equal(max[0]?.data.length, 1785, 'the largest transfer: 255 packets, 1,785 bytes');
  t.equal(new TransportReassembler().accept(0x18fef100, bytes('FFFFFFFFFFFFFFFF'), 0), null, 'other PGNs pass');
});

t.test('DM1: lamps and DTCs, computed by hand from the J1939-73 layout', async (t) => {
  const rows: Array<[string, string, ReturnType<typeof decodeDm1>]> = [
    [
      'no active fault (single frame)',
      '00FF 00000000 FFFF',
      { lamps: { mil: false, red: false, amber: false, protect: false }, dtcs: [] },
    ],
    [
      // MIL on (bits 8-7 = 01), amber on (bits 4-3 = 01); SPN 110 = 0x6E, FMI 0, OC 3.
      'coolant temperature above normal, MIL and amber lamp',
      '44FF 6E000003 FFFF',
      { lamps: { mil: true, red: false, amber: true, protect: false }, dtcs: [{ spn: 110, fmi: 0, oc: 3 }] },
    ],
    [
      // SPN 370,085 = 0x5A5A5: bytes A5 A5, top 3 bits 101 in byte 4 with FMI 4 → A4; CM 1, OC 10 → 8A.
      'a 19-bit SPN and a second DTC (multi-packet), red lamp, lamps not available',
      'D1FF BE000201 A5A5A48A', // 11 01 00 01: MIL not available, red on, amber off, protect on
      {
        lamps: { mil: null, red: true, amber: false, protect: true },
        dtcs: [
          { spn: 190, fmi: 2, oc: 1 },
          { spn: 370085, fmi: 4, oc: 10 },
        ],
      },
    ],
    [
      // Status 0xB0: MIL 10 (error), red 11 (not available), amber and protect off.
      'error and not-available lamp states, padding after the last DTC',
      'B000 6E000003 FFFFFFFF FF',
      { lamps: { mil: null, red: null, amber: false, protect: false }, dtcs: [{ spn: 110, fmi: 0, oc: 3 }] },
    ],
  ];
  for (const [name, hex, want] of rows) t.same(decodeDm1(bytes(hex)), want, name);
  const short = decodeDm1(bytes('44FF6E00'));
  t.ok(short instanceof Dm1Error && /4 bytes: expected at least 6/.test(short.reason), 'too short: named');
  t.equal(formatJ1939Dtc({ spn: 110, fmi: 0, oc: 3 }), 'SPN110-FMI0');
});
