// YAML message bodies, parsed as data only: a bounded size, the YAML 1.2 core schema, no
// custom or language tags (an unknown tag is refused rather than read as a string), no
// duplicate keys, and a cap on aliases against expansion bombs.

import { parseDocument, stringify } from 'yaml';
import { fail } from '../../model/errors.js';

export const MAX_BODY_BYTES = 1024 * 1024;
const MAX_ALIASES = 100;

export function decodeBody(content: Buffer): Record<string, unknown> {
  if (content.length > MAX_BODY_BYTES) fail('invalid_request', `body is larger than ${MAX_BODY_BYTES} bytes`);
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
