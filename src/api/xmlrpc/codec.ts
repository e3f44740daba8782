// XML-RPC (http://xmlrpc.com/spec.md) on the bounded XML reader: method calls and
// responses, every spec type plus the common extensions (nil, i8). The maintained npm
// packages for XML-RPC are either unmaintained or client-only, hence this codec.
//
// Types map to JavaScript as: int/i4/i8 → number (an integer), double → number,
// boolean → boolean, string (or untyped) → string, dateTime.iso8601 → Date,
// base64 → Buffer, nil → null, struct → plain object, array → array. Encoding picks
// int for integers in the 32-bit range, i8 for larger safe integers, double otherwise.

import { childNamed, escapeXml, parseXml, XmlError, type XmlElement, type XmlLimits, DEFAULT_XML_LIMITS } from './xml.js';

export type XmlRpcValue = string | number | boolean | null | Date | Buffer | XmlRpcValue[] | XmlRpcStruct;
export interface XmlRpcStruct {
  [name: string]: XmlRpcValue;
}

/** The fault codes of the XML-RPC interoperability conventions (specs.xmlrpc.org/xmlrpc-epi). */
export const FAULT = {
  parseError: -32700,
  invalidRequest: -32600,
  methodNotFound: -32601,
  invalidParams: -32602,
  internalError: -32603,
} as const;

export class XmlRpcFault extends Error {
  override name = 'XmlRpcFault';
  constructor(
    readonly faultCode: number,
    readonly faultString: string,
  ) {
    super(faultString);
  }
}

export interface MethodCall {
  methodName: string;
  params: XmlRpcValue[];
}

const INT32 = { min: -(2 ** 31), max: 2 ** 31 - 1 };
const INTEGER = /^[+-]?\d+$/;
const DOUBLE = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
// 19980717T14:08:55 (the spec), also with dashes, fractions and a zone (ISO 8601 proper)
const DATETIME = /^(\d{4})-?(\d{2})-?(\d{2})T(\d{2}):?(\d{2}):?(\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$/;

const invalid = (message: string): never => {
  throw new XmlRpcFault(FAULT.invalidRequest, message);
};

function only(el: XmlElement, name: string): XmlElement {
  const c = childNamed(el, name);
  if (!c) invalid(`<${el.name}> needs a <${name}>`);
  return c!;
}

function integer(text: string, min: number, max: number, type: string): number {
  const t = text.trim();
  const n = Number(t);
  if (!INTEGER.test(t) || n < min || n > max) invalid(`<${type}> out of range or not an integer: ${t.slice(0, 40)}`);
  return n;
}

function dateTime(text: string): Date {
  const m = DATETIME.exec(text.trim());
  if (!m) invalid(`<dateTime.iso8601> not understood: ${text.slice(0, 40)}`);
  const [, y, mo, d, h, mi, s, frac = '', zone = 'Z'] = m!;
  // Date would roll 30 February over into March: check the fields first
  const daysInMonth = new Date(Date.UTC(Number(y), Number(mo), 0)).getUTCDate();
  if (+mo < 1 || +mo > 12 || +d < 1 || +d > daysInMonth || +h > 23 || +mi > 59 || +s > 59) invalid(`<dateTime.iso8601> is not a date: ${text.slice(0, 40)}`);
  const z = zone === 'Z' ? 'Z' : `${zone.slice(0, 3)}:${zone.slice(-2)}`;
  return new Date(`${y}-${mo}-${d}T${h}:${mi}:${s}${frac}${z}`);
}

/** Sets a member even when its name is `__proto__`: a struct must never reach a prototype. */
function setMember(target: XmlRpcStruct, name: string, value: XmlRpcValue): void {
  Object.defineProperty(target, name, { value, enumerable: true, writable: true, configurable: true });
}

export function decodeValue(el: XmlElement): XmlRpcValue {
  if (el.name !== 'value') invalid(`expected <value>, got <${el.name}>`);
  if (el.children.length === 0) return el.text; // no type element: a string
  if (el.children.length > 1) invalid('<value> holds more than one element');
  const t = el.children[0]!;
  switch (t.name) {
    case 'string':
      return t.text;
    case 'int':
    case 'i4':
      return integer(t.text, INT32.min, INT32.max, t.name);
    case 'i8':
      return integer(t.text, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, t.name);
    case 'boolean': {
      const b = t.text.trim();
      if (b !== '0' && b !== '1') invalid(`<boolean> must be 0 or 1, got ${b.slice(0, 40)}`);
      return b === '1';
    }
    case 'double': {
      const d = t.text.trim();
      if (!DOUBLE.test(d)) invalid(`<double> not a number: ${d.slice(0, 40)}`);
      return Number(d);
    }
    case 'dateTime.iso8601':
      return dateTime(t.text);
    case 'base64': {
      const b = t.text.replace(/\s+/g, '');
      if (!BASE64.test(b)) invalid('<base64> is not base64');
      return Buffer.from(b, 'base64');
    }
    case 'nil':
      return null;
    case 'struct': {
      const out: XmlRpcStruct = {};
      for (const m of t.children) {
        if (m.name !== 'member') invalid(`<struct> may only hold <member>, got <${m.name}>`);
        setMember(out, only(m, 'name').text, decodeValue(only(m, 'value')));
      }
      return out;
    }
    case 'array':
      return only(t, 'data').children.map(decodeValue);
    default:
      return invalid(`unknown XML-RPC type <${t.name}>`);
  }
}

function parse(body: string, limits: XmlLimits): XmlElement {
  try {
    return parseXml(body, limits);
  } catch (e) {
    if (e instanceof XmlError) throw new XmlRpcFault(FAULT.parseError, `not well-formed XML: ${e.message}`);
    throw e;
  }
}

function paramsOf(el: XmlElement | undefined): XmlRpcValue[] {
  if (!el) return [];
  return el.children.map((p) => {
    if (p.name !== 'param') invalid(`<params> may only hold <param>, got <${p.name}>`);
    return decodeValue(only(p, 'value'));
  });
}

export function decodeCall(body: string, limits: XmlLimits = DEFAULT_XML_LIMITS): MethodCall {
  const root = parse(body, limits);
  if (root.name !== 'methodCall') invalid(`expected <methodCall>, got <${root.name}>`);
  const methodName = only(root, 'methodName').text.trim();
  if (!/^[A-Za-z0-9_.:/]+$/.test(methodName)) invalid('bad <methodName>');
  return { methodName, params: paramsOf(childNamed(root, 'params')) };
}

/** A response's value; a fault response throws XmlRpcFault. */
export function decodeResponse(body: string, limits: XmlLimits = DEFAULT_XML_LIMITS): XmlRpcValue {
  const root = parse(body, limits);
  if (root.name !== 'methodResponse') invalid(`expected <methodResponse>, got <${root.name}>`);
  const fault = childNamed(root, 'fault');
  if (fault) {
    const f = decodeValue(only(fault, 'value')) as XmlRpcStruct;
    throw new XmlRpcFault(Number(f?.faultCode), String(f?.faultString));
  }
  const params = paramsOf(childNamed(root, 'params'));
  if (params.length !== 1) invalid('a response carries exactly one <param>');
  return params[0]!;
}

function formatDateTime(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, '').replace(/-/g, '');
}

