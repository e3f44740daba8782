// Principals from the `--auth` YAML file, and how each interface recognises them.
// Without a file Drover runs in open mode: every caller is an operator.

import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { splitPemBundle } from '../pki/pem.js';
import { OPEN_MODE_PRINCIPAL, ROLES, type Principal, type Role } from '../model/principal.js';

export type CredentialKind = 'tokens' | 'certSubjects' | 'mqtt' | 'amqpAppIds' | 'geniUrns';
const CREDENTIAL_KINDS: CredentialKind[] = ['tokens', 'certSubjects', 'mqtt', 'amqpAppIds', 'geniUrns'];

interface PrincipalEntry extends Principal {
  credentials: Record<CredentialKind, string[]>;
}

/** Who a client certificate names, once checked: its subject's common name and the principal listing it. */
export interface CertificateIdentity {
  commonName: string;
  principal?: Principal;
  /** why the certificate identifies no one (the 401 message) */
  problem?: string;
}

export class Identities {
  /** the authorities client certificates must be issued by (none: no certificate identifies anyone) */
  private authorities: X509Certificate[] = [];

  private constructor(
    readonly open: boolean,
    private readonly entries: PrincipalEntry[],
  ) {}

  /** Trusts the CA certificates of a PEM bundle to issue client certificates (see resolveCertificate). */
  trustAuthorities(pemBundle: string): this {
    const pems = splitPemBundle(pemBundle);
    if (!pems.length) throw new Error('no CA certificate in the bundle');
    this.authorities = pems.map((pem) => new X509Certificate(pem));
    return this;
  }

  /**
   * A client certificate's identity: it must be issued (and signed) by a trusted authority and
   * valid at `now`; its principal is the one listing `CN=<its common name>` under certSubjects.
   * Open mode checks nothing: everyone is the operator.
   */
  resolveCertificate(cert: X509Certificate, now: number): CertificateIdentity {
    const commonName = /^CN=(.*)$/m.exec(cert.subject)?.[1] ?? '';
    if (this.open) return { commonName, principal: OPEN_MODE_PRINCIPAL };
    if (!this.authorities.some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey))) {
      return { commonName, problem: 'The certificate is not issued by an authority Drover trusts' };
    }
    if (now < Date.parse(cert.validFrom) || now > Date.parse(cert.validTo)) return { commonName, problem: 'The certificate is not valid at this time' };
    const principal = this.resolve('certSubjects', commonName && `CN=${commonName}`);
    return principal ? { commonName, principal } : { commonName, problem: 'Invalid authentication info' };
  }

  static openMode(): Identities {
    return new Identities(true, []);
  }

  static fromYaml(text: string): Identities {
    // YAML is loaded on first use (open mode never reads it); `yaml` is CommonJS under Node
    const { parse } = createRequire(import.meta.url)('yaml') as typeof import('yaml');
    const doc = parse(text) as { principals?: unknown };
    if (!doc || !Array.isArray(doc.principals)) throw new Error('auth file: expected a `principals` list');
    const entries = doc.principals.map((raw: Record<string, unknown>, i: number) => {
      const name = raw?.name;
      if (typeof name !== 'string' || !name) throw new Error(`auth file: principals[${i}].name is required`);
      const roles = raw.roles;
      if (!Array.isArray(roles) || roles.some((r) => !ROLES.includes(r as Role))) {
        throw new Error(`auth file: principals[${i}].roles must be a list of ${ROLES.join(', ')}`);
      }
      const credentials = {} as Record<CredentialKind, string[]>;
      for (const kind of CREDENTIAL_KINDS) {
        const list = raw[kind] ?? [];
        if (!Array.isArray(list) || list.some((v) => typeof v !== 'string')) throw new Error(`auth file: principals[${i}].${kind} must be a list of strings`);
        credentials[kind] = list as string[];
      }
      return { name, roles: roles as Role[], credentials };
    });
    return new Identities(false, entries);
  }

  static fromFile(path: string): Identities {
    return Identities.fromYaml(readFileSync(path, 'utf8'));
  }

  /** The principal a credential names; undefined when unknown (open mode knows everyone). */
  resolve(kind: CredentialKind, credential: string | undefined): Principal | undefined {
    if (this.open) return OPEN_MODE_PRINCIPAL;
    if (!credential) return undefined;
    const entry = this.entries.find((e) => e.credentials[kind].includes(credential));
    return entry && { name: entry.name, roles: entry.roles };
  }
}
