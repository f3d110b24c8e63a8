// Runs one random sequence of storage operations against two RxStorages and reports the first
// difference. The reference is rxdb's memory storage; the subject is our SQLite storage.
import { isDeepStrictEqual } from 'node:util';
import {
  fillWithDefaultSettings,
  getChangedDocumentsSince,
  normalizeMangoQuery,
  now,
  prepareQuery,
  type BulkWriteRow,
  type MangoQuery,
  type RxDocumentData,
  type RxJsonSchema,
  type RxStorage,
  type RxStorageDefaultCheckpoint,
  type RxStorageInstance,
} from 'rxdb';
import type { Subscription } from 'rxjs';
import { SeededRandom } from '../bench/rig/seeded-random.js';
import { telemetrySchema } from '../sync/store/stored-record.js';

type Doc = Record<string, unknown>;
type Instance = RxStorageInstance<Doc, unknown, unknown, RxStorageDefaultCheckpoint>;
type AnyStorage = RxStorage<unknown, unknown>;

export interface FieldSpec {
  name: string;
  type: 'string' | 'integer' | 'number' | 'boolean';
  optional?: boolean;
  draw: (r: SeededRandom) => unknown;
}

export interface Scenario {
  name: string;
  schema: RxJsonSchema<Doc>;
  /** Fields queries and sorts are drawn over. */
  fields: FieldSpec[];
  /** Further fields every written document carries. */
  extra?: (r: SeededRandom) => Doc;
}

export type OpKind =
  'insert' | 'update' | 'staleUpdate' | 'delete' | 'query' | 'count' | 'findById' | 'changedSince' | 'cleanup';

export interface DifferentialResult {
  seed: number;
  scenario: string;
  ops: number;
  byKind: Record<OpKind, number>;
  conflicts: number;
  nonEmptyQueries: number;
  purged: number;
  changeEvents: number;
  /** How often the query planner chose each index. */
  indexesUsed: Record<string, number>;
  /** The first difference, with the seed and operation index to replay it. */
  mismatch: string | null;
}

const NAMES = ['', 'a', 'ab', 'b', 'Zed', 'zoë', 'Ärger', '\u{1D4B3}-ray', '\uFFFDx', 'mañana', 'b b', 'Z'];

/** Three schemas: composite and single indexes, none at all, and the gateway's telemetry collection. */
export const scenarios: Scenario[] = (() => {
  const personFields: FieldSpec[] = [
    { name: 'name', type: 'string', draw: (r) => r.pick(NAMES) },
    { name: 'age', type: 'integer', draw: (r) => r.int(0, 20) },
    { name: 'score', type: 'number', draw: (r) => r.int(-40, 40) / 2 },
    { name: 'active', type: 'boolean', draw: (r) => r.chance(0.5) },
    { name: 'nick', type: 'string', optional: true, draw: (r) => r.pick(NAMES) },
    { name: 'level', type: 'integer', optional: true, draw: (r) => r.int(0, 5) },
  ];
  const personProps = {
    id: { type: 'string', maxLength: 12 },
    name: { type: 'string', maxLength: 8 },
    age: { type: 'integer', minimum: 0, maximum: 200, multipleOf: 1 },
    score: { type: 'number', minimum: -100, maximum: 100, multipleOf: 0.5 },
    active: { type: 'boolean' },
    nick: { type: 'string' },
    level: { type: 'integer' },
  };
  const person = (name: string, indexes: string[][]): Scenario => ({
    name,
    fields: personFields,
    schema: {
      version: 0,
      primaryKey: 'id',
      type: 'object',
      properties: personProps,
      required: ['id', 'name', 'age', 'score', 'active'],
      indexes,
    },
  });
  return [
    person('composite-indexes', [['age'], ['name', 'age'], ['active', 'score']]),
    person('no-indexes', []),
    {
      // The gateway's own telemetry collection, as the outbox reads it.
      name: 'outbox',
      fields: [
        { name: 'priority', type: 'integer', draw: (r) => r.int(0, 2) },
        { name: 'seq', type: 'integer', draw: (r) => r.int(0, 500) },
        { name: 'createdMs', type: 'number', draw: (r) => 1_763_800_000_000 + r.int(0, 100) * 1000 },
      ],
      extra: (r) => ({
        record: { speedKmh: r.int(0, 130), signals: { EngineSpeed: { min: r.int(700, 900), max: r.int(2000, 4000) } } },
      }),
      schema: telemetrySchema as unknown as RxJsonSchema<Doc>,
    },
  ];
})();

