// Arrowhead 5 orchestration locks: the record, its wire shape, and the validation of the
// three management requests (create, query, remove). Messages follow the Arrowhead reference
// implementation so Arrowhead clients see the texts they expect.

import { fail } from './errors.js';

export interface Lock {
  id: number;
  /** set only for locks an orchestration job created; management locks have none */
  orchestrationJobId: string | null;
  /** `<System>|<serviceDefinition>|<version>`; see docs/arrowhead-locks.md for Drover's mapping */
  serviceInstanceId: string;
  owner: string;
  /** unix milliseconds; the lock is live while now < expiresAt */
  expiresAt: number;
  temporary: boolean;
}

export type NewLock = Omit<Lock, 'id'>;

/** The Arrowhead DTO: the same fields with expiresAt as UTC ISO 8601. */
export interface LockDto extends Omit<Lock, 'expiresAt'> {
  expiresAt: string;
}

export interface LockList {
  entries: Lock[];
  /** created: the number created; query: all matches before paging */
  count: number;
}

export const LOCK_SORT_FIELDS = ['id', 'owner', 'serviceInstanceId', 'expiresAt'] as const;
export type LockSortField = (typeof LOCK_SORT_FIELDS)[number];
/** Arrowhead's default `max.page.size`: also the page size when none is asked for. */
export const MAX_PAGE_SIZE = 1000;

export interface LockPage {
  page: number;
  size: number;
  direction: 'ASC' | 'DESC';
  sortField: LockSortField;
}

/** Lists combine with AND between fields and OR within one field. */
export interface LockFilter {
  ids?: number[];
  orchestrationJobIds?: string[];
  serviceInstanceIds?: string[];
  owners?: string[];
  expiresBefore?: number;
  expiresAfter?: number;
}

// Arrowhead system names are PascalCase; Drover principals are named freely in the --auth
// file, and a principal must be able to own locks, so the name rule is relaxed to cover both.
const NAME = /^[A-Za-z][A-Za-z0-9_.-]*$/;
const NAME_MAX = 63;
const SERVICE_INSTANCE_ID_MAX = 255;
// The middle part is an Arrowhead service definition or a Drover process guid.
const SERVICE_DEFINITION = /^[A-Za-z0-9_-]+$/;
const VERSION = /^\d+\.\d+\.\d+$/;
/** `<system name>|<service definition>|<version>`; none of the three parts may hold a `|` */
const SERVICE_INSTANCE_ID = new RegExp(`^(${NAME.source.slice(1, -1)})\\|${SERVICE_DEFINITION.source.slice(1, -1)}\\|${VERSION.source.slice(1, -1)}$`);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const UTC_ISO = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?Z$/;

const blank = (v: unknown) => v === undefined || v === null || (typeof v === 'string' && v.trim() === '');

function text(v: unknown, field: string): string {
  if (typeof v !== 'string') fail('invalid_request', `Could not parse payload: ${field} must be a string`);
  return v.trim();
}

export function validName(name: string): string {
  if (!NAME.test(name) || name.length > NAME_MAX) fail('invalid_request', `The specified system name does not match the naming convention: ${name}`);
  return name;
}

export function validServiceInstanceId(id: string): string {
  const system = SERVICE_INSTANCE_ID.exec(id)?.[1];
  if (system === undefined || system.length > NAME_MAX) fail('invalid_request', `The specified service instance identifier does not match the naming convention: ${id}`);
  return id;
}

/** Drover's DesiredLRPs carry no version; as Arrowhead service instances they are all 1.0.0. */
export const DROVER_SERVICE_VERSION = '1.0.0';

/** The service instance id under which a DesiredLRP can be locked: `<domain>|<process_guid>|1.0.0`. */
export function serviceInstanceIdOf(d: { domain: string; processGuid: string }): string {
  return `${d.domain}|${d.processGuid}|${DROVER_SERVICE_VERSION}`;
}

