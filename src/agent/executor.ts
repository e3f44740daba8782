// Runs one instance as a real OS process. Each instance leads its own process group (and
// session), so the whole tree it forks can be signalled at once, and it writes straight to
// its log file through an inherited fd, so it outlives an agent that is SIGKILLed and can be
// adopted by the next agent run. Linux-specific where noted (/proc, /etc/passwd).

import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync } from 'node:fs';
import { copyFile, open, rename, truncate } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ProcessSpec {
  path: string;
  args: string[];
  /** The child's whole environment: nothing is inherited from the agent. */
  env: Record<string, string>;
  dir?: string;
  /** User name or numeric uid; honoured only when the agent runs as root. */
  user?: string;
  logFile: string;
}

export interface ExitInfo {
  code: number | null;
  signal: string | null;
  /** For humans: `exited with code 3`, `killed by signal SIGKILL`, `spawn ENOENT: /x`. */
  reason: string;
}

export interface RunningProcess {
  /** 0 when the process never started (exited then already holds the spawn error). */
  pid: number;
  pgid: number;
  startedAt: number;
  /** /proc start time in clock ticks since boot: record it to recognise this pid later. */
  startTicks: number | undefined;
  /** Resolves (never rejects) when the group leader is gone. */
  exited: Promise<ExitInfo>;
  alive(): boolean;
  /** TERM the group, KILL it after graceMs; resolves when the whole group is gone. */
  stop(graceMs: number): Promise<ExitInfo>;
}

const GROUP_POLL_MS = 20;
const ADOPTED_POLL_MS = 100;

/** What a spawner needs: plain data, so it can be sent to drover-spawner (spawn-helper.ts). */
export interface SpawnRequest {
  path: string;
  args: string[];
  env: Record<string, string>;
  dir?: string;
  uid?: number;
  gid?: number;
  logFile: string;
}

/** How a spawned child ended: its exit, or the error that kept it from starting. */
export type RawExit =
  | { code: number | null; signal: string | null; reason?: string }
  | { error: { message: string; code?: string; syscall?: string } };

/** pid 0: the child never started, and `exited` holds the spawn error. */
export interface Spawned {
  pid: number;
  startTicks: number | undefined;
  exited: Promise<RawExit>;
}

/** Starts `spec` somewhere (this thread or drover-spawner) and says how it went. */
export type Spawner = (request: SpawnRequest) => Promise<Spawned>;

/**
 * Spawns in the calling thread, which Node blocks until the child has exec'd: the fallback
 * when drover-spawner was not built, and what the executor's own tests run.
 */
function spawnDetached(req: SpawnRequest): Spawned {
  let fd: number | undefined;
  try {
    // O_APPEND: every write lands at the current end, so a copy-truncate rotation makes the
    // child continue at offset 0 instead of leaving a hole the size of the old log.
    fd = openSync(req.logFile, 'a');
    // detached = setsid(): the child leads a new session and process group (pgid = pid) and
    // gets no SIGHUP when the agent dies.
    const child = spawn(req.path, req.args, { detached: true, cwd: req.dir, env: req.env, stdio: ['ignore', fd, fd], uid: req.uid, gid: req.gid });
    if (child.pid === undefined) {
      // ENOENT, EACCES and the like are reported through 'error' on the next tick.
      return { pid: 0, startTicks: undefined, exited: new Promise((resolve) => child.once('error', (err) => resolve({ error: errorInfo(err) }))) };
    }
    const exited = new Promise<RawExit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    return { pid: child.pid, startTicks: processStartTime(child.pid), exited };
  } catch (err) {
    // Other spawn errors (EPERM from setuid, bad arguments) and log-file errors throw.
    return failedSpawn(errorInfo(err));
  } finally {
    // The child holds its own copy; keeping ours would leak one fd per start.
    if (fd !== undefined) closeSync(fd);
  }
}

function errorInfo(err: unknown): { message: string; code?: string; syscall?: string } {
  const e = err as NodeJS.ErrnoException;
  return { message: e.message, code: e.code, syscall: e.syscall };
}

/** A spawn that did not start: pid 0, and `exited` holds why. */
export function failedSpawn(error: { message: string; code?: string; syscall?: string }): Spawned {
  return { pid: 0, startTicks: undefined, exited: Promise.resolve({ error }) };
}

