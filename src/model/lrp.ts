// Desired and actual long-running processes. Field names follow the BBS models in
// camelCase, so the protobuf reflection and these types line up one to one.

export type ActualLrpState = 'UNCLAIMED' | 'CLAIMED' | 'RUNNING' | 'CRASHED';
export type Presence = 'ORDINARY' | 'EVACUATING' | 'SUSPECT';

export interface ModificationTag {
  epoch: string;
  index: number;
}

export interface ActualLrpKey {
  processGuid: string;
  index: number;
  domain: string;
}

export interface ActualLrpInstanceKey {
  instanceGuid: string;
  cellId: string;
}

export interface PortMapping {
  containerPort: number;
  hostPort: number;
  containerTlsProxyPort?: number;
  hostTlsProxyPort?: number;
}

export interface ActualLrpNetInfo {
  address: string;
  ports: PortMapping[];
  instanceAddress: string;
  preferredAddress: 'UNKNOWN' | 'INSTANCE' | 'HOST';
}

export interface ActualLrp {
  actualLrpKey: ActualLrpKey;
  actualLrpInstanceKey: ActualLrpInstanceKey;
  actualLrpNetInfo: ActualLrpNetInfo;
  crashCount: number;
  crashReason: string;
  state: ActualLrpState;
  placementError: string;
  /** unix milliseconds (encoded as nanoseconds on the wire) */
  since: number;
  modificationTag: ModificationTag;
  presence: Presence;
  /** asked to stop (retire, scale-down, remove); the cell stops it and removes it */
  stopRequested: boolean;
  /** Drover's placement decision for an UNCLAIMED instance: the cell expected to claim it */
  targetCellId: string;
}

/** What a cell agent compares with what runs on its cell: an ActualLrp without the rest. */
export type ActualLrpPlacement = Pick<ActualLrp, 'actualLrpKey' | 'actualLrpInstanceKey' | 'state' | 'targetCellId' | 'stopRequested'>;

export interface ActualLrpGroup {
  instance?: ActualLrp;
  evacuating?: ActualLrp;
}

export interface EnvironmentVariable {
  name: string;
  value: string;
}

export interface RunAction {
  path: string;
  args: string[];
  dir: string;
  env: EnvironmentVariable[];
  user: string;
  resourceLimits?: { nofile?: number };
  logSource?: string;
  suppressLogOutput?: boolean;
}

/** One field set, as in BBS; Drover runs `run` actions and walks the wrappers. */
export interface Action {
  run?: RunAction;
  timeout?: { action?: Action; timeoutMs?: number; logSource?: string };
  try?: { action?: Action; logSource?: string };
  serial?: { actions: Action[]; logSource?: string };
  parallel?: { actions: Action[]; logSource?: string };
  codependent?: { actions: Action[]; logSource?: string };
  emitProgress?: { action?: Action; startMessage?: string; successMessage?: string; failureMessagePrefix?: string; logSource?: string };
  download?: { artifact?: string; from: string; to: string; cacheKey?: string; logSource?: string; user?: string };
}

export type PlacementStrategy = 'spread' | 'every-cell' | 'leader';

/** Drover's own additions to the DesiredLRP (fields above 100 on the wire). */
export interface DroverPlacement {
  strategy: PlacementStrategy;
  sites: string[];
  sections: string[];
}

export interface HealthCheck {
  /** TCP port to connect to, or a command to run (exit 0 = healthy) */
  tcpPort?: number;
  command?: string[];
}

/** Drover addition: what a crash leads to. Absent: the BBS policy (always restart, with back-off). */
export interface RestartOption {
  /** on-failure: not after a clean exit (code 0); never: a crash stays CRASHED */
  mode: 'always' | 'on-failure' | 'never';
  /** restart at once every time, without the BBS back-off */
  immediate: boolean;
  /** the crash-loop guard (a start limit): a crash after `restarts` restarts within `windowMs` disables the LRP */
  limit?: { restarts: number; windowMs: number };
}

export interface DesiredLrp {
  processGuid: string;
  domain: string;
  rootfs: string;
  instances: number;
  env: EnvironmentVariable[];
  setup?: Action;
  action?: Action;
  monitor?: Action;
  startTimeoutMs: number;
  diskMb: number;
  memoryMb: number;
  cpuWeight: number;
  privileged: boolean;
  ports: number[];
  /** route name -> arbitrary JSON (raw JSON bytes on the protobuf wire) */
  routes: Record<string, unknown>;
  logSource: string;
  logGuid: string;
  metricsGuid: string;
  annotation: string;
  modificationTag: ModificationTag;
  placementTags: string[];
  maxPids: number;
  metricTags: Record<string, unknown>;
  // Drover additions
  placement: DroverPlacement;
  healthCheck?: HealthCheck;
  stopGraceMs: number;
  enabled: boolean;
  serviceId: string;
  /** why the LRP was disabled (e.g. the crash-loop guard) */
  disabledReason: string;
  /** when the crash-loop guard disabled it (unix ms) */
  disabledAt?: number;
  restart?: RestartOption;
  /** the crash-loop guard's bookkeeping: recent restart times (unix ms) per instance index */
  restartLog?: Record<string, number[]>;
}

/** What convergence plans from: a desired LRP's count, placement and restart fields. */
export type DesiredLrpPlanInfo = Pick<DesiredLrp, 'processGuid' | 'domain' | 'instances' | 'enabled' | 'placement' | 'placementTags' | 'restart'>;

export interface DesiredLrpSchedulingInfo {
  processGuid: string;
  domain: string;
  logGuid: string;
  memoryMb: number;
  diskMb: number;
  rootfs: string;
  maxPids: number;
  annotation: string;
  instances: number;
  routes: Record<string, unknown>;
  modificationTag: ModificationTag;
  placementTags: string[];
}

export interface DesiredLrpUpdate {
  instances?: number;
  routes?: Record<string, unknown>;
  annotation?: string;
  metricTags?: Record<string, unknown>;
}

export interface DesiredLrpFilter {
  domain?: string;
  processGuids?: string[];
}

export interface ActualLrpFilter {
  domain?: string;
  /** the cell in the instance key (BBS: the cell that claimed or runs it) */
  cellId?: string;
  /** with cellId: also the instances placed on that cell and not claimed yet (a cell agent's work) */
  includeTargeted?: boolean;
  processGuid?: string;
  index?: number;
}

export const DEFAULT_STOP_GRACE_MS = 10_000;

export function schedulingInfo(d: DesiredLrp): DesiredLrpSchedulingInfo {
  return {
    processGuid: d.processGuid,
    domain: d.domain,
    logGuid: d.logGuid,
    memoryMb: d.memoryMb,
    diskMb: d.diskMb,
    rootfs: d.rootfs,
    maxPids: d.maxPids,
    annotation: d.annotation,
    instances: d.instances,
    routes: d.routes,
    modificationTag: d.modificationTag,
    placementTags: d.placementTags,
  };
}

/** The first `run` action reachable through the wrappers, which is what the agent executes. */
export function findRunAction(action: Action | undefined): RunAction | undefined {
  if (!action) return undefined;
  if (action.run) return action.run;
  const inner = action.timeout?.action ?? action.try?.action ?? action.emitProgress?.action;
  if (inner) return findRunAction(inner);
  for (const a of action.serial?.actions ?? action.parallel?.actions ?? action.codependent?.actions ?? []) {
    const run = findRunAction(a);
    if (run) return run;
  }
  return undefined;
}
