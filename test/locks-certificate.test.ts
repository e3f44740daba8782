// Arrowhead's certificate policy on the lock interfaces: the caller sends its client
// certificate (PEM, base64) as the authentication info; Drover accepts it only when a CA of
// --arrowhead-ca issued it, and maps its common name to a principal (`certSubjects`).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RunningDrover } from '../src/drover.js';
import { LOCK_HTTP_BASE } from '../src/api/http/locks.js';
import { LockClient, lock, lockTempDir, startLockDrover, unique, writeAuthFile } from './locks-fixtures.js';

const CLOUD = 'testcloud.aitia.arrowhead.eu';
const dir = lockTempDir('certs');
const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });

/** A self-signed certificate (a CA when `ca`); its PEM file and key file. */
function selfSigned(name: string, commonName: string, ca = false) {
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}-key.pem`);
  const extensions = ca ? ['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign'] : [];
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${commonName}`, '-days', '1', ...extensions, '-keyout', key, '-out', cert);
  return { cert, key };
}

/** A client certificate issued by `ca`; its PEM file. */
function issued(ca: { cert: string; key: string }, name: string, commonName: string): string {
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.pem`);
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${commonName}`, '-keyout', join(dir, `${name}-key.pem`), '-out', csr);
  openssl('x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', '1', '-out', cert);
  return cert;
}

/** The authentication info of the certificate policy: the PEM text, base64-encoded. */
const authInfo = (certFile: string) => Buffer.from(readFileSync(certFile, 'utf8')).toString('base64');

describe('Arrowhead certificate authentication (locks)', () => {
  const ca = selfSigned('ca', 'Drover Test Cloud CA', true);
  const manager = authInfo(issued(ca, 'manager', `TemperatureManager.${CLOUD}`));
  const stranger = authInfo(issued(ca, 'stranger', `Stranger.${CLOUD}`));
  const impostor = authInfo(selfSigned('impostor', `TemperatureManager.${CLOUD}`).cert);
  const prefix = unique('drover-test/cert');
  const sid = (name: string) => `${name}|certsvc|1.0.0`;
  let drover: RunningDrover;
  let client: LockClient;

  before(async () => {
    const auth = writeAuthFile();
    appendFileSync(auth, `  - name: CertifiedManager\n    roles: [owner]\n    certSubjects: ['CN=TemperatureManager.${CLOUD}']\n`);
    drover = await startLockDrover({ auth, mqtt: 'embedded', mqttTopicPrefix: prefix, arrowheadCa: ca.cert });
    client = await LockClient.connect(drover.mqtt!.brokerUrl, prefix);
  });
  after(async () => {
    await client?.close();
    await drover?.close();
  });

  it('over MQTT: a certificate of a trusted CA names its principal, which may lock as itself', async () => {
    const created = await client.request('create', { authentication: manager, payload: { locks: [lock(sid('mqtt'), 'CertifiedManager')] } });
    assert.equal(created.status, 201, JSON.stringify(created.payload));
    assert.equal(created.receiver, 'CertifiedManager');
    assert.equal(created.payload.entries[0].owner, 'CertifiedManager');
    // its principal is no operator: another owner's lock is refused
    const forOther = await client.request('create', { authentication: manager, payload: { locks: [lock(sid('other'), 'TemperatureManager')] } });
    assert.equal(forOther.status, 403);
    assert.equal(forOther.payload.exceptionType, 'FORBIDDEN');
  });

  it('refuses, as 401 AUTH, a certificate of another CA with the same name, one no principal lists, and one that does not parse', async () => {
    const garbled = Buffer.from(`-----BEGIN CERTIFICATE-----\n${'bm90IGEgY2VydGlmaWNhdGU='.repeat(12)}\n-----END CERTIFICATE-----\n`).toString('base64');
    for (const [authentication, message] of [
      [impostor, /not issued by an authority Drover trusts/],
      [stranger, /Invalid authentication info/],
      [garbled, /Invalid authentication key/],
    ] as const) {
      const refused = await client.request('create', { authentication, payload: { locks: [lock(sid('refused'), 'CertifiedManager')] } });
      assert.equal(refused.status, 401);
      assert.equal(refused.payload.exceptionType, 'AUTH');
      assert.match(refused.payload.errorMessage, message);
    }
    const query = await client.request('query', { authentication: manager, payload: { serviceInstanceIds: [sid('refused')] } });
    assert.equal(query.payload.count, 0, 'nothing was stored for the refused requests');
  });

  it('over HTTP: the same certificate as the bearer credential', async () => {
    const post = (authorization: string) =>
      fetch(`${drover.url}${LOCK_HTTP_BASE}/create`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${authorization}` },
        body: JSON.stringify({ locks: [lock(sid('http'), 'CertifiedManager')] }),
      });
    const refused = await post(impostor);
    assert.equal(refused.status, 401);
    assert.equal(((await refused.json()) as { exceptionType: string }).exceptionType, 'AUTH');
    const created = await post(manager);
    assert.equal(created.status, 201);
    assert.equal(((await created.json()) as { entries: { owner: string }[] }).entries[0]!.owner, 'CertifiedManager');
  });
});
