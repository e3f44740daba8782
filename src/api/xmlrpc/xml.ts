// A small, bounded XML reader on saxes (a conforming, non-validating parser) that yields an
// element tree. Untrusted input meets it (XML-RPC bodies, RSpecs, credentials), so it
// refuses any DOCTYPE — XML-RPC and RSpecs need none, and refusing it rules out entity
// expansion (billion laughs) and external entities before they exist — and it bounds the
// nesting depth and the number of elements while parsing, not afterwards.

import { SaxesParser } from 'saxes';

export interface XmlElement {
  /** local name (without prefix) */
  name: string;
  /** namespace URI ('' when none) */
  ns: string;
  /** attributes by local name; namespaced attributes also by `{uri}local` */
  attrs: Record<string, string>;
  children: XmlElement[];
  /** the element's own character data (text and CDATA), concatenated */
  text: string;
}

export interface XmlLimits {
  maxDepth: number;
  maxElements: number;
}

export const DEFAULT_XML_LIMITS: XmlLimits = { maxDepth: 64, maxElements: 200_000 };

export class XmlError extends Error {
  override name = 'XmlError';
}

export function parseXml(text: string, limits: XmlLimits = DEFAULT_XML_LIMITS): XmlElement {
  const parser = new SaxesParser({ xmlns: true, position: true });
  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;
  let count = 0;
  // saxes reports errors through the handler and carries on; the first one ends the parse.
  parser.on('error', (e) => {
    throw new XmlError(e.message);
  });
  parser.on('doctype', () => {
    throw new XmlError('a DOCTYPE is not allowed');
  });
  parser.on('opentag', (tag) => {
    if (stack.length >= limits.maxDepth) throw new XmlError(`elements nested deeper than ${limits.maxDepth}`);
    if (++count > limits.maxElements) throw new XmlError(`more than ${limits.maxElements} elements`);
    const attrs: Record<string, string> = Object.create(null);
    for (const a of Object.values(tag.attributes)) {
      attrs[a.local] = a.value;
      if (a.uri) attrs[`{${a.uri}}${a.local}`] = a.value;
    }
    const el: XmlElement = { name: tag.local, ns: tag.uri, attrs, children: [], text: '' };
    stack.at(-1)?.children.push(el);
    root ??= el;
    stack.push(el);
  });
  const addText = (t: string) => {
    const top = stack.at(-1);
    if (top) top.text += t;
  };
  parser.on('text', addText);
  parser.on('cdata', addText);
  parser.on('closetag', () => void stack.pop());
  try {
    parser.write(text).close();
  } catch (e) {
    throw e instanceof XmlError ? e : new XmlError((e as Error).message);
  }
  if (!root) throw new XmlError('no root element');
  return root;
}

/** The child elements named `name` (any namespace unless `ns` is given). */
export function childrenNamed(el: XmlElement, name: string, ns?: string): XmlElement[] {
  return el.children.filter((c) => c.name === name && (ns === undefined || c.ns === ns));
}

export function childNamed(el: XmlElement, name: string, ns?: string): XmlElement | undefined {
  return el.children.find((c) => c.name === name && (ns === undefined || c.ns === ns));
}

// XML 1.0 cannot carry most C0 controls, lone surrogates or U+FFFE/U+FFFF, not even escaped.
const NOT_XML_CHAR = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu;

/** Text or attribute value escaped for XML; characters XML cannot carry at all become U+FFFD. */
export function escapeXml(s: string): string {
  return s
    .replace(NOT_XML_CHAR, '\uFFFD')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    // as references, line ends and tabs survive attribute-value normalization too
    .replace(/\r/g, '&#13;')
    .replace(/\n/g, '&#10;')
    .replace(/\t/g, '&#9;');
}
