// The MQTT 5 session to the broker: connect properties of DESIGN §5, our own reconnect schedule
// (reconnect-policy.ts) instead of mqtt.js's fixed period, QoS 1 publishes that settle on the
// PUBACK within a timeout, and the packet-size limit from the CONNACK. MQTT 5 forbids resending a
// PUBLISH on a live connection (§4.4, MQTT-4.4.0-1): a missing PUBACK means the connection is
// presumed broken and is closed; the outbox sends the record again, with DUP, on the next one.
//
// mqtt.js keeps unacknowledged publishes in an in-memory store and replays them after a reconnect.
// The outbox is our only source of truth (docs/decisions.md): when a connection ends, every
// publish in flight is withdrawn from mqtt.js and fails here, and the outbox sends it again.
import mqtt, {
  type IClientOptions,
  type IConnackPacket,
  type IDisconnectPacket,
  type IPublishPacket,
  type MqttClient,
} from 'mqtt';
import { generate } from 'mqtt-packet';
import type { SecureContextOptions } from 'node:tls';
import { BehaviorSubject, filter, Subject, type Observable, type Subscription } from 'rxjs';
import { SendQuota, SendQuotaClosedError } from './send-quota.js';
import { TlsResumption, type TlsHandshakeCounts } from './tls-resumption.js';
import {
  isCertificateError,
  nextAttempt,
  type ConnectOutcome,
  type ReconnectSettings,
  type SessionState,
} from './reconnect-policy.js';

export interface MqttSessionSettings {
  url: string;
  clientId: string;
  keepaliveS: number;
  sessionExpiryS: number;
  receiveMaximum: number;
  /** Largest packet we accept (sent in CONNECT). */
  maximumPacketSize: number;
  /** Largest packet we send when the broker names no limit in its CONNACK. */
  maxOutgoingPacketBytes: number;
  connectTimeoutMs: number;
  pubackTimeoutMs: number;
  reconnect: ReconnectSettings;
  vehicleModel: string;
  firmwareVersion: string;
  /** Mutual TLS: the device's credentials; the broker's certificate is always verified. */
  tls?: SessionTls;
  /** Offer the broker's last session ticket when reconnecting (an abbreviated handshake). */
  tlsSessionResumption?: boolean;
}

/** How the device connects over TLS, whatever its credentials. */
export interface TlsPolicy {
  minVersion: 'TLSv1.2' | 'TLSv1.3';
  /** TLS 1.2 resumes a session with a smaller handshake than 1.3 (bench -- month). */
  maxVersion?: 'TLSv1.2' | 'TLSv1.3';
  /** Name to verify in the broker's certificate when it is not the URL's host. */
  servername?: string;
}

export interface SessionTls extends TlsPolicy {
  ca: string;
  cert: string;
  key: string;
}

export interface PublishProperties {
  /** Left out where the topic says what the payload is (compact records: every byte counts). */
  contentType?: string;
  userProperties: Record<string, string>;
  /** Seconds the broker keeps the message (a retained layout must not outlive its use for ever). */
  messageExpiryInterval?: number;
  /** Request/response (MQTT 5): where the answer goes and what it must carry back. */
  responseTopic?: string;
  correlationData?: Buffer;
}

export type PublishErrorCode =
  'PACKET_TOO_LARGE' | 'NOT_CONNECTED' | 'PUBACK_TIMEOUT' | 'PUBACK_ERROR' | 'CONNECTION_LOST';

/** A publish that did not get a successful PUBACK; `reasonCode` is the PUBACK's when there was one. */
export class PublishError extends Error {
  constructor(
    readonly code: PublishErrorCode,
    message: string,
    readonly reasonCode: number | null = null,
  ) {
    super(message);
    this.name = 'PublishError';
  }
}

export interface SessionCounters {
  attempts: number;
  successes: number;
  failures: number;
  pubackTimeouts: number;
  /** Server DISCONNECTs by reason code. */
  serverDisconnects: Map<number, number>;
  /** CONNACK refusals by reason code. */
  connackRefusals: Map<number, number>;
  /** TLS handshakes, full and resumed. */
  tlsHandshakes: TlsHandshakeCounts;
}

