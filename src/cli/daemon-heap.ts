// V8 heap sizing for the daemons (`drover serve`, `drover agent`), processes that mostly wait
// next to the processes they supervise. V8's defaults favour speed: the young generation grows
// to two 16 MiB semi-spaces once a burst of work has run and never shrinks back, and the old
// generation may grow to several times what is live before it is collected. Both are set
// here with flags V8 reads while it runs (`--max-semi-space-size` and the like only count when
// the isolate is made, before any code of ours runs). Measurements: docs/benchmarks.md, 3 (c).

import { subscribe } from 'node:diagnostics_channel';
import { createRequire } from 'node:module';
import { performance, PerformanceObserver } from 'node:perf_hooks';
import { runInNewContext } from 'node:vm';
import type { Worker } from 'node:worker_threads';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';

/** new space (both semi-spaces) at which growth stops */
const YOUNG_GENERATION_CAP_BYTES = 4 * 1024 * 1024;

const spaceBytes = (name: string) => getHeapSpaceStatistics().find((s) => s.space_name === name)?.space_size ?? 0;
const newSpaceBytes = () => spaceBytes('new_space');

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

/** how often compactWhenQuiet looks at the heap and the event loop */
const QUIET_CHECK_MS = 1000;
/** below this share of a check's interval spent running, the daemon counts as quiet */
const QUIET_UTILIZATION = 0.05;
/** old-space growth since the last compaction that is worth one */
const COMPACT_GROWTH_BYTES = 4 * 1024 * 1024;

/**
 * glibc's malloc_trim(0), from the heap-trim addon (src/cli/native): gives the C heap's free
 * pages back to the kernel. Undefined where the addon was not built (no glibc, no compiler).
 */
function loadHeapTrim(): (() => boolean) | undefined {
  try {
    return (createRequire(import.meta.url)('./native/heap-trim.node') as { trim: () => boolean }).trim;
  } catch {
    return undefined;
  }
}

/**
 * One compacting major collection once a burst of work is over. A burst (a thousand starts,
 * a large desire) leaves the old generation with pages that hold a few survivors each; V8's
 * own major collections evacuate only nearly empty pages, and its memory reducer acts only
 * seconds later, if at all while periodic work keeps allocating. So when the old space has
 * grown by COMPACT_GROWTH_BYTES since the last compaction and the event loop was idle for a
 * whole check, all of it is compacted once (a pause of tens of milliseconds, at an idle moment).
 */
export function compactWhenQuiet(): void {
  // V8 offers no collection on request without --expose-gc; a context made while it is set
  // gets a `gc` function (the flag is dropped again at once).
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  setFlagsFromString('--no-expose-gc');
  const trimHeap = loadHeapTrim();
  // the first quiet second after start-up compacts and trims too: start-up is a burst as well
  let baseline = 0;
  let loop = performance.eventLoopUtilization();
  setInterval(() => {
    const since = performance.eventLoopUtilization(loop);
    loop = performance.eventLoopUtilization();
    if (spaceBytes('old_space') < baseline + COMPACT_GROWTH_BYTES) return;
    if (since.utilization >= QUIET_UTILIZATION) return;
    setFlagsFromString('--compact-on-every-full-gc');
    gc();
    setFlagsFromString('--no-compact-on-every-full-gc');
    // The burst's C allocations (SQLite pages and statements, buffers, a worker thread's) are
    // free by now but stay resident between the heap's live chunks: 4-5 MiB after a thousand
    // starts, which free() does not return (it trims only the top of the heap).
    trimHeap?.();
    baseline = spaceBytes('old_space');
  }, QUIET_CHECK_MS).unref();
}
