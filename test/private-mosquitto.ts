// A Mosquitto of the test's own on a free loopback port, so a test may stop and restart it
// without disturbing the shared one (127.0.0.1:1883) that other suites use.

import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { join } from 'node:path';
import { waitFor } from './helpers.js';

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const accepts = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });

export class PrivateMosquitto {
  private child?: ChildProcess;

  private constructor(
    readonly port: number,
    private readonly config: string,
  ) {}

  /** Anonymous clients allowed (a user name and password, if given, are accepted as they are); no persistence. */
  static async start(dir: string): Promise<PrivateMosquitto> {
    const port = await freePort();
    const config = join(dir, 'mosquitto.conf');
    writeFileSync(config, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\n`);
    const m = new PrivateMosquitto(port, config);
    await m.up();
    return m;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  async up(): Promise<void> {
    this.child = spawn('mosquitto', ['-c', this.config], { stdio: 'ignore' });
    await waitFor(async () => ((await accepts(this.port)) ? true : undefined), `mosquitto on port ${this.port}`, 10_000);
  }

  /** Stops it (SIGKILL: a crash, no goodbye to the clients) and waits until the port is closed. */
  async down(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }
}
