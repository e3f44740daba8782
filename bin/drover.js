#!/usr/bin/env node
// The daemons start with a capped young generation (src/cli/daemon-heap.ts); set before
// anything else loads.
if (process.argv[2] === 'serve' || process.argv[2] === 'agent') (await import('../dist/src/cli/daemon-heap.js')).capYoungGeneration();
await import('../dist/src/cli/main.js');
