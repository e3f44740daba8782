// The Era `mservice` descriptor (console microservice) and its mapping onto a DesiredLRP.
// An mservice IS a DesiredLRP seen through another schema:
//   id                 = processGuid (a UUID)
//   enabled            = enabled (the crash-loop guard turns it off, with disabledReason)
//   cmdline + cmdparam = the run action (argv when no shell is needed, else /bin/sh -c)
//   attachment         = the setup download action: the zip, fetched from the control plane
//   opts.mode          = placement.strategy: active-passive = leader, active-active = every-cell
//   opts.section       = placement.sections; site_mode/selected_sites = placement.sites
//   opts.restart_mode  = the restart option, always with Era's start limit (5 in 10 s)
// The fields only Era has (name, title, comment, the opts as given, ext, the attachment's
// hashes) live in the DesiredLRP's annotation under ANNOTATION_KEY, so the one row (and
// one transaction) holds the whole descriptor. Pure: no I/O.

import { DroverError } from './errors.js';
import type { Action, DesiredLrp, PlacementStrategy, RestartOption } from './lrp.js';

export const ANNOTATION_KEY = 'era_mservice';
export const DEFAULT_DOMAIN = 'default';
/** Era: "excludes cyclic restart (5 times in 10 seconds)" */
export const START_LIMIT = { restarts: 5, windowMs: 10_000 };
export const HEARTBEAT_MIN_MS = 500;
export const HEARTBEAT_MAX_MS = 60_000;
export const DEFAULT_HEARTBEAT_MS = 5000;
/** Shown (ext.disabled_reason) while an enabled mservice waits for its zip. */
export const NO_ATTACHMENT_REASON = 'no attachment: an mservice runs only once its zip is uploaded';

const MODES: Record<string, PlacementStrategy> = { 'active-passive': 'leader', 'active-active': 'every-cell' };
/** Erlang supervisor terms, which the platform is built on. */
const RESTART_MODES: Record<string, RestartOption['mode']> = { permanent: 'always', transient: 'on-failure', temporary: 'never' };
const SITE_MODES = ['all', 'selected'];
/** Leader by key order; "last" would need a placement option the planner does not have. */
const LEADER_MODES = ['first'];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const MAX_TEXT = 4096;
/** What the annotation (10 KiB) holds besides: names, modes, the attachment's hashes. */
const MAX_DESCRIPTOR_BYTES = 8192;

/** The macros expanded in cmdline and cmdparam, and the environment variables carrying their values. */
export const MACROS = ['DOMAIN', 'WEBSERVERS', 'WEBSERVERS_EX', 'LOGPATH', 'SERVERNAME'] as const;
export type Macro = (typeof MACROS)[number];
export const macroVariable = (m: Macro) => `ERA_${m}`;

export interface MserviceOpts {
  title: string;
  comment: string;
  mode: string;
  section: string;
  leader_mode: string;
  site_mode: string;
  selected_sites: string[];
  restart_mode: string;
  /** as given: the seed types it a string, clients send numbers too */
  heartbeat_timeout: string | number;
}

export interface AttachmentInfo {
  hasha: string;
  mtime: string;
  size: number;
}

/** The stored attachment: its content address and what attachment_info shows. */
export interface StoredAttachment {
  sha256: string;
  md5: string;
  size: number;
  /** ISO 8601 */
  mtime: string;
  name: string;
}

/** What the annotation holds. */
export interface StoredMservice {
  name: string;
  cmdline: string;
  cmdparam: string;
  opts: MserviceOpts;
  /** the client's keys, plus ct and lwt */
  ext: Record<string, unknown>;
  attachment?: StoredAttachment;
}

/** The descriptor as Era clients see it. */
export interface MserviceDescriptor {
  id: string;
  name: string;
  cmdline: string;
  cmdparam: string;
  enabled: boolean;
  /** the attachment's file name; uploaded and downloaded at <id>/attachment */
  attachment: string | null;
  opts: MserviceOpts & { attachment_info?: AttachmentInfo };
  ext: Record<string, unknown>;
}

/** A validated create / replace request. */
export interface MserviceInput {
  id?: string;
  name: string;
  cmdline: string;
  cmdparam: string;
  enabled: boolean;
  opts: MserviceOpts;
  ext: Record<string, unknown>;
}

/** A refusal that names the field, e.g. `opts.mode`. */
export class FieldError extends DroverError {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super('invalid_request', `${field}: ${message}`);
  }
}

