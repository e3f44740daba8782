// /metrics end to end: it must parse as Prometheus text exposition (checked line by line
// here, not by prom-client, which wrote it), and its numbers must follow real actions —
// a desire, a kill -9, requests, a crash-loop disable.

import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDrover, type RunningDrover } from '../src/drover.js';
import { bbsCall } from '../src/cli/client.js';
import { observeRequest } from '../src/api/http/metrics.js';
import { setDesiredLrpEnabled } from '../src/core/operator-actions.js';
import { OPEN_MODE_PRINCIPAL } from '../src/model/principal.js';
import { tempDir } from './helpers.js';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"(?:,|$)/y;
const TYPES = ['counter', 'gauge', 'histogram', 'summary', 'untyped'];

/** Parses the text format strictly: every sample belongs to a family declared by # TYPE before it. */
function parsePrometheus(text: string): Sample[] {
  assert.ok(text.endsWith('\n'), 'the exposition ends with a newline');
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const meta = new RegExp(`^# (HELP|TYPE) (${NAME}) (.*)$`).exec(line);
    if (meta) {
      if (meta[1] === 'TYPE') {
        assert.ok(TYPES.includes(meta[3]!), `unknown type in: ${line}`);
        assert.ok(!types.has(meta[2]!), `family declared twice: ${meta[2]}`);
        types.set(meta[2]!, meta[3]!);
      }
      continue;
    }
    const m = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)(?: -?\\d+)?$`).exec(line);
    assert.ok(m, `not a sample line: ${JSON.stringify(line)}`);
    const [, name, labelText = '', raw] = m;
    const labels: Record<string, string> = {};
    LABEL.lastIndex = 0;
    while (LABEL.lastIndex < labelText.length) {
      const l = LABEL.exec(labelText);
      assert.ok(l, `bad labels in: ${line}`);
      labels[l[1]!] = l[2]!;
    }
    // as Prometheus reads it (Go's ParseFloat): NaN and Inf in any case; prom-client writes `Nan`
    const value = /^nan$/i.test(raw!) ? NaN : /^[+-]?inf$/i.test(raw!) ? (raw!.startsWith('-') ? -Infinity : Infinity) : Number(raw);
    assert.ok(/^nan$/i.test(raw!) || !Number.isNaN(value), `bad value in: ${line}`);
    const family = types.has(name!) ? name! : name!.replace(/_(bucket|sum|count)$/, '');
    assert.ok(types.has(family), `sample without a # TYPE: ${line}`);
    samples.push({ name: name!, labels, value });
  }
  return samples;
}

/** The value of the one sample with exactly these labels (undefined when absent). */
function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels);
  const same = (s: Sample) => s.name === name && Object.keys(s.labels).length === wanted.length && wanted.every(([k, v]) => s.labels[k] === v);
  return samples.find(same)?.value;
}

