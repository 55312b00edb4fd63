import { SpdkError } from '../errors';
import type { SpdkBuffer } from '../buffer';
import type { NativeConstants, NativeIoQueue } from '../engine/native';

/** Called once per completed I/O: its tag and 0 or a negative errno. */
export type CompletionHandler = (tag: number, status: number) => void;

/** One segment of a vectored I/O. `length` defaults to the rest of the buffer. */
export interface IoSegment {
  buffer: SpdkBuffer;
  offset?: number;
  length?: number;
}

/**
 * A submission/completion queue pair between JavaScript and the reactor that owns the bdev's
 * channel: the throughput path. Each `prep*` call writes one descriptor into shared memory and
 * returns its tag (or -1 when all `depth` tags are in flight); `submit()` hands every prepared
 * descriptor to native code in one call; completions arrive in batches, one wake-up per batch,
 * and `onComplete(tag, status)` runs once per I/O with no allocation.
 *
 * @example
 * const q = await bdev.openQueue({ depth: 64 });
 * q.onComplete = (tag, status) => { if (status) console.error(tag, status); };
 * for (let i = 0; i < 64; i++) q.prepRead(buf, i * 8, 8, i * 4096 * 8);
 * q.submit();
 */
export class IoQueue {
  /** Maximum I/Os in flight. */
  readonly depth: number;
  onComplete: CompletionHandler = () => {};
  /** Called after each batch of completions has been delivered: a place to submit() refills. */
  onBatchEnd: (() => void) | undefined;
  /** Native calls made on the data path (submit + reap), for measuring crossings per I/O. */
  nativeCalls = 0;

  private readonly q: NativeIoQueue;
  private readonly c: NativeConstants;
  private readonly desc: Float64Array;
  private readonly iovTable: Float64Array;
  private readonly cq: Int32Array;
  private readonly freeTags: Int32Array;
  private freeTop: number;
  private pending = 0;
  private iovCursor = 0;
  private closing: Promise<void> | undefined;
  private closedResolve: (() => void) | undefined;

  /** @internal `onClosed` runs once the native queue has released its channel. */
  constructor(q: NativeIoQueue, c: NativeConstants, depth: number, onClosed?: () => void) {
    this.q = q;
    this.c = c;
    this.depth = depth;
    this.desc = q.desc;
    this.iovTable = q.iovs;
    this.cq = q.cq;
    // prep() writes descriptor words by position; the addon's layout must be the one assumed.
    if (c.DESC_WORDS !== 8 || c.DESC_TAG !== 1 || c.DESC_IOV_START !== 7) throw new Error('spdk-node: addon descriptor layout mismatch');
    this.freeTags = new Int32Array(depth);
    for (let i = 0; i < depth; i++) this.freeTags[i] = depth - 1 - i;
    this.freeTop = depth;
    q._onClosed = () => {
      onClosed?.();
      this.closedResolve?.();
    };
  }

  /** The bdev's block size (known once the queue is open: the libspdk engine learns it on SPDK's thread). */
  get blockSize(): number {
    return this.q.blockSize;
  }

  get numBlocks(): number {
    return this.q.numBlocks;
  }

  /** Buffer alignment the bdev requires (1 = none). */
  get requiredAlignment(): number {
    return this.q.requiredAlignment;
  }

  /** Tags free for new I/O. */
  get available(): number {
    return this.freeTop;
  }

  /** I/Os submitted and not yet completed. */
  get inFlight(): number {
    return this.q.inFlight();
  }

  /** Descriptors prepared and not yet submitted. */
  get prepared(): number {
    return this.pending;
  }

  get closed(): boolean {
    return this.closing !== undefined;
  }

  prepRead(buf: SpdkBuffer, offsetBlocks: number, numBlocks: number, bufOffset = 0): number {
    return this.prep(this.c.IO_READ, buf.id, bufOffset, offsetBlocks, numBlocks);
  }

  prepWrite(buf: SpdkBuffer, offsetBlocks: number, numBlocks: number, bufOffset = 0): number {
    return this.prep(this.c.IO_WRITE, buf.id, bufOffset, offsetBlocks, numBlocks);
  }

  prepReadv(segments: IoSegment[], offsetBlocks: number, numBlocks: number): number {
    return this.prepVectored(this.c.IO_READ, segments, offsetBlocks, numBlocks);
  }

  prepWritev(segments: IoSegment[], offsetBlocks: number, numBlocks: number): number {
    return this.prepVectored(this.c.IO_WRITE, segments, offsetBlocks, numBlocks);
  }

  prepFlush(offsetBlocks = 0, numBlocks = this.numBlocks): number {
    return this.prep(this.c.IO_FLUSH, -1, 0, offsetBlocks, numBlocks);
  }

  prepUnmap(offsetBlocks: number, numBlocks: number): number {
    return this.prep(this.c.IO_UNMAP, -1, 0, offsetBlocks, numBlocks);
  }

