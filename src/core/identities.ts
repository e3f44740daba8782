// Principals from the `--auth` YAML file, and how each interface recognises them.
// Without a file Drover runs in open mode: every caller is an operator.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { OPEN_MODE_PRINCIPAL, ROLES, type Principal, type Role } from '../model/principal.js';

export type CredentialKind = 'tokens' | 'certSubjects' | 'mqtt' | 'amqpAppIds' | 'geniUrns';
const CREDENTIAL_KINDS: CredentialKind[] = ['tokens', 'certSubjects', 'mqtt', 'amqpAppIds', 'geniUrns'];

interface PrincipalEntry extends Principal {
  credentials: Record<CredentialKind, string[]>;
}

export class Identities {
  private constructor(
    readonly open: boolean,
    private readonly entries: PrincipalEntry[],
  ) {}

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
