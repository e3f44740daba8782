// Runs every benchmark in sequence, each in its own Node process (so one's heap, child
// processes or PM2 daemon cannot leak into the next):  npm run bench
//
// Extra arguments are passed to every benchmark, e.g. `npm run bench -- --rounds 1`.

import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpus, loadavg } from 'node:os';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const BENCHES = ['bbs-list.js', 'bbs-desire.js', 'agent-spawn.js'];

function run(script: string, args: string[]): Promise<number> {
  return new Promise((resolveCode) => {
    const child = spawn(process.execPath, [join(HERE, script), ...args], { stdio: 'inherit' });
    child.once('exit', (code, signal) => resolveCode(code ?? (signal ? 1 : 0)));
  });
}

const args = process.argv.slice(2);
console.log(`node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
let failed = 0;
for (const bench of BENCHES) {
  console.log(`\n##### ${bench} ${args.join(' ')}`);
  const t0 = Date.now();
  const code = await run(bench, args);
  console.log(`##### ${bench}: exit ${code} after ${((Date.now() - t0) / 1000).toFixed(0)} s (load average now ${loadavg()[0]!.toFixed(2)})`);
  if (code !== 0) failed++;
}
process.exit(failed ? 1 : 0);
