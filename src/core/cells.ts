// Cells announce themselves and keep their presence alive by heartbeating.

import { DEFAULT_CELL_TTL_MS, type Cell } from '../model/cell.js';
import { fail } from '../model/errors.js';
import type { Principal } from '../model/principal.js';
import { authorize } from './authorize.js';
import { inTransaction, type CoreContext } from './context.js';

export type CellRegistration = Partial<Omit<Cell, 'heartbeatAt'>> & { cellId: string };

/** Register or refresh a cell's presence; the heartbeat time is the control plane's clock. */
export async function heartbeatCell(ctx: CoreContext, p: Principal | undefined, reg: CellRegistration): Promise<Cell> {
  authorize(p, 'agent');
  if (!reg?.cellId || !/^[A-Za-z0-9_.:-]+$/.test(reg.cellId)) fail('invalid_request', 'cell_id is required and must be a simple name');
  return inTransaction(ctx, async (tx, emit) => {
    const before = await tx.getCell(reg.cellId);
    const cell: Cell = {
      cellId: reg.cellId,
      repAddress: reg.repAddress ?? before?.repAddress ?? '',
      zone: reg.zone ?? before?.zone ?? '',
      site: reg.site ?? before?.site ?? '',
      sections: reg.sections ?? before?.sections ?? [],
      placementTags: reg.placementTags ?? before?.placementTags ?? [],
      capacity: reg.capacity ?? before?.capacity ?? { memoryMb: 0, diskMb: 0, containers: 0 },
      ttlMs: reg.ttlMs ?? before?.ttlMs ?? DEFAULT_CELL_TTL_MS,
      heartbeatAt: ctx.now(),
    };
    await tx.upsertCell(cell);
    // Only a new or changed cell is news; routine heartbeats are not.
    if (!before || JSON.stringify({ ...before, heartbeatAt: 0 }) !== JSON.stringify({ ...cell, heartbeatAt: 0 })) {
      await emit('cell_changed', { cell });
    }
    return cell;
  });
}
