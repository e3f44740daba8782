// The embedded MQTT broker (Aedes) for the one-command deployment: plain MQTT on one
// address and, when a certificate is given, MQTTS on another. MQTT 3.1 and 3.1.1 clients.
// Drover serves the lock topics through the broker's in-process API (a transport, see
// transport.ts): it subscribes inside the broker and publishes its answers there, with no MQTT
// client of its own. Aedes (about 2 MiB of heap) is loaded when the first client connects:
// until then nobody can publish a request.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import tls from 'node:tls';
import type { Aedes, AedesPublishPacket, PublishPacket } from 'aedes';
import type { Logger } from 'pino';
import type { LockTransport, QoS } from './transport.js';

export interface HostPort {
  host: string;
  port: number;
}

export interface BrokerOptions {
  listen: HostPort;
  mqtts?: HostPort & { certFile: string; keyFile: string };
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

/**
 * mqtt-packet, the broker's encoder, otherwise builds on its first write 65,536 two-byte
 * Buffers of packet ids and lengths and keeps them: 6.5 MiB of heap. The setting is the
 * module's, so it is made on the copy aedes itself loads; a 2-byte Buffer per write costs next
 * to nothing.
 */
function uncachedPacketNumbers(): void {
  const aedesFile = createRequire(import.meta.url).resolve('aedes');
  const mqttPacket = createRequire(aedesFile)('mqtt-packet') as { writeToStream: { cacheNumbers: boolean } };
  mqttPacket.writeToStream.cacheNumbers = false;
}

export class EmbeddedBroker implements LockTransport {
  /** mqtt://host:port as bound (port 0 picks a free one) */
  url = '';
  mqttsUrl?: string;
  deliver: LockTransport['deliver'] = () => {};
  private aedes?: Aedes;
  /** the broker being made for the first client */
  private starting?: Promise<Aedes>;
  private topics: string[] = [];
  private readonly servers: net.Server[] = [];

  constructor(
    private readonly options: BrokerOptions,
    private readonly log: Logger,
  ) {}

  /** Listens; the broker, with `topics` subscribed in process, is made for the first client. */
  async serve(topics: string[]): Promise<void> {
    this.topics = topics;
    const accept = (socket: net.Socket) => this.accept(socket);
    // Nagle's algorithm turns each small request/response into a ~40 ms wait: disable it.
    this.servers.push(net.createServer({ noDelay: true }, accept));
    const { mqtts } = this.options;
    if (mqtts) this.servers.push(tls.createServer({ cert: readFileSync(mqtts.certFile), key: readFileSync(mqtts.keyFile), noDelay: true }, accept));
    try {
      this.url = await listen(this.servers[0]!, this.options.listen, 'mqtt');
      this.mqttsUrl = mqtts && (await listen(this.servers[1]!, mqtts, 'mqtts'));
    } catch (e) {
      await this.close();
      throw e;
    }
    this.log.info({ url: this.url, mqttsUrl: this.mqttsUrl }, 'embedded MQTT broker listening');
    this.log.info({ broker: this.url, topics }, 'serving Arrowhead locks over MQTT');
  }

  /** A client's connection, handed to the broker once it exists (what it sent meanwhile waits in the socket). */
  private accept(socket: net.Socket): void {
    if (this.aedes) return void this.aedes.handle(socket);
    socket.on('error', (err) => this.log.debug({ err: err.message }, 'mqtt connection error before the broker started'));
    this.starting ??= this.start();
    this.starting.then(
      (aedes) => (socket.destroyed || aedes.closed ? socket.destroy() : aedes.handle(socket)),
      (err: Error) => {
        this.log.error({ err }, 'the embedded MQTT broker did not start');
        socket.destroy();
      },
    );
  }

  /** The broker, with the topics subscribed before any client is handed to it. Each request keeps the QoS it was published with. */
  private async start(): Promise<Aedes> {
    const { Aedes } = await import('aedes');
    uncachedPacketNumbers();
    const aedes = await Aedes.createBroker();
    aedes.on('clientError', (client, err) => this.log.debug({ client: client.id, err: err.message }, 'mqtt client error'));
    // The broker waits for every subscriber to take a message before it goes on (a QoS 2
    // publisher's PUBREC among others): take it at once; the handler runs on its own.
    const onRequest = (packet: AedesPublishPacket, taken: () => void) => {
      taken();
      this.deliver(packet.topic, typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload);
    };
    await Promise.all(this.topics.map((t) => new Promise<void>((resolve) => aedes.subscribe(t, onRequest, resolve))));
    this.aedes = aedes;
    return aedes;
  }

  publish(topic: string, text: string, qos: QoS, done: (err?: Error) => void): void {
    const aedes = this.aedes;
    if (!aedes || aedes.closed) return done(new Error('the embedded broker is closed'));
    const packet: PublishPacket = { cmd: 'publish', topic, payload: Buffer.from(text, 'utf8'), qos, retain: false, dup: false };
    // aedes.publish skips the broker's publish authorization, which Drover's own client passed
    // through before; it refuses the broker's reserved $SYS/ topics.
    aedes.authorizePublish(null, packet, (refused) => (refused ? done(refused) : aedes.publish(packet, (err) => done(err ?? undefined))));
  }

  async close(): Promise<void> {
    const aedes = await this.starting?.catch(() => undefined);
    if (aedes) await new Promise<void>((resolve) => aedes.close(() => resolve()));
    await Promise.all(this.servers.map((s) => new Promise<void>((resolve) => (s.listening ? s.close(() => resolve()) : resolve()))));
  }
}
