// Fixtures shared by the lock tests: an independent MQTT client that speaks the Arrowhead
// request/response templates, a Drover started for the lock interfaces, auth files and a
// self-signed certificate made with the openssl CLI.

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { startDrover, type DroverOptions, type RunningDrover } from '../src/drover.js';
import { tempDir } from './helpers.js';

export const LOCK_TOPIC = 'orchestration/management/lock';
export const MOSQUITTO_URL = 'mqtt://127.0.0.1:1883';

export type Op = 'create' | 'query' | 'remove';

export interface Answer {
  status: number;
  traceId?: string;
  receiver?: string;
  payload?: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  /** the QoS the answer was delivered with (the client subscribes at 2, so it is Drover's) */
  qos: number;
}

const dirs: string[] = [];
process.once('exit', () => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** A temporary directory removed when the test process exits. */
export function lockTempDir(name: string): string {
  const d = tempDir(`drover-locks-${name}-`);
  dirs.push(d);
  return d;
}

export const unique = (prefix: string) => `${prefix}-${randomBytes(5).toString('hex')}`;
export const inMs = (ms: number) => new Date(Date.now() + ms).toISOString();
export const inHours = (h: number) => new Date(Math.floor(Date.now() / 1000) * 1000 + h * 3_600_000).toISOString().replace('.000Z', 'Z');
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A caller system: publishes requests and waits for the answer on a response topic of its own. */
export class LockClient {
  private readonly responseBase = unique('drover-test/answers');
  private readonly waiting = new Map<string, (a: Answer) => void>();
  private n = 0;

  private constructor(
    readonly client: MqttClient,
    private readonly prefix: string,
  ) {
    client.on('message', (topic, message, packet) => {
      const resolve = this.waiting.get(topic);
      if (!resolve) return;
      this.waiting.delete(topic);
      resolve({ ...JSON.parse(message.toString('utf8')), qos: packet.qos });
    });
  }

  static async connect(url: string, prefix: string, options: IClientOptions = {}): Promise<LockClient> {
    const client = await mqtt.connectAsync(url, { reconnectPeriod: 200, ...options });
    const c = new LockClient(client, prefix);
    await client.subscribeAsync(`${c.responseBase}/#`, { qos: 2 });
    return c;
  }

  topic(op: Op): string {
    return `${this.prefix}/${LOCK_TOPIC}/${op}`;
  }

  /** Sends a request template (responseTopic and traceId filled in unless given) and awaits the answer. */
  async request(op: Op, template: Record<string, unknown>, timeoutMs = 5000): Promise<Answer> {
    const responseTopic = `${this.responseBase}/${++this.n}`;
    const body = { traceId: `trace-${this.n}`, responseTopic, qosRequirement: 1, ...template };
    return this.send(op, JSON.stringify(body), responseTopic, timeoutMs);
  }

  /** Publishes raw text and awaits an answer on `responseTopic`; rejects after the timeout. */
  send(op: Op, text: string, responseTopic: string, timeoutMs = 5000, qos: 0 | 1 | 2 = 1): Promise<Answer> {
    return new Promise<Answer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(responseTopic);
        reject(new Error(`no answer on ${responseTopic} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(responseTopic, (a) => {
        clearTimeout(timer);
        resolve(a);
      });
      this.client.publish(this.topic(op), text, { qos }, (err) => err && reject(err));
    });
  }

  newResponseTopic(): string {
    return `${this.responseBase}/${++this.n}`;
  }

  close(): Promise<void> {
    return this.client.endAsync(true);
  }
}

/** A Drover serving locks only (no agent), on a fresh SQLite data dir. */
export function startLockDrover(options: Partial<DroverOptions>): Promise<RunningDrover> {
  return startDrover({
    dataDir: lockTempDir('data'),
    http: '127.0.0.1:0',
    agent: false,
    logLevel: 'silent',
    convergeIntervalMs: 3_600_000,
    mqttListen: '127.0.0.1:0',
    ...options,
  });
}

/** An --auth file with principals for every lock case. */
export function writeAuthFile(): string {
  const path = join(lockTempDir('auth'), 'auth.yaml');
  writeFileSync(
    path,
    `principals:
  - name: TemperatureManager
    roles: [owner]
    mqtt: ['SYSTEM//TemperatureManager']
    tokens: [tm-secret]
  - name: Viewer
    roles: [reader]
    mqtt: ['SYSTEM//Viewer']
  - name: CellAgent
    roles: [agent]
    mqtt: ['IDENTITY-TOKEN//agent-token']
  - name: ops
    roles: [operator]
    tokens: [ops-secret]
`,
  );
  return path;
}

/** A self-signed certificate for localhost/127.0.0.1, made at test time. */
export function selfSignedCert(): { certFile: string; keyFile: string } {
  const dir = lockTempDir('tls');
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-days', '1',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', keyFile, '-out', certFile,
  ], { stdio: 'ignore' });
  return { certFile, keyFile };
}

export const lock = (serviceInstanceId: string, owner = 'TemperatureManager', expiresAt = inHours(1)) => ({ serviceInstanceId, owner, expiresAt });
