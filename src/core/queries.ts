// Read use cases (the reader role).

import type { Principal } from '../model/principal.js';
import { fail } from '../model/errors.js';
import { schedulingInfo, type ActualLrp, type ActualLrpFilter, type ActualLrpGroup, type DesiredLrpFilter } from '../model/lrp.js';
import { validateProcessGuid } from '../model/validate.js';
import { authorize } from './authorize.js';
import type { CoreContext } from './context.js';
import { loadDesiredLrp } from './desired-lrps.js';

/** BBS groups: an EVACUATING instance is reported as `evacuating`, others as `instance`. */
export function toGroup(a: ActualLrp): ActualLrpGroup {
  return a.presence === 'EVACUATING' ? { evacuating: a } : { instance: a };
}

export async function listActualLrps(ctx: CoreContext, p: Principal | undefined, filter: ActualLrpFilter) {
  authorize(p, 'reader');
  return ctx.store.listActualLrps(filter);
}

/** The actual LRPs matching the filter, with only their keys, state and placement (a cell agent's sync). */
export async function listActualLrpPlacements(ctx: CoreContext, p: Principal | undefined, filter: ActualLrpFilter) {
  authorize(p, 'reader');
  return ctx.store.listActualLrpPlacements(filter);
}

/** The actual LRPs matching the filter, as pages of store rows, for encoders that stream. */
export function actualLrpPages(ctx: CoreContext, p: Principal | undefined, filter: ActualLrpFilter) {
  authorize(p, 'reader');
  return ctx.store.pagesOfActualLrps(filter);
}

export async function getActualLrp(ctx: CoreContext, p: Principal | undefined, processGuid: string, index: number) {
  authorize(p, 'reader');
  const a = await ctx.store.getActualLrp(validateProcessGuid(processGuid), index);
  if (!a) fail('not_found', `actual LRP ${processGuid}/${index} not found`);
  return a;
}

export async function listDesiredLrps(ctx: CoreContext, p: Principal | undefined, filter: DesiredLrpFilter) {
  authorize(p, 'reader');
  return ctx.store.listDesiredLrps(filter);
}

export async function getDesiredLrp(ctx: CoreContext, p: Principal | undefined, processGuid: string) {
  authorize(p, 'reader');
  return loadDesiredLrp(ctx.store, processGuid);
}

export async function listSchedulingInfos(ctx: CoreContext, p: Principal | undefined, filter: DesiredLrpFilter) {
  return (await listDesiredLrps(ctx, p, filter)).map(schedulingInfo);
}

export async function listCells(ctx: CoreContext, p: Principal | undefined) {
  authorize(p, 'reader');
  return ctx.store.listCells();
}
