// When does a started process count as RUNNING: it stayed alive through the start window,
// and its health check (a TCP port or a command), if it has one, passed.

import { connect } from 'node:net';
import { spawn } from 'node:child_process';
import type { HealthCheck } from '../model/lrp.js';
import type { RunningProcess } from './executor.js';

const CHECK_INTERVAL_MS = 100;

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

/** Resolves true once the process counts as started, false if it died or timed out first. */
export async function waitUntilStarted(
  proc: RunningProcess,
  opts: { startWindowMs: number; startTimeoutMs: number; healthCheck?: HealthCheck; env: Record<string, string> },
): Promise<boolean> {
  let exited = false;
  void proc.exited.then(() => (exited = true));
  const deadline = Date.now() + Math.max(opts.startTimeoutMs, opts.startWindowMs);
  await Promise.race([proc.exited, new Promise((r) => setTimeout(r, opts.startWindowMs))]);
  const check = opts.healthCheck;
  if (!check?.tcpPort && !check?.command?.length) return !exited;
  while (!exited && Date.now() < deadline) {
    const healthy = check.tcpPort ? await tcpOpen(check.tcpPort) : await commandSucceeds(check.command!, opts.env);
    if (healthy) return !exited;
    await new Promise((r) => setTimeout(r, CHECK_INTERVAL_MS));
  }
  return false;
}
