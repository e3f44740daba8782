// The `drover` command: `serve` runs Drover; the other commands are clients of a running one.

import { Command, Option } from 'commander';
import pino from 'pino';
import { DEFAULT_OPTIONS, startDrover } from '../drover.js';
import { DEFAULT_BODY_LIMIT } from '../api/http/server.js';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { CellAgent, DEFAULT_AGENT_OPTIONS } from '../agent/cell-agent.js';
import { ControlPlane } from '../agent/control-plane.js';
import { logsCommand } from './logs.js';
import { cellsCommand, desireCommand, listCommand, removeCommand, retireCommand, scaleCommand, type ClientOptions } from './commands.js';

const program = new Command('drover').description('Drover keeps long-running processes alive the way their owners declared them');

/** Every serve flag can also come from the environment as DROVER_<FLAG>. */
const flag = (spec: string, description: string, env: string) => new Option(spec, description).env(`DROVER_${env}`);

program
  .command('serve')
  .description('run the control plane (and, by default, an in-process cell agent)')
  .addOption(flag('--data-dir <dir>', 'state directory', 'DATA_DIR').default(DEFAULT_OPTIONS.dataDir))
  .addOption(flag('--store <spec>', 'sqlite:PATH or postgres://... (default: SQLite in the data dir)', 'STORE'))
  .addOption(flag('--http <host:port>', 'HTTP listen address', 'HTTP').default(DEFAULT_OPTIONS.http))
  .addOption(flag('--auth <file>', 'principals YAML; without it every caller is an operator', 'AUTH'))
  .addOption(flag('--cell-id <id>', 'cell id of the in-process agent', 'CELL_ID').default(DEFAULT_OPTIONS.cellId))
  .addOption(flag('--site <site>', 'site of the in-process agent', 'SITE').default(''))
  .addOption(flag('--sections <list>', 'comma-separated sections the in-process agent serves', 'SECTIONS').default(''))
  .addOption(flag('--no-agent', 'do not run an in-process cell agent', 'NO_AGENT'))
  .addOption(flag('--body-limit <bytes>', 'largest accepted request body', 'BODY_LIMIT').default(String(DEFAULT_BODY_LIMIT)))
  .addOption(flag('--log-level <level>', 'pino log level', 'LOG_LEVEL').default('info'))
  .addOption(flag('--mqtt <broker>', 'embedded | mqtt://... | mqtts://... (Arrowhead locks)', 'MQTT'))
  .addOption(flag('--amqp <url>', 'RabbitMQ URL (MANO lifecycle)', 'AMQP'))
  .addOption(flag('--geni <host:port>', 'GENI AM API listen address', 'GENI'))
  .action(async (o) => {
    const log = pino({ level: o.logLevel });
    const drover = await startDrover(
      {
        dataDir: o.dataDir,
        store: o.store,
        http: o.http,
        auth: o.auth,
        cellId: o.cellId,
        site: o.site,
        sections: o.sections ? String(o.sections).split(',').filter(Boolean) : [],
        agent: o.agent,
        bodyLimit: Number(o.bodyLimit),
        logLevel: o.logLevel,
        mqtt: o.mqtt,
        amqp: o.amqp,
        geni: o.geni,
      },
      log,
    );
    const stop = async (signal: string) => {
      log.info({ signal }, 'shutting down');
      await drover.close();
      process.exit(0);
    };
    process.once('SIGTERM', () => void stop('SIGTERM'));
    process.once('SIGINT', () => void stop('SIGINT'));
  });

