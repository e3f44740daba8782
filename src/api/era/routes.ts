// The Era mservice REST API (platform conventions, see docs/era.md):
//   GET/POST               /rest/v1/domain/mservices            list, create
//   GET/PUT/PATCH/DELETE   /rest/v1/domain/mservices/<id>       get, replace, merge, delete
//   POST|PUT/GET           /rest/v1/domain/mservices/<id>/attachment   upload, download
// `domain` in the path is the literal word, as in the platform; the domain is the `domain`
// query parameter (default `default`). Errors are JSON: {error, message, field?}.
// Also the route cells fetch attachments by: GET /v1/attachments/<sha256>.

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ZIP_LIMITS } from '../../agent/attachments.js';
import { readAttachment } from '../../core/attachments.js';
import type { CoreContext } from '../../core/context.js';
import {
  createMservice,
  deleteMservice,
  getMservice,
  listMservices,
  mserviceAttachment,
  patchMservice,
  replaceMservice,
  uploadMserviceAttachment,
} from '../../core/mservices.js';
import { DroverError, type ErrorKind } from '../../model/errors.js';
import { FieldError } from '../../model/mservice.js';
import type { Principal } from '../../model/principal.js';
import { principalOf } from '../http/principal.js';
import { takeRequestToken } from '../../core/limits.js';

export const MSERVICES_PATH = '/rest/v1/domain/mservices';

const STATUS: Partial<Record<ErrorKind, number>> = {
  invalid_request: 400,
  not_found: 404,
  exists: 409,
  conflict: 409,
  locked: 423,
  unauthenticated: 401,
  forbidden: 403,
  limit_exceeded: 413,
  rate_limited: 429,
};

/** What a handler answers: JSON (an object, or nothing for 204) or a file. */
type Answer = { status?: number; json?: unknown; file?: { data: Buffer; name: string; type: string } };
type Handler = (request: FastifyRequest, p: Principal | undefined, domain: string | undefined) => Promise<Answer>;

function sendError(reply: FastifyReply, request: FastifyRequest, e: unknown) {
  const status = e instanceof DroverError ? (STATUS[e.kind] ?? 500) : ((e as { statusCode?: number }).statusCode ?? 500);
  if (status >= 500) request.log.error({ err: e }, 'mservice request failed');
  const body =
    e instanceof DroverError
      ? { error: e.kind, message: e.message, ...(e instanceof FieldError ? { field: e.field } : {}) }
      : { error: status === 413 ? 'limit_exceeded' : 'invalid_request', message: status >= 500 ? 'internal error' : (e as Error).message };
  return reply.code(status).type('application/json').send(JSON.stringify(body));
}

function jsonBody(request: FastifyRequest): unknown {
  const body = request.body as Buffer | undefined;
  if (!body?.length) return undefined;
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (e) {
    throw new FieldError('body', `is not JSON (${(e as Error).message})`);
  }
}

/** The zip of an upload: a raw body, or the field `file` of a multipart/form-data body. */
function uploadedZip(request: FastifyRequest): { data: Buffer; fileName?: string } {
  const body = (request.body as Buffer | undefined) ?? Buffer.alloc(0);
  const type = request.headers['content-type'] ?? '';
  if (!/^multipart\/form-data/i.test(type)) return { data: body };
  const boundary = type.match(/boundary=(?:"([^"]+)"|([^;\s]+))/i);
  if (!boundary) throw new FieldError('file', 'the multipart body has no boundary');
  const delimiter = Buffer.from(`\r\n--${boundary[1] ?? boundary[2]}`);
  // a leading CRLF makes the first delimiter look like the others
  const all = Buffer.concat([Buffer.from('\r\n'), body]);
  for (let at = all.indexOf(delimiter); at !== -1; ) {
    const next = all.indexOf(delimiter, at + delimiter.length);
    if (next === -1) break;
    const part = all.subarray(at + delimiter.length + 2, next); // after the delimiter's CRLF
    const headerEnd = part.indexOf('\r\n\r\n');
    const headers = headerEnd === -1 ? '' : part.subarray(0, headerEnd).toString('utf8');
    if (/^content-disposition:[^\r\n]*\bname="file"/im.test(headers)) {
      return { data: part.subarray(headerEnd + 4), fileName: headers.match(/filename="([^"]*)"/i)?.[1] };
    }
    at = next;
  }
  throw new FieldError('file', 'the multipart body has no field "file"');
}

