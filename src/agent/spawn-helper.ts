// The agent's link to drover-spawner (spawner/drover-spawner.c), a small program that forks
// and execs for it. Node forks the whole agent to start a child, which costs in proportion to
// the agent's memory (6-8 ms of CPU per start at 100+ MiB, on this project's VM) and blocks
// its event loop until the exec; the spawner forks a process of a few hundred KiB, and the
// agent only writes a request and reads a line back. Started on first use; one per agent.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';
import { failedSpawn, processStartTime, watchUntilGone, type RawExit, type SpawnRequest, type Spawned } from './executor.js';

/** Built next to this module by `npm run build` (a C compiler is needed anyway, for SQLite). */
export const SPAWNER_PATH = fileURLToPath(new URL('./spawner/drover-spawner', import.meta.url));

const errnoNames = new Map(Object.entries(constants.errno).map(([name, n]) => [n, name]));
const signalNames = new Map(Object.entries(constants.signals).map(([name, n]) => [n, name]));

interface Child {
  startTicks: number | undefined;
  exit(raw: RawExit): void;
}

interface Pending {
  request: SpawnRequest;
  answer(s: Spawned): void;
}

export class SpawnHelper {
  private helper: ChildProcess | undefined;
  /** spawns sent and not answered yet, by request id */
  private readonly pending = new Map<number, Pending>();
  /** running children, by pid */
  private readonly children = new Map<number, Child>();
  private nextId = 1;
  private partial = '';
  private closed = false;

  /** True when the spawner program was built (else the agent spawns in its own thread). */
  static available(): boolean {
    return existsSync(SPAWNER_PATH);
  }

  /** Spawns sent whose pid is not known here yet: a process of ours may exist that nothing tracks. */
  get spawning(): number {
    return this.pending.size;
  }

  readonly spawn = (request: SpawnRequest): Promise<Spawned> => {
    if (this.closed) return Promise.reject(new Error('the spawner is closed'));
    const env = Object.entries(request.env).map(([k, v]) => `${k}=${v}`);
    const id = this.nextId++;
    const fields = [String(id), String(request.uid ?? -1), String(request.gid ?? -1), request.path, request.dir ?? '', request.logFile];
    fields.push(String(request.args.length + 1), request.path, ...request.args, String(env.length), ...env);
    // Node's own spawn refuses these too: a NUL would cut a field short.
    if (fields.some((f) => f.includes('\0'))) return Promise.resolve(failedSpawn({ message: 'spawn arguments and environment must not contain NUL bytes', code: 'ERR_INVALID_ARG_VALUE' }));
    const body = Buffer.from(`${fields.join('\0')}\0`);
    const header = Buffer.alloc(4);
    header.writeUInt32LE(body.length);
    return new Promise((answer) => {
      this.pending.set(id, { request, answer });
      const stdin = this.started().stdin!;
      this.holdLoop();
      stdin.write(header);
      stdin.write(body);
    });
  };

  /** The spawner leaves once its last child has exited (until then it reaps and reports them). */
  close(): void {
    this.closed = true;
    this.leaveIfDone();
    this.holdLoop();
  }

  /**
   * The event loop waits for answers to spawns, and for children's exits until the agent
   * closes: a closed agent's process may end while its children run on (they are adopted).
   */
  private holdLoop(): void {
    const out = this.helper?.stdout as unknown as { ref(): void; unref(): void } | undefined;
    if (this.pending.size > 0 || (!this.closed && this.children.size > 0)) out?.ref();
    else out?.unref();
  }

  private started(): ChildProcess {
    if (this.helper) return this.helper;
    const helper = spawn(SPAWNER_PATH, [], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.helper = helper;
    // Only its reports keep the agent's process alive, and only while awaited (holdLoop).
    helper.unref();
    (helper.stdin as unknown as { unref(): void }).unref();
    helper.stdin!.on('error', () => {}); // an 'exit' follows, which handles it
    // 'close' comes after the last report was read; 'error' alone when it could not start.
    helper.on('error', () => this.lost(helper));
    helper.on('close', () => this.lost(helper));
    helper.stdout!.setEncoding('latin1').on('data', (text: string) => this.read(text));
    return helper;
  }

  private read(text: string): void {
    const lines = (this.partial + text).split('\n');
    this.partial = lines.pop()!;
    for (const line of lines) {
      const [kind, a, b, c] = line.split(' ');
      if (kind === 'X') this.exited(Number(a), b === '-' ? null : Number(b), c === '-' ? null : (signalNames.get(Number(c)) ?? `signal ${c}`));
      else this.answered(kind === 'S', Number(a), Number(b), c);
    }
    this.holdLoop();
  }

  private answered(started: boolean, id: number, pidOrErrno: number, step: string | undefined): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (!started) {
      const code = errnoNames.get(pidOrErrno) ?? `errno ${pidOrErrno}`;
      // The syscall names the step the way Node's spawn does, so failures read the same.
      const syscall = step === 'exec' || step === 'chdir' ? `spawn ${p.request.path}` : step;
      const message = step === 'open-log' ? `${code}: cannot open log file ${p.request.logFile}` : `${syscall} ${code}`;
      p.answer(failedSpawn({ message, code, syscall }));
      this.leaveIfDone();
      return;
    }
    const pid = pidOrErrno;
    const startTicks = processStartTime(pid);
    const exited = new Promise<RawExit>((exit) => this.children.set(pid, { startTicks, exit }));
    p.answer({ pid, startTicks, exited });
  }

  private exited(pid: number, code: number | null, signal: string | null): void {
    const c = this.children.get(pid);
    if (!c) return;
    this.children.delete(pid);
    c.exit({ code, signal });
    this.leaveIfDone();
  }

  private leaveIfDone(): void {
    // Only once no child is left: leaving earlier would leave its exit unreported.
    if (this.closed && this.pending.size === 0 && this.children.size === 0) this.helper?.stdin?.end();
  }

  /**
   * A spawner that died took its children's exit reports with it. Each is watched through
   * /proc until it is gone (exit status unknown, as for an adopted process); a spawn it had
   * not answered is reported as failed. Should that child exist after all, it is untracked,
   * and the agent's sweep stops it. The next spawn starts a new spawner.
   */
  private lost(helper: ChildProcess): void {
    if (this.helper !== helper) return;
    this.helper = undefined;
    this.partial = '';
    for (const p of this.pending.values()) p.answer(failedSpawn({ message: 'the spawner stopped' }));
    this.pending.clear();
    for (const [pid, c] of this.children) {
      void watchUntilGone(pid, c.startTicks).then(() => c.exit({ code: null, signal: null, reason: 'exited after its spawner stopped (exit status unknown)' }));
    }
    this.children.clear();
  }
}
