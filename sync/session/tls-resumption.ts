// TLS session resumption for the broker connection: the latest session ticket the broker sent is
// offered on the next connection, so a cellular drop costs an abbreviated handshake (no certificate
// chains either way) instead of a full one. mqtt.js builds each TLS socket from the client's
// options, so the ticket is handed over there.
import { TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';

export interface TlsHandshakeCounts {
  /** Handshakes that sent certificates both ways. */
  full: number;
  /** Handshakes that resumed an earlier session from its ticket. */
  resumed: number;
}

export class TlsResumption {
  readonly counts: TlsHandshakeCounts = { full: 0, resumed: 0 };
  private watched: Duplex | null = null;
  /** The socket whose tickets are kept: the last one watched, unless forgotten since. */
  private ticketsFrom: Duplex | null = null;
  /** The last handshake's protocol and whether it resumed ("TLSv1.3, resumed"); null before one. */
  lastHandshake: string | null = null;

  constructor(
    /** Where mqtt.js reads the next socket's options from (the client's options; tls.connect's `session`). */
    private readonly options: object,
    private readonly enabled: boolean,
  ) {}

  /** Keeps the tickets `stream` receives for the next connection, and counts how it shook hands. */
  watch(stream: Duplex | undefined): void {
    if (!(stream instanceof TLSSocket) || stream === this.watched) return;
    this.watched = stream;
    this.ticketsFrom = stream;
    stream.once('secureConnect', () => {
      const resumed = stream.isSessionReused();
      if (resumed) this.counts.resumed++;
      else this.counts.full++;
      this.lastHandshake = `${stream.getProtocol() ?? 'TLS'}${resumed ? ', resumed' : ''}`;
    });
    if (!this.enabled) return;
    // TLS 1.3 sends tickets after the handshake; the last one is the freshest.
    stream.on('session', (ticket: Buffer) => {
      if (this.ticketsFrom === stream) Object.assign(this.options, { session: ticket });
    });
  }

  /**
   * New credentials, or a broker that refused ours: the next handshake is a full one. A ticket that
   * a socket made before this still sends (TLS 1.3 sends them after the handshake) is not kept.
   */
  forget(): void {
    this.ticketsFrom = null;
    Reflect.deleteProperty(this.options, 'session');
  }
}
