// Zip attachments: checked on upload by the control plane (inspectZip, nothing is written)
// and unpacked by the cell into an instance's working directory before each start
// (unpackZip). Both walk the archive with the same rules, so what was accepted unpacks:
//   - every entry stays inside the directory: no absolute path, no `..` (zip-slip), no
//     symlink whose target leads out — and at unpack time no existing symlink is followed
//     out of the directory either (a previous run may have left one);
//   - the archive is bounded: its size, its entry count, the sum of its unpacked sizes.
//     yauzl checks every entry's bytes against its declared size (validateEntrySizes), so
//     a bomb cannot lie its way past the sum.
// A broken rule throws ZipRejected with a message saying which entry and why.

import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { lstat, mkdir, readFile, realpath, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join, posix, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
// yauzl loads with the first attachment: most desired LRPs have none.
import type yauzl from 'yauzl';
import type { Action } from '../model/lrp.js';

export const ZIP_LIMITS = {
  maxZipBytes: 32 * 1024 * 1024,
  maxEntries: 10_000,
  maxUnpackedBytes: 256 * 1024 * 1024,
};
const MAX_LINK_TARGET = 4096;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;

const sha256Of = (b: Buffer) => createHash('sha256').update(b).digest('hex');

export class ZipRejected extends Error {
  constructor(message: string) {
    super(`zip rejected: ${message}`);
  }
}

export interface ZipItem {
  name: string;
  kind: 'file' | 'dir' | 'symlink';
  /** permission bits (0 when the archive has none) */
  mode: number;
  /** symlinks: where they point */
  target?: string;
}

export interface ZipSummary {
  entries: number;
  unpackedBytes: number;
}

/** yauzl's own name checks, in words that say what is wrong. */
function rejectionFor(e: Error): ZipRejected {
  const m = e.message.match(/^(absolute path|invalid relative path|invalid characters in fileName): (.*)$/);
  if (!m) return new ZipRejected(`unreadable archive (${e.message})`);
  if (m[1] === 'absolute path') return new ZipRejected(`entry "${m[2]}" has an absolute path`);
  if (m[1] === 'invalid relative path') return new ZipRejected(`entry "${m[2]}" leads out of the working directory (zip-slip)`);
  return new ZipRejected(`entry "${m[2]}" has a backslash in its name`);
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function classify(entry: yauzl.Entry): ZipItem {
  const unixMode = (entry.externalFileAttributes >>> 16) & 0xffff;
  const type = unixMode & S_IFMT;
  const name = entry.fileName;
  if (name === '' || name.includes('\0')) throw new ZipRejected(`an entry has an empty or invalid name`);
  if (type === S_IFLNK) return { name, kind: 'symlink', mode: 0 };
  if (name.endsWith('/') || type === S_IFDIR) return { name, kind: 'dir', mode: unixMode & 0o777 };
  if (type !== 0 && type !== S_IFREG) throw new ZipRejected(`entry "${name}" is neither a file, a directory nor a symlink`);
  return { name, kind: 'file', mode: unixMode & 0o777 };
}

/** Opens a file entry's content, which must then be consumed at once (a size error comes through it). */
type Open = () => Promise<Readable>;

/**
 * Walks the archive, checking every rule; `sink` gets each entry (a file with the opener
 * of its content). Throws ZipRejected at the first broken rule.
 */
async function walkZip(zip: Buffer, sink: (item: ZipItem, open?: Open) => Promise<void>, limits = ZIP_LIMITS): Promise<ZipSummary> {
  if (zip.length > limits.maxZipBytes) throw new ZipRejected(`the archive is ${zip.length} bytes, more than the ${limits.maxZipBytes} allowed`);
  let zipfile: yauzl.ZipFile;
  try {
    zipfile = await (await import('yauzl')).default.fromBufferPromise(zip, { lazyEntries: true, autoClose: false, validateEntrySizes: true, decodeStrings: true });
  } catch (e) {
    throw new ZipRejected(`not a zip archive (${(e as Error).message})`);
  }
  try {
    if (zipfile.entryCount > limits.maxEntries) throw new ZipRejected(`${zipfile.entryCount} entries, more than the ${limits.maxEntries} allowed (zip bomb?)`);
    const summary: ZipSummary = { entries: 0, unpackedBytes: 0 };
    for await (const entry of zipfile.eachEntry()) {
      const item = classify(entry);
      if (entry.isEncrypted()) throw new ZipRejected(`entry "${item.name}" is encrypted`);
      summary.entries++;
      summary.unpackedBytes += entry.uncompressedSize;
      if (summary.unpackedBytes > limits.maxUnpackedBytes) {
        throw new ZipRejected(`unpacks to more than the ${limits.maxUnpackedBytes} bytes allowed (zip bomb?)`);
      }
      if (item.kind === 'dir') {
        await sink(item);
        continue;
      }
      const open = () => zipfile.openReadStreamPromise(entry);
      if (item.kind === 'file') {
        await sink(item, open);
        continue;
      }
      if (entry.uncompressedSize > MAX_LINK_TARGET) throw new ZipRejected(`symlink "${item.name}" has a target longer than ${MAX_LINK_TARGET} bytes`);
      const target = (await readAll(await open())).toString('utf8');
      // resolved lexically from the link's own directory; it must stay inside
      const resolved = posix.normalize(posix.join(posix.dirname(item.name), target));
      if (posix.isAbsolute(target) || resolved === '..' || resolved.startsWith('../')) {
        throw new ZipRejected(`symlink "${item.name}" points to "${target}", outside the working directory`);
      }
      await sink({ ...item, target });
    }
    return summary;
  } catch (e) {
    if (e instanceof ZipRejected) throw e;
    throw rejectionFor(e as Error);
  } finally {
    zipfile.close();
  }
}

/** Checks an archive without writing anything; its digests are its content addresses. */
export async function inspectZip(zip: Buffer): Promise<ZipSummary & { sha256: string; md5: string }> {
  // every file is decompressed (and dropped), so every entry's size is checked
  const summary = await walkZip(zip, async (_item, open) => open && finished((await open()).resume()));
  return { ...summary, sha256: sha256Of(zip), md5: createHash('md5').update(zip).digest('hex') };
}

const inside = (root: string, p: string) => p === root || p.startsWith(root + sep);

/**
 * Creates `rel` (a directory path of the archive) under `root` one component at a time,
 * never following a symlink out of `root` (an existing one may have been left by the
 * instance itself), and returns its real path.
 */
async function safeDir(root: string, rel: string, name: string): Promise<string> {
  let cur = root;
  for (const part of rel.split('/').filter((p) => p && p !== '.')) {
    const next = join(cur, part);
    const st = await lstat(next).catch(() => undefined);
    if (!st) await mkdir(next);
    else if (st.isSymbolicLink()) {
      const real = await realpath(next).catch(() => '');
      if (!real || !inside(root, real)) throw new ZipRejected(`entry "${name}" would be written through a symlink that leads out of the working directory`);
      cur = real;
      continue;
    } else if (!st.isDirectory()) {
      await rm(next, { force: true });
      await mkdir(next);
    }
    cur = next;
  }
  return cur;
}

/** Unpacks an archive into `dir` (which exists), replacing what its entries name. */
export async function unpackZip(zip: Buffer, dir: string): Promise<ZipSummary> {
  const root = await realpath(dir);
  return walkZip(zip, async (item, open) => {
    const parent = await safeDir(root, item.kind === 'dir' ? item.name : posix.dirname(item.name), item.name);
    if (item.kind === 'dir') return;
    const target = join(parent, posix.basename(item.name));
    // replaced, never written through: an existing file may be a symlink
    await rm(target, { force: true, recursive: true });
    if (item.kind === 'symlink') await symlink(item.target!, target);
    else await pipeline(await open!(), createWriteStream(target, { flags: 'wx', mode: item.mode || 0o644 }));
  });
}

// ---------------------------------------------------------------------------- on the cell

/** The first download action of an LRP's setup (what the agent fetches before the start). */
export function findDownloadAction(action: Action | undefined): Action['download'] {
  if (!action) return undefined;
  if (action.download) return action.download;
  const inner = action.timeout?.action ?? action.try?.action ?? action.emitProgress?.action;
  if (inner) return findDownloadAction(inner);
  for (const a of action.serial?.actions ?? action.parallel?.actions ?? action.codependent?.actions ?? []) {
    const d = findDownloadAction(a);
    if (d) return d;
  }
  return undefined;
}

/** Fetches the zip (cached by its SHA-256 when the cache key names it) and checks the digest. */
async function fetchZip(download: NonNullable<Action['download']>, fetchBytes: (path: string) => Promise<Buffer>, cacheDir: string): Promise<{ zip: Buffer; key: string }> {
  const sha256 = download.cacheKey?.match(/^sha256:([0-9a-f]{64})$/)?.[1];
  const cached = sha256 ? join(cacheDir, `${sha256}.zip`) : undefined;
  const hit = cached && (await readFile(cached).catch(() => undefined));
  if (hit && sha256Of(hit) === sha256) return { zip: hit, key: sha256 };
  const zip = await fetchBytes(download.from);
  const digest = sha256Of(zip);
  if (sha256 && digest !== sha256) throw new Error(`attachment ${download.from} does not match its sha256`);
  if (cached) {
    // written aside and renamed: instances starting side by side never read half a file
    await mkdir(cacheDir, { recursive: true });
    const partial = `${cached}.${randomUUID()}.part`;
    await writeFile(partial, zip);
    await rename(partial, cached);
  }
  return { zip, key: digest };
}

/**
 * Before each start: unpacks the LRP's attachment into the working directory `dir`. A new
 * attachment empties the directory first (the marker next to it names the last one
 * unpacked); the same one is unpacked over what is there, restoring its files and keeping
 * what the instance wrote.
 */
export async function unpackAttachment(download: NonNullable<Action['download']>, fetchBytes: (path: string) => Promise<Buffer>, cacheDir: string, dir: string): Promise<void> {
  const { zip, key } = await fetchZip(download, fetchBytes, cacheDir);
  const target = join(dir, download.to || '.');
  if (!inside(dir, target)) throw new ZipRejected(`the download target ${download.to} is outside the working directory`);
  const marker = `${dir}.attachment`;
  const changed = (await readFile(marker, 'utf8').catch(() => '')) !== key;
  if (changed) await rm(dir, { recursive: true, force: true });
  await mkdir(target, { recursive: true });
  await unpackZip(zip, target);
  if (changed) await writeFile(marker, key);
}
