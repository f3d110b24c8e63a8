// The reference sink on a worker thread. The envelope bench times each PUBLISH and PUBACK at a relay
// on its own event loop; a sink there, decoding ~2,000 records/s of an unconstrained drain, delayed
// that loop by 15 ms at P99 and its delay was counted as the gateway's.
import { Worker } from 'node:worker_threads';
import type { SinkCounts, SinkOptions } from '../../receiver/telemetry-sink.js';

interface SinkThreadMessage {
  started?: boolean;
  closed?: boolean;
  counts?: SinkCounts;
}

export class SinkThread {
  /** As the worker last reported them (every 20 ms while they change). */
  counts: SinkCounts = { received: 0, unique: 0, duplicates: 0, rejected: 0 };

  private constructor(private readonly worker: Worker) {
    worker.on('message', (msg: SinkThreadMessage) => {
      if (msg.counts !== undefined) this.counts = msg.counts;
    });
  }

  static start(options: SinkOptions): Promise<SinkThread> {
    const worker = new Worker(new URL('./sink-thread-worker.js', import.meta.url), { workerData: options });
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      worker.once('error', onError);
      worker.once('message', (msg: SinkThreadMessage) => {
        worker.off('error', onError);
        if (msg.started === true) resolve(new SinkThread(worker));
        else reject(new Error('the sink thread did not start'));
      });
    });
  }

  /** Closes the sink (its last counts arrive first) and ends the thread. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => {
      const onMessage = (msg: SinkThreadMessage): void => {
        if (msg.closed !== true) return;
        this.worker.off('message', onMessage);
        resolve();
      };
      this.worker.on('message', onMessage);
      this.worker.once('exit', () => resolve());
    });
    this.worker.postMessage({ close: true });
    await closed;
    await this.worker.terminate();
  }
}
