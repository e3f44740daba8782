// A cell is a node agent that runs instances; it is alive while its heartbeats keep coming.

export interface Cell {
  cellId: string;
  repAddress: string;
  zone: string;
  site: string;
  sections: string[];
  placementTags: string[];
  capacity: { memoryMb: number; diskMb: number; containers: number };
  heartbeatAt: number;
  ttlMs: number;
}

export const DEFAULT_CELL_TTL_MS = 10_000;

export function cellAlive(c: Cell, now: number): boolean {
  return now - c.heartbeatAt <= c.ttlMs;
}