export function encodeValue(v: XmlRpcValue): string {
  if (v === null) return '<value><nil/></value>';
  switch (typeof v) {
    case 'string':
      return `<value><string>${escapeXml(v)}</string></value>`;
    case 'boolean':
      return `<value><boolean>${v ? 1 : 0}</boolean></value>`;
    case 'number':
      if (Number.isInteger(v) && v >= INT32.min && v <= INT32.max) return `<value><int>${v}</int></value>`;
      if (Number.isSafeInteger(v)) return `<value><i8>${v}</i8></value>`;
      if (!Number.isFinite(v)) throw new TypeError(`XML-RPC cannot carry ${v}`);
      return `<value><double>${v}</double></value>`;
  }
  if (v instanceof Date) return `<value><dateTime.iso8601>${formatDateTime(v)}</dateTime.iso8601></value>`;
  if (Buffer.isBuffer(v)) return `<value><base64>${v.toString('base64')}</base64></value>`;
  if (Array.isArray(v)) return `<value><array><data>${v.map(encodeValue).join('')}</data></array></value>`;
  const members = Object.entries(v)
    .filter(([, m]) => m !== undefined)
    .map(([name, m]) => `<member><name>${escapeXml(name)}</name>${encodeValue(m)}</member>`);
  return `<value><struct>${members.join('')}</struct></value>`;
}

const PROLOG = '<?xml version="1.0" encoding="UTF-8"?>\n';

export function encodeCall(methodName: string, params: XmlRpcValue[]): string {
  const ps = params.map((p) => `<param>${encodeValue(p)}</param>`).join('');
  return `${PROLOG}<methodCall><methodName>${escapeXml(methodName)}</methodName><params>${ps}</params></methodCall>\n`;
}

export function encodeResponse(value: XmlRpcValue): string {
  return `${PROLOG}<methodResponse><params><param>${encodeValue(value)}</param></params></methodResponse>\n`;
}

export function encodeFault(faultCode: number, faultString: string): string {
  return `${PROLOG}<methodResponse><fault>${encodeValue({ faultCode, faultString })}</fault></methodResponse>\n`;
}
