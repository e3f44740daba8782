// Table shapes shared by both SQL stores, and the migrations that create them.

import type { ColumnType, Generated } from 'kysely';

export interface DesiredLrpsTable {
  process_guid: string;
  domain: string;
  service_id: string;
  instances: number;
  data: string;
}

export interface ActualLrpsTable {
  process_guid: string;
  idx: number;
  domain: string;
  instance_guid: string;
  cell_id: string;
  target_cell_id: string;
  state: string;
  presence: string;
  crash_count: number;
  crash_reason: string;
  placement_error: string;
  since: number;
  mod_epoch: string;
  mod_index: number;
  net_info: string;
  stop_requested: number;
}

export interface CellsTable {
  cell_id: string;
  heartbeat_at: number;
  data: string;
}

export interface ServicesTable {
  id: string;
  state: string;
  data: string;
}

export interface EventsTable {
  id: Generated<number>;
  type: string;
  at: number;
  payload: string;
}

export interface LocksTable {
  id: Generated<number>;
  orchestration_job_id: string | null;
  service_instance_id: string;
  owner: string;
  expires_at: number;
  temporary: number;
}

export interface AttachmentsTable {
  hash: string;
  size: number;
  refs: number;
  data: Buffer;
  created_at: number;
}

export interface MigrationsTable {
  version: number;
  applied_at: ColumnType<number, number, never>;
}

export interface Database {
  desired_lrps: DesiredLrpsTable;
  actual_lrps: ActualLrpsTable;
  cells: CellsTable;
  services: ServicesTable;
  events: EventsTable;
  locks: LocksTable;
  attachments: AttachmentsTable;
  drover_migrations: MigrationsTable;
}

export type Dialect = 'sqlite' | 'postgres';

