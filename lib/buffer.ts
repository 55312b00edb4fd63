import { SpdkError } from './errors';
import type { NativeBufferOwner } from './engine/native';

const kEngine = Symbol('spdk-node.engine');

/**
 * I/O memory owned by the engine and seen from JavaScript without copies: a read lands in
 * `bytes`, a write sends from it.
 *
 * Lifetime: `free()` (or `using buf = spdk.allocBuffer(n)`) returns the memory at once; it throws
 * EBUSY while an I/O uses the buffer. A buffer JavaScript forgets is returned by the garbage
 * collector, but never while an I/O still uses it. After `free()` or `spdk.stop()`, `bytes`
 * throws and I/O with the buffer is rejected.
 *
 * @example
 * const buf = spdk.allocBuffer(4096);
 * buf.bytes.fill(0xab);
 * await bdev.write(buf, { offsetBlocks: 0, numBlocks: 1 });
 * buf.free();
 */
export class SpdkBuffer {
  /** Native buffer id, used in I/O descriptors. */
  readonly id: number;
  /** Size in bytes. */
  readonly length: number;
  /** Backed by 2 MiB hugepages. */
  readonly hugepage: boolean;
  private readonly [kEngine]: NativeBufferOwner;
  private view: Uint8Array | undefined;
  /** Promise-API I/Os using it from the call until they settle (queued or batched ones included). */
  private held = 0;

  /** @internal */
  constructor(engine: NativeBufferOwner, length: number) {
    const r = engine.allocBuffer(length);
    this[kEngine] = engine;
    this.id = r.id;
    this.length = length;
    this.hugepage = r.hugepage;
    this.view = new Uint8Array(r.buffer);
  }

  /** The memory, as bytes. Throws once the buffer is freed. */
  get bytes(): Uint8Array {
    if (this.freed) throw this.freedError('buffer.bytes');
    return this.view as Uint8Array;
  }

  /** True after free() or spdk.stop() (which detaches every buffer's memory). */
  get freed(): boolean {
    return this.view === undefined || this.view.byteLength === 0;
  }

  /** I/Os currently using this buffer. */
  get inFlight(): number {
    return Math.max(this[kEngine].bufferInfo(this.id)?.inFlight ?? 0, this.held);
  }

  /** Returns the memory now. Throws EBUSY while an I/O uses it; a second call throws EBADF. */
  free(): void {
    if (this.freed) throw this.freedError('buffer.free');
    // A promise-API I/O may not have reached native code yet (it is submitted with its batch a
    // microtask later, or waits for a free slot): it uses the buffer all the same.
    if (this.held > 0) throw new SpdkError(`buffer is in use by ${this.held} I/O(s)`, { errno: 16, op: 'buffer.free' });
    this[kEngine].freeBuffer(this.id);
    this.view = undefined;
  }

  [Symbol.dispose](): void {
    if (!this.freed) this.free();
  }

  /**
   * @internal Holds `bufs` for one promise-API I/O from now until it settles: returns the
   * resolve/reject to settle it with, which release them.
   */
  static holdUntilSettled<T>(bufs: Array<SpdkBuffer | undefined>, resolve: (v: T) => void, reject: (e: Error) => void): [(v: T) => void, (e: Error) => void] {
    const held = bufs.filter((b): b is SpdkBuffer => b !== undefined);
    for (const b of held) b.held++;
    let done = false;
    const release = (): void => {
      if (done) return;
      done = true;
      for (const b of held) b.held--;
    };
    return [
      (v: T) => {
        release();
        resolve(v);
      },
      (e: Error) => {
        release();
        reject(e);
      },
    ];
  }

  /** @internal */
  freedError(op: string): SpdkError {
    const why = this.view === undefined ? 'it was freed' : 'the engine was stopped';
    return new SpdkError(`buffer is no longer usable: ${why}`, { errno: 9, op });
  }
}