program
  .command('agent')
  .description('run a remote cell agent that talks to the control plane over the BBS cell routes')
  .addOption(flag('--api <urls>', 'control plane URL(s), comma-separated replicas', 'API').default('http://127.0.0.1:8889'))
  .addOption(flag('--token <token>', 'bearer token of the agent principal', 'TOKEN'))
  .addOption(flag('--cell-id <id>', 'cell id', 'CELL_ID').default(hostname()))
  .addOption(flag('--site <site>', 'site', 'SITE').default(''))
  .addOption(flag('--sections <list>', 'comma-separated sections', 'SECTIONS').default(''))
  .addOption(flag('--placement-tags <list>', 'comma-separated placement tags', 'PLACEMENT_TAGS').default(''))
  .addOption(flag('--data-dir <dir>', 'state directory', 'DATA_DIR').default(DEFAULT_OPTIONS.dataDir))
  .addOption(flag('--ttl-ms <ms>', 'presence TTL', 'TTL_MS').default(String(DEFAULT_AGENT_OPTIONS.ttlMs)))
  .addOption(flag('--start-window-ms <ms>', 'alive this long = started', 'START_WINDOW_MS').default(String(DEFAULT_AGENT_OPTIONS.startWindowMs)))
  .addOption(flag('--log-level <level>', 'pino log level', 'LOG_LEVEL').default('info'))
  .action(async (o) => {
    const log = pino({ level: o.logLevel });
    const list = (v: string) => String(v).split(',').filter(Boolean);
    const agent = new CellAgent(
      new ControlPlane(list(o.api), o.token),
      {
        ...DEFAULT_AGENT_OPTIONS,
        cellId: o.cellId,
        site: o.site,
        sections: list(o.sections),
        placementTags: list(o.placementTags),
        dataDir: join(o.dataDir, 'cells', o.cellId),
        ttlMs: Number(o.ttlMs),
        startWindowMs: Number(o.startWindowMs),
      },
      log.child({ cell: o.cellId }),
    );
    await agent.start();
    const stop = async () => {
      await agent.close();
      process.exit(0);
    };
    process.once('SIGTERM', () => void stop());
    process.once('SIGINT', () => void stop());
  });

program
  .command('logs')
  .description("show an instance's log (read from the cell's data dir on this machine)")
  .argument('<guid>')
  .argument('[index]', 'instance index', '0')
  .option('-f, --follow', 'keep printing as the log grows')
  .addOption(flag('--data-dir <dir>', 'state directory', 'DATA_DIR').default(DEFAULT_OPTIONS.dataDir))
  .option('--cell-id <id>', 'cell id (default: every cell in the data dir)')
  .option('--bytes <n>', 'how much of the end to show', '65536')
  .action((guid, index, o) => logsCommand(o.dataDir, guid, Number(index), { follow: !!o.follow, cellId: o.cellId, bytes: Number(o.bytes) }));

/** Client commands share --api, --token and --json. */
function client(name: string, description: string) {
  return program
    .command(name)
    .description(description)
    .addOption(new Option('--api <url>', 'Drover API URL').env('DROVER_API').default('http://127.0.0.1:8889'))
    .addOption(new Option('--token <token>', 'bearer token').env('DROVER_TOKEN'))
    .option('--json', 'print JSON');
}

client('ls', 'list desired LRPs and their instances')
  .option('--domain <domain>', 'only this domain')
  .action((o) => listCommand(o));
client('desire', 'desire an LRP from a JSON or YAML file')
  .requiredOption('-f, --file <file>', 'DesiredLRP file')
  .action((o) => desireCommand(o));
client('scale', 'set the instance count of a desired LRP')
  .argument('<guid>')
  .argument('<instances>')
  .action((guid, n, o: ClientOptions) => scaleCommand(o, guid, n));
client('remove', 'remove a desired LRP and stop its instances')
  .argument('<guid>')
  .action((guid, o: ClientOptions) => removeCommand(o, guid));
client('retire', 'stop one instance (it is replaced by convergence)')
  .argument('<guid>')
  .argument('<index>')
  .action((guid, index, o: ClientOptions) => retireCommand(o, guid, index));
client('cells', 'list cells').action((o) => cellsCommand(o));

program.parseAsync().catch((e: Error) => {
  console.error(`drover: ${e.message}`);
  process.exit(1);
});
