// Era placement on two real cells: the in-process agent (cell-b, section y) and a
// `drover agent` child process (cell-a, section x), both in site east, with short TTLs.
// active-active runs one process per eligible cell; sections and sites restrict the cells
// (a section nobody serves leaves every cell of the site eligible); active-passive runs one
// process, on the first cell by key, and when that cell's agent dies the next one takes
// over — never two at once, sampled every 20 ms.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDrover, type RunningDrover } from '../src/drover.js';
import { actualLrps, expect, http, instancesOf, killAgent, killProcessesOf, MSERVICES, remoteAgent, serviceZip, waitFor, type RemoteAgent } from './era-fixtures.js';

const TTL_MS = 1000;
let dir: string;
let drover: RunningDrover;
let url: string;
let agentA: RemoteAgent | undefined;
const created = new Set<string>();

const startAgentA = () => remoteAgent(url, ['--cell-id', 'cell-a', '--site', 'east', '--sections', 'x', '--data-dir', join(dir, 'agent-a'), '--ttl-ms', String(TTL_MS)]);

async function mservice(name: string, opts: object): Promise<string> {
  const m = await expect(url, 201, 'POST', MSERVICES, { name, cmdline: './bin/run.sh', cmdparam: name, opts });
  created.add(m.id);
  await expect(url, 200, 'POST', `${MSERVICES}/${m.id}/attachment`, serviceZip());
  return m.id;
}

const cellsOf = (id: string) =>
  instancesOf(id)
    .map((g) => g.cellId)
    .sort();

/** Waits until the mservice runs on exactly `cells`, then checks it stays so for a while. */
async function runsOn(id: string, cells: string[]): Promise<void> {
  await waitFor(async () => {
    const running = (await actualLrps(url, id)).filter((a) => a.state === 'RUNNING');
    return JSON.stringify(cellsOf(id)) === JSON.stringify(cells) && running.length === cells.length ? true : undefined;
  }, `${id} on ${cells.join(', ') || 'no cell'} (now: ${cellsOf(id).join(', ')})`);
  await sleep(600);
  assert.deepEqual(cellsOf(id), cells);
}

async function remove(id: string): Promise<void> {
  await expect(url, 204, 'DELETE', `${MSERVICES}/${id}`);
  await waitFor(() => (instancesOf(id).length === 0 ? true : undefined), `${id} stopped`);
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'drover-era-placement-'));
  drover = await startDrover({
    dataDir: dir,
    agent: true,
    cellId: 'cell-b',
    site: 'east',
    sections: ['y'],
    cellTtlMs: TTL_MS,
    convergeIntervalMs: 200,
    http: '127.0.0.1:0',
    logLevel: 'silent',
    mqtt: 'none',
  });
  url = drover.url;
  agentA = await startAgentA();
  await waitFor(async () => {
    const cells = ((await http(url, 'POST', '/v1/cells/list', {})).body.cells ?? []) as { cell_id: string }[];
    return cells.length === 2 ? true : undefined;
  }, 'both cells registered');
});

after(async () => {
  await killAgent(agentA);
  await drover.agent?.stopAll();
  await drover.close();
  await sleep(300); // a start already under way when the agent closed may still spawn
  await killProcessesOf(created);
  rmSync(dir, { recursive: true, force: true });
});

describe('Era placement on two cells', () => {
  it('active-active runs one process on every eligible cell', async () => {
    const id = await mservice('both', { mode: 'active-active' });
    await runsOn(id, ['cell-a', 'cell-b']);
    await remove(id);
  });

  it('sections restrict the cells; a section no cell serves leaves every cell of the site; sites select', async () => {
    const x = await mservice('only-x', { mode: 'active-active', section: 'x' });
    const y = await mservice('only-y', { mode: 'active-active', section: 'y' });
    const z = await mservice('nobody-z', { mode: 'active-active', section: 'z' });
    const west = await mservice('west', { mode: 'active-passive', site_mode: 'selected', selected_sites: ['west'] });
    const east = await mservice('east', { mode: 'active-passive', site_mode: 'selected', selected_sites: ['east'], section: 'y' });
    await runsOn(x, ['cell-a']);
    await runsOn(y, ['cell-b']);
    await runsOn(z, ['cell-a', 'cell-b']);
    await runsOn(east, ['cell-b']);
    await runsOn(west, []);
    const [unplaced] = await actualLrps(url, west);
    assert.equal(unplaced.state, 'UNCLAIMED');
    assert.equal(unplaced.placement_error, 'no live eligible cell');
    // moving the selection moves it
    await expect(url, 200, 'PATCH', `${MSERVICES}/${west}`, { opts: { selected_sites: ['east'] } });
    await runsOn(west, ['cell-a']);
    for (const id of [x, y, z, west, east]) await remove(id);
  });

  it('active-passive runs one process on the leader by key order; the next cell takes over when it dies, never two at once', async () => {
    const id = await mservice('single', { mode: 'active-passive' });
    await runsOn(id, ['cell-a']);
    const old = instancesOf(id)[0]!;

    // sample all along: from the agent's death until the successor has run a while
    let max = 0;
    let sampling = true;
    const t0 = Date.now();
    const timeline: string[] = [];
    const sampler = (async () => {
      let last = '';
      while (sampling) {
        max = Math.max(max, instancesOf(id).length);
        const now = JSON.stringify((await actualLrps(url, id)).map((a) => [a.state, a.cell_id, a.presence, a.placement_error, a.target_cell_id]));
        if (now !== last) timeline.push(`${Date.now() - t0} ${now}`);
        last = now;
        await sleep(20);
      }
    })();
    await killAgent(agentA);
    agentA = undefined;
    await waitFor(() => (instancesOf(id).every((g) => g.pgid !== old.pgid) ? true : undefined), 'the old leader process gone with its agent', 3000, 20);
    const fenced = Date.now() - t0;
    await waitFor(() => (cellsOf(id)[0] === 'cell-b' ? true : undefined), 'cell-b taking over', 10_000, 20);
    const tookOver = Date.now() - t0;
    if (tookOver > 3 * TTL_MS) console.log(`# slow takeover; the instance's states (ms since the kill):\n${timeline.join('\n')}`);
    console.log(`# leader process gone ${fenced} ms after its agent was killed; cell-b running it after ${tookOver} ms (TTL ${TTL_MS} ms)`);
    assert.ok(fenced < TTL_MS, 'the old process is gone before the cell is even declared lost');

    // cell-a comes back: the leader stays where it runs now (no flapping), still one
    agentA = await startAgentA();
    await sleep(2 * TTL_MS);
    sampling = false;
    await sampler;
    assert.equal(max, 1, 'never two instances at once');
    await runsOn(id, ['cell-b']);
    const running = (await actualLrps(url, id)).filter((a) => a.state === 'RUNNING');
    assert.equal(running.length, 1);
    assert.equal(running[0].cell_id, 'cell-b');
    await remove(id);
  });
});
