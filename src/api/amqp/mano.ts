// The MANO vocabulary: lifecycle topics, the instantiation request (NSD + VNFDs) as a
// Drover ServiceSpec, the instance id of a termination request, and the NSR/VNFR records
// of the replies (shaped as the SLM builds them: schema-01 records, version '1').

import { createHash } from 'node:crypto';
import { fail } from '../../model/errors.js';
import type { ActualLrp, DesiredLrp } from '../../model/lrp.js';
import type { ServiceSpec, ServiceStatus } from '../../core/services.js';

export const TOPIC_CREATE = 'service.instances.create';
export const TOPIC_TERMINATE = 'service.instance.terminate';
/** Topics a MANO client may send that Drover does not implement: it answers ERROR instead of silence. */
export const UNSUPPORTED_TOPICS = ['service.instance.scale', 'service.instance.migrate', 'service.instance.reconfigure'];

export const MANO_KIND = 'mano';
const MAX_NAME_IN_GUID = 40;

type Dict = Record<string, unknown>;

const isDict = (v: unknown): v is Dict => !!v && typeof v === 'object' && !Array.isArray(v);

function dict(v: unknown, what: string): Dict {
  if (!isDict(v)) fail('invalid_request', `${what} must be a mapping`);
  return v;
}

function text(v: unknown, what: string): string {
  if (typeof v !== 'string' || !v) fail('invalid_request', `${what} must be a non-empty string`);
  return v;
}

/** YAML turns `300` or `true` into numbers and booleans; a command line wants strings. */
function scalar(v: unknown, what: string): string {
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return String(v);
  fail('invalid_request', `${what} must be a string`);
}

/** A descriptor field copied into a record: absent is null, as the SLM's records have it. */
const field = (v: unknown): string | null => (v === undefined || v === null ? null : String(v));