/** Runs `spec` in this thread (blocking it until the child has exec'd). */
export function spawnProcess(spec: ProcessSpec): RunningProcess {
  const startedAt = Date.now();
  const req = spawnRequest(spec);
  if (req instanceof Error) return failedProcess(startedAt, spec, req);
  return running(startedAt, spec, spawnDetached(req));
}

/** Runs `spec` through `spawner` (drover-spawner: this thread goes on meanwhile). */
export async function startProcess(spec: ProcessSpec, spawner: Spawner): Promise<RunningProcess> {
  const startedAt = Date.now();
  const req = spawnRequest(spec);
  if (req instanceof Error) return failedProcess(startedAt, spec, req);
  return running(startedAt, spec, await spawner(req));
}

/** The request for `spec`, its log directory made (whichever spawner opens the file). */
function spawnRequest(spec: ProcessSpec): SpawnRequest | Error {
  try {
    mkdirSync(dirname(spec.logFile), { recursive: true });
    return { path: spec.path, args: spec.args, env: spec.env, dir: spec.dir, logFile: spec.logFile, ...userIds(spec.user) };
  } catch (err) {
    return err as Error;
  }
}

function failedProcess(startedAt: number, spec: ProcessSpec, err: Error): RunningProcess {
  return running(startedAt, spec, failedSpawn(errorInfo(err)));
}

function running(startedAt: number, spec: ProcessSpec, s: Spawned): RunningProcess {
  // Only a spawn that failed needs the spec (for its message): the handle of a running
  // process does not keep it, with its environment, for as long as the process runs.
  return new ProcessHandle(s.pid, s.pid, startedAt, s.startTicks, s.exited, s.pid === 0 ? (raw) => exitInfo(raw, spec) : exitInfo);
}

function exitInfo(raw: RawExit, spec?: ProcessSpec): ExitInfo {
  if ('error' in raw) return spawnFailure(raw.error, spec);
  return { code: raw.code, signal: raw.signal, reason: raw.reason ?? describeExit(raw.code, raw.signal) };
}

/** Resolves once `pid` no longer runs with these start ticks (gone, a zombie, or reused). */
export function watchUntilGone(pid: number, startTicks: number | undefined): Promise<void> {
  return new Promise((resolve) => {
    const timer = setInterval(() => {
      // Compares start ticks rather than kill(pid, 0): that also succeeds for a zombie (an
      // orphan PID 1 has not reaped yet) and for a reused pid.
      if (startTicks !== undefined && processStartTime(pid) === startTicks) return;
      clearInterval(timer);
      resolve();
    }, ADOPTED_POLL_MS);
  });
}

/**
 * Watches a process started by an earlier agent run. It is not our child, so its exit status
 * is lost; `exited` resolves when the pid is gone. Check `processStartTime(pid)` against the
 * recorded value first: the pid may have been reused.
 */
export function adoptProcess(pid: number, pgid: number, startedAt: number): RunningProcess | undefined {
  const startTicks = processStartTime(pid);
  if (startTicks === undefined) return undefined;
  return new ProcessHandle(pid, pgid, startedAt, startTicks, watchUntilGone(pid, startTicks), unsupervisedExit);
}

const unsupervisedExit = (): ExitInfo => ({ code: null, signal: null, reason: 'exited while not supervised (exit status unknown)' });

/**
 * A daemon holds one per supervised process, thousands of them: the methods are shared, and
 * a single reaction to the exit both marks the handle done and describes the exit.
 */
class ProcessHandle<Exit> implements RunningProcess {
  readonly exited: Promise<ExitInfo>;
  private done = false;
  private stopping: Promise<ExitInfo> | undefined;

  constructor(
    readonly pid: number,
    readonly pgid: number,
    readonly startedAt: number,
    readonly startTicks: number | undefined,
    exit: Promise<Exit>,
    describe: (exit: Exit) => ExitInfo,
  ) {
    this.exited = exit.then((e) => {
      this.done = true;
      return describe(e);
    });
  }

  alive(): boolean {
    return !this.done;
  }

  stop(graceMs: number): Promise<ExitInfo> {
    // pid 0 never started: there is no group, and kill(-0) would hit the agent's own group.
    this.stopping ??= (this.pid === 0 ? Promise.resolve() : stopProcessGroup(this.pgid, graceMs)).then(() => this.exited);
    return this.stopping;
  }
}

