// The ActualLRP lists, encoded straight from store rows into the response body, page by page,
// and streamed (chunked): no internal objects, wire trees or JSON trees in between. For 100k
// instances those trees cost most of the server's time (docs/benchmarks.md, section 1).
//
// The output is the bytes the generic codec (codec.ts) produces for the same rows, in both
// encodings (test/bbs-list-stream.test.ts compares them byte for byte):
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

/**
 * JSON text written byte by byte into one buffer per page. Building it as JS strings (or as
 * objects for JSON.stringify) cost 3-4x more, mostly in garbage collection.
 */
class JsonPage {
  private buf: Buffer;
  private pos = 0;

  constructor(sizeHint: number) {
    this.buf = Buffer.allocUnsafe(Math.max(1024, sizeHint));
  }

  private reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(bigger, 0, 0, this.pos);
    this.buf = bigger;
  }

  /** text known to need no escaping: keys, punctuation, numbers, enum names */
  raw(text: string): this {
    this.reserve(text.length);
    for (let i = 0; i < text.length; i++) this.buf[this.pos++] = text.charCodeAt(i);
    return this;
  }

  /** a string value; printable ASCII is copied, anything else goes through JSON.stringify */
  str(value: string): this {
    this.reserve(value.length + 2);
    const start = this.pos;
    this.buf[this.pos++] = 0x22;
    for (let i = 0; i < value.length; i++) {
      const c = value.charCodeAt(i);
      if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) {
        const quoted = JSON.stringify(value);
        this.pos = start;
        this.reserve(Buffer.byteLength(quoted));
        this.pos += this.buf.write(quoted, this.pos);
        return this;
      }
      this.buf[this.pos++] = c;
    }
    this.buf[this.pos++] = 0x22;
    return this;
  }

  num(value: number): this {
    return this.raw(String(value));
  }

  bytes(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

/** JSON has enum names; absent is the zero value, a number without a name stays a number */
function enumJson(e: protobuf.Enum, v: string | number | undefined, what: string): string {
  const n = v == null ? 0 : enumNumber(e, v, what);
  const name = e.valuesById[n];
  return name === undefined ? String(n) : JSON.stringify(name);
}

function writeActualLrpJson(out: JsonPage, r: ActualLrpRow): void {
  const t = tags();
  const net = JSON.parse(r.net_info) as StoredNetInfo;
  out.raw('{"process_guid":').str(r.process_guid).raw(',"index":').num(Number(r.idx)).raw(',"domain":').str(r.domain);
  out.raw(',"instance_guid":').str(r.instance_guid).raw(',"cell_id":').str(r.cell_id);
  out.raw(',"address":').str(net.address ?? '').raw(',"ports":[');
  let first = true;
  for (const p of net.ports ?? []) {
    out.raw(first ? '{"container_port":' : ',{"container_port":').num(p.containerPort ?? 0);
    out.raw(',"host_port":').num(p.hostPort ?? 0);
    out.raw(',"container_tls_proxy_port":').num(p.containerTlsProxyPort ?? 0);
    out.raw(',"host_tls_proxy_port":').num(p.hostTlsProxyPort ?? 0).raw('}');
    first = false;
  }
  out.raw('],"instance_address":').str(net.instanceAddress ?? '');
  out.raw(',"preferred_address":').raw(enumJson(t.preferredAddress, net.preferredAddress, 'preferred_address'));
  out.raw(',"crash_count":').num(Number(r.crash_count)).raw(',"crash_reason":').str(r.crash_reason);
  out.raw(',"state":').str(r.state).raw(',"placement_error":').str(r.placement_error);
  // JSON has int64 as a number: the double nearest the nanoseconds, as the codec writes it
  out.raw(',"since":').num(Math.trunc(Number(r.since)) * 1e6);
  out.raw(',"modification_tag":{"epoch":').str(r.mod_epoch).raw(',"index":').num(Number(r.mod_index)).raw('}');
  out.raw(',"presence":').raw(enumJson(t.presence, r.presence, 'presence'));
  out.raw(',"stop_requested":').raw(Number(r.stop_requested) === 1 ? 'true' : 'false');
  out.raw(',"target_cell_id":').str(r.target_cell_id).raw('}');
}

/** a row's JSON is about 600 bytes; a page's buffer grows if it needs more */
const JSON_ROW_SIZE_HINT = 700;

function encodeJsonPage(shape: ListShape, rows: ActualLrpRow[], separator: string): Buffer {
  const out = new JsonPage(rows.length * JSON_ROW_SIZE_HINT);
  for (const r of rows) {
    out.raw(separator);
    separator = ',';
    if (shape === 'groups') out.raw(r.presence === 'EVACUATING' ? '{"evacuating":' : '{"instance":');
    writeActualLrpJson(out, r);
    if (shape === 'groups') out.raw('}');
  }
  return out.bytes();
}

async function* jsonChunks(shape: ListShape, first: IteratorResult<ActualLrpRow[]>, pages: Pages): AsyncGenerator<Buffer> {
  yield Buffer.from(shape === 'actuals' ? '{"actual_lrps":[' : '{"actual_lrp_groups":[');
  let separator = '';
  for (let page = first; !page.done; page = await pages.next()) {
    yield encodeJsonPage(shape, page.value, separator);
    separator = ',';
  }
  yield Buffer.from(']}');
}