/** Last-write times of successive operations lie this far apart. */
const LWT_STEP_MS = 60_000;

const WEIGHTS: Record<OpKind, number> = {
  insert: 18,
  update: 12,
  staleUpdate: 4,
  delete: 8,
  query: 30,
  count: 10,
  findById: 7,
  changedSince: 8,
  cleanup: 3,
};

let runs = 0;

/** Runs `ops` random operations on both storages and compares every answer. */
export async function runDifferential(
  scenario: Scenario,
  seed: number,
  ops: number,
  reference: AnyStorage,
  subject: AnyStorage,
  reopenSubject: () => AnyStorage,
): Promise<DifferentialResult> {
  const r = new SeededRandom(seed);
  const schema = fillWithDefaultSettings<Doc>(scenario.schema);
  const databaseName = `diff-${scenario.name}-${seed}-${process.pid}-${runs++}`;
  const params = {
    databaseInstanceToken: databaseName,
    databaseName,
    collectionName: 'docs',
    schema,
    options: {},
    multiInstance: false,
    devMode: false,
  };
  const ref = (await reference.createStorageInstance(params)) as Instance;
  let sub = (await subject.createStorageInstance(params)) as Instance;
  const result: DifferentialResult = {
    seed,
    scenario: scenario.name,
    ops,
    conflicts: 0,
    nonEmptyQueries: 0,
    purged: 0,
    changeEvents: 0,
    indexesUsed: {},
    mismatch: null,
    byKind: {
      insert: 0,
      update: 0,
      staleUpdate: 0,
      delete: 0,
      query: 0,
      count: 0,
      findById: 0,
      changedSince: 0,
      cleanup: 0,
    },
  };
  const events: [unknown[], unknown[]] = [[], []];
  const listen = (inst: Instance, into: unknown[]): Subscription =>
    inst
      .changeStream()
      .subscribe((bulk) => into.push({ context: bulk.context, checkpoint: bulk.checkpoint, events: bulk.events }));
  const subscriptions = [listen(ref, events[0]), listen(sub, events[1])];

  const ids: string[] = [];
  const history = new Map<string, RxDocumentData<Doc>[]>();
  const checkpoints: RxStorageDefaultCheckpoint[] = [];
  // Writes carry past last-write times a minute apart, so cleanup() can cut between two writes. Each
  // storage turns the cut into a time with its own now(): the half minute of margin absorbs the time
  // between the two calls on any machine (100 ms apart, a loaded one once purged on either side).
  const baseLwt = Math.floor(now()) - (ops + 10) * LWT_STEP_MS;
  let revCounter = 0;
  const lwtOf = (op: number, row: number): number => baseLwt + op * LWT_STEP_MS + row;
  const rev = (height: number): string => `${height}-r${seed.toString(36)}x${(revCounter++).toString(36)}`;

  const current = async (id: string): Promise<RxDocumentData<Doc> | undefined> =>
    (await ref.findDocumentsById([id], true))[0];
  const makeFields = (): Doc => {
    const doc: Doc = scenario.extra?.(r) ?? {};
    for (const f of scenario.fields) if (!f.optional || r.chance(0.6)) doc[f.name] = f.draw(r);
    return doc;
  };
  const write = (
    fields: Doc,
    id: string,
    op: number,
    row: number,
    height: number,
    deleted: boolean,
  ): RxDocumentData<Doc> => ({
    id,
    ...fields,
    _deleted: deleted,
    _attachments: {},
    _rev: rev(height),
    _meta: { lwt: lwtOf(op, row) },
  });

  const fail = (op: number, what: string, a: unknown, b: unknown): string =>
    `seed ${seed}, scenario ${scenario.name}, op #${op} (${what}): memory ${describe(a)} vs sqlite ${describe(b)}`;

  const compare = async <T>(
    op: number,
    what: string,
    run: (inst: Instance) => Promise<T>,
    normalise: (x: T) => unknown = (x) => x,
  ): Promise<T | null> => {
    const a = await run(ref);
    const b = await run(sub);
    if (!isDeepStrictEqual(normalise(a), normalise(b))) {
      result.mismatch = fail(op, what, normalise(a), normalise(b));
      return null;
    }
    return a;
  };

  const doWrite = async (op: number, what: string, rows: BulkWriteRow<Doc>[]): Promise<boolean> => {
    const context = `op-${op}`;
    const res = await compare(op, what, (inst) => inst.bulkWrite(rows, context));
    if (!res) return false;
    result.conflicts += res.error.length;
    for (const row of rows) {
      const id = row.document.id as string;
      if (!history.has(id)) {
        history.set(id, []);
        ids.push(id);
      }
      if (!res.error.some((e) => e.documentId === id)) history.get(id)!.push(row.document);
    }
    const evA = events[0].splice(0);
    const evB = events[1].splice(0);
    result.changeEvents += evA.length;
    if (!isDeepStrictEqual(evA, evB)) {
      result.mismatch = fail(op, `${what}: change stream`, evA, evB);
      return false;
    }
    return true;
  };

  const randomQuery = (): MangoQuery<Doc> => {
    const idField: FieldSpec = { name: 'id', type: 'string', draw: (rr) => (ids.length > 0 ? rr.pick(ids) : 'none') };
    const condition = (): Doc => {
      // The primary key too: its bounds are exact index keys, where inclusive and exclusive differ.
      const f = r.chance(0.12) ? idField : r.pick(scenario.fields);
      const sampleId = ids.length > 0 && r.chance(0.7) ? r.pick(ids) : null;
      const sample = sampleId ? history.get(sampleId)!.at(-1) : undefined;
      const value = (): unknown =>
        sample && sample[f.name] !== undefined && r.chance(0.7) ? sample[f.name] : f.draw(r);
      const ops =
        f.type === 'boolean'
          ? ['$eq', '$ne', '$in', '$nin']
          : ['$eq', '$ne', '$gt', '$gte', '$lt', '$lte', '$in', '$nin', 'range'];
      if (f.optional) ops.push('$exists');
      const o = r.pick(ops);
      if (o === '$exists') return { [f.name]: { $exists: r.chance(0.5) } };
      if (o === '$in' || o === '$nin') return { [f.name]: { [o]: Array.from({ length: r.int(1, 3) }, value) } };
      if (o === 'range') {
        const [lo, hi] = [value(), value()].sort((x, y) => ((x as number) < (y as number) ? -1 : 1));
        return { [f.name]: { [r.pick(['$gt', '$gte'])]: lo, [r.pick(['$lt', '$lte'])]: hi } };
      }
      return { [f.name]: { [o]: value() } };
    };
    const shape = r.weighted({ plain: 5, two: 3, or: 2, and: 1, empty: 1 });
    let selector: Doc = {};
    if (shape === 'plain') selector = condition();
    else if (shape === 'two') selector = { ...condition(), ...condition() };
    else if (shape === 'or') selector = { $or: [condition(), condition()], ...(r.chance(0.3) ? condition() : {}) };
    else if (shape === 'and') selector = { $and: [condition(), condition()] };
    const sortable = scenario.fields.filter((f) => !f.optional);
    const sort = Array.from({ length: r.int(0, 2) }, () => ({
      [r.pick(sortable).name]: r.pick(['asc', 'desc'] as const),
    }));
    const uniqueSort = sort.filter((s, i) => sort.findIndex((x) => Object.keys(x)[0] === Object.keys(s)[0]) === i);
    const query: MangoQuery<Doc> = { selector };
    if (uniqueSort.length > 0) query.sort = uniqueSort;
    if (r.chance(0.3)) query.skip = r.int(0, 10);
    if (r.chance(0.6)) query.limit = r.int(1, 20);
    return query;
  };
  const userIndexes = (scenario.schema.indexes ?? []).map((ix) => (typeof ix === 'string' ? [ix] : [...ix]));
  const prepared = (q: MangoQuery<Doc>) => {
    const normalized = normalizeMangoQuery(schema, q);
    // As RxQuery does: live documents only, and an index hint that names `_deleted` first.
    // Now and then the query also runs over tombstones, as RxDB's internals do.
    if (r.chance(0.85)) {
      (normalized.selector as Doc)._deleted = { $eq: false };
      if (userIndexes.length > 0 && r.chance(0.2))
        normalized.index = ['_deleted', ...r.pick(userIndexes), 'id'] as never;
    }
    const p = prepareQuery(schema, normalized);
    const used = p.queryPlan.index.join(',');
    result.indexesUsed[used] = (result.indexesUsed[used] ?? 0) + 1;
    return p;
  };
  const fullState = (op: number, label: string) => compare(op, label, (inst) => inst.findDocumentsById(ids, true));

  for (let op = 0; op < ops && !result.mismatch; op++) {
    let kind = r.weighted(WEIGHTS);
    if (ids.length === 0 && kind !== 'cleanup') kind = 'insert';
    result.byKind[kind]++;
    switch (kind) {
      case 'insert': {
        const rows = Array.from({ length: r.int(1, 5) }, (_, row) => {
          // Now and then an id that exists: both storages must answer 409.
          const id = ids.length > 0 && r.chance(0.1) ? r.pick(ids) : `d${seed % 1000}-${op}-${row}`;
          return { document: write(makeFields(), id, op, row, 1, r.chance(0.03)) };
        });
        await doWrite(op, 'insert', rows);
        break;
      }
      case 'update':
      case 'delete': {
        const rows: BulkWriteRow<Doc>[] = [];
        for (let row = 0, n = r.int(1, 3); row < n; row++) {
          const prev = await current(r.pick(ids));
          if (!prev || rows.some((x) => x.document.id === prev.id)) continue;
          const height = Number.parseInt(prev._rev, 10) + 1;
          const fields =
            kind === 'delete'
              ? Object.fromEntries(Object.entries(prev).filter(([k]) => !k.startsWith('_') && k !== 'id'))
              : makeFields();
          rows.push({ previous: prev, document: write(fields, prev.id as string, op, row, height, kind === 'delete') });
        }
        await doWrite(op, kind, rows);
        break;
      }
      case 'staleUpdate': {
        const candidates = ids.filter((id) => history.get(id)!.length > 1);
        if (candidates.length === 0) break;
        const versions = history.get(r.pick(candidates))!;
        const stale = versions[r.int(0, versions.length - 2)]!;
        await doWrite(op, 'staleUpdate', [
          { previous: stale, document: write(makeFields(), stale.id as string, op, 0, 99, false) },
        ]);
        break;
      }
      case 'query': {
        const pq = prepared(randomQuery());
        const res = await compare(op, `query ${JSON.stringify(pq.query)}`, (inst) => inst.query(pq));
        if (res && res.documents.length > 0) result.nonEmptyQueries++;
        break;
      }
      case 'count': {
        const q = randomQuery();
        delete q.skip;
        delete q.limit;
        const pq = prepared(q);
        await compare(
          op,
          `count ${JSON.stringify(pq.query)}`,
          (inst) => inst.count(pq),
          (c) => c.count,
        );
        break;
      }
      case 'findById': {
        const wanted = Array.from({ length: r.int(1, 6) }, () => (r.chance(0.85) ? r.pick(ids) : `missing-${op}`));
        const withDeleted = r.chance(0.5);
        await compare(op, `findDocumentsById ${JSON.stringify(wanted)} ${withDeleted}`, (inst) =>
          inst.findDocumentsById(wanted, withDeleted),
        );
        break;
      }
      case 'changedSince': {
        const from = checkpoints.length > 0 && r.chance(0.7) ? r.pick(checkpoints) : undefined;
        const limit = r.int(1, 30);
        const res = await compare(op, `changedSince ${JSON.stringify(from)} limit ${limit}`, (inst) =>
          getChangedDocumentsSince(inst, limit, from),
        );
        if (res) checkpoints.push(res.checkpoint);
        break;
      }
      case 'cleanup': {
        const before = (await ref.findDocumentsById(ids, true)).length;
        // Cut halfway between two writes: both storages purge the same tombstones.
        const cutOp = r.int(0, op);
        const minimumDeletedTime = now() - (lwtOf(cutOp, 0) + LWT_STEP_MS / 2);
        await ref.cleanup(minimumDeletedTime);
        while (!(await sub.cleanup(minimumDeletedTime)));
        const state = await fullState(op, 'state after cleanup');
        if (state) result.purged += before - state.length;
        break;
      }
    }
  }
  if (!result.mismatch) {
    // Reopen the SQLite file: what was written must come back unchanged.
    await sub.close();
    sub = (await reopenSubject().createStorageInstance(params)) as Instance;
    await fullState(ops, 'state after reopening the file');
  }
  for (const s of subscriptions) s.unsubscribe();
  await ref.remove();
  await sub.remove();
  return result;
}

/** A difference in a form one can read: document lists as their ids, the first differing document in full. */
function describe(x: unknown): string {
  const docs = Array.isArray(x) ? x : (x as { documents?: unknown })?.documents;
  if (Array.isArray(docs))
    return `ids [${docs.map((d) => (d as Doc).id).join(' ')}] ${JSON.stringify(docs).slice(0, 600)}`;
  return JSON.stringify(x)?.slice(0, 1500) ?? String(x);
}
