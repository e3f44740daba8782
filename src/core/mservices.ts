// Era mservice use cases, protocol-free. Each is one transaction on the mservice's
// DesiredLRP (model/mservice.ts maps the one onto the other); the Era-only fields travel
// in its annotation. A change to what runs (command, attachment, placement) restarts the
// instances; one to the text around it (title, comment, ext) does not.

import { randomUUID } from 'node:crypto';
import { fail } from '../model/errors.js';
import type { DesiredLrp } from '../model/lrp.js';
import {
  DEFAULT_DOMAIN,
  FieldError,
  descriptorOf,
  desiredLrpFor,
  mergeMservice,
  storedMservice,
  validateMservice,
  type MserviceDescriptor,
  type MserviceInput,
  type StoredMservice,
} from '../model/mservice.js';
import type { Principal } from '../model/principal.js';
import { validateDesiredLrp } from '../model/validate.js';
import type { StoreReads, StoreTx } from '../store/store.js';
import { checkZip } from './attachments.js';
import { authorize } from './authorize.js';
import { inTransaction, type CoreContext, type Emit } from './context.js';
import { deleteDesiredLrp, insertDesiredLrp, reconcileInstances } from './desired-lrps.js';
import { requireChangeAllowed } from './guards.js';
import { stopActualLrp } from './actual-lrps.js';

const DOMAIN = /^[A-Za-z0-9_.-]{1,64}$/;
const iso = (ms: number) => new Date(ms).toISOString();

function validDomain(domain: string | undefined): string {
  if (domain === undefined || domain === '') return DEFAULT_DOMAIN;
  if (!DOMAIN.test(domain)) throw new FieldError('domain', `must match ${DOMAIN.source}`);
  return domain;
}

interface Current {
  d: DesiredLrp;
  m: StoredMservice;
}

async function load(tx: StoreReads, domain: string, id: string): Promise<Current> {
  const d = await tx.getDesiredLrp(id.toLowerCase());
  const m = d?.domain === domain ? storedMservice(d) : undefined;
  if (!d || !m) fail('not_found', `mservice ${id} not found in domain ${domain}`);
  return { d, m };
}

/** Names are unique within a domain (the platform's rule). */
async function requireFreeName(tx: StoreReads, domain: string, name: string, id: string): Promise<void> {
  for (const d of await tx.listDesiredLrps({ domain })) {
    if (d.processGuid !== id && storedMservice(d)?.name === name) fail('exists', `name: ${name} is taken in domain ${domain}`);
  }
}

/**
 * The DesiredLRP for `m`. A change keeps what the crash-loop guard recorded while the
 * switch stays where it was; flipping it clears that (enabling again starts afresh).
 */
function build(id: string, domain: string, m: StoredMservice, enabled: boolean, before?: DesiredLrp): DesiredLrp {
  const d = validateDesiredLrp(desiredLrpFor(id, domain, m, enabled));
  if (!before) return { ...d, modificationTag: { epoch: randomUUID(), index: 0 } };
  const kept = before.enabled === enabled ? { disabledReason: before.disabledReason, disabledAt: before.disabledAt, restartLog: before.restartLog } : {};
  return { ...d, ...kept, modificationTag: { ...before.modificationTag, index: before.modificationTag.index + 1 } };
}

const runsAs = (d: DesiredLrp) => JSON.stringify([d.action, d.setup, d.placement]);

async function saveChange(tx: StoreTx, emit: Emit, before: DesiredLrp, after: DesiredLrp, now: number): Promise<void> {
  await tx.updateDesiredLrp(after);
  await emit('desired_lrp_changed', { before, after });
  // the running instances run the old definition: stop them, convergence starts the new one
  if (runsAs(before) !== runsAs(after)) {
    for (const a of await tx.listActualLrps({ processGuid: after.processGuid })) await stopActualLrp(tx, emit, a, now);
  }
  await reconcileInstances(tx, emit, after, now);
}

/** A validated request as stored fields; ct and the attachment stay what they were. */
function stored(v: MserviceInput, now: number, current?: StoredMservice): StoredMservice {
  const ext = { ...v.ext, ct: current?.ext.ct ?? iso(now), lwt: iso(now) };
  return { name: v.name, cmdline: v.cmdline, cmdparam: v.cmdparam, opts: v.opts, ext, ...(current?.attachment ? { attachment: current.attachment } : {}) };
}

type Next = (cur: Current, tx: StoreTx, now: number) => Promise<{ m: StoredMservice; enabled: boolean }>;

