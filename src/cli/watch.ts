// `drover ls -w` and the progress of `desire --wait` / `scale --wait`. Both follow the BBS
// event stream and re-read what they show after each burst of changes, so they see every
// change without polling and without trusting event contents for the numbers.

import { coalesce, followEvents } from '../../ui/sse.js';
import { bbsCall, type ApiTarget } from './client.js';
import { fetchListing, renderListing, type ClientOptions } from './commands.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface WaitOptions extends ClientOptions {
  wait?: boolean;
  /** seconds */
  timeout?: string;
}

export const DEFAULT_WAIT_SECONDS = 120;

/**
 * Runs `check` on connecting and after each burst of events until it returns true (→ true),
 * `timeoutMs` passes (→ false), `check` throws or the server refuses the caller (→ rejects).
 */
function untilDone(opts: ApiTarget, check: () => Promise<boolean>, timeoutMs?: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const stop = new AbortController();
    const finish = (result: boolean | Error) => {
      if (stop.signal.aborted) return;
      stop.abort();
      clearTimeout(timer);
      if (result instanceof Error) reject(result);
      else resolve(result);
    };
    const timer = timeoutMs === undefined ? undefined : setTimeout(() => finish(false), timeoutMs);
    const soon = coalesce(async () => {
      if (stop.signal.aborted) return;
      try {
        if (await check()) finish(true);
      } catch (e) {
        finish(e as Error);
      }
    });
    followEvents(new URL('/v1/events?format=json', opts.api).href, {
      headers: opts.token ? { authorization: `Bearer ${opts.token}` } : {},
      signal: stop.signal,
      onEvent: soon,
      // a (re)connect may have missed changes: check again
      onStatus: (live, detail) => (live ? soon() : console.error(`drover: event stream lost (${detail}), reconnecting`)),
    }).catch(finish);
  });
}

/** Prints the listing now and after every change until interrupted. */
export async function watchList(opts: ClientOptions & { domain?: string }): Promise<void> {
  await untilDone(opts, async () => {
    try {
      const listing = await fetchListing(opts);
      if (opts.json) console.log(JSON.stringify(listing));
      else {
        const clear = process.stdout.isTTY ? '\x1b[2J\x1b[H' : '\n';
        process.stdout.write(`${clear}${renderListing(listing)}\n\n${new Date().toLocaleTimeString()}  watching for changes (Ctrl-C stops)\n`);
      }
    } catch (e) {
      // the server may be restarting: the stream's reconnect triggers the next try
      console.error(`drover: ${(e as Error).message}`);
    }
    return false;
  });
}

interface Progress {
  process_guid: string;
  target: number;
  running: number;
  /** instances by state */
  states: Record<string, number>;
  done: boolean;
  /** why instances are not running: crash reasons, placement errors */
  problems: string[];
}

async function progressOf(opts: ApiTarget, guid: string): Promise<Progress> {
  const [desired, groups] = await Promise.all([
    bbsCall<Json>(opts, '/v1/desired_lrps/get_by_process_guid.r2', { process_guid: guid }),
    bbsCall<Json>(opts, '/v1/actual_lrp_groups/list_by_process_guid', { process_guid: guid }),
  ]);
  const d: Json = desired.desired_lrp ?? {};
  if (d.enabled === false) throw new Error(`${guid} is disabled: ${d.disabled_reason || 'no reason given'}`);
  const instances: Json[] = (groups.actual_lrp_groups ?? []).map((g: Json) => g.instance ?? g.evacuating);
  const states: Record<string, number> = {};
  for (const a of instances) states[a.state] = (states[a.state] ?? 0) + 1;
  // every-cell runs one instance per eligible cell, whatever `instances` says
  const target = d.placement?.strategy === 'every-cell' ? instances.length : (d.instances ?? 0);
  const running = instances.filter((a) => a.state === 'RUNNING' && !a.stop_requested).length;
  const problems = [...new Set(instances.filter((a) => a.state !== 'RUNNING').map((a) => a.crash_reason || a.placement_error).filter(Boolean))];
  return { process_guid: guid, target, running, states, done: running === target && instances.length === target, problems };
}

function describe(p: Progress): string {
  const others = Object.entries(p.states).filter(([s]) => s !== 'RUNNING').map(([s, n]) => `${n} ${s}`);
  const problems = p.problems.length ? `; ${p.problems.join('; ')}` : '';
  return `${p.process_guid}: ${p.running}/${p.target} RUNNING${others.length ? ` (${others.join(', ')})` : ''}${problems}`;
}

/** Shows progress until `guid` has exactly its target number of instances, all RUNNING. */
export async function waitForRunning(opts: WaitOptions, guid: string): Promise<void> {
  const seconds = Number(opts.timeout ?? DEFAULT_WAIT_SECONDS);
  if (!(seconds > 0)) throw new Error(`--timeout must be a positive number of seconds, got ${opts.timeout}`);
  const tty = !opts.json && process.stdout.isTTY;
  let last: Progress | undefined;
  let shown = '';
  const reached = await untilDone(
    opts,
    async () => {
      last = await progressOf(opts, guid);
      const line = describe(last);
      if (line === shown) return last.done;
      shown = line;
      if (opts.json) console.log(JSON.stringify(last));
      else if (tty) process.stdout.write(`\r\x1b[K${line}`);
      else console.log(line);
      return last.done;
    },
    seconds * 1000,
  );
  if (tty) process.stdout.write('\n');
  if (!reached) throw new Error(`timed out after ${seconds}s waiting for ${last ? describe(last) : `${guid} (no progress read)`}`);
}

/** The --wait tail of a command that changed `guid`. */
export async function waitIfAsked(opts: WaitOptions, guid: string): Promise<void> {
  if (opts.wait) await waitForRunning(opts, guid);
}
