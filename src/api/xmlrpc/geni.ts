// GENI Aggregate Manager API v3 over Drover's core. A slice is a Service (kind `geni`, named
// by the slice URN); each sliver is one DesiredLRP with at most one instance. What GENI
// adds — allocation state, expiry, the request node — lives in the service's attributes;
// what runs is the core's. Every method decodes and checks its arguments, checks the
// caller's credential, calls core use cases and answers the return struct
// {code: {geni_code, am_type, am_code}, value, output}.

import { createHash, randomBytes } from 'node:crypto';
import { deflateSync } from 'node:zlib';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { DroverError, type ErrorKind } from '../../model/errors.js';
import { cellAlive } from '../../model/cell.js';
import type { DesiredLrp } from '../../model/lrp.js';
import { hasRole, type Principal } from '../../model/principal.js';
import type { Service } from '../../model/service.js';
import type { CoreContext } from '../../core/context.js';
import type { Identities } from '../../core/identities.js';
import { listCells } from '../../core/queries.js';
import { takeRequestToken } from '../../core/limits.js';
import {
  changeService,
  findServices,
  hasInstances,
  instantiateService,
  serviceStatus,
  shutdownService,
  terminateService,
  type ServiceChange,
  type ServiceStatus,
} from '../../core/services.js';
import { credentialFor, CredentialError, SFA_TYPE, SFA_VERSION, type Credential, type CredentialProblem } from '../../pki/credential.js';
import { geniUrn, OPERATOR_URN, parseUrn } from '../../pki/urn.js';
import type { XmlRpcStruct, XmlRpcValue } from './codec.js';
import { advertisement, DROVER_RSPEC_NS, manifest, parseRequest, RSPEC_NS, RSPEC_VERSION, runActionOf, type NodeRequest } from './rspec.js';
import type { Caller, Method } from './server.js';

export const GENI_KIND = 'geni';
const AM_TYPE = 'drover';

/** geni_code values (GENI AM API v3, Error Codes). */
export const GENI = {
  SUCCESS: 0,
  BADARGS: 1,
  ERROR: 2,
  FORBIDDEN: 3,
  BADVERSION: 4,
  SERVERERROR: 5,
  TOOBIG: 6,
  REFUSED: 7,
  TIMEDOUT: 8,
  DBERROR: 9,
  RPCERROR: 10,
  UNAVAILABLE: 11,
  SEARCHFAILED: 12,
  UNSUPPORTED: 13,
  BUSY: 14,
  EXPIRED: 15,
  INPROGRESS: 16,
  ALREADYEXISTS: 17,
  MISSINGARGS: 18,
  OUTOFRANGE: 19,
  CREDENTIAL_INVALID: 20,
  CREDENTIAL_EXPIRED: 21,
  CREDENTIAL_MISMATCH: 22,
  CREDENTIAL_SIGNER_UNTRUSTED: 23,
  VLAN_UNAVAILABLE: 24,
} as const;

// A Record over ErrorKind, so a new core error kind without a GENI code fails to compile.
const BY_KIND: Record<ErrorKind, number> = {
  invalid_request: GENI.BADARGS,
  not_found: GENI.SEARCHFAILED,
  exists: GENI.ALREADYEXISTS,
  conflict: GENI.BUSY,
  invalid_transition: GENI.REFUSED,
  cannot_claim: GENI.ERROR,
  cannot_start: GENI.ERROR,
  cannot_crash: GENI.ERROR,
  cannot_fail: GENI.ERROR,
  cannot_remove: GENI.ERROR,
  running_on_different_cell: GENI.ERROR,
  locked: GENI.BUSY,
  shut_down: GENI.FORBIDDEN,
  unauthenticated: GENI.FORBIDDEN,
  forbidden: GENI.FORBIDDEN,
  limit_exceeded: GENI.TOOBIG,
  rate_limited: GENI.BUSY,
  internal: GENI.SERVERERROR,
};

const BY_PROBLEM: Record<CredentialProblem, number> = {
  invalid: GENI.CREDENTIAL_INVALID,
  untrusted: GENI.CREDENTIAL_SIGNER_UNTRUSTED,
  expired: GENI.CREDENTIAL_EXPIRED,
  mismatch: GENI.CREDENTIAL_MISMATCH,
  forbidden: GENI.FORBIDDEN,
};

class GeniError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

