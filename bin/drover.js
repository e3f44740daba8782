#!/usr/bin/env node
// V8 favours a small heap over peak speed: `drover serve` is a long-lived daemon that mostly
// waits, next to the processes it supervises (the measurements are in docs/benchmarks.md).
// Set before anything else loads; V8 reads this flag as the heap grows.
import { setFlagsFromString } from 'node:v8';

setFlagsFromString('--optimize-for-size');
await import('../dist/src/cli/main.js');
