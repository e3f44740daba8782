// A client of Drover's Server-Sent Events streams (/v1/events, /v1/events/lrp_instances):
// opens one, waits until it is subscribed, and reads its events in order.

import assert from 'node:assert/strict';

export interface SseEvent {
  id: number;
  event: string;
  data: string;
}

export class SseStream {
  private buffer = '';
  private readonly queue: SseEvent[] = [];
  private readonly decoder = new TextDecoder();
  private pending?: Promise<ReadableStreamReadResult<Uint8Array>>;
  private comments = 0;

  private constructor(
    private readonly abort: AbortController,
    private readonly reader: ReadableStreamDefaultReader<Uint8Array>,
  ) {}

  static async open(url: string, headers: Record<string, string> = {}): Promise<SseStream> {
    const abort = new AbortController();
    const res = await fetch(url, { headers, signal: abort.signal });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const stream = new SseStream(abort, res.body!.getReader());
    // the server's opening comment: from here on it is subscribed
    const deadline = Date.now() + 5000;
    while (stream.comments === 0) await stream.fill(deadline);
    return stream;
  }

  private async fill(deadline: number): Promise<void> {
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw new Error('timed out reading the event stream');
    this.pending ??= this.reader.read();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), remaining);
    });
    const result = await Promise.race([this.pending, timeout]);
    clearTimeout(timer);
    if (result === 'timeout') throw new Error('timed out reading the event stream');
    this.pending = undefined;
    if (result.done) throw new Error('the event stream ended');
    this.buffer += this.decoder.decode(result.value, { stream: true });
    let end: number;
    while ((end = this.buffer.indexOf('\n\n')) >= 0) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      const fields: Record<string, string> = {};
      let comment = false;
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) comment = true;
        else {
          const i = line.indexOf(':');
          fields[line.slice(0, i)] = line.slice(i + 1).replace(/^ /, '');
        }
      }
      if (fields.event !== undefined || fields.data !== undefined) {
        assert.match(fields.id ?? '', /^\d+$/, 'every event has a numeric id: line');
        this.queue.push({ id: Number(fields.id), event: fields.event ?? '', data: fields.data ?? '' });
      } else if (comment) this.comments++;
    }
  }

  async next(timeoutMs = 10_000): Promise<SseEvent> {
    const deadline = Date.now() + timeoutMs;
    while (this.queue.length === 0) await this.fill(deadline);
    return this.queue.shift()!;
  }

  /** Reads events until one matches; returns every event read, the match last. */
  async until(match: (e: SseEvent) => boolean, timeoutMs = 10_000): Promise<SseEvent[]> {
    const deadline = Date.now() + timeoutMs;
    const seen: SseEvent[] = [];
    for (;;) {
      const e = await this.next(Math.max(1, deadline - Date.now()));
      seen.push(e);
      if (match(e)) return seen;
    }
  }

  close(): void {
    this.abort.abort();
  }
}
