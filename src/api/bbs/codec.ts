// Encodes and decodes BBS messages as protobuf or JSON, driven by proto/bbs.proto.
//
// Three representations meet here:
//   internal: camelCase objects as in src/model/lrp.ts (enums as names, `since` in unix
//             ms, routes as parsed JSON, absent messages left out);
//   wire:     what protobufjs encodes and decodes (enum numbers, int64 `since` in ns,
//             routes as raw JSON bytes inside the ProtoRoutes wrapper);
//   JSON:     BBS's JSON (snake_case, enum names, ActualLRP keys flattened).
// Protobuf decodes go through wireToInternal; JSON decodes go straight from JSON to
// internal, each value through the same conversions as a wire value, so both encodings
// yield the same internal shape. Protobuf encodes go through internalToWire; JSON encodes
// go straight from internal to JSON, scalar by scalar through the same wire conversion.

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

export function isProtobufContentType(contentType: string | undefined): boolean {
  // the two labels clients send, answered without parsing
  if (contentType === JSON_CONTENT_TYPE) return false;
  if (contentType === PROTOBUF_CONTENT_TYPE) return true;
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
  const plan = messagePlan(typeName);
  const type = plan.type;
  if (isProtobufContentType(contentType)) {
    let wire: Obj;
    try {
      wire = type.decode(body) as unknown as Obj;
    } catch (e) {
      throw new BbsCodecError('InvalidProtobufMessage', `invalid protobuf ${type.name}: ${(e as Error).message}`);
    }
    return wireToInternal(plan, wire) as T;
  }
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
  return jsonToInternal(plan, json ?? {}, '') as T;
}

/** Encodes a response in the encoding the request used (protobuf or JSON). */
export function encodeResponse(
  typeName: string,
  obj: object,
  contentType: string | undefined,
): Encoded {
  const plan = messagePlan(typeName);
  if (isProtobufContentType(contentType)) {
    return { body: encodeWire(plan, obj as Obj), contentType: PROTOBUF_CONTENT_TYPE };
  }
  return { body: Buffer.from(JSON.stringify(internalToJson(plan, obj as Obj))), contentType: JSON_CONTENT_TYPE };
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
  return encodeWire(messagePlan(typeName), obj as Obj).toString('base64');
}

/** An event as BBS-style JSON text (Drover's `?format=json`). */
export function encodeEventJson(typeName: string, obj: object): string {
  return JSON.stringify(internalToJson(messagePlan(typeName), obj as Obj));
}

