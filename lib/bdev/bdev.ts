import { SpdkError } from '../errors';
import { SpdkBuffer } from '../buffer';
import type { BdevInfo } from '../engine/types';
import { IoQueue, IoSegment } from './queue';

/** Where an I/O goes on the bdev, and where its data sits in the buffer. */
export interface IoRange {
  offsetBlocks: number;
  numBlocks: number;
  /** Byte offset into the buffer (default 0). */
  bufferOffset?: number;
}

export interface QueueOptions {
  /** Maximum I/Os in flight (default 128). */
  depth?: number;
  /**
   * Which reactor owns the queue's channel: an index into `cores` (default 0), or `'js'` for the
   * JS thread's own reactor, polled from the event loop (SPDK's application-thread model).
   */
  reactor?: number | 'js';
}

/** @internal How a BdevHandle makes queues; implemented by Spdk. */
export interface QueueFactory {
  openQueue(bdev: string, opts: QueueOptions): Promise<IoQueue>;
}

type Pending = { resolve: () => void; reject: (e: Error) => void };

/**
 * An open bdev. Every method returns a Promise per I/O; I/Os issued in the same tick go to the
 * reactor in one native call, and completions come back in batches. For the throughput path
 * without a Promise per I/O, use `openQueue()`.
 *
 * @example
 * const bdev = await spdk.bdev.open('Malloc0');
 * const buf = spdk.allocBuffer(4096 * 8);
 * await bdev.write(buf, { offsetBlocks: 0, numBlocks: 8 });
 * await bdev.read(buf, { offsetBlocks: 0, numBlocks: 8 });
 * await bdev.close();
 */
export class BdevHandle {
  readonly name: string;
  readonly blockSize: number;
  readonly numBlocks: number;
  readonly info: BdevInfo;
  private readonly queue: IoQueue;
  private readonly factory: QueueFactory;
  private readonly waiters: Pending[];
  private readonly backlog: Array<() => void> = [];
  private scheduled = false;
  private readonly queues = new Set<IoQueue>();

  private readonly onClosed: () => void;

  /** @internal */
  constructor(info: BdevInfo, queue: IoQueue, factory: QueueFactory, onClosed: () => void = () => {}) {
    this.onClosed = onClosed;
    this.info = info;
    this.name = info.name;
    this.blockSize = info.blockSize;
    this.numBlocks = info.numBlocks;
    this.queue = queue;
    this.factory = factory;
    this.waiters = new Array(queue.depth);
    queue.onComplete = (tag, status) => {
      const w = this.waiters[tag];
      this.waiters[tag] = undefined as unknown as Pending;
      if (status === 0) w.resolve();
      else w.reject(SpdkError.fromErrno(status, 'bdev.io', `I/O on ${this.name} failed: ${errnoText(status)}`));
      if (this.backlog.length) this.drainBacklog();
    };
  }

  read(buf: SpdkBuffer, r: IoRange): Promise<void> {
    return this.issue((q) => q.prepRead(buf, r.offsetBlocks, r.numBlocks, r.bufferOffset ?? 0), buf, 'bdev.read');
  }

  write(buf: SpdkBuffer, r: IoRange): Promise<void> {
    return this.issue((q) => q.prepWrite(buf, r.offsetBlocks, r.numBlocks, r.bufferOffset ?? 0), buf, 'bdev.write');
  }

  /** Reads into several buffers (scatter). The segments' lengths add up to numBlocks blocks. */
  readv(segments: IoSegment[], r: { offsetBlocks: number; numBlocks: number }): Promise<void> {
    return this.issue((q) => q.prepReadv(segments, r.offsetBlocks, r.numBlocks), undefined, 'bdev.readv', segments);
  }

  /** Writes from several buffers (gather). */
  writev(segments: IoSegment[], r: { offsetBlocks: number; numBlocks: number }): Promise<void> {
    return this.issue((q) => q.prepWritev(segments, r.offsetBlocks, r.numBlocks), undefined, 'bdev.writev', segments);
  }

