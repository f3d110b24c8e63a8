// Reads and removals straight in the collection's storage instance, bypassing RxDB's document and
// query caches: the outbox needs plain records, and every RxDocument a drain made stayed in the
// document cache (with its record) until a finalizer ran — a 100,000-record drain held ~240 MB of
// them live and was OOM-killed in 192 MiB. RxDB still sees each change through the storage's stream.
import {
  createRevision,
  normalizeMangoQuery,
  now,
  prepareQuery,
  type RxCollection,
  type RxDocumentData,
  type RxStorageQueryResult,
} from 'rxdb';
import type { StoredRecord } from './stored-record.js';
import { SqliteStorageInstance } from './sqlite-storage.js';

/**
 * Stored documents not yet deleted, oldest first, highest priority (lowest number) first, or of
 * one priority only; skips `exclude`.
 */
export async function readPending(
  records: RxCollection<StoredRecord>,
  limit: number,
  exclude: ReadonlySet<string>,
  priority?: number,
): Promise<RxDocumentData<StoredRecord>[]> {
  const schema = records.schema.jsonSchema;
  const storage = records.internalStorageInstance;
  // The SQLite storage is given the ids to skip beside the query (see queryExcluding); any other as `$nin`.
  const sqlite = storage instanceof SqliteStorageInstance ? storage : null;
  const selector = {
    ...(priority !== undefined ? { priority } : {}),
    ...(sqlite === null && exclude.size > 0 ? { id: { $nin: [...exclude] } } : {}),
  };
  const query = normalizeMangoQuery<StoredRecord>(schema, {
    selector,
    sort: [{ priority: 'asc' }, { seq: 'asc' }],
    limit,
  });
  // As RxDB's own find() does: deleted documents (acknowledged, not yet purged) are not records.
  (query.selector as Record<string, unknown>)._deleted = { $eq: false };
  const prepared = prepareQuery<StoredRecord>(schema, query);
  const result: RxStorageQueryResult<StoredRecord> = await (sqlite !== null
    ? sqlite.queryExcluding(prepared, exclude)
    : records.storageInstance.query(prepared));
  return result.documents;
}

/**
 * Deletes stored documents and returns the ids that were not: a record removed meanwhile (an
 * acknowledgement and an eviction at once). On disk the rows go at once (`purgeDocuments`); the
 * in-memory store keeps tombstones until its purge, and a stale revision is a conflict there.
 */
export async function deleteDocuments(
  records: RxCollection<StoredRecord>,
  current: readonly RxDocumentData<StoredRecord>[],
): Promise<Set<string>> {
  const storage = records.internalStorageInstance;
  if (storage instanceof SqliteStorageInstance) {
    const removed = storage.purgeDocuments(current, 'telemetry-store-remove');
    return new Set(current.filter((doc) => !removed.has(doc.id)).map((doc) => doc.id));
  }
  const token = records.database.token;
  const writes = current.map((previous) => ({
    previous,
    document: {
      ...previous,
      _deleted: true,
      _rev: createRevision(token, previous),
      _meta: { ...previous._meta, lwt: now() },
    },
  }));
  const { error } = await records.storageInstance.bulkWrite(writes, 'telemetry-store-remove');
  return new Set(error.map((e) => e.documentId));
}