export interface StateChange {
  state: SessionState;
  /** Wait before the next attempt, for backoff states. */
  delayMs: number;
  reason: string;
}

export interface IncomingMessage {
  topic: string;
  payload: Buffer;
  packet: IPublishPacket;
}

const MQTT_MAX_PACKET = 268_435_460;
/** How long a clean close may take before the socket is dropped. */
const END_TIMEOUT_MS = 2000;
/** The Receive Maximum a CONNACK without one means (MQTT 5 §3.2.2.3.3). */
const MQTT_RECEIVE_MAXIMUM = 65_535;

/** The properties as they go on the wire. */
function onWire(properties: Partial<PublishProperties>): Partial<PublishProperties> {
  // An empty user-property list is encoded as a property Mosquitto never acknowledges: leave it out
  // (mqtt-packet also fails to size a packet with one).
  const { userProperties, ...rest } = properties;
  return userProperties !== undefined && Object.keys(userProperties).length > 0 ? properties : rest;
}

/**
 * Bytes a QoS 1 MQTT 5 PUBLISH takes on the wire. With `topicAlias`, the topic name is left out
 * (a publish after the first one on an aliased topic).
 */
export function publishPacketBytes(
  topic: string,
  payload: Uint8Array,
  publishProperties: Partial<PublishProperties>,
  topicAlias?: number,
): number {
  const properties = onWire(publishProperties);
  return generate(
    {
      cmd: 'publish',
      topic: topicAlias === undefined ? topic : '',
      payload: Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength),
      qos: 1,
      dup: false,
      retain: false,
      messageId: 1,
      properties: topicAlias === undefined ? properties : { ...properties, topicAlias },
    },
    { protocolVersion: 5 },
  ).byteLength;
}

/** node:tls options for mutual TLS: TLS 1.2 at least, the broker's certificate and name verified. */
function tlsOptions(
  tls: SessionTls,
): Partial<IClientOptions> & Pick<SecureContextOptions, 'minVersion' | 'maxVersion'> {
  return {
    ca: tls.ca,
    cert: tls.cert,
    key: tls.key,
    minVersion: tls.minVersion,
    ...(tls.maxVersion !== undefined ? { maxVersion: tls.maxVersion } : {}),
    rejectUnauthorized: true,
    ...(tls.servername !== undefined ? { servername: tls.servername } : {}),
  };
}

export class MqttSession {
  readonly counters: SessionCounters;
  private readonly connectedSubject = new BehaviorSubject<boolean>(false);
  private readonly stateSubject = new BehaviorSubject<StateChange>({
    state: 'connecting',
    delayMs: 0,
    reason: 'start',
  });
  private readonly messagesSubject = new Subject<IncomingMessage>();
  private readonly pubacksSubject = new Subject<void>();
  private readonly client: MqttClient;
  private readonly tlsResumption: TlsResumption;
  private failuresInRow = 0;
  private lastOutcome: ConnectOutcome | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** Publishes waiting for their PUBACK, by MQTT packet id: their deadline, and how a lost connection fails them. */
  private readonly waiting = new Map<number, { deadlineMs: number; fail: (err: PublishError) => void }>();
  /** Largest packet the broker lets us send (its CONNACK Maximum Packet Size, or our setting). */
  maxPacketBytes: number;
  /** Largest packet we ever send, whatever the broker: a record over it can never be delivered. */
  readonly ownMaxPacketBytes: number;
  /** QoS 1 publishes of every kind in flight ≤ the server's Receive Maximum (§3.3.4). */
  readonly sendQuota = new SendQuota(MQTT_RECEIVE_MAXIMUM);
  connack: IConnackPacket | null = null;

