// The control plane of the agent inside `drover serve`: the same use cases the BBS cell
// routes call, called in this process, as the principal the agent's token names (and under
// its rate limit), without the HTTP round trip on the claim → spawn and crash → restart paths.
// Attachments still come over HTTP (rare, and the same route serves remote agents).

import type { CoreContext } from '../core/context.js';
import { heartbeatCell, type CellRegistration } from '../core/cells.js';
import { claimActualLrps, crashActualLrp, removeActualLrp, startActualLrps } from '../core/instance-lifecycle.js';
import { listActualLrpPlacements } from '../core/queries.js';
import { takeRequestToken } from '../core/limits.js';
import type { Principal } from '../model/principal.js';
import { DroverError } from '../model/errors.js';
import type { ActualLrpInstanceKey, ActualLrpKey, ActualLrpPlacement, DesiredLrp } from '../model/lrp.js';
import { bbsErrorFromDroverError } from '../api/bbs/errors.js';
import { ControlPlane, ControlPlaneError, type CellControlPlane, type InstanceClaim, type InstanceStart } from './control-plane.js';

/** Commits of other replicas (PostgreSQL) reach no bus here: the event log is polled this often, as the SSE stream does. */
const OTHER_REPLICAS_POLL_MS = 1000;

/** A domain error as the HTTP client would have seen it; anything else passes unchanged. */
function asControlPlaneError(e: unknown): unknown {
  if (!(e instanceof DroverError)) return e;
  const bbs = bbsErrorFromDroverError(e);
  return new ControlPlaneError(bbs.type, bbs.message);
}

const itemErrors = (errors: (DroverError | undefined)[]) => errors.map((e) => (e ? (asControlPlaneError(e) as ControlPlaneError) : undefined));

export class LocalControlPlane implements CellControlPlane {
  private readonly http: ControlPlane;

  constructor(
    private readonly ctx: CoreContext,
    private readonly principal: Principal | undefined,
    /** this server's own URL and the agent's token: for attachments */
    url: string,
    token?: string,
  ) {
    this.http = new ControlPlane([url], token);
  }

  get urls(): string[] {
    return this.http.urls;
  }

  fetchBytes(path: string): Promise<Buffer> {
    return this.http.fetchBytes(path);
  }

  /** One use case as the agent's principal, under its rate limit, with its errors as the HTTP client's. */
  private async call<T>(useCase: (p: Principal | undefined) => Promise<T>): Promise<T> {
    try {
      takeRequestToken(this.ctx, this.principal);
      return await useCase(this.principal);
    } catch (e) {
      throw asControlPlaneError(e);
    }
  }

  async heartbeat(cell: CellRegistration): Promise<void> {
    await this.call((p) => heartbeatCell(this.ctx, p, cell));
  }

  actualLrpsOnCell(cellId: string): Promise<ActualLrpPlacement[]> {
    return this.call((p) => listActualLrpPlacements(this.ctx, p, { cellId, includeTargeted: true }));
  }

  async claimMany(claims: InstanceClaim[]): Promise<{ errors: (ControlPlaneError | undefined)[]; desiredLrps: DesiredLrp[] }> {
    const res = await this.call((p) => claimActualLrps(this.ctx, p, claims.map((c) => ({ key: c.key, instanceKey: c.instanceKey }))));
    return { errors: itemErrors(res.errors), desiredLrps: res.desiredLrps };
  }

  async startMany(starts: InstanceStart[]): Promise<(ControlPlaneError | undefined)[]> {
    return itemErrors(await this.call((p) => startActualLrps(this.ctx, p, starts.map((s) => ({ key: s.key, instanceKey: s.instanceKey, netInfo: s.netInfo })))));
  }

  async crash(key: ActualLrpKey, instanceKey: ActualLrpInstanceKey, errorMessage: string, restartAs?: ActualLrpInstanceKey): Promise<DesiredLrp | undefined> {
    return (await this.call((p) => crashActualLrp(this.ctx, p, key, instanceKey, errorMessage, undefined, restartAs))).restartDesiredLrp;
  }

  async remove(key: ActualLrpKey, instanceKey: ActualLrpInstanceKey): Promise<void> {
    await this.call((p) => removeActualLrp(this.ctx, p, key, instanceKey));
  }

  watch(onChange: () => void): () => void {
    const { bus, store } = this.ctx;
    let seen: number | undefined;
    const onCommit = (lastId: number) => {
      seen = Math.max(seen ?? 0, lastId);
      onChange();
    };
    bus.on('committed', onCommit);
    const poll = setInterval(() => {
      void store.lastEventId().then(
        (id) => {
          // this process's own commits are known at commit, a turn before their announcement
          if (seen !== undefined && id > Math.max(seen, bus.lastCommitted)) onChange();
          seen = Math.max(seen ?? 0, id);
        },
        () => {}, // a store hiccup: the agent's periodic sync covers it
      );
    }, OTHER_REPLICAS_POLL_MS);
    onChange();
    return () => {
      bus.off('committed', onCommit);
      clearInterval(poll);
    };
  }
}
