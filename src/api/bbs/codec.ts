// Encodes and decodes BBS messages as protobuf or JSON, driven by proto/bbs.proto.
//
// Three representations meet here:
//   internal: camelCase objects as in src/model/lrp.ts (enums as names, `since` in unix
//             ms, routes as parsed JSON, absent messages left out);
//   wire:     what protobufjs encodes and decodes (enum numbers, int64 `since` in ns,
//             routes as raw JSON bytes inside the ProtoRoutes wrapper);
//   JSON:     BBS's JSON (snake_case, enum names, ActualLRP keys flattened).
// Every decode ends in wireToInternal (JSON is first checked and turned into a wire
// object), so both encodings yield the same internal shape by construction. Protobuf
// encodes go through internalToWire; JSON encodes go straight from internal to JSON,
// scalar by scalar through the same wire conversion.

import protobuf from 'protobufjs';
import { packagePath } from '../../package-root.js';
import { BbsCodecError } from './errors.js';

type Obj = Record<string, unknown>;

export const PROTOBUF_CONTENT_TYPE = 'application/x-protobuf';
export const JSON_CONTENT_TYPE = 'application/json';

let root: protobuf.Root | undefined;

/** The loaded schema (loaded once, on first use). */
export function bbsProtoRoot(): protobuf.Root {
  if (!root) {
    root = protobuf.loadSync(packagePath('proto', 'bbs.proto'));
    root.resolveAll(); // so every field has its resolvedType and typeDefault
  }
  return root;
}

function messageType(typeName: string): protobuf.Type {
  return bbsProtoRoot().lookupType(typeName);
}

export function isProtobufContentType(contentType: string | undefined): boolean {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase() === PROTOBUF_CONTENT_TYPE;
}

// ------------------------------------------------------------------------- public API

/** An encoded message. ArrayBuffer-backed, so it can go straight into fetch() too. */
export interface Encoded {
  body: Buffer<ArrayBuffer>;
  contentType: string;
}

/** Decodes a request body (protobuf if so labelled, else JSON) into the internal shape. */
export function decodeRequest<T = Obj>(typeName: string, body: Buffer, contentType: string | undefined): T {
  const type = messageType(typeName);
  let wire: Obj;
  if (isProtobufContentType(contentType)) {
    try {
      wire = type.decode(body) as unknown as Obj;
    } catch (e) {
      throw new BbsCodecError('InvalidProtobufMessage', `invalid protobuf ${type.name}: ${(e as Error).message}`);
    }
  } else {
    const text = body.toString('utf8');
    let json: unknown;
    try {
      // an empty body is an empty message, as it is in protobuf
      json = text.trim() === '' ? {} : JSON.parse(text);
    } catch (e) {
      throw new BbsCodecError('InvalidJSON', `invalid JSON body: ${(e as Error).message}`);
    }
    if (json !== null && !isPlainObject(json)) {
      throw new BbsCodecError('InvalidRequest', `the ${type.name} body must be a JSON object, got ${jsonKind(json)}`);
    }
    wire = jsonToWire(type, json ?? {}, '');
  }
  return wireToInternal(type, wire) as T;
}

/** Encodes a response in the encoding the request used (protobuf or JSON). */
export function encodeResponse(
  typeName: string,
  obj: object,
  contentType: string | undefined,
): Encoded {
  const type = messageType(typeName);
  if (isProtobufContentType(contentType)) {
    return { body: encodeWire(type, internalToWire(type, obj as Obj)), contentType: PROTOBUF_CONTENT_TYPE };
  }
  return { body: Buffer.from(JSON.stringify(internalToJson(type, obj as Obj))), contentType: JSON_CONTENT_TYPE };
}

/** decodeRequest under a neutral name, for clients decoding responses (the agent). */
export function decodeMessage<T = Obj>(typeName: string, body: Buffer, contentType: string | undefined): T {
  return decodeRequest<T>(typeName, body, contentType);
}

/** encodeResponse under a neutral name, for clients encoding requests (the agent). */
export function encodeMessage(
  typeName: string,
  obj: object,
  contentType: string | undefined,
): Encoded {
  return encodeResponse(typeName, obj, contentType);
}

/** An event for SSE `data:`: base64 of its protobuf encoding, as BBS sends it. */
export function encodeEvent(typeName: string, obj: object): string {
  const type = messageType(typeName);
  return encodeWire(type, internalToWire(type, obj as Obj)).toString('base64');
}

/** An event as BBS-style JSON text (Drover's `?format=json`). */
export function encodeEventJson(typeName: string, obj: object): string {
  return JSON.stringify(internalToJson(messageType(typeName), obj as Obj));
}

function encodeWire(type: protobuf.Type, wire: Obj): Buffer<ArrayBuffer> {
  const bytes = type.encode(wire).finish();
  // a view, not a copy (list responses can be large); protobufjs writes into an ArrayBuffer
  return Buffer.from(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength);
}