/** UTC ISO 8601 (`2025-11-08T11:24:43Z`) to unix ms; undefined when it is not one (Date rolls Feb 30 over). */
export function parseUtc(value: string): number | undefined {
  const m = UTC_ISO.exec(value);
  if (!m) return undefined;
  const ms = Date.parse(value);
  const d = new Date(ms);
  const same = d.getUTCFullYear() === +m[1] && d.getUTCMonth() + 1 === +m[2] && d.getUTCDate() === +m[3] && d.getUTCHours() === +m[4];
  return Number.isNaN(ms) || !same ? undefined : ms;
}

export function formatUtc(ms: number): string {
  return new Date(ms).toISOString().replace('.000Z', 'Z');
}

/** `fn` remembering its last argument and result: the locks of one request mostly share one expiry. */
function rememberLast<A, R>(fn: (a: A) => R): (a: A) => R {
  let last: { a: A; r: R } | undefined;
  return (a) => (last?.a === a ? last.r : (last = { a, r: fn(a) }).r);
}

export function lockDto(l: Lock, format: (ms: number) => string = formatUtc): LockDto {
  return { ...l, expiresAt: format(l.expiresAt) };
}

/** ServiceOrchestrationLockListResponse */
export function lockListDto(list: LockList): { entries: LockDto[]; count: number } {
  const format = rememberLast(formatUtc);
  return { entries: list.entries.map((l) => lockDto(l, format)), count: list.count };
}

function record(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('invalid_request', `Could not parse payload: ${what} must be an object`);
  return v as Record<string, unknown>;
}

/** An optional list whose elements may not be empty; undefined when absent or empty. */
function list<T>(v: unknown, field: string, emptyElement: string, each: (x: unknown) => T): T[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) fail('invalid_request', `Could not parse payload: ${field} must be a list`);
  if (v.some(blank)) fail('invalid_request', emptyElement);
  return v.length ? v.map(each) : undefined;
}

/** Create request `{locks: [{serviceInstanceId, owner, expiresAt}]}` → the management locks to insert. */
export function validateCreateRequest(payload: unknown, now: number): NewLock[] {
  if (payload === undefined || payload === null) fail('invalid_request', 'Request payload is null');
  const locks = record(payload, 'payload').locks ?? [];
  if (!Array.isArray(locks)) fail('invalid_request', 'Could not parse payload: locks must be a list');
  if (locks.some((l) => l === null || l === undefined)) fail('invalid_request', 'Request payload contains null element');
  const seen = new Set<string>();
  const parseExpiry = rememberLast(parseUtc);
  return locks.map((raw): NewLock => {
    const l = record(raw, 'lock');
    if (blank(l.serviceInstanceId)) fail('invalid_request', 'Service instance id is missing');
    const serviceInstanceId = text(l.serviceInstanceId, 'serviceInstanceId');
    if (serviceInstanceId.length > SERVICE_INSTANCE_ID_MAX) fail('invalid_request', 'Service instance id is too long');
    validServiceInstanceId(serviceInstanceId);
    if (seen.has(serviceInstanceId)) fail('invalid_request', `Duplicate service instance id: ${serviceInstanceId}`);
    seen.add(serviceInstanceId);
    if (blank(l.owner)) fail('invalid_request', 'Owner is missing');
    const owner = text(l.owner, 'owner');
    if (owner.length > NAME_MAX) fail('invalid_request', 'Owner name is too long');
    validName(owner);
    if (blank(l.expiresAt)) fail('invalid_request', 'Expiration time is missing');
    const expiresAtText = text(l.expiresAt, 'expiresAt');
    const expiresAt = parseExpiry(expiresAtText);
    if (expiresAt === undefined) fail('invalid_request', `Invalid expires at format: ${expiresAtText}`);
    if (expiresAt <= now) fail('invalid_request', `Expires at is in the past: ${expiresAtText}`);
    return { orchestrationJobId: null, serviceInstanceId, owner, expiresAt, temporary: false };
  });
}

