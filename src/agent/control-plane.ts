// The agent reaches the control plane through the BBS cell routes over HTTP; several URLs =
// replicas to fail over. The agent inside `drover serve` calls the same use cases in its own
// process instead (local-control-plane.ts), behind the same interface.

import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { ActualLrp, ActualLrpInstanceKey, ActualLrpKey, ActualLrpNetInfo, ActualLrpPlacement, DesiredLrp } from '../model/lrp.js';
import type { CellRegistration } from '../core/cells.js';
import { decodeMessage, encodeMessage } from '../api/bbs/codec.js';

const JSON_TYPE = 'application/json';

export class ControlPlaneError extends Error {
  constructor(
    readonly type: string,
    message: string,
  ) {
    super(`${type}: ${message}`);
  }
}

export interface InstanceClaim {
  key: ActualLrpKey;
  instanceKey: ActualLrpInstanceKey;
}

export interface InstanceStart extends InstanceClaim {
  netInfo: ActualLrpNetInfo;
}

type BatchResult = { error?: { type: string; message: string } };

function batchErrors(results: BatchResult[] | undefined, expected: number): (ControlPlaneError | undefined)[] {
  if (results?.length !== expected) throw new ControlPlaneError('InvalidResponse', `${results?.length ?? 0} answers to a batch of ${expected}`);
  return results.map((r) => (r.error ? new ControlPlaneError(String(r.error.type), r.error.message) : undefined));
}

// node:http with keep-alive rather than fetch: a call costs about a third as much, and the
// agent's calls (a crash report above all) are on the path to a restart.
const keepAlive = { http: new HttpAgent({ keepAlive: true }), https: new HttpsAgent({ keepAlive: true }) };

