// Builds the heap-trim addon (src/cli/native/heap-trim.c) against the running node's headers.
// Without a C compiler, those headers or glibc's malloc_trim, it is left out: the daemon then
// runs without giving its C heap's free pages back (see src/cli/daemon-heap.ts).

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const include = join(dirname(process.execPath), '..', 'include', 'node');
const out = join(root, 'dist', 'src', 'cli', 'native', 'heap-trim.node');
mkdirSync(dirname(out), { recursive: true });
try {
  if (!existsSync(join(include, 'node_api.h'))) throw new Error(`no node_api.h in ${include}`);
  execFileSync('cc', ['-O2', '-Wall', '-shared', '-fPIC', `-I${include}`, '-o', out, join(root, 'src', 'cli', 'native', 'heap-trim.c')], { stdio: 'inherit' });
} catch (e) {
  console.warn(`heap-trim addon not built (${e.message}); drover serve will not trim its C heap`);
}
