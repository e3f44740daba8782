// The statements every desire and every convergence write runs, compiled once per store.
// Kysely builds, freezes and compiles a query object on each call (a quarter of the CPU of a
// desire through the core); these are compiled from the same builders at open time, in the
// store's own dialect, and run as a compiled query with new parameters.

import { CompiledQuery, type Kysely } from 'kysely';
import type { ActualLrpsTable, Database, DesiredLrpsTable, Dialect } from './schema.js';

export const DESIRED_COLUMNS = ['process_guid', 'domain', 'service_id', 'instances', 'data'] as const satisfies readonly (keyof DesiredLrpsTable)[];
export const ACTUAL_COLUMNS = [
  'process_guid',
  'idx',
  'domain',
  'instance_guid',
  'cell_id',
  'target_cell_id',
  'state',
  'presence',
  'crash_count',
  'crash_reason',
  'placement_error',
  'since',
  'mod_epoch',
  'mod_index',
  'net_info',
  'stop_requested',
] as const satisfies readonly (keyof ActualLrpsTable)[];
/** the columns an actual LRP update may set: all but the key */
export const ACTUAL_UPDATE_COLUMNS = ACTUAL_COLUMNS.filter((c) => c !== 'process_guid' && c !== 'idx');
export type ActualUpdateColumn = (typeof ACTUAL_UPDATE_COLUMNS)[number];

/** The fields of HotStatements.planInfo, in its order. */
export const PLAN_INFO_FIELDS = ['enabled', 'placement', 'placementTags', 'restart'] as const;

/** SQL texts; parameters in the order each comment gives. */
export interface HotStatements {
  /** DESIRED_COLUMNS */
  insertDesiredLrp: string;
  /** ACTUAL_COLUMNS; nothing when the key is taken */
  insertActualLrp: string;
  /**
   * The compare-and-set of an actual LRP that sets only `columns` (a transition changes a few:
   * SQLite rewrites the index entries of every indexed column an UPDATE sets, changed or not).
   * Parameters: the values of `columns`, then process_guid, idx, the expected mod_index.
   */
  updateActualLrp(columns: readonly ActualUpdateColumn[]): string;
  /**
   * An insert of `rows` events (type, at, payload for each, in order); PostgreSQL returns their
   * ids, SQLite reports the last as the insert id (cheaper than RETURNING).
   */
  appendEvents(rows: number): string;
  /** process_guid */
  getDesiredLrp: string;
  /** process_guid, idx */
  getActualLrp: string;
  /** process_guid; in index order */
  listActualLrpsOf: string;
  /**
   * A desired LRP's planning fields (PLAN_INFO_FIELDS): a select expression over its row, and
   * how to read their values (JSON null or absent: the record has no such field) from it.
   * SQLite takes them out of the record (`json_extract`, in C: half the time of parsing the
   * whole record in JavaScript). PostgreSQL parses a JSON text again for every `->` (100k
   * records: 2.6 s against 0.23 s to send them whole), so it sends the record.
   */
  planInfo: { select: string; values(text: string): unknown[] };
}

/** A row of nulls: the builders only need the column names (each value becomes a parameter). */
function template<C extends string>(columns: readonly C[]): Record<C, null> {
  return Object.fromEntries(columns.map((c) => [c, null])) as Record<C, null>;
}

export function compileHotStatements(db: Kysely<Database>, dialect: Dialect): HotStatements {
  // The builders' value types are not null; only the compiled text is kept.
  const row = <C extends string>(columns: readonly C[]) => template(columns) as never;
  // one text per set of columns: transitions set a handful of different sets
  const updates = new Map<string, string>();
  const eventInserts = new Map<number, string>();
  return {
    insertDesiredLrp: db.insertInto('desired_lrps').values(row(DESIRED_COLUMNS)).compile().sql,
    insertActualLrp: db
      .insertInto('actual_lrps')
      .values(row(ACTUAL_COLUMNS))
      .onConflict((oc) => oc.doNothing())
      .compile().sql,
    updateActualLrp(columns) {
      const key = columns.join();
      let text = updates.get(key);
      if (text === undefined) {
        text = db.updateTable('actual_lrps').set(row(columns)).where('process_guid', '=', '').where('idx', '=', 0).where('mod_index', '=', 0).compile().sql;
        updates.set(key, text);
      }
      return text;
    },
    appendEvents(rows) {
      let text = eventInserts.get(rows);
      if (text === undefined) {
        const insert = db.insertInto('events').values(Array.from({ length: rows }, () => ({ type: '', at: 0, payload: '' })));
        text = (dialect === 'sqlite' ? insert : insert.returning('id')).compile().sql;
        eventInserts.set(rows, text);
      }
      return text;
    },
    getDesiredLrp: db.selectFrom('desired_lrps').select('data').where('process_guid', '=', '').compile().sql,
    getActualLrp: db.selectFrom('actual_lrps').selectAll().where('process_guid', '=', '').where('idx', '=', 0).compile().sql,
    listActualLrpsOf: db.selectFrom('actual_lrps').selectAll().where('process_guid', '=', '').orderBy('idx').compile().sql,
    planInfo:
      dialect === 'sqlite'
        ? { select: `json_extract(data, ${PLAN_INFO_FIELDS.map((f) => `'$.${f}'`).join(', ')})`, values: (text) => JSON.parse(text) as unknown[] }
        : {
            select: 'data',
            values: (text) => {
              const record = JSON.parse(text) as Record<string, unknown>;
              return PLAN_INFO_FIELDS.map((f) => record[f]);
            },
          },
  };
}

/** `sql` with these parameters, ready for `executeQuery`. */
export function bind(sql: string, parameters: readonly unknown[]): CompiledQuery {
  return CompiledQuery.raw(sql, parameters as unknown[]);
}