const refuse = (code: number, message: string): never => {
  throw new GeniError(code, message);
};

const SHUT_DOWN = 'slice is shut down';

// Operations named as gcf names them (sfa/trust/rights.py); a credential's `*` grants all.
const PRIV = { allocate: 'createsliver', delete: 'deleteslice', status: 'getsliceresources', renew: 'renewsliver', shutdown: 'shutdown' };

type AllocationState = 'geni_unallocated' | 'geni_allocated' | 'geni_provisioned';

/** One sliver as the slice's service keeps it. */
type SliverNote = {
  urn: string;
  processGuid: string;
  node: NodeRequest;
  allocation: AllocationState;
  /** geni_start was performed (and no geni_stop since): its one instance should run */
  started: boolean;
  expires: number;
  /** set once deleted or expired; the note stays so later calls can say EXPIRED */
  ended?: 'deleted' | 'expired';
};

type SliceAttributes = { sliceUrn: string; slivers: SliverNote[] };

/** A slice as one call sees it: the service, its status, and the slivers the call names. */
interface Selection {
  sliceUrn: string;
  status: ServiceStatus;
  slivers: SliverNote[];
}

export interface GeniAmOptions {
  /** this AM's URL, for GetVersion (known once the server listens) */
  url: () => string;
  /** CA certificates (PEM) whose credentials are accepted */
  trustedCerts: string[];
  /** no credentials needed: the TLS client certificate alone identifies and authorizes */
  trustCerts: boolean;
  /** how long an allocation (not yet provisioned) lasts at most */
  allocateMs: number;
  /** how long a provisioned sliver lasts at most (Provision, Renew) */
  maxLeaseMs: number;
  /** how long Shutdown waits for the processes to stop before answering */
  shutdownWaitMs: number;
  /** how often expired slivers are looked for (they are also looked for at every call) */
  expiryCheckMs: number;
}

export const DEFAULT_GENI_OPTIONS = {
  trustCerts: false,
  allocateMs: 10 * 60_000,
  maxLeaseMs: 7 * 24 * 3_600_000,
  shutdownWaitMs: 20_000,
  expiryCheckMs: 5_000,
};

/** Drover's own principal for expiring slivers (an operator: it acts on every slice). */
const EXPIRY: Principal = { name: 'geni-expiry', roles: ['operator'] };

// ------------------------------------------------------------------------------ arguments

const isStruct = (v: unknown): v is XmlRpcStruct => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date) && !Buffer.isBuffer(v);

function struct(v: XmlRpcValue | undefined, what: string): XmlRpcStruct {
  if (!isStruct(v)) refuse(GENI.BADARGS, `${what} must be a struct`);
  return v as XmlRpcStruct;
}

function text(v: XmlRpcValue | undefined, what: string): string {
  if (typeof v !== 'string') refuse(GENI.BADARGS, `${what} must be a string`);
  return v as string;
}

function list(v: XmlRpcValue | undefined, what: string): XmlRpcValue[] {
  if (!Array.isArray(v)) refuse(GENI.BADARGS, `${what} must be an array`);
  return v as XmlRpcValue[];
}

function urnOf(v: XmlRpcValue | undefined, type: 'slice' | 'sliver' | 'slice or sliver', what: string): string {
  const u = parseUrn(v);
  if (!u || !type.split(' or ').includes(u.type)) refuse(GENI.BADARGS, `${what} is not a ${type} URN: ${String(v).slice(0, 200)}`);
  return v as string;
}

/** RFC 3339 text (or an XML-RPC dateTime) → ms; a time without zone is UTC. */
function timeOf(v: XmlRpcValue | undefined, what: string): number {
  if (v instanceof Date) return v.getTime();
  const t = text(v, what).trim();
  const ms = Date.parse(/(Z|[+-]\d{2}:?\d{2})$/i.test(t) ? t : `${t}Z`);
  if (!/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/.test(t) || Number.isNaN(ms)) refuse(GENI.BADARGS, `${what} is not an RFC 3339 time: ${t.slice(0, 60)}`);
  return ms;
}

function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The geni_sfa v3 credential values of the credentials argument. */
function credentialValues(v: XmlRpcValue | undefined): string[] {
  return list(v, 'credentials')
    .map((c) => struct(c, 'each credential'))
    .filter((c) => String(c.geni_type).toLowerCase() === SFA_TYPE && String(c.geni_version) === SFA_VERSION)
    .map((c) => text(c.geni_value, 'geni_value'));
}