function failField(field: string, message: string): never {
  throw new FieldError(field, message);
}

// ------------------------------------------------------------------------ validation

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

const TOP_FIELDS = ['id', 'name', 'cmdline', 'cmdparam', 'enabled', 'attachment', 'opts', 'ext'];
const OPT_FIELDS = ['title', 'comment', 'mode', 'section', 'leader_mode', 'site_mode', 'selected_sites', 'restart_mode', 'heartbeat_timeout', 'heartbeat_interval', 'attachment_info'];
/** Maintained by Drover: ignored when a client sends them back. */
export const SERVER_EXT_KEYS = ['ct', 'lwt', 'disabled_reason', 'disabled_at'];

function unknownKeys(o: Json, known: string[], prefix: string): void {
  const extra = Object.keys(o).find((k) => !known.includes(k));
  if (extra !== undefined) failField(prefix + extra, 'is not a field of an mservice');
}

function text(v: unknown, field: string, fallback = ''): string {
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'string') failField(field, 'must be a string');
  if (v.length > MAX_TEXT) failField(field, `must be at most ${MAX_TEXT} characters`);
  return v;
}

function oneOf(v: unknown, field: string, allowed: string[], fallback: string): string {
  const s = text(v, field, fallback);
  if (!allowed.includes(s)) failField(field, `must be one of ${allowed.join(', ')}`);
  return s;
}

function heartbeat(o: Json): string | number {
  const [field, v] = o.heartbeat_timeout !== undefined ? ['opts.heartbeat_timeout', o.heartbeat_timeout] : ['opts.heartbeat_interval', o.heartbeat_interval];
  if (v === undefined || v === null) return DEFAULT_HEARTBEAT_MS;
  const ms = typeof v === 'number' ? v : typeof v === 'string' && /^\d+$/.test(v.trim()) ? Number(v) : NaN;
  if (!Number.isInteger(ms) || ms < HEARTBEAT_MIN_MS || ms > HEARTBEAT_MAX_MS) failField(field, `must be an integer number of ms from ${HEARTBEAT_MIN_MS} to ${HEARTBEAT_MAX_MS}`);
  if (o.heartbeat_timeout !== undefined && o.heartbeat_interval !== undefined && String(o.heartbeat_interval) !== String(v)) {
    failField('opts.heartbeat_interval', 'differs from opts.heartbeat_timeout (the same setting in two spellings)');
  }
  return typeof v === 'string' ? v.trim() : ms;
}

function validateOpts(v: unknown): MserviceOpts {
  const o = v === undefined || v === null ? {} : v;
  if (!isObject(o)) failField('opts', 'must be an object');
  unknownKeys(o, OPT_FIELDS, 'opts.');
  const site_mode = oneOf(o.site_mode, 'opts.site_mode', SITE_MODES, 'all');
  const sites = o.selected_sites ?? [];
  if (!Array.isArray(sites) || sites.some((s) => typeof s !== 'string' || s === '')) failField('opts.selected_sites', 'must be an array of site names');
  if (site_mode === 'selected' && sites.length === 0) failField('opts.selected_sites', "must name at least one site when site_mode is 'selected'");
  return {
    title: text(o.title, 'opts.title'),
    comment: text(o.comment, 'opts.comment'),
    mode: oneOf(o.mode, 'opts.mode', Object.keys(MODES), 'active-passive'),
    section: text(o.section, 'opts.section'),
    leader_mode: oneOf(o.leader_mode, 'opts.leader_mode', LEADER_MODES, 'first'),
    site_mode,
    selected_sites: sites as string[],
    restart_mode: oneOf(o.restart_mode, 'opts.restart_mode', Object.keys(RESTART_MODES), 'permanent'),
    heartbeat_timeout: heartbeat(o),
  };
}