/** True while any member of the group is still running (zombies do not count). */
export function processGroupAlive(pgid: number): boolean {
  if (!signalGroup(pgid, 0)) return false;
  // kill() also finds zombies. Members orphaned by the leader are reparented to PID 1, which
  // in a container may reap late or never, so only members that still run count.
  const liveMember = (pid: number): boolean => {
    const s = readStat(pid);
    return s !== undefined && s.pgrp === pgid && !ended(s);
  };
  if (liveMember(pgid)) return true; // usually the leader is still there: no scan needed
  let pids: string[];
  try {
    pids = readdirSync('/proc');
  } catch {
    return true; // no procfs: trust kill()
  }
  return pids.some((p) => /^\d+$/.test(p) && liveMember(Number(p)));
}

/** SIGTERM the group, wait up to graceMs, SIGKILL it, and resolve once no member remains. */
export async function stopProcessGroup(pgid: number, graceMs: number): Promise<void> {
  if (!processGroupAlive(pgid)) return;
  signalGroup(pgid, 'SIGTERM');
  if (await waitGroupGone(pgid, graceMs)) return;
  signalGroup(pgid, 'SIGKILL');
  await waitGroupGone(pgid, Infinity);
}

async function waitGroupGone(pgid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (processGroupAlive(pgid)) {
    if (Date.now() >= deadline) return false;
    await sleep(GROUP_POLL_MS);
  }
  return true;
}

/** Signals every member of the group; false when the group no longer exists. */
function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  // kill(-0) is the agent's own group and kill(-1) every process it may signal.
  if (!Number.isInteger(pgid) || pgid <= 1) throw new RangeError(`refusing to signal process group ${pgid}`);
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ESRCH') return false;
    if (code === 'EPERM' && signal === 0) return true; // exists, but runs as someone else
    throw err;
  }
}

/**
 * /proc files are read into this one buffer, grown when a file fills it and kept so (an
 * environment of a few MiB would stay). readFileSync reads a file of unknown size, as all of
 * /proc are, into fresh 64 KiB buffers (two per file), freed only by a later GC: a sweep of
 * 1,000 processes allocated 128 MiB of native memory and left glibc's arena at its peak.
 */
let procBuffer = Buffer.allocUnsafe(16 * 1024);

/** A /proc file's bytes, valid until the next call; undefined when it cannot be read (gone, another user's). */
function readProcFile(path: string): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return undefined;
  }
  try {
    let length = 0;
    for (;;) {
      const n = readSync(fd, procBuffer, length, procBuffer.length - length, null);
      if (n === 0) return procBuffer.subarray(0, length);
      length += n;
      if (length === procBuffer.length) {
        const bigger = Buffer.allocUnsafe(procBuffer.length * 2);
        procBuffer.copy(bigger, 0, 0, length);
        procBuffer = bigger;
      }
    }
  } catch {
    return undefined; // exited between the open and the read
  } finally {
    closeSync(fd);
  }
}

/** Live processes (of this user) whose environment holds `name=value`, with their process group. */
export function processesWithEnv(name: string, value: string): { pid: number; pgid: number }[] {
  const needle = Buffer.from(`${name}=${value}\0`);
  const found: { pid: number; pgid: number }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const env = readProcFile(`/proc/${entry}/environ`);
    if (env === undefined) continue; // gone, or another user's
    const at = env.indexOf(needle);
    if (at < 0 || (at > 0 && env[at - 1] !== 0)) continue;
    const s = readStat(Number(entry));
    if (s && !ended(s)) found.push({ pid: Number(entry), pgid: s.pgrp });
  }
  return found;
}

/** /proc/<pid>/stat field 22: start time in clock ticks since boot; undefined once exited. */
export function processStartTime(pid: number): number | undefined {
  const s = readStat(pid);
  return s === undefined || ended(s) ? undefined : s.startTicks;
}

/** What readStat takes from a /proc stat file. */
interface Stat {
  /** field 3: R running or runnable, S sleeping (interruptible), D in I/O, Z zombie, ... */
  state: string;
  /** field 5 */
  pgrp: number;
  /** fields 14 + 15, utime + stime: CPU time of all the process's threads, in clock ticks */
  cpuTicks: number;
  /** field 20 */
  threads: number;
  /** field 22: start time in clock ticks since boot */
  startTicks: number;
}

/** A zombie (exited, not yet reaped) or dead. */
const ended = (s: Stat): boolean => s.state === 'Z' || s.state === 'X';

