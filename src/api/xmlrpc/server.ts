// XML-RPC over HTTPS with mutual TLS: only clients presenting a certificate issued by a
// trusted CA get past the handshake, and each call learns the GENI URN that certificate
// names. Bodies are bounded before they are parsed; anything that is not a well-formed
// call gets an XML-RPC fault, never a crash.

import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { urnFromSubjectAltName } from '../../pki/ca.js';
import { decodeCall, encodeFault, encodeResponse, FAULT, XmlRpcFault, type XmlRpcValue } from './codec.js';

export interface Caller {
  /** the GENI user URN in the client certificate's subjectAltName, if it has one */
  urn?: string;
}

export type Method = (caller: Caller, params: XmlRpcValue[]) => Promise<XmlRpcValue>;

export interface XmlRpcServerOptions {
  host: string;
  port: number;
  /** PEM texts: the server's certificate (chain) and key, and the CA bundle client certificates must chain to */
  cert: string;
  key: string;
  ca: string;
  bodyLimit: number;
}

export interface XmlRpcServer {
  /** https://host:port/ as bound */
  url: string;
  close(): Promise<void>;
}

const REQUEST_TIMEOUT_MS = 30_000;

class TooLarge extends Error {}

function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    if (Number(req.headers['content-length'] ?? 0) > limit) return reject(new TooLarge());
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.off('data', onData);
        // the rest is read and dropped by Node after the response; the connection then closes
        reject(new TooLarge());
      } else chunks.push(c);
    };
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

export async function startXmlRpcServer(opts: XmlRpcServerOptions, methods: Record<string, Method>, log: Logger): Promise<XmlRpcServer> {
  const send = (res: ServerResponse, body: string, close = false) => {
    res.writeHead(200, { 'content-type': 'text/xml; charset=utf-8', ...(close ? { connection: 'close' } : {}) });
    res.end(body);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (req.method !== 'POST') {
      res.writeHead(405, { allow: 'POST' }).end();
      return;
    }
    let body: string;
    try {
      body = await readBody(req, opts.bodyLimit);
    } catch (e) {
      if (e instanceof TooLarge) return send(res, encodeFault(FAULT.invalidRequest, `request larger than ${opts.bodyLimit} bytes`), true);
      throw e;
    }
    const caller: Caller = { urn: urnFromSubjectAltName((req.socket as TLSSocket).getPeerCertificate().subjectaltname) };
    try {
      const call = decodeCall(body);
      const method = Object.hasOwn(methods, call.methodName) ? methods[call.methodName] : undefined;
      if (!method) throw new XmlRpcFault(FAULT.methodNotFound, `no method ${call.methodName}`);
      send(res, encodeResponse(await method(caller, call.params)));
    } catch (e) {
      if (!(e instanceof XmlRpcFault)) log.error({ err: e }, 'XML-RPC call failed');
      send(res, e instanceof XmlRpcFault ? encodeFault(e.faultCode, e.faultString) : encodeFault(FAULT.internalError, 'internal error'));
    }
  };

  const server: Server = createServer(
    { cert: opts.cert, key: opts.key, ca: opts.ca, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2', requestTimeout: REQUEST_TIMEOUT_MS },
    (req, res) =>
      void handle(req, res).catch((e) => {
        log.error({ err: e }, 'XML-RPC request failed');
        res.destroy();
      }),
  );
  // handshake refusals (no certificate, another CA) are the clients' problem, not ours
  server.on('tlsClientError', (err) => log.debug({ err: err.message }, 'TLS handshake refused'));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  return {
    url: `https://${host}:${port}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
