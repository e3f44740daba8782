// V8 heap sizing for the daemons (`drover serve`, `drover agent`), processes that mostly wait
// next to the processes they supervise. V8's defaults favour speed: the young generation grows
// to two 16 MiB semi-spaces once a burst of work has run and never shrinks back, and the old
// generation may grow to several times what is live before it is collected. Both are set
// here with flags V8 reads while it runs (`--max-semi-space-size` and the like only count when
// the isolate is made, before any code of ours runs). Measurements: docs/benchmarks.md, 3 (c).

import { subscribe } from 'node:diagnostics_channel';
import { PerformanceObserver } from 'node:perf_hooks';
import type { Worker } from 'node:worker_threads';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';

/** new space (both semi-spaces) at which growth stops */
const YOUNG_GENERATION_CAP_BYTES = 4 * 1024 * 1024;

const newSpaceBytes = () => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0;

export function capYoungGeneration(): void {
  // Until the cap, V8 grows the young generation as usual (start-up allocates a lot and
  // runs faster with room); from there on it stays. The check runs after collections,
  // which is when V8 grows the space.
  const check = () => {
    if (newSpaceBytes() >= YOUNG_GENERATION_CAP_BYTES) setFlagsFromString('--semi-space-growth-factor=1');
  };
  check();
  new PerformanceObserver(check).observe({ entryTypes: ['gc'] });
  // V8 puts the factor back to its default (2) whenever it makes an isolate (a worker thread:
  // SQLite's checkpointer), so check again once a worker runs.
  // Growth that slips through in between stays until V8's memory reducer shrinks the space.
  subscribe('worker_threads', (message) => {
    const { worker } = message as { worker: Worker };
    worker.once('online', check);
  });
}

/**
 * After start-up (which runs faster with room): each major collection lets the old
 * generation grow to 1.3× what survived it, instead of V8's own factor (up to 4× on small heaps).
 */
export function tightenOldGeneration(): void {
  setFlagsFromString('--heap-growing-percent=30');
}
