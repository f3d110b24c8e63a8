// MQTT 5 connection with the connect properties of DESIGN §5, and QoS 1 publish as a promise
// that settles on the PUBACK.
import mqtt, { type IClientOptions, type IConnackPacket, type MqttClient } from 'mqtt';
import { BehaviorSubject, type Observable } from 'rxjs';

export interface MqttSettings {
  url: string;
  clientId: string;
  keepaliveS: number;
  sessionExpiryS: number;
  receiveMaximum: number;
  maximumPacketSize: number;
  connectTimeoutMs: number;
  reconnectMs: number;
  vehicleModel: string;
  firmwareVersion: string;
}

export interface PublishProperties {
  contentType: string;
  userProperties: Record<string, string>;
}

/** A PUBACK with an error reason code, or a publish the client could not send. */
export class PublishError extends Error {
  readonly code = 'PUBLISH_FAILED';
  constructor(
    message: string,
    readonly reasonCode: number | null,
  ) {
    super(message);
    this.name = 'PublishError';
  }
}

export interface ConnectionCounters {
  attempts: number;
  successes: number;
  failures: number;
}

export class MqttTelemetryTransport {
  readonly counters: ConnectionCounters = { attempts: 0, successes: 0, failures: 0 };
  private readonly connectedSubject = new BehaviorSubject<boolean>(false);
  private readonly client: MqttClient;
  /** Broker limits from the last CONNACK. */
  connack: IConnackPacket | null = null;

  constructor(settings: MqttSettings, private readonly log: (msg: string) => void) {
    const options: IClientOptions = {
      protocolVersion: 5,
      clientId: settings.clientId,
      clean: false,
      keepalive: settings.keepaliveS,
      connectTimeout: settings.connectTimeoutMs,
      reconnectPeriod: settings.reconnectMs,
      autoAssignTopicAlias: true,
      properties: {
        sessionExpiryInterval: settings.sessionExpiryS,
        receiveMaximum: settings.receiveMaximum,
        maximumPacketSize: settings.maximumPacketSize,
        requestProblemInformation: true,
        userProperties: { vehicle_model: settings.vehicleModel, firmware_version: settings.firmwareVersion },
      },
    };
    this.counters.attempts++;
    this.client = mqtt.connect(settings.url, options);
    this.client.on('connect', (connack) => {
      this.connack = connack;
      this.counters.successes++;
      this.connectedSubject.next(true);
      this.log(`mqtt: connected to ${settings.url} (session present: ${connack.sessionPresent}, topic alias maximum: ${connack.properties?.topicAliasMaximum ?? 0})`);
    });
    this.client.on('reconnect', () => { this.counters.attempts++; });
    this.client.on('close', () => {
      if (this.connectedSubject.value) this.log('mqtt: connection closed');
      this.connectedSubject.next(false);
    });
    this.client.on('error', (err) => {
      this.counters.failures++;
      this.log(`mqtt: ${err.message}`);
    });
    this.client.on('disconnect', (packet) => this.log(`mqtt: server sent DISCONNECT, reason 0x${(packet.reasonCode ?? 0).toString(16)}`));
  }

  get connected(): Observable<boolean> {
    return this.connectedSubject.asObservable();
  }

  get isConnected(): boolean {
    return this.connectedSubject.value;
  }

  /** Publishes at QoS 1; resolves when the PUBACK arrives (0x00 or 0x10 no subscribers). */
  publish(topic: string, payload: Uint8Array, properties: PublishProperties): Promise<void> {
    return new Promise((resolve, reject) => {
      this.client.publish(topic, Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength), { qos: 1, properties }, (err?: Error) => {
        if (err === undefined || err === null) {
          resolve();
          return;
        }
        const code = (err as Error & { code?: unknown }).code;
        reject(new PublishError(`publish to ${topic} failed: ${err.message}`, typeof code === 'number' ? code : null));
      });
    });
  }

  async close(): Promise<void> {
    await this.client.endAsync();
    this.connectedSubject.complete();
  }
}
