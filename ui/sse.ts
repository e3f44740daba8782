// Following Drover's event stream, shared by the dashboard and the CLI (`ls -w`, `--wait`):
// only what browsers and Node 20 both have. Fetch rather than EventSource, because
// EventSource cannot send the bearer token; after a drop it reconnects with Last-Event-ID.

export interface StreamEvent {
  id: string;
  event: string;
  data: string;
}

export interface FollowOptions {
  headers?: Record<string, string>;
  signal: AbortSignal;
  onEvent(e: StreamEvent): void;
  /** called on every (re)connect with true and on every drop with false and why */
  onStatus?(connected: boolean, detail?: string): void;
  retryMs?: number;
}

/** The server refused the caller (401/403): retrying will not help. */
export class StreamRefused extends Error {}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
  });
}

/** Calls onEvent for each complete event until the body ends. Drover writes LF line ends only. */
async function readEvents(body: ReadableStream<Uint8Array>, onEvent: (e: StreamEvent) => void): Promise<void> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
      const e: StreamEvent = { id: '', event: 'message', data: '' };
      const data: string[] = [];
      for (const line of buffer.slice(0, end).split('\n')) {
        const colon = line.indexOf(':');
        if (colon === 0) continue; // a comment
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'data') data.push(value);
        else if (field === 'id' || field === 'event') e[field] = value;
      }
      buffer = buffer.slice(end + 2);
      if (data.length) onEvent({ ...e, data: data.join('\n') });
    }
  }
}

/** Resolves when `signal` aborts; rejects with StreamRefused when the caller is not allowed to read. */
export async function followEvents(url: string, o: FollowOptions): Promise<void> {
  let lastId = '';
  while (!o.signal.aborted) {
    try {
      const headers: Record<string, string> = { ...o.headers, accept: 'text/event-stream' };
      if (lastId) headers['last-event-id'] = lastId;
      const res = await fetch(url, { headers, signal: o.signal });
      if (res.status === 401 || res.status === 403) throw new StreamRefused(`${url}: HTTP ${res.status} (a reader token is needed)`);
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      o.onStatus?.(true);
      await readEvents(res.body, (e) => {
        if (e.id) lastId = e.id;
        o.onEvent(e);
      });
      o.onStatus?.(false, 'the stream ended');
    } catch (e) {
      if (e instanceof StreamRefused) throw e;
      if (o.signal.aborted) return;
      o.onStatus?.(false, (e as Error).message);
    }
    await sleep(o.retryMs ?? 1000, o.signal);
  }
}

/**
 * A trigger that runs `fn` `delayMs` later, never two runs at once; triggers during a run
 * cause one more. A burst of events (a desire creates every instance) costs one re-read.
 * `fn` handles its own errors.
 */
export function coalesce(fn: () => Promise<void>, delayMs = 100): () => void {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let running = false;
  let again = false;
  const run = async () => {
    timer = undefined;
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      await fn();
    } finally {
      running = false;
      if (again) {
        again = false;
        trigger();
      }
    }
  };
  const trigger = () => {
    timer ??= setTimeout(run, delayMs);
  };
  return trigger;
}
