// `drover ...` as a child process, with its output kept and searchable: for tests that need
// real separate processes (serve replicas, remote agents, SIGKILL and restart).

import { spawn, type ChildProcess } from 'node:child_process';
import { packagePath } from '../src/package-root.js';

/** the `drover` command as installed (the launcher, see bin/drover) */
export const DROVER_BIN = packagePath('bin', 'drover');

export interface DroverCli {
  name: string;
  child: ChildProcess;
  /** every stdout/stderr line so far, for failure messages */
  output: string[];
  exited: Promise<void>;
  /** resolves with the first line matching */
  line(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
}

/** Every child still running, so a suite's `after` can kill what a failed test left. */
export const liveClis = new Set<DroverCli>();

export function droverCli(name: string, args: string[], extraEnv: Record<string, string> = {}): DroverCli {
  const env = { ...process.env, ...extraEnv };
  delete env.NODE_TEST_CONTEXT; // the child is not a test runner's child file
  const child = spawn(DROVER_BIN, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  const waiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  const onData = (buf: Buffer) => {
    for (const l of buf.toString('utf8').split('\n').filter(Boolean)) {
      output.push(l);
      for (const w of [...waiters]) {
        const m = l.match(w.re);
        if (m) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(m);
        }
      }
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const c: DroverCli = {
    name,
    child,
    output,
    exited,
    line(re, timeoutMs = 15_000) {
      const seen = output.map((l) => l.match(re)).find((m) => m);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${re} from ${name}; output:\n${output.join('\n')}`)), timeoutMs);
        waiters.push({
          re,
          resolve: (m) => {
            clearTimeout(timer);
            resolve(m);
          },
        });
        void exited.then(() => {
          clearTimeout(timer);
          reject(new Error(`${name} exited (${child.exitCode ?? child.signalCode}) before ${re}; output:\n${output.join('\n')}`));
        });
      });
    },
  };
  liveClis.add(c);
  void exited.then(() => liveClis.delete(c));
  return c;
}

export async function killCli(c: DroverCli, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (c.child.exitCode === null && c.child.signalCode === null) {
    if (signal === 'SIGKILL') c.child.kill('SIGCONT'); // a stopped (SIGSTOP) child dies of SIGKILL too; be plain about it
    c.child.kill(signal);
  }
  await c.exited;
}