/** A file name to show and to download as: the base name, printable, short. */
function cleanFileName(name: string | undefined): string | undefined {
  const base = name?.split(/[\\/]/).pop()?.replace(/[^\w.\- ]/g, '_').slice(0, 128);
  return base || undefined;
}

export function registerEraRoutes(app: FastifyInstance, ctx: CoreContext): void {
  const route = (method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', url: string, handler: Handler, bodyLimit?: number) =>
    app.route({
      method,
      url,
      bodyLimit,
      // Fastify's own refusals (a body over the limit) answer in this API's error shape too
      errorHandler: (error, request, reply) => sendError(reply, request, error),
      handler: async (request, reply) => {
        try {
          const domain = (request.query as { domain?: unknown }).domain;
          takeRequestToken(ctx, principalOf(request));
          const a = await handler(request, principalOf(request), typeof domain === 'string' ? domain : undefined);
          if (a.file) {
            const disposition = `attachment; filename="${a.file.name}"`;
            return reply.code(200).type(a.file.type).header('content-disposition', disposition).send(a.file.data);
          }
          if (a.json === undefined) return reply.code(a.status ?? 204).send();
          return reply.code(a.status ?? 200).type('application/json').send(JSON.stringify(a.json));
        } catch (e) {
          return sendError(reply, request, e);
        }
      },
    });
  const idOf = (r: FastifyRequest) => (r.params as { id: string }).id;

  route('GET', MSERVICES_PATH, async (_r, p, domain) => ({ json: await listMservices(ctx, p, domain) }));
  route('POST', MSERVICES_PATH, async (r, p, domain) => ({ status: 201, json: await createMservice(ctx, p, domain, jsonBody(r)) }));
  route('GET', `${MSERVICES_PATH}/:id`, async (r, p, domain) => ({ json: await getMservice(ctx, p, domain, idOf(r)) }));
  route('PUT', `${MSERVICES_PATH}/:id`, async (r, p, domain) => ({ json: await replaceMservice(ctx, p, domain, idOf(r), jsonBody(r)) }));
  route('PATCH', `${MSERVICES_PATH}/:id`, async (r, p, domain) => ({ json: await patchMservice(ctx, p, domain, idOf(r), jsonBody(r)) }));
  route('DELETE', `${MSERVICES_PATH}/:id`, async (r, p, domain) => {
    await deleteMservice(ctx, p, domain, idOf(r));
    return {};
  });
  const upload: Handler = async (r, p, domain) => {
    const { data, fileName } = uploadedZip(r);
    return { json: await uploadMserviceAttachment(ctx, p, domain, idOf(r), data, cleanFileName(fileName)) };
  };
  // room for the multipart framing around the largest zip accepted
  const uploadLimit = ZIP_LIMITS.maxZipBytes + 64 * 1024;
  route('POST', `${MSERVICES_PATH}/:id/attachment`, upload, uploadLimit);
  route('PUT', `${MSERVICES_PATH}/:id/attachment`, upload, uploadLimit);
  route('GET', `${MSERVICES_PATH}/:id/attachment`, async (r, p, domain) => {
    const { data, name } = await mserviceAttachment(ctx, p, domain, idOf(r));
    return { file: { data, name, type: 'application/zip' } };
  });
  route('GET', '/v1/attachments/:hash', async (r, p) => {
    const hash = (r.params as { hash: string }).hash;
    return { file: { data: await readAttachment(ctx, p, hash), name: `${hash}.zip`, type: 'application/zip' } };
  });
}