describe('Prometheus metrics', () => {
  const dir = tempDir('drover-metrics-');
  let drover: RunningDrover;

  const scrape = async () => {
    const res = await fetch(`${drover.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    return parsePrometheus(await res.text());
  };
  /** Scrapes until `ok` holds for a scrape (10 s at most); returns that scrape. */
  const scrapeUntil = async (what: string, ok: (s: Sample[]) => boolean) => {
    for (const deadline = Date.now() + 10_000; ; await sleep(100)) {
      const samples = await scrape();
      if (ok(samples)) return samples;
      if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    }
  };
  const running = (s: Sample[]) => valueOf(s, 'drover_actual_lrps', { state: 'RUNNING' });

  before(async () => {
    drover = await startDrover({ dataDir: dir, store: `sqlite:${join(dir, 'drover.db')}`, http: '127.0.0.1:0', agent: true, mqtt: 'none', cellId: 'cell-m', logLevel: 'warn' });
  });

  after(async () => {
    await drover?.agent?.stopAll();
    await drover?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('parses and starts from an empty world', async () => {
    const s = await scrape();
    assert.equal(running(s), 0);
    assert.equal(valueOf(s, 'drover_restarts_total'), 0);
    assert.equal(valueOf(s, 'drover_crash_loop_disables_total'), 0);
    assert.equal(valueOf(s, 'drover_leader'), 1);
    assert.equal(valueOf(s, 'drover_locks', { kind: 'management' }), 0);
    await scrapeUntil('a live cell and a convergence pass', (x) => valueOf(x, 'drover_cells', { presence: 'alive' }) === 1 && valueOf(x, 'drover_convergence_pass_seconds', { phase: 'total' }) !== undefined);
    assert.ok(s.some((x) => x.name === 'process_resident_memory_bytes'), 'default process metrics are there');
  });

  it('counts instances by state after a desire', async () => {
    await bbsCall({ api: drover.url }, '/v1/desired_lrp/desire.r2', {
      desired_lrp: { process_guid: 'metered', domain: 'm', instances: 2, action: { run: { path: '/bin/sh', args: ['-c', 'exec sleep 600'] } } },
    });
    await scrapeUntil('2 RUNNING instances', (s) => running(s) === 2);
  });

  it('counts a kill -9 as a restart', async () => {
    const victim = drover.agent!.localInstances().find((i) => i.processGuid === 'metered');
    assert.ok(victim);
    process.kill(victim.pid, 'SIGKILL');
    const s = await scrapeUntil('a restart', (x) => valueOf(x, 'drover_restarts_total') === 1);
    assert.equal(valueOf(s, 'drover_crash_loop_disables_total'), 0);
    await scrapeUntil('the instance back to RUNNING', (x) => running(x) === 2);
  });

  it('counts requests per interface, operation and outcome, with latencies', async () => {
    const op = { interface: 'http', operation: 'GET /metrics', outcome: 'ok' };
    const before = valueOf(await scrape(), 'drover_requests_total', op) ?? 0;
    const s = await scrape();
    assert.ok(valueOf(s, 'drover_requests_total', op)! > before, 'scrapes are counted');
    assert.equal(valueOf(s, 'drover_requests_total', { interface: 'http', operation: 'POST /v1/desired_lrp/desire.r2', outcome: 'ok' }), 1);
    assert.ok(valueOf(s, 'drover_request_duration_seconds_count', { interface: 'http', operation: 'POST /v1/desired_lrp/desire.r2' })! >= 1);
    assert.equal(valueOf(s, 'drover_requests_total', { interface: 'http', operation: 'unmatched', outcome: 'error' }), undefined);

    await fetch(`${drover.url}/no/such/path`);
    observeRequest('mqtt', 'lock/create', 0.002, false);
    const t = await scrape();
    assert.equal(valueOf(t, 'drover_requests_total', { interface: 'http', operation: 'unmatched', outcome: 'error' }), 1);
    assert.equal(valueOf(t, 'drover_requests_total', { interface: 'mqtt', operation: 'lock/create', outcome: 'error' }), 1);
    assert.equal(valueOf(t, 'drover_request_duration_seconds_bucket', { interface: 'mqtt', operation: 'lock/create', le: '0.005' }), 1);
  });

  it('counts crash-loop disables, not other disables', async () => {
    // What the crash-loop guard will do (its reason names the crashes); an operator's disable does not count.
    await setDesiredLrpEnabled(drover.ctx, OPEN_MODE_PRINCIPAL, 'metered', false, 'crash loop: 5 restarts within 10 s');
    await setDesiredLrpEnabled(drover.ctx, OPEN_MODE_PRINCIPAL, 'metered', true);
    await setDesiredLrpEnabled(drover.ctx, OPEN_MODE_PRINCIPAL, 'metered', false, 'maintenance');
    const s = await scrape();
    assert.equal(valueOf(s, 'drover_crash_loop_disables_total'), 1);
    assert.equal(valueOf(s, 'drover_restarts_total'), 1);
  });
});
