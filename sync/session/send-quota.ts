// MQTT 5 flow control (§4.9): we may have at most the server's Receive Maximum QoS 1 PUBLISHes
// unacknowledged. mqtt.js enforces it only for incoming QoS 2, so every outgoing QoS 1 publish of
// the session takes a slot here before it is written and gives it back on its PUBACK (or when the
// connection that carried it ends).

export class SendQuotaClosedError extends Error {
  readonly code = 'SEND_QUOTA_CLOSED';
}

/** A slot of one connection; giving back a slot of an earlier connection changes nothing. */
export type SendSlot = number;

export class SendQuota {
  private inUse = 0;
  private generation = 0;
  private readonly waiters: Array<{ grant: (slot: SendSlot) => void; refuse: (err: Error) => void }> = [];

  constructor(private max: number) {}

  /** Slots the server allows (its CONNACK Receive Maximum; 65,535 when it names none). */
  get limit(): number {
    return this.max;
  }

  get used(): number {
    return this.inUse;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  /** Resolves once a slot is ours; in arrival order. */
  acquire(): Promise<SendSlot> {
    if (this.inUse < this.max && this.waiters.length === 0) {
      this.inUse++;
      return Promise.resolve(this.generation);
    }
    return new Promise((grant, refuse) => this.waiters.push({ grant, refuse }));
  }

  release(slot: SendSlot): void {
    if (slot !== this.generation) return;
    this.inUse = Math.max(0, this.inUse - 1);
    this.grantWaiting();
  }

  /** A new connection: nothing of the old one is in flight, and the new server's limit applies. */
  reset(limit: number): void {
    this.max = Math.max(1, limit);
    this.generation++;
    this.inUse = 0;
    this.grantWaiting();
  }

  /** Refuses everyone waiting (the session is closing). */
  close(why: string): void {
    for (const w of this.waiters.splice(0)) w.refuse(new SendQuotaClosedError(why));
  }

  private grantWaiting(): void {
    while (this.inUse < this.max && this.waiters.length > 0) {
      this.inUse++;
      this.waiters.shift()?.grant(this.generation);
    }
  }
}
