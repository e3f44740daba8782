// The Store over Kysely: the same queries serve SQLite and PostgreSQL; only the
// dialect and the migration DDL differ.

import { sql, type Compilable, type Kysely, type QueryResult, type Selectable, type Transaction } from 'kysely';
import { DroverError } from '../model/errors.js';
import { EMPTY_NET_INFO } from '../model/actual-lrp-machine.js';
import type { ActualLrp, ActualLrpFilter, ActualLrpPlacement, DesiredLrp, DesiredLrpFilter, DesiredLrpPlanInfo, Presence, ActualLrpState } from '../model/lrp.js';
import type { Cell } from '../model/cell.js';
import type { Service, ServiceState } from '../model/service.js';
import type { DroverEvent, EventType } from '../model/event.js';
import type { Lock, LockFilter, LockPage, NewLock } from '../model/lock.js';
import { MIGRATIONS, type ActualLrpsTable, type DesiredLrpsTable, type Database, type Dialect, type LocksTable } from './schema.js';
import type { ActualLrpRow, NewEvent, PlacementCount, Store, StoreTx } from './store.js';
import { acquireLease, checkLease, readLease, releaseLease, type LeaseFence } from './lease.js';
import type { SqliteLockInserts } from './sqlite/lock-inserts.js';
import { GroupCommit } from './group-commit.js';
import { packActualLrpRows, packedPages, packedSqliteQuery, type PackedActualLrps } from './packed-actual-lrps.js';
import { ACTUAL_COLUMNS, ACTUAL_UPDATE_COLUMNS, DESIRED_COLUMNS, PLAN_INFO_FIELDS, bind, compileHotStatements, type HotStatements } from './hot-statements.js';

type Db = Kysely<Database> | Transaction<Database>;

/** The most events one insert statement writes (3 parameters each, far below either store's limit). */
const EVENTS_PER_INSERT = 256;

/** Rows per page of pagesOfActualLrps: big enough that the per-query cost is noise, small enough to stream. */
const ACTUAL_LRP_PAGE_SIZE = 5000;

/**
 * Runs a SELECT on the store's own connection (synchronously: SQLite in-process) and returns
 * its rows as arrays, which better-sqlite3 builds in less than half the time of row objects.
 */
export type ArrayReader = (sql: string, parameters: readonly unknown[]) => unknown[][];

/**
 * Runs a statement on the store's own connection at once (SQLite in-process), with the
 * result Kysely would give. Kysely's way to the same statement (connection mutex, a few
 * promise turns, result plugins) costs several times SQLite's own work on a row.
 */
export type DirectQuery = (sql: string, parameters: readonly unknown[]) => QueryResult<unknown>;

/** SQLite: the connection's own paths, around Kysely: statements, list reads as row arrays, lock create's transaction. */
export interface SqliteDirect {
  query: DirectQuery;
  /** a transaction is open on the connection */
  inTransaction(): boolean;
  readArrays: ArrayReader;
  lockInserts: SqliteLockInserts;
  /** resolves once the threads with connections of their own (the WAL checkpointer) have closed them */
  threadsClosed(): Promise<void>;
}

/** Advisory lock key that serializes writers on PostgreSQL ("drover" in ASCII). */
const WRITE_LOCK_KEY = 0x64726f766572;

/**
 * The net info of every instance no cell runs (unclaimed, crashed): read back as the model's
 * shared EMPTY_NET_INFO, as the state machine sets it, instead of parsing it row by row (a
 * full convergence pass reads every instance).
 */
const EMPTY_NET_INFO_JSON = JSON.stringify(EMPTY_NET_INFO);

const netInfoJson = (a: ActualLrp) => (a.actualLrpNetInfo === EMPTY_NET_INFO ? EMPTY_NET_INFO_JSON : JSON.stringify(a.actualLrpNetInfo));

