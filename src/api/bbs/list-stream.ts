// The ActualLRP lists, encoded straight from store rows into the response body, page by page,
// and streamed (chunked): no internal objects, wire trees or JSON trees in between. For 100k
// instances those trees cost most of the server's time (docs/benchmarks.md, section 1).
//
// The output is the bytes the generic codec (codec.ts) produces for the same rows, in both
// encodings (test/bbs-list-stream.test.ts checks it field by field):
//   protobuf: field numbers and wire types come from proto/bbs.proto; as protobufjs does for
//             proto3, scalars equal to their zero value are left out, messages never are
//             (`since` is the exception: the codec hands it to protobufjs as a string, which
//             is always written);
//   JSON:     snake_case, ActualLRP keys flattened, every field present (zero values too).

import { Readable } from 'node:stream';
import protobuf from 'protobufjs';
import type { ActualLrpRow } from '../../store/store.js';
import { bbsProtoRoot, isProtobufContentType, JSON_CONTENT_TYPE, PROTOBUF_CONTENT_TYPE } from './codec.js';

/** The response a list answers with: groups (ActualLRPGroupsResponse) or bare ActualLRPsResponse. */
export type ListShape = 'groups' | 'actuals';

/** A list to stream; the route returns it instead of a message. */
export class ActualLrpList {
  constructor(
    readonly shape: ListShape,
    readonly pages: AsyncIterable<ActualLrpRow[]>,
  ) {}

  /**
   * Reads the first page before anything is sent, so a failing store still gets an error
   * message with its status; a failure on a later page can only cut the body short.
   */
  async open(contentType: string | undefined): Promise<{ contentType: string; body: Readable }> {
    const protobufOut = isProtobufContentType(contentType);
    const pages = this.pages[Symbol.asyncIterator]();
    const first = await pages.next();
    const chunks = protobufOut ? protobufChunks(this.shape, first, pages) : jsonChunks(this.shape, first, pages);
    return { contentType: protobufOut ? PROTOBUF_CONTENT_TYPE : JSON_CONTENT_TYPE, body: Readable.from(chunks, { objectMode: false }) };
  }
}

type Pages = AsyncIterator<ActualLrpRow[]>;

// ------------------------------------------------------------------------- protobuf

/** tag (field number and wire type) of each field of a message, by protobufjs name */
function tagsOf(typeName: string): Record<string, number> {
  const tags: Record<string, number> = {};
  for (const f of bbsProtoRoot().lookupType(typeName).fieldsArray) {
    const basic = (protobuf.types.basic as Record<string, number | undefined>)[f.type];
    const wireType = f.repeated || f.map ? 2 : (basic ?? (f.resolvedType instanceof protobuf.Enum ? 0 : 2));
    tags[f.name] = ((f.id << 3) | wireType) >>> 0;
  }
  return tags;
}

let schema: ReturnType<typeof loadSchema> | undefined;

function loadSchema() {
  return {
    groupsResponse: tagsOf('models.ActualLRPGroupsResponse'),
    actualsResponse: tagsOf('models.ActualLRPsResponse'),
    group: tagsOf('models.ActualLRPGroup'),
    actual: tagsOf('models.ActualLRP'),
    key: tagsOf('models.ActualLRPKey'),
    instanceKey: tagsOf('models.ActualLRPInstanceKey'),
    netInfo: tagsOf('models.ActualLRPNetInfo'),
    port: tagsOf('models.PortMapping'),
    tag: tagsOf('models.ModificationTag'),
    presence: bbsProtoRoot().lookupEnum('models.ActualLRP.Presence'),
    preferredAddress: bbsProtoRoot().lookupEnum('models.ActualLRPNetInfo.PreferredAddress'),
  };
}

function tags() {
  return (schema ??= loadSchema());
}

/** Net info as stored (the internal shape); any member may be missing in old rows. */
interface StoredNetInfo {
  address?: string;
  ports?: { containerPort?: number; hostPort?: number; containerTlsProxyPort?: number; hostTlsProxyPort?: number }[];
  instanceAddress?: string;
  preferredAddress?: string | number;
}