/** A stable UUID (name-based, SHA-1, as UUID v5) so a redelivered request maps to the same ids. */
export function stableUuid(name: string): string {
  const h = createHash('sha1').update(name).digest();
  h[6] = (h[6]! & 0x0f) | 0x50;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/** What the adapter keeps in Service.attributes to build records and recognise redeliveries. */
// a type, not an interface: it must fit Record<string, unknown>
export type ManoAttributes = {
  nsd: { name: string; vendor: string | null; version: string | null; uuid: string | null };
  vnfs: VnfNote[];
  createRequest: string;
  terminateRequest?: string;
};

interface VnfNote {
  vnfrId: string;
  processGuid: string;
  name: string;
  uuid: string | null;
  unitId: string;
}

interface Run {
  unitId: string;
  lrp: Partial<DesiredLrp>;
}

/** The one deployment unit of a VNFD carrying a `drover` section, as a DesiredLRP's action. */
function runOf(vnfd: Dict, label: string): Run {
  const units = [vnfd.virtual_deployment_units, vnfd.cloudnative_deployment_units].flatMap((u) => (Array.isArray(u) ? u : [])).filter(isDict);
  const runnable = units.filter((u) => u.drover !== undefined);
  if (runnable.length !== 1) fail('invalid_request', `${label}: exactly one deployment unit must have a drover section (found ${runnable.length})`);
  const unit = runnable[0]!;
  const d = dict(unit.drover, `${label}.drover`);
  const args = d.args ?? [];
  if (!Array.isArray(args)) fail('invalid_request', `${label}.drover.args must be a list`);
  const env = dict(d.env ?? {}, `${label}.drover.env`);
  const instances = d.instances ?? 1;
  if (!Number.isInteger(instances) || (instances as number) < 1) fail('invalid_request', `${label}.drover.instances must be a positive integer`);
  return {
    unitId: field(unit.id) ?? '',
    lrp: {
      instances: instances as number,
      action: {
        run: {
          path: text(d.path, `${label}.drover.path`),
          args: args.map((a, i) => scalar(a, `${label}.drover.args[${i}]`)),
          dir: d.dir === undefined ? '' : text(d.dir, `${label}.drover.dir`),
          env: Object.entries(env).map(([name, value]) => ({ name, value: scalar(value, `${label}.drover.env.${name}`) })),
          user: '',
        },
      },
    },
  };
}

/** VNFD0, VNFD1, ... in numeric order. */
function vnfdKeys(body: Dict): string[] {
  return Object.keys(body)
    .filter((k) => /^VNFD\d+$/.test(k))
    .sort((a, b) => Number(a.slice(4)) - Number(b.slice(4)));
}

/** The instantiation request as a Service: one DesiredLRP (domain `mano`) per VNFD. */
export function planService(body: Dict, serviceId: string, requestKey: string): ServiceSpec {
  const nsd = dict(body.NSD, 'NSD');
  const name = text(nsd.name, 'NSD.name');
  const keys = vnfdKeys(body);
  if (!keys.length) fail('invalid_request', 'the request has no VNFD0, VNFD1, ...');
  const vnfs: VnfNote[] = [];
  const lrps = keys.map((key, i) => {
    const vnfd = dict(body[key], key);
    const vnfName = text(vnfd.name, `${key}.name`);
    const { unitId, lrp } = runOf(vnfd, key);
    // service id first: `drover ls` (sorted by guid) then lists a service's functions together
    const processGuid = `${serviceId}-${i}-${vnfName.replace(/[^a-zA-Z0-9_-]/g, '_').slice(0, MAX_NAME_IN_GUID)}`;
    vnfs.push({ vnfrId: stableUuid(`${serviceId}/${i}`), processGuid, name: vnfName, uuid: field(vnfd.uuid), unitId });
    return { ...lrp, processGuid, domain: MANO_KIND, annotation: [vnfd.vendor, vnfName, vnfd.version].filter(Boolean).join('.') };
  });
  const attributes: ManoAttributes = { nsd: { name, vendor: field(nsd.vendor), version: field(nsd.version), uuid: field(nsd.uuid) }, vnfs, createRequest: requestKey };
  return { id: serviceId, name, kind: MANO_KIND, lrps, attributes };
}

/** The termination request names the instance `instance_id` (the seed) or `service_instance_uuid` (the SLM). */
export function instanceIdOf(body: Dict): string {
  const { instance_id: a, service_instance_uuid: b } = body;
  if (a !== undefined && b !== undefined && a !== b) fail('invalid_request', 'instance_id and service_instance_uuid differ');
  return text(a ?? b, 'instance_id');
}

export type RecordStatus = 'normal operation' | 'offline' | 'terminated';

function vnfcs(actual: ActualLrp[]) {
  return actual.map((a) => ({ id: String(a.actualLrpKey.index), vim_id: a.actualLrpInstanceKey.cellId, vc_id: a.actualLrpInstanceKey.instanceGuid, state: a.state, connection_points: [] }));
}

export function records(status: ServiceStatus, recordStatus: RecordStatus) {
  const { id, attributes } = status.service;
  const { nsd, vnfs } = attributes as unknown as ManoAttributes;
  const lrps = new Map(status.lrps.map((l) => [l.desired.processGuid, l]));
  const nsr = {
    id,
    descriptor_version: 'nsr-schema-01',
    version: '1',
    status: recordStatus,
    descriptor_reference: nsd.uuid,
    network_functions: vnfs.map((v) => ({ vnfr_id: v.vnfrId })),
  };
  const vnfrs = vnfs.map((v) => {
    const lrp = lrps.get(v.processGuid);
    return {
      id: v.vnfrId,
      descriptor_version: 'vnfr-schema-01',
      version: '1',
      status: recordStatus,
      descriptor_reference: v.uuid,
      virtual_deployment_units: [
        { id: v.unitId, vdu_reference: `${v.name}:${v.unitId}`, number_of_instances: lrp?.desired.instances ?? 0, vnfc_instance: vnfcs(lrp?.actual ?? []) },
      ],
    };
  });
  return { nsr, vnfrs };
}
