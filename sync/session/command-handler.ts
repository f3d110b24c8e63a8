// Remote commands (issue 4 item 8): `v2c/v1/+/{vehicle_id}/command/request` at QoS 1, a small
// allow-list, each answered on the MQTT 5 response topic with the request's correlation data.
// Anything else gets an error response and a metric; nothing a command says can crash the gateway.
import type { IncomingMessage, MqttSession } from './mqtt-session.js';
import { PairCounts } from '../../core/metrics-registry.js';

export type CommandResult =
  'ok' | 'unknown' | 'malformed' | 'invalid_args' | 'failed' | 'no_response_topic' | 'foreign_response_topic';

export interface CommandActions {
  status(): Promise<Record<string, unknown>>;
  flush(): void;
  /** Heartbeat interval in seconds. */
  setIntervalS(seconds: number): void;
  nowMs(): number;
}

interface CommandRequest {
  command: string;
  args: Record<string, unknown>;
}

const MAX_REQUEST_BYTES = 4096;

export function commandFilter(vehicleId: string): string {
  return `v2c/v1/+/${vehicleId}/command/request`;
}

/** Whether `topic` is a command request for this vehicle (the session also carries time and certificate answers). */
export function isCommandTopic(topic: string, vehicleId: string): boolean {
  const parts = topic.split('/');
  return (
    parts.length === 6 &&
    parts[0] === 'v2c' &&
    parts[1] === 'v1' &&
    parts[3] === vehicleId &&
    parts[4] === 'command' &&
    parts[5] === 'request'
  );
}

// Wildcards, and a NUL (MQTT refuses it in a topic): never in a topic we answer on.
// eslint-disable-next-line no-control-regex
const WILDCARD_OR_NUL = /[+#\u0000]/;

/**
 * Whether a command's answer may go to `responseTopic`: only this vehicle's own command responses
 * (`v2c/v1/{region}/{vehicle}/command/response`, optionally with a per-request suffix), never a
 * topic a requester chose to make us publish to (its telemetry, another vehicle's commands).
 */
export function isOwnResponseTopic(responseTopic: string, requestTopic: string): boolean {
  const own = `${requestTopic.slice(0, requestTopic.length - 'request'.length)}response`;
  return (
    requestTopic.endsWith('/command/request') &&
    (responseTopic === own || (responseTopic.startsWith(`${own}/`) && !WILDCARD_OR_NUL.test(responseTopic)))
  );
}

/** Parses a request: JSON `{ "command": "...", "args": { ... } }`, or why it is not one. */
export function parseCommand(payload: Buffer): CommandRequest | string {
  if (payload.byteLength > MAX_REQUEST_BYTES)
    return `request of ${payload.byteLength} bytes, at most ${MAX_REQUEST_BYTES} expected`;
  let body: unknown;
  try {
    body = JSON.parse(payload.toString('utf8'));
  } catch {
    return 'not JSON';
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return 'expected a JSON object';
  const { command, args } = body as { command?: unknown; args?: unknown };
  if (typeof command !== 'string' || command === '') return 'expected "command" to be a non-empty string';
  if (args !== undefined && (args === null || typeof args !== 'object' || Array.isArray(args)))
    return 'expected "args" to be an object';
  return { command, args: (args ?? {}) as Record<string, unknown> };
}

export class CommandHandler {
  /** Commands handled, by command (or "-" when unparseable) and result. */
  /** Commands handled, by command and result. */
  readonly counts = new PairCounts();

  constructor(
    private readonly session: MqttSession,
    private readonly actions: CommandActions,
    private readonly log: (msg: string) => void,
  ) {}

  async handle(message: IncomingMessage): Promise<void> {
    const props = message.packet.properties;
    const responseTopic = props?.responseTopic;
    const parsed = parseCommand(message.payload);
    const name = typeof parsed === 'string' ? '-' : parsed.command;
    if (responseTopic !== undefined && !isOwnResponseTopic(responseTopic, message.topic)) {
      // Neither run nor answered: a requester must not make this vehicle publish where it chooses.
      this.counts.add(name, 'foreign_response_topic');
      this.log(
        `command: SECURITY: "${name}" asks for its answer on ${responseTopic}, not this vehicle's command responses; refused`,
      );
      return;
    }
    let result: CommandResult;
    let body: Record<string, unknown>;
    if (typeof parsed === 'string') {
      [result, body] = ['malformed', { error: 'malformed', detail: parsed }];
    } else {
      [result, body] = await this.run(parsed).catch((err: unknown): [CommandResult, Record<string, unknown>] => [
        'failed',
        { error: 'failed', detail: (err as Error).message },
      ]);
    }
    if (responseTopic === undefined) {
      result = result === 'ok' ? 'no_response_topic' : result;
      this.log(`command: "${name}" on ${message.topic} has no response topic; not answered`);
    } else {
      this.session.reply(responseTopic, Buffer.from(JSON.stringify({ command: name, result, ...body })), {
        contentType: 'application/json',
        ...(props?.correlationData !== undefined ? { correlationData: props.correlationData } : {}),
      });
    }
    this.counts.add(name, result);
    if (result !== 'ok' && result !== 'no_response_topic')
      this.log(`command: "${name}" refused: ${result}${typeof body.detail === 'string' ? ` (${body.detail})` : ''}`);
  }

  private async run(request: CommandRequest): Promise<[CommandResult, Record<string, unknown>]> {
    switch (request.command) {
      case 'ping':
        return ['ok', { time_ms: this.actions.nowMs() }];
      case 'status':
        return ['ok', await this.actions.status()];
      case 'flush':
        this.actions.flush();
        return ['ok', {}];
      case 'set_interval': {
        const seconds = request.args.heartbeat_s;
        if (typeof seconds !== 'number' || !Number.isInteger(seconds) || seconds < 5 || seconds > 3600) {
          return [
            'invalid_args',
            { error: 'invalid_args', detail: 'expected args.heartbeat_s to be an integer 5..3600' },
          ];
        }
        this.actions.setIntervalS(seconds);
        return ['ok', { heartbeat_s: seconds }];
      }
      default:
        return [
          'unknown',
          { error: 'unknown_command', detail: `"${request.command}" is not one of ping, status, flush, set_interval` },
        ];
    }
  }
}
