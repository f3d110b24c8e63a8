// ISO-TP (ISO 15765-2) and J1979 answers, against frames written by hand from the standards'
// layouts: segmentation, flow control both ways, sequence numbers, timeouts, PID formulas.
import t from 'tap';
import {
  FlowStatus,
  IsoTpReceiver,
  IsoTpSender,
  MAX_FC_WAITS,
  flowControlFrame,
  singleFrame,
  stMinMs,
  type ReceiveResult,
} from '../drivers/obd/iso-tp.js';
import {
  ObdResponseError,
  PIDS,
  PID_BY_NUMBER,
  parseObdResponse,
  supportBitmap,
  supportedPids,
} from '../drivers/obd/pids.js';
import { physicalRequestId, requestTarget, respondingEcu, responseId } from '../drivers/obd/addressing.js';
import { referenceVehicleSettings, validateConfig } from '../core/config.js';

const b = (hex: string): Uint8Array => Uint8Array.from(Buffer.from(hex.replace(/\s/g, ''), 'hex'));
const h = (u: Uint8Array): string => Buffer.from(u).toString('hex').toUpperCase();
const kind = (r: ReceiveResult): string =>
  r === null ? 'null' : r.kind === 'error' ? `error ${r.error.code}` : r.kind;

const VIN_ANSWER = '490201' + Buffer.from('1HGCM82633A004352').toString('hex').toUpperCase();

t.test('receiver: single frames, a multi-frame VIN with flow control, padding ignored', async (t) => {
  const rx = new IsoTpReceiver({ blockSize: 0, stMin: 0, active: true });
  t.same(rx.accept(b('04410C1AF8AAAAAA'), 0), { kind: 'message', payload: b('410C1AF8') });
  const ff = rx.accept(b('1014' + VIN_ANSWER.slice(0, 12)), 10);
  t.same(ff, { kind: 'flow-control', frame: b('300000AAAAAAAAAA') }, 'a first frame asks for everything at once');
  t.equal(rx.accept(b('21' + VIN_ANSWER.slice(12, 26)), 12), null);
  const last = rx.accept(b('22' + VIN_ANSWER.slice(26, 40)), 14);
  t.same(last !== null && last.kind === 'message' && h(last.payload), VIN_ANSWER, '20 bytes back, 3 frames');
  t.notOk(rx.busy);
});

t.test('receiver: block size asks again after each block; passive never asks', async (t) => {
  const rx = new IsoTpReceiver({ blockSize: 2, stMin: 10, active: true });
  const payload = Array.from({ length: 40 }, (_, i) => i);
  const tx = new IsoTpSender(Uint8Array.from(payload));
  const first = tx.start();
  const frames: Uint8Array[] = first.kind === 'send' ? first.frames : [];
  const results: string[] = [];
  let delivered: Uint8Array | null = null;
  for (let guard = 0; guard < 20 && frames.length > 0; guard++) {
    const r = rx.accept(frames.shift() as Uint8Array, guard);
    results.push(kind(r));
    if (r?.kind === 'flow-control') {
      t.same(h(r.frame).slice(0, 6), '30020A', 'continue, 2 per block, STmin 10 ms');
      const step = tx.onFlowControl(r.frame);
      if (step.kind === 'send') {
        t.ok(step.frames.length <= 2, 'the sender keeps to the block size');
        t.equal(step.gapMs, 10, 'and to STmin');
        frames.push(...step.frames);
      }
    }
    if (r?.kind === 'message') delivered = r.payload;
  }
  // 40 bytes: a first frame (6) and five consecutive frames; flow control after the first frame and each pair.
  t.same(results, ['flow-control', 'null', 'flow-control', 'null', 'flow-control', 'message']);
  t.same(delivered && [...delivered], payload);
  const passive = new IsoTpReceiver({ blockSize: 2, stMin: 0, active: false });
  t.equal(passive.accept(b('1028000102030405'), 0), null, 'passive: a first frame, no flow control');
});