/** an enum given by name (the internal shape) or by number, as a number */
function enumNumber(e: protobuf.Enum, v: string | number, what: string): number {
  if (typeof v === 'number') return v;
  const n = e.values[v];
  if (n === undefined) throw new Error(`cannot encode ${what}: unknown ${e.name} value ${v}`);
  return n;
}

function writeString(w: protobuf.Writer, tag: number, v: string | undefined): void {
  if (v) w.uint32(tag).string(v);
}

function writeInt32(w: protobuf.Writer, tag: number, v: number | undefined): void {
  if (v) w.uint32(tag).int32(v);
}

function writeUint32(w: protobuf.Writer, tag: number, v: number | undefined): void {
  if (v) w.uint32(tag).uint32(v);
}

/**
 * Unix ms as the int64 nanoseconds on the wire, exactly: ms * 1e6 exceeds 2^53, so the
 * product is split into 32-bit halves, every partial product staying below 2^53.
 */
function nanosBits(ms: number): { low: number; high: number } {
  const t = Math.trunc(ms);
  if (t < 0 || t >= 2 ** 42) {
    const ns = BigInt.asUintN(64, BigInt(t) * 1_000_000n);
    return { low: Number(ns & 0xffffffffn), high: Number(ns >> 32n) };
  }
  const a = Math.floor(t / 2 ** 21) * 1e6; // < 2^41
  const b = (t % 2 ** 21) * 1e6; // < 2^41
  const aHigh = Math.floor(a / 2 ** 11);
  const low = (a % 2 ** 11) * 2 ** 21 + b; // < 2^42
  return { low: low % 2 ** 32, high: aHigh + Math.floor(low / 2 ** 32) };
}

function writeActualLrp(w: protobuf.Writer, r: ActualLrpRow): void {
  const t = tags();
  const a = t.actual;
  w.uint32(a.actualLrpKey!).fork();
  writeString(w, t.key.processGuid!, r.process_guid);
  writeInt32(w, t.key.index!, Number(r.idx));
  writeString(w, t.key.domain!, r.domain);
  w.ldelim();
  w.uint32(a.actualLrpInstanceKey!).fork();
  writeString(w, t.instanceKey.instanceGuid!, r.instance_guid);
  writeString(w, t.instanceKey.cellId!, r.cell_id);
  w.ldelim();
  const net = JSON.parse(r.net_info) as StoredNetInfo;
  w.uint32(a.actualLrpNetInfo!).fork();
  writeString(w, t.netInfo.address!, net.address);
  for (const p of net.ports ?? []) {
    w.uint32(t.netInfo.ports!).fork();
    writeUint32(w, t.port.containerPort!, p.containerPort);
    writeUint32(w, t.port.hostPort!, p.hostPort);
    writeUint32(w, t.port.containerTlsProxyPort!, p.containerTlsProxyPort);
    writeUint32(w, t.port.hostTlsProxyPort!, p.hostTlsProxyPort);
    w.ldelim();
  }
  writeString(w, t.netInfo.instanceAddress!, net.instanceAddress);
  if (net.preferredAddress != null) writeInt32(w, t.netInfo.preferredAddress!, enumNumber(t.preferredAddress, net.preferredAddress, 'preferred_address'));
  w.ldelim();
  writeInt32(w, a.crashCount!, Number(r.crash_count));
  writeString(w, a.crashReason!, r.crash_reason);
  writeString(w, a.state!, r.state);
  writeString(w, a.placementError!, r.placement_error);
  w.uint32(a.since!).int64(nanosBits(Number(r.since)) as unknown as number);
  w.uint32(a.modificationTag!).fork();
  writeString(w, t.tag.epoch!, r.mod_epoch);
  writeUint32(w, t.tag.index!, Number(r.mod_index));
  w.ldelim();
  writeInt32(w, a.presence!, enumNumber(t.presence, r.presence, 'presence'));
  if (Number(r.stop_requested) === 1) w.uint32(a.stopRequested!).bool(true);
  writeString(w, a.targetCellId!, r.target_cell_id);
}

