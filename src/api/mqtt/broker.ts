// The embedded MQTT broker (Aedes) for the one-command deployment: plain MQTT on one
// address and, when a certificate is given, MQTTS on another. MQTT 3.1 and 3.1.1 clients.

import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { Aedes } from 'aedes';
import type { Logger } from 'pino';

export interface HostPort {
  host: string;
  port: number;
}

export interface BrokerOptions {
  listen: HostPort;
  mqtts?: HostPort & { certFile: string; keyFile: string };
}

export interface EmbeddedBroker {
  /** mqtt://host:port as bound (port 0 picks a free one) */
  url: string;
  mqttsUrl?: string;
  close(): Promise<void>;
}

async function listen(server: net.Server, at: HostPort, scheme: string): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return `${scheme}://${at.host}:${(server.address() as net.AddressInfo).port}`;
}

export async function startEmbeddedBroker(options: BrokerOptions, log: Logger): Promise<EmbeddedBroker> {
  const aedes = await Aedes.createBroker();
  aedes.on('clientError', (client, err) => log.debug({ client: client.id, err: err.message }, 'mqtt client error'));
  // Nagle's algorithm turns each small request/response into a ~40 ms wait: disable it.
  const servers: net.Server[] = [net.createServer({ noDelay: true }, aedes.handle)];
  if (options.mqtts) {
    const { certFile, keyFile } = options.mqtts;
    servers.push(tls.createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile), noDelay: true }, aedes.handle));
  }
  const close = async () => {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => (s.listening ? s.close(() => resolve()) : resolve()))));
  };
  try {
    const url = await listen(servers[0], options.listen, 'mqtt');
    const mqttsUrl = options.mqtts && (await listen(servers[1], options.mqtts, 'mqtts'));
    log.info({ url, mqttsUrl }, 'embedded MQTT broker listening');
    return { url, mqttsUrl, close };
  } catch (e) {
    await close();
    throw e;
  }
}
