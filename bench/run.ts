// Runs every benchmark in sequence, each in its own Node process (so one's heap, child
// processes or PM2 daemon cannot leak into the next):  npm run bench
//
// The BBS and agent benchmarks run first, then any other benchmark compiled into dist/bench
// (alphabetically). `--only a,b` restricts the run to those (names without .js); every other
// argument is passed to every benchmark, e.g. `npm run bench -- --rounds 1`.

import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpus, loadavg } from 'node:os';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const FIRST = ['bbs-list', 'bbs-desire', 'agent-spawn'];
const NOT_BENCHES = new Set(['run', 'common']);

function run(script: string, args: string[]): Promise<number> {
  return new Promise((resolveCode) => {
    const child = spawn(process.execPath, [join(HERE, `${script}.js`), ...args], { stdio: 'inherit' });
    child.once('exit', (code, signal) => resolveCode(code ?? (signal ? 1 : 0)));
  });
}

const argv = process.argv.slice(2);
const onlyAt = argv.indexOf('--only');
const only = onlyAt >= 0 ? new Set((argv[onlyAt + 1] ?? '').split(',').filter(Boolean)) : undefined;
const args = onlyAt >= 0 ? [...argv.slice(0, onlyAt), ...argv.slice(onlyAt + 2)] : argv;

const others = readdirSync(HERE)
  .filter((f) => f.endsWith('.js'))
  .map((f) => f.slice(0, -3))
  .filter((name) => !FIRST.includes(name) && !NOT_BENCHES.has(name))
  .sort();
const benches = [...FIRST, ...others].filter((name) => !only || only.has(name));

console.log(`node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
const failed: string[] = [];
for (const bench of benches) {
  console.log(`\n##### ${bench} ${args.join(' ')}`);
  const t0 = Date.now();
  const code = await run(bench, args);
  console.log(`##### ${bench}: exit ${code} after ${((Date.now() - t0) / 1000).toFixed(0)} s (load average now ${loadavg()[0]!.toFixed(2)})`);
  if (code !== 0) failed.push(bench);
}
if (failed.length) console.log(`\nfailed: ${failed.join(', ')}`);
process.exit(failed.length ? 1 : 0);
