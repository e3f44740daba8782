// One store interface with two implementations (SQLite embedded, PostgreSQL shared).
// Every use case runs in one transaction: `store.transaction(async tx => ...)`.

import type { ActualLrp, ActualLrpFilter, ActualLrpPlacement, ActualLrpState, DesiredLrp, DesiredLrpFilter, DesiredLrpPlanInfo } from '../model/lrp.js';
import type { Cell } from '../model/cell.js';
import type { Service, ServiceState } from '../model/service.js';
import type { DroverEvent, EventType } from '../model/event.js';
import type { Lock, LockFilter, LockList, LockPage, NewLock } from '../model/lock.js';
import type { LeaseFence, LeaseState } from './lease.js';
import type { ActualLrpsTable } from './schema.js';
import type { PackedActualLrps } from './packed-actual-lrps.js';

/** An actual LRP as stored: `net_info` is the JSON text of its ActualLrpNetInfo. */
export type ActualLrpRow = ActualLrpsTable;

export interface NewEvent {
  type: EventType;
  payload: Record<string, unknown>;
  at: number;
}

export interface PlacementCount {
  state: ActualLrpState;
  cellId: string;
  targetCellId: string;
  count: number;
}

export interface StoreReads {
  getDesiredLrp(processGuid: string): Promise<DesiredLrp | undefined>;
  listDesiredLrps(filter?: DesiredLrpFilter & { serviceId?: string }): Promise<DesiredLrp[]>;
  /** listDesiredLrps's LRPs (all, or these), only what convergence plans from: no whole record parsed */
  listDesiredLrpPlanInfos(filter?: { processGuids?: string[] }): Promise<DesiredLrpPlanInfo[]>;
  getActualLrp(processGuid: string, index: number): Promise<ActualLrp | undefined>;
  listActualLrps(filter?: ActualLrpFilter & { processGuids?: string[] }): Promise<ActualLrp[]>;
  /**
   * The rows listActualLrps would return, in the same order, in pages of at most `pageSize`
   * rows, packed (packed-actual-lrps.ts), for encoders that stream. SQLite reads them in one
   * statement (one snapshot); PostgreSQL reads one page per query (keyset on the primary key):
   * each page is consistent, a list longer than a page is not one snapshot.
   */
  pagesOfActualLrps(filter?: ActualLrpFilter, pageSize?: number): AsyncIterable<PackedActualLrps>;
  /**
   * listActualLrps' instances with only what a cell agent compares: the embedded agent lists
   * its whole cell every 2 s, and full records (16 columns, the net info parsed) made that
   * one of the daemon's largest sources of garbage with 1,000 instances.
   */
  listActualLrpPlacements(filter: ActualLrpFilter): Promise<ActualLrpPlacement[]>;
  /** how many instances not asked to stop are in each (state, cell, target cell); a few rows */
  countActualLrpsByPlacement(): Promise<PlacementCount[]>;
  getCell(cellId: string): Promise<Cell | undefined>;
  listCells(): Promise<Cell[]>;
  getService(id: string): Promise<Service | undefined>;
  /** all services, or only those in one of `states` */
  listServices(filter?: { states?: ServiceState[] }): Promise<Service[]>;
  /** events with id > afterId, oldest first */
  listEvents(afterId: number, limit: number): Promise<DroverEvent[]>;
  lastEventId(): Promise<number>;
  /** when the oldest event still in the log was written (ms); undefined for an empty log */
  oldestEventAt(): Promise<number | undefined>;
  /** live locks (expiresAt > now) matching the filter; `count` counts all matches, `entries` one page (all when no page) */
  queryLocks(filter: LockFilter, page: LockPage | undefined, now: number): Promise<LockList>;
  /** an attachment's bytes by their SHA-256 (hex) */
  getAttachment(hash: string): Promise<Buffer | undefined>;
}

export interface StoreTx extends StoreReads {
  insertDesiredLrp(d: DesiredLrp): Promise<void>;
  updateDesiredLrp(d: DesiredLrp): Promise<void>;
  deleteDesiredLrp(processGuid: string): Promise<void>;
  /** stores a new instance; false, with nothing written, when an instance holds its index already */
  insertActualLrp(a: ActualLrp): Promise<boolean>;
  /**
   * `before` (as the caller read it) becomes `a`: a compare-and-set on before's modification
   * tag index (false when it moved), writing the columns in which `a` differs from `before`
   */
  updateActualLrp(a: ActualLrp, before: ActualLrp): Promise<boolean>;
  deleteActualLrp(processGuid: string, index: number): Promise<void>;
  upsertCell(c: Cell): Promise<void>;
  deleteCell(cellId: string): Promise<void>;
  upsertService(s: Service): Promise<void>;
  deleteService(id: string): Promise<void>;
  /** appends events in this order; the id of the last one */
  appendEvents(events: NewEvent[]): Promise<number>;
  /**
   * Deletes, of the `limit` oldest events (by id), those written before `at`; how many. An
   * event at or after `at` among them stays (replicas' clocks may differ a little).
   */
  deleteEventsBefore(at: number, limit: number): Promise<number>;
  /** fails with `exists` when one of the service instances already has a lock row */
  insertLocks(locks: NewLock[]): Promise<Lock[]>;
  /** deletes the management locks (no orchestration job) of `owner` on those instances */
  deleteLocks(owner: string, serviceInstanceIds: string[]): Promise<number>;
  purgeExpiredLocks(now: number): Promise<number>;
  /** one more user of the attachment `hash` (the SHA-256 of `data`); stores it if new */
  retainAttachment(hash: string, data: Buffer, now: number): Promise<void>;
  /** one user less; the last one out deletes it */
  releaseAttachment(hash: string): Promise<void>;
}

export interface Store extends StoreReads {
  readonly kind: 'sqlite' | 'postgres';
  migrate(): Promise<void>;
  /** `StoreTx.insertLocks` in a transaction of its own */
  insertLocks(locks: NewLock[]): Promise<Lock[]>;
  /**
   * Runs `fn` in a transaction. `fn` may run more than once (a rolled-back run is run again,
   * see group-commit.ts): it keeps its effects in the transaction and its result, and sets
   * nothing outside that a second run would set again. With `fence`, the transaction first
   * checks (see lease.ts) that the fence's lease still holds, else fails with `conflict` and
   * writes nothing.
   */
  transaction<T>(fn: (tx: StoreTx) => Promise<T>, opts?: { fence?: LeaseFence }): Promise<T>;
  /** takes or renews a leader lease (lease.ts); the lease when `holder` holds it afterwards */
  acquireLease(name: string, holder: string, leaseMs: number): Promise<LeaseState | undefined>;
  releaseLease(name: string, holder: string): Promise<void>;
  readLease(name: string): Promise<LeaseState | undefined>;
  close(): Promise<void>;
}
