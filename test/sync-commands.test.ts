// Remote commands over a real Mosquitto: each allow-listed command answered on the MQTT 5 response
// topic with the request's correlation data; unknown, malformed and oversized requests get an
// error response and a metric, and the gateway keeps running.
import t from 'tap';
import mqtt, { type MqttClient } from 'mqtt';
import { syncRig } from './sync-rig.js';
import { isCommandTopic } from '../sync/session/command-handler.js';

interface Reply {
  body: Record<string, unknown>;
  correlation: string | undefined;
}

function requester(
  client: MqttClient,
  requestTopic: string,
  responseTopic: string,
): (payload: string | Buffer, timeoutMs?: number) => Promise<Reply> {
  let n = 0;
  const waiting = new Map<string, (r: Reply) => void>();
  client.on('message', (_topic, payload, packet) => {
    const correlation = packet.properties?.correlationData?.toString();
    const body = JSON.parse(payload.toString()) as Record<string, unknown>;
    if (correlation !== undefined) waiting.get(correlation)?.({ body, correlation });
  });
  return (payload, timeoutMs = 2000) => {
    const correlation = `req-${++n}`;
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        waiting.delete(correlation);
        reject(new Error(`no response to ${correlation}`));
      }, timeoutMs);
      waiting.set(correlation, (r) => {
        clearTimeout(timer);
        waiting.delete(correlation);
        resolve(r);
      });
      client.publish(requestTopic, payload, {
        qos: 1,
        properties: { responseTopic, correlationData: Buffer.from(correlation) },
      });
    });
  };
}

t.test(
  'commands: ping, status, flush, set_interval answered with the correlation data; bad requests get errors, never a crash',
  async (t) => {
    // P2 waits an hour for its batch unless flushed.
    const rig = await syncRig(t, {
      tune: (c) => {
        c.batch.maxAgeMs = 3_600_000;
      },
    });
    await rig.waitFor('online', () => rig.gateway.session.isConnected);
    const client = await mqtt.connectAsync(rig.broker.url, {
      protocolVersion: 5,
      clientId: 'fleet-ops',
      reconnectPeriod: 0,
    });
    t.teardown(() => client.endAsync());
    // Answers go only to the vehicle's own command responses (a requester cannot pick another topic).
    const responses = `v2c/v1/eu-central-1/${rig.config.vehicle.id}/command/response/fleet-ops`;
    await client.subscribeAsync(responses, { qos: 1 });
    const ask = requester(client, `v2c/v1/eu-central-1/${rig.config.vehicle.id}/command/request`, responses);

    // The gateway subscribes once connected; ask until it answers.
    let ping: Reply | null = null;
    for (let i = 0; i < 20 && ping === null; i++) ping = await ask('{"command":"ping"}', 250).catch(() => null);
    t.ok(ping !== null, 'ping answered');
    t.equal(ping?.body.result, 'ok');
    t.ok(Math.abs(Number(ping?.body.time_ms) - Date.now()) < 5000, 'ping carries the gateway time');

    const p2 = await rig.insert(1, 5, () => 2);
    const status = await ask(JSON.stringify({ command: 'status' }));
    // A reply is matched to its request only by the echoed correlation data: a wrong one would time out.
    t.match(
      status.body,
      { command: 'status', result: 'ok', state: 'online', pending: 5 },
      'status reports the session state and the outbox depth',
    );

    t.equal(rig.sink.counts.unique, 0, 'the P2 records wait for their batch');
    t.equal((await ask('{"command":"flush"}')).body.result, 'ok');
    await rig.waitFor('the flushed batch', () => rig.sink.counts.unique === 5);
    t.ok(
      p2.every((id) => rig.seen.has(id)),
      'flush sent the waiting P2 records',
    );

    const set = await ask('{"command":"set_interval","args":{"heartbeat_s":45}}');
    t.match(set.body, { result: 'ok', heartbeat_s: 45 });
    t.equal(rig.gateway.heartbeat.interval, 45_000, 'the heartbeat interval changed');

    const bad = [
      ['not json', 'malformed', /not JSON/],
      ['[1,2]', 'malformed', /expected a JSON object/],
      ['{"command":""}', 'malformed', /non-empty string/],
      ['{"command":"reboot"}', 'unknown', /"reboot" is not one of ping, status, flush, set_interval/],
      ['{"command":"set_interval","args":{"heartbeat_s":1}}', 'invalid_args', /integer 5\.\.3600/],
      ['{"command":"set_interval","args":[]}', 'malformed', /"args" to be an object/],
      [Buffer.alloc(5000, 0x20), 'malformed', /at most 4096 expected/],
    ] as const;
    for (const [payload, result, detail] of bad) {
      const reply = await ask(payload);
      t.equal(reply.body.result, result, `${String(payload).slice(0, 40).trim() || '5000 spaces'} → ${result}`);
      t.match(String(reply.body.detail), detail);
    }
    // A request without a response topic cannot be answered: counted, not a crash.
    await client.publishAsync(`v2c/v1/eu-central-1/${rig.config.vehicle.id}/command/request`, '{"command":"ping"}', {
      qos: 1,
    });
    t.equal((await ask('{"command":"ping"}')).body.result, 'ok', 'still answering after all of that');
    await rig.waitFor(
      'the unanswerable request counted',
      () => rig.gateway.commands.counts.get('ping|no_response_topic') === 1,
    );
    const metrics = await rig.gateway.metrics.text();
    t.match(metrics, /v2c_commands_total\{command="reboot",result="unknown"\} 1/);
    t.match(metrics, /v2c_commands_total\{command="-",result="malformed"\} 5/);
    t.match(metrics, /v2c_commands_total\{command="set_interval",result="invalid_args"\} 1/);
    t.ok(
      rig.logs.some((l) => l.includes('command: "reboot" refused: unknown')),
      'refusals are logged',
    );
  },
);

t.test(
  'only command requests for this vehicle reach the command handler (time and certificate answers share the session)',
  async (t) => {
    const rows: [string, boolean][] = [
      ['v2c/v1/eu-central-1/V2CREF00000000001/command/request', true],
      ['v2c/v1/us-east-1/V2CREF00000000001/command/request', true],
      ['v2c/v1/eu-central-1/V2CREF00000000002/command/request', false],
      ['v2c/v1/eu-central-1/V2CREF00000000001/time/response', false],
      ['v2c/v1/eu-central-1/V2CREF00000000001/cert/response', false],
      ['v2c/v1/eu-central-1/V2CREF00000000001/command/request/extra', false],
    ];
    for (const [topic, expected] of rows) t.equal(isCommandTopic(topic, 'V2CREF00000000001'), expected, topic);
  },
);