  /** Makes completed writes durable (a no-op on malloc). */
  flush(r?: { offsetBlocks: number; numBlocks: number }): Promise<void> {
    return this.issue((q) => q.prepFlush(r?.offsetBlocks ?? 0, r?.numBlocks ?? this.numBlocks), undefined, 'bdev.flush');
  }

  /** Deallocates blocks; they read back as zeroes. */
  unmap(r: { offsetBlocks: number; numBlocks: number }): Promise<void> {
    return this.issue((q) => q.prepUnmap(r.offsetBlocks, r.numBlocks), undefined, 'bdev.unmap');
  }

  writeZeroes(r: { offsetBlocks: number; numBlocks: number }): Promise<void> {
    return this.issue((q) => q.prepWriteZeroes(r.offsetBlocks, r.numBlocks), undefined, 'bdev.writeZeroes');
  }

  /** Native calls made by this handle's Promise path (submit + reap), for benchmarks. */
  get nativeCalls(): number {
    return this.queue.nativeCalls;
  }

  /** A queue pair of its own for the batch path (see IoQueue). Closed with the handle. */
  async openQueue(opts: QueueOptions = {}): Promise<IoQueue> {
    const q = await this.factory.openQueue(this.name, opts);
    this.queues.add(q);
    return q;
  }

  /** Waits for in-flight I/O, then closes the handle's queues. */
  async close(): Promise<void> {
    const closing = this.queue.close();
    this.flushBacklogAsClosed();
    await Promise.all([closing, ...[...this.queues].map((q) => q.close())]);
    this.onClosed();
  }

  private issue(prep: (q: IoQueue) => number, buf: SpdkBuffer | undefined, op: string, segs?: IoSegment[]): Promise<void> {
    return new Promise<void>((settleOk, settleErr) => {
      if (buf?.freed) return settleErr(buf.freedError(op));
      if (segs) {
        for (const s of segs) if (s.buffer.freed) return settleErr(s.buffer.freedError(op));
      }
      if (this.queue.closed) return settleErr(new SpdkError(`bdev ${this.name} is closed`, { errno: 108, op }));
      // The buffers are this I/O's from now on, though it reaches native code a microtask later.
      const [resolve, reject] = SpdkBuffer.holdUntilSettled([buf, ...(segs ?? []).map((s) => s.buffer)], settleOk, settleErr);
      const attempt = (): void => {
        let tag: number;
        try {
          tag = prep(this.queue);
        } catch (e) {
          reject(e as Error);
          return;
        }
        if (tag < 0) {
          this.backlog.push(attempt);
          return;
        }
        this.waiters[tag] = { resolve, reject };
        this.schedule();
      };
      if (this.backlog.length) this.backlog.push(attempt);
      else attempt();
    });
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      this.submitAll();
    });
  }

  private submitAll(): void {
    // An invalid descriptor rejects only its own I/O; the rest of the batch is resubmitted.
    for (;;) {
      try {
        this.queue.submit();
        return;
      } catch (e) {
        const { tag, tags } = e as { tag?: number; tags?: number[] };
        for (const t of tags ?? (typeof tag === 'number' ? [tag] : [])) {
          const w = this.waiters[t];
          this.waiters[t] = undefined as unknown as Pending;
          w.reject(e as Error);
        }
        if (typeof tag !== 'number') {
          // The whole batch was refused and its tags freed: I/O still waiting for a tag gets one
          // now, so it is submitted (and settled) in the next batch instead of waiting forever.
          if (this.backlog.length) this.drainBacklog();
          return;
        }
      }
    }
  }

  /** Runs I/O that waited for a free tag; called after each completion. */
  private drainBacklog(): void {
    while (this.backlog.length && this.queue.available > 0) {
      const next = this.backlog.shift() as () => void;
      next();
    }
  }

  private flushBacklogAsClosed(): void {
    // Queued I/O that never got a tag sees the closed queue when it runs now.
    const items = this.backlog.splice(0);
    for (const run of items) run();
  }
}

function errnoText(status: number): string {
  return SpdkError.fromErrno(status, '').message;
}
