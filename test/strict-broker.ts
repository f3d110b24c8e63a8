// A scripted MQTT 5 broker that enforces the limits it advertises, as a strict broker (EMQX, HiveMQ)
// does and Mosquitto's defaults never show: Receive Maximum (§3.3.4: one QoS 1 PUBLISH too many is
// DISCONNECT 0x93), Maximum Packet Size (0x95) and Topic Alias Maximum (0x94), and the rule that a
// PUBLISH is resent only on a new connection (§4.4: a DUP repeat of a payload this connection
// already carried is 0x82).
// It acknowledges after `pubackDelayMs`, so several publishes overlap, and keeps what it accepted. Built on
// mqtt-packet: enough of the protocol for one client, nothing routed.
import type { Server, Socket } from 'node:net';
import { loopbackServer } from '../bench/rig/local-broker.js';
import mqttPacket, { type IConnectPacket, type IPublishPacket, type Packet } from 'mqtt-packet';

export interface StrictBrokerOptions {
  receiveMaximum: number;
  maximumPacketSize?: number;
  topicAliasMaximum?: number;
  /** How long each PUBACK waits (lets several QoS 1 publishes be in flight). */
  pubackDelayMs: number;
  /** The first `count` QoS 1 PUBLISHes are acknowledged only after `delayMs` (a stuck broker). */
  stalledPubacks?: { count: number; delayMs: number };
}

export interface StrictBrokerCounts {
  connects: number;
  /** DISCONNECTs the broker sent, by reason code. */
  disconnects: Map<number, number>;
  /** Most QoS 1 publishes of one connection awaiting their PUBACK at once. */
  peakInflight: number;
  /** QoS 1 PUBLISHes received, and those the broker held past `stalledPubacks.delayMs`. */
  publishes: number;
  stalled: number;
}

export interface AcceptedPublish {
  topic: string;
  payload: Buffer;
  properties: IPublishPacket['properties'];
  dup: boolean;
  /** Which connection (1, 2, ...) carried it. */
  connection: number;
}

export class StrictBroker {
  readonly counts: StrictBrokerCounts = {
    connects: 0,
    disconnects: new Map(),
    peakInflight: 0,
    publishes: 0,
    stalled: 0,
  };
  readonly accepted: AcceptedPublish[] = [];
  /** QoS 1 publishes received and not yet acknowledged, over all connections. */
  pending = 0;
  private readonly sockets = new Set<Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
    private readonly options: StrictBrokerOptions,
  ) {}

  static async start(options: StrictBrokerOptions): Promise<StrictBroker> {
    const { server, port } = await loopbackServer();
    const broker = new StrictBroker(server, port, options);
    server.on('connection', (socket) => broker.serve(socket));
    return broker;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private serve(socket: Socket): void {
    this.sockets.add(socket);
    const parser = mqttPacket.parser({ protocolVersion: 5 });
    const aliases = new Map<number, string>();
    /** Payloads this connection carried: the same one again with DUP is a resend on a live connection. */
    const seen = new Set<string>();
    let connection = 0;
    let inflight = 0;
    let open = true;
    const send = (packet: Packet): void => {
      if (open) socket.write(mqttPacket.generate(packet, { protocolVersion: 5 }));
    };
    const refuse = (reasonCode: number, reasonString: string): void => {
      this.counts.disconnects.set(reasonCode, (this.counts.disconnects.get(reasonCode) ?? 0) + 1);
      send({ cmd: 'disconnect', reasonCode, properties: { reasonString } });
      open = false;
      socket.end();
    };
    socket.on('close', () => {
      open = false;
      this.sockets.delete(socket);
    });
    socket.on('error', () => undefined);
    socket.on('data', (chunk) => parser.parse(chunk));
    parser.on('error', () => refuse(0x81, 'malformed packet'));
    parser.on('packet', (packet: Packet) => {
      if (!open) return;
      const max = this.options.maximumPacketSize;
      if (max !== undefined && packet.cmd === 'publish' && packetBytes(packet) > max)
        return refuse(0x95, `packet larger than ${max}`);
      switch (packet.cmd) {
        case 'connect':
          connection = ++this.counts.connects;
          return this.connack(packet, send);
        case 'subscribe':
          return send({ cmd: 'suback', messageId: packet.messageId, granted: packet.subscriptions.map(() => 1) });
        case 'pingreq':
          return send({ cmd: 'pingresp' });
        case 'disconnect':
          open = false;
          return void socket.end();
        case 'publish':
          break;
        default:
          return;
      }
      const alias = packet.properties?.topicAlias;
      if (alias !== undefined) {
        if (alias === 0 || alias > (this.options.topicAliasMaximum ?? 0))
          return refuse(0x94, `topic alias ${alias} over the maximum`);
        if (packet.topic !== '') aliases.set(alias, packet.topic);
        else if (!aliases.has(alias)) return refuse(0x82, `unknown topic alias ${alias}`);
      }
      const topic = packet.topic !== '' ? packet.topic : (aliases.get(alias as number) as string);
      if (packet.qos === 0) return;
      const payload = packet.payload as Buffer;
      const key = `${topic}\n${payload.toString('base64')}`;
      if (packet.dup && seen.has(key)) return refuse(0x82, 'a PUBLISH resent on a live connection (MQTT-4.4.0-1)');
      seen.add(key);
      inflight++;
      this.pending++;
      this.counts.peakInflight = Math.max(this.counts.peakInflight, inflight);
      if (inflight > this.options.receiveMaximum)
        return refuse(0x93, `receive maximum ${this.options.receiveMaximum} exceeded`);
      const stall = this.options.stalledPubacks;
      const stalled = stall !== undefined && this.counts.publishes < stall.count;
      this.counts.publishes++;
      const timer = setTimeout(
        () => {
          this.timers.delete(timer);
          this.pending--;
          if (!open) return;
          if (stalled) this.counts.stalled++;
          inflight--;
          this.accepted.push({ topic, payload, properties: packet.properties, dup: packet.dup, connection });
          send({ cmd: 'puback', messageId: packet.messageId as number, reasonCode: 0 });
        },
        stalled ? stall.delayMs : this.options.pubackDelayMs,
      );
      this.timers.add(timer);
    });
  }

  private connack(connect: IConnectPacket, send: (p: Packet) => void): void {
    send({
      cmd: 'connack',
      sessionPresent: false,
      reasonCode: 0,
      properties: {
        receiveMaximum: this.options.receiveMaximum,
        ...(this.options.maximumPacketSize !== undefined ? { maximumPacketSize: this.options.maximumPacketSize } : {}),
        topicAliasMaximum: this.options.topicAliasMaximum ?? 0,
        ...(connect.clientId === '' ? { assignedClientIdentifier: 'strict-client' } : {}),
      },
    });
  }
}

/** Bytes the packet took on the wire: fixed header byte, Remaining Length varint, the rest. */
export function packetBytes(packet: Packet): number {
  const remaining = packet.length ?? 0;
  return 1 + (remaining < 128 ? 1 : remaining < 16_384 ? 2 : remaining < 2_097_152 ? 3 : 4) + remaining;
}