/** Checks a descriptor sent by a client (create or full replace); each refusal names the field. */
export function validateMservice(input: unknown): MserviceInput {
  if (!isObject(input)) failField('mservice', 'the body must be a JSON object');
  unknownKeys(input, TOP_FIELDS, '');
  let id: string | undefined;
  if (input.id !== undefined && input.id !== null) {
    if (typeof input.id !== 'string' || !UUID.test(input.id)) failField('id', 'must be a UUID');
    id = input.id.toLowerCase();
  }
  if (typeof input.name !== 'string' || !NAME.test(input.name)) failField('name', `is required and must match ${NAME.source}`);
  const cmdline = text(input.cmdline, 'cmdline');
  if (cmdline.trim() === '') failField('cmdline', 'is required');
  const cmdparam = text(input.cmdparam, 'cmdparam');
  commandFor(cmdline, cmdparam); // refuses what cannot be parsed, naming the field
  if (input.enabled !== undefined && typeof input.enabled !== 'boolean') failField('enabled', 'must be true or false');
  const ext = input.ext ?? {};
  if (!isObject(ext)) failField('ext', 'must be an object');
  const clientExt = Object.fromEntries(Object.entries(ext).filter(([k]) => !SERVER_EXT_KEYS.includes(k)));
  if (JSON.stringify(clientExt).length > MAX_TEXT) failField('ext', `must be at most ${MAX_TEXT} characters of JSON`);
  const opts = validateOpts(input.opts);
  // the whole must fit the DesiredLRP's annotation: name the largest part when it does not
  const parts: [string, unknown][] = [['cmdline', cmdline], ['cmdparam', cmdparam], ['opts.title', opts.title], ['opts.comment', opts.comment], ['opts.selected_sites', opts.selected_sites], ['ext', clientExt]];
  const sizes = parts.map(([field, v]) => [field, Buffer.byteLength(JSON.stringify(v))] as const);
  if (sizes.reduce((sum, [, n]) => sum + n, 0) > MAX_DESCRIPTOR_BYTES) {
    const [field] = sizes.reduce((a, b) => (b[1] > a[1] ? b : a));
    failField(field, `is too long: the descriptor must stay under ${MAX_DESCRIPTOR_BYTES} bytes of JSON`);
  }
  return { id, name: input.name, cmdline, cmdparam, enabled: input.enabled ?? true, opts, ext: clientExt };
}

/**
 * A partial update (PATCH) applied to the current descriptor: the fields given replace
 * theirs; `opts` and `ext` merge key by key, and a null removes a key (JSON merge patch).
 */
export function mergeMservice(current: MserviceDescriptor, patch: unknown): unknown {
  if (!isObject(patch)) failField('mservice', 'the body must be a JSON object');
  const merge = (base: Json, p: unknown, field: string): Json => {
    if (p === undefined) return base;
    if (!isObject(p)) failField(field, 'must be an object');
    const out = { ...base, ...p };
    for (const [k, v] of Object.entries(p)) if (v === null) delete out[k];
    return out;
  };
  const { attachment_info: _, ...opts } = current.opts;
  // a new value in the other spelling replaces the old one
  const renamed = isObject(patch.opts) && patch.opts.heartbeat_interval !== undefined && patch.opts.heartbeat_timeout === undefined;
  const base: Json = renamed ? { ...opts, heartbeat_timeout: undefined } : opts;
  return { ...current, ...patch, attachment: undefined, opts: merge(base, patch.opts, 'opts'), ext: merge(current.ext, patch.ext, 'ext') };
}

// ------------------------------------------------------------------------ command line

/**
 * cmdline + cmdparam as a run action. Words are split as a POSIX shell would, quotes kept
 * in effect (removed, their content one word); a line that needs a shell (pipes,
 * redirections, variables, globs, `;`, `&&`, ...) runs as `/bin/sh -c LINE`. Macros stay
 * in argv words for the agent to replace; in a shell line they become references to the
 * ERA_* variables the agent sets, quoted for where they stand, so a value with spaces,
 * quotes or brackets (%WEBSERVERS% is a JSON array) stays one word.
 */
export function commandFor(cmdline: string, cmdparam: string): { path: string; args: string[] } {
  scanCommand(cmdline, 'cmdline');
  if (cmdparam) scanCommand(cmdparam, 'cmdparam');
  const scan = scanCommand(cmdparam ? `${cmdline} ${cmdparam}` : cmdline, 'cmdparam');
  if (scan.shell) return { path: '/bin/sh', args: ['-c', scan.script] };
  if (scan.words.length === 0) failField('cmdline', 'is required');
  return { path: scan.words[0]!, args: scan.words.slice(1) };
}

const SHELL_SPECIAL = new Set([...'|&;<>()$`*?[#~\n']);
const MACRO_AT = new RegExp(`^%(${MACROS.join('|')})%`);