  constructor(
    private readonly settings: MqttSessionSettings,
    private readonly log: (msg: string) => void,
    private readonly random: () => number = Math.random,
  ) {
    this.ownMaxPacketBytes = Math.min(settings.maxOutgoingPacketBytes, MQTT_MAX_PACKET);
    this.maxPacketBytes = this.ownMaxPacketBytes;
    const options: IClientOptions = {
      protocolVersion: 5,
      clientId: settings.clientId,
      clean: false,
      keepalive: settings.keepaliveS,
      connectTimeout: settings.connectTimeoutMs,
      reconnectPeriod: 0,
      manualConnect: true,
      autoAssignTopicAlias: true,
      // mqtt-packet's default pre-builds a Buffer for each of the 65,536 message ids on first use:
      // 6.6 MiB of heap that every full GC marks again, 15 MiB of RSS and ~28 ms of CPU (issue 14).
      writeCache: false,
      properties: {
        sessionExpiryInterval: settings.sessionExpiryS,
        receiveMaximum: settings.receiveMaximum,
        maximumPacketSize: settings.maximumPacketSize,
        requestProblemInformation: true,
        userProperties: { vehicle_model: settings.vehicleModel, firmware_version: settings.firmwareVersion },
      },
      ...(settings.tls !== undefined ? tlsOptions(settings.tls) : {}),
    };
    this.client = mqtt.connect(settings.url, options);
    this.tlsResumption = new TlsResumption(this.client.options, settings.tlsSessionResumption ?? true);
    this.counters = {
      attempts: 0,
      successes: 0,
      failures: 0,
      pubackTimeouts: 0,
      serverDisconnects: new Map(),
      connackRefusals: new Map(),
      tlsHandshakes: this.tlsResumption.counts,
    };
    this.client.on('connect', (connack) => this.onConnect(connack));
    this.client.on('close', () => this.onClose());
    this.client.on('error', (err: Error & { code?: unknown }) => {
      if (typeof err.code === 'number') {
        this.lastOutcome = { kind: 'connack', reasonCode: err.code };
        this.counters.connackRefusals.set(err.code, (this.counters.connackRefusals.get(err.code) ?? 0) + 1);
      } else if (isCertificateError(err)) {
        this.tlsResumption.forget();
        this.lastOutcome = { kind: 'tls-certificate', detail: err.message };
      } else {
        this.lastOutcome ??= { kind: 'network', detail: err.message };
      }
      this.log(`mqtt: ${err.message}`);
    });
    this.client.on('disconnect', (packet: IDisconnectPacket) => {
      const code = packet.reasonCode ?? 0;
      this.counters.serverDisconnects.set(code, (this.counters.serverDisconnects.get(code) ?? 0) + 1);
      this.lastOutcome = { kind: 'server-disconnect', reasonCode: code };
      const why = packet.properties?.reasonString;
      this.log(
        `mqtt: the broker sent DISCONNECT 0x${code.toString(16)}${why !== undefined ? ` (${why})` : ''}${packet.properties?.serverReference !== undefined ? `, server reference ${packet.properties.serverReference}` : ''}`,
      );
    });
    this.client.on('message', (topic, payload, packet) => this.messagesSubject.next({ topic, payload, packet }));
  }

  start(): void {
    this.attempt();
  }

  /**
   * Does not connect: the certificate cannot work (expired, not yet valid). The state says so
   * until `useCredentials` brings a usable one.
   */
  holdForCertificate(reason: string): void {
    this.log(`mqtt: not connecting: ${reason}`);
    this.setState({ state: 'certificate-renewal', delayMs: 0, reason });
  }

  /** Connects with new credentials from now on (a renewed certificate, or the old one put back). */
  useCredentials(tls: SessionTls): void {
    Object.assign(this.client.options, tlsOptions(tls));
    this.tlsResumption.forget();
    // Connected: the socket is closed and the reconnect schedule's first wait applies.
    if (this.isConnected) {
      this.dropConnection('reconnecting with new credentials');
    } else if (this.counters.attempts === 0) {
      this.attempt();
    } else {
      this.retryNow();
    }
  }

  get connected(): Observable<boolean> {
    return this.connectedSubject.asObservable();
  }

  /** The broker connection's last TLS handshake ("TLSv1.2, resumed"); null without TLS or before one. */
  get tlsHandshake(): string | null {
    return this.tlsResumption.lastHandshake;
  }

