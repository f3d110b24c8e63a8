// The local record store (RxDB). Records stay here until their PUBACK arrives.
import { createRxDatabase, type RxCollection, type RxDatabase, type RxJsonSchema, type RxStorage } from 'rxdb';
import { getRxStorageMemory } from 'rxdb/plugins/storage-memory';
import { Subject, type Observable } from 'rxjs';
import type { VehicleTelemetry } from '../proto/telemetry-codec.js';

export interface StoredRecord {
  id: string;
  priority: number;
  seq: number;
  createdMs: number;
  record: VehicleTelemetry;
}

const schema: RxJsonSchema<StoredRecord> = {
  version: 0,
  primaryKey: 'id',
  type: 'object',
  properties: {
    id: { type: 'string', maxLength: 40 },
    priority: { type: 'integer', minimum: 0, maximum: 9, multipleOf: 1 },
    seq: { type: 'integer', minimum: 0, maximum: 1e15, multipleOf: 1 },
    createdMs: { type: 'number' },
    record: { type: 'object' },
  },
  required: ['id', 'priority', 'seq', 'createdMs', 'record'],
  // The outbox reads "oldest first within the highest priority": one index range scan.
  indexes: [['priority', 'seq']],
};

export type StorageKind = 'memory';

/** The storage seam: RxDB's memory storage until the durable SQLite storage lands. */
function storageFor(kind: StorageKind): RxStorage<unknown, unknown> {
  switch (kind) {
    case 'memory':
      return getRxStorageMemory() as RxStorage<unknown, unknown>;
  }
}

let instances = 0;

export class TelemetryStore {
  private readonly insertedSubject = new Subject<void>();

  private constructor(
    private readonly db: RxDatabase,
    private readonly records: RxCollection<StoredRecord>,
  ) {}

  static async open(kind: StorageKind, name = 'v2c'): Promise<TelemetryStore> {
    // RxDB's memory storage is shared per name within a process; keep each store apart.
    const db = await createRxDatabase({ name: `${name}-${process.pid}-${instances++}`, storage: storageFor(kind), multiInstance: false, eventReduce: true });
    const collections = await db.addCollections({ telemetry: { schema } });
    return new TelemetryStore(db, collections.telemetry as RxCollection<StoredRecord>);
  }

  /** Fires after each insert, so the sender can wake up. */
  get inserted(): Observable<void> {
    return this.insertedSubject.asObservable();
  }

  async insert(record: VehicleTelemetry, createdMs: number): Promise<void> {
    await this.records.insert({ id: record.messageId, priority: record.priority, seq: record.sequence, createdMs, record });
    this.insertedSubject.next();
  }

  /** Pending records, highest priority (lowest number) first, oldest first; skips `exclude`. */
  async pending(limit: number, exclude: ReadonlySet<string>): Promise<StoredRecord[]> {
    const docs = await this.records.find({ sort: [{ priority: 'asc' }, { seq: 'asc' }], limit: limit + exclude.size }).exec();
    const out: StoredRecord[] = [];
    for (const doc of docs) {
      if (exclude.has(doc.id)) continue;
      out.push(doc.toMutableJSON() as StoredRecord);
      if (out.length === limit) break;
    }
    return out;
  }

  async remove(id: string): Promise<void> {
    await this.records.bulkRemove([id]);
  }

  async count(): Promise<number> {
    return this.records.count().exec();
  }

  async maxSequence(): Promise<number> {
    const top = await this.records.findOne({ selector: {}, sort: [{ seq: 'desc' }] }).exec();
    return top?.seq ?? -1;
  }

  async close(): Promise<void> {
    this.insertedSubject.complete();
    await this.db.close();
  }
}
