// A serialport binding that reads the adapter in bursts. Read as soon as bytes arrive, a busy bus
// costs one read() per line or two (~8,000 reads/s at 4,000 frames/s, half the gateway's CPU on a
// saturated bus, measured); waiting `intervalMs` after a read that returned data lets the kernel's
// tty buffer collect a burst, at the price of up to `intervalMs` of added latency per frame.
import type {
  BindingInterface,
  BindingPortInterface,
  OpenOptions,
  PortInfo,
  SetOptions,
  UpdateOptions,
  PortStatus,
} from '@serialport/bindings-interface' with { 'resolution-mode': 'require' };

export function coalescingBinding(inner: BindingInterface, intervalMs: number): BindingInterface {
  return {
    list: (): Promise<PortInfo[]> => inner.list(),
    open: async (options: OpenOptions): Promise<BindingPortInterface> =>
      new CoalescingPort(await inner.open(options), intervalMs),
  };
}

class CoalescingPort implements BindingPortInterface {
  private lastDataAt = -Infinity;

  constructor(
    private readonly inner: BindingPortInterface,
    private readonly intervalMs: number,
  ) {}

  get openOptions(): Required<OpenOptions> {
    return this.inner.openOptions;
  }

  get isOpen(): boolean {
    return this.inner.isOpen;
  }

  async read(buffer: Buffer, offset: number, length: number): Promise<{ buffer: Buffer; bytesRead: number }> {
    const wait = this.lastDataAt + this.intervalMs - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    // Closed while we waited: the stream expects the cancellation a read in progress would get.
    if (!this.inner.isOpen) throw Object.assign(new Error('Read canceled'), { canceled: true });
    const result = await this.inner.read(buffer, offset, length);
    if (result.bytesRead > 0) this.lastDataAt = performance.now();
    return result;
  }

  close(): Promise<void> {
    return this.inner.close();
  }
  write(buffer: Buffer): Promise<void> {
    return this.inner.write(buffer);
  }
  update(options: UpdateOptions): Promise<void> {
    return this.inner.update(options);
  }
  set(options: SetOptions): Promise<void> {
    return this.inner.set(options);
  }
  get(): Promise<PortStatus> {
    return this.inner.get();
  }
  getBaudRate(): Promise<{ baudRate: number }> {
    return this.inner.getBaudRate();
  }
  flush(): Promise<void> {
    return this.inner.flush();
  }
  drain(): Promise<void> {
    return this.inner.drain();
  }
}
