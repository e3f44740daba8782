// The composition root: opens the store, wires the core, starts the interfaces.

import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { mkdirSync } from 'node:fs';
import pino, { type Logger } from 'pino';
import { EventBus, type CoreContext } from './core/context.js';
import { Identities } from './core/identities.js';
import { openStore } from './store/open.js';
import { buildHttpServer, DEFAULT_BODY_LIMIT } from './api/http/server.js';
import { ConvergenceLoop } from './converge/loop.js';
import { CellAgent, DEFAULT_AGENT_OPTIONS } from './agent/cell-agent.js';
import { ControlPlane } from './agent/control-plane.js';
import { join as joinPath } from 'node:path';

export interface DroverOptions {
  dataDir: string;
  store?: string;
  http: string;
  auth?: string;
  cellId: string;
  site: string;
  sections: string[];
  agent: boolean;
  /** bearer token the in-process agent presents (when --auth is on) */
  agentToken?: string;
  cellTtlMs: number;
  convergeIntervalMs: number;
  startWindowMs: number;
  bodyLimit: number;
  logLevel: string;
  mqtt?: string;
  amqp?: string;
  geni?: string;
}

export const DEFAULT_OPTIONS: DroverOptions = {
  dataDir: './.drover',
  http: '127.0.0.1:8889',
  cellId: hostname(),
  site: '',
  sections: [],
  agent: true,
  cellTtlMs: DEFAULT_AGENT_OPTIONS.ttlMs,
  convergeIntervalMs: 1000,
  startWindowMs: DEFAULT_AGENT_OPTIONS.startWindowMs,
  bodyLimit: DEFAULT_BODY_LIMIT,
  logLevel: 'info',
};

export interface RunningDrover {
  ctx: CoreContext;
  /** the bound HTTP address, e.g. http://127.0.0.1:8889 */
  url: string;
  agent?: CellAgent;
  convergence: ConvergenceLoop;
  close(): Promise<void>;
}

export function splitHostPort(value: string, flag: string): { host: string; port: number } {
  const i = value.lastIndexOf(':');
  const port = Number(value.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`${flag} must be HOST:PORT, got ${value}`);
  return { host: value.slice(0, i), port };
}

export async function startDrover(partial: Partial<DroverOptions>, log: Logger = pino({ level: partial.logLevel ?? 'info' })): Promise<RunningDrover> {
  const options = { ...DEFAULT_OPTIONS, ...partial };
  const dataDir = resolve(options.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const identities = options.auth ? Identities.fromFile(options.auth) : Identities.openMode();
  if (identities.open) log.warn('no --auth file: open mode, every caller is an operator');
  const store = await openStore(options.store, dataDir);
  const ctx: CoreContext = { store, bus: new EventBus(), log, now: Date.now };
  const http = await buildHttpServer(ctx, identities, log, { bodyLimit: options.bodyLimit });
  const { host, port } = splitHostPort(options.http, '--http');
  await http.listen({ host, port });
  const address = http.server.address();
  const url = `http://${host}:${typeof address === 'object' && address ? address.port : port}`;
  const convergence = new ConvergenceLoop(ctx, { intervalMs: options.convergeIntervalMs, debounceMs: 5, isLeader: () => true });
  convergence.start();
  // The in-process agent talks to this very server over HTTP: one code path with remote agents.
  const agent = options.agent
    ? new CellAgent(
        new ControlPlane([url], options.agentToken),
        {
          ...DEFAULT_AGENT_OPTIONS,
          cellId: options.cellId,
          site: options.site,
          sections: options.sections,
          dataDir: joinPath(dataDir, 'cells', options.cellId),
          ttlMs: options.cellTtlMs,
          startWindowMs: options.startWindowMs,
        },
        log.child({ cell: options.cellId }),
      )
    : undefined;
  await agent?.start();
  log.info({ url, store: store.kind, dataDir, cellId: agent?.cellId }, 'drover is serving');
  return {
    ctx,
    url,
    agent,
    convergence,
    async close() {
      convergence.stop();
      await agent?.close();
      await http.close();
      await store.close();
    },
  };
}