// -------------------------------------------------------------- schema special cases

// BBS embeds these messages (gogoproto `embed`): in JSON their fields sit directly on the
// parent object. BBS never leaves them out, so neither do we (absent = all zero values).
const JSON_EMBEDDED = new Set([
  'ActualLRP.actualLrpKey',
  'ActualLRP.actualLrpInstanceKey',
  'ActualLRP.actualLrpNetInfo',
  'ActualLRPInfo.actualLrpNetInfo',
  'ActualLRPInstanceChangedEvent.actualLrpKey',
  'ActualLRPInstanceChangedEvent.actualLrpInstanceKey',
]);
// Embedded in JSON and also flat in the internal model (DesiredLrpSchedulingInfo is flat).
const FLAT_EMBEDDED = new Set(['DesiredLRPSchedulingInfo.desiredLrpKey', 'DesiredLRPSchedulingInfo.desiredLrpResource']);
// Wrapper messages holding a single map: invisible in JSON and internally (BBS's
// customtype `Routes` is the map itself), but a message on the wire, so an absent
// wrapper (e.g. "don't change the routes" in an update) stays distinguishable.
const TRANSPARENT_WRAPPERS = new Set(['ProtoRoutes']);

type Embed = 'json' | 'flat' | undefined;

// Asked for every field of every record: computed once per field (the schema never changes).
const embedKinds = new WeakMap<protobuf.Field, Embed | null>();

function embedKind(f: protobuf.Field): Embed {
  let kind = embedKinds.get(f);
  if (kind === undefined) {
    const key = `${f.parent?.name}.${f.name}`;
    kind = JSON_EMBEDDED.has(key) ? 'json' : FLAT_EMBEDDED.has(key) ? 'flat' : null;
    embedKinds.set(f, kind);
  }
  return kind ?? undefined;
}

function wrappedField(f: protobuf.Field): protobuf.Field | undefined {
  const t = f.resolvedType;
  return t instanceof protobuf.Type && TRANSPARENT_WRAPPERS.has(t.name) ? t.fieldsArray[0] : undefined;
}

/** map<string, bytes> values are raw JSON documents (route definitions). */
function isJsonBytes(f: protobuf.Field): boolean {
  return f.map && f.type === 'bytes';
}

/** `since` is unix nanoseconds on the wire and in BBS JSON, milliseconds internally. */
function isNanosTimestamp(f: protobuf.Field): boolean {
  return f.name === 'since' && f.long;
}

/**
 * The value an absent field reads as: proto3 zero values for scalars, [] and {} for
 * repeated and map fields; none (null) for messages and `optional` fields, which stay absent.
 */
function defaultOf(f: protobuf.Field): unknown {
  if (f.repeated) return [];
  if (f.map) return {};
  return f.hasPresence ? null : f.typeDefault;
}

function subType(f: protobuf.Field): protobuf.Type {
  return f.resolvedType as protobuf.Type;
}

// ------------------------------------------------------------------ wire <-> internal

function wireToInternal(type: protobuf.Type, wire: Obj): Obj {
  const out: Obj = {};
  for (const f of type.fieldsArray) {
    const embed = embedKind(f);
    if (embed) {
      const sub = wireToInternal(subType(f), (wire[f.name] as Obj | null) ?? {});
      if (embed === 'flat') Object.assign(out, sub);
      else out[f.name] = sub;
      continue;
    }
    const w = wire[f.name];
    if (w == null && !f.repeated && !f.map && !f.bytes) {
      const absent = absentValue(f);
      if (absent !== null) out[f.name] = absent;
      continue;
    }
    const v = w ?? defaultOf(f);
    if (v == null) continue;
    const inner = wrappedField(f);
    if (inner) out[f.name] = mapToInternal(inner, ((v as Obj)[inner.name] as Obj | null) ?? {});
    else if (f.map) out[f.name] = mapToInternal(f, v as Obj);
    else if (f.repeated) out[f.name] = (v as unknown[]).map((x) => valueToInternal(f, x));
    else out[f.name] = valueToInternal(f, v);
  }
  return out;
}

// What an absent single field reads as internally (null: it stays absent). Asked for most
// fields of every decoded request, so computed once per field; only immutable values qualify
// (the callers leave out repeated, map and bytes fields, which get fresh objects).
const absentValues = new WeakMap<protobuf.Field, unknown>();

function absentValue(f: protobuf.Field): unknown {
  if (absentValues.has(f)) return absentValues.get(f);
  const zero = defaultOf(f);
  const value = zero == null ? null : valueToInternal(f, zero);
  absentValues.set(f, value);
  return value;
}