/**
 * Calls `each(n, value)` with every field of `bytes` from `start` on (n counted from 0), read
 * as an unsigned decimal (a field that is not one gives a meaningless value), until `each`
 * returns true. Fields end at a space or a newline, and at the end of the bytes.
 */
function eachDecimalField(bytes: Buffer, start: number, each: (n: number, value: number) => boolean | void): void {
  let n = 0;
  let value = 0;
  let inField = false;
  for (let i = start; i <= bytes.length; i++) {
    const c = i < bytes.length ? bytes[i]! : 0x20;
    if (c !== 0x20 && c !== 0x0a) {
      value = value * 10 + (c - 0x30);
      inField = true;
      continue;
    }
    if (inField && each(n++, value)) return;
    value = 0;
    inField = false;
  }
}

/**
 * Fields 3, 5, 14, 15, 20 and 22 of /proc/<pid>/stat (or of a thread's, /proc/<pid>/task/<tid>/stat),
 * read from its bytes: a sweep reads one per process, and splitting the text made some fifty
 * strings of each.
 */
function readStat(pid: number, tid?: number): Stat | undefined {
  const bytes = readProcFile(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`);
  if (bytes === undefined) return undefined;
  // Field 2 (comm) may hold spaces and parentheses: fields are counted after its last ')'.
  const first = bytes.lastIndexOf(0x29) + 2;
  const stat: Stat = { state: String.fromCharCode(bytes[first]!), pgrp: 0, cpuTicks: 0, threads: 0, startTicks: 0 };
  let complete = false;
  eachDecimalField(bytes, first, (n, value) => {
    const field = n + 3;
    if (field === 5) stat.pgrp = value;
    else if (field === 14 || field === 15) stat.cpuTicks += value;
    else if (field === 20) stat.threads = value;
    else if (field === 22) {
      stat.startTicks = value;
      complete = true;
    }
    return complete;
  });
  return complete ? stat : undefined;
}

/** The pids in /proc/<pid>/task/<tid>/children; undefined when it cannot be read. */
function childPids(pid: number, tid: number): number[] | undefined {
  const bytes = readProcFile(`/proc/${pid}/task/${tid}/children`);
  if (bytes === undefined) return undefined;
  const pids: number[] = [];
  eachDecimalField(bytes, 0, (_, child) => void pids.push(child));
  return pids;
}

/** What a process and its descendants are doing, as one sample (processTreeActivity). */
export interface TreeActivity {
  /** every thread of every process in the tree sleeps (state S; one that has ended is done) */
  blocked: boolean;
  /** CPU ticks of the processes sampled (all of the tree's when blocked) */
  cpuTicks: number;
  /** a checksum of the tree's processes and thread counts: it changes when a member comes or goes */
  members: number;
}

/** Past this many processes a tree is not sampled (processTreeActivity says it cannot tell). */
const MAX_TREE = 256;

/**
 * One sample of `pid` (recognised by its start ticks) and every process below it, through
 * /proc: each thread's state, the CPU time, the members. Undefined when it cannot tell: the
 * process is gone, a zombie, its pid reused, /proc (or the children files) cannot be read, or
 * the tree is over 256 processes. Stops at the first process or thread that is not asleep.
 */
export function processTreeActivity(pid: number, startTicks: number): TreeActivity | undefined {
  const leader = readStat(pid);
  if (leader === undefined || leader.startTicks !== startTicks || ended(leader)) return undefined;
  const activity: TreeActivity = { blocked: true, cpuTicks: 0, members: 0 };
  const busy = (): TreeActivity => ({ ...activity, blocked: false });
  const tree: { pid: number; stat: Stat }[] = [{ pid, stat: leader }];
  for (let i = 0; i < tree.length; i++) {
    const { pid: p, stat } = tree[i]!;
    if (stat.state !== 'S') return busy();
    activity.cpuTicks += stat.cpuTicks;
    activity.members = (activity.members * 31 + p * 8 + stat.threads) % 2_147_483_647;
    const tids = stat.threads > 1 ? threadIds(p) : [p];
    if (tids === undefined) return p === pid ? undefined : busy();
    for (const tid of tids) {
      if (tid !== p) {
        const thread = readStat(p, tid);
        // a thread that has just ended reads as gone or a zombie: done, not busy
        if (thread !== undefined && thread.state !== 'S' && !ended(thread)) return busy();
      }
      const children = childPids(p, tid);
      // the leader's main thread is there, so no such file means a kernel without them
      if (children === undefined && p === pid && tid === p) return undefined;
      for (const child of children ?? []) {
        const s = readStat(child);
        if (s === undefined || ended(s)) continue; // it has ended: not at work
        if (tree.length >= MAX_TREE) return undefined;
        tree.push({ pid: child, stat: s });
      }
    }
  }
  return activity;
}

/** The thread ids of `pid` (/proc/<pid>/task); undefined when it cannot be read. */
function threadIds(pid: number): number[] | undefined {
  try {
    return readdirSync(`/proc/${pid}/task`).map(Number);
  } catch {
    return undefined;
  }
}

/** uid/gid for spawn. Only root may switch users; otherwise everything runs as the agent. */
function userIds(user: string | undefined): { uid?: number; gid?: number } {
  if (user === undefined || process.getuid?.() !== 0) return {};
  const numeric = /^\d+$/.test(user) ? Number(user) : undefined;
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const [name, , uid, gid] = line.split(':');
    if (!/^\d+$/.test(uid ?? '') || !/^\d+$/.test(gid ?? '')) continue;
    if (name === user || Number(uid) === numeric) return { uid: Number(uid), gid: Number(gid) };
  }
  // A bare uid need not have an entry (common in containers); never fall back to gid 0.
  if (numeric !== undefined) return { uid: numeric, gid: numeric };
  throw new Error(`unknown user "${user}"`);
}

function describeExit(code: number | null, signal: string | null): string {
  return signal !== null ? `killed by signal ${signal}` : `exited with code ${code}`;
}

function spawnFailure(e: { message: string; code?: string; syscall?: string }, spec: ProcessSpec | undefined): ExitInfo {
  let reason = `spawn failed: ${e.message}`;
  if (spec && e.syscall?.startsWith('spawn') && e.code !== undefined) {
    // A missing cwd is reported as ENOENT of the program, which sends people looking elsewhere.
    const missingDir = e.code === 'ENOENT' && spec.dir !== undefined && !existsSync(spec.dir);
    reason = missingDir ? `spawn ENOENT: working directory ${spec.dir} does not exist` : `spawn ${e.code}: ${spec.path}`;
  }
  return { code: null, signal: null, reason };
}

/** Read at the size limit: a byte is there exactly when the file is longer. */
const probeByte = Buffer.alloc(1);

/**
 * Whether `file` holds more than `maxBytes` (false when it does not exist). The agent asks
 * this of every log every 5 s: fs/promises' stat allocated about 3 KiB per call and statSync
 * about 1 KiB (a Stats with four Dates), 0.6 and 0.2 MiB/s of garbage with 1,000 instances,
 * while an open, a one-byte read and a close allocate next to nothing.
 */
function longerThan(file: string, maxBytes: number): boolean {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  try {
    return readSync(fd, probeByte, 0, 1, maxBytes) === 1;
  } finally {
    closeSync(fd);
  }
}

/**
 * Copy-truncate rotation: the child keeps writing to its fd, so the file cannot be renamed
 * away. Lines written between the copy and the truncate are lost. Not safe to run twice
 * concurrently on the same file.
 */
export async function rotateLogIfLarge(logFile: string, maxBytes: number, keep: number): Promise<boolean> {
  if (!longerThan(logFile, maxBytes)) return false;
  // Renaming onto .keep drops the oldest copy.
  for (let i = keep - 1; i >= 1; i--) {
    await rename(`${logFile}.${i}`, `${logFile}.${i + 1}`).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }
  if (keep >= 1) await copyFile(logFile, `${logFile}.1`);
  await truncate(logFile, 0);
  return true;
}

/** The last maxBytes of the current log ('' when nothing was logged yet). */
export async function readLogTail(logFile: string, maxBytes: number): Promise<string> {
  let file;
  try {
    file = await open(logFile, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw err;
  }
  try {
    const { size } = await file.stat();
    const length = Math.min(size, maxBytes);
    const buf = Buffer.alloc(length);
    const { bytesRead } = await file.read(buf, 0, length, size - length);
    // Skip UTF-8 continuation bytes so a character cut in half does not show up as garbage.
    let start = 0;
    while (start < bytesRead && (buf[start] & 0xc0) === 0x80) start++;
    return buf.toString('utf8', start, bytesRead);
  } finally {
    await file.close();
  }
}