  get isConnected(): boolean {
    return this.connectedSubject.value;
  }

  get states(): Observable<StateChange> {
    return this.stateSubject.asObservable();
  }

  get state(): SessionState {
    return this.stateSubject.value.state;
  }

  get messages(): Observable<IncomingMessage> {
    return this.messagesSubject.asObservable();
  }

  /** Each PUBACK the broker sent, whatever its reason code: proof that the connection carries data both ways. */
  get pubacks(): Observable<void> {
    return this.pubacksSubject.asObservable();
  }

  /**
   * Whether a publish sent on this connection must be acknowledged within `withinMs`: its PUBACK,
   * or the connection closed for want of it, will come no later than that.
   */
  awaitsPubackWithin(withinMs: number): boolean {
    const by = performance.now() + withinMs;
    for (const { deadlineMs } of this.waiting.values()) if (deadlineMs <= by) return true;
    return false;
  }

  /**
   * Publishes at QoS 1 and resolves with the PUBACK reason code (0x00, or 0x10 no matching
   * subscribers) once it arrives. No PUBACK within the timeout: the connection is closed (a broker
   * that still holds the PUBLISH counts it against its Receive Maximum until the connection ends)
   * and the publish fails with PUBACK_TIMEOUT. A payload over the broker's limit is refused before
   * it is sent.
   */
  async publish(
    topic: string,
    payload: Uint8Array,
    publishProperties: PublishProperties,
    options: { dup?: boolean; timeoutMs?: number; retain?: boolean } = {},
  ): Promise<number> {
    const properties = onWire(publishProperties);
    const bytes = publishPacketBytes(topic, payload, properties);
    if (bytes > this.maxPacketBytes)
      throw new PublishError(
        'PACKET_TOO_LARGE',
        `a ${bytes}-byte PUBLISH exceeds the broker's maximum packet size of ${this.maxPacketBytes} bytes`,
      );
    if (!this.isConnected) throw new PublishError('NOT_CONNECTED', 'not connected to the broker');
    const slot = await this.sendQuota.acquire().catch((err: unknown) => {
      throw err instanceof SendQuotaClosedError ? new PublishError('NOT_CONNECTED', err.message) : err;
    });
    // The PUBACK timeout starts only once the slot is ours: waiting for one is not the broker's silence.
    const timeoutMs = options.timeoutMs ?? this.settings.pubackTimeoutMs;
    let outcome: number | 'timeout';
    try {
      // The connection may have ended while this publish waited for a slot.
      if (!this.isConnected) throw new PublishError('NOT_CONNECTED', 'not connected to the broker');
      outcome = await this.publishOnce(topic, payload, properties, options, timeoutMs);
    } catch (err) {
      this.sendQuota.release(slot);
      if (err instanceof PublishError && err.code === 'PUBACK_ERROR') this.pubacksSubject.next();
      throw err;
    }
    if (outcome !== 'timeout') {
      this.sendQuota.release(slot);
      this.pubacksSubject.next();
      return outcome;
    }
    // The slot stays taken: the broker may still hold this PUBLISH until the connection ends.
    this.counters.pubackTimeouts++;
    this.dropConnection(
      `no PUBACK within ${timeoutMs} ms for a PUBLISH to ${topic} (MQTT 5 resends only on a new connection)`,
    );
    throw new PublishError(
      'PUBACK_TIMEOUT',
      `no PUBACK from the broker within ${timeoutMs} ms; the connection was closed`,
    );
  }

