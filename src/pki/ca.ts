// Drover's own certificate authority for the GENI interface. Node's crypto verifies
// certificates but cannot make them, so node-forge builds and signs them; the RSA keys
// come from Node's native generator. RSA, because the CA also signs GENI credentials
// (XML signatures), which are RSA in practice.
//
// On first start `<data-dir>/pki/` gets: ca.pem + ca-key.pem (the authority),
// server.pem + server-key.pem (the HTTPS endpoint), operator.pem + operator-key.pem (a
// client certificate for the operator URN). Keys are written owner-only.

import { generateKeyPair, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import forge from 'node-forge';
import { AM_URN, geniUrn, OPERATOR_URN, parseUrn } from './urn.js';

export interface KeyPairFiles {
  cert: string;
  key: string;
}

export interface Pki {
  /** the trusted CA bundle (PEM) */
  ca: string;
  server: KeyPairFiles;
  /** set when Drover made the PKI: the CA's key pair (to issue certificates and credentials) and the operator's */
  caKeyPair?: KeyPairFiles;
  operator?: KeyPairFiles;
}

const DAY_MS = 24 * 60 * 60 * 1000;
export const DEFAULT_USER_CERT_DAYS = 365;

async function newKey(): Promise<forge.pki.rsa.PrivateKey> {
  const { privateKey } = await promisify(generateKeyPair)('rsa', { modulusLength: 2048 });
  return forge.pki.privateKeyFromPem(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
}

function publicKeyOf(key: forge.pki.rsa.PrivateKey): forge.pki.rsa.PublicKey {
  return forge.pki.setRsaPublicKey(key.n, key.e);
}

/** A positive 128-bit serial: random, so certificates of separate CAs never collide. */
function serial(): string {
  const b = randomBytes(16);
  b[0]! &= 0x7f;
  return b.toString('hex');
}

interface CertSpec {
  commonName: string;
  days: number;
  /** subjectAltName entries (forge's altNames: 2 = DNS, 6 = URI, 7 = IP) */
  altNames: { type: number; value?: string; ip?: string }[];
  usage: 'ca' | 'server' | 'client';
}

function buildCert(spec: CertSpec, key: forge.pki.rsa.PrivateKey, issuer?: { cert: forge.pki.Certificate; key: forge.pki.rsa.PrivateKey }): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKeyOf(key);
  cert.serialNumber = serial();
  // a minute back: a peer whose clock is slightly behind still accepts a fresh certificate
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + spec.days * DAY_MS);
  cert.setSubject([{ name: 'commonName', value: spec.commonName }]);
  cert.setIssuer(issuer ? issuer.cert.subject.attributes : cert.subject.attributes);
  const extensions: object[] = [{ name: 'subjectKeyIdentifier' }];
  if (spec.usage === 'ca') {
    extensions.push({ name: 'basicConstraints', cA: true, critical: true }, { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true });
  } else {
    extensions.push(
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: spec.usage === 'server', clientAuth: spec.usage === 'client' },
    );
  }
  if (spec.altNames.length) extensions.push({ name: 'subjectAltName', altNames: spec.altNames });
  if (issuer) extensions.push({ name: 'authorityKeyIdentifier', keyIdentifier: issuer.cert.generateSubjectKeyIdentifier().getBytes() });
  cert.setExtensions(extensions);
  cert.sign(issuer?.key ?? key, forge.md.sha256.create());
  return cert;
}

function writePair(dir: string, name: string, cert: forge.pki.Certificate, key: forge.pki.rsa.PrivateKey): KeyPairFiles {
  const files = { cert: join(dir, `${name}.pem`), key: join(dir, `${name}-key.pem`) };
  writeFileSync(files.key, forge.pki.privateKeyToPem(key), { mode: 0o600 });
  writeFileSync(files.cert, forge.pki.certificateToPem(cert));
  return files;
}

function readIssuer(ca: KeyPairFiles) {
  return { cert: forge.pki.certificateFromPem(readFileSync(ca.cert, 'utf8')), key: forge.pki.privateKeyFromPem(readFileSync(ca.key, 'utf8')) };
}

const pairIn = (dir: string, name: string): KeyPairFiles => ({ cert: join(dir, `${name}.pem`), key: join(dir, `${name}-key.pem`) });

/**
 * Drover's PKI in `dir`, made on first use. `hosts` are the names and addresses the server
 * certificate must cover besides localhost, 127.0.0.1, ::1 and this machine's hostname.
 */
export async function ensurePki(dir: string, hosts: string[] = []): Promise<Pki> {
  const ca = pairIn(dir, 'ca');
  const server = pairIn(dir, 'server');
  const operator = pairIn(dir, 'operator');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (!existsSync(ca.cert) || !existsSync(ca.key)) {
    const key = await newKey();
    writePair(dir, 'ca', buildCert({ commonName: 'Drover GENI CA', days: 3650, altNames: [{ type: 6, value: geniUrn('authority', 'sa') }], usage: 'ca' }, key), key);
  }
  if (!existsSync(server.cert) || !existsSync(server.key)) {
    const names = [...new Set(['localhost', '127.0.0.1', '::1', hostname(), ...hosts].filter(Boolean))];
    const altNames = [...names.map((n) => (isIP(n) ? { type: 7, ip: n } : { type: 2, value: n })), { type: 6, value: AM_URN }];
    await issueCertificate(ca, dir, 'server', { commonName: names[0]!, days: 3650, altNames, usage: 'server' });
  }
  if (!existsSync(operator.cert) || !existsSync(operator.key)) await issueUserCertificate(ca, dir, 'operator', OPERATOR_URN, DEFAULT_USER_CERT_DAYS);
  return { ca: ca.cert, server, caKeyPair: ca, operator };
}

async function issueCertificate(ca: KeyPairFiles, dir: string, name: string, spec: CertSpec): Promise<KeyPairFiles> {
  const key = await newKey();
  mkdirSync(dir, { recursive: true });
  return writePair(dir, name, buildCert(spec, key, readIssuer(ca)), key);
}

/** A client certificate naming `urn` in its subjectAltName, written as `<name>.pem` and `<name>-key.pem` in `dir`. */
export function issueUserCertificate(ca: KeyPairFiles, dir: string, name: string, urn: string, days = DEFAULT_USER_CERT_DAYS): Promise<KeyPairFiles> {
  const parsed = parseUrn(urn);
  if (parsed?.type !== 'user') throw new Error(`not a GENI user URN: ${urn}`);
  if (!Number.isInteger(days) || days < 1) throw new Error(`days must be a positive integer, got ${days}`);
  return issueCertificate(ca, dir, name, { commonName: parsed.name, days, altNames: [{ type: 6, value: urn }], usage: 'client' });
}

/** The GENI user URN a certificate names in its subjectAltName (Node's `subjectaltname` text). */
export function urnFromSubjectAltName(san: string | undefined): string | undefined {
  for (const entry of (san ?? '').split(', ')) {
    // Node quotes a value holding special characters as a JSON string
    const value = entry.startsWith('URI:"') ? (JSON.parse(entry.slice(4)) as string) : entry.startsWith('URI:') ? entry.slice(4) : undefined;
    if (parseUrn(value)?.type === 'user') return value;
  }
  return undefined;
}