function encodeWire(plan: MessagePlan, obj: Obj): Buffer<ArrayBuffer> {
  const bytes = plan.type.encode(internalToWire(plan, obj)).finish();
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

// ------------------------------------------------------------------ per-type plans

// Every request walks every field of its message types: what each field needs is worked
// out once, on first use, into plain objects (protobufjs fields answer some of it through
// getters, and the special cases above are keyed by name).

interface MessagePlan {
  type: protobuf.Type;
  fields: FieldPlan[];
  /** the JSON walks, compiled on first use */
  fromJson?: (json: Obj, path: string) => Obj;
  toJson?: (obj: Obj) => Obj;
}

interface FieldPlan {
  field: protobuf.Field;
  /** camelCase: the key internally and on the wire */
  name: string;
  /** snake_case: the key in BBS JSON */
  jsonName: string;
  embed: 'json' | 'flat' | undefined;
  repeated: boolean;
  map: boolean;
  long: boolean;
  bytes: boolean;
  /** `since`: unix nanoseconds on the wire and in BBS JSON, milliseconds internally */
  nanos: boolean;
  /** map<string, bytes> values are raw JSON documents (route definitions) */
  jsonBytes: boolean;
  /** the field's message type (embedded and wrapper fields included) */
  message: MessagePlan | undefined;
  enumType: protobuf.Enum | undefined;
  /** the map field inside a transparent wrapper */
  wrapped: FieldPlan | undefined;
  intRange: [number, number] | undefined;
  /** what an absent single field reads as internally (undefined: it stays absent) */
  absent: unknown;
  /** what internal -> JSON writes for an absent field, as BBS does (undefined: nothing) */
  jsonZero: unknown;
}

const plansByType = new Map<protobuf.Type, MessagePlan>();
const plansByName = new Map<string, MessagePlan>();

function messagePlan(typeName: string): MessagePlan {
  let plan = plansByName.get(typeName);
  if (!plan) {
    plan = planOf(bbsProtoRoot().lookupType(typeName));
    plansByName.set(typeName, plan);
  }
  return plan;
}

function planOf(type: protobuf.Type): MessagePlan {
  let plan = plansByType.get(type);
  if (!plan) {
    // registered before its fields are planned: message types can nest themselves (Action)
    plan = { type, fields: [] };
    plansByType.set(type, plan);
    plan.fields = type.fieldsArray.map(fieldPlan);
  }
  return plan;
}

function fieldPlan(f: protobuf.Field): FieldPlan {
  const t = f.resolvedType;
  const key = `${f.parent?.name}.${f.name}`;
  const message = t instanceof protobuf.Type ? planOf(t) : undefined;
  const plan: FieldPlan = {
    field: f,
    name: f.name,
    jsonName: f.protoName,
    embed: JSON_EMBEDDED.has(key) ? 'json' : FLAT_EMBEDDED.has(key) ? 'flat' : undefined,
    repeated: f.repeated,
    map: f.map,
    long: f.long,
    bytes: f.bytes,
    nanos: f.name === 'since' && f.long,
    jsonBytes: f.map && f.type === 'bytes',
    message,
    enumType: t instanceof protobuf.Enum ? t : undefined,
    wrapped: message && TRANSPARENT_WRAPPERS.has(message.type.name) ? message.fields[0] : undefined,
    intRange: INT_RANGES[f.type],
    absent: undefined,
    jsonZero: undefined,
  };
  // proto3 zero values for scalars, [] and {} for repeated and map fields; messages and
  // `optional` fields have none and stay absent
  const zero = f.repeated || f.map || f.hasPresence ? undefined : f.typeDefault;
  if (zero != null) plan.absent = valueToInternal(plan, zero);
  plan.jsonZero = f.repeated ? Object.freeze([]) : f.map ? Object.freeze({}) : zero == null ? undefined : valueToJson(plan, zero);
  return plan;
}

/** What an absent field reads as internally (undefined: it stays absent); mutable values are fresh. */
function absentValue(p: FieldPlan): unknown {
  if (p.repeated) return [];
  if (p.map) return {};
  return p.bytes && p.absent !== undefined ? Buffer.from(p.absent as Uint8Array) : p.absent;
}

// ------------------------------------------------------------------ wire <-> internal

function wireToInternal(plan: MessagePlan, wire: Obj): Obj {
  const out: Obj = {};
  for (const p of plan.fields) {
    if (p.embed) {
      const sub = wireToInternal(p.message!, (wire[p.name] as Obj | null) ?? {});
      if (p.embed === 'flat') Object.assign(out, sub);
      else out[p.name] = sub;
      continue;
    }
    const w = wire[p.name];
    if (w == null) {
      const absent = absentValue(p);
      if (absent !== undefined) out[p.name] = absent;
    } else if (p.wrapped) out[p.name] = mapToInternal(p.wrapped, ((w as Obj)[p.wrapped.name] as Obj | null) ?? {});
    else if (p.map) out[p.name] = mapToInternal(p, w as Obj);
    else if (p.repeated) out[p.name] = (w as unknown[]).map((x) => valueToInternal(p, x));
    else out[p.name] = valueToInternal(p, w);
  }
  return out;
}

function mapToInternal(p: FieldPlan, m: Obj): Obj {
  const out: Obj = {};
  for (const [k, x] of Object.entries(m)) {
    out[k] = p.jsonBytes ? parseJsonBytes(p, k, x as Uint8Array) : valueToInternal(p, x);
  }
  return out;
}

function valueToInternal(p: FieldPlan, x: unknown): unknown {
  if (p.message) return wireToInternal(p.message, x as Obj);
  if (p.enumType) return enumName(p, x);
  if (p.long) {
    const n = longToNumber(x);
    // rounded: at today's magnitudes a JS number can't hold every nanosecond exactly
    return p.nanos ? Math.round(n / 1e6) : n;
  }
  if (p.bytes) return Buffer.from(x as Uint8Array);
  return x;
}

function enumName(p: FieldPlan, x: unknown): string {
  const name = p.enumType!.valuesById[x as number];
  if (name === undefined) throw new BbsCodecError('InvalidRequest', `${p.field.parent?.name}.${p.jsonName}: unknown ${p.enumType!.name} value ${String(x)}`);
  return name;
}

function parseJsonBytes(p: FieldPlan, key: string, bytes: Uint8Array): unknown {
  const text = Buffer.from(bytes).toString('utf8');
  if (text === '') return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new BbsCodecError('InvalidRequest', `${p.field.parent?.name}.${p.jsonName}[${JSON.stringify(key)}] is not valid JSON`);
  }
}

