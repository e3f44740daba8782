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
import { END_OF_FIELD, PACKED_COLUMN as C, PackedRowReader, type PackedActualLrps } from '../../store/packed-actual-lrps.js';
import { bbsProtoRoot, isProtobufContentType, JSON_CONTENT_TYPE, PROTOBUF_CONTENT_TYPE } from './codec.js';

/** The response a list answers with: groups (ActualLRPGroupsResponse) or bare ActualLRPsResponse. */
export type ListShape = 'groups' | 'actuals';

/** A list to stream; the route returns it instead of a message. */
export class ActualLrpList {
  constructor(
    readonly shape: ListShape,
    readonly pages: AsyncIterable<PackedActualLrps>,
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

type Pages = AsyncIterator<PackedActualLrps>;

// -------------------------------------------------------------------- packed columns

/** Short copies by hand: a native copy costs more than a few dozen bytes. */
const SHORT_COPY = 48;

/**
 * The integer a column's text spells when it is written as String(Number(text)) writes it (up
 * to 15 digits, no leading zero, no "-0"), read without making a string; else undefined.
 */
function plainInt(row: PackedRowReader, column: number): number | undefined {
  const b = row.bytes;
  const end = row.end(column);
  let p = row.start(column);
  const negative = b[p] === 0x2d;
  if (negative) p++;
  if (p === end || end - p > 15 || (b[p] === 0x30 && (end - p > 1 || negative))) return undefined;
  let n = 0;
  for (; p < end; p++) {
    const d = b[p]! - 0x30;
    if (d < 0 || d > 9) return undefined;
    n = n * 10 + d;
  }
  return negative ? -n : n;
}

/** the number a column's text spells */
function intOf(row: PackedRowReader, column: number): number {
  return plainInt(row, column) ?? Number(row.text(column));
}

/** stop_requested is stored as 0 or 1 */
function isOne(row: PackedRowReader, column: number): boolean {
  const start = row.start(column);
  return row.end(column) - start === 1 ? row.bytes[start] === 0x31 : Number(row.text(column)) === 1;
}

/** Net info as stored (the internal shape); any member may be missing in old rows. */
interface StoredNetInfo {
  address?: string;
  ports?: { containerPort?: number; hostPort?: number; containerTlsProxyPort?: number; hostTlsProxyPort?: number }[];
  instanceAddress?: string;
  preferredAddress?: string | number;
}

/**
 * A column's text as a string, reusing the last one when the bytes are the same: most rows
 * repeat their neighbour's address, presence, preferred address, and a string per row cost.
 */
class RepeatedText {
  private bytes: Buffer = Buffer.alloc(0);
  private start = 0;
  private end = 0;
  private text = '';

  of(bytes: Buffer, start: number, end: number): string {
    const n = end - start;
    if (n !== this.end - this.start || !sameBytes(bytes, start, this.bytes, this.start, n)) {
      this.text = bytes.toString('utf8', start, end);
      this.bytes = bytes;
      this.start = start;
      this.end = end;
    }
    return this.text;
  }
}

function sameBytes(a: Buffer, aStart: number, b: Buffer, bStart: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (a[aStart + i] !== b[bStart + i]) return false;
  return true;
}

const ascii = (text: string) => Buffer.from(text, 'latin1');
const NET_INFO_TEXT = {
  address: ascii('{"address":"'),
  ports: ascii(',"ports":['),
  containerPort: ascii('{"containerPort":'),
  hostPort: ascii(',"hostPort":'),
  containerTlsProxyPort: ascii(',"containerTlsProxyPort":'),
  hostTlsProxyPort: ascii(',"hostTlsProxyPort":'),
  instanceAddress: ascii('],"instanceAddress":"'),
  preferredAddress: ascii(',"preferredAddress":"'),
};

type StoredPort = NonNullable<StoredNetInfo['ports']>[number];

/**
 * The stored net info, read without JSON.parse when its text is as JSON.stringify writes the
 * model's object (members in the model's order, strings without escapes): JSON.parse made
 * an object per row and cost as much as the rest of the encoding. Any other text is parsed.
 * The net info returned is reused by the next call.
 */
class NetInfoReader {
  private bytes: Buffer = Buffer.alloc(0);
  private p = 0;
  private readonly ports: StoredPort[] = [];
  private readonly net = { address: '', ports: this.ports, instanceAddress: '', preferredAddress: '' };
  private readonly address = new RepeatedText();
  private readonly preferredAddress = new RepeatedText();
  private readonly presence = new RepeatedText();

  /** the row's presence (not net info, but as repeated) */
  presenceOf(row: PackedRowReader): string {
    return this.presence.of(row.bytes, row.start(C.presence), row.end(C.presence));
  }

  read(row: PackedRowReader): StoredNetInfo {
    this.bytes = row.bytes;
    this.p = row.start(C.net_info);
    return this.usual(row.end(C.net_info)) ?? (JSON.parse(row.text(C.net_info)) as StoredNetInfo);
  }

  private usual(end: number): StoredNetInfo | undefined {
    const t = NET_INFO_TEXT;
    const address = this.skip(t.address) ? this.string(this.address) : undefined;
    if (address === undefined || !this.skip(t.ports)) return undefined;
    let count = 0;
    if (this.bytes[this.p] !== 0x5d) {
      do {
        const port = (this.ports[count++] ??= {});
        port.containerPort = this.skip(t.containerPort) ? this.uint() : undefined;
        port.hostPort = this.skip(t.hostPort) ? this.uint() : undefined;
        if (port.containerPort === undefined || port.hostPort === undefined) return undefined;
        port.containerTlsProxyPort = this.skip(t.containerTlsProxyPort) ? this.uint() : undefined;
        port.hostTlsProxyPort = this.skip(t.hostTlsProxyPort) ? this.uint() : undefined;
        if (this.bytes[this.p++] !== 0x7d) return undefined;
      } while (this.bytes[this.p] === 0x2c && ++this.p);
    }
    this.ports.length = count;
    const instanceAddress = this.skip(t.instanceAddress) ? this.string() : undefined;
    const preferredAddress = instanceAddress !== undefined && this.skip(t.preferredAddress) ? this.string(this.preferredAddress) : undefined;
    if (preferredAddress === undefined || this.bytes[this.p] !== 0x7d || this.p + 1 !== end) return undefined;
    this.net.address = address;
    this.net.instanceAddress = instanceAddress!;
    this.net.preferredAddress = preferredAddress;
    return this.net;
  }

  /** skips `text` if it comes next */
  private skip(text: Buffer): boolean {
    const b = this.bytes;
    for (let i = 0; i < text.length; i++) if (b[this.p + i] !== text[i]) return false;
    this.p += text.length;
    return true;
  }

  /** the rest of a string whose opening quote was skipped, if it has no escapes */
  private string(repeated?: RepeatedText): string | undefined {
    const b = this.bytes;
    const start = this.p;
    for (let p = start; p < b.length; p++) {
      if (b[p] === 0x5c || b[p] === END_OF_FIELD) return undefined;
      if (b[p] === 0x22) {
        this.p = p + 1;
        return repeated ? repeated.of(b, start, p) : b.toString('utf8', start, p);
      }
    }
    return undefined;
  }

  /** digits, as JSON.stringify writes an integer of up to 15 of them */
  private uint(): number | undefined {
    const b = this.bytes;
    const start = this.p;
    let n = 0;
    while (b[this.p]! >= 0x30 && b[this.p]! <= 0x39) n = n * 10 + b[this.p++]! - 0x30;
    const digits = this.p - start;
    return digits === 0 || digits > 15 || (b[start] === 0x30 && digits > 1) ? undefined : n;
  }
}

/** One page's bytes, written into a buffer that grows as needed. */
class PageBytes {
  protected buf: Buffer;
  protected pos = 0;

  constructor(sizeHint: number) {
    this.buf = Buffer.allocUnsafe(Math.max(1024, sizeHint));
  }

  protected reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(bigger, 0, 0, this.pos);
    this.buf = bigger;
  }

  /** bytes known to need no escaping: keys, punctuation, enum names (copied from bytes: twice as fast as from a string) */
  raw(bytes: Buffer): this {
    this.reserve(bytes.length);
    for (let i = 0; i < bytes.length; i++) this.buf[this.pos++] = bytes[i]!;
    return this;
  }

  /** bytes[start, end) as they are */
  protected copy(bytes: Buffer, start: number, end: number): void {
    this.reserve(end - start);
    if (end - start > SHORT_COPY) {
      this.pos += bytes.copy(this.buf, this.pos, start, end);
      return;
    }
    for (let p = start; p < end; p++) this.buf[this.pos++] = bytes[p]!;
  }

  bytes(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

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

/** an enum given by name (the internal shape) or by number, as a number */
function enumNumber(e: protobuf.Enum, v: string | number, what: string): number {
  if (typeof v === 'number') return v;
  const n = e.values[v];
  if (n === undefined) throw new Error(`cannot encode ${what}: unknown ${e.name} value ${v}`);
  return n;
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

/**
 * The protobuf wire format as protobufjs's Writer writes it (same bytes), straight into the
 * page's buffer: a nested message's length is written in front of it once it is complete,
 * moving it when the length takes more or fewer bytes than were kept for it.
 */
class ProtobufPage extends PageBytes {
  private readonly open: number[] = [];

  varint(v: number): this {
    this.reserve(5);
    v >>>= 0;
    while (v > 127) {
      this.buf[this.pos++] = (v & 127) | 128;
      v >>>= 7;
    }
    this.buf[this.pos++] = v;
    return this;
  }

  /** an unsigned 64-bit varint from its 32-bit halves */
  varint64(low: number, high: number): void {
    this.reserve(10);
    let lo = low >>> 0;
    let hi = high >>> 0;
    while (hi) {
      this.buf[this.pos++] = (lo & 127) | 128;
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>>= 7;
    }
    this.varint(lo);
  }

  /** a negative int32 is written as its 64-bit two's complement, as protobufjs does */
  int32Field(tag: number, v: number): void {
    if (!v) return;
    this.varint(tag);
    if (v > 0) this.varint(v);
    else this.varint64(v | 0, -1);
  }

  uint32Field(tag: number, v: number | undefined): void {
    if (v) this.varint(tag).varint(v);
  }

  stringField(tag: number, v: string | undefined): void {
    if (!v) return;
    // protobufjs's own UTF-8 (it differs from Buffer's on a lone surrogate)
    const n = protobuf.util.utf8.length(v);
    this.varint(tag).varint(n);
    this.reserve(n);
    this.pos += protobuf.util.utf8.write(v, this.buf, this.pos);
  }

  /** a string column as a string field: its UTF-8 bytes as stored */
  columnField(tag: number, row: PackedRowReader, column: number): void {
    const start = row.start(column);
    const end = row.end(column);
    if (start === end) return;
    this.varint(tag).varint(end - start);
    this.copy(row.bytes, start, end);
  }

  /** opens a nested message; `lengthBytes` kept for its length: 2 for a whole ActualLRP (128 B to 16 kB) */
  fork(tag: number, lengthBytes = 1): void {
    this.varint(tag);
    this.reserve(lengthBytes);
    this.open.push(this.pos, lengthBytes);
    this.pos += lengthBytes;
  }

  ldelim(): void {
    const kept = this.open.pop()!;
    const at = this.open.pop()!;
    const length = this.pos - at - kept;
    const needed = length < 2 ** 7 ? 1 : length < 2 ** 14 ? 2 : length < 2 ** 21 ? 3 : length < 2 ** 28 ? 4 : 5;
    if (needed !== kept) {
      this.reserve(needed - kept);
      this.buf.copyWithin(at + needed, at + kept, this.pos);
    }
    const end = this.pos + needed - kept;
    this.pos = at;
    this.varint(length);
    this.pos = end;
  }
}

function writeActualLrp(w: ProtobufPage, r: PackedRowReader, netInfo: NetInfoReader): void {
  const t = tags();
  const a = t.actual;
  w.fork(a.actualLrpKey!);
  w.columnField(t.key.processGuid!, r, C.process_guid);
  w.int32Field(t.key.index!, intOf(r, C.idx));
  w.columnField(t.key.domain!, r, C.domain);
  w.ldelim();
  w.fork(a.actualLrpInstanceKey!);
  w.columnField(t.instanceKey.instanceGuid!, r, C.instance_guid);
  w.columnField(t.instanceKey.cellId!, r, C.cell_id);
  w.ldelim();
  const net = netInfo.read(r);
  w.fork(a.actualLrpNetInfo!);
  w.stringField(t.netInfo.address!, net.address);
  for (const p of net.ports ?? []) {
    w.fork(t.netInfo.ports!);
    w.uint32Field(t.port.containerPort!, p.containerPort);
    w.uint32Field(t.port.hostPort!, p.hostPort);
    w.uint32Field(t.port.containerTlsProxyPort!, p.containerTlsProxyPort);
    w.uint32Field(t.port.hostTlsProxyPort!, p.hostTlsProxyPort);
    w.ldelim();
  }
  w.stringField(t.netInfo.instanceAddress!, net.instanceAddress);
  if (net.preferredAddress != null) w.int32Field(t.netInfo.preferredAddress!, enumNumber(t.preferredAddress, net.preferredAddress, 'preferred_address'));
  w.ldelim();
  w.int32Field(a.crashCount!, intOf(r, C.crash_count));
  w.columnField(a.crashReason!, r, C.crash_reason);
  w.columnField(a.state!, r, C.state);
  w.columnField(a.placementError!, r, C.placement_error);
  const since = nanosBits(intOf(r, C.since));
  w.varint(a.since!).varint64(since.low, since.high);
  w.fork(a.modificationTag!);
  w.columnField(t.tag.epoch!, r, C.mod_epoch);
  w.uint32Field(t.tag.index!, intOf(r, C.mod_index));
  w.ldelim();
  w.int32Field(a.presence!, enumNumber(t.presence, netInfo.presenceOf(r), 'presence'));
  if (isOne(r, C.stop_requested)) w.varint(a.stopRequested!).varint(1);
  w.columnField(a.targetCellId!, r, C.target_cell_id);
}

function encodeProtobufPage(shape: ListShape, page: PackedActualLrps): Buffer {
  const t = tags();
  const w = new ProtobufPage(page.bytes.length);
  const r = new PackedRowReader(page.bytes);
  const netInfo = new NetInfoReader();
  while (r.next()) {
    if (shape === 'actuals') {
      w.fork(t.actualsResponse.actualLrps!, 2);
    } else {
      w.fork(t.groupsResponse.actualLrpGroups!, 2);
      w.fork(isEvacuating(r) ? t.group.evacuating! : t.group.instance!, 2);
    }
    writeActualLrp(w, r, netInfo);
    if (shape === 'groups') w.ldelim();
    w.ldelim();
  }
  return w.bytes();
}

const EVACUATING = Buffer.from('EVACUATING');

function isEvacuating(r: PackedRowReader): boolean {
  const start = r.start(C.presence);
  if (r.end(C.presence) - start !== EVACUATING.length) return false;
  for (let i = 0; i < EVACUATING.length; i++) if (r.bytes[start + i] !== EVACUATING[i]) return false;
  return true;
}

/** The response's only field is the repeated list: its encoding is the pages' concatenation. */
async function* protobufChunks(shape: ListShape, first: IteratorResult<PackedActualLrps>, pages: Pages): AsyncGenerator<Buffer> {
  for (let page = first; !page.done; page = await pages.next()) yield encodeProtobufPage(shape, page.value);
}

// ----------------------------------------------------------------------------- JSON

/**
 * JSON text written byte by byte into one buffer per page. Building it as JS strings (or as
 * objects for JSON.stringify) cost 3-4x more, mostly in garbage collection.
 */
class JsonPage extends PageBytes {
  /** a string value; printable ASCII is copied, anything else goes through JSON.stringify */
  str(value: string): this {
    this.reserve(value.length + 2);
    const start = this.pos;
    this.buf[this.pos++] = 0x22;
    for (let i = 0; i < value.length; i++) {
      const c = value.charCodeAt(i);
      if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) {
        this.pos = start;
        return this.quoted(value);
      }
      this.buf[this.pos++] = c;
    }
    this.buf[this.pos++] = 0x22;
    return this;
  }

  private quoted(value: string): this {
    const quoted = JSON.stringify(value);
    this.reserve(Buffer.byteLength(quoted));
    this.pos += this.buf.write(quoted, this.pos);
    return this;
  }

  /**
   * A string column as a string value: its UTF-8 bytes as stored, quoted, unless one needs
   * escaping (JSON.stringify leaves every character from U+007F up as it is).
   */
  column(row: PackedRowReader, column: number): this {
    const bytes = row.bytes;
    const start = row.start(column);
    const end = row.end(column);
    this.reserve(end - start + 2);
    const at = this.pos;
    this.buf[this.pos++] = 0x22;
    for (let p = start; p < end; p++) {
      const c = bytes[p]!;
      if (c < 0x20 || c === 0x22 || c === 0x5c) {
        this.pos = at;
        return this.quoted(row.text(column));
      }
      this.buf[this.pos++] = c;
    }
    this.buf[this.pos++] = 0x22;
    return this;
  }

  /** an integer column as String(Number(text)) writes it */
  intColumn(row: PackedRowReader, column: number): this {
    if (plainInt(row, column) === undefined) return this.num(Number(row.text(column)));
    this.copy(row.bytes, row.start(column), row.end(column));
    return this;
  }

  num(value: number): this {
    const text = String(value);
    this.reserve(text.length);
    for (let i = 0; i < text.length; i++) this.buf[this.pos++] = text.charCodeAt(i);
    return this;
  }
}

/** JSON has enum names; absent is the zero value, a number without a name stays a number */
function enumJson(e: protobuf.Enum, v: string | number | undefined, what: string): Buffer {
  const n = v == null ? 0 : enumNumber(e, v, what);
  let names = jsonNames.get(e);
  if (!names) jsonNames.set(e, (names = new Map()));
  let json = names.get(n);
  if (json === undefined) {
    const name = e.valuesById[n];
    names.set(n, (json = ascii(name === undefined ? String(n) : JSON.stringify(name))));
  }
  return json;
}

/** each enum's values as JSON, by number, once written */
const jsonNames = new Map<protobuf.Enum, Map<number, Buffer>>();

/** The fixed parts of the JSON, as bytes. */
const K = {
  processGuid: ascii('{"process_guid":'),
  index: ascii(',"index":'),
  domain: ascii(',"domain":'),
  instanceGuid: ascii(',"instance_guid":'),
  cellId: ascii(',"cell_id":'),
  address: ascii(',"address":'),
  ports: ascii(',"ports":['),
  firstPort: ascii('{"container_port":'),
  nextPort: ascii(',{"container_port":'),
  hostPort: ascii(',"host_port":'),
  containerTlsProxyPort: ascii(',"container_tls_proxy_port":'),
  hostTlsProxyPort: ascii(',"host_tls_proxy_port":'),
  instanceAddress: ascii('],"instance_address":'),
  preferredAddress: ascii(',"preferred_address":'),
  crashCount: ascii(',"crash_count":'),
  crashReason: ascii(',"crash_reason":'),
  state: ascii(',"state":'),
  placementError: ascii(',"placement_error":'),
  since: ascii(',"since":'),
  epoch: ascii(',"modification_tag":{"epoch":'),
  presence: ascii(',"presence":'),
  stopRequested: ascii(',"stop_requested":'),
  targetCellId: ascii(',"target_cell_id":'),
  true: ascii('true'),
  false: ascii('false'),
  close: ascii('}'),
  comma: ascii(','),
  instance: ascii('{"instance":'),
  evacuating: ascii('{"evacuating":'),
  /** ms to ns in decimal */
  sixZeros: ascii('000000'),
};

/**
 * JSON has int64 as a number: the double nearest ms * 1e6 in nanoseconds, as the codec writes
 * it. For an integer ms of up to 15 digits, that double's shortest decimal form is the ms
 * digits and six zeros: the next shorter decimals are 1e6 apart, the doubles there under 2^17.
 */
function sinceJson(out: JsonPage, r: PackedRowReader): void {
  const zero = r.end(C.since) - r.start(C.since) === 1 && r.bytes[r.start(C.since)] === 0x30;
  if (!zero && plainInt(r, C.since) !== undefined) out.intColumn(r, C.since).raw(K.sixZeros);
  else out.num(Math.trunc(Number(r.text(C.since))) * 1e6);
}

function writeActualLrpJson(out: JsonPage, r: PackedRowReader, netInfo: NetInfoReader): void {
  const t = tags();
  const net = netInfo.read(r);
  out.raw(K.processGuid).column(r, C.process_guid).raw(K.index).intColumn(r, C.idx).raw(K.domain).column(r, C.domain);
  out.raw(K.instanceGuid).column(r, C.instance_guid).raw(K.cellId).column(r, C.cell_id);
  out.raw(K.address).str(net.address ?? '').raw(K.ports);
  let first = true;
  for (const p of net.ports ?? []) {
    out.raw(first ? K.firstPort : K.nextPort).num(p.containerPort ?? 0);
    out.raw(K.hostPort).num(p.hostPort ?? 0);
    out.raw(K.containerTlsProxyPort).num(p.containerTlsProxyPort ?? 0);
    out.raw(K.hostTlsProxyPort).num(p.hostTlsProxyPort ?? 0).raw(K.close);
    first = false;
  }
  out.raw(K.instanceAddress).str(net.instanceAddress ?? '');
  out.raw(K.preferredAddress).raw(enumJson(t.preferredAddress, net.preferredAddress, 'preferred_address'));
  out.raw(K.crashCount).intColumn(r, C.crash_count).raw(K.crashReason).column(r, C.crash_reason);
  out.raw(K.state).column(r, C.state).raw(K.placementError).column(r, C.placement_error);
  out.raw(K.since);
  sinceJson(out, r);
  out.raw(K.epoch).column(r, C.mod_epoch).raw(K.index).intColumn(r, C.mod_index).raw(K.close);
  out.raw(K.presence).raw(enumJson(t.presence, netInfo.presenceOf(r), 'presence'));
  out.raw(K.stopRequested).raw(isOne(r, C.stop_requested) ? K.true : K.false);
  out.raw(K.targetCellId).column(r, C.target_cell_id).raw(K.close);
}

/** a row's JSON is about twice its packed bytes; a page's buffer grows if it needs more */
const JSON_SIZE_PER_PACKED_BYTE = 2.2;

function encodeJsonPage(shape: ListShape, page: PackedActualLrps, first: boolean): Buffer {
  const out = new JsonPage(Math.ceil(page.bytes.length * JSON_SIZE_PER_PACKED_BYTE));
  const r = new PackedRowReader(page.bytes);
  const netInfo = new NetInfoReader();
  while (r.next()) {
    if (!first) out.raw(K.comma);
    first = false;
    if (shape === 'groups') out.raw(isEvacuating(r) ? K.evacuating : K.instance);
    writeActualLrpJson(out, r, netInfo);
    if (shape === 'groups') out.raw(K.close);
  }
  return out.bytes();
}

async function* jsonChunks(shape: ListShape, first: IteratorResult<PackedActualLrps>, pages: Pages): AsyncGenerator<Buffer> {
  yield Buffer.from(shape === 'actuals' ? '{"actual_lrps":[' : '{"actual_lrp_groups":[');
  for (let page = first; !page.done; page = await pages.next()) yield encodeJsonPage(shape, page.value, page === first);
  yield Buffer.from(']}');
}
