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
import { DEFAULT_GENI_LISTEN } from '../api/xmlrpc/defaults.js';
import { cellsCommand, desireCommand, listCommand, removeCommand, retireCommand, scaleCommand, type ClientOptions } from './commands.js';
import { DEFAULT_WAIT_SECONDS, waitIfAsked, watchList } from './watch.js';
import { statusCommand } from './status.js';
import { compactWhenQuiet, tightenOldGeneration } from './daemon-heap.js';

const program = new Command('drover').description('Drover keeps long-running processes alive the way their owners declared them');

/** Every serve flag can also come from the environment as DROVER_<FLAG>. */
/** The GENI commands load the PKI and XML signature modules: only when one of them runs. */
const geniCommands = () => import('./geni.js');

const flag = (spec: string, description: string, env: string) => new Option(spec, description).env(`DROVER_${env}`);

function integerAtLeast(min: number, value: string, flagName: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new Error(`${flagName} must be ${min === 1 ? 'a positive integer' : `an integer >= ${min}`}, got ${value}`);
  return n;
}

const positiveInt = (value: string, flagName: string) => integerAtLeast(1, value, flagName);

function nonNegativeNumber(value: string, flagName: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${flagName} must be a number >= 0, got ${value}`);
  return n;
}

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
  .addOption(flag('--cell-ttl-ms <ms>', 'presence TTL of the in-process agent', 'CELL_TTL_MS').default(String(DEFAULT_OPTIONS.cellTtlMs)))
  .addOption(flag('--body-limit <bytes>', 'largest accepted request body', 'BODY_LIMIT').default(String(DEFAULT_BODY_LIMIT)))
  .addOption(flag('--message-limit <bytes>', 'largest accepted MQTT (locks) or AMQP (MANO) request message', 'MESSAGE_LIMIT').default(String(DEFAULT_OPTIONS.messageLimit)))
  .addOption(flag('--rate-limit <per-second>', 'requests per second each principal may make, over all interfaces (0: no limit)', 'RATE_LIMIT').default(String(DEFAULT_OPTIONS.rateLimit)))
  .addOption(flag('--rate-burst <requests>', 'requests a principal may make at once (default: one second of --rate-limit)', 'RATE_BURST'))
  .addOption(flag('--max-instances <n>', 'most instances one desired LRP may have', 'MAX_INSTANCES').default(String(DEFAULT_OPTIONS.maxInstances)))
  .addOption(flag('--log-level <level>', 'pino log level', 'LOG_LEVEL').default('info'))
  .addOption(flag('--mqtt <broker>', 'embedded (default) | none | mqtt://... | mqtts://... (Arrowhead locks)', 'MQTT'))
  .addOption(flag('--mqtt-listen <host:port>', 'embedded broker MQTT address', 'MQTT_LISTEN').default(DEFAULT_OPTIONS.mqttListen))
  .addOption(flag('--mqtts-listen <host:port>', 'embedded broker MQTTS address (with --mqtt-tls-cert/-key)', 'MQTTS_LISTEN').default(DEFAULT_OPTIONS.mqttsListen))
  .addOption(flag('--mqtt-tls-cert <file>', 'PEM certificate (chain) of the embedded MQTTS listener', 'MQTT_TLS_CERT'))
  .addOption(flag('--mqtt-tls-key <file>', 'PEM private key of the embedded MQTTS listener', 'MQTT_TLS_KEY'))
  .addOption(flag('--mqtt-topic-prefix <prefix>', 'Arrowhead base topic of the lock topics', 'MQTT_TOPIC_PREFIX').default(DEFAULT_OPTIONS.mqttTopicPrefix))
  .addOption(flag('--arrowhead-ca <file>', 'Arrowhead locks: PEM CA bundle that client certificates sent as authentication info must be issued by', 'ARROWHEAD_CA'))
  .addOption(flag('--amqp <url>', 'RabbitMQ URL (MANO lifecycle)', 'AMQP'))
  .addOption(flag('--amqp-exchange <name>', 'MANO topic exchange', 'AMQP_EXCHANGE').default(DEFAULT_OPTIONS.amqpExchange))
  .addOption(flag('--amqp-app-id <id>', "Drover's app_id on the MANO bus", 'AMQP_APP_ID').default(DEFAULT_OPTIONS.amqpAppId))
  .addOption(flag('--mano-ready-timeout-ms <ms>', 'MANO instantiate/terminate: ERROR if not done by then', 'MANO_READY_TIMEOUT_MS').default(String(DEFAULT_OPTIONS.manoReadyTimeoutMs)))
  .addOption(flag('--geni [host:port]', `GENI AM API v3 over HTTPS (XML-RPC); ${DEFAULT_GENI_LISTEN} when no address is given`, 'GENI').preset(DEFAULT_GENI_LISTEN))
  .addOption(flag('--tls-cert <file>', 'GENI: PEM certificate of the HTTPS endpoint (with --tls-key, --tls-ca; default: Drover makes its own in <data-dir>/pki/)', 'TLS_CERT'))
  .addOption(flag('--tls-key <file>', 'GENI: PEM private key of the HTTPS endpoint', 'TLS_KEY'))
  .addOption(flag('--tls-ca <file>', 'GENI: PEM CA bundle that client certificates and credentials must come from', 'TLS_CA'))
  .addOption(flag('--geni-trust-certs', 'GENI: the client certificate alone authorizes (no credentials needed)', 'GENI_TRUST_CERTS'))
  .addOption(flag('--replica-id <id>', 'this replica in leader election and /status (default: hostname-pid)', 'REPLICA_ID'))
  .addOption(flag('--lease-ms <ms>', 'PostgreSQL: leader lease duration', 'LEASE_MS').default(String(DEFAULT_OPTIONS.leaseMs)))
  .addOption(flag('--lease-renew-ms <ms>', 'PostgreSQL: leader lease renewal interval (default: lease / 3)', 'LEASE_RENEW_MS'))
  .addOption(flag('--event-retention-ms <ms>', 'how long the event log (SSE resume, metrics) keeps events; 0 keeps them all', 'EVENT_RETENTION_MS').default(String(DEFAULT_OPTIONS.eventRetentionMs)))
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
        cellTtlMs: positiveInt(o.cellTtlMs, '--cell-ttl-ms'),
        bodyLimit: positiveInt(o.bodyLimit, '--body-limit'),
        messageLimit: positiveInt(o.messageLimit, '--message-limit'),
        rateLimit: nonNegativeNumber(o.rateLimit, '--rate-limit'),
        rateBurst: o.rateBurst === undefined ? undefined : positiveInt(o.rateBurst, '--rate-burst'),
        maxInstances: positiveInt(o.maxInstances, '--max-instances'),
        logLevel: o.logLevel,
        mqtt: o.mqtt,
        mqttListen: o.mqttListen,
        mqttsListen: o.mqttsListen,
        mqttTlsCert: o.mqttTlsCert,
        mqttTlsKey: o.mqttTlsKey,
        mqttTopicPrefix: o.mqttTopicPrefix,
        arrowheadCa: o.arrowheadCa,
        amqp: o.amqp,
        amqpExchange: o.amqpExchange,
        amqpAppId: o.amqpAppId,
        manoReadyTimeoutMs: positiveInt(o.manoReadyTimeoutMs, '--mano-ready-timeout-ms'),
        geni: o.geni,
        tlsCert: o.tlsCert,
        tlsKey: o.tlsKey,
        tlsCa: o.tlsCa,
        geniTrustCerts: !!o.geniTrustCerts,
        replicaId: o.replicaId,
        leaseMs: positiveInt(o.leaseMs, '--lease-ms'),
        leaseRenewMs: o.leaseRenewMs === undefined ? undefined : positiveInt(o.leaseRenewMs, '--lease-renew-ms'),
        eventRetentionMs: integerAtLeast(0, o.eventRetentionMs, '--event-retention-ms'),
      },
      log,
    );
    tightenOldGeneration();
    compactWhenQuiet();
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
  .addOption(flag('--start-window-ms <ms>', 'alive this long (or settled sooner) = started', 'START_WINDOW_MS').default(String(DEFAULT_AGENT_OPTIONS.startWindowMs)))
  .addOption(flag('--log-level <level>', 'pino log level', 'LOG_LEVEL').default('info'))
  .action(async (o) => {
    const log = pino({ level: o.logLevel });
    const list = (v: string) => String(v).split(',').filter(Boolean);
    const agent = new CellAgent(
      new ControlPlane(list(o.api), o.token, Math.max(500, Math.floor(positiveInt(o.ttlMs, '--ttl-ms') / 2))),
      {
        ...DEFAULT_AGENT_OPTIONS,
        cellId: o.cellId,
        site: o.site,
        sections: list(o.sections),
        placementTags: list(o.placementTags),
        dataDir: join(o.dataDir, 'cells', o.cellId),
        ttlMs: positiveInt(o.ttlMs, '--ttl-ms'),
        startWindowMs: positiveInt(o.startWindowMs, '--start-window-ms'),
      },
      log.child({ cell: o.cellId }),
    );
    await agent.start();
    tightenOldGeneration();
    compactWhenQuiet();
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

const certs = program.command('certs').description("GENI client certificates and credentials from Drover's own CA (<data-dir>/pki/)");
certs
  .command('issue')
  .description('issue a client certificate naming a GENI user URN (writes <name>.pem and <name>-key.pem)')
  .requiredOption('--urn <urn>', 'urn:publicid:IDN+<authority>+user+<name>')
  .option('--out <dir>', 'where to write the files', '.')
  .option('--days <n>', 'validity in days')
  .addOption(flag('--data-dir <dir>', 'state directory', 'DATA_DIR').default(DEFAULT_OPTIONS.dataDir))
  .action(async (o) => (await geniCommands()).certsIssueCommand(o));
certs
  .command('credential')
  .description('issue a geni_sfa v3 slice credential for a user (XML on stdout or --out)')
  .requiredOption('--slice <urn>', 'urn:publicid:IDN+<authority>+slice+<name>')
  .requiredOption('--user <urn>', 'the GENI user URN it is issued to')
  .option('--privileges <list>', 'comma-separated privileges', '*')
  .option('--days <n>', 'validity in days', '30')
  .option('--out <file>', 'write it here instead of stdout')
  .addOption(flag('--data-dir <dir>', 'state directory', 'DATA_DIR').default(DEFAULT_OPTIONS.dataDir))
  .action(async (o) => (await geniCommands()).certsCredentialCommand(o));

/** Client commands share --api, --token and --json. */
function client(name: string, description: string, parent: Command = program) {
  return parent
    .command(name)
    .description(description)
    .addOption(new Option('--api <url>', 'Drover API URL').env('DROVER_API').default('http://127.0.0.1:8889'))
    .addOption(new Option('--token <token>', 'bearer token').env('DROVER_TOKEN'))
    .option('--json', 'print JSON');
}

/** --wait: show progress until every instance is RUNNING (see watch.ts). */
const waitable = (cmd: Command) =>
  cmd.option('--wait', 'show progress until the target number of instances is RUNNING').option('--timeout <seconds>', 'give up waiting after this long', String(DEFAULT_WAIT_SECONDS));

client('ls', 'list desired LRPs and their instances')
  .option('--domain <domain>', 'only this domain')
  .option('-w, --watch', 'print again after every change, until interrupted')
  .action((o) => (o.watch ? watchList(o) : listCommand(o)));
waitable(client('desire', 'desire an LRP from a JSON or YAML file'))
  .requiredOption('-f, --file <file>', 'DesiredLRP file')
  .action(async (o) => waitIfAsked(o, await desireCommand(o)));
waitable(client('scale', 'set the instance count of a desired LRP'))
  .argument('<guid>')
  .argument('<instances>')
  .action(async (guid, n, o: ClientOptions) => waitIfAsked(o, await scaleCommand(o, guid, n)));
client('remove', 'remove a desired LRP and stop its instances')
  .argument('<guid>')
  .action((guid, o: ClientOptions) => removeCommand(o, guid));
client('retire', 'stop one instance (it is replaced by convergence)')
  .argument('<guid>')
  .argument('<index>')
  .action((guid, index, o: ClientOptions) => retireCommand(o, guid, index));
client('cells', 'list cells').action((o) => cellsCommand(o));
client('status', 'replica status: id, leadership, lease epoch, live cells (--api URL1,URL2,... asks each)').action((o) => statusCommand(o));

const slice = program.command('slice').description('operator actions on a GENI slice that was Shutdown (HTTP API, operator token)');
for (const [action, description] of [
  ['restore', 'lift the Shutdown: the slivers run again and the experimenter may act on them'],
  ['delete', 'delete the slice and its slivers (working directories and logs stay on the cells)'],
] as const) {
  client(action, description, slice)
    .argument('<urn>', 'slice URN')
    .action(async (urn: string, o) => (await geniCommands()).sliceCommand(o, action, urn));
}

program.parseAsync().catch((e: Error) => {
  console.error(`drover: ${e.message}`);
  process.exit(1);
});
