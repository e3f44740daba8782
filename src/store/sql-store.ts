// The Store over Kysely: the same queries serve SQLite and PostgreSQL; only the
// dialect and the migration DDL differ.

import { sql, type Kysely, type Transaction } from 'kysely';
import { DroverError } from '../model/errors.js';
import type { ActualLrp, ActualLrpFilter, DesiredLrp, DesiredLrpFilter, Presence, ActualLrpState } from '../model/lrp.js';
import type { Cell } from '../model/cell.js';
import type { Service } from '../model/service.js';
import type { DroverEvent, EventType } from '../model/event.js';
import { MIGRATIONS, type ActualLrpsTable, type Database, type Dialect } from './schema.js';
import type { Store, StoreTx } from './store.js';

type Db = Kysely<Database> | Transaction<Database>;

function actualToRow(a: ActualLrp): ActualLrpsTable {
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
    net_info: JSON.stringify(a.actualLrpNetInfo),
    stop_requested: a.stopRequested ? 1 : 0,
  };
}

function rowToActual(r: ActualLrpsTable): ActualLrp {
  return {
    actualLrpKey: { processGuid: r.process_guid, index: Number(r.idx), domain: r.domain },
    actualLrpInstanceKey: { instanceGuid: r.instance_guid, cellId: r.cell_id },
    actualLrpNetInfo: JSON.parse(r.net_info),
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

function desiredToRow(d: DesiredLrp) {
  return { process_guid: d.processGuid, domain: d.domain, service_id: d.serviceId, instances: d.instances, data: JSON.stringify(d) };
}

function isUniqueViolation(e: unknown): boolean {
  const code = (e as { code?: string }).code;
  return code === '23505' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE';
}

/** Queries over one connection or transaction. */
class SqlQueries implements StoreTx {
  constructor(protected readonly db: Db) {}

  async getDesiredLrp(processGuid: string) {
    const row = await this.db.selectFrom('desired_lrps').select('data').where('process_guid', '=', processGuid).executeTakeFirst();
    return row ? (JSON.parse(row.data) as DesiredLrp) : undefined;
  }

  async listDesiredLrps(filter: DesiredLrpFilter & { serviceId?: string } = {}) {
    let q = this.db.selectFrom('desired_lrps').select('data').orderBy('process_guid');
    if (filter.domain) q = q.where('domain', '=', filter.domain);
    if (filter.serviceId) q = q.where('service_id', '=', filter.serviceId);
    if (filter.processGuids?.length) q = q.where('process_guid', 'in', filter.processGuids);
    const rows = await q.execute();
    return rows.map((r) => JSON.parse(r.data) as DesiredLrp);
  }

  async getActualLrp(processGuid: string, index: number) {
    const row = await this.db.selectFrom('actual_lrps').selectAll().where('process_guid', '=', processGuid).where('idx', '=', index).executeTakeFirst();
    return row ? rowToActual(row) : undefined;
  }

  async listActualLrps(filter: ActualLrpFilter = {}) {
    let q = this.db.selectFrom('actual_lrps').selectAll().orderBy('process_guid').orderBy('idx');
    if (filter.domain) q = q.where('domain', '=', filter.domain);
    if (filter.cellId) q = q.where((eb) => eb.or([eb('cell_id', '=', filter.cellId!), eb('target_cell_id', '=', filter.cellId!)]));
    if (filter.processGuid) q = q.where('process_guid', '=', filter.processGuid);
    if (filter.index !== undefined) q = q.where('idx', '=', filter.index);
    const rows = await q.execute();
    return rows.map(rowToActual);
  }

  async getCell(cellId: string) {
    const row = await this.db.selectFrom('cells').select('data').where('cell_id', '=', cellId).executeTakeFirst();
    return row ? (JSON.parse(row.data) as Cell) : undefined;
  }

  async listCells() {
    const rows = await this.db.selectFrom('cells').select('data').orderBy('cell_id').execute();
    return rows.map((r) => JSON.parse(r.data) as Cell);
  }

  async getService(id: string) {
    const row = await this.db.selectFrom('services').select('data').where('id', '=', id).executeTakeFirst();
    return row ? (JSON.parse(row.data) as Service) : undefined;
  }

  async listServices() {
    const rows = await this.db.selectFrom('services').select('data').orderBy('id').execute();
    return rows.map((r) => JSON.parse(r.data) as Service);
  }

  async listEvents(afterId: number, limit: number): Promise<DroverEvent[]> {
    const rows = await this.db.selectFrom('events').selectAll().where('id', '>', afterId).orderBy('id').limit(limit).execute();
    return rows.map((r) => ({ id: Number(r.id), type: r.type as EventType, at: Number(r.at), payload: JSON.parse(r.payload) }));
  }

  async lastEventId() {
    const row = await this.db.selectFrom('events').select((eb) => eb.fn.max('id').as('id')).executeTakeFirst();
    return Number(row?.id ?? 0);
  }

  async insertDesiredLrp(d: DesiredLrp) {
    try {
      await this.db.insertInto('desired_lrps').values(desiredToRow(d)).execute();
    } catch (e) {
      if (isUniqueViolation(e)) throw new DroverError('exists', `desired LRP ${d.processGuid} already exists`);
      throw e;
    }
  }

  async updateDesiredLrp(d: DesiredLrp) {
    const { process_guid, ...rest } = desiredToRow(d);
    await this.db.updateTable('desired_lrps').set(rest).where('process_guid', '=', process_guid).execute();
  }

  async deleteDesiredLrp(processGuid: string) {
    await this.db.deleteFrom('desired_lrps').where('process_guid', '=', processGuid).execute();
  }

  async insertActualLrp(a: ActualLrp) {
    try {
      await this.db.insertInto('actual_lrps').values(actualToRow(a)).execute();
    } catch (e) {
      if (isUniqueViolation(e)) throw new DroverError('exists', `actual LRP ${a.actualLrpKey.processGuid}/${a.actualLrpKey.index} already exists`);
      throw e;
    }
  }

  async updateActualLrp(a: ActualLrp, expectedIndex: number) {
    const { process_guid, idx, ...rest } = actualToRow(a);
    const result = await this.db
      .updateTable('actual_lrps')
      .set(rest)
      .where('process_guid', '=', process_guid)
      .where('idx', '=', idx)
      .where('mod_index', '=', expectedIndex)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  async deleteActualLrp(processGuid: string, index: number) {
    await this.db.deleteFrom('actual_lrps').where('process_guid', '=', processGuid).where('idx', '=', index).execute();
  }

  async upsertCell(c: Cell) {
    const row = { cell_id: c.cellId, heartbeat_at: c.heartbeatAt, data: JSON.stringify(c) };
    await this.db
      .insertInto('cells')
      .values(row)
      .onConflict((oc) => oc.column('cell_id').doUpdateSet({ heartbeat_at: row.heartbeat_at, data: row.data }))
      .execute();
  }

  async deleteCell(cellId: string) {
    await this.db.deleteFrom('cells').where('cell_id', '=', cellId).execute();
  }

  async upsertService(s: Service) {
    const row = { id: s.id, state: s.state, data: JSON.stringify(s) };
    await this.db
      .insertInto('services')
      .values(row)
      .onConflict((oc) => oc.column('id').doUpdateSet({ state: row.state, data: row.data }))
      .execute();
  }

  async deleteService(id: string) {
    await this.db.deleteFrom('services').where('id', '=', id).execute();
  }

  async appendEvent(type: EventType, payload: Record<string, unknown>, at: number) {
    const row = await this.db.insertInto('events').values({ type, at, payload: JSON.stringify(payload) }).returning('id').executeTakeFirstOrThrow();
    return Number(row.id);
  }
}

export class SqlStore extends SqlQueries implements Store {
  constructor(
    readonly kind: Dialect,
    private readonly kysely: Kysely<Database>,
  ) {
    super(kysely);
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

  transaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    return this.kysely.transaction().execute((trx) => fn(new SqlQueries(trx)));
  }

  async close() {
    await this.kysely.destroy();
  }
}
