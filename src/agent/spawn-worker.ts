// A spawner thread: spawns what the agent posts and reports each child's pid, then its exit.
// Node blocks the spawning thread until the child has exec'd; in here, that blocks this
// thread only, and several spawner threads wait side by side. The children are the agent
// process's own (threads share it), so process groups, fds and signals work as in-thread.

import { parentPort } from 'node:worker_threads';
import { spawnDetached, type RawExit, type SpawnRequest } from './executor.js';

/** agent → thread */
export type SpawnerCommand = { spawn: SpawnRequest; id: number } | { close: true };
/** thread → agent */
export type SpawnerReport = { id: number; pid: number; startTicks: number | undefined } | { id: number; exit: RawExit };

const port = parentPort!;
let children = 0;
let closing = false;

const leaveIfDone = () => {
  // Only once no child is left: leaving earlier would leave its exit unreported and unreaped.
  if (closing && children === 0) port.close();
};

port.on('message', (command: SpawnerCommand) => {
  if ('close' in command) {
    closing = true;
    leaveIfDone();
    return;
  }
  const { id } = command;
  const s = spawnDetached(command.spawn);
  children++;
  port.postMessage({ id, pid: s.pid, startTicks: s.startTicks } satisfies SpawnerReport);
  void s.exited.then((exit) => {
    children--;
    port.postMessage({ id, exit } satisfies SpawnerReport);
    leaveIfDone();
  });
});
