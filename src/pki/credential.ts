// GENI credentials of type `geni_sfa` version 3: a `<signed-credential>` holding one
// privilege `<credential xml:id=...>` (owner URN, target URN, expiry, privileges) and an
// enveloped XML signature over it. Drover issues them with its CA key and accepts those
// signed by a CA it trusts (the --tls-ca bundle or its own CA); xml-crypto makes and checks
// the signatures. Drover's simplification: the credential is signed by the trusted CA
// itself (no delegation chain), and the gids are left empty — the URNs are what counts.

import { randomUUID } from 'node:crypto';
import { SignedXml } from 'xml-crypto';
import { childNamed, childrenNamed, escapeXml, parseXml, type XmlElement } from '../api/xmlrpc/xml.js';
import { parseUrn } from './urn.js';

export const SFA_TYPE = 'geni_sfa';
export const SFA_VERSION = '3';
/** Grants every privilege (as the slice authorities of GENI issue slice credentials). */
export const ALL_PRIVILEGES = '*';

export interface Credential {
  ownerUrn: string;
  targetUrn: string;
  expires: number;
  privileges: string[];
}

/** Why a credential does not do: the GENI codes CREDENTIAL_INVALID / _SIGNER_UNTRUSTED / _EXPIRED / _MISMATCH, FORBIDDEN. */
export type CredentialProblem = 'invalid' | 'untrusted' | 'expired' | 'mismatch' | 'forbidden';

export class CredentialError extends Error {
  override name = 'CredentialError';
  constructor(
    readonly problem: CredentialProblem,
    message: string,
  ) {
    super(message);
  }
}

const DSIG_NS = 'http://www.w3.org/2000/09/xmldsig#';
const EXC_C14N = 'http://www.w3.org/2001/10/xml-exc-c14n#';
const ENVELOPED = 'http://www.w3.org/2000/09/xmldsig#enveloped-signature';
const RSA_SHA256 = 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256';
const SHA256 = 'http://www.w3.org/2001/04/xmlenc#sha256';

function iso(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** A signed credential (XML text) granting `privileges` on `targetUrn` to `ownerUrn` until `expires`. */
export function issueCredential(c: Credential, signer: { cert: string; key: string }): string {
  for (const urn of [c.ownerUrn, c.targetUrn]) if (!parseUrn(urn)) throw new Error(`not a GENI URN: ${urn}`);
  const privileges = c.privileges.map((p) => `<privilege><name>${escapeXml(p)}</name><can_delegate>false</can_delegate></privilege>`).join('');
  const xml =
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    '<signed-credential xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="http://www.geni.net/resources/credential/2/credential.xsd">' +
    `<credential xml:id="ref0"><type>privilege</type><serial>${randomUUID()}</serial>` +
    `<owner_gid/><owner_urn>${escapeXml(c.ownerUrn)}</owner_urn><target_gid/><target_urn>${escapeXml(c.targetUrn)}</target_urn>` +
    `<uuid/><expires>${iso(c.expires)}</expires><privileges>${privileges}</privileges></credential>` +
    '<signatures/></signed-credential>';
  const sig = new SignedXml({ privateKey: signer.key, publicCert: signer.cert, signatureAlgorithm: RSA_SHA256, canonicalizationAlgorithm: EXC_C14N });
  sig.addReference({ xpath: "//*[local-name(.)='credential']", transforms: [ENVELOPED, EXC_C14N], digestAlgorithm: SHA256 });
  sig.computeSignature(xml, { location: { reference: "//*[local-name(.)='signatures']", action: 'append' } });
  return sig.getSignedXml();
}

function field(el: XmlElement, name: string): string {
  const f = childNamed(el, name)?.text.trim();
  if (!f) throw new CredentialError('invalid', `credential has no ${name}`);
  return f;
}

/** The part of the document between the one Signature element's tags (it declares its own namespace). */
function signatureXml(xml: string): string {
  const start = xml.search(/<Signature[\s>]/);
  const end = xml.indexOf('</Signature>', start);
  if (start < 0 || end < 0) throw new CredentialError('invalid', 'credential is not signed');
  return xml.slice(start, end + '</Signature>'.length);
}

/**
 * Checks the signature against each trusted CA certificate and returns what the signed
 * part says. Only the signed bytes are read back (getSignedReferences), so a second,
 * unsigned credential element smuggled into the document is never what counts.
 */
export function verifyCredential(xml: string, trustedCerts: string[], now: number): Credential {
  let root: XmlElement;
  try {
    // our strict reader first: no DOCTYPE (so no entities) ever reaches the DOM-based verifier
    root = parseXml(xml, { maxDepth: 32, maxElements: 10_000 });
  } catch (e) {
    throw new CredentialError('invalid', `credential is not XML: ${(e as Error).message}`);
  }
  const signatures = childNamed(root, 'signatures');
  if (root.name !== 'signed-credential' || childrenNamed(root, 'credential').length !== 1 || signatures?.children.length !== 1 || signatures.children[0]!.ns !== DSIG_NS) {
    throw new CredentialError('invalid', 'expected a signed-credential with one credential and one signature');
  }
  const signed = trustedCerts.map((cert) => {
    const sig = new SignedXml({ publicCert: cert });
    try {
      sig.loadSignature(signatureXml(xml));
      return sig.checkSignature(xml) ? sig.getSignedReferences() : undefined;
    } catch {
      return undefined;
    }
  });
  const refs = signed.find((r) => r?.length === 1);
  if (!refs) throw new CredentialError('untrusted', 'credential is not signed by an authority this aggregate trusts');
  const cred = parseXml(refs[0]!);
  if (cred.name !== 'credential' || field(cred, 'type') !== 'privilege') throw new CredentialError('invalid', 'the signed part is not a privilege credential');
  const expires = Date.parse(field(cred, 'expires'));
  if (Number.isNaN(expires)) throw new CredentialError('invalid', 'credential expiry is not a date');
  if (expires <= now) throw new CredentialError('expired', `credential expired at ${iso(expires)}`);
  const privileges = childrenNamed(childNamed(cred, 'privileges') ?? cred, 'privilege').map((p) => field(p, 'name'));
  return { ownerUrn: field(cred, 'owner_urn'), targetUrn: field(cred, 'target_urn'), expires, privileges };
}

/**
 * The credential among `values` that lets `callerUrn` exercise `privilege` on `targetUrn`
 * (any target when undefined). When none does, throws the first one's problem.
 */
export function credentialFor(values: string[], trustedCerts: string[], callerUrn: string, targetUrn: string | undefined, privilege: string | undefined, now: number): Credential {
  let first: CredentialError | undefined;
  for (const value of values) {
    try {
      const c = verifyCredential(value, trustedCerts, now);
      if (c.ownerUrn !== callerUrn) throw new CredentialError('mismatch', `credential belongs to ${c.ownerUrn}, not to the caller ${callerUrn}`);
      if (targetUrn !== undefined && c.targetUrn !== targetUrn) throw new CredentialError('mismatch', `credential is for ${c.targetUrn}, not for ${targetUrn}`);
      if (privilege && !c.privileges.includes(privilege) && !c.privileges.includes(ALL_PRIVILEGES)) throw new CredentialError('forbidden', `credential does not grant ${privilege}`);
      return c;
    } catch (e) {
      if (!(e instanceof CredentialError)) throw e;
      first ??= e;
    }
  }
  throw first ?? new CredentialError('forbidden', `no ${SFA_TYPE} version ${SFA_VERSION} credential given`);
}