t.test('receiver: wrong sequence, consecutive frame out of nowhere, N_Cr, bad lengths', async (t) => {
  const rx = new IsoTpReceiver();
  const cases: Array<[string, number, string]> = [
    ['2100000000000000', 0, 'error UNEXPECTED_CF'],
    ['1014490201314847', 10, 'flow-control'],
    ['22434D3832363333', 20, 'error WRONG_SEQUENCE'], // 22 where 21 was due
    ['1014490201314847', 30, 'flow-control'],
    ['2143AAAAAAAAAAAA', 1031, 'error TIMEOUT'], // 1,001 ms later: N_Cr ran out first
    ['0041AAAAAAAAAAAA', 1040, 'error BAD_LENGTH'],
    ['0841AAAAAAAAAAAA', 1040, 'error BAD_LENGTH'],
    ['1005000000000000', 1040, 'error BAD_LENGTH'], // a first frame for 5 bytes
    ['', 1040, 'error EMPTY'],
    ['4000000000000000', 1040, 'error BAD_PCI'],
    ['3000000000000000', 1040, 'null'], // flow control is the sender's business
  ];
  for (const [hex, ms, want] of cases) t.equal(kind(rx.accept(b(hex), ms)), want, `${hex || '(empty)'} at ${ms} ms`);
  const timed = new IsoTpReceiver();
  timed.accept(b('1014490201314847'), 0);
  t.equal(timed.expire(1000), null, 'not before 1,000 ms');
  t.equal(timed.expire(1001)?.code, 'TIMEOUT');
  t.notOk(timed.busy);
});

t.test('sender: sequence numbers wrap after 15; WAIT, OVERFLOW and the WAIT limit', async (t) => {
  const tx = new IsoTpSender(new Uint8Array(200).fill(7));
  const start = tx.start();
  t.same(start.kind === 'send' && h(start.frames[0] as Uint8Array).slice(0, 4), '10C8', 'first frame: 200 bytes');
  t.same(tx.onFlowControl(flowControlFrame(FlowStatus.Wait, 0, 0)), { kind: 'await-flow-control' });
  const all = tx.onFlowControl(flowControlFrame(FlowStatus.ContinueToSend, 0, 0xf3));
  const sns = all.kind === 'send' ? all.frames.map((f) => (f[0] as number) & 0x0f) : [];
  t.equal(sns.length, 28, '194 bytes in 28 consecutive frames');
  t.same(sns.slice(13, 18), [14, 15, 0, 1, 2], 'SN wraps 15 → 0');
  t.equal(all.kind === 'send' && all.gapMs, 0.3, 'STmin 0xF3 = 300 µs');
  t.ok(tx.finished);
  const full = new IsoTpSender(new Uint8Array(20));
  full.start();
  t.equal(
    (full.onFlowControl(flowControlFrame(FlowStatus.Overflow, 0, 0)) as { error?: { code: string } }).error?.code,
    'OVERFLOW',
  );
  const patient = new IsoTpSender(new Uint8Array(20));
  patient.start();
  const steps = Array.from(
    { length: MAX_FC_WAITS + 1 },
    () => patient.onFlowControl(flowControlFrame(FlowStatus.Wait, 0, 0)).kind,
  );
  t.same(steps.slice(-2), ['await-flow-control', 'error'], `WAIT ${MAX_FC_WAITS + 1} times ends the transfer`);
  t.same([stMinMs(0x7f), stMinMs(0xf1), stMinMs(0xf9), stMinMs(0x80), stMinMs(0xfa)], [127, 0.1, 0.9, 127, 127]);
  t.same(singleFrame(b('0100')), b('020100AAAAAAAAAA'), 'padded to 8 bytes (ISO 15765-4)');
  t.throws(() => singleFrame(new Uint8Array(8)), RangeError);
});

t.test('J1979 PID formulas, both ways, from the standard', async (t) => {
  // PID, data bytes, value.
  const rows: Array<[number, string, number]> = [
    [0x04, 'FF', 100],
    [0x05, '7B', 83], // 123 - 40
    [0x0c, '1AF8', 1726], // (256·26 + 248) / 4
    [0x0d, '64', 100],
    [0x0f, '00', -40],
    [0x10, '0190', 4], // 400 / 100 g/s
    [0x11, '80', (128 * 100) / 255],
    [0x1f, '0E10', 3600],
    [0x2f, '33', 20],
    [0x31, '04D2', 1234],
    [0x42, '3726', 14.118],
    [0x46, '32', 10],
    [0x5b, 'CC', 80],
    [0x5e, '0064', 5], // 100 / 20 L/h
    [0xa6, '0007 5BCD', 48225.3], // 0x75BCD = 482,253; / 10 km
  ];
  for (const [pid, hex, value] of rows) {
    const answer = parseObdResponse(b(`41${pid.toString(16).padStart(2, '0')}${hex}`));
    const got = !(answer instanceof ObdResponseError) && answer.kind === 'pid' ? answer.value : NaN;
    t.ok(Math.abs(got - value) < 1e-9, `PID 0x${pid.toString(16)}: ${got}, expected ${value}`);
    const def = PID_BY_NUMBER.get(pid);
    t.same(
      def && h(Uint8Array.from(def.encode(value))),
      hex.replace(/\s/g, ''),
      `PID 0x${pid.toString(16)} encoded back`,
    );
  }
  t.equal(PIDS.length, 16, 'every PID the issue lists, and 0x01');
  t.match(parseObdResponse(b('410180070000')), { kind: 'pid', name: 'OBD_MilOn', value: 1 });
  t.match(parseObdResponse(b('410C1A')), { reason: /2 expected|expected 2/ }, 'a short answer is refused');
});

