// How Arrowhead lock requests reach Drover and how its answers leave. The request handler
// (locks.ts) is one; it runs over either transport:
// - the embedded broker's in-process API (broker.ts): subscriptions and publishes inside the
//   broker, no MQTT client and no socket of Drover's own;
// - an MQTT client of an external broker (client.ts, loaded only for `--mqtt mqtt://...`).

export type QoS = 0 | 1 | 2;

export interface LockTransport {
  /** where callers reach the broker (mqtt://host:port) */
  readonly url: string;
  /**
   * Called with each message published to a request topic, under the topic it was published
   * to. Set before `serve`; looked up per message, so a benchmark may wrap it to time arrivals
   * (bench/locks-mqtt.ts), as it wraps `publish`.
   */
  deliver: (topic: string, message: Buffer) => void;
  /** Subscribes to the request topics; resolves once they are served (see each transport). */
  serve(topics: string[]): Promise<void>;
  /** Publishes an answer (not retained) with the given QoS; `done` gets the error if it could not be. */
  publish(topic: string, text: string, qos: QoS, done: (err?: Error) => void): void;
  close(): Promise<void>;
}