/** Methods that return RSpecs need `geni_rspec_version {type: GENI, version: 3}`. */
function requireRspecVersion(options: XmlRpcStruct): void {
  const v = options.geni_rspec_version;
  if (v === undefined) refuse(GENI.BADARGS, 'option geni_rspec_version is required');
  const s = struct(v, 'geni_rspec_version');
  if (s.type === undefined || s.version === undefined) refuse(GENI.BADARGS, 'geni_rspec_version needs type and version');
  if (String(s.type).toLowerCase() !== 'geni' || String(s.version) !== RSPEC_VERSION.version) refuse(GENI.BADVERSION, `RSpec ${String(s.type)} ${String(s.version)} is not supported (GENI 3 is)`);
}

/** geni_compressed: the RSpec zlib-compressed and base64-encoded. */
function rspecOut(xml: string, options: XmlRpcStruct): string {
  return options.geni_compressed === true ? deflateSync(xml).toString('base64') : xml;
}

const attributesOf = (s: Service) => s.attributes as unknown as SliceAttributes;
const live = (n: SliverNote) => !n.ended;
/** A slice's service that still holds slivers (a terminating one is on its way out). */
const isLive = (s: Service) => s.state !== 'TERMINATING' && s.state !== 'TERMINATED';
/** Everything the slice had here ran out (rather than being deleted). */
const ranOut = (s: Service | undefined) => !!s && attributesOf(s).slivers.length > 0 && attributesOf(s).slivers.every((n) => n.ended === 'expired');

// ------------------------------------------------------------------------------ the AM

