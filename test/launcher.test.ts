// The installed `drover` command (bin/drover): a shell that execs node on bin/drover.js, with
// glibc malloc settings for the daemons (one arena, a 32 KiB mmap threshold) unless the
// environment sets its own; the daemon gives its C heap's free pages back once start-up is over.

import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, readlinkSync, rmSync } from 'node:fs';
import { promisify } from 'node:util';
import { DROVER_BIN, droverCli, killCli, liveClis } from './drover-cli.js';
import { tempDir as newTempDir, waitFor } from './helpers.js';

const execFileP = promisify(execFile);

/** `drover serve` through the launcher, once it serves; its pid and environment. */
async function serve(dataDir: string, extraEnv: Record<string, string> = {}) {
  const c = droverCli('drover serve', ['serve', '--data-dir', dataDir, '--http', '127.0.0.1:0', '--no-agent', '--mqtt', 'none', '--log-level', 'info'], extraEnv);
  await c.line(/drover is serving/);
  const pid = c.child.pid!;
  const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
  return { c, pid, environ };
}

describe('the drover command (bin/drover)', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const d = newTempDir('drover-launcher-');
    dirs.push(d);
    return d;
  };
  after(async () => {
    for (const c of [...liveClis]) await killCli(c);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('runs serve as node itself, with one malloc arena and a 32 KiB mmap threshold', async () => {
    const { c, pid, environ } = await serve(tempDir());
    // exec: the pid the caller holds is node's, no shell in between
    assert.match(readlinkSync(`/proc/${pid}/exe`), /\/node$/);
    assert.ok(environ.includes('MALLOC_ARENA_MAX=1'), environ.filter((e) => e.startsWith('MALLOC')).join(' '));
    assert.ok(environ.includes('MALLOC_MMAP_THRESHOLD_=32768'), environ.filter((e) => e.startsWith('MALLOC')).join(' '));
    await killCli(c, 'SIGTERM');
    assert.equal(c.child.exitCode, 0);
  });

  it('gives the C heap back after start-up: the heap-trim addon is loaded and the heap shrinks', async () => {
    const { c, pid } = await serve(tempDir());
    assert.match(readFileSync(`/proc/${pid}/maps`, 'utf8'), /heap-trim\.node/);
    // the first quiet second after start-up compacts V8's heap and trims the C heap
    const heapKb = () => {
      const smaps = readFileSync(`/proc/${pid}/smaps`, 'utf8');
      const m = /\[heap\]\n(?:.*\n)*?Rss:\s+(\d+) kB/.exec(smaps);
      return Number(m?.[1] ?? NaN);
    };
    // Idle start-up frees 1.2-1.5 MiB of it; without the trim the heap does not move at all, so a
    // quarter of a MiB tells the two apart without hanging on how much start-up left behind.
    const started = heapKb();
    await waitFor(() => (heapKb() < started - 256 ? true : undefined), 'the C heap to shrink by 256 KiB', 10_000, 100);
    await killCli(c);
  });

  it('keeps the malloc settings the environment sets', async () => {
    const { c, environ } = await serve(tempDir(), { MALLOC_ARENA_MAX: '4', MALLOC_MMAP_THRESHOLD_: '131072' });
    assert.ok(environ.includes('MALLOC_ARENA_MAX=4'));
    assert.ok(!environ.includes('MALLOC_ARENA_MAX=1'));
    assert.ok(environ.includes('MALLOC_MMAP_THRESHOLD_=131072'));
    assert.ok(!environ.includes('MALLOC_MMAP_THRESHOLD_=32768'));
    await killCli(c);
  });

  it('runs client commands, their failures as a one-line error and a non-zero exit', async () => {
    const env = { ...process.env };
    delete env.NODE_TEST_CONTEXT;
    const { stdout } = await execFileP(DROVER_BIN, ['--help'], { env });
    assert.match(stdout, /Usage: drover/);
    const failed = await execFileP(DROVER_BIN, ['ls', '--api', 'http://127.0.0.1:9'], { env }).then(
      () => undefined,
      (e: { code?: number; stderr?: string }) => e,
    );
    assert.ok(failed && failed.code !== 0, 'ls against a closed port fails');
    assert.match(failed.stderr ?? '', /\S/);
  });
});
