// The system link monitor on a kernel-shaped interface directory and an nmcli on PATH that the
// test controls (node-wifi runs and parses it as it would the real one), and without nmcli.
import t from 'tap';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SystemLinkMonitor } from '../sync/link/link-monitor.js';

const dir = mkdtempSync(join(tmpdir(), 'v2c-link-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const sysNet = join(dir, 'sys-class-net');
const iface = (name: string, operstate: string, flags = '0x1003'): void => {
  mkdirSync(join(sysNet, name), { recursive: true });
  writeFileSync(join(sysNet, name, 'operstate'), `${operstate}\n`);
  writeFileSync(join(sysNet, name, 'flags'), `${flags}\n`);
};
const originalPath = process.env.PATH ?? '';
t.teardown(() => {
  process.env.PATH = originalPath;
});

t.test('without nmcli: WiFi unknown, said once; the modem from the kernel interface state', async (t) => {
  process.env.PATH = '/nonexistent';
  const logs: string[] = [];
  const monitor = new SystemLinkMonitor(
    { cellularInterfaces: ['wwan0', 'ppp0'], pollMs: 1000, sysNetDir: sysNet },
    (m) => logs.push(m),
  );
  t.teardown(() => monitor.stop());
  t.same(await monitor.poll(), { kind: 'unknown' }, 'nothing up, WiFi unknown: unknown');
  iface('wwan0', 'up');
  t.same(await monitor.poll(), { kind: 'cellular', iface: 'wwan0' });
  iface('wwan0', 'down');
  iface('ppp0', 'unknown', '0x10d1');
  t.same(await monitor.poll(), { kind: 'cellular', iface: 'ppp0' }, 'ppp: operstate unknown but UP|RUNNING');
  iface('ppp0', 'unknown', '0x1090');
  t.same(await monitor.poll(), { kind: 'unknown' }, 'ppp without IFF_UP');
  t.same(
    logs,
    [
      'link: nmcli is not installed (NetworkManager), so WiFi cannot be seen until the gateway restarts with it; WiFi state unknown',
    ],
    'one log line for many polls',
  );
  t.equal(monitor.wifiQueries, 1, 'and nmcli was looked for once, not spawned at every poll');
});

t.test(
  'with nmcli: WiFi wins over cellular, disconnected WiFi falls back, changes come as an observable',
  async (t) => {
    const bin = join(dir, 'bin');
    mkdirSync(bin, { recursive: true });
    const state = join(dir, 'wifi-state');
    writeFileSync(join(bin, 'nmcli'), `#!/bin/sh\ncat "${state}"\n`);
    chmodSync(join(bin, 'nmcli'), 0o755);
    process.env.PATH = `${bin}:${originalPath}`;
    const connected =
      'yes:Depot\\:5G:AA\\:BB\\:CC\\:DD\\:EE\\:FF:Infra:36:5180 MHz:80:WPA2:(none):pair_ccmp group_ccmp psk:wlan0\n';
    writeFileSync(
      state,
      `no:Other:11\\:22\\:33\\:44\\:55\\:66:Infra:1:2412 MHz:40:WPA2:(none):psk:wlan0\n${connected}`,
    );
    iface('wwan0', 'up');
    const monitor = new SystemLinkMonitor(
      { cellularInterfaces: ['wwan0'], pollMs: 1000, sysNetDir: sysNet },
      () => undefined,
    );
    t.teardown(() => monitor.stop());
    const seen: string[] = [];
    monitor.links.subscribe((l) => seen.push(`${l.kind}${l.ssid !== undefined ? `:${l.ssid}` : ''}`));
    t.same(
      await monitor.poll(),
      { kind: 'wifi', ssid: 'Depot:5G' },
      'the active network, with an escaped colon in its SSID',
    );
    await monitor.poll();
    writeFileSync(state, '');
    t.same(await monitor.poll(), { kind: 'cellular', iface: 'wwan0' });
    iface('wwan0', 'down');
    t.same(await monitor.poll(), { kind: 'none' }, 'nmcli answers and nothing is up: no link');
    t.same(seen, ['unknown', 'wifi:Depot:5G', 'cellular', 'none'], 'each change once');
  },
);