  prepWriteZeroes(offsetBlocks: number, numBlocks: number): number {
    return this.prep(this.c.IO_WRITE_ZEROES, -1, 0, offsetBlocks, numBlocks);
  }

  /**
   * Hands every prepared descriptor to the reactor in one native call and returns how many.
   * If one is invalid, nothing is submitted: the invalid descriptor is dropped (its tag freed),
   * the others stay prepared, and the SpdkError thrown carries `index` and `tag`. If the queue
   * refuses the whole batch (closed, bdev deleted), every descriptor is dropped and the error
   * carries their `tags`.
   */
  submit(): number {
    const n = this.pending;
    if (n === 0) return 0;
    this.nativeCalls++;
    try {
      this.q.submit(n);
    } catch (err) {
      const index = (err as { index?: number }).index;
      if (typeof index === 'number') {
        (err as { tag?: number }).tag = this.dropDescriptor(index);
      } else {
        // The whole batch was refused (queue closed, bdev deleted): drop every descriptor.
        const tags: number[] = [];
        for (let i = 0; i < n; i++) tags.push(this.desc[i * 8 + 1]);
        for (const t of tags) this.freeTags[this.freeTop++] = t;
        this.pending = 0;
        this.iovCursor = 0;
        (err as { tags?: number[] }).tags = tags;
      }
      throw err;
    }
    this.pending = 0;
    this.iovCursor = 0;
    return n;
  }

  /**
   * Delivers every completion ready now to onComplete; returns how many. The engine calls it
   * on each wake-up; calling it yourself is a way to poll.
   */
  poll(): number {
    this.nativeCalls++;
    const packed = this.q.reap();
    const start = Math.floor(packed / 131072);
    const n = packed % 131072;
    const cq = this.cq;
    const mask = this.q.cqCapacity - 1;
    for (let i = 0; i < n; i++) {
      const idx = ((start + i) & mask) * 2;
      const tag = cq[idx];
      // Free first: the handler may prepare a new I/O with the same tag.
      this.freeTags[this.freeTop++] = tag;
      this.onComplete(tag, cq[idx + 1]);
    }
    if (n > 0 && this.onBatchEnd) this.onBatchEnd();
    return n;
  }

  /**
   * Stops accepting I/O, waits for in-flight I/O to complete (their completions are still
   * delivered), then releases the channel. Prepared descriptors that were never submitted are
   * discarded.
   */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.pending = 0;
    this.closing = new Promise<void>((resolve) => {
      this.closedResolve = () => {
        this.poll();
        resolve();
      };
    });
    this.q.close();
    return this.closing;
  }

  private prep(op: number, bufId: number, bufOffset: number, offsetBlocks: number, numBlocks: number): number {
    if (this.closing) throw new SpdkError('queue is closed', { errno: 108, op: 'bdev.submit' });
    if (this.freeTop === 0 || this.pending >= this.depth) return -1;
    const tag = this.freeTags[--this.freeTop];
    const d = this.desc;
    const o = this.pending++ * 8;
    d[o] = op;
    d[o + 1] = tag;
    d[o + 2] = bufId;
    d[o + 3] = bufOffset;
    d[o + 4] = offsetBlocks;
    d[o + 5] = numBlocks;
    d[o + 6] = 0;
    d[o + 7] = 0;
    return tag;
  }

  private prepVectored(op: number, segments: IoSegment[], offsetBlocks: number, numBlocks: number): number {
    const n = segments.length;
    if (n === 0 || n > this.c.MAX_IOVS) {
      throw SpdkError.invalidArg('bdev.submit', `a vectored I/O takes 1..${this.c.MAX_IOVS} segments`);
    }
    if (this.iovCursor + n > this.iovTable.length / 3) {
      // The iov table is per batch; make room by submitting what is prepared.
      this.submit();
    }
    const tag = this.prep(op, -1, 0, offsetBlocks, numBlocks);
    if (tag < 0) return tag;
    const o = (this.pending - 1) * 8;
    this.desc[o + 6] = n;
    this.desc[o + 7] = this.iovCursor;
    for (let i = 0; i < n; i++) {
      const s = segments[i];
      const off = s.offset ?? 0;
      const t = (this.iovCursor + i) * 3;
      this.iovTable[t] = s.buffer.id;
      this.iovTable[t + 1] = off;
      this.iovTable[t + 2] = s.length ?? s.buffer.length - off;
    }
    this.iovCursor += n;
    return tag;
  }

  private dropDescriptor(index: number): number {
    const d = this.desc;
    const tag = d[index * 8 + 1];
    d.copyWithin(index * 8, (index + 1) * 8, this.pending * 8);
    this.pending--;
    this.freeTags[this.freeTop++] = tag;
    return tag;
  }
}