function validatePage(raw: unknown): LockPage {
  const defaults: LockPage = { page: 0, size: MAX_PAGE_SIZE, direction: 'DESC', sortField: 'id' };
  if (raw === undefined || raw === null) return defaults;
  const p = record(raw, 'pagination');
  const int = (v: unknown, field: string) => {
    if (v === undefined || v === null) return undefined;
    if (!Number.isInteger(v)) fail('invalid_request', `Could not parse payload: ${field} must be an integer`);
    return v as number;
  };
  const page = int(p.page, 'page');
  const size = int(p.size, 'size');
  if (size !== undefined && page === undefined) fail('invalid_request', 'If size parameter is defined then page parameter cannot be undefined');
  if (page !== undefined && size === undefined) fail('invalid_request', 'If page parameter is defined then size parameter cannot be undefined');
  if (size !== undefined && size > MAX_PAGE_SIZE) fail('invalid_request', `The page size cannot be larger than ${MAX_PAGE_SIZE}`);
  const direction = blank(p.direction) ? defaults.direction : text(p.direction, 'direction').toUpperCase();
  if (direction !== 'ASC' && direction !== 'DESC') fail('invalid_request', 'Direction is invalid. Only ASC or DESC are allowed');
  const sortField = blank(p.sortField) ? defaults.sortField : text(p.sortField, 'sortField');
  if (!LOCK_SORT_FIELDS.includes(sortField as LockSortField)) {
    fail('invalid_request', `Sort field is invalid. Only the following are allowed: [${LOCK_SORT_FIELDS.join(', ')}]`);
  }
  // As Arrowhead's PageService: a negative page means the first, a size below 1 the largest.
  return { page: Math.max(page ?? 0, 0), size: size === undefined || size < 1 ? MAX_PAGE_SIZE : size, direction, sortField: sortField as LockSortField };
}

function timestamp(v: unknown, label: string): number | undefined {
  if (blank(v)) return undefined;
  const value = text(v, label);
  const ms = parseUtc(value);
  if (ms === undefined) fail('invalid_request', `Invalid ${label}: ${value}`);
  return ms;
}

/** Query request (every field optional; an empty payload lists everything, first page). */
export function validateQueryRequest(payload: unknown): { filter: LockFilter; page: LockPage } {
  const q = payload === undefined || payload === null ? {} : record(payload, 'payload');
  const filter: LockFilter = {
    ids: list(q.ids, 'ids', 'ID list contains empty element.', (x) => {
      if (!Number.isInteger(x)) fail('invalid_request', `Could not parse payload: invalid id ${JSON.stringify(x)}`);
      return x as number;
    }),
    orchestrationJobIds: list(q.orchestrationJobIds, 'orchestrationJobIds', 'Orchestration job id list contains empty element.', (x) => {
      const id = text(x, 'orchestrationJobIds');
      if (!UUID.test(id)) fail('invalid_request', `Invalid orchestration job id: ${id}`);
      return id.toLowerCase();
    }),
    serviceInstanceIds: list(q.serviceInstanceIds, 'serviceInstanceIds', 'Service instance id list contains empty element.', (x) => text(x, 'serviceInstanceIds')),
    owners: list(q.owners, 'owners', 'Owner list contains empty element.', (x) => validName(text(x, 'owners'))),
    expiresBefore: timestamp(q.expiresBefore, 'expires before'),
    expiresAfter: timestamp(q.expiresAfter, 'expires after'),
  };
  return { filter, page: validatePage(q.pagination) };
}

/** Remove request: `params.owner` and a list of service instance ids. */
export function validateRemoveRequest(owner: unknown, serviceInstanceIds: unknown): { owner: string; serviceInstanceIds: string[] } {
  if (blank(owner)) fail('invalid_request', 'Owner is missing');
  const ids = list(serviceInstanceIds, 'payload', 'Service instance id list contains empty element.', (x) => text(x, 'service instance id'));
  if (!ids) fail('invalid_request', 'Service instance id list empty.');
  return { owner: validName(text(owner, 'owner')), serviceInstanceIds: ids };
}
