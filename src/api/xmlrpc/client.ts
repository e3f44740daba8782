// A minimal XML-RPC client over HTTPS with a client certificate (tests and tools use it).

import { request } from 'node:https';
import { decodeResponse, encodeCall, type XmlRpcValue } from './codec.js';

export interface XmlRpcTarget {
  url: string;
  /** PEM texts: the CA to trust for the server, and the client's certificate and key (none: no client certificate) */
  ca: string;
  cert?: string;
  key?: string;
}

/** POSTs a body as is; resolves with the HTTP status and the response text. */
export function postXml(t: XmlRpcTarget, body: string | Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(t.url, { method: 'POST', ca: t.ca, cert: t.cert, key: t.key, agent: false, headers: { 'content-type': 'text/xml' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Calls a method; a fault rejects with XmlRpcFault. */
export async function xmlRpcCall(t: XmlRpcTarget, method: string, params: XmlRpcValue[]): Promise<XmlRpcValue> {
  return decodeResponse((await postXml(t, encodeCall(method, params))).body);
}