function scanCommand(line: string, field: string): { words: string[]; shell: boolean; script: string } {
  const words: string[] = [];
  let word: string | undefined; // undefined = between words
  let quote: '' | "'" | '"' = '';
  let shell = false;
  let script = '';
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    const macro = line.slice(i).match(MACRO_AT);
    if (macro) {
      const ref = `\${${macroVariable(macro[1] as Macro)}}`;
      script += quote === '"' ? ref : quote === "'" ? `'"${ref}"'` : `"${ref}"`;
      word = (word ?? '') + macro[0];
      i += macro[0].length - 1;
      continue;
    }
    script += c;
    if (quote === "'") {
      if (c === "'") quote = '';
      else word += c;
    } else if (quote === '"') {
      if (c === '"') quote = '';
      else if (c === '\\' && i + 1 < line.length && '$`"\\\n'.includes(line[i + 1]!)) {
        word += line[++i]!;
        script += line[i];
      } else {
        if (c === '$' || c === '`') shell = true;
        word += c;
      }
    } else if (c === ' ' || c === '\t') {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else if (c === "'" || c === '"') {
      quote = c;
      word ??= '';
    } else if (c === '\\') {
      if (i + 1 >= line.length) failField(field, 'ends with a lone backslash');
      word = (word ?? '') + line[++i]!;
      script += line[i];
    } else {
      // `=` in the first word is an assignment (VAR=x cmd): only a shell understands it
      if (SHELL_SPECIAL.has(c) || (c === '=' && words.length === 0)) shell = true;
      word = (word ?? '') + c;
    }
  }
  if (quote) failField(field, `has an unbalanced ${quote === "'" ? 'single' : 'double'} quote`);
  if (word !== undefined) words.push(word);
  return { words, shell, script };
}

// ------------------------------------------------------------------------ mapping

/** The Era fields of a DesiredLRP that is an mservice; undefined for any other LRP. */
export function storedMservice(d: Pick<DesiredLrp, 'annotation'>): StoredMservice | undefined {
  if (!d.annotation?.startsWith(`{"${ANNOTATION_KEY}"`)) return undefined;
  try {
    return (JSON.parse(d.annotation) as Record<string, StoredMservice>)[ANNOTATION_KEY];
  } catch {
    return undefined;
  }
}

export function attachmentPath(sha256: string): string {
  return `/v1/attachments/${sha256}`;
}

/** The DesiredLRP fields an mservice determines (validateDesiredLrp fills the rest). */
export function desiredLrpFor(id: string, domain: string, m: StoredMservice, enabled: boolean): Partial<DesiredLrp> {
  const setup: Action | undefined = m.attachment
    ? { download: { artifact: m.name, from: attachmentPath(m.attachment.sha256), to: '.', cacheKey: `sha256:${m.attachment.sha256}` } }
    : undefined;
  return {
    processGuid: id,
    domain,
    // nothing to run until the zip is there
    instances: m.attachment ? 1 : 0,
    setup,
    action: { run: { ...commandFor(m.cmdline, m.cmdparam), dir: '', env: [], user: '' } },
    annotation: JSON.stringify({ [ANNOTATION_KEY]: m }),
    logSource: 'MSVC',
    placement: {
      strategy: MODES[m.opts.mode]!,
      sites: m.opts.site_mode === 'selected' ? m.opts.selected_sites : [],
      sections: m.opts.section ? [m.opts.section] : [],
    },
    enabled,
    restart: { mode: RESTART_MODES[m.opts.restart_mode]!, immediate: true, limit: START_LIMIT },
  };
}

/** The descriptor of an mservice's DesiredLRP, as Era clients see it. */
export function descriptorOf(d: DesiredLrp): MserviceDescriptor | undefined {
  const m = storedMservice(d);
  if (!m) return undefined;
  const a = m.attachment;
  const reason = !d.enabled ? d.disabledReason : a ? '' : NO_ATTACHMENT_REASON;
  return {
    id: d.processGuid,
    name: m.name,
    cmdline: m.cmdline,
    cmdparam: m.cmdparam,
    enabled: d.enabled,
    attachment: a ? a.name : null,
    opts: { ...m.opts, ...(a ? { attachment_info: { hasha: `md5;${a.md5.toUpperCase()}`, mtime: a.mtime, size: a.size } } : {}) },
    ext: {
      ...m.ext,
      ...(reason ? { disabled_reason: reason } : {}),
      ...(!d.enabled && d.disabledAt ? { disabled_at: new Date(d.disabledAt).toISOString() } : {}),
    },
  };
}
