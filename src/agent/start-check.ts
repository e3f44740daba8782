// When does a started process count as RUNNING: it stayed alive through the start window, or
// settled before the window ended, and its health check (a TCP port or a command), if it has
// one, passed.

import { connect } from 'node:net';
import { spawn } from 'node:child_process';
import type { HealthCheck } from '../model/lrp.js';
import { processTreeActivity, type RunningProcess } from './executor.js';

const CHECK_INTERVAL_MS = 100;

/** How often the processes in their start window are sampled (clock ticks are 10 ms). */
const SETTLE_SAMPLE_MS = 10;
/** A tree counts as settled once it has stayed asleep with no CPU progress this long. */
const SETTLE_SPAN_MS = 20;

interface SettleWatch {
  pid: number;
  startTicks: number;
  /** since when the tree has been seen asleep with this CPU time and these members */
  quiet?: { at: number; cpuTicks: number; members: number };
  settled: () => void;
}

/** The processes in their start window: one timer samples them all. */
const watched = new Set<SettleWatch>();
let sampler: NodeJS.Timeout | undefined;

function sampleWatched(): void {
  const now = Date.now();
  for (const w of watched) {
    const a = processTreeActivity(w.pid, w.startTicks);
    if (a === undefined) {
      watched.delete(w); // gone, or no /proc to tell: its exit or the plain window decides
    } else if (!a.blocked) {
      w.quiet = undefined;
    } else if (w.quiet === undefined || w.quiet.cpuTicks !== a.cpuTicks || w.quiet.members !== a.members) {
      w.quiet = { at: now, cpuTicks: a.cpuTicks, members: a.members };
    } else if (now - w.quiet.at >= SETTLE_SPAN_MS) {
      watched.delete(w);
      w.settled();
    }
  }
  if (watched.size === 0) {
    clearInterval(sampler);
    sampler = undefined;
  }
}

/**
 * Resolves once the process and everything below it have visibly finished starting: every
 * thread asleep and no CPU time spent across SETTLE_SPAN_MS of samples. Never resolves when
 * that cannot be seen (no /proc, the process gone); `cancel` stops watching.
 */
function whenSettled(pid: number, startTicks: number): { settled: Promise<void>; cancel: () => void } {
  let w!: SettleWatch;
  const settled = new Promise<void>((resolve) => {
    w = { pid, startTicks, settled: resolve };
  });
  watched.add(w);
  sampler ??= setInterval(sampleWatched, SETTLE_SAMPLE_MS).unref();
  return { settled, cancel: () => watched.delete(w) };
}

/** The start window: until it ends, the process exits, or the process has settled. */
async function startWindow(proc: RunningProcess, windowMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const watch = proc.startTicks === undefined ? undefined : whenSettled(proc.pid, proc.startTicks);
  const ends: Promise<unknown>[] = [proc.exited, new Promise((r) => (timer = setTimeout(r, windowMs)))];
  if (watch) ends.push(watch.settled);
  try {
    await Promise.race(ends);
  } finally {
    clearTimeout(timer);
    watch?.cancel();
  }
}

function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.setTimeout(500);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

function commandSucceeds(command: string[], env: Record<string, string>): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn(command[0]!, command.slice(1), { stdio: 'ignore', env, timeout: 5000 });
    child.once('error', () => resolve(false));
    child.once('exit', (code) => resolve(code === 0));
  });
}

/**
 * Resolves true once the process counts as started, false if it died or timed out first. The
 * window ends early once the process has settled (whenSettled): a program that fails at once
 * is still loading (busy) or gone by then, one that is asleep with no CPU progress waits for
 * work. A health check, if any, decides after the window as before.
 */
export async function waitUntilStarted(
  proc: RunningProcess,
  opts: { startWindowMs: number; startTimeoutMs: number; healthCheck?: HealthCheck; env: Record<string, string> },
): Promise<boolean> {
  const deadline = Date.now() + Math.max(opts.startTimeoutMs, opts.startWindowMs);
  await startWindow(proc, opts.startWindowMs);
  const check = opts.healthCheck;
  // alive() turns false as the exit is known: no reaction of its own is kept per process.
  if (!check?.tcpPort && !check?.command?.length) return proc.alive();
  while (proc.alive() && Date.now() < deadline) {
    const healthy = check.tcpPort ? await tcpOpen(check.tcpPort) : await commandSucceeds(check.command!, opts.env);
    if (healthy) return proc.alive();
    await new Promise((r) => setTimeout(r, CHECK_INTERVAL_MS));
  }
  return false;
}
