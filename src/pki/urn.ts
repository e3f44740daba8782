// GENI names: `urn:publicid:IDN+<authority>+<type>+<name>` (users, slices, slivers, the AM).

export interface GeniUrn {
  authority: string;
  type: string;
  name: string;
}

/** Drover's own authority: its AM, its slivers, and the users its CA certifies. */
export const DROVER_AUTHORITY = 'drover';
export const AM_URN = geniUrn('authority', 'am');
export const OPERATOR_URN = geniUrn('user', 'operator');

// An authority may have sub-authorities (`ch.geni.net:proj`); no part may hold '+' or spaces.
const URN = /^urn:publicid:IDN\+([^+\s]{1,200})\+([a-z]{1,20})\+([^+\s]{1,200})$/;
const SLICE_NAME = /^[A-Za-z0-9][A-Za-z0-9-]{0,18}$/;

export function geniUrn(type: string, name: string, authority = DROVER_AUTHORITY): string {
  return `urn:publicid:IDN+${authority}+${type}+${name}`;
}

/** The parts of a URN; undefined when it is not one (a slice URN also needs a valid slice name). */
export function parseUrn(value: unknown): GeniUrn | undefined {
  const m = typeof value === 'string' ? URN.exec(value) : null;
  if (!m) return undefined;
  const [, authority, type, name] = m as unknown as [string, string, string, string];
  if (type === 'slice' && !SLICE_NAME.test(name)) return undefined;
  return { authority, type, name };
}
