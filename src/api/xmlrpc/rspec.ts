// GENI RSpec v3 as Drover reads and writes it. A request names nodes whose sliver type is
// `drover-process`; each node says what to run, either with the standard
// `<services><execute shell="sh" command="..."/></services>` or with Drover's extension
// `<drover:process path="..." dir="..."><drover:arg>..</drover:arg><drover:env name=".." value=".."/></drover:process>`.
// One node becomes one sliver (a DesiredLRP with one instance). The advertisement lists the
// live cells as nodes; the manifest echoes the request's nodes with their sliver ids.

import { fail } from '../../model/errors.js';
import type { Cell } from '../../model/cell.js';
import type { EnvironmentVariable, RunAction } from '../../model/lrp.js';
import { AM_URN, geniUrn } from '../../pki/urn.js';
import { childrenNamed, escapeXml, parseXml, XmlError, type XmlElement } from './xml.js';

export const RSPEC_NS = 'http://www.geni.net/resources/rspec/3';
export const DROVER_RSPEC_NS = 'urn:drover:rspec:process:1';
export const SLIVER_TYPE = 'drover-process';
export const RSPEC_VERSION = { type: 'GENI', version: '3' };
export const MAX_NODES = 100;

const SHELLS: Record<string, string> = { sh: '/bin/sh', bash: '/bin/bash' };

/** What a request node asked for, kept to run it and to echo it in manifests. */
// a type, not an interface: it is stored in Service.attributes (Record<string, unknown>)
export type NodeRequest = {
  clientId: string;
  execute?: { shell: string; command: string };
  process?: { path: string; args: string[]; env: EnvironmentVariable[]; dir: string };
};

const inRspec = (el: XmlElement) => el.ns === RSPEC_NS || el.ns === '';

function attr(el: XmlElement, name: string, what: string): string {
  const v = el.attrs[name];
  if (!v) fail('invalid_request', `${what} needs a ${name} attribute`);
  return v;
}

function readNode(node: XmlElement): NodeRequest {
  const clientId = attr(node, 'client_id', 'a node');
  const type = childrenNamed(node, 'sliver_type').find(inRspec)?.attrs.name ?? SLIVER_TYPE;
  if (type !== SLIVER_TYPE) fail('invalid_request', `node ${clientId}: sliver type ${type} is not offered here (only ${SLIVER_TYPE})`);
  const executes = childrenNamed(node, 'services')
    .filter(inRspec)
    .flatMap((s) => childrenNamed(s, 'execute').filter(inRspec));
  const processes = childrenNamed(node, 'process', DROVER_RSPEC_NS);
  if (executes.length + processes.length !== 1) fail('invalid_request', `node ${clientId}: give exactly one <execute> or <drover:process>`);
  if (executes[0]) {
    const shell = executes[0].attrs.shell ?? 'sh';
    if (!SHELLS[shell]) fail('invalid_request', `node ${clientId}: shell ${shell} is not one of ${Object.keys(SHELLS).join(', ')}`);
    return { clientId, execute: { shell, command: attr(executes[0], 'command', `node ${clientId}: <execute>`) } };
  }
  const p = processes[0]!;
  return {
    clientId,
    process: {
      path: attr(p, 'path', `node ${clientId}: <drover:process>`),
      args: childrenNamed(p, 'arg', DROVER_RSPEC_NS).map((a) => a.text),
      env: childrenNamed(p, 'env', DROVER_RSPEC_NS).map((e) => ({ name: attr(e, 'name', `node ${clientId}: <drover:env>`), value: e.attrs.value ?? '' })),
      dir: p.attrs.dir ?? '',
    },
  };
}

/** The nodes of a request RSpec meant for this aggregate (nodes bound to another AM are left to it). */
export function parseRequest(text: string): NodeRequest[] {
  let root: XmlElement;
  try {
    root = parseXml(text);
  } catch (e) {
    if (e instanceof XmlError) fail('invalid_request', `RSpec is not well-formed XML: ${e.message}`);
    throw e;
  }
  if (root.name !== 'rspec' || !inRspec(root)) fail('invalid_request', 'not a GENI v3 RSpec (expected <rspec> in the rspec/3 namespace)');
  if (root.attrs.type && root.attrs.type !== 'request') fail('invalid_request', `expected a request RSpec, got type ${root.attrs.type}`);
  const mine = childrenNamed(root, 'node').filter((n) => inRspec(n) && (!n.attrs.component_manager_id || n.attrs.component_manager_id === AM_URN));
  if (!mine.length) fail('invalid_request', `the RSpec has no node for this aggregate (${AM_URN})`);
  if (mine.length > MAX_NODES) fail('limit_exceeded', `at most ${MAX_NODES} nodes per request`);
  const nodes = mine.map(readNode);
  const ids = new Set(nodes.map((n) => n.clientId));
  if (ids.size !== nodes.length) fail('invalid_request', 'client_id values must be unique');
  return nodes;
}

/** The command line a node runs. */
export function runActionOf(n: NodeRequest): RunAction {
  if (n.execute) return { path: SHELLS[n.execute.shell]!, args: ['-c', n.execute.command], dir: '', env: [], user: '' };
  const p = n.process!;
  return { path: p.path, args: p.args, dir: p.dir, env: p.env, user: '' };
}

const HEADER = (type: string) =>
  `<?xml version="1.0" encoding="UTF-8"?>\n<rspec xmlns="${RSPEC_NS}" xmlns:drover="${DROVER_RSPEC_NS}" type="${type}">\n`;

/** A cell as an RSpec component URN (characters a URN part cannot hold become '_'). */
export function cellUrn(cellId: string): string {
  return geniUrn('node', cellId.replace(/[^A-Za-z0-9._:-]/g, '_'));
}

export function advertisement(cells: Cell[]): string {
  const nodes = cells.map(
    (c) =>
      `  <node component_id="${escapeXml(cellUrn(c.cellId))}" component_name="${escapeXml(c.cellId)}" component_manager_id="${AM_URN}" exclusive="false">\n` +
      `    <sliver_type name="${SLIVER_TYPE}"/>\n    <available now="true"/>\n  </node>\n`,
  );
  return HEADER('advertisement') + nodes.join('') + '</rspec>\n';
}

function nodeBody(n: NodeRequest): string {
  if (n.execute) return `    <services><execute shell="${escapeXml(n.execute.shell)}" command="${escapeXml(n.execute.command)}"/></services>\n`;
  const p = n.process!;
  const args = p.args.map((a) => `<drover:arg>${escapeXml(a)}</drover:arg>`).join('');
  const env = p.env.map((e) => `<drover:env name="${escapeXml(e.name)}" value="${escapeXml(e.value)}"/>`).join('');
  return `    <drover:process path="${escapeXml(p.path)}" dir="${escapeXml(p.dir)}">${args}${env}</drover:process>\n`;
}

export interface ManifestNode {
  node: NodeRequest;
  sliverUrn: string;
  /** the cell running it, when one does */
  cellId?: string;
}

export function manifest(nodes: ManifestNode[]): string {
  const body = nodes.map(({ node, sliverUrn, cellId }) => {
    const component = cellId ? ` component_id="${escapeXml(cellUrn(cellId))}"` : '';
    return (
      `  <node client_id="${escapeXml(node.clientId)}" component_manager_id="${AM_URN}" sliver_id="${escapeXml(sliverUrn)}"${component} exclusive="false">\n` +
      `    <sliver_type name="${SLIVER_TYPE}"/>\n${nodeBody(node)}  </node>\n`
    );
  });
  return HEADER('manifest') + body.join('') + '</rspec>\n';
}
