// GENI on the command line: `drover certs ...` issues user certificates and credentials
// from Drover's own CA (<data-dir>/pki/, made by the first `drover serve --geni`);
// `drover slice restore|delete URN` are the operator's answers to a Shutdown.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_USER_CERT_DAYS, issueUserCertificate } from '../pki/ca.js';
import { ALL_PRIVILEGES, issueCredential } from '../pki/credential.js';
import { parseUrn } from '../pki/urn.js';
import { bbsCall, type ApiTarget } from './client.js';

const DAY_MS = 24 * 60 * 60 * 1000;

function caOf(dataDir: string) {
  const dir = join(dataDir, 'pki');
  return { cert: join(dir, 'ca.pem'), key: join(dir, 'ca-key.pem') };
}

function days(value: string | undefined, fallback: number): number {
  const n = Number(value ?? fallback);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--days must be a positive integer, got ${value}`);
  return n;
}

/** A client certificate for a GENI user URN: `<out>/<name>.pem` and `<name>-key.pem`. */
export async function certsIssueCommand(o: { dataDir: string; urn: string; out?: string; days?: string }): Promise<void> {
  const name = parseUrn(o.urn)?.name;
  if (!name) throw new Error(`not a GENI URN: ${o.urn}`);
  const files = await issueUserCertificate(caOf(o.dataDir), o.out ?? '.', name, o.urn, days(o.days, DEFAULT_USER_CERT_DAYS));
  console.log(`${files.cert}\n${files.key}`);
}

/** A geni_sfa v3 credential granting a user every privilege on a slice, signed by the CA. */
export function certsCredentialCommand(o: { dataDir: string; slice: string; user: string; out?: string; days?: string; privileges?: string }): void {
  if (parseUrn(o.slice)?.type !== 'slice') throw new Error(`not a GENI slice URN: ${o.slice}`);
  if (parseUrn(o.user)?.type !== 'user') throw new Error(`not a GENI user URN: ${o.user}`);
  const ca = caOf(o.dataDir);
  const xml = issueCredential(
    { ownerUrn: o.user, targetUrn: o.slice, expires: Date.now() + days(o.days, 30) * DAY_MS, privileges: (o.privileges ?? ALL_PRIVILEGES).split(',').filter(Boolean) },
    { cert: readFileSync(ca.cert, 'utf8'), key: readFileSync(ca.key, 'utf8') },
  );
  if (o.out) writeFileSync(o.out, xml);
  else process.stdout.write(`${xml}\n`);
}

/** Lifts a Shutdown (the slivers run again) or deletes the slice; operator token needed. */
export async function sliceCommand(o: ApiTarget & { json?: boolean }, action: 'restore' | 'delete', urn: string): Promise<void> {
  if (parseUrn(urn)?.type !== 'slice') throw new Error(`not a GENI slice URN: ${urn}`);
  const { service } = await bbsCall<{ service: { id: string; state: string; shutdown: boolean } }>(o, `/v1/services/${action}`, { kind: 'geni', name: urn });
  console.log(o.json ? JSON.stringify(service, null, 2) : `${action === 'restore' ? 'restored' : 'deleting'} ${urn} (service ${service.id}, ${service.state})`);
}
