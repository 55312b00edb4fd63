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
    return this[kEngine].bufferInfo(this.id)?.inFlight ?? 0;
  }

  /** Returns the memory now. Throws EBUSY while an I/O uses it; a second call throws EBADF. */
  free(): void {
    if (this.freed) throw this.freedError('buffer.free');
    this[kEngine].freeBuffer(this.id);
    this.view = undefined;
  }

  [Symbol.dispose](): void {
    if (!this.freed) this.free();
  }

  /** @internal */
  freedError(op: string): SpdkError {
    const why = this.view === undefined ? 'it was freed' : 'the engine was stopped';
    return new SpdkError(`buffer is no longer usable: ${why}`, { errno: 9, op });
  }
}
