// One store interface with two implementations (SQLite embedded, PostgreSQL shared).
// Every use case runs in one transaction: `store.transaction(async tx => ...)`.

import type { ActualLrp, ActualLrpFilter, DesiredLrp, DesiredLrpFilter } from '../model/lrp.js';
import type { Cell } from '../model/cell.js';
import type { Service } from '../model/service.js';
import type { DroverEvent, EventType } from '../model/event.js';

export interface StoreReads {
  getDesiredLrp(processGuid: string): Promise<DesiredLrp | undefined>;
  listDesiredLrps(filter?: DesiredLrpFilter & { serviceId?: string }): Promise<DesiredLrp[]>;
  getActualLrp(processGuid: string, index: number): Promise<ActualLrp | undefined>;
  listActualLrps(filter?: ActualLrpFilter): Promise<ActualLrp[]>;
  getCell(cellId: string): Promise<Cell | undefined>;
  listCells(): Promise<Cell[]>;
  getService(id: string): Promise<Service | undefined>;
  listServices(): Promise<Service[]>;
  /** events with id > afterId, oldest first */
  listEvents(afterId: number, limit: number): Promise<DroverEvent[]>;
  lastEventId(): Promise<number>;
}

export interface StoreTx extends StoreReads {
  insertDesiredLrp(d: DesiredLrp): Promise<void>;
  updateDesiredLrp(d: DesiredLrp): Promise<void>;
  deleteDesiredLrp(processGuid: string): Promise<void>;
  insertActualLrp(a: ActualLrp): Promise<void>;
  /** compare-and-set on the modification tag index the caller read; false when it moved */
  updateActualLrp(a: ActualLrp, expectedIndex: number): Promise<boolean>;
  deleteActualLrp(processGuid: string, index: number): Promise<void>;
  upsertCell(c: Cell): Promise<void>;
  deleteCell(cellId: string): Promise<void>;
  upsertService(s: Service): Promise<void>;
  deleteService(id: string): Promise<void>;
  appendEvent(type: EventType, payload: Record<string, unknown>, at: number): Promise<number>;
}

export interface Store extends StoreReads {
  readonly kind: 'sqlite' | 'postgres';
  migrate(): Promise<void>;
  transaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}
