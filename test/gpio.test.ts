// GPIO: what the LED shows, the bench ignition file (as `simulate --ignition-file` writes it), and
// a machine without GPIO (this one): said once, the gateway runs without the lines.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Gpio } from 'onoff';
import { systemClock } from '../core/clock.js';
import { FileIgnition, ledModeFor, openGpio } from '../gateway/gpio.js';
import { waitUntil } from './helpers.js';

t.test('LED mode by session state', async (t) => {
  const rows = [
    ['online', false, 'online'],
    ['backoff', false, 'offline'],
    ['offline', false, 'offline'],
    ['connecting', false, 'offline'],
    ['quota-wait', false, 'offline'],
    ['certificate-renewal', false, 'error'],
    ['online', true, 'error'],
  ] as const;
  for (const [state, degraded, mode] of rows)
    t.equal(ledModeFor(state, degraded), mode, `${state}${degraded ? ', store degraded' : ''}`);
});

t.test('bench ignition file: 1 on, 0 off, anything else ignored; off time counted from the change', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'v2c-gpio-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'ignition');
  writeFileSync(file, '1\n');
  const ignition = new FileIgnition(file, systemClock, 20);
  t.teardown(() => ignition.stop());
  t.equal(ignition.isOn, true);
  t.equal(ignition.offForMs(), 0);
  const seen: boolean[] = [];
  ignition.changes.subscribe((on) => seen.push(on));
  // The file is watched by its mtime, which the kernel keeps in coarse ticks: a rewrite of the same
  // size within one tick of the first write is invisible (seen once in CI). Let a tick pass first.
  await new Promise((resolve) => setTimeout(resolve, 50));
  writeFileSync(file, '0\n');
  await waitUntil('ignition off', () => !ignition.isOn, 3000);
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.ok(ignition.offForMs() >= 150, `off for ${ignition.offForMs().toFixed(0)} ms`);
  writeFileSync(file, 'garbage\n');
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.equal(ignition.isOn, false, 'unreadable values leave the state as it was');
  t.same(seen, [true, false]);
});

t.test(
  'no GPIO on this machine: one log line, no lines, the gateway runs on',
  { skip: Gpio.accessible ? 'this machine has GPIO' : false },
  async (t) => {
    const logs: string[] = [];
    const lines = openGpio({ ignitionPin: 17, ledPin: 27, activeLow: false, debounceMs: 50 }, systemClock, (m) =>
      logs.push(m),
    );
    t.same(lines, { ignition: null, led: null });
    t.same(logs, [
      'gpio: not available on this machine (no /sys/class/gpio access); running without ignition sense and status LED',
    ]);
    t.same(
      openGpio({ activeLow: false, debounceMs: 50 }, systemClock, (m) => logs.push(m)),
      { ignition: null, led: null },
      'no pins configured: nothing said',
    );
    t.equal(logs.length, 1);
  },
);
