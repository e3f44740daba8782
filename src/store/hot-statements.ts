// The statements every desire and every convergence write runs, compiled once per store.
// Kysely builds, freezes and compiles a query object on each call (a quarter of the CPU of a
// desire through the core); these are compiled from the same builders at open time, in the
// store's own dialect, and run as a compiled query with new parameters.

import { CompiledQuery, type Kysely } from 'kysely';
import type { ActualLrpsTable, Database, DesiredLrpsTable } from './schema.js';

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
/** updateActualLrp sets every column but the key */
const ACTUAL_UPDATE_COLUMNS = ACTUAL_COLUMNS.filter((c) => c !== 'process_guid' && c !== 'idx');

/** SQL texts; parameters in the order each comment gives. */
export interface HotStatements {
  /** DESIRED_COLUMNS */
  insertDesiredLrp: string;
  /** ACTUAL_COLUMNS */
  insertActualLrp: string;
  /** ACTUAL_COLUMNS less process_guid and idx, then process_guid, idx, the expected mod_index */
  updateActualLrp: string;
  /** type, at, payload; returns id */
  appendEvent: string;
  /** process_guid */
  getDesiredLrp: string;
  /** process_guid, idx */
  getActualLrp: string;
  /** process_guid; in index order */
  listActualLrpsOf: string;
}

/** A row of nulls: the builders only need the column names (each value becomes a parameter). */
function template<C extends string>(columns: readonly C[]): Record<C, null> {
  return Object.fromEntries(columns.map((c) => [c, null])) as Record<C, null>;
}

export function compileHotStatements(db: Kysely<Database>): HotStatements {
  // The builders' value types are not null; only the compiled text is kept.
  const row = <C extends string>(columns: readonly C[]) => template(columns) as never;
  return {
    insertDesiredLrp: db.insertInto('desired_lrps').values(row(DESIRED_COLUMNS)).compile().sql,
    insertActualLrp: db.insertInto('actual_lrps').values(row(ACTUAL_COLUMNS)).compile().sql,
    updateActualLrp: db
      .updateTable('actual_lrps')
      .set(row(ACTUAL_UPDATE_COLUMNS))
      .where('process_guid', '=', '')
      .where('idx', '=', 0)
      .where('mod_index', '=', 0)
      .compile().sql,
    appendEvent: db.insertInto('events').values({ type: '', at: 0, payload: '' }).returning('id').compile().sql,
    getDesiredLrp: db.selectFrom('desired_lrps').select('data').where('process_guid', '=', '').compile().sql,
    getActualLrp: db.selectFrom('actual_lrps').selectAll().where('process_guid', '=', '').where('idx', '=', 0).compile().sql,
    listActualLrpsOf: db.selectFrom('actual_lrps').selectAll().where('process_guid', '=', '').orderBy('idx').compile().sql,
  };
}

/** `sql` with these parameters, ready for `executeQuery`. */
export function bind(sql: string, parameters: readonly unknown[]): CompiledQuery {
  return CompiledQuery.raw(sql, parameters as unknown[]);
}

export function actualUpdateParameters(row: ActualLrpsTable, expectedIndex: number): unknown[] {
  return [...ACTUAL_UPDATE_COLUMNS.map((c) => row[c]), row.process_guid, row.idx, expectedIndex];
}