  private publishOnce(
    topic: string,
    payload: Uint8Array,
    properties: Partial<PublishProperties>,
    { dup = false, retain = false }: { dup?: boolean; retain?: boolean },
    timeoutMs: number,
  ): Promise<number | 'timeout'> {
    return new Promise((resolve, reject) => {
      const deadlineMs = performance.now() + timeoutMs;
      let packetId: number | null = null;
      let settled = false;
      const settle = (): boolean => {
        if (settled) return false;
        settled = true;
        clearTimeout(timer);
        if (packetId !== null) this.waiting.delete(packetId);
        return true;
      };
      const withdraw = (): void => {
        // mqtt.js would otherwise keep the packet and replay it after a reconnect.
        if (packetId !== null && this.client.outgoing[packetId] !== undefined)
          this.client.removeOutgoingMessage(packetId);
      };
      // After a stall of our own (a CPU-starved Pi), timers run before the socket is read: a PUBACK
      // that arrived during the stall is still unread. The deadline is judged only after one more
      // turn of I/O, so our own lateness is never taken for the broker's silence.
      const timer = setTimeout(() => {
        setImmediate(() => {
          if (!settle()) return;
          withdraw();
          resolve('timeout');
        });
      }, timeoutMs);
      this.client.publish(
        topic,
        Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength),
        {
          qos: 1,
          dup,
          retain,
          properties,
          // Runs synchronously when mqtt.js stores the packet, right after it allocated the packet id.
          cbStorePut: () => {
            packetId = this.client.getLastMessageId();
            this.waiting.set(packetId, {
              deadlineMs,
              fail: (err) => {
                if (settle()) {
                  withdraw();
                  reject(err);
                }
              },
            });
          },
        },
        (err, packet) => {
          if (!settle()) return;
          if (err === undefined || err === null) {
            resolve((packet as { reasonCode?: number } | undefined)?.reasonCode ?? 0);
            return;
          }
          const code =
            typeof (err as Error & { code?: unknown }).code === 'number'
              ? (err as Error & { code: number }).code
              : null;
          reject(
            new PublishError(
              code !== null ? 'PUBACK_ERROR' : 'CONNECTION_LOST',
              `publish to ${topic}: ${err.message}`,
              code,
            ),
          );
        },
      );
    });
  }

  async subscribe(filter: string): Promise<void> {
    await this.client.subscribeAsync(filter, { qos: 1 });
  }

  /**
   * Keeps `topicFilter` subscribed: at every connect whose session the broker did not keep (a
   * clean one has lost our subscriptions). `onReady` runs once the subscription stands.
   */
  keepSubscribed(topicFilter: string, onReady: () => void = () => undefined): Subscription {
    // "Session present" is not "subscribed": a CONNECT whose CONNACK we gave up on (connack
    // timeout) still made a session at the broker, without our SUBSCRIBE. Only a SUBACK since the
    // last session that was not present proves the subscription stands.
    let confirmed = false;
    return this.connected.pipe(filter((up) => up)).subscribe(() => {
      if (this.connack?.sessionPresent !== true) confirmed = false;
      const subscribed = confirmed
        ? Promise.resolve()
        : this.subscribe(topicFilter).then(() => {
            confirmed = true;
          });
      subscribed.then(onReady, (err: unknown) =>
        this.log(`mqtt: cannot subscribe to ${topicFilter}: ${(err as Error).message}`),
      );
    });
  }

  /** Publishes a reply without waiting for its PUBACK (command responses); it still takes a send slot. */
  reply(topic: string, payload: Buffer, properties: { contentType: string; correlationData?: Buffer }): void {
    this.publish(topic, payload, { ...properties, userProperties: {} }).catch((err: unknown) =>
      this.log(`mqtt: reply on ${topic} not delivered: ${(err as Error).message}`),
    );
  }

  /** Closes the socket without DISCONNECT (split brain: the socket looks alive, nothing gets through). */
  dropConnection(reason: string): void {
    // Once per connection: the socket is already going when several publishes time out together.
    if (!this.isConnected || this.client.stream.destroyed) return;
    this.lastOutcome = { kind: 'lost', detail: reason };
    this.log(`mqtt: closing the connection: ${reason}`);
    this.client.stream.destroy();
  }

  /** Ends a wait (offline, backoff) and tries now: the link came back. */
  retryNow(): void {
    if (this.stopped || this.isConnected || this.retryTimer === null) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.attempt();
  }

  async close(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    const wasConnected = this.isConnected;
    // Nothing may be published from here on: mqtt.js refuses it while disconnecting anyway.
    if (wasConnected) this.connectedSubject.next(false);
    this.failWaiting('the session is closing');
    this.sendQuota.close('the session is closing');
    // A session held back by its certificate never built a socket for mqtt.js to end. One that is
    // still connecting has nothing to say goodbye to: its socket is dropped, or it would outlive us.
    if (this.counters.attempts > 0) await this.endClient(!wasConnected);
    this.setState({ state: 'stopped', delayMs: 0, reason: 'closed' });
    this.connectedSubject.complete();
    this.stateSubject.complete();
    this.messagesSubject.complete();
    this.pubacksSubject.complete();
  }

  /** DISCONNECT and close; a broker that does not let go within END_TIMEOUT_MS gets the socket dropped. */
  private async endClient(force: boolean): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.log(`mqtt: the broker did not close within ${END_TIMEOUT_MS} ms; dropping the connection`);
        this.client.end(true, () => resolve());
      }, END_TIMEOUT_MS);
    });
    try {
      await Promise.race([this.client.endAsync(force), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  private attempt(): void {
    this.retryTimer = null;
    this.lastOutcome = null;
    this.counters.attempts++;
    this.setState({ state: 'connecting', delayMs: 0, reason: `attempt ${this.counters.attempts}` });
    // A fresh in-memory store each time: mqtt.js has nothing of its own to replay.
    if (this.counters.attempts === 1) this.client.connect();
    else this.client.reconnect();
    this.tlsResumption.watch(this.client.stream);
  }

  private onConnect(connack: IConnackPacket): void {
    this.connack = connack;
    this.counters.successes++;
    this.failuresInRow = 0;
    this.maxPacketBytes = Math.min(connack.properties?.maximumPacketSize ?? MQTT_MAX_PACKET, this.ownMaxPacketBytes);
    this.sendQuota.reset(connack.properties?.receiveMaximum ?? MQTT_RECEIVE_MAXIMUM);
    this.log(
      `mqtt: connected to ${this.settings.url} (${this.settings.tls !== undefined ? `${this.tlsHandshake ?? 'TLS'}, ` : ''}session present: ${connack.sessionPresent}, receive maximum: ${this.sendQuota.limit}, topic alias maximum: ${connack.properties?.topicAliasMaximum ?? 0}, maximum packet size: ${this.maxPacketBytes})`,
    );
    this.setState({ state: 'online', delayMs: 0, reason: 'CONNACK 0x00' });
    this.connectedSubject.next(true);
  }

  private onClose(): void {
    const wasConnected = this.isConnected;
    if (wasConnected) this.connectedSubject.next(false);
    this.failWaiting('the connection was lost before the PUBACK');
    if (this.stopped || this.retryTimer !== null) return;
    const outcome = this.lastOutcome ?? { kind: wasConnected ? 'lost' : 'network', detail: 'connection closed' };
    if (!wasConnected || outcome.kind === 'connack') this.counters.failures++;
    const failures = wasConnected && outcome.kind !== 'server-disconnect' ? 0 : this.failuresInRow + 1;
    const next = nextAttempt(outcome, failures, this.settings.reconnect, this.random);
    if (next.countsAsFailure) this.failuresInRow = Math.max(failures, 1);
    const reason =
      outcome.kind === 'connack' || outcome.kind === 'server-disconnect'
        ? `${outcome.kind} 0x${outcome.reasonCode.toString(16)}`
        : `${outcome.kind}: ${outcome.detail}`;
    if (next.state === 'certificate-renewal')
      this.log(
        `mqtt: the broker refuses our credentials (${reason}); no fast retries, next attempt in ${Math.round(next.delayMs / 1000)} s (certificate renewal needed)`,
      );
    else this.log(`mqtt: ${next.state}: next attempt in ${(next.delayMs / 1000).toFixed(1)} s (${reason})`);
    this.setState({ state: next.state, delayMs: next.delayMs, reason });
    this.retryTimer = setTimeout(() => this.attempt(), next.delayMs);
  }

  private failWaiting(why: string): void {
    for (const { fail } of [...this.waiting.values()]) fail(new PublishError('CONNECTION_LOST', why));
  }

  private setState(change: StateChange): void {
    this.stateSubject.next(change);
  }
}
