// The background checkpointer's thread (see checkpointer.ts): its own connection to the
// database checkpoints the WAL while the writes go on in the main thread.

import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

const { path, everyMs, restartFrames } = workerData as { path: string; everyMs: number; restartFrames: number };
const db = new Database(path);
db.pragma('busy_timeout = 1000');
let timer: NodeJS.Timeout | undefined;

function checkpoint(): void {
  try {
    // PASSIVE never waits on writers or readers: it copies what it can and comes back later.
    // The WAL only starts over when a checkpoint finds no newer frames, which a steady
    // stream of commits may never allow; past `restartFrames` a RESTART checkpoint briefly
    // holds off writers so that it does (PASSIVE has already copied most of it by then).
    const [result] = db.pragma('wal_checkpoint(PASSIVE)') as { log: number }[];
    if (result && result.log > restartFrames) db.pragma('wal_checkpoint(RESTART)');
  } catch (e) {
    parentPort!.postMessage({ error: (e as Error).message });
  }
  timer = setTimeout(checkpoint, everyMs);
}

parentPort!.on('message', (m: string) => {
  if (m !== 'stop') return;
  clearTimeout(timer);
  db.close();
  parentPort!.close();
});
timer = setTimeout(checkpoint, everyMs);