function longToNumber(x: unknown): number {
  // protobufjs gives a Long (whose toString is exact decimal), JSON gives a number
  return typeof x === 'number' ? x : Number(String(x));
}

function internalToWire(plan: MessagePlan, obj: Obj): Obj {
  const out: Obj = {};
  for (const p of plan.fields) {
    if (p.embed) {
      out[p.name] = internalToWire(p.message!, p.embed === 'flat' ? obj : ((obj[p.name] as Obj | undefined) ?? {}));
      continue;
    }
    const v = obj[p.name];
    if (v == null) continue;
    if (p.wrapped) out[p.name] = { [p.wrapped.name]: mapToWire(p.wrapped, v as Obj) };
    else if (p.map) out[p.name] = mapToWire(p, v as Obj);
    else if (p.repeated) out[p.name] = (v as unknown[]).map((x) => valueToWire(p, x));
    else out[p.name] = valueToWire(p, v);
  }
  return out;
}

function mapToWire(p: FieldPlan, m: Obj): Obj {
  const out: Obj = {};
  for (const [k, x] of Object.entries(m)) {
    out[k] = p.jsonBytes ? Buffer.from(JSON.stringify(x) ?? 'null') : valueToWire(p, x);
  }
  return out;
}

function valueToWire(p: FieldPlan, x: unknown): unknown {
  if (p.message) return internalToWire(p.message, x as Obj);
  const t = p.enumType;
  if (t) {
    if (typeof x === 'number') return x;
    const n = t.values[x as string];
    if (n === undefined) throw new Error(`cannot encode ${p.field.parent?.name}.${p.name}: unknown ${t.name} value ${String(x)}`);
    return n;
  }
  // exact: ms * 1e6 exceeds 2^53, so multiply as a bigint; protobufjs takes decimal strings
  if (p.nanos) return (BigInt(Math.trunc(x as number)) * 1_000_000n).toString();
  return x;
}

// ------------------------------------------------------ internal -> JSON, JSON -> internal

/**
 * internal -> JSON in one walk, for responses and events: no wire tree in between (a list
 * of 100k records spent most of its encoding time building and collecting those trees).
 */
function internalToJson(plan: MessagePlan, obj: Obj): Obj {
  return (plan.toJson ??= compileToJson(plan))(obj);
}

function compileToJson(plan: MessagePlan): (obj: Obj) => Obj {
  const steps = plan.fields.map((p, i) => {
    const name = JSON.stringify(p.name);
    const jsonName = JSON.stringify(p.jsonName);
    if (p.embed === 'flat') return `Object.assign(out, internalToJson(fields[${i}].message, obj));`;
    if (p.embed) return `Object.assign(out, internalToJson(fields[${i}].message, obj[${name}] ?? {}));`;
    // zero values are emitted so clients see complete records (BBS does the same)
    return `v = obj[${name}];
      if (v != null) out[${jsonName}] = fieldToJson(fields[${i}], v);
      else if (fields[${i}].jsonZero !== undefined) out[${jsonName}] = fields[${i}].jsonZero;`;
  });
  return compileWalk(plan, 'obj', steps, { internalToJson, fieldToJson });
}

/** A present field's internal value as JSON. */
function fieldToJson(p: FieldPlan, v: unknown): unknown {
  if (p.wrapped) return mapInternalToJson(p.wrapped, v as Obj);
  if (p.map) return mapInternalToJson(p, v as Obj);
  if (p.repeated) return (v as unknown[]).map((x) => valueInternalToJson(p, x));
  return valueInternalToJson(p, v);
}

function mapInternalToJson(p: FieldPlan, m: Obj): Obj {
  const out: Obj = {};
  for (const [k, x] of Object.entries(m)) {
    // a JSON document stays one (as its bytes would parse back), absent reads as null
    out[k] = p.jsonBytes ? (x === undefined ? null : x) : valueInternalToJson(p, x);
  }
  return out;
}

function valueInternalToJson(p: FieldPlan, x: unknown): unknown {
  return p.message ? internalToJson(p.message, x as Obj) : valueToJson(p, valueToWire(p, x));
}