function mapToInternal(f: protobuf.Field, m: Obj): Obj {
  const out: Obj = {};
  for (const [k, x] of Object.entries(m)) {
    out[k] = isJsonBytes(f) ? parseJsonBytes(f, k, x as Uint8Array) : valueToInternal(f, x);
  }
  return out;
}

function valueToInternal(f: protobuf.Field, x: unknown): unknown {
  const t = f.resolvedType;
  if (t instanceof protobuf.Type) return wireToInternal(t, x as Obj);
  if (t instanceof protobuf.Enum) {
    const name = t.valuesById[x as number];
    if (name === undefined) throw new BbsCodecError('InvalidRequest', `${f.parent?.name}.${f.protoName}: unknown ${t.name} value ${String(x)}`);
    return name;
  }
  if (f.long) {
    const n = longToNumber(x);
    // rounded: at today's magnitudes a JS number can't hold every nanosecond exactly
    return isNanosTimestamp(f) ? Math.round(n / 1e6) : n;
  }
  if (f.bytes) return Buffer.from(x as Uint8Array);
  return x;
}

function parseJsonBytes(f: protobuf.Field, key: string, bytes: Uint8Array): unknown {
  const text = Buffer.from(bytes).toString('utf8');
  if (text === '') return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new BbsCodecError('InvalidRequest', `${f.parent?.name}.${f.protoName}[${JSON.stringify(key)}] is not valid JSON`);
  }
}

function longToNumber(x: unknown): number {
  // protobufjs gives a Long (whose toString is exact decimal), JSON gives a number
  return typeof x === 'number' ? x : Number(String(x));
}

function internalToWire(type: protobuf.Type, obj: Obj): Obj {
  const out: Obj = {};
  for (const f of type.fieldsArray) {
    const embed = embedKind(f);
    if (embed) {
      out[f.name] = internalToWire(subType(f), embed === 'flat' ? obj : ((obj[f.name] as Obj | undefined) ?? {}));
      continue;
    }
    const v = obj[f.name];
    if (v == null) continue;
    const inner = wrappedField(f);
    if (inner) out[f.name] = { [inner.name]: mapToWire(inner, v as Obj) };
    else if (f.map) out[f.name] = mapToWire(f, v as Obj);
    else if (f.repeated) out[f.name] = (v as unknown[]).map((x) => valueToWire(f, x));
    else out[f.name] = valueToWire(f, v);
  }
  return out;
}

function mapToWire(f: protobuf.Field, m: Obj): Obj {
  const out: Obj = {};
  for (const [k, x] of Object.entries(m)) {
    out[k] = isJsonBytes(f) ? Buffer.from(JSON.stringify(x) ?? 'null') : valueToWire(f, x);
  }
  return out;
}

function valueToWire(f: protobuf.Field, x: unknown): unknown {
  const t = f.resolvedType;
  if (t instanceof protobuf.Type) return internalToWire(t, x as Obj);
  if (t instanceof protobuf.Enum) {
    if (typeof x === 'number') return x;
    const n = t.values[x as string];
    if (n === undefined) throw new Error(`cannot encode ${f.parent?.name}.${f.name}: unknown ${t.name} value ${String(x)}`);
    return n;
  }
  // exact: ms * 1e6 exceeds 2^53, so multiply as a bigint; protobufjs takes decimal strings
  if (isNanosTimestamp(f)) return (BigInt(Math.trunc(x as number)) * 1_000_000n).toString();
  return x;
}

// ------------------------------------------------------ internal -> JSON, JSON -> wire

/**
 * internal -> JSON in one walk, for responses and events: no wire tree in between (a list
 * of 100k records spent most of its encoding time building and collecting those trees).
 */
function internalToJson(type: protobuf.Type, obj: Obj): Obj {
  const out: Obj = {};
  for (const f of type.fieldsArray) {
    const embed = embedKind(f);
    if (embed) {
      Object.assign(out, internalToJson(subType(f), embed === 'flat' ? obj : ((obj[f.name] as Obj | undefined) ?? {})));
      continue;
    }
    const v = obj[f.name];
    if (v == null) {
      // zero values are emitted so clients see complete records (BBS does the same)
      const d = defaultOf(f);
      if (d != null) out[f.protoName] = f.repeated || f.map ? d : valueToJson(f, d);
      continue;
    }
    const inner = wrappedField(f);
    if (inner) out[f.protoName] = mapInternalToJson(inner, v as Obj);
    else if (f.map) out[f.protoName] = mapInternalToJson(f, v as Obj);
    else if (f.repeated) out[f.protoName] = (v as unknown[]).map((x) => valueInternalToJson(f, x));
    else out[f.protoName] = valueInternalToJson(f, v);
  }
  return out;
}

function mapInternalToJson(f: protobuf.Field, m: Obj): Obj {
  const out: Obj = {};
  for (const [k, x] of Object.entries(m)) {
    // a JSON document stays one (as its bytes would parse back), absent reads as null
    out[k] = isJsonBytes(f) ? (x === undefined ? null : x) : valueInternalToJson(f, x);
  }
  return out;
}