/** The shape of every change: load in the domain (not locked by another), compute the new fields, check the name, save. */
function change(ctx: CoreContext, p: Principal | undefined, domain: string | undefined, id: string, next: Next): Promise<MserviceDescriptor> {
  const caller = authorize(p, 'owner');
  const dom = validDomain(domain);
  return inTransaction(ctx, async (tx, emit) => {
    const now = ctx.now();
    const cur = await load(tx, dom, id);
    await requireChangeAllowed(ctx, tx, cur.d, caller);
    const { m, enabled } = await next(cur, tx, now);
    if (m.name !== cur.m.name) await requireFreeName(tx, dom, m.name, cur.d.processGuid);
    const after = build(cur.d.processGuid, dom, m, enabled, cur.d);
    await saveChange(tx, emit, cur.d, after, now);
    return descriptorOf(after)!;
  });
}

function requireSameId(v: MserviceInput, id: string): void {
  if (v.id !== undefined && v.id !== id.toLowerCase()) throw new FieldError('id', 'differs from the id in the path');
}

export async function listMservices(ctx: CoreContext, p: Principal | undefined, domain?: string): Promise<MserviceDescriptor[]> {
  authorize(p, 'reader');
  const desired = await ctx.store.listDesiredLrps({ domain: validDomain(domain) });
  return desired.map(descriptorOf).filter((m): m is MserviceDescriptor => m !== undefined);
}

export async function getMservice(ctx: CoreContext, p: Principal | undefined, domain: string | undefined, id: string): Promise<MserviceDescriptor> {
  authorize(p, 'reader');
  return descriptorOf((await load(ctx.store, validDomain(domain), id)).d)!;
}

export async function createMservice(ctx: CoreContext, p: Principal | undefined, domain: string | undefined, body: unknown): Promise<MserviceDescriptor> {
  authorize(p, 'owner');
  const dom = validDomain(domain);
  const v = validateMservice(body);
  const id = v.id ?? randomUUID();
  return inTransaction(ctx, async (tx, emit) => {
    const now = ctx.now();
    await requireFreeName(tx, dom, v.name, id);
    if (await tx.getDesiredLrp(id)) fail('exists', `id: ${id} already exists`);
    const d = build(id, dom, stored(v, now), v.enabled);
    await insertDesiredLrp(tx, emit, d, now);
    return descriptorOf(d)!;
  });
}

/** PUT: the descriptor replaced as a whole (the attachment is kept: it has its own path). */
export function replaceMservice(ctx: CoreContext, p: Principal | undefined, domain: string | undefined, id: string, body: unknown): Promise<MserviceDescriptor> {
  return change(ctx, p, domain, id, async (cur, _tx, now) => {
    const v = validateMservice(body);
    requireSameId(v, id);
    return { m: stored(v, now, cur.m), enabled: v.enabled };
  });
}

/** PATCH: the fields given replace theirs; opts and ext merge key by key. */
export function patchMservice(ctx: CoreContext, p: Principal | undefined, domain: string | undefined, id: string, patch: unknown): Promise<MserviceDescriptor> {
  return change(ctx, p, domain, id, async (cur, _tx, now) => {
    const v = validateMservice(mergeMservice(descriptorOf(cur.d)!, patch));
    requireSameId(v, id);
    return { m: stored(v, now, cur.m), enabled: v.enabled };
  });
}

export async function deleteMservice(ctx: CoreContext, p: Principal | undefined, domain: string | undefined, id: string): Promise<void> {
  const caller = authorize(p, 'owner');
  const dom = validDomain(domain);
  await inTransaction(ctx, async (tx, emit) => {
    const { d, m } = await load(tx, dom, id);
    await requireChangeAllowed(ctx, tx, d, caller);
    await deleteDesiredLrp(tx, emit, d, ctx.now());
    if (m.attachment) await tx.releaseAttachment(m.attachment.sha256);
  });
}

/** Checks the zip (nothing is stored when it breaks a rule), stores it once, and points the mservice at it. */
export async function uploadMserviceAttachment(
  ctx: CoreContext,
  p: Principal | undefined,
  domain: string | undefined,
  id: string,
  zip: Buffer,
  fileName = 'attachment.zip',
): Promise<MserviceDescriptor> {
  authorize(p, 'owner');
  const checked = await checkZip(zip);
  return change(ctx, p, domain, id, async ({ d, m }, tx, now) => {
    const old = m.attachment?.sha256;
    if (old !== checked.sha256) {
      await tx.retainAttachment(checked.sha256, zip, now);
      if (old) await tx.releaseAttachment(old);
    }
    const attachment = { sha256: checked.sha256, md5: checked.md5, size: checked.size, mtime: iso(now), name: fileName };
    return { m: { ...m, attachment, ext: { ...m.ext, lwt: iso(now) } }, enabled: d.enabled };
  });
}

export async function mserviceAttachment(ctx: CoreContext, p: Principal | undefined, domain: string | undefined, id: string): Promise<{ data: Buffer; name: string }> {
  authorize(p, 'reader');
  const { m } = await load(ctx.store, validDomain(domain), id);
  const data = m.attachment && (await ctx.store.getAttachment(m.attachment.sha256));
  if (!m.attachment || !data) fail('not_found', `mservice ${id} has no attachment`);
  return { data, name: m.attachment.name };
}
