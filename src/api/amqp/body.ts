// YAML message bodies, parsed as data only: a bounded size, the YAML 1.2 core schema, no
// custom or language tags (an unknown tag is refused rather than read as a string), no
// duplicate keys, and a cap on aliases against expansion bombs.

import { parseDocument, stringify } from 'yaml';
import { fail } from '../../model/errors.js';

const MAX_ALIASES = 100;

export function decodeBody(content: Buffer, maxBytes: number): Record<string, unknown> {
  if (content.length > maxBytes) fail('limit_exceeded', `body is larger than ${maxBytes} bytes`);
  const doc = parseDocument(content.toString('utf8'), { schema: 'core', customTags: [], resolveKnownTags: false, uniqueKeys: true, prettyErrors: false });
  const problem = doc.errors[0] ?? doc.warnings[0];
  if (problem) fail('invalid_request', `body is not valid YAML: ${problem.message.split('\n')[0]}`);
  const value: unknown = doc.toJS({ maxAliasCount: MAX_ALIASES });
  if (!value || typeof value !== 'object' || Array.isArray(value)) fail('invalid_request', 'body must be a YAML mapping');
  return value as Record<string, unknown>;
}

export function encodeBody(value: Record<string, unknown>): Buffer {
  return Buffer.from(stringify(value, { aliasDuplicateObjects: false }));
}
