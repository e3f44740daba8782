// Validation of incoming DesiredLRPs and updates, after the BBS models' rules.
// Each failure names the field.

import { fail } from './errors.js';
import { DEFAULT_STOP_GRACE_MS, findRunAction, type DesiredLrp, type DesiredLrpUpdate, type PlacementStrategy, type RestartOption } from './lrp.js';

const GUID_PATTERN = /^[a-zA-Z0-9_-]+$/;
const MAX_ANNOTATION_BYTES = 10 * 1024;
const MAX_ROUTES_BYTES = 128 * 1024;
export const MAX_INSTANCES = 100_000;
const STRATEGIES: PlacementStrategy[] = ['spread', 'every-cell', 'leader'];

export function validateProcessGuid(guid: unknown, field = 'process_guid'): string {
  if (typeof guid !== 'string' || guid === '') fail('invalid_request', `${field} is required`);
  if (!GUID_PATTERN.test(guid)) fail('invalid_request', `${field} must match ${GUID_PATTERN.source}`);
  return guid;
}

function validateInstances(n: unknown, max: number): number {
  if (typeof n !== 'number' || !Number.isInteger(n)) fail('invalid_request', 'instances must be an integer');
  if (n < 0) fail('invalid_request', 'instances must be >= 0');
  if (n > max) fail('limit_exceeded', `instances must be <= ${max} (the instance limit)`);
  return n;
}

function validateAnnotation(a: string): void {
  if (Buffer.byteLength(a) > MAX_ANNOTATION_BYTES) fail('invalid_request', `annotation must be at most ${MAX_ANNOTATION_BYTES} bytes`);
}

function validateRoutes(r: Record<string, unknown>): void {
  if (typeof r !== 'object' || r === null || Array.isArray(r)) fail('invalid_request', 'routes must be an object');
  if (Buffer.byteLength(JSON.stringify(r)) > MAX_ROUTES_BYTES) fail('invalid_request', `routes must be at most ${MAX_ROUTES_BYTES} bytes`);
}

const RESTART_MODES: RestartOption['mode'][] = ['always', 'on-failure', 'never'];

function validateRestart(r: RestartOption | undefined): { restart?: RestartOption } {
  if (r === undefined) return {};
  if (!RESTART_MODES.includes(r.mode)) fail('invalid_request', `restart.mode must be one of ${RESTART_MODES.join(', ')}`);
  const positive = (n: unknown) => Number.isInteger(n) && (n as number) > 0;
  if (r.limit && !(positive(r.limit.restarts) && positive(r.limit.windowMs))) fail('invalid_request', 'restart.limit needs positive integer restarts and window_ms');
  return { restart: { mode: r.mode, immediate: !!r.immediate, ...(r.limit ? { limit: { restarts: r.limit.restarts, windowMs: r.limit.windowMs } } : {}) } };
}

/** Fills Drover's defaults and checks the BBS rules; returns a complete DesiredLRP. */
export function validateDesiredLrp(input: Partial<DesiredLrp> | undefined, maxInstances = MAX_INSTANCES): DesiredLrp {
  if (!input || typeof input !== 'object') fail('invalid_request', 'desired_lrp is required');
  const processGuid = validateProcessGuid(input.processGuid);
  if (!input.domain) fail('invalid_request', 'domain is required');
  const instances = validateInstances(input.instances ?? 0, maxInstances);
  if (!input.action) fail('invalid_request', 'action is required');
  const run = findRunAction(input.action);
  if (!run || !run.path) fail('invalid_request', 'action must contain a run action with a path');
  const annotation = input.annotation ?? '';
  validateAnnotation(annotation);
  const routes = input.routes ?? {};
  validateRoutes(routes);
  const strategy = input.placement?.strategy || 'spread';
  if (!STRATEGIES.includes(strategy)) fail('invalid_request', `placement.strategy must be one of ${STRATEGIES.join(', ')}`);
  const stopGraceMs = input.stopGraceMs || DEFAULT_STOP_GRACE_MS;
  if (!Number.isInteger(stopGraceMs) || stopGraceMs < 0) fail('invalid_request', 'stop_grace_ms must be a non-negative integer');
  return {
    processGuid,
    domain: input.domain,
    rootfs: input.rootfs ?? '',
    instances: strategy === 'leader' ? Math.min(instances, 1) : instances,
    env: input.env ?? [],
    setup: input.setup,
    action: input.action,
    monitor: input.monitor,
    startTimeoutMs: input.startTimeoutMs ?? 0,
    diskMb: input.diskMb ?? 0,
    memoryMb: input.memoryMb ?? 0,
    cpuWeight: input.cpuWeight ?? 0,
    privileged: input.privileged ?? false,
    ports: input.ports ?? [],
    routes,
    logSource: input.logSource ?? '',
    logGuid: input.logGuid ?? '',
    metricsGuid: input.metricsGuid ?? '',
    annotation,
    modificationTag: input.modificationTag ?? { epoch: '', index: 0 },
    placementTags: input.placementTags ?? [],
    maxPids: input.maxPids ?? 0,
    metricTags: input.metricTags ?? {},
    placement: { strategy, sites: input.placement?.sites ?? [], sections: input.placement?.sections ?? [] },
    healthCheck: input.healthCheck,
    stopGraceMs,
    enabled: input.enabled ?? true,
    serviceId: input.serviceId ?? '',
    disabledReason: input.disabledReason ?? '',
    ...validateRestart(input.restart),
  };
}

export function validateUpdate(update: DesiredLrpUpdate | undefined, maxInstances = MAX_INSTANCES): DesiredLrpUpdate {
  if (!update || typeof update !== 'object') fail('invalid_request', 'update is required');
  if (update.instances !== undefined) validateInstances(update.instances, maxInstances);
  if (update.annotation !== undefined) validateAnnotation(update.annotation);
  if (update.routes !== undefined) validateRoutes(update.routes);
  return update;
}
