// The event log's retention, as an SSE client sees it: events older than the retention are
// gone from a stream that resumes from the log's start, and nothing else is.

import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDrover, type RunningDrover } from '../src/drover.js';
import { bbsCall } from '../src/cli/client.js';
import { SseStream } from './sse.js';
import { tempDir, waitFor } from './helpers.js';

const RETENTION_MS = 400;

const desire = (api: string, guid: string) =>
  bbsCall({ api }, '/v1/desired_lrp/desire.r1', { desired_lrp: { process_guid: guid, domain: 'log', instances: 1, action: { run: { path: '/bin/true' } } } });

/** the LRP the first event of a stream resumed from the log's start names */
async function firstLoggedGuid(api: string): Promise<string> {
  const stream = await SseStream.open(`${api}/v1/events?format=json`, { 'last-event-id': '0' });
  try {
    const { data } = await stream.next(5000);
    return (JSON.parse(data) as { desired_lrp: { process_guid: string } }).desired_lrp.process_guid;
  } finally {
    stream.close();
  }
}

describe('the event log (retention)', () => {
  const dir = tempDir('drover-event-log-');
  let drover: RunningDrover;
  before(async () => {
    drover = await startDrover({ dataDir: dir, http: '127.0.0.1:0', agent: false, mqtt: 'none', logLevel: 'silent', eventRetentionMs: RETENTION_MS, eventPruneIntervalMs: 50 });
  });
  after(async () => {
    await drover?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('drops the events older than the retention from the stream; the LRPs they told of stay', async () => {
    await desire(drover.url, 'told-early');
    assert.equal(await firstLoggedGuid(drover.url), 'told-early', 'kept while younger than the retention');
    await sleep(RETENTION_MS);
    await desire(drover.url, 'told-late');
    await waitFor(async () => ((await firstLoggedGuid(drover.url)) === 'told-late' ? true : undefined), 'the early events to be pruned', 5000);
    // the stream from the start: the late LRP's events, in order, and none of the early one's
    const stream = await SseStream.open(`${drover.url}/v1/events?format=json`, { 'last-event-id': '0' });
    try {
      const seen = await stream.until((e) => e.event === 'actual_lrp_created');
      assert.deepEqual(
        seen.map((e) => e.event),
        ['desired_lrp_created', 'actual_lrp_created'],
      );
      assert.ok(seen.every((e) => !e.data.includes('told-early')));
    } finally {
      stream.close();
    }
    const listed = await bbsCall<{ desired_lrps: { process_guid: string }[] }>({ api: drover.url }, '/v1/desired_lrps/list.r2', { domain: 'log' });
    assert.deepEqual(listed.desired_lrps.map((d) => d.process_guid).sort(), ['told-early', 'told-late']);
  });
});
