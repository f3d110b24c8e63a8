// A TCP proxy between the gateway and Mosquitto that injects the network faults of the FMEA:
// blackhole (socket stays open, nothing passes, no RST), connection reset, added latency, a cut
// after N bytes, and MQTT packet rewrites (drop a PUBACK, change a CONNACK reason, corrupt a payload).
import { connect, type Server, type Socket } from 'node:net';
import { loopbackServer } from './local-broker.js';
import { generate, parser as mqttParser, type IPublishPacket, type Packet } from 'mqtt-packet';

/** What a rewrite may do to the connection a packet came on, besides forwarding or dropping it. */
export interface LinkControl {
  /** Sends `packet` back to the side it came from (a broker's answer the broker never saw). */
  answer(packet: Packet): void;
  /** Closes both sockets of this connection. */
  close(): void;
}

/** Returns the packet to forward (changed or not), or null to drop it. */
export type PacketRewrite = (packet: Packet, connection: number, link: LinkControl) => Packet | null;

interface Link {
  client: Socket;
  server: Socket;
  id: number;
}

export class FaultProxy {
  /** Nothing is forwarded in either direction while set; sockets stay open. */
  blackhole = false;
  latencyMs = 0;
  /** Close a connection abruptly once this many client→broker bytes have passed (each connection). */
  cutAfterBytes: number | null = null;
  /** Packets broker → gateway. Set before the connection it should act on is made. */
  toClient: PacketRewrite | null = null;
  /** Packets gateway → broker. */
  toServer: PacketRewrite | null = null;
  connections = 0;
  /** Connections closed by `cutAfterBytes`. */
  cuts = 0;
  /** Bytes swallowed by the blackhole. */
  blackholedBytes = 0;
  private readonly links = new Set<Link>();
  /** Topic aliases (MQTT 5) the gateway set up, by connection and alias. */
  private readonly aliases = new Map<string, string>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
    private readonly targetPort: number,
  ) {}

  static async start(targetPort: number): Promise<FaultProxy> {
    const { server, port } = await loopbackServer();
    const proxy = new FaultProxy(server, port, targetPort);
    server.on('connection', (client) => proxy.accept(client));
    return proxy;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  /**
   * The topic of a gateway → broker PUBLISH, its alias resolved: after the first PUBLISH on an
   * aliased topic, later ones carry only the alias. Call it for each PUBLISH a rewrite sees.
   */
  topicOf(packet: IPublishPacket, connection: number): string {
    const alias = packet.properties?.topicAlias;
    if (alias === undefined) return packet.topic;
    const key = `${connection}/${alias}`;
    if (packet.topic !== '') this.aliases.set(key, packet.topic);
    return packet.topic !== '' ? packet.topic : (this.aliases.get(key) ?? '');
  }

  /** Resets every open connection (TCP RST). */
  resetAll(): void {
    for (const link of this.links) {
      link.client.resetAndDestroy();
      link.server.destroy();
    }
    this.links.clear();
  }

  /** Sends the gateway a server DISCONNECT with `reasonCode` on every open connection, then closes them. */
  disconnectAll(reasonCode: number, reasonString: string): void {
    for (const link of this.links) {
      link.client.end(
        generate({ cmd: 'disconnect', reasonCode, properties: { reasonString } }, { protocolVersion: 5 }),
      );
      link.server.destroy();
    }
    this.links.clear();
  }

  async close(): Promise<void> {
    this.resetAll();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private accept(client: Socket): void {
    const id = ++this.connections;
    const server = connect({ host: '127.0.0.1', port: this.targetPort });
    const link: Link = { client, server, id };
    this.links.add(link);
    const destroy = (): void => {
      this.links.delete(link);
      client.destroy();
      server.destroy();
    };
    client.on('error', destroy).on('close', () => this.links.delete(link));
    server.on('error', destroy).on('close', () => this.links.delete(link));
    let upstreamBytes = 0;
    this.pipe(client, server, this.toServer, id, destroy, (n) => {
      upstreamBytes += n;
      if (this.cutAfterBytes !== null && upstreamBytes >= this.cutAfterBytes) {
        this.cuts++;
        destroy();
        return false;
      }
      return true;
    });
    this.pipe(server, client, this.toClient, id, destroy, () => true);
  }

  private pipe(
    from: Socket,
    to: Socket,
    rewrite: PacketRewrite | null,
    id: number,
    close: () => void,
    admit: (bytes: number) => boolean,
  ): void {
    // Everything, the end of the stream included, goes through the same delay, so it stays in order.
    const later = (fn: () => void): void => {
      if (this.latencyMs > 0) setTimeout(fn, this.latencyMs);
      else fn();
    };
    const send = (chunk: Buffer): void => {
      if (this.blackhole) {
        this.blackholedBytes += chunk.byteLength;
        return;
      }
      if (!admit(chunk.byteLength)) return;
      later(() => {
        if (!to.destroyed && to.writable) to.write(chunk);
      });
    };
    // A peer that closes cleanly (a broker's DISCONNECT then FIN) is passed on as a FIN after the data.
    from.on('end', () =>
      later(() => {
        if (!to.destroyed) to.end();
      }),
    );
    if (rewrite === null) {
      from.on('data', send);
      return;
    }
    const link: LinkControl = {
      answer: (packet) => {
        if (!from.destroyed && from.writable) from.write(generate(packet, { protocolVersion: 5 }));
      },
      close,
    };
    const parse = mqttParser({ protocolVersion: 5 });
    parse.on('packet', (packet: Packet) => {
      const out = rewrite(packet, id, link);
      if (out !== null) send(generate(out, { protocolVersion: 5 }));
    });
    parse.on('error', () => from.destroy());
    from.on('data', (chunk: Buffer) => {
      if (this.blackhole) this.blackholedBytes += chunk.byteLength;
      else parse.parse(chunk);
    });
  }
}
