// The worker side of SinkThread: a TelemetrySink whose counts go to the parent as they change.
import { parentPort, workerData } from 'node:worker_threads';
import { TelemetrySink, type SinkOptions } from '../../receiver/telemetry-sink.js';

const port = parentPort;
if (port === null) throw new Error('sink-thread-worker runs only as a worker thread');
const sink = await TelemetrySink.start(workerData as SinkOptions);
let last = '';
const report = (): void => {
  const counts = JSON.stringify(sink.counts);
  if (counts === last) return;
  last = counts;
  port.postMessage({ counts: sink.counts });
};
const timer = setInterval(report, 20);
port.postMessage({ started: true });
port.on('message', (msg: { close?: boolean }) => {
  if (msg.close !== true) return;
  clearInterval(timer);
  void sink.close().then(() => {
    report();
    port.postMessage({ closed: true });
    port.close();
  });
});