/** Ordered migrations; each lists its statements per dialect where they differ. */
export const MIGRATIONS: { version: number; statements: (d: Dialect) => string[] }[] = [
  {
    version: 1,
    statements: (d) => {
      const bigint = d === 'sqlite' ? 'INTEGER' : 'BIGINT';
      const serial = d === 'sqlite' ? 'INTEGER PRIMARY KEY AUTOINCREMENT' : 'BIGSERIAL PRIMARY KEY';
      return [
        `CREATE TABLE desired_lrps (
          process_guid TEXT PRIMARY KEY, domain TEXT NOT NULL, service_id TEXT NOT NULL,
          instances INTEGER NOT NULL, data TEXT NOT NULL)`,
        `CREATE INDEX desired_lrps_domain ON desired_lrps (domain)`,
        `CREATE INDEX desired_lrps_service ON desired_lrps (service_id)`,
        `CREATE TABLE actual_lrps (
          process_guid TEXT NOT NULL, idx INTEGER NOT NULL, domain TEXT NOT NULL,
          instance_guid TEXT NOT NULL, cell_id TEXT NOT NULL, target_cell_id TEXT NOT NULL,
          state TEXT NOT NULL, presence TEXT NOT NULL, crash_count INTEGER NOT NULL,
          crash_reason TEXT NOT NULL, placement_error TEXT NOT NULL, since ${bigint} NOT NULL,
          mod_epoch TEXT NOT NULL, mod_index INTEGER NOT NULL, net_info TEXT NOT NULL,
          stop_requested INTEGER NOT NULL, PRIMARY KEY (process_guid, idx))`,
        `CREATE INDEX actual_lrps_domain ON actual_lrps (domain)`,
        `CREATE INDEX actual_lrps_cell ON actual_lrps (cell_id)`,
        `CREATE INDEX actual_lrps_target_cell ON actual_lrps (target_cell_id)`,
        `CREATE TABLE cells (cell_id TEXT PRIMARY KEY, heartbeat_at ${bigint} NOT NULL, data TEXT NOT NULL)`,
        `CREATE TABLE services (id TEXT PRIMARY KEY, state TEXT NOT NULL, data TEXT NOT NULL)`,
        `CREATE TABLE events (id ${serial}, type TEXT NOT NULL, at ${bigint} NOT NULL, payload TEXT NOT NULL)`,
      ];
    },
  },
  {
    // Arrowhead orchestration locks. The unique index makes "one lock per service instance"
    // hold across replicas: of two racing creators the second insert fails.
    version: 2,
    statements: (d) => {
      const bigint = d === 'sqlite' ? 'INTEGER' : 'BIGINT';
      const serial = d === 'sqlite' ? 'INTEGER PRIMARY KEY AUTOINCREMENT' : 'BIGSERIAL PRIMARY KEY';
      return [
        `CREATE TABLE locks (
          id ${serial}, orchestration_job_id TEXT, service_instance_id TEXT NOT NULL,
          owner TEXT NOT NULL, expires_at ${bigint} NOT NULL, temporary INTEGER NOT NULL)`,
        `CREATE UNIQUE INDEX locks_service_instance ON locks (service_instance_id)`,
        `CREATE INDEX locks_owner ON locks (owner)`,
        `CREATE INDEX locks_expires_at ON locks (expires_at)`,
        `CREATE INDEX locks_orchestration_job ON locks (orchestration_job_id)`,
      ];
    },
  },
  {
    // The service watcher lists the services still moving (INSTANTIATING, TERMINATING).
    version: 3,
    statements: () => [`CREATE INDEX services_state ON services (state)`],
  },
  {
    // Attachments (Era mservice zips), content-addressed by SHA-256: a zip shared by several
    // mservices is stored once; `refs` counts its users and the last one out deletes it.
    version: 4,
    statements: (d) => [
      `CREATE TABLE attachments (
        hash TEXT PRIMARY KEY, size ${d === 'sqlite' ? 'INTEGER' : 'BIGINT'} NOT NULL, refs INTEGER NOT NULL,
        data ${d === 'sqlite' ? 'BLOB' : 'BYTEA'} NOT NULL, created_at ${d === 'sqlite' ? 'INTEGER' : 'BIGINT'} NOT NULL)`,
    ],
  },
  {
    // Leader leases (src/store/lease.ts): who runs convergence, with a fencing epoch.
    version: 5,
    statements: (d) => [
      `CREATE TABLE leader_lease (
        name TEXT PRIMARY KEY, holder TEXT NOT NULL, epoch ${d === 'sqlite' ? 'INTEGER' : 'BIGINT'} NOT NULL,
        expires_at ${d === 'sqlite' ? 'INTEGER' : 'BIGINT'} NOT NULL)`,
    ],
  },
  {
    // Most instances are on no cell yet or on none any more, and most desired LRPs belong to
    // no service: their empty values need no index entries, which every desire would write
    // (an index entry is a B-tree insert and a page to commit). The queries that use these
    // indexes say `<> ''` themselves, so that the partial index serves them.
    version: 6,
    statements: () => [
      `DROP INDEX actual_lrps_cell`,
      `CREATE INDEX actual_lrps_cell ON actual_lrps (cell_id) WHERE cell_id <> ''`,
      `DROP INDEX actual_lrps_target_cell`,
      `CREATE INDEX actual_lrps_target_cell ON actual_lrps (target_cell_id) WHERE target_cell_id <> ''`,
      `DROP INDEX desired_lrps_service`,
      `CREATE INDEX desired_lrps_service ON desired_lrps (service_id) WHERE service_id <> ''`,
    ],
  },
  {
    // SQLite: event ids without AUTOINCREMENT, which rewrites a row of sqlite_sequence on every
    // insert (one more page in every commit's WAL frames). A plain INTEGER PRIMARY KEY takes
    // the largest id plus one: still increasing, as no event is ever deleted (an id could
    // only come back if the newest events were). PostgreSQL's sequence is left as it is.
    version: 7,
    statements: (d) =>
      d === 'sqlite'
        ? [
            `CREATE TABLE events_new (id INTEGER PRIMARY KEY, type TEXT NOT NULL, at INTEGER NOT NULL, payload TEXT NOT NULL)`,
            `INSERT INTO events_new (id, type, at, payload) SELECT id, type, at, payload FROM events`,
            `DROP TABLE events`,
            `ALTER TABLE events_new RENAME TO events`,
          ]
        : [],
  },
];
