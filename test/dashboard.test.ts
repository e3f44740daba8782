// The dashboard end to end: Drover with its in-process agent (SQLite in a temp dir, real
// processes) and the page in Debian's headless Chromium, driven by playwright-core. Changes
// made through the API (and a kill -9) must show up on the open page without a reload, and
// the page's operator actions must reach the server.
//
// DROVER_SCREENSHOT=1 also saves docs/dashboard.png (kept out of CI so the tree stays clean).

import assert from 'node:assert/strict';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startDrover, type RunningDrover } from '../src/drover.js';
import { packagePath } from '../src/package-root.js';
import { bbsCall } from '../src/cli/client.js';
import { tempDir } from './helpers.js';

const CHROMIUM = process.env.DROVER_CHROMIUM ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const WAIT_MS = 20_000;

function desiredLrp(processGuid: string, instances: number) {
  return {
    process_guid: processGuid,
    domain: 'dash',
    instances,
    action: { run: { path: '/bin/sh', args: ['-c', 'echo started $INSTANCE_INDEX; exec sleep 600'] } },
  };
}

describe('web dashboard', () => {
  const dir = tempDir('drover-dashboard-');
  let drover: RunningDrover;
  let browser: Browser;
  let page: Page;
  const api = (path: string, body: object = {}) => bbsCall({ api: drover.url }, path, body);
  // Page-side code goes in as strings: this program is compiled without the DOM types.
  /** Waits until `selector` matches exactly `count` elements on the page. */
  const waitForCount = (selector: string, count: number) =>
    page.waitForFunction(`document.querySelectorAll(${JSON.stringify(selector)}).length === ${count}`, undefined, { timeout: WAIT_MS });
  const waitForText = (selector: string, text: string) => page.locator(selector, { hasText: text }).waitFor({ timeout: WAIT_MS });

  before(async () => {
    // CI installs it; a missing browser is a failure, never a silent skip.
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} not found: the dashboard test needs Debian's chromium (apt-get install -y chromium)`);
    drover = await startDrover({ dataDir: dir, store: `sqlite:${join(dir, 'drover.db')}`, http: '127.0.0.1:0', agent: true, mqtt: 'none', cellId: 'cell-1', logLevel: 'warn' });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    page = await browser.newPage({ viewport: { width: 1280, height: 960 } });
    await page.goto(drover.url);
    await page.waitForSelector('#status.live', { timeout: WAIT_MS });
    // A reload would wipe this: every check below also proves the page updated in place.
    await page.evaluate('window.notReloaded = true');
  });

  after(async () => {
    await browser?.close();
    await drover?.agent?.stopAll();
    await drover?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('shows instances desired through the API as they come up RUNNING', async () => {
    await api('/v1/desired_lrp/desire.r2', { desired_lrp: desiredLrp('web', 2) });
    await waitForCount('tr[data-instance^="web/"][data-state="RUNNING"]', 2);
    await page.waitForSelector('tr[data-guid="web"][data-running="2"]', { timeout: WAIT_MS });
    await page.waitForSelector('tr[data-cell="cell-1"] .alive', { timeout: WAIT_MS });
  });

  it('shows a crash (count and reason) after kill -9 of an instance', async () => {
    const victim = drover.agent!.localInstances().find((i) => i.processGuid === 'web' && i.index === 0);
    assert.ok(victim, 'web/0 runs on the in-process agent');
    process.kill(victim.pid, 'SIGKILL');
    await page.waitForSelector('tr[data-instance="web/0"][data-crashes="1"]', { timeout: WAIT_MS });
    assert.match((await page.locator('tr[data-instance="web/0"] .reason').textContent()) ?? '', /SIGKILL/);
    // the crash is in the event panel too
    await waitForText('#events', 'actual_lrp_crashed');
  });

  it('scales from the page', async () => {
    await page.fill('input[data-keep="scale:web"]', '3');
    await page.click('button[data-action="scale"][data-guid="web"]');
    await page.waitForSelector('tr[data-guid="web"][data-desired="3"]', { timeout: WAIT_MS });
    await waitForCount('tr[data-instance^="web/"][data-state="RUNNING"]', 3);
    const { desired_lrp: d } = await api('/v1/desired_lrps/get_by_process_guid.r2', { process_guid: 'web' });
    assert.equal((d as { instances: number }).instances, 3);
  });

  it('disables and releases a lock from the page, and tails an instance log', async () => {
    await api('/v1/desired_lrp/desire.r2', { desired_lrp: desiredLrp('worker', 1) });
    await waitForCount('tr[data-instance^="worker/"][data-state="RUNNING"]', 1);
    await page.click('button[data-action="disable"][data-guid="worker"]');
    await waitForText('#attention', 'worker');
    await waitForCount('tr[data-instance^="worker/"]', 0);

    const expiresAt = new Date(Date.now() + 3_600_000).toISOString();
    const res = await fetch(`${drover.url}/serviceorchestration/orchestration/mgmt/lock/create`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ locks: [{ serviceInstanceId: 'Drover|web|1.0.0', owner: 'maintenance', expiresAt }] }),
    });
    assert.equal(res.status, 201);
    const release = await page.waitForSelector('button[data-action="release"][data-owner="maintenance"]', { timeout: WAIT_MS });
    if (process.env.DROVER_SCREENSHOT === '1') {
      await page.click('tr[data-instance="web/0"] button[data-action="log"]');
      await waitForText('#log', 'started 0');
      await page.screenshot({ path: packagePath('docs', 'dashboard.png'), fullPage: true });
    }
    await release.click();
    await page.waitForSelector('button[data-action="release"]', { state: 'detached', timeout: 10_000 });

    await page.click('tr[data-instance="web/1"] button[data-action="log"]');
    await waitForText('#log', 'started 1');
    assert.equal(await page.evaluate('window.notReloaded'), true, 'the page was never reloaded');
  });
});
