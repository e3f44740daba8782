// Drover's MQTT client of an external broker (`--mqtt mqtt://...`, `mqtts://...`), a lock
// transport (transport.ts). locks.ts imports this module only for an external broker: the
// client and what it loads (ws, socks, ip-address, worker-timers, ...) are about 2.5 MiB of
// heap that the embedded default does without.

import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import type { LockTransport, QoS } from './transport.js';

/**
 * The shared-subscription group of Drover replicas on an external broker: the broker hands
 * each request to one member, so it is handled and answered once however many replicas run.
 */
const SHARE_GROUP = 'drover';
/** How long start-up waits for the first subscription before going on (the client keeps retrying). */
const FIRST_CONNECT_MS = 5000;

/** The broker URL for the log: a password in it is a secret. */
function withoutPassword(url: string): string {
  try {
    const u = new URL(url);
    if (!u.password) return url;
    u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}

export class BrokerClient implements LockTransport {
  deliver: LockTransport['deliver'] = () => {};
  private client?: MqttClient;
  private readonly shownUrl: string;

  constructor(
    readonly url: string,
    private readonly log: Logger,
  ) {
    this.shownUrl = withoutPassword(url);
  }

  /**
   * Connects and subscribes to `topics` as members of the shared group, again on every
   * (re)connect. Resolves once subscribed, or after FIRST_CONNECT_MS with a warning while the
   * client keeps trying.
   */
  async serve(topics: string[]): Promise<void> {
    const { log, shownUrl } = this;
    const client = (this.client = mqtt.connect(this.url, {
      protocolVersion: 4,
      clientId: `drover-${randomBytes(6).toString('hex')}`,
      clean: true,
      reconnectPeriod: 1000,
      // subscriptions are made on every connect (below), also after a broker restart
      resubscribe: false,
      // mqtt-packet otherwise builds, on its first write, 65,536 two-byte Buffers of packet ids
      // and lengths and keeps them: 6.5 MiB of heap. A 2-byte Buffer per write costs next to nothing.
      writeCache: false,
    }));
    const subscribed = new Promise<void>((resolve) => {
      client.on('connect', () => {
        // Nagle's algorithm turns each small request/response into a ~40 ms wait: disable it.
        (client.stream as unknown as Socket).setNoDelay?.(true);
        // requests still arrive under their own topic names
        client.subscribe(
          topics.map((t) => `$share/${SHARE_GROUP}/${t}`),
          { qos: 2 },
          (err) => {
            if (err) return log.error({ err: err.message }, 'could not subscribe to the lock topics');
            log.info({ broker: shownUrl, topics }, 'serving Arrowhead locks over MQTT');
            resolve();
          },
        );
      });
    });
    client.on('message', (topic, message) => this.deliver(topic, message));
    client.on('error', (err) => log.warn({ err: err.message, broker: shownUrl }, 'MQTT client error'));
    client.on('offline', () => log.warn({ broker: shownUrl }, 'MQTT broker unreachable; reconnecting'));

    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), FIRST_CONNECT_MS)));
    if (!(await Promise.race([subscribed.then(() => true), waited]))) log.warn({ broker: shownUrl }, 'MQTT broker not reached yet; will keep trying');
    clearTimeout(timer);
  }

  publish(topic: string, text: string, qos: QoS, done: (err?: Error) => void): void {
    if (!this.client) return done(new Error('not connected'));
    this.client.publish(topic, text, { qos }, (err) => done(err));
  }

  async close(): Promise<void> {
    await this.client?.endAsync(!this.client.connected);
  }
}
