// Client commands: they talk to a running Drover over the BBS JSON API.

import { readFileSync } from 'node:fs';
import { bbsCall, type ApiTarget } from './client.js';
import { ago, table } from './table.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface ClientOptions extends ApiTarget {
  json?: boolean;
}

function print(opts: ClientOptions, data: unknown, text: () => string): void {
  console.log(opts.json ? JSON.stringify(data, null, 2) : text());
}

export interface Listing {
  desired_lrps: Json[];
  actual_lrps: Json[];
}

export async function fetchListing(opts: ApiTarget & { domain?: string }): Promise<Listing> {
  const [desired, actual] = await Promise.all([
    bbsCall<Json>(opts, '/v1/desired_lrps/list.r2', { domain: opts.domain ?? '' }),
    bbsCall<Json>(opts, '/v1/actual_lrp_groups/list', { domain: opts.domain ?? '' }),
  ]);
  return { desired_lrps: desired.desired_lrps ?? [], actual_lrps: (actual.actual_lrp_groups ?? []).map((g: Json) => g.instance ?? g.evacuating) };
}

export function renderListing({ desired_lrps: desiredLrps, actual_lrps: instances }: Listing): string {
  const running = (guid: string) => instances.filter((a) => a.process_guid === guid && a.state === 'RUNNING').length;
  const desiredTable = table(
    ['PROCESS_GUID', 'DOMAIN', 'INSTANCES', 'RUNNING', 'ANNOTATION'],
    desiredLrps.map((d) => [d.process_guid, d.domain, d.instances ?? 0, running(d.process_guid), (d.annotation ?? '').slice(0, 30)]),
  );
  const actualTable = table(
    ['PROCESS_GUID', 'INDEX', 'STATE', 'CELL', 'SINCE', 'CRASHES', 'REASON'],
    instances.map((a) => [a.process_guid, a.index ?? 0, a.state + (a.presence && a.presence !== 'ORDINARY' ? `/${a.presence}` : ''), a.cell_id || a.target_cell_id || '-', ago(a.since), a.crash_count ?? 0, a.crash_reason || a.placement_error || '']),
  );
  return `${desiredTable}\n\n${actualTable}`;
}

export async function listCommand(opts: ClientOptions & { domain?: string }): Promise<void> {
  const listing = await fetchListing(opts);
  print(opts, listing, () => renderListing(listing));
}

/** Reads a DesiredLRP in BBS JSON (snake_case) from a JSON or YAML file, bare or wrapped. */
async function readDesiredLrpFile(file: string): Promise<Json> {
  const text = readFileSync(file, 'utf8');
  // YAML is loaded on first use: `drover serve` loads this module and never reads YAML
  const doc = (file.endsWith('.json') ? JSON.parse(text) : (await import('yaml')).parse(text)) as Json;
  if (!doc || typeof doc !== 'object') throw new Error(`${file}: expected a DesiredLRP object`);
  return doc.desired_lrp ?? doc;
}

/** Returns the process guid (for --wait). */
export async function desireCommand(opts: ClientOptions & { file: string }): Promise<string> {
  const desired = await readDesiredLrpFile(opts.file);
  await bbsCall(opts, '/v1/desired_lrp/desire.r2', { desired_lrp: desired });
  print(opts, { process_guid: desired.process_guid }, () => `desired ${desired.process_guid}`);
  return desired.process_guid;
}

/** Returns the process guid (for --wait). */
export async function scaleCommand(opts: ClientOptions, guid: string, instances: string): Promise<string> {
  const n = Number(instances);
  if (!Number.isInteger(n) || n < 0) throw new Error(`instances must be a non-negative integer, got ${instances}`);
  await bbsCall(opts, '/v1/desired_lrp/update', { process_guid: guid, update: { instances: n } });
  print(opts, { process_guid: guid, instances: n }, () => `scaled ${guid} to ${n}`);
  return guid;
}

export async function removeCommand(opts: ClientOptions, guid: string): Promise<void> {
  await bbsCall(opts, '/v1/desired_lrp/remove', { process_guid: guid });
  print(opts, { process_guid: guid }, () => `removed ${guid}`);
}

export async function retireCommand(opts: ClientOptions, guid: string, index: string): Promise<void> {
  const group = await bbsCall<Json>(opts, '/v1/actual_lrp_groups/get_by_process_guid_and_index', { process_guid: guid, index: Number(index) });
  const a = group.actual_lrp_group?.instance ?? group.actual_lrp_group?.evacuating;
  await bbsCall(opts, '/v1/actual_lrps/retire', { actual_lrp_key: { process_guid: guid, index: Number(index), domain: a?.domain ?? '' } });
  print(opts, { process_guid: guid, index: Number(index) }, () => `retired ${guid}/${index}`);
}

export async function cellsCommand(opts: ClientOptions): Promise<void> {
  const res = await bbsCall<Json>(opts, '/v1/cells/list');
  const cells: Json[] = res.cells ?? [];
  print(opts, { cells }, () => table(['CELL_ID', 'ZONE', 'REP_ADDRESS', 'PLACEMENT_TAGS'], cells.map((c) => [c.cell_id, c.zone ?? '', c.rep_address ?? '', (c.placement_tags ?? []).join(',')])));
}
