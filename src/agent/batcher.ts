// Gathers calls made one at a time into one request: what is added while a request is in
// flight (or in the same turn of the event loop) goes together in the next one. A lone call
// waits for nothing but the current turn; a burst of a thousand becomes a few requests.

interface Waiting<I, R> {
  item: I;
  resolve(result: R): void;
  reject(error: unknown): void;
}

export class Batcher<I, R> {
  private queue: Waiting<I, R>[] = [];
  private scheduled = false;
  private inFlight = false;

  /** `send` answers every item, in order: its result, or the Error that refused it. */
  constructor(
    private readonly send: (items: I[]) => Promise<(R | Error)[]>,
    private readonly maxItems: number,
  ) {}

  add(item: I): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.inFlight || this.scheduled || this.queue.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.inFlight = true;
    const batch = this.queue.splice(0, this.maxItems);
    try {
      const results = await this.send(batch.map((w) => w.item));
      batch.forEach((w, i) => {
        const r = results[i];
        if (r instanceof Error) w.reject(r);
        else w.resolve(r as R);
      });
    } catch (e) {
      for (const w of batch) w.reject(e);
    } finally {
      this.inFlight = false;
      this.schedule();
    }
  }
}
