// GET /status: this replica's view of the control plane — its id, whether it leads, the
// lease (holder and epoch, from the store) and the live cells. Every replica answers.

import type { FastifyInstance } from 'fastify';
import type { CoreContext } from '../../core/context.js';
import type { LeaderElection } from '../../converge/leader.js';
import { cellAlive } from '../../model/cell.js';

export interface ReplicaStatus {
  replicaId: string;
  store: 'sqlite' | 'postgres';
  leading: boolean;
  /** the lease's current epoch (SQLite: 1) */
  epoch: number;
  /** the replica holding the lease now (unset when it has expired or was never taken) */
  leader?: string;
  /** the epoch this replica leads at or last led at (0: never) */
  myEpoch: number;
  cells: { cellId: string; heartbeatAt: number; ttlMs: number }[];
}

export async function replicaStatus(ctx: CoreContext, leader: LeaderElection): Promise<ReplicaStatus> {
  const leading = leader.isLeader();
  const [lease, cells] = await Promise.all([leader.shared ? ctx.store.readLease(leader.name) : undefined, ctx.store.listCells()]);
  const now = ctx.now();
  return {
    replicaId: leader.holder,
    store: ctx.store.kind,
    leading,
    epoch: leader.shared ? (lease?.epoch ?? 0) : 1,
    leader: leader.shared ? (lease && lease.expiresAt > lease.now ? lease.holder : undefined) : leader.holder,
    myEpoch: leader.epoch,
    cells: cells.filter((c) => cellAlive(c, now)).map((c) => ({ cellId: c.cellId, heartbeatAt: c.heartbeatAt, ttlMs: c.ttlMs })),
  };
}

export function registerStatus(app: FastifyInstance, ctx: CoreContext, leader: LeaderElection): void {
  app.get('/status', async (_request, reply) => reply.type('application/json').send(JSON.stringify(await replicaStatus(ctx, leader))));
}
