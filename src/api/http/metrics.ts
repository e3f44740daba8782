// Prometheus metrics at GET /metrics (prom-client).
//
// Request metrics are process-wide so that any interface (HTTP here; MQTT, AMQP, GENI later)
// can report through `observeRequest`. Everything else is read when scraped — instances and
// locks from the store, restarts and crash-loop disables from the persisted event table,
// pass timings from the convergence loop — so nothing runs between scrapes.

import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CoreContext } from '../../core/context.js';
import { authorize } from '../../core/authorize.js';
import type { PassReport } from '../../converge/loop.js';
import type { ActualLrpState, DesiredLrp } from '../../model/lrp.js';
import { cellAlive } from '../../model/cell.js';
import type { DroverEvent } from '../../model/event.js';
import { principalOf } from './principal.js';
import { sendError } from './dashboard.js';

export interface MetricsOptions {
  /** the convergence loop's last pass; unset when this process runs none */
  lastPass?: () => PassReport | undefined;
}

const processWide = new Registry();
collectDefaultMetrics({ register: processWide });

const requests = new Counter({
  name: 'drover_requests_total',
  help: 'Requests served, by interface, operation and outcome (ok|error)',
  labelNames: ['interface', 'operation', 'outcome'],
  registers: [processWide],
});

const requestSeconds = new Histogram({
  name: 'drover_request_duration_seconds',
  help: 'Request latency by interface and operation',
  labelNames: ['interface', 'operation'],
  buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  registers: [processWide],
});

/** One operation's series, labels bound once (made on first use: only observed series are exported). */
interface OperationSeries {
  ok: { inc(): void };
  error: { inc(): void };
  seconds: { observe(value: number): void };
}

const seriesByOperation = new Map<string, OperationSeries>();

/** Counts one request of an interface (http, mqtt, amqp, geni, ...). Keep `operation` a fixed name, never an id. */
export function observeRequest(iface: string, operation: string, seconds: number, ok: boolean): void {
  const key = `${iface} ${operation}`;
  let series = seriesByOperation.get(key);
  if (!series) {
    series = { ok: requests.labels(iface, operation, 'ok'), error: requests.labels(iface, operation, 'error'), seconds: requestSeconds.labels(iface, operation) };
    seriesByOperation.set(key, series);
  }
  (ok ? series.ok : series.error).inc();
  series.seconds.observe(seconds);
}

const STATES: ActualLrpState[] = ['UNCLAIMED', 'CLAIMED', 'RUNNING', 'CRASHED'];
const EVENT_BATCH = 1000;

/** The crash-loop guard disables a desired LRP with a reason naming the crashes. */
function isCrashLoopDisable(e: DroverEvent): boolean {
  if (e.type !== 'desired_lrp_changed') return false;
  const { before, after } = e.payload as { before: DesiredLrp; after: DesiredLrp };
  return before.enabled !== false && after.enabled === false && /crash/i.test(after.disabledReason ?? '');
}

/** The metrics read from this server's store and loop. */
function serverRegistry(ctx: CoreContext, options: MetricsOptions): Registry {
  const registry = new Registry();
  const registers = [registry];

  // Counted from the event table since this server started: every replica sees every
  // cell's crashes, so aggregate replicas with max(), not sum(). Scrapes are chained so
  // that concurrent ones never count an event twice.
  let counted = ctx.store.lastEventId();
  const restarts = new Counter({ name: 'drover_restarts_total', help: 'Instance crashes reported by cells; each is followed by a restart, at once or after back-off', registers, collect: () => catchUp() });
  const disables = new Counter({ name: 'drover_crash_loop_disables_total', help: 'Desired LRPs disabled by the crash-loop guard', registers, collect: () => catchUp() });
  const catchUp = async () => {
    counted = counted.then(async (after) => {
      for (;;) {
        const events = await ctx.store.listEvents(after, EVENT_BATCH);
        for (const e of events) {
          if (e.type === 'actual_lrp_crashed') restarts.inc();
          else if (isCrashLoopDisable(e)) disables.inc();
          after = e.id;
        }
        if (events.length < EVENT_BATCH) return after;
      }
    });
    await counted;
  };

  new Gauge({
    name: 'drover_actual_lrps',
    help: 'Actual LRP instances by state',
    labelNames: ['state'],
    registers,
    async collect() {
      const actual = await ctx.store.listActualLrps();
      for (const state of STATES) this.set({ state }, actual.filter((a) => a.state === state).length);
    },
  });
  new Gauge({
    name: 'drover_cells',
    help: 'Registered cells by presence (alive while heartbeats arrive within their TTL)',
    labelNames: ['presence'],
    registers,
    async collect() {
      const cells = await ctx.store.listCells();
      const alive = cells.filter((c) => cellAlive(c, ctx.now())).length;
      this.set({ presence: 'alive' }, alive);
      this.set({ presence: 'dead' }, cells.length - alive);
    },
  });
  new Gauge({
    name: 'drover_locks',
    help: 'Live orchestration locks, by kind (management or orchestration job)',
    labelNames: ['kind'],
    registers,
    async collect() {
      const { entries } = await ctx.store.queryLocks({}, undefined, ctx.now());
      const jobs = entries.filter((l) => l.orchestrationJobId !== null).length;
      this.set({ kind: 'job' }, jobs);
      this.set({ kind: 'management' }, entries.length - jobs);
    },
  });
  new Gauge({
    name: 'drover_convergence_pass_seconds',
    help: 'Duration of the last convergence pass, by phase (snapshot, plan, apply, total)',
    labelNames: ['phase'],
    registers,
    collect() {
      const pass = options.lastPass?.();
      if (!pass) return;
      const phases = { snapshot: pass.snapshotMs, plan: pass.planMs, apply: pass.applyMs, total: pass.snapshotMs + pass.planMs + pass.applyMs };
      for (const [phase, ms] of Object.entries(phases)) this.set({ phase }, ms / 1000);
    },
  });
  new Gauge({
    name: 'drover_convergence_pass_actions',
    help: 'Actions planned by the last convergence pass',
    registers,
    collect() {
      const pass = options.lastPass?.();
      if (pass) this.set(pass.actions);
    },
  });
  // Every replica runs convergence until leader election lands (issue 9): always 1 for now.
  new Gauge({ name: 'drover_leader', help: '1 while this replica leads (runs convergence)', registers }).set(1);
  return registry;
}

export function registerMetrics(app: FastifyInstance, ctx: CoreContext, options: MetricsOptions): void {
  // Route patterns, not URLs, keep the label set small; unknown paths share one label.
  // A callback hook, not an async one: no promise per request.
  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url;
    observeRequest('http', route ? `${request.method} ${route}` : 'unmatched', reply.elapsedTime / 1000, reply.statusCode < 400);
    done();
  });
  const registry = serverRegistry(ctx, options);
  app.get('/metrics', async (request, reply) => {
    try {
      authorize(principalOf(request), 'reader');
    } catch (e) {
      return sendError(reply, e);
    }
    const text = (await processWide.metrics()) + (await registry.metrics());
    return reply.type(registry.contentType).send(text);
  });
}