function encodeProtobufPage(shape: ListShape, rows: ActualLrpRow[]): Buffer {
  const t = tags();
  const w = protobuf.Writer.create();
  for (const r of rows) {
    if (shape === 'actuals') {
      w.uint32(t.actualsResponse.actualLrps!).fork();
    } else {
      w.uint32(t.groupsResponse.actualLrpGroups!).fork();
      w.uint32(r.presence === 'EVACUATING' ? t.group.evacuating! : t.group.instance!).fork();
    }
    writeActualLrp(w, r);
    if (shape === 'groups') w.ldelim();
    w.ldelim();
  }
  const bytes = w.finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** The response's only field is the repeated list: its encoding is the pages' concatenation. */
async function* protobufChunks(shape: ListShape, first: IteratorResult<ActualLrpRow[]>, pages: Pages): AsyncGenerator<Buffer> {
  for (let page = first; !page.done; page = await pages.next()) yield encodeProtobufPage(shape, page.value);
}

// ----------------------------------------------------------------------------- JSON

const q = JSON.stringify;

/** JSON has enum names; absent is the zero value, a number without a name stays a number */
function enumJson(e: protobuf.Enum, v: string | number | undefined, what: string): string {
  const n = v == null ? 0 : enumNumber(e, v, what);
  const name = e.valuesById[n];
  return name === undefined ? String(n) : q(name);
}

function portJson(p: NonNullable<StoredNetInfo['ports']>[number]): string {
  return (
    `{"container_port":${p.containerPort ?? 0},"host_port":${p.hostPort ?? 0},` +
    `"container_tls_proxy_port":${p.containerTlsProxyPort ?? 0},"host_tls_proxy_port":${p.hostTlsProxyPort ?? 0}}`
  );
}

function actualLrpJson(r: ActualLrpRow): string {
  const t = tags();
  const net = JSON.parse(r.net_info) as StoredNetInfo;
  return (
    `{"process_guid":${q(r.process_guid)},"index":${Number(r.idx)},"domain":${q(r.domain)}` +
    `,"instance_guid":${q(r.instance_guid)},"cell_id":${q(r.cell_id)}` +
    `,"address":${q(net.address ?? '')},"ports":[${(net.ports ?? []).map(portJson).join(',')}]` +
    `,"instance_address":${q(net.instanceAddress ?? '')},"preferred_address":${enumJson(t.preferredAddress, net.preferredAddress, 'preferred_address')}` +
    `,"crash_count":${Number(r.crash_count)},"crash_reason":${q(r.crash_reason)},"state":${q(r.state)}` +
    `,"placement_error":${q(r.placement_error)},"since":${Math.trunc(Number(r.since)) * 1e6}` +
    `,"modification_tag":{"epoch":${q(r.mod_epoch)},"index":${Number(r.mod_index)}}` +
    `,"presence":${enumJson(t.presence, r.presence, 'presence')},"stop_requested":${Number(r.stop_requested) === 1}` +
    `,"target_cell_id":${q(r.target_cell_id)}}`
  );
}

function jsonItem(shape: ListShape, r: ActualLrpRow): string {
  if (shape === 'actuals') return actualLrpJson(r);
  return `{"${r.presence === 'EVACUATING' ? 'evacuating' : 'instance'}":${actualLrpJson(r)}}`;
}

async function* jsonChunks(shape: ListShape, first: IteratorResult<ActualLrpRow[]>, pages: Pages): AsyncGenerator<Buffer> {
  let text = shape === 'actuals' ? '{"actual_lrps":[' : '{"actual_lrp_groups":[';
  let separator = '';
  for (let page = first; !page.done; page = await pages.next()) {
    const items = page.value.map((r) => jsonItem(shape, r));
    text += separator + items.join(',');
    separator = ',';
    yield Buffer.from(text);
    text = '';
  }
  yield Buffer.from(text + ']}');
}
