// Which link the gateway has: WiFi through node-wifi (nmcli underneath), the cellular modem from the
// kernel's state of the configured interfaces (wwan0, ppp0, usb0 …). Changes come as an observable.
// BenchLinkMonitor, beside it, changes only when told (tests, `simulate`).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import wifi from 'node-wifi';
import { BehaviorSubject, distinctUntilChanged, type Observable } from 'rxjs';
import type { LinkState } from './link-policy.js';

export interface LinkMonitor {
  readonly links: Observable<LinkState>;
  readonly current: LinkState;
  start(): void;
  stop(): void;
}

const sameLink = (a: LinkState, b: LinkState): boolean => a.kind === b.kind && a.ssid === b.ssid && a.iface === b.iface;

export class BenchLinkMonitor implements LinkMonitor {
  private readonly subject: BehaviorSubject<LinkState>;

  constructor(initial: LinkState) {
    this.subject = new BehaviorSubject(initial);
  }

  get links(): Observable<LinkState> {
    return this.subject.pipe(distinctUntilChanged(sameLink));
  }

  get current(): LinkState {
    return this.subject.value;
  }

  set(link: LinkState): void {
    this.subject.next(link);
  }

  start(): void {}

  stop(): void {
    this.subject.complete();
  }
}

export interface SystemLinkSettings {
  cellularInterfaces: readonly string[];
  /** The WiFi interface to ask nmcli about; any when absent. */
  wifiInterface?: string;
  pollMs: number;
  /** Where the kernel shows interfaces (tests point it at a directory of their own). */
  sysNetDir?: string;
}

// IFF_UP | IFF_RUNNING: a ppp link reports operstate "unknown" even when it carries traffic.
const IFF_UP_RUNNING = 0x1 | 0x40;

/** Whether the kernel says `iface` is up and carrying traffic. */
export function interfaceUp(sysNetDir: string, iface: string): boolean {
  try {
    const operstate = readFileSync(join(sysNetDir, iface, 'operstate'), 'utf8').trim();
    if (operstate === 'up') return true;
    const flags = Number.parseInt(readFileSync(join(sysNetDir, iface, 'flags'), 'utf8').trim(), 16);
    return operstate === 'unknown' && (flags & IFF_UP_RUNNING) === IFF_UP_RUNNING;
  } catch {
    return false;
  }
}

export class SystemLinkMonitor implements LinkMonitor {
  private readonly subject = new BehaviorSubject<LinkState>({ kind: 'unknown' });
  private timer: NodeJS.Timeout | null = null;
  private wifiUnavailable: string | null = null;
  /** nmcli is not installed: not asked again (it would be a process spawned every poll for nothing). */
  private nmcliAbsent = false;
  /** Times nmcli was asked (each one a process). */
  wifiQueries = 0;
  private polling = false;

  constructor(
    private readonly settings: SystemLinkSettings,
    private readonly log: (msg: string) => void,
  ) {
    wifi.init({ iface: settings.wifiInterface ?? null });
  }

  get links(): Observable<LinkState> {
    return this.subject.pipe(distinctUntilChanged(sameLink));
  }

  get current(): LinkState {
    return this.subject.value;
  }

  start(): void {
    void this.poll();
    this.timer = setInterval(() => void this.poll(), this.settings.pollMs);
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.subject.complete();
  }

  /** One look at WiFi and the modem; WiFi wins when both are up (it costs nothing). */
  async poll(): Promise<LinkState> {
    if (this.polling) return this.subject.value;
    this.polling = true;
    try {
      const ssid = await this.wifiSsid();
      const cellular = this.settings.cellularInterfaces.find((i) =>
        interfaceUp(this.settings.sysNetDir ?? '/sys/class/net', i),
      );
      const link: LinkState =
        ssid !== null && ssid !== undefined
          ? { kind: 'wifi', ssid }
          : cellular !== undefined
            ? { kind: 'cellular', iface: cellular }
            : ssid === undefined
              ? { kind: 'unknown' }
              : { kind: 'none' };
      if (!this.subject.closed) this.subject.next(link);
      return link;
    } finally {
      this.polling = false;
    }
  }

  /** The connected SSID, null when WiFi is not connected, undefined when nobody can tell. */
  private async wifiSsid(): Promise<string | null | undefined> {
    if (this.nmcliAbsent) return undefined;
    try {
      this.wifiQueries++;
      const connections = await wifi.getCurrentConnections();
      if (this.wifiUnavailable !== null) this.log('link: WiFi state readable again');
      this.wifiUnavailable = null;
      return connections.find((c) => c.ssid !== '')?.ssid ?? null;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      this.nmcliAbsent = e.code === 'ENOENT';
      const why = this.nmcliAbsent
        ? 'nmcli is not installed (NetworkManager), so WiFi cannot be seen until the gateway restarts with it'
        : `nmcli failed: ${e.message.split('\n')[0] ?? ''}`;
      // Said once, not at every poll.
      if (this.wifiUnavailable !== why) this.log(`link: ${why}; WiFi state unknown`);
      this.wifiUnavailable = why;
      return undefined;
    }
  }
}