/** POSTs `body` and resolves with the response body; a timeout or network failure rejects. */
function post(url: URL, headers: Record<string, string>, body: Buffer, timeoutMs: number): Promise<Buffer> {
  const secure = url.protocol === 'https:';
  return new Promise((resolve, reject) => {
    const req = (secure ? httpsRequest : httpRequest)(
      url,
      { method: 'POST', headers: { ...headers, 'content-length': String(body.length) }, agent: secure ? keepAlive.https : keepAlive.http, timeout: timeoutMs },
      (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve(Buffer.concat(chunks)));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url.origin} within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** What a cell agent asks of the control plane. */
export interface CellControlPlane {
  /** where attachments and webservers are reached (prepare.ts hands these to instances) */
  readonly urls: string[];
  fetchBytes(path: string): Promise<Buffer>;
  heartbeat(cell: CellRegistration): Promise<void>;
  actualLrpsOnCell(cellId: string): Promise<ActualLrpPlacement[]>;
  /** Claims each instance (one transaction); answers each one's error or nothing, and the desired LRPs claimed. */
  claimMany(claims: InstanceClaim[]): Promise<{ errors: (ControlPlaneError | undefined)[]; desiredLrps: DesiredLrp[] }>;
  /** Reports each instance started (one transaction); answers each one's error or nothing. */
  startMany(starts: InstanceStart[]): Promise<(ControlPlaneError | undefined)[]>;
  /**
   * Reports a crash. With `restartAs`, a crash that restarts at once on this cell is claimed
   * again under that key in the same transaction, and the answer is the desired LRP to run.
   */
  crash(key: ActualLrpKey, instanceKey: ActualLrpInstanceKey, errorMessage: string, restartAs?: ActualLrpInstanceKey): Promise<DesiredLrp | undefined>;
  remove(key: ActualLrpKey, instanceKey: ActualLrpInstanceKey): Promise<void>;
  /** Calls `onChange` whenever the control plane commits something, until stopped. */
  watch(onChange: () => void): () => void;
}

/** The control plane over HTTP (BBS cell routes, SSE events). */
export class ControlPlane implements CellControlPlane {
  private current = 0;

  constructor(
    readonly urls: string[],
    private readonly token?: string,
    /** a replica that does not answer a call within this long counts as down (paused, partitioned) */
    private readonly callTimeoutMs = 5000,
  ) {
    if (urls.length === 0) throw new Error('at least one control plane URL is required');
  }

  get url(): string {
    return this.urls[this.current]!;
  }

  /** One BBS call; a network failure moves on to the next replica, a BBS error is thrown. */
  async call<T>(path: string, requestType: string | undefined, request: object, responseType: string): Promise<T> {
    const headers: Record<string, string> = { 'content-type': JSON_TYPE };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    const body = requestType ? encodeMessage(requestType, request, JSON_TYPE).body : Buffer.from('{}');
    let lastError: unknown;
    for (let attempt = 0; attempt < this.urls.length; attempt++) {
      const tried = this.current;
      try {
        const answer = await post(new URL(path, this.url), headers, body, this.callTimeoutMs);
        const response = decodeMessage<{ error?: { type: string; message: string } } & T>(responseType, answer, JSON_TYPE);
        if (response.error) throw new ControlPlaneError(String(response.error.type), response.error.message);
        return response;
      } catch (e) {
        if (e instanceof ControlPlaneError) throw e;
        lastError = e;
        // concurrent calls that failed on the same replica move on once, not once each
        if (this.current === tried) this.current = (tried + 1) % this.urls.length;
      }
    }
    throw lastError;
  }

  /** GETs bytes (an attachment): a path on the control plane, failing over as `call` does. */
  async fetchBytes(path: string): Promise<Buffer> {
    let lastError: unknown;
    for (let attempt = 0; attempt < this.urls.length; attempt++) {
      const url = new URL(path, this.url);
      // the token is for the control plane only, not for an absolute URL elsewhere
      const headers: Record<string, string> = this.token && url.origin === new URL(this.url).origin ? { authorization: `Bearer ${this.token}` } : {};
      try {
        const res = await fetch(url, { headers });
        if (!res.ok) throw new ControlPlaneError(`HTTP ${res.status}`, await res.text());
        return Buffer.from(await res.arrayBuffer());
      } catch (e) {
        if (e instanceof ControlPlaneError) throw e;
        lastError = e;
        this.current = (this.current + 1) % this.urls.length;
      }
    }
    throw lastError;
  }

  async heartbeat(cell: CellRegistration): Promise<void> {
    await this.call('/v1/cells/heartbeat', 'models.CellHeartbeatRequest', { cell }, 'models.CellHeartbeatResponse');
  }

  async actualLrpsOnCell(cellId: string): Promise<ActualLrp[]> {
    const res = await this.call<{ actualLrps?: ActualLrp[] }>('/v1/actual_lrps/list', 'models.ActualLRPsRequest', { cellId, includeTargeted: true }, 'models.ActualLRPsResponse');
    return res.actualLrps ?? [];
  }

  async claimMany(claims: InstanceClaim[]): Promise<{ errors: (ControlPlaneError | undefined)[]; desiredLrps: DesiredLrp[] }> {
    const res = await this.call<{ results?: BatchResult[]; desiredLrps?: DesiredLrp[] }>(
      '/v1/actual_lrps/claim_batch',
      'models.ClaimActualLRPsRequest',
      { claims: claims.map((c) => ({ processGuid: c.key.processGuid, index: c.key.index, actualLrpInstanceKey: c.instanceKey })) },
      'models.ClaimActualLRPsResponse',
    );
    return { errors: batchErrors(res.results, claims.length), desiredLrps: res.desiredLrps ?? [] };
  }

  async startMany(starts: InstanceStart[]): Promise<(ControlPlaneError | undefined)[]> {
    const res = await this.call<{ results?: BatchResult[] }>(
      '/v1/actual_lrps/start_batch',
      'models.StartActualLRPsRequest',
      { starts: starts.map((s) => ({ actualLrpKey: s.key, actualLrpInstanceKey: s.instanceKey, actualLrpNetInfo: s.netInfo })) },
      'models.StartActualLRPsResponse',
    );
    return batchErrors(res.results, starts.length);
  }

  async crash(key: ActualLrpKey, instanceKey: ActualLrpInstanceKey, errorMessage: string, restartAs?: ActualLrpInstanceKey): Promise<DesiredLrp | undefined> {
    const res = await this.call<{ restartDesiredLrp?: DesiredLrp }>(
      '/v1/actual_lrps/crash',
      'models.CrashActualLRPRequest',
      { actualLrpKey: key, actualLrpInstanceKey: instanceKey, errorMessage, restartInstanceKey: restartAs },
      'models.CrashActualLRPResponse',
    );
    return res.restartDesiredLrp;
  }

  async remove(key: ActualLrpKey, instanceKey: ActualLrpInstanceKey): Promise<void> {
    await this.lifecycle('/v1/actual_lrps/remove', 'models.RemoveActualLRPRequest', { processGuid: key.processGuid, index: key.index, actualLrpInstanceKey: instanceKey });
  }

  private async lifecycle(path: string, requestType: string, request: object): Promise<void> {
    await this.call(path, requestType, request, 'models.ActualLRPLifecycleResponse');
  }

  /** Follows the SSE event stream; reconnects (to the next replica) until stopped. */
  watch(onChange: () => void): () => void {
    const abort = new AbortController();
    const loop = async () => {
      while (!abort.signal.aborted) {
        try {
          const headers: Record<string, string> = {};
          if (this.token) headers.authorization = `Bearer ${this.token}`;
          const res = await fetch(new URL('/v1/events?format=json', this.url), { headers, signal: abort.signal });
          if (!res.body) throw new Error('no event stream');
          onChange(); // anything may have happened while we were not listening
          const decoder = new TextDecoder();
          for await (const chunk of res.body) {
            if (decoder.decode(chunk as Uint8Array, { stream: true }).includes('event:')) onChange();
          }
        } catch {
          if (abort.signal.aborted) return;
          this.current = (this.current + 1) % this.urls.length;
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    };
    void loop();
    return () => abort.abort();
  }
}
