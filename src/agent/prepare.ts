// What the agent does between claiming an instance and spawning it: fetch and unpack the
// LRP's attachment into the working directory, expand an mservice's macros, and fence a
// leader instance to its agent.

import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { DesiredLrp } from '../model/lrp.js';
import { storedMservice } from '../model/mservice.js';
import { findDownloadAction, unpackAttachment } from './attachments.js';
import { expandMacros, macroValues } from './macros.js';

export interface PrepareContext {
  cellId: string;
  /** the cell's data dir: attachments are cached in <dataDir>/attachments */
  dataDir: string;
  /** the control-plane URLs (%WEBSERVERS%) */
  webservers: string[];
  /** GETs a path from the control plane */
  fetchBytes(path: string): Promise<Buffer>;
}

export interface Command {
  path: string;
  args: string[];
  env: Record<string, string>;
}

export async function prepareInstance(c: PrepareContext, d: DesiredLrp, cmd: Command, dir: string, logPath: string): Promise<Command> {
  const download = findDownloadAction(d.setup);
  if (download) await unpackAttachment(download, c.fetchBytes, join(c.dataDir, 'attachments'), dir);
  const expanded = storedMservice(d) ? expandMacros(cmd, macroValues({ domain: d.domain, webservers: c.webservers, logPath, cellId: c.cellId })) : cmd;
  return d.placement?.strategy === 'leader' ? fenced(expanded) : expanded;
}

// A leader instance must never run twice, and its successor is placed once this cell's
// presence has expired. That is only safe if the instance does not outlive its agent —
// unlike other instances, which keep running for the agent's next run to adopt. With
// `setpriv --pdeathsig` the kernel signals the instance's wrapper shell when the agent
// dies (however it dies), and the shell stops the instance's whole process group: TERM,
// then KILL as soon as the instance has exited, or after a second (a background killer)
// if it will not — well within any cell TTL. A stop by the agent TERMs the group as usual
// (the wrapper has no TERM trap), with the LRP's grace; the instance's exit status is the
// wrapper's.
const FENCE_SCRIPT = `trap 'trap "" TERM; kill -TERM 0; (sleep 1; kill -KILL 0) & wait $c; kill -KILL 0' USR1; "$@" & c=$!; wait $c`;

function findExecutable(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // not here
    }
  }
  return undefined;
}

const SETPRIV = process.platform === 'linux' ? findExecutable('setpriv') : undefined;

function fenced(cmd: Command): Command {
  if (!SETPRIV) return cmd; // documented: without util-linux's setpriv, leaders are not fenced
  return { path: SETPRIV, args: ['--pdeathsig', 'USR1', '--', '/bin/sh', '-c', FENCE_SCRIPT, 'drover-fence', cmd.path, ...cmd.args], env: cmd.env };
}
