// The composition root: opens the store, wires the core, starts the interfaces.

import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { mkdirSync } from 'node:fs';
import pino, { type Logger } from 'pino';
import { EventBus, type CoreContext } from './core/context.js';
import { Identities } from './core/identities.js';
import { openStore } from './store/open.js';
import { buildHttpServer, DEFAULT_BODY_LIMIT } from './api/http/server.js';

export interface DroverOptions {
  dataDir: string;
  store?: string;
  http: string;
  auth?: string;
  cellId: string;
  site: string;
  sections: string[];
  agent: boolean;
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
  bodyLimit: DEFAULT_BODY_LIMIT,
  logLevel: 'info',
};

export interface RunningDrover {
  ctx: CoreContext;
  /** the bound HTTP address, e.g. http://127.0.0.1:8889 */
  url: string;
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
  log.info({ url, store: store.kind, dataDir }, 'drover is serving');
  return {
    ctx,
    url,
    async close() {
      await http.close();
      await store.close();
    },
  };
}
