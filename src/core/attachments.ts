// Attachment blobs (the zips of Era mservices). Checked on upload by the very rules the
// cell unpacks by (agent/attachments.ts), so a zip the cell would refuse is never stored;
// stored once per content (SHA-256) with a count of its users (store: retain/release, in
// the transaction of the change that adds or drops a user); served to cells by hash.

import { ZipRejected, inspectZip } from '../agent/attachments.js';
import { fail } from '../model/errors.js';
import { FieldError } from '../model/mservice.js';
import type { Principal } from '../model/principal.js';
import { authorize } from './authorize.js';
import type { CoreContext } from './context.js';

export interface CheckedZip {
  sha256: string;
  md5: string;
  size: number;
  entries: number;
}

/** A zip that breaks a rule is refused as a bad `attachment` field, saying why. */
export async function checkZip(zip: Buffer): Promise<CheckedZip> {
  if (zip.length === 0) throw new FieldError('attachment', 'the upload is empty: send the zip as the body or as the multipart field "file"');
  try {
    const { sha256, md5, entries } = await inspectZip(zip);
    return { sha256, md5, size: zip.length, entries };
  } catch (e) {
    if (e instanceof ZipRejected) throw new FieldError('attachment', e.message);
    throw e;
  }
}

/** The bytes of an attachment, for the cells that unpack it. */
export async function readAttachment(ctx: CoreContext, p: Principal | undefined, sha256: string): Promise<Buffer> {
  authorize(p, 'agent');
  const data = /^[0-9a-f]{64}$/.test(sha256) ? await ctx.store.getAttachment(sha256) : undefined;
  if (!data) fail('not_found', `attachment ${sha256} not found`);
  return data;
}