/** `netInfo`: the JSON of a.actualLrpNetInfo when the caller has it already */
function actualToRow(a: ActualLrp, netInfo = netInfoJson(a)): ActualLrpsTable {
  return {
    process_guid: a.actualLrpKey.processGuid,
    idx: a.actualLrpKey.index,
    domain: a.actualLrpKey.domain,
    instance_guid: a.actualLrpInstanceKey.instanceGuid,
    cell_id: a.actualLrpInstanceKey.cellId,
    target_cell_id: a.targetCellId,
    state: a.state,
    presence: a.presence,
    crash_count: a.crashCount,
    crash_reason: a.crashReason,
    placement_error: a.placementError,
    since: a.since,
    mod_epoch: a.modificationTag.epoch,
    mod_index: a.modificationTag.index,
    net_info: netInfo,
    stop_requested: a.stopRequested ? 1 : 0,
  };
}

function rowToActual(r: ActualLrpsTable): ActualLrp {
  return {
    actualLrpKey: { processGuid: r.process_guid, index: Number(r.idx), domain: r.domain },
    actualLrpInstanceKey: { instanceGuid: r.instance_guid, cellId: r.cell_id },
    actualLrpNetInfo: r.net_info === EMPTY_NET_INFO_JSON ? EMPTY_NET_INFO : JSON.parse(r.net_info),
    crashCount: Number(r.crash_count),
    crashReason: r.crash_reason,
    state: r.state as ActualLrpState,
    placementError: r.placement_error,
    since: Number(r.since),
    modificationTag: { epoch: r.mod_epoch, index: Number(r.mod_index) },
    presence: r.presence as Presence,
    stopRequested: Number(r.stop_requested) === 1,
    targetCellId: r.target_cell_id,
  };
}

/** `values`: those of PLAN_INFO_FIELDS, in its order (see HotStatements.planInfo) */
function planInfoOf(r: { process_guid: string; domain: string; instances: number | string }, values: unknown[]): DesiredLrpPlanInfo {
  const info: Record<string, unknown> = { processGuid: r.process_guid, domain: r.domain, instances: Number(r.instances) };
  PLAN_INFO_FIELDS.forEach((field, i) => {
    if (values[i] != null) info[field] = values[i]; // a field the record does not have
  });
  return info as DesiredLrpPlanInfo;
}

function desiredToRow(d: DesiredLrp): DesiredLrpsTable {
  return { process_guid: d.processGuid, domain: d.domain, service_id: d.serviceId, instances: d.instances, data: JSON.stringify(d) };
}

/**
 * JSON.stringify(payload), reusing the JSON of records the store wrote (see SqlQueries.written):
 * a desired LRP event carries the very record whose row holds that JSON, an instance's creation
 * event the instance just inserted. A reused JSON is dropped from the map unless it is an
 * instance's, which its first change reuses too (changeJson).
 */
function payloadJson(payload: Record<string, unknown>, written: WeakMap<object, string>): string {
  if (!Object.values(payload).some((v) => typeof v === 'object' && v !== null && written.has(v))) return JSON.stringify(payload);
  const members: string[] = [];
  for (const [k, v] of Object.entries(payload)) {
    if (v === undefined) continue;
    const json = typeof v === 'object' && v !== null ? written.get(v) : undefined;
    if (json !== undefined && !('actualLrpKey' in (v as object))) written.delete(v as object);
    members.push(`${JSON.stringify(k)}:${json ?? JSON.stringify(v)}`);
  }
  return `{${members.join(',')}}`;
}

/**
 * An actual_lrp_changed event's row holds `before` whole and, instead of a second whole copy
 * as `after`, the top-level fields of `after` that are not those of `before`: a transition
 * changes two to five of twelve. listEvents puts `after` back (eventPayload).
 */
const AFTER_CHANGES = 'afterChanges';

/**
 * The JSON of an actual_lrp_changed payload `{before, after}` with `after` as its changes;
 * undefined for any other shape. An instance's first change carries as `before` the record its
 * creation wrote, whose JSON is known (`written`).
 */
function changeJson(payload: Record<string, unknown>, written: WeakMap<object, string>): string | undefined {
  const { before, after } = payload;
  if (!isPlainRecord(before) || !isPlainRecord(after)) return undefined;
  // (for…in over plain records: no entry arrays, a third of the cost on the convergence path)
  for (const k in payload) if (k !== 'before' && k !== 'after') return undefined;
  const changes: Record<string, unknown> = {};
  for (const k in after) if (after[k] !== before[k]) changes[k] = after[k];
  // a field `after` drops cannot be said as a change (JSON has no undefined): stored whole
  for (const k in before) if (before[k] !== undefined && after[k] === undefined) return undefined;
  const beforeJson = written.get(before);
  if (beforeJson !== undefined) written.delete(before); // its last use
  return `{"before":${beforeJson ?? JSON.stringify(before)},"${AFTER_CHANGES}":${JSON.stringify(changes)}}`;
}

function isPlainRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** An event's payload from its stored JSON (see changeJson). */
function eventPayload(text: string): Record<string, unknown> {
  const payload = JSON.parse(text) as Record<string, unknown>;
  const changes = payload[AFTER_CHANGES];
  if (!isPlainRecord(changes)) return payload;
  const { [AFTER_CHANGES]: _, ...rest } = payload;
  return { ...rest, after: { ...(payload.before as Record<string, unknown>), ...changes } };
}

const LOCK_SORT_COLUMNS = { id: 'id', owner: 'owner', serviceInstanceId: 'service_instance_id', expiresAt: 'expires_at' } as const;

function rowToLock(r: Selectable<LocksTable>): Lock {
  return {
    id: Number(r.id),
    orchestrationJobId: r.orchestration_job_id,
    serviceInstanceId: r.service_instance_id,
    owner: r.owner,
    expiresAt: Number(r.expires_at),
    temporary: Number(r.temporary) === 1,
  };
}

/** SQLite binds at most 32766 values per statement: bulk writes go in slices well below it. */
function* slices<T>(items: T[], size = 1000): Generator<T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size);
}

function isUniqueViolation(e: unknown): boolean {
  const code = (e as { code?: string }).code;
  return code === '23505' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE';
}

/** Queries over one connection or transaction. */
class SqlQueries implements StoreTx {
  private readonly readArrays: ArrayReader | undefined;

  constructor(
    protected readonly db: Db,
    protected readonly hot: HotStatements,
    protected readonly sqlite: SqliteDirect | undefined,
    /**
     * The JSON of the records (desired LRPs, instances) this store wrote, for the events that
     * carry them, in this transaction or a later one (see payloadJson and changeJson). Records
     * are never changed in place: a new state is a new object. An entry goes once its last
     * expected event has used it: held on to (the convergence loop keeps new records until
     * its pass), the entries of desired LRPs made V8 promote ten times more of the young
     * generation under a stream of desires (docs/decisions.md, tenth round).
     */
    protected readonly written: WeakMap<object, string>,
  ) {
    this.readArrays = sqlite?.readArrays;
  }

  /**
   * SQLite runs the statement straight on the connection: in this transaction, or outside any
   * (it completes before anything else can run). Outside a transaction while one is open on
   * the connection (Kysely holds it across turns of the event loop), the statement would join
   * it: it queues behind it through Kysely instead.
   */
  private async run<R>(sql: string, parameters: readonly unknown[]): Promise<QueryResult<R>> {
    if (this.sqlite && (this.db.isTransaction || !this.sqlite.inTransaction())) return this.sqlite.query(sql, parameters) as QueryResult<R>;
    return this.db.executeQuery<R>(bind(sql, parameters));
  }

  /** The rows of a built query, run as `run` does. */
  private async rows<R>(query: Compilable<R>): Promise<R[]> {
    const { sql, parameters } = query.compile();
    return (await this.run<R>(sql, parameters)).rows;
  }

  async getDesiredLrp(processGuid: string) {
    const [row] = (await this.run<{ data: string }>(this.hot.getDesiredLrp, [processGuid])).rows;
    return row ? (JSON.parse(row.data) as DesiredLrp) : undefined;
  }

  async listDesiredLrps(filter: DesiredLrpFilter & { serviceId?: string } = {}) {
    let q = this.db.selectFrom('desired_lrps').select('data').orderBy('process_guid');
    if (filter.domain) q = q.where('domain', '=', filter.domain);
    if (filter.serviceId) q = q.where('service_id', '=', filter.serviceId).where('service_id', '<>', ''); // see migration 6
    if (filter.processGuids?.length) q = q.where('process_guid', 'in', filter.processGuids);
    const rows = await this.rows(q);
    return rows.map((r) => JSON.parse(r.data) as DesiredLrp);
  }