function valueToJson(p: FieldPlan, x: unknown): unknown {
  if (p.enumType) return p.enumType.valuesById[x as number] ?? x;
  if (p.long) return longToNumber(x); // BBS JSON has int64 as numbers
  if (p.bytes) return Buffer.from(x as Uint8Array).toString('base64');
  return x;
}

/**
 * Checks a JSON value against the schema and turns it into the internal shape: the same
 * object a protobuf body decodes to (JSON values are what a wire object would hold, after the
 * same conversions).
 */
function jsonToInternal(plan: MessagePlan, json: Obj, path: string): Obj {
  return (plan.fromJson ??= compileFromJson(plan))(json, path);
}

function compileFromJson(plan: MessagePlan): (json: Obj, path: string) => Obj {
  const steps = plan.fields.map((p, i) => {
    const name = JSON.stringify(p.name);
    if (p.embed === 'flat') return `Object.assign(out, jsonToInternal(fields[${i}].message, json, path));`;
    // an embedded message's fields are on this object
    if (p.embed) return `out[${name}] = jsonToInternal(fields[${i}].message, json, path);`;
    // null is absent, as for Go's encoding/json; keys are snake_case, others are ignored
    return `v = json[${JSON.stringify(p.jsonName)}];
      if (v != null) out[${name}] = fieldFromJson(fields[${i}], v, path);
      else if ((v = absentValue(fields[${i}])) !== undefined) out[${name}] = v;`;
  });
  return compileWalk(plan, 'json, path', steps, { jsonToInternal, fieldFromJson, absentValue });
}

/**
 * A message type's walk between JSON and internal, compiled once from its plan into
 * straight-line code naming each field: a loop reading and storing under computed keys cost
 * more than all the rest of a desire's decoding (V8 caches property access per code site,
 * and one site for ~40 fields misses). Field names come from the schema; each step reads
 * `v` and writes `out` in field order; `fields` and the helpers are in scope.
 */
function compileWalk<Walk>(plan: MessagePlan, params: string, steps: string[], helpers: Record<string, unknown>): Walk {
  const body = `return (${params}) => { const out = {}; let v;\n${steps.join('\n')}\nreturn out; };`;
  return new Function('fields', ...Object.keys(helpers), body)(plan.fields, ...Object.values(helpers));
}

/** A present field's JSON value, checked and converted. */
function fieldFromJson(p: FieldPlan, v: unknown, path: string): unknown {
  // built only for present fields: most of a DesiredLRP's ~40 fields are absent in a desire
  const at = path ? `${path}.${p.jsonName}` : p.jsonName;
  if (p.wrapped) return mapFromJson(p.wrapped, v, at);
  if (p.map) return mapFromJson(p, v, at);
  if (p.repeated) {
    if (!Array.isArray(v)) throw invalidField(at, 'an array', v);
    return v.map((x, i) => valueFromJson(p, x, `${at}[${i}]`));
  }
  return valueFromJson(p, v, at);
}

function mapFromJson(p: FieldPlan, v: unknown, path: string): Obj {
  if (!isPlainObject(v)) throw invalidField(path, 'an object', v);
  const out: Obj = {};
  for (const [k, x] of Object.entries(v)) {
    // a copy, exactly as the document's bytes would parse back
    out[k] = p.jsonBytes ? JSON.parse(JSON.stringify(x)) : valueFromJson(p, x, `${path}[${JSON.stringify(k)}]`);
  }
  return out;
}

// Strict on purpose: protobufjs's fromObject would quietly turn "three" into 0.
function valueFromJson(p: FieldPlan, v: unknown, path: string): unknown {
  if (p.message) {
    if (!isPlainObject(v)) throw invalidField(path, 'an object', v);
    return jsonToInternal(p.message, v, path);
  }
  const t = p.enumType;
  if (t) {
    if (typeof v === 'string' && v in t.values) return enumName(p, t.values[v]);
    if (typeof v === 'number' && v in t.valuesById) return enumName(p, v);
    throw invalidField(path, `one of ${Object.keys(t.values).join(', ')}`, v);
  }
  const range = p.intRange;
  if (range) {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < range[0] || v > range[1]) {
      throw invalidField(path, `an integer (${p.field.type})`, v);
    }
    return p.nanos ? Math.round(v / 1e6) : v;
  }
  switch (p.field.type) {
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
  throw new Error(`unsupported field type ${p.field.type} at ${path}`);
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