export class GeniAm {
  private sweeping?: Promise<void>;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly ctx: CoreContext,
    private readonly identities: Identities,
    private readonly log: Logger,
    private readonly opts: GeniAmOptions,
  ) {
    this.timer = setInterval(() => void this.expire(), opts.expiryCheckMs);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
  }

  /** The XML-RPC methods, each with its argument count. */
  methods(): Record<string, Method> {
    const m = this.wrap.bind(this);
    return {
      // gcf and omni also expect geni_api at the top of GetVersion's answer
      GetVersion: m(1, (_c, options) => this.getVersion(options), { geni_api: 3 }),
      ListResources: m(2, (c, creds, options) => this.listResources(c, creds, options)),
      Describe: m(3, (c, urns, creds, options) => this.describe(c, urns, creds, options)),
      Allocate: m(4, (c, slice, creds, rspec, options) => this.allocate(c, slice, creds, rspec, options)),
      Renew: m(4, (c, urns, creds, time, options) => this.renew(c, urns, creds, time, options)),
      Provision: m(3, (c, urns, creds, options) => this.provision(c, urns, creds, options)),
      Status: m(3, (c, urns, creds, options) => this.status(c, urns, creds, options)),
      PerformOperationalAction: m(4, (c, urns, creds, action, options) => this.performOperationalAction(c, urns, creds, action, options)),
      Delete: m(3, (c, urns, creds, options) => this.delete(c, urns, creds, options)),
      Shutdown: m(3, (c, slice, creds, options) => this.shutdown(c, slice, creds, options)),
    };
  }

  /** Argument count, then the method; every refusal becomes the return struct with its code. `top` joins the struct. */
  private wrap(arity: number, fn: (c: Caller, ...args: XmlRpcValue[]) => Promise<XmlRpcValue>, top: XmlRpcStruct = {}): Method {
    return async (caller, params) => {
      try {
        // options is optional in practice (omni always sends it); missing ones are an empty struct
        const args = params.length === arity - 1 ? [...params, {}] : params;
        if (args.length !== arity) refuse(GENI.BADARGS, `expected ${arity} arguments, got ${params.length}`);
        const value = await fn(caller, ...args);
        return { code: { geni_code: GENI.SUCCESS, am_type: AM_TYPE, am_code: 0 }, value, output: '', ...top };
      } catch (e) {
        const [code, output] = this.codeOf(e);
        return { code: { geni_code: code, am_type: AM_TYPE, am_code: code }, value: '', output, ...top };
      }
    };
  }

  private codeOf(e: unknown): [number, string] {
    if (e instanceof GeniError) return [e.code, e.message];
    if (e instanceof CredentialError) return [BY_PROBLEM[e.problem], e.message];
    if (e instanceof DroverError) return [BY_KIND[e.kind], e.kind === 'shut_down' ? SHUT_DOWN : e.message];
    this.log.error({ err: e }, 'GENI call failed');
    return [GENI.SERVERERROR, 'internal error'];
  }

  // ---------------------------------------------------------------------------- who calls

  /** The caller as a principal: from the --auth file, or (open mode) the operator certificate is the operator, any other an owner. */
  private principalOf(caller: Caller): Principal {
    if (!caller.urn) refuse(GENI.FORBIDDEN, 'the client certificate names no GENI user URN');
    const urn = caller.urn!;
    const p = this.identities.open ? { name: urn, roles: [urn === OPERATOR_URN ? ('operator' as const) : ('owner' as const)] } : this.identities.resolve('geniUrns', urn);
    if (!p) refuse(GENI.FORBIDDEN, `${urn} is not known to this aggregate`);
    takeRequestToken(this.ctx, p);
    return p!;
  }

  /** The credential letting the caller do `privilege` on `target` (undefined when certificates alone are trusted). */
  private credential(caller: Caller, creds: XmlRpcValue, target: string | undefined, privilege: string | undefined): Credential | undefined {
    const values = credentialValues(creds);
    if (this.opts.trustCerts) return undefined;
    return credentialFor(values, this.opts.trustedCerts, caller.urn!, target, privilege, this.ctx.now());
  }

  /** The latest sliver expiry a request may get: now + `maxMs`, no later than the credential or `wanted`. */
  private expiryLimit(maxMs: number, cred: Credential | undefined, wanted?: number): number {
    return Math.min(this.ctx.now() + maxMs, cred?.expires ?? Infinity, wanted ?? Infinity);
  }

  // ---------------------------------------------------------------------------- slices

  /** Every service the slice has had here (one per Allocate after the last one ended), oldest first. */
  private async slicesNamed(p: Principal, sliceUrn: string): Promise<Service[]> {
    return findServices(this.ctx, p, GENI_KIND, sliceUrn);
  }

  /** The slice a list of URNs names: one slice URN, or sliver URNs of one slice. */
  private async sliceOf(p: Principal, urns: XmlRpcValue): Promise<{ sliceUrn: string; sliverUrns?: string[] }> {
    const names = list(urns, 'urns').map((u, i) => urnOf(u, 'slice or sliver', `urns[${i}]`));
    if (!names.length) refuse(GENI.BADARGS, 'urns is empty');
    const slices = names.filter((u) => parseUrn(u)!.type === 'slice');
    if (slices.length) {
      if (names.length > 1) refuse(GENI.BADARGS, 'give one slice URN or sliver URNs, not both');
      return { sliceUrn: slices[0]! };
    }
    const all = await findServices(this.ctx, p, GENI_KIND);
    const owners = new Set(names.map((u) => all.find((s) => attributesOf(s).slivers.some((n) => n.urn === u))?.name));
    if (owners.has(undefined)) refuse(GENI.SEARCHFAILED, 'no such sliver at this aggregate');
    if (owners.size > 1) refuse(GENI.BADARGS, 'the slivers belong to more than one slice');
    return { sliceUrn: [...owners][0]!, sliverUrns: names };
  }

  /**
   * The slivers `urns` names, after the credential check: SEARCHFAILED for what this AM
   * does not know, EXPIRED for what expired, FORBIDDEN for a shut-down slice (operators
   * may still read it, for forensics).
   */
  private async select(caller: Caller, urns: XmlRpcValue, creds: XmlRpcValue, privilege: string, forReading = false): Promise<Selection & { p: Principal; cred?: Credential }> {
    const p = this.principalOf(caller);
    const { sliceUrn, sliverUrns } = await this.sliceOf(p, urns);
    const cred = this.credential(caller, creds, sliceUrn, privilege);
    await this.expire();
    const generations = await this.slicesNamed(p, sliceUrn);
    const service = generations.find(isLive);
    const expired = (urn: string) => generations.some((s) => attributesOf(s).slivers.some((n) => n.urn === urn && n.ended === 'expired'));
    if (!service) {
      const gone = sliverUrns ? sliverUrns.every(expired) : ranOut(generations.at(-1));
      refuse(gone ? GENI.EXPIRED : GENI.SEARCHFAILED, `slice ${sliceUrn} has ${gone ? 'expired' : 'no slivers'} here`);
    }
    if (service!.shutdown && !(forReading && hasRole(p, 'operator'))) refuse(GENI.FORBIDDEN, SHUT_DOWN);
    const mine = attributesOf(service!).slivers;
    const slivers = sliverUrns ? sliverUrns.map((u) => mine.find((n) => n.urn === u && live(n)) ?? refuse(expired(u) ? GENI.EXPIRED : GENI.SEARCHFAILED, `sliver ${u} is ${expired(u) ? 'expired' : 'gone'}`)) : mine.filter(live);
    return { p, cred, sliceUrn, status: await serviceStatus(this.ctx, p, service!.id), slivers };
  }

  private sliverStatus(status: ServiceStatus, n: SliverNote, error = ''): XmlRpcStruct {
    const [operational, why] = this.operational(status, n);
    return {
      geni_sliver_urn: n.urn,
      geni_expires: rfc3339(n.expires),
      geni_allocation_status: n.ended ? 'geni_unallocated' : n.allocation,
      geni_operational_status: operational,
      geni_error: error || why,
    };
  }

  /** The operational state of a sliver from its instance (and why, when it failed). */
  private operational({ service, lrps }: ServiceStatus, n: SliverNote): [string, string] {
    if (n.ended || n.allocation !== 'geni_provisioned') return ['geni_pending_allocation', ''];
    const lrp = lrps.find((l) => l.desired.processGuid === n.processGuid);
    const instances = lrp?.actual ?? [];
    const idle = instances.length ? 'geni_stopping' : 'geni_notready';
    if (service.shutdown) return [idle, SHUT_DOWN];
    if (lrp && !lrp.desired.enabled) return ['geni_failed', lrp.desired.disabledReason];
    if (!n.started) return [idle, ''];
    const a = instances.find((x) => !x.stopRequested);
    if (a?.state === 'RUNNING') return ['geni_ready', ''];
    if (a?.state === 'CRASHED') return ['geni_failed', a.crashReason];
    return ['geni_configuring', ''];
  }

  private manifestOf(status: ServiceStatus, slivers: SliverNote[]): string {
    const cellOf = (guid: string) => status.lrps.find((l) => l.desired.processGuid === guid)?.actual.find((a) => a.actualLrpInstanceKey.cellId)?.actualLrpInstanceKey.cellId;
    return manifest(slivers.map((n) => ({ node: n.node, sliverUrn: n.urn, cellId: cellOf(n.processGuid) })));
  }

  /** The slice's notes with `change` applied to the named ones. */
  private notesWith(status: ServiceStatus, urns: string[], change: (n: SliverNote) => SliverNote): SliceAttributes {
    const a = attributesOf(status.service);
    return { ...a, slivers: a.slivers.map((n) => (urns.includes(n.urn) ? change(n) : n)) };
  }

  /** Applies a change to a slice in one core transaction; returns the named slivers after it. */
  private async change(p: Principal, sel: Selection, plan: (s: ServiceStatus) => ServiceChange): Promise<{ status: ServiceStatus; slivers: SliverNote[] }> {
    const status = await changeService(this.ctx, p, sel.status.service.id, plan);
    const urns = sel.slivers.map((n) => n.urn);
    return { status, slivers: attributesOf(status.service).slivers.filter((n) => urns.includes(n.urn)) };
  }

  // ---------------------------------------------------------------------------- methods

  private async getVersion(options: XmlRpcValue): Promise<XmlRpcValue> {
    struct(options, 'options');
    const rspec = (xsd: string) => [{ ...RSPEC_VERSION, schema: `${RSPEC_NS}/${xsd}`, namespace: RSPEC_NS, extensions: [DROVER_RSPEC_NS] }];
    return {
      geni_api: 3,
      geni_api_versions: { '3': this.opts.url() },
      geni_request_rspec_versions: rspec('request.xsd'),
      geni_ad_rspec_versions: rspec('ad.xsd'),
      geni_credential_types: [{ geni_type: SFA_TYPE, geni_version: SFA_VERSION }],
      geni_single_allocation: false,
      geni_allocate: 'geni_single',
      geni_am_type: AM_TYPE,
      geni_am_code: 0,
    };
  }

  private async listResources(caller: Caller, creds: XmlRpcValue, optionsArg: XmlRpcValue): Promise<XmlRpcValue> {
    const options = struct(optionsArg, 'options');
    const p = this.principalOf(caller);
    this.credential(caller, creds, undefined, undefined);
    requireRspecVersion(options);
    if (options.geni_slice_urn !== undefined) refuse(GENI.BADARGS, 'geni_slice_urn is not an option in v3: use Describe');
    const now = this.ctx.now();
    const cells = (await listCells(this.ctx, p)).filter((c) => cellAlive(c, now));
    return rspecOut(advertisement(cells), options);
  }

  private async describe(caller: Caller, urns: XmlRpcValue, creds: XmlRpcValue, optionsArg: XmlRpcValue): Promise<XmlRpcValue> {
    const options = struct(optionsArg, 'options');
    requireRspecVersion(options);
    try {
      const { status, slivers, sliceUrn } = await this.select(caller, urns, creds, PRIV.status, true);
      return { geni_rspec: rspecOut(this.manifestOf(status, slivers), options), geni_urn: sliceUrn, geni_slivers: slivers.map((n) => this.sliverStatus(status, n)) };
    } catch (e) {
      // v3: a slice with nothing here is described by an empty manifest, not an error
      const named = Array.isArray(urns) && urns.length === 1 && parseUrn(urns[0])?.type === 'slice';
      if (!(e instanceof GeniError && e.code === GENI.SEARCHFAILED && named)) throw e;
      return { geni_rspec: rspecOut(manifest([]), options), geni_urn: urns[0] as string, geni_slivers: [] };
    }
  }

  private async allocate(caller: Caller, sliceArg: XmlRpcValue, creds: XmlRpcValue, rspecArg: XmlRpcValue, optionsArg: XmlRpcValue): Promise<XmlRpcValue> {
    const sliceUrn = urnOf(sliceArg, 'slice', 'slice_urn');
    const options = struct(optionsArg, 'options');
    const p = this.principalOf(caller);
    const cred = this.credential(caller, creds, sliceUrn, PRIV.allocate);
    const nodes = parseRequest(text(rspecArg, 'rspec'));
    const endTime = options.geni_end_time === undefined ? undefined : timeOf(options.geni_end_time, 'geni_end_time');
    if (endTime !== undefined && endTime <= this.ctx.now()) refuse(GENI.OUTOFRANGE, 'geni_end_time is in the past');
    await this.expire();
    const past = await this.slicesNamed(p, sliceUrn);
    const current = past.find(isLive);
    if (current?.shutdown) refuse(GENI.FORBIDDEN, SHUT_DOWN);
    if (current) refuse(GENI.ALREADYEXISTS, `slice ${sliceUrn} already has slivers here (this aggregate allocates once per slice)`);
    const expires = this.expiryLimit(this.opts.allocateMs, cred, endTime);
    const slivers: SliverNote[] = nodes.map((node) => {
      const id = randomBytes(8).toString('hex');
      return { urn: geniUrn('sliver', id), processGuid: `geni-${id}`, node, allocation: 'geni_allocated', started: false, expires };
    });
    const lrps: Partial<DesiredLrp>[] = slivers.map((n) => ({
      processGuid: n.processGuid,
      domain: GENI_KIND,
      instances: 0,
      annotation: `${n.node.clientId} in ${sliceUrn}`,
      env: [
        { name: 'GENI_SLICE_URN', value: sliceUrn },
        { name: 'GENI_SLIVER_URN', value: n.urn },
        { name: 'GENI_CLIENT_ID', value: n.node.clientId },
      ],
      action: { run: runActionOf(n.node) },
    }));
    // one id per generation of the slice here: two racing Allocates of a new slice collide on it
    const id = `geni-${createHash('sha256').update(`${sliceUrn}#${past.length}`).digest('hex').slice(0, 32)}`;
    const attributes: SliceAttributes = { sliceUrn, slivers };
    await instantiateService(this.ctx, p, { id, name: sliceUrn, kind: GENI_KIND, lrps, attributes });
    const status = await serviceStatus(this.ctx, p, id);
    return { geni_rspec: this.manifestOf(status, slivers), geni_slivers: slivers.map((n) => this.sliverStatus(status, n)) };
  }

  private async provision(caller: Caller, urns: XmlRpcValue, creds: XmlRpcValue, optionsArg: XmlRpcValue): Promise<XmlRpcValue> {
    const options = struct(optionsArg, 'options');
    requireRspecVersion(options);
    const endTime = options.geni_end_time === undefined ? undefined : timeOf(options.geni_end_time, 'geni_end_time');
    const sel = await this.select(caller, urns, creds, PRIV.allocate);
    const expires = this.expiryLimit(this.opts.maxLeaseMs, sel.cred, endTime);
    const { status, slivers } = await this.change(sel.p, sel, (s) => ({
      attributes: this.notesWith(s, sel.slivers.map((n) => n.urn), (n) => ({ ...n, allocation: 'geni_provisioned', expires })),
    }));
    return { geni_rspec: rspecOut(this.manifestOf(status, slivers), options), geni_slivers: slivers.map((n) => this.sliverStatus(status, n)) };
  }

  private async status(caller: Caller, urns: XmlRpcValue, creds: XmlRpcValue, optionsArg: XmlRpcValue): Promise<XmlRpcValue> {
    struct(optionsArg, 'options');
    const { status, slivers, sliceUrn } = await this.select(caller, urns, creds, PRIV.status, true);
    return { geni_urn: sliceUrn, geni_slivers: slivers.map((n) => this.sliverStatus(status, n)) };
  }

  private async performOperationalAction(caller: Caller, urns: XmlRpcValue, creds: XmlRpcValue, actionArg: XmlRpcValue, optionsArg: XmlRpcValue): Promise<XmlRpcValue> {
    const options = struct(optionsArg, 'options');
    const action = text(actionArg, 'action');
    // which slivers an action applies to, and what it does to them
    const actions: Record<string, { ready: (n: SliverNote) => boolean; started: boolean; change: (guids: string[]) => ServiceChange }> = {
      geni_start: { ready: (n) => !n.started, started: true, change: (g) => ({ scale: Object.fromEntries(g.map((x) => [x, 1])) }) },
      geni_stop: { ready: (n) => n.started, started: false, change: (g) => ({ scale: Object.fromEntries(g.map((x) => [x, 0])) }) },
      geni_restart: { ready: (n) => n.started, started: true, change: (g) => ({ restart: g }) },
    };
    const act = Object.hasOwn(actions, action) ? actions[action]! : refuse(GENI.UNSUPPORTED, `action ${action} is not supported (geni_start, geni_stop, geni_restart are)`);
    const sel = await this.select(caller, urns, creds, PRIV.allocate);
    const fits = (n: SliverNote) => n.allocation === 'geni_provisioned' && act.ready(n);
    const misfits = sel.slivers.filter((n) => !fits(n));
    const errors = new Map(misfits.map((n) => [n.urn, `sliver ${n.urn} is not in a state for ${action}`]));
    if (misfits.length && options.geni_best_effort !== true) refuse(GENI.UNSUPPORTED, [...errors.values()].join('; '));
    const doing = sel.slivers.filter(fits);
    const { status, slivers } = await this.change(sel.p, sel, (s) => ({
      ...act.change(doing.map((n) => n.processGuid)),
      attributes: this.notesWith(s, doing.map((n) => n.urn), (n) => ({ ...n, started: act.started })),
    }));
    return slivers.map((n) => this.sliverStatus(status, n, errors.get(n.urn)));
  }

  private async renew(caller: Caller, urns: XmlRpcValue, creds: XmlRpcValue, timeArg: XmlRpcValue, optionsArg: XmlRpcValue): Promise<XmlRpcValue> {
    const options = struct(optionsArg, 'options');
    const wanted = timeOf(timeArg, 'expiration_time');
    const sel = await this.select(caller, urns, creds, PRIV.renew);
    const limit = this.expiryLimit(this.opts.maxLeaseMs, sel.cred);
    if (wanted <= this.ctx.now()) refuse(GENI.OUTOFRANGE, `expiration ${rfc3339(wanted)} is not in the future`);
    // geni_extend_alap: as long as possible when the wish is longer than allowed
    if (wanted > limit && options.geni_extend_alap !== true) refuse(GENI.OUTOFRANGE, `expiration ${rfc3339(wanted)} is past the latest allowed, ${rfc3339(limit)}`);
    const expires = Math.min(wanted, limit);
    const { status, slivers } = await this.change(sel.p, sel, (s) => ({ attributes: this.notesWith(s, sel.slivers.map((n) => n.urn), (n) => ({ ...n, expires })) }));
    return slivers.map((n) => this.sliverStatus(status, n));
  }

  private async delete(caller: Caller, urns: XmlRpcValue, creds: XmlRpcValue, optionsArg: XmlRpcValue): Promise<XmlRpcValue> {
    struct(optionsArg, 'options');
    const sel = await this.select(caller, urns, creds, PRIV.delete);
    const status = await this.endSlivers(sel.p, sel, 'deleted');
    return sel.slivers.map((n) => this.sliverStatus(status, { ...n, ended: 'deleted' }));
  }

  /** Deletes slivers (their LRPs go); the slice's service terminates with its last live sliver. */
  private async endSlivers(p: Principal, sel: Selection, why: 'deleted' | 'expired'): Promise<ServiceStatus> {
    const urns = sel.slivers.map((n) => n.urn);
    const attributes = (s: ServiceStatus) => this.notesWith(s, urns, (n) => ({ ...n, ended: why }));
    const remaining = attributesOf(sel.status.service).slivers.filter((n) => live(n) && !urns.includes(n.urn));
    if (remaining.length) return (await this.change(p, sel, (s) => ({ remove: sel.slivers.map((n) => n.processGuid), attributes: attributes(s) }))).status;
    const service = await terminateService(this.ctx, p, sel.status.service.id, attributes(sel.status));
    return { ...sel.status, service };
  }

  private async shutdown(caller: Caller, sliceArg: XmlRpcValue, creds: XmlRpcValue, optionsArg: XmlRpcValue): Promise<XmlRpcValue> {
    const sliceUrn = urnOf(sliceArg, 'slice', 'slice_urn');
    struct(optionsArg, 'options');
    const p = this.principalOf(caller);
    this.credential(caller, creds, sliceUrn, PRIV.shutdown);
    if (!hasRole(p, 'operator')) refuse(GENI.FORBIDDEN, 'Shutdown is for operators');
    await this.expire();
    const all = await this.slicesNamed(p, sliceUrn);
    const service = all.find(isLive);
    if (!service) {
      if (!all.length) refuse(GENI.SEARCHFAILED, `slice ${sliceUrn} is not known here`);
      // known here but nothing left: true, unless what was here ran out (EXPIRED)
      if (ranOut(all.at(-1))) refuse(GENI.EXPIRED, `slice ${sliceUrn} has expired here`);
      return true;
    }
    const { status, already } = await shutdownService(this.ctx, p, service.id);
    if (already && hasInstances(status)) refuse(GENI.INPROGRESS, `a shutdown of ${sliceUrn} is still stopping its processes`);
    if (!(await this.waitUntilStopped(p, service.id))) {
      refuse(GENI.ERROR, `the processes of ${sliceUrn} are still stopping after ${this.opts.shutdownWaitMs} ms (Shutdown answers INPROGRESS until they are gone)`);
    }
    return true;
  }

  private async waitUntilStopped(p: Principal, id: string): Promise<boolean> {
    const deadline = Date.now() + this.opts.shutdownWaitMs;
    while (hasInstances(await serviceStatus(this.ctx, p, id))) {
      if (Date.now() > deadline) return false;
      await sleep(100);
    }
    return true;
  }

  // ---------------------------------------------------------------------------- expiry

  /** Ends every expired sliver (one pass at a time; callers during a pass wait for it). */
  expire(): Promise<void> {
    this.sweeping ??= this.sweep()
      .catch((e) => this.log.warn({ err: e }, 'GENI expiry pass failed'))
      .finally(() => (this.sweeping = undefined));
    return this.sweeping;
  }

  private async sweep(): Promise<void> {
    const now = this.ctx.now();
    for (const service of await findServices(this.ctx, EXPIRY, GENI_KIND)) {
      // a shut-down slice is kept for forensics: it does not expire away
      if (service.shutdown || !isLive(service)) continue;
      const slivers = attributesOf(service).slivers.filter((n) => live(n) && n.expires <= now);
      if (!slivers.length) continue;
      const sel = { sliceUrn: service.name, status: await serviceStatus(this.ctx, EXPIRY, service.id), slivers };
      await this.endSlivers(EXPIRY, sel, 'expired').catch((e) => this.log.info({ slice: service.name, err: (e as Error).message }, 'expired slivers not ended yet'));
      this.log.info({ slice: service.name, slivers: slivers.map((n) => n.urn) }, 'GENI slivers expired');
    }
  }
}