t.test('support bitmaps, VIN, DTC lists and refusals', async (t) => {
  // BE 1F A8 13: the example from SAE J1979 / ISO 15031-5.
  t.same(
    supportedPids(0x00, b('BE1FA813')),
    [0x01, 0x03, 0x04, 0x05, 0x06, 0x07, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x13, 0x15, 0x1c, 0x1f, 0x20],
  );
  t.same(
    h(
      Uint8Array.from(
        supportBitmap(
          0x00,
          [0x01, 0x03, 0x04, 0x05, 0x06, 0x07, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x13, 0x15, 0x1c, 0x1f, 0x20],
        ),
      ),
    ),
    'BE1FA813',
  );
  t.same(supportBitmap(0x20, [0x01, 0x21, 0x40, 0x41]), [0x80, 0, 0, 0x01], 'only its own range');
  t.match(parseObdResponse(b(VIN_ANSWER)), { kind: 'vin', vin: '1HGCM82633A004352' });
  t.match(parseObdResponse(b('490201' + '31'.repeat(16))), { reason: /expected 17 characters/ });
  t.match(parseObdResponse(b('4302 0217 C158')), { kind: 'dtcs', dtcKind: 'stored', dtcs: ['P0217', 'U0158'] });
  t.match(parseObdResponse(b('4700')), { kind: 'dtcs', dtcKind: 'pending', dtcs: [] });
  t.match(parseObdResponse(b('4A01 4123')), { kind: 'dtcs', dtcKind: 'permanent', dtcs: ['C0123'] });
  t.match(parseObdResponse(b('4303 0217')), { reason: /for 3 codes/ });
  t.match(parseObdResponse(b('7F0178')), { kind: 'negative', service: 1, nrc: 0x78, meaning: 'response pending' });
  t.match(parseObdResponse(b('7F01')), { reason: /expected 3/ });
  t.match(parseObdResponse(b('')), { reason: 'empty answer' });
});

t.test('ISO 15765-4 addressing, 11-bit and 29-bit', async (t) => {
  t.same([respondingEcu(0x7e8, false), respondingEcu(0x7ef, false), respondingEcu(0x7e7, false)], [0, 7, null]);
  t.same(
    [respondingEcu(0x18daf110, true), respondingEcu(0x18da10f1, true), respondingEcu(0x7e8, true)],
    [0x10, null, null],
  );
  t.same(
    [
      requestTarget(0x7df, false),
      requestTarget(0x7e3, false),
      requestTarget(0x18db33f1, true),
      requestTarget(0x18da10f1, true),
    ],
    ['functional', 3, 'functional', 0x10],
  );
  t.same(
    [physicalRequestId('11bit', 2), physicalRequestId('29bit', 0x10)],
    [
      { id: 0x7e2, extended: false },
      { id: 0x18da10f1, extended: true },
    ],
  );
  t.same(responseId('29bit', 0x10), { id: 0x18daf110, extended: true });
});

t.test('the configuration accepts exactly the PIDs the gateway can read', async (t) => {
  const settings = referenceVehicleSettings({ mqttUrl: 'mqtt://127.0.0.1:1', vehicle: 'obd' });
  const withPid = (pid: number) => ({ ...settings, obd: { pids: [{ pid, intervalMs: 1000 }] } });
  for (const p of PIDS) t.doesNotThrow(() => validateConfig(withPid(p.pid), 'x'), `0x${p.pid.toString(16)}`);
  t.throws(
    () => validateConfig(withPid(0x02), 'x'),
    /obd\.pids\.0\.pid: expected one of the PIDs the gateway reads: 0x01, 0x04/,
  );
  t.equal(
    validateConfig(settings, 'x').obd.pids.filter((p) => !PID_BY_NUMBER.has(p.pid)).length,
    0,
    'defaults readable',
  );
});