function valueInternalToJson(f: protobuf.Field, x: unknown): unknown {
  const t = f.resolvedType;
  return t instanceof protobuf.Type ? internalToJson(t, x as Obj) : valueToJson(f, valueToWire(f, x));
}

function valueToJson(f: protobuf.Field, x: unknown): unknown {
  const t = f.resolvedType;
  if (t instanceof protobuf.Enum) return t.valuesById[x as number] ?? x;
  if (f.long) return longToNumber(x); // BBS JSON has int64 as numbers
  if (f.bytes) return Buffer.from(x as Uint8Array).toString('base64');
  return x;
}

/** Checks a JSON value against the schema and turns it into a wire object. */
function jsonToWire(type: protobuf.Type, json: Obj, path: string): Obj {
  const out: Obj = {};
  for (const f of type.fieldsArray) {
    if (embedKind(f)) {
      out[f.name] = jsonToWire(subType(f), json, path); // its fields are on this object
      continue;
    }
    const v = json[f.protoName]; // keys are snake_case; others are ignored
    if (v == null) continue; // null is absent, as for Go's encoding/json
    // built only for present fields: most of a DesiredLRP's ~40 fields are absent in a desire
    const p = path ? `${path}.${f.protoName}` : f.protoName;
    const inner = wrappedField(f);
    if (inner) out[f.name] = { [inner.name]: mapFromJson(inner, v, p) };
    else if (f.map) out[f.name] = mapFromJson(f, v, p);
    else if (f.repeated) {
      if (!Array.isArray(v)) throw invalidField(p, 'an array', v);
      out[f.name] = v.map((x, i) => valueFromJson(f, x, `${p}[${i}]`));
    } else out[f.name] = valueFromJson(f, v, p);
  }
  return out;
}

function mapFromJson(f: protobuf.Field, v: unknown, path: string): Obj {
  if (!isPlainObject(v)) throw invalidField(path, 'an object', v);
  const out: Obj = {};
  for (const [k, x] of Object.entries(v)) {
    out[k] = isJsonBytes(f) ? Buffer.from(JSON.stringify(x)) : valueFromJson(f, x, `${path}[${JSON.stringify(k)}]`);
  }
  return out;
}

const INT_RANGES: Record<string, [number, number]> = {
  int32: [-(2 ** 31), 2 ** 31 - 1],
  sint32: [-(2 ** 31), 2 ** 31 - 1],
  sfixed32: [-(2 ** 31), 2 ** 31 - 1],
  uint32: [0, 2 ** 32 - 1],
  fixed32: [0, 2 ** 32 - 1],
  int64: [-(2 ** 63), 2 ** 63],
  sint64: [-(2 ** 63), 2 ** 63],
  sfixed64: [-(2 ** 63), 2 ** 63],
  uint64: [0, 2 ** 64],
  fixed64: [0, 2 ** 64],
};

// Strict on purpose: protobufjs's fromObject would quietly turn "three" into 0.
function valueFromJson(f: protobuf.Field, v: unknown, path: string): unknown {
  const t = f.resolvedType;
  if (t instanceof protobuf.Type) {
    if (!isPlainObject(v)) throw invalidField(path, 'an object', v);
    return jsonToWire(t, v, path);
  }
  if (t instanceof protobuf.Enum) {
    if (typeof v === 'string' && v in t.values) return t.values[v];
    if (typeof v === 'number' && v in t.valuesById) return v;
    throw invalidField(path, `one of ${Object.keys(t.values).join(', ')}`, v);
  }
  const range = INT_RANGES[f.type];
  if (range) {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < range[0] || v > range[1]) {
      throw invalidField(path, `an integer (${f.type})`, v);
    }
    return v;
  }
  switch (f.type) {
    case 'string':
      if (typeof v !== 'string') throw invalidField(path, 'a string', v);
      return v;
    case 'bool':
      if (typeof v !== 'boolean') throw invalidField(path, 'a boolean', v);
      return v;
    case 'double':
    case 'float':
      if (typeof v !== 'number') throw invalidField(path, 'a number', v);
      return v;
    case 'bytes':
      if (typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v)) throw invalidField(path, 'base64 text', v);
      return Buffer.from(v, 'base64');
  }
  throw new Error(`unsupported field type ${f.type} at ${path}`);
}

function invalidField(path: string, expected: string, got: unknown): BbsCodecError {
  const shown = typeof got === 'string' || typeof got === 'number' ? ` ${JSON.stringify(got)}` : '';
  return new BbsCodecError('InvalidRequest', `invalid field "${path}": expected ${expected}, got ${jsonKind(got)}${shown}`);
}

function isPlainObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function jsonKind(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
}