  async listDesiredLrpPlanInfos(filter: { processGuids?: string[] } = {}) {
    let q = this.db.selectFrom('desired_lrps').select(['process_guid', 'domain', 'instances', sql.raw<string>(this.hot.planInfo.select).as('plan')]).orderBy('process_guid');
    if (filter.processGuids?.length) q = q.where('process_guid', 'in', filter.processGuids);
    return (await this.rows(q)).map((r) => planInfoOf(r, this.hot.planInfo.values(r.plan)));
  }

  async getActualLrp(processGuid: string, index: number) {
    const [row] = (await this.run<ActualLrpsTable>(this.hot.getActualLrp, [processGuid, index])).rows;
    return row ? rowToActual(row) : undefined;
  }

  /** actual_lrps matching the filter, ordered by key */
  private actualLrpsWhere(filter: ActualLrpFilter & { processGuids?: string[] }) {
    let q = this.db.selectFrom('actual_lrps').orderBy('process_guid').orderBy('idx');
    if (filter.domain) q = q.where('domain', '=', filter.domain);
    if (filter.cellId) {
      // `<> ''`: see migration 6
      const cellId = filter.cellId;
      q = filter.includeTargeted
        ? q.where((eb) => eb.or([eb.and([eb('cell_id', '=', cellId), eb('cell_id', '<>', '')]), eb.and([eb('target_cell_id', '=', cellId), eb('target_cell_id', '<>', '')])]))
        : q.where('cell_id', '=', cellId).where('cell_id', '<>', '');
    }
    if (filter.processGuid) q = q.where('process_guid', '=', filter.processGuid);
    if (filter.processGuids?.length) q = q.where('process_guid', 'in', filter.processGuids);
    if (filter.index !== undefined) q = q.where('idx', '=', filter.index);
    return q;
  }

  async listActualLrps(filter: ActualLrpFilter & { processGuids?: string[] } = {}) {
    const { processGuid, ...others } = filter;
    // one LRP's instances: what every desire and scale reads
    if (processGuid && Object.values(others).every((v) => v === undefined)) {
      return (await this.run<ActualLrpsTable>(this.hot.listActualLrpsOf, [processGuid])).rows.map(rowToActual);
    }
    const rows = await this.rows(this.actualLrpsWhere(filter).selectAll());
    return rows.map(rowToActual);
  }

  async *pagesOfActualLrps(filter: ActualLrpFilter = {}, pageSize = ACTUAL_LRP_PAGE_SIZE): AsyncGenerator<PackedActualLrps> {
    if (this.readArrays) {
      // One statement, then pages: SQLite serves a domain or cell filter from that column's
      // index and sorts, so each keyset page would sort every remaining match again; and an
      // in-process read has no round trips to save.
      const { sql: text, parameters } = this.actualLrpsWhere(filter).select(ACTUAL_COLUMNS).compile();
      const read = () => {
        const [[bytes, count]] = this.readArrays!(packedSqliteQuery(text), parameters) as [[Buffer | null, number]];
        return { count, bytes: bytes ?? Buffer.alloc(0) };
      };
      // outside a transaction, hold the connection so that no other transaction is half done on it
      yield* packedPages(this.db.isTransaction ? read() : await this.db.connection().execute(async () => read()), pageSize);
      return;
    }
    let after: ActualLrpRow | undefined;
    for (;;) {
      let q = this.actualLrpsWhere(filter).select(ACTUAL_COLUMNS).limit(pageSize);
      if (after) {
        const last = after;
        q = q.where((eb) => eb(eb.refTuple('process_guid', 'idx'), '>', eb.tuple(last.process_guid, Number(last.idx))));
      }
      const rows = await this.rows(q);
      if (rows.length > 0) yield packActualLrpRows(rows);
      if (rows.length < pageSize) return;
      after = rows[rows.length - 1];
    }
  }

  async listActualLrpPlacements(filter: ActualLrpFilter): Promise<ActualLrpPlacement[]> {
    const rows = await this.rows(this.actualLrpsWhere(filter).select(['process_guid', 'idx', 'domain', 'instance_guid', 'cell_id', 'target_cell_id', 'state', 'stop_requested']));
    return rows.map((r) => ({
      actualLrpKey: { processGuid: r.process_guid, index: Number(r.idx), domain: r.domain },
      actualLrpInstanceKey: { instanceGuid: r.instance_guid, cellId: r.cell_id },
      state: r.state as ActualLrpState,
      stopRequested: Number(r.stop_requested) === 1,
      targetCellId: r.target_cell_id,
    }));
  }

