// The receiver's memory of record layouts (proto/compact-record.ts): each checked against its id
// before use, and compact records that arrive before their layout kept a while instead of refused.
import { checkedLayout, CompactRecordError, layoutKey } from '../proto/compact-record.js';
import { decodeLayout, type RecordLayout } from '../proto/telemetry-codec.js';

/** A compact record waiting for its layout. */
export interface Parked<T> {
  key: string;
  item: T;
  at: number;
}

export class LayoutCache<T> {
  private readonly layouts = new Map<string, RecordLayout>();
  private parked: Array<Parked<T>> = [];

  constructor(
    /** Layouts kept at most (the oldest learnt is forgotten first). */
    private readonly maxLayouts = 10_000,
    /** Records waiting for a layout at most, and for how long. */
    private readonly maxParked = 1_000,
    private readonly parkMs = 60_000,
  ) {}

  get = (key: string): RecordLayout | undefined => this.layouts.get(key);

  /**
   * Learns a layout published on `.../layout/<key>`; throws a CompactRecordError when it is not
   * one, or its content does not give that key. Returns the records that were waiting for it.
   */
  learn(key: string, payload: Uint8Array): T[] {
    const layout = checkedLayout(decodeLayout(payload));
    const id = layoutKey(layout.layoutId);
    if (id !== key) throw new CompactRecordError('COMPACT_INVALID', `layout ${id} published as ${key}`);
    if (!this.layouts.has(key) && this.layouts.size >= this.maxLayouts)
      this.layouts.delete(this.layouts.keys().next().value as string);
    this.layouts.set(key, layout);
    const ready = this.parked.filter((p) => p.key === key).map((p) => p.item);
    this.parked = this.parked.filter((p) => p.key !== key);
    return ready;
  }

  /** Keeps a record until its layout arrives; false when the waiting room is full. */
  park(key: string, item: T, now: number): boolean {
    if (this.parked.length >= this.maxParked) return false;
    this.parked.push({ key, item, at: now });
    return true;
  }

  /** Records that waited longer than allowed: their layout is not coming. */
  expired(now: number): Array<Parked<T>> {
    const gone = this.parked.filter((p) => now - p.at > this.parkMs);
    if (gone.length > 0) this.parked = this.parked.filter((p) => now - p.at <= this.parkMs);
    return gone;
  }
}
