// Leader leases in the shared store: one row per lease name, taken or renewed by a single
// conditional upsert (the row is free when expired, or already mine), with a fencing epoch
// that grows on every takeover. Times are the database's clock in unix milliseconds, so
// replicas with skewed clocks still agree on who holds the lease.

import { sql, type Kysely, type Transaction } from 'kysely';
import { DroverError } from '../model/errors.js';
import type { Dialect } from './schema.js';

export interface LeaseState {
  name: string;
  holder: string;
  epoch: number;
  /** database clock, unix ms */
  expiresAt: number;
  /** the database clock when this was read, unix ms */
  now: number;
}

/** What a leader's write must still hold when it commits. */
export interface LeaseFence {
  name: string;
  holder: string;
  epoch: number;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyDb = Kysely<any> | Transaction<any>;

/** The database clock in unix ms, as an SQL expression. */
function nowMs(d: Dialect) {
  return d === 'postgres'
    ? sql<number>`(extract(epoch from statement_timestamp()) * 1000)::bigint`
    : sql<number>`CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)`;
}

interface LeaseRow {
  name: string;
  holder: string;
  epoch: number | string;
  expires_at: number | string;
  now: number | string;
}

const toState = (r: LeaseRow): LeaseState => ({
  name: r.name,
  holder: r.holder,
  epoch: Number(r.epoch),
  expiresAt: Number(r.expires_at),
  now: Number(r.now),
});

/**
 * Takes the lease if it is free (missing or expired) or renews it if `holder` holds it.
 * A takeover (including taking back one's own expired lease) increments the epoch; a renewal
 * of a live lease keeps it. Returns the lease when `holder` holds it afterwards, else undefined.
 */
export async function acquireLease(db: AnyDb, d: Dialect, name: string, holder: string, leaseMs: number): Promise<LeaseState | undefined> {
  const now = nowMs(d);
  const result = await sql<LeaseRow>`
    INSERT INTO leader_lease (name, holder, epoch, expires_at)
    VALUES (${name}, ${holder}, 1, ${now} + ${leaseMs})
    ON CONFLICT (name) DO UPDATE SET
      holder = excluded.holder,
      epoch = CASE WHEN leader_lease.holder = excluded.holder AND leader_lease.expires_at > ${now}
                   THEN leader_lease.epoch ELSE leader_lease.epoch + 1 END,
      expires_at = excluded.expires_at
    WHERE leader_lease.holder = excluded.holder OR leader_lease.expires_at <= ${now}
    RETURNING name, holder, epoch, expires_at, ${now} AS now`.execute(db);
  const row = result.rows[0];
  return row && row.holder === holder ? toState(row) : undefined;
}

/** Gives the lease up at once (a graceful stop), so a successor need not wait for it to expire. */
export async function releaseLease(db: AnyDb, d: Dialect, name: string, holder: string): Promise<void> {
  await sql`UPDATE leader_lease SET expires_at = ${nowMs(d)} - 1 WHERE name = ${name} AND holder = ${holder}`.execute(db);
}

/** The lease row as it stands (held or expired), with the database clock. */
export async function readLease(db: AnyDb, d: Dialect, name: string): Promise<LeaseState | undefined> {
  const result = await sql<LeaseRow>`SELECT name, holder, epoch, expires_at, ${nowMs(d)} AS now FROM leader_lease WHERE name = ${name}`.execute(db);
  const row = result.rows[0];
  return row ? toState(row) : undefined;
}

/**
 * Inside a write transaction: fails with `conflict` (and so rolls the transaction back) unless
 * the fence's holder still holds the lease at the fence's epoch and it has not expired. On
 * PostgreSQL the row stays share-locked until commit, so a takeover waits for this
 * transaction: the deposed leader's writes all land before the new epoch begins, or not at all.
 */
export async function checkLease(trx: AnyDb, d: Dialect, fence: LeaseFence): Promise<void> {
  const lock = d === 'postgres' ? sql`FOR SHARE` : sql``;
  const result = await sql<{ epoch: number }>`
    SELECT epoch FROM leader_lease
    WHERE name = ${fence.name} AND holder = ${fence.holder} AND epoch = ${fence.epoch} AND expires_at > ${nowMs(d)}
    ${lock}`.execute(trx);
  if (!result.rows.length) throw new DroverError('conflict', `stale leader: ${fence.holder} no longer holds lease ${fence.name} at epoch ${fence.epoch}`);
}