  async countActualLrpsByPlacement(): Promise<PlacementCount[]> {
    const rows = await this.rows(
      this.db
        .selectFrom('actual_lrps')
        .select((eb) => ['state', 'cell_id', 'target_cell_id', eb.fn.countAll().as('n')])
        .where('stop_requested', '=', 0)
        .groupBy(['state', 'cell_id', 'target_cell_id']),
    );
    return rows.map((r) => ({ state: r.state as ActualLrpState, cellId: r.cell_id, targetCellId: r.target_cell_id, count: Number(r.n) }));
  }

  async getCell(cellId: string) {
    const [row] = await this.rows(this.db.selectFrom('cells').select('data').where('cell_id', '=', cellId));
    return row ? (JSON.parse(row.data) as Cell) : undefined;
  }

  async listCells() {
    const rows = await this.rows(this.db.selectFrom('cells').select('data').orderBy('cell_id'));
    return rows.map((r) => JSON.parse(r.data) as Cell);
  }

  async getService(id: string) {
    const [row] = await this.rows(this.db.selectFrom('services').select('data').where('id', '=', id));
    return row ? (JSON.parse(row.data) as Service) : undefined;
  }

  async listServices(filter: { states?: ServiceState[] } = {}) {
    let q = this.db.selectFrom('services').select('data').orderBy('id');
    if (filter.states?.length) q = q.where('state', 'in', filter.states);
    const rows = await this.rows(q);
    return rows.map((r) => JSON.parse(r.data) as Service);
  }

  async listEvents(afterId: number, limit: number): Promise<DroverEvent[]> {
    const rows = await this.rows(this.db.selectFrom('events').selectAll().where('id', '>', afterId).orderBy('id').limit(limit));
    return rows.map((r) => ({ id: Number(r.id), type: r.type as EventType, at: Number(r.at), payload: eventPayload(r.payload) }));
  }

  async oldestEventAt() {
    const [row] = await this.rows(this.db.selectFrom('events').select('at').orderBy('id').limit(1));
    return row ? Number(row.at) : undefined;
  }

