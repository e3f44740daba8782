// The GENI interface as Drover starts it: the PKI (given, or Drover's own in
// <data-dir>/pki/), the HTTPS XML-RPC server, and the AM behind it.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { CoreContext } from '../../core/context.js';
import type { Identities } from '../../core/identities.js';
import { ensurePki, type Pki } from '../../pki/ca.js';
import { splitPemBundle } from '../../pki/pem.js';
import { DEFAULT_GENI_OPTIONS, GeniAm, type GeniAmOptions } from './geni.js';
import { startXmlRpcServer } from './server.js';

export interface GeniInterfaceOptions {
  host: string;
  port: number;
  dataDir: string;
  /** PEM files; all three or none (then Drover's own PKI is used, made on first start) */
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  bodyLimit: number;
  /** AM settings (trustCerts, lease lengths, ...) */
  am?: Partial<Omit<GeniAmOptions, 'url' | 'trustedCerts'>>;
}

export interface GeniInterface {
  url: string;
  pki: Pki;
  am: GeniAm;
  close(): Promise<void>;
}

export { DEFAULT_GENI_LISTEN } from './defaults.js';

async function pkiOf(o: GeniInterfaceOptions): Promise<Pki> {
  const given = [o.tlsCert, o.tlsKey, o.tlsCa].filter(Boolean).length;
  if (given === 3) return { ca: o.tlsCa!, server: { cert: o.tlsCert!, key: o.tlsKey! } };
  if (given) throw new Error('--tls-cert, --tls-key and --tls-ca go together');
  return ensurePki(join(o.dataDir, 'pki'), [o.host]);
}

export async function startGeniInterface(ctx: CoreContext, identities: Identities, log: Logger, o: GeniInterfaceOptions): Promise<GeniInterface> {
  const pki = await pkiOf(o);
  const ca = readFileSync(pki.ca, 'utf8');
  let url = '';
  const am = new GeniAm(ctx, identities, log, { ...DEFAULT_GENI_OPTIONS, ...o.am, url: () => url, trustedCerts: splitPemBundle(ca) });
  const server = await startXmlRpcServer(
    { host: o.host, port: o.port, cert: readFileSync(pki.server.cert, 'utf8'), key: readFileSync(pki.server.key, 'utf8'), ca, bodyLimit: o.bodyLimit },
    am.methods(),
    log,
  ).catch((e) => {
    am.close();
    throw e;
  });
  url = server.url;
  log.info({ url: server.url, pki: pki.caKeyPair ? join(o.dataDir, 'pki') : 'given' }, 'GENI AM API v3 is serving');
  return {
    url: server.url,
    pki,
    am,
    async close() {
      am.close();
      await server.close();
    },
  };
}