  async deleteEventsBefore(at: number, limit: number) {
    const oldest = this.db.selectFrom('events').select('id').orderBy('id').limit(limit);
    const result = await this.db.deleteFrom('events').where('id', 'in', oldest).where('at', '<', at).executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  async lastEventId() {
    const [row] = await this.rows(this.db.selectFrom('events').select((eb) => eb.fn.max('id').as('id')));
    return Number(row?.id ?? 0);
  }

  async insertDesiredLrp(d: DesiredLrp) {
    try {
      const row = desiredToRow(d);
      await this.run(this.hot.insertDesiredLrp, DESIRED_COLUMNS.map((c) => row[c]));
      this.written.set(d, row.data);
    } catch (e) {
      if (isUniqueViolation(e)) throw new DroverError('exists', `desired LRP ${d.processGuid} already exists`);
      throw e;
    }
  }

  async updateDesiredLrp(d: DesiredLrp) {
    const { process_guid, ...rest } = desiredToRow(d);
    await this.rows(this.db.updateTable('desired_lrps').set(rest).where('process_guid', '=', process_guid));
    this.written.set(d, rest.data);
  }

  async deleteDesiredLrp(processGuid: string) {
    await this.rows(this.db.deleteFrom('desired_lrps').where('process_guid', '=', processGuid));
  }

  async insertActualLrp(a: ActualLrp) {
    const row = actualToRow(a);
    const { numAffectedRows } = await this.run(this.hot.insertActualLrp, ACTUAL_COLUMNS.map((c) => row[c]));
    if (Number(numAffectedRows) !== 1) return false;
    this.written.set(a, JSON.stringify(a));
    return true;
  }

  async updateActualLrp(a: ActualLrp, before: ActualLrp) {
    const old = actualToRow(before);
    const row = actualToRow(a, a.actualLrpNetInfo === before.actualLrpNetInfo ? old.net_info : undefined);
    // the tag is the compare-and-set's own column: always written
    const columns = ACTUAL_UPDATE_COLUMNS.filter((c) => c === 'mod_index' || row[c] !== old[c]);
    const result = await this.run(this.hot.updateActualLrp(columns), [...columns.map((c) => row[c]), row.process_guid, row.idx, before.modificationTag.index]);
    return Number(result.numAffectedRows) === 1;
  }

  async deleteActualLrp(processGuid: string, index: number) {
    await this.rows(this.db.deleteFrom('actual_lrps').where('process_guid', '=', processGuid).where('idx', '=', index));
  }

  async upsertCell(c: Cell) {
    const row = { cell_id: c.cellId, heartbeat_at: c.heartbeatAt, data: JSON.stringify(c) };
    await this.rows(
      this.db
        .insertInto('cells')
        .values(row)
        .onConflict((oc) => oc.column('cell_id').doUpdateSet({ heartbeat_at: row.heartbeat_at, data: row.data })),
    );
  }

  async deleteCell(cellId: string) {
    await this.rows(this.db.deleteFrom('cells').where('cell_id', '=', cellId));
  }

  async upsertService(s: Service) {
    const row = { id: s.id, state: s.state, data: JSON.stringify(s) };
    await this.rows(
      this.db
        .insertInto('services')
        .values(row)
        .onConflict((oc) => oc.column('id').doUpdateSet({ state: row.state, data: row.data })),
    );
  }

  async deleteService(id: string) {
    await this.rows(this.db.deleteFrom('services').where('id', '=', id));
  }

  async appendEvents(events: NewEvent[]) {
    let lastId = 0;
    // one insert per power-of-two run of events: a few statement texts serve every count
    for (let i = 0; i < events.length; ) {
      let n = EVENTS_PER_INSERT;
      while (n > events.length - i) n /= 2;
      const parameters: unknown[] = [];
      for (const { type, payload, at } of events.slice(i, i + n)) {
        parameters.push(type, at, (type === 'actual_lrp_changed' && changeJson(payload, this.written)) || payloadJson(payload, this.written));
      }
      const { rows, insertId } = await this.run<{ id: number }>(this.hot.appendEvents(n), parameters);
      lastId = Number(insertId ?? Math.max(...rows.map((r) => Number(r.id))));
      i += n;
    }
    return lastId;
  }

  async queryLocks(filter: LockFilter, page: LockPage | undefined, now: number) {
    let q = this.db.selectFrom('locks').where('expires_at', '>', now);
    if (filter.ids) q = q.where('id', 'in', filter.ids);
    if (filter.orchestrationJobIds) q = q.where('orchestration_job_id', 'in', filter.orchestrationJobIds);
    if (filter.serviceInstanceIds) q = q.where('service_instance_id', 'in', filter.serviceInstanceIds);
    if (filter.owners) q = q.where('owner', 'in', filter.owners);
    if (filter.expiresBefore !== undefined) q = q.where('expires_at', '<', filter.expiresBefore);
    if (filter.expiresAfter !== undefined) q = q.where('expires_at', '>', filter.expiresAfter);
    const direction = page?.direction === 'DESC' ? 'desc' : 'asc';
    // id breaks ties so that pages never overlap
    let rows = q.selectAll().orderBy(LOCK_SORT_COLUMNS[page?.sortField ?? 'id'], direction).orderBy('id', direction);
    if (page) rows = rows.limit(page.size).offset(page.page * page.size);
    const entries = (await rows.execute()).map(rowToLock);
    if (!page) return { entries, count: entries.length };
    const total = await q.select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow();
    return { entries, count: Number(total.n) };
  }

  async insertLocks(locks: NewLock[]) {
    const created: Lock[] = [];
    try {
      for (const slice of slices(locks)) {
        const rows = slice.map((l) => ({
          orchestration_job_id: l.orchestrationJobId,
          service_instance_id: l.serviceInstanceId,
          owner: l.owner,
          expires_at: l.expiresAt,
          temporary: l.temporary ? 1 : 0,
        }));
        created.push(...(await this.db.insertInto('locks').values(rows).returningAll().execute()).map(rowToLock));
      }
    } catch (e) {
      if (isUniqueViolation(e)) throw new DroverError('exists', 'a service instance is already locked');
      throw e;
    }
    // RETURNING order is not promised; ids are handed out in insertion order
    return created.sort((a, b) => a.id - b.id);
  }

  async deleteLocks(owner: string, serviceInstanceIds: string[]) {
    let deleted = 0;
    for (const slice of slices(serviceInstanceIds)) {
      const result = await this.db
        .deleteFrom('locks')
        .where('owner', '=', owner)
        .where('orchestration_job_id', 'is', null)
        .where('service_instance_id', 'in', slice)
        .executeTakeFirst();
      deleted += Number(result.numDeletedRows);
    }
    return deleted;
  }

  async purgeExpiredLocks(now: number) {
    const result = await this.db.deleteFrom('locks').where('expires_at', '<=', now).executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  async getAttachment(hash: string) {
    const row = await this.db.selectFrom('attachments').select('data').where('hash', '=', hash).executeTakeFirst();
    return row ? Buffer.from(row.data) : undefined;
  }

  async retainAttachment(hash: string, data: Buffer, now: number) {
    await this.db
      .insertInto('attachments')
      .values({ hash, size: data.length, refs: 1, data, created_at: now })
      .onConflict((oc) => oc.column('hash').doUpdateSet({ refs: sql<number>`attachments.refs + 1` }))
      .execute();
  }

  async releaseAttachment(hash: string) {
    await this.db.updateTable('attachments').set({ refs: sql<number>`refs - 1` }).where('hash', '=', hash).execute();
    await this.db.deleteFrom('attachments').where('hash', '=', hash).where('refs', '<=', 0).execute();
  }
}

export class SqlStore extends SqlQueries implements Store {
  /** SQLite only (see group-commit.ts); PostgreSQL runs each transaction on its own connection */
  private readonly groupCommit?: GroupCommit;

  constructor(
    readonly kind: Dialect,
    private readonly kysely: Kysely<Database>,
    /** SQLite only: direct access to the connection for the paths that need it */
    sqlite?: SqliteDirect,
  ) {
    super(kysely, compileHotStatements(kysely, kind), sqlite, new WeakMap());
    if (sqlite) this.groupCommit = new GroupCommit(kysely, (query) => sqlite.query(query.sql, query.parameters));
  }

  override async insertLocks(locks: NewLock[]): Promise<Lock[]> {
    return this.sqlite?.lockInserts.tryInsert(locks) ?? this.transaction((tx) => tx.insertLocks(locks));
  }

  async migrate() {
    await sql`CREATE TABLE IF NOT EXISTS drover_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`.execute(this.kysely);
    for (const m of MIGRATIONS) {
      await this.kysely.transaction().execute(async (trx) => {
        const done = await trx.selectFrom('drover_migrations').select('version').where('version', '=', m.version).executeTakeFirst();
        if (done) return;
        for (const statement of m.statements(this.kind)) await sql.raw(statement).execute(trx);
        await trx.insertInto('drover_migrations').values({ version: m.version, applied_at: Date.now() }).execute();
      });
    }
  }

  transaction<T>(fn: (tx: StoreTx) => Promise<T>, opts: { fence?: LeaseFence } = {}): Promise<T> {
    const work = async (trx: Transaction<Database>) => {
      // PostgreSQL: write transactions take one advisory lock first, so they commit in the
      // order they numbered their events — an SSE reader past id N never misses a later
      // commit of id < N. (SQLite has a single writer already.)
      if (this.kind === 'postgres') await sql`SELECT pg_advisory_xact_lock(${WRITE_LOCK_KEY})`.execute(trx);
      if (opts.fence) await checkLease(trx, this.kind, opts.fence);
      return fn(new SqlQueries(trx, this.hot, this.sqlite, this.written));
    };
    return this.groupCommit ? this.groupCommit.run(work) : this.kysely.transaction().execute(work);
  }

  acquireLease(name: string, holder: string, leaseMs: number) {
    return acquireLease(this.kysely, this.kind, name, holder, leaseMs);
  }

  releaseLease(name: string, holder: string) {
    return releaseLease(this.kysely, this.kind, name, holder);
  }

  readLease(name: string) {
    return readLease(this.kysely, this.kind, name);
  }

  async close() {
    await this.kysely.destroy();
    await this.sqlite?.threadsClosed();
  }
}
