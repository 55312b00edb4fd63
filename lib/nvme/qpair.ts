import { SpdkError } from '../errors';
import { SpdkBuffer } from '../buffer';
import type { NativeNvmeConstants, NativeNvmeQpair } from '../engine/native';
import { NvmeCommandInfo, opcodeName, statusError } from './status';
import type { NvmeNamespace } from './namespace';

/** Who drives a queue pair. */
export type QpairOwner = 'js' | 'reactor';

export interface QpairOptions {
  /** Commands in flight at once (default 128). More than the controller's queue holds wait in native code. */
  depth?: number;
  /**
   * 'js' (default): the calling JS thread owns the queue pair, as an SPDK application thread owns
   * its qpairs: submissions are sent in the submitting call, and the socket is polled from the
   * event loop while commands are outstanding (and left to the kernel when idle).
   * 'reactor': a reactor thread owns it; submissions cross a lockless ring and completions come
   * back in batches, one wake-up for many.
   */
  owner?: QpairOwner;
  /** With owner 'reactor': the reactor index (default 0). */
  reactor?: number;
  /**
   * With owner 'js': spin the event loop while commands are outstanding (default true; lowest
   * latency, one core busy while I/O runs; it stops spinning after 2 ms without progress).
   */
  spin?: boolean;
  /**
   * Per-command timeout in ms (default: the controller's `ioTimeoutMs`, 0 = none). A command
   * that exceeds it is aborted (Abort on the admin queue); if the controller does not abort it,
   * the queue pair is disconnected: the command fails with ETIMEDOUT, the others with
   * ECONNABORTED, and `ctrlr.reset()` reconnects.
   */
  timeoutMs?: number;
}

/** Options of one promise-API I/O. */
export interface IoOptions {
  /** Byte offset in the buffer (default 0). */
  bufferOffset?: number;
  /** Force Unit Access. */
  fua?: boolean;
}

/** A block range for deallocate (Dataset Management). */
export interface LbaRange {
  lba: number;
  blocks: number;
}

interface Op {
  resolve: () => void;
  reject: (e: Error) => void;
  info: NvmeCommandInfo;
  scratch?: SpdkBuffer;
}

/** @internal What the controller gives a queue pair. */
export interface QpairHost {
  allocBuffer(length: number): SpdkBuffer;
  onFreed(qp: NvmeQpair): void;
}

const EAGAIN = 11;
const ENOTCONN = 107;
const OP_NAMES = ['', 'nvme.read', 'nvme.write', 'nvme.flush', 'nvme.writeZeroes', 'nvme.deallocate', 'nvme.compare'];
const OPCODES = [0, 0x02, 0x01, 0x00, 0x08, 0x09, 0x05];

/**
 * An NVMe I/O queue pair. Two ways to use it:
 *
 * Promise per command (`read`, `write`, `flush`, `writeZeroes`, `deallocate`, `compare`):
 * commands issued in one tick go out in one native call.
 *
 * The batch path (what `spdk-node perf` uses): `submitRead`/`submitWrite`/... write a
 * descriptor each (plain JavaScript, no native call, no allocation), `flushSubmissions()` sends
 * them in one native call, and `await reap(ring)` fills a preallocated Int32Array with
 * `(tag, status)` pairs (also sending anything not flushed yet), returning how many; `poll(ring)`
 * is the same without waiting. Status 0 is success, > 0 an NVMe status (see NvmeError), < 0 a
 * negative errno (no completion: the connection was lost, the command timed out, ...).
 * `nativeCalls` counts the crossings into native code.
 *
 * Buffers: SpdkBuffer memory; reads land in it and writes are sent from it with no copy. A
 * buffer (or the part of it an I/O uses) is in flight from submission until its completion is
 * reaped: it cannot be freed, and another I/O on overlapping bytes is refused (EBUSY).
 *
 * @example
 * const qp = await ctrlr.allocQpair({ depth: 64 });
 * const ring = new Int32Array(128);
 * for (let i = 0; i < 64; i++) qp.submitRead(ns, bufs[i], lba(i), 8, i);
 * for (;;) {
 *   const n = await qp.reap(ring);
 *   for (let i = 0; i < n; i++) { const tag = ring[2 * i], status = ring[2 * i + 1]; ... qp.submitRead(ns, bufs[tag], lba(), 8, tag); }
 * }
 */
export class NvmeQpair {
  /** The queue ID (1..). */
  readonly id: number;
  readonly depth: number;
  readonly owner: QpairOwner;
  /** Native calls made on the data path (submit, reap), for measuring crossings per I/O. */
  nativeCalls = 0;
  /** Calls from native code into JavaScript (completion wake-ups). */
  wakeups = 0;

  private readonly q: NativeNvmeQpair;
  private readonly c: NativeNvmeConstants;
  private readonly host: QpairHost;
  private readonly desc: Float64Array;
  private pending = 0;
  private inFlight = 0;
  // Promise-API commands: negative tags -(i + 1).
  private readonly ops: Array<Op | undefined>;
  private readonly freeOps: number[] = [];
  private opsOut = 0;
  private readonly waitq: Array<() => void> = [];
  private readonly iring: Int32Array;
  // User completions that arrived through the internal ring, returned by the next reap/poll.
  private readonly stash: Int32Array;
  private stashHead = 0;
  private stashCount = 0;
  private waiter: { ring: Int32Array; resolve: (n: number) => void; reject: (e: Error) => void } | undefined;
  private armed: 'user' | 'internal' | undefined;
  private flushQueued = false;
  private closing: Promise<void> | undefined;
  private userError: Error | undefined;

  /** @internal */
  constructor(q: NativeNvmeQpair, c: NativeNvmeConstants, id: number, depth: number, owner: QpairOwner, host: QpairHost) {
    if (c.DESC_WORDS !== 8 || c.DESC_TAG !== 1 || c.DESC_FLAGS !== 7) throw new Error('spdk-node: addon NVMe descriptor layout mismatch');
    this.q = q;
    this.c = c;
    this.id = id;
    this.depth = depth;
    this.owner = owner;
    this.host = host;
    this.desc = q.desc;
    this.ops = new Array<Op | undefined>(depth).fill(undefined);
    for (let i = depth - 1; i >= 0; i--) this.freeOps.push(i);
    this.iring = new Int32Array(depth * 2);
    this.stash = new Int32Array(depth * 2);
  }

  /** @internal The native side's wake-up: `n` completions were copied into the armed ring. */
  onReady(n: number): void {
    this.wakeups++;
    this.inFlight -= n;
    const which = this.armed;
    this.armed = undefined;
    if (which === 'user' && this.waiter) {
      const w = this.waiter;
      const m = this.opsOut > 0 ? this.settleInternal(w.ring, n) : n;
      if (m > 0 || this.closing || this.inFlight === 0) {
        this.waiter = undefined;
        w.resolve(m);
        this.armInternal();
        return;
      }
      this.armUser(w.ring);
      return;
    }
    if (which === 'internal') {
      this.settleInternal(this.iring, n, true);
      if (this.waiter && this.stashCount > 0) {
        const w = this.waiter;
        this.waiter = undefined;
        w.resolve(this.takeStash(w.ring));
      }
      this.armInternal();
    }
  }

  /** Commands submitted and not reaped yet. */
  get outstanding(): number {
    return this.inFlight;
  }

  /** Descriptors written and not submitted yet. */
  get prepared(): number {
    return this.pending;
  }

  /** Room for more commands (depth minus outstanding and prepared). */
  get available(): number {
    return this.depth - this.inFlight - this.pending;
  }

  /** 'ready', 'failed' (the connection was lost: ctrlr.reset() reconnects), 'closed', ... */
  get state(): string {
    return this.q.state().phase;
  }

  /** Why the queue pair failed, if it did. */
  get failure(): string | undefined {
    return this.q.state().failure;
  }

  /** Transport counters (owner 'js'): PDUs, system calls, bytes copied vs read in place. */
  stats(): ReturnType<NativeNvmeQpair['stats']> {
    return this.q.stats();
  }

  // ---- the batch path ------------------------------------------------------------------------

  submitRead(ns: NvmeNamespace, buf: SpdkBuffer, lba: number, blocks: number, tag: number, bufferOffset = 0): void {
    this.userPrep(this.c.OP_READ, ns.id, buf.id, bufferOffset, lba, blocks, 0, tag);
  }

  submitWrite(ns: NvmeNamespace, buf: SpdkBuffer, lba: number, blocks: number, tag: number, bufferOffset = 0): void {
    this.userPrep(this.c.OP_WRITE, ns.id, buf.id, bufferOffset, lba, blocks, 0, tag);
  }

  submitCompare(ns: NvmeNamespace, buf: SpdkBuffer, lba: number, blocks: number, tag: number, bufferOffset = 0): void {
    this.userPrep(this.c.OP_COMPARE, ns.id, buf.id, bufferOffset, lba, blocks, 0, tag);
  }

  submitFlush(ns: NvmeNamespace, tag: number): void {
    this.userPrep(this.c.OP_FLUSH, ns.id, -1, 0, 0, 0, 0, tag);
  }

  submitWriteZeroes(ns: NvmeNamespace, lba: number, blocks: number, tag: number, opts: { deallocate?: boolean } = {}): void {
    this.userPrep(this.c.OP_WRITE_ZEROES, ns.id, -1, 0, lba, blocks, opts.deallocate ? this.c.FLAG_DEAC : 0, tag);
  }

  /**
   * Sends every descriptor written since the last flush in one native call; returns how many.
   * If one is invalid nothing is sent: it is dropped and the SpdkError thrown carries its
   * `index` and `tag`; the others stay prepared. If the queue pair refuses the batch (not
   * connected), all are dropped and the error carries their `tags`.
   */
  flushSubmissions(): number {
    this.throwUserError();
    const n = this.pending;
    if (n === 0) return 0;
    this.nativeCalls++;
    try {
      this.q.submit(n);
    } catch (e) {
      this.dropFailed(e as Error, n, true);
      return this.pending > 0 ? this.flushSubmissions() : 0;
    }
    this.pending = 0;
    this.inFlight += n;
    return n;
  }

  /**
   * Sends what is prepared, then resolves with the number of completions written into `ring`
   * as (tag, status) pairs from index 0 (at most ring.length / 2), waiting for at least one
   * while commands are outstanding; 0 at once when none are.
   */
  reap(ring: Int32Array): Promise<number> {
    if (this.waiter) return Promise.reject(new SpdkError('a reap() is already waiting on this qpair', { errno: 114, op: 'nvme.reap' }));
    if (!(ring instanceof Int32Array) || ring.length < 2) return Promise.reject(SpdkError.invalidArg('nvme.reap', 'ring must be an Int32Array of at least 2 elements'));
    if (this.userError) {
      const e = this.userError;
      this.userError = undefined;
      return Promise.reject(e);
    }
    if (this.stashCount > 0) {
      this.flushSubmissions();
      return Promise.resolve(this.takeStash(ring));
    }
    let n: number;
    try {
      n = this.nativeReap(ring, true);
    } catch (e) {
      return Promise.reject(e);
    }
    if (n > 0 || this.inFlight === 0 || this.closing) return Promise.resolve(n);
    return new Promise<number>((resolve, reject) => {
      this.waiter = { ring, resolve, reject };
      if (this.armed !== 'user') this.armUser(ring);
    });
  }

  /** Like reap() without waiting: sends what is prepared and returns the completions ready now. */
  poll(ring: Int32Array): number {
    if (this.waiter) throw new SpdkError('a reap() is waiting on this qpair', { errno: 114, op: 'nvme.poll' });
    if (this.stashCount > 0) {
      this.flushSubmissions();
      return this.takeStash(ring);
    }
    const n = this.nativeReap(ring, false);
    this.armInternal();
    return n;
  }

  // ---- the promise path ----------------------------------------------------------------------

  read(ns: NvmeNamespace, buf: SpdkBuffer, lba: number, blocks: number, opts?: IoOptions): Promise<void> {
    return this.op(this.c.OP_READ, ns, buf, lba, blocks, opts);
  }

  write(ns: NvmeNamespace, buf: SpdkBuffer, lba: number, blocks: number, opts?: IoOptions): Promise<void> {
    return this.op(this.c.OP_WRITE, ns, buf, lba, blocks, opts);
  }

  /** Compare: rejects with an NvmeError (COMPARE FAILURE) when the blocks differ from buf. */
  compare(ns: NvmeNamespace, buf: SpdkBuffer, lba: number, blocks: number, opts?: IoOptions): Promise<void> {
    return this.op(this.c.OP_COMPARE, ns, buf, lba, blocks, opts);
  }

  flush(ns: NvmeNamespace): Promise<void> {
    return this.op(this.c.OP_FLUSH, ns, undefined, 0, 0);
  }

  writeZeroes(ns: NvmeNamespace, lba: number, blocks: number, opts: { fua?: boolean; deallocate?: boolean } = {}): Promise<void> {
    const flags = (opts.fua ? this.c.FLAG_FUA : 0) | (opts.deallocate ? this.c.FLAG_DEAC : 0);
    return this.op(this.c.OP_WRITE_ZEROES, ns, undefined, lba, blocks, undefined, flags);
  }

  /** Dataset Management, deallocate (TRIM/unmap) of up to 256 ranges. */
  deallocate(ns: NvmeNamespace, ranges: LbaRange[]): Promise<void> {
    if (!Array.isArray(ranges) || ranges.length < 1 || ranges.length > 256) {
      return Promise.reject(SpdkError.invalidArg('nvme.deallocate', 'ranges must be an array of 1..256 { lba, blocks }'));
    }
    for (const [i, r] of ranges.entries()) {
      if (!r || !Number.isSafeInteger(r.lba) || r.lba < 0 || !Number.isInteger(r.blocks) || r.blocks < 1 || r.blocks > 0xffffffff) {
        return Promise.reject(SpdkError.invalidArg('nvme.deallocate', `range ${i}: lba must be a non-negative safe integer and blocks 1..2^32-1`));
      }
    }
    // The range list (16 bytes per range) is the command's data: engine memory, freed when the
    // command completes.
    let scratch: SpdkBuffer;
    try {
      scratch = this.host.allocBuffer(ranges.length * 16);
    } catch (e) {
      return Promise.reject(e);
    }
    const v = new DataView(scratch.bytes.buffer, scratch.bytes.byteOffset, scratch.length);
    ranges.forEach((r, i) => {
      v.setUint32(i * 16, 0, true); // context attributes
      v.setUint32(i * 16 + 4, r.blocks, true);
      v.setUint32(i * 16 + 8, r.lba % 4294967296, true);
      v.setUint32(i * 16 + 12, Math.floor(r.lba / 4294967296), true);
    });
    return this.op(this.c.OP_DEALLOCATE, ns, scratch, 0, ranges.length, undefined, 0, scratch);
  }

  /**
   * Disconnects: commands still in flight complete with ABORTED - SQ DELETION (as SPDK's
   * spdk_nvme_ctrlr_free_io_qpair does); promise-API commands reject, batch completions stay
   * readable with poll()/reap().
   */
  free(): Promise<void> {
    if (this.closing) return this.closing;
    this.closing = this.doFree();
    return this.closing;
  }

  /** @internal After a controller reset: connects this queue pair to the new controller. */
  async reconnect(): Promise<void> {
    if (this.closing) return;
    this.dropPending(new SpdkError('the controller was reset before this command was sent', { errno: ENOTCONN, op: 'nvme.reset' }));
    await this.q.reconnect();
    this.drain();
  }

  // ---- internals -----------------------------------------------------------------------------

  private userPrep(op: number, nsid: number, bufId: number, bufOffset: number, lba: number, count: number, flags: number, tag: number): void {
    if ((tag | 0) !== tag || tag < 0) throw SpdkError.invalidArg('nvme.submit', 'tag must be an integer in 0..2^31-1');
    this.prep(op, nsid, bufId, bufOffset, lba, count, flags, tag);
  }

  private prep(op: number, nsid: number, bufId: number, bufOffset: number, lba: number, count: number, flags: number, tag: number): void {
    if (this.closing) throw new SpdkError('the qpair is freed', { errno: ENOTCONN, op: 'nvme.submit' });
    if (this.pending + this.inFlight >= this.depth) {
      throw new SpdkError(`the qpair is full: ${this.depth} commands outstanding or prepared (its depth)`, { errno: EAGAIN, op: 'nvme.submit' });
    }
    const d = this.desc;
    const o = this.pending++ * 8;
    d[o] = op;
    d[o + 1] = tag;
    d[o + 2] = nsid;
    d[o + 3] = bufId;
    d[o + 4] = bufOffset;
    d[o + 5] = lba;
    d[o + 6] = count;
    d[o + 7] = flags;
  }

  private nativeReap(ring: Int32Array, wait: boolean): number {
    const pending = this.pending;
    this.nativeCalls++;
    let n: number;
    try {
      n = this.q.reap(ring, pending, wait);
    } catch (e) {
      if (pending === 0) throw e;
      this.dropFailed(e as Error, pending, true);
      return this.nativeReap(ring, wait);
    }
    this.pending = 0;
    this.inFlight += pending - n;
    // Native rule: every reap replaces the armed wait, which is armed again (on this ring) when
    // nothing was ready, `wait` was asked and commands are in flight.
    this.armed = n === 0 && wait && this.inFlight > 0 ? (ring === this.iring ? 'internal' : 'user') : undefined;
    if (n > 0 && this.opsOut > 0) {
      n = this.settleInternal(ring, n);
      if (n === 0 && wait && this.inFlight > 0) return this.nativeReap(ring, wait);
    }
    return n;
  }

  /**
   * Settles promise-API commands (negative tags) found in ring[0..n), compacting user entries
   * to the front; returns how many user entries remain. With `stash`, user entries go to the
   * stash instead (they arrived through the internal ring).
   */
  private settleInternal(ring: Int32Array, n: number, stash = false): number {
    let k = 0;
    for (let i = 0; i < n; i++) {
      const tag = ring[2 * i];
      const status = ring[2 * i + 1];
      if (tag < 0) {
        this.settle(-tag - 1, status);
      } else if (stash) {
        const at = ((this.stashHead + this.stashCount) % this.depth) * 2;
        this.stash[at] = tag;
        this.stash[at + 1] = status;
        this.stashCount++;
      } else {
        ring[2 * k] = tag;
        ring[2 * k + 1] = status;
        k++;
      }
    }
    return k;
  }

  private takeStash(ring: Int32Array): number {
    const n = Math.min(this.stashCount, ring.length >> 1);
    for (let i = 0; i < n; i++) {
      const at = ((this.stashHead + i) % this.depth) * 2;
      ring[2 * i] = this.stash[at];
      ring[2 * i + 1] = this.stash[at + 1];
    }
    this.stashHead = (this.stashHead + n) % this.depth;
    this.stashCount -= n;
    return n;
  }

  private settle(i: number, status: number): void {
    const op = this.ops[i];
    if (!op) return;
    this.ops[i] = undefined;
    this.freeOps.push(i);
    this.opsOut--;
    // Settled first: that releases the command's hold on its buffer (the scratch one included).
    if (status === 0) op.resolve();
    else op.reject(statusError(status, op.info, opName(op.info), status < 0 ? this.failure ?? undefined : undefined));
    if (op.scratch && !op.scratch.freed) op.scratch.free();
    const next = this.waitq.shift();
    if (next) next();
  }

  private armUser(ring: Int32Array): void {
    try {
      const n = this.nativeReap(ring, true);
      if (n > 0 && this.waiter) {
        const w = this.waiter;
        this.waiter = undefined;
        w.resolve(n);
        this.armInternal();
      } else if (n === 0 && this.inFlight === 0 && this.waiter) {
        const w = this.waiter;
        this.waiter = undefined;
        w.resolve(0);
      }
    } catch (e) {
      const w = this.waiter;
      this.waiter = undefined;
      w?.reject(e as Error);
    }
  }

  /** Keeps the internal ring armed while promise-API commands are out and no user reap waits. */
  private armInternal(): void {
    if (this.opsOut === 0 || this.waiter || this.armed || this.closing) return;
    for (;;) {
      let n: number;
      try {
        n = this.nativeReap(this.iring, true);
      } catch (e) {
        this.noteUserError(e as Error);
        return;
      }
      if (n === 0) return;
      this.settleInternal(this.iring, n, true);
      if (this.opsOut === 0) return;
    }
  }

  private op(opc: number, ns: NvmeNamespace, buf: SpdkBuffer | undefined, lba: number, count: number, opts?: IoOptions, flags = 0, scratch?: SpdkBuffer): Promise<void> {
    return new Promise<void>((settleOk, settleErr) => {
      // The buffer is this command's from the call (it may wait for a slot, and is sent with its
      // batch a microtask later): free() refuses it until the promise settles.
      const [resolve, reject] = buf instanceof SpdkBuffer ? SpdkBuffer.holdUntilSettled([buf], settleOk, settleErr) : [settleOk, settleErr];
      const info: NvmeCommandInfo = { queue: 'io', opcode: OPCODES[opc], command: opcodeName(OPCODES[opc], false), nsid: ns?.id, qid: this.id };
      if (opc !== this.c.OP_FLUSH && opc !== this.c.OP_DEALLOCATE) {
        info.lba = lba;
        info.blocks = count;
      }
      const start = (): void => {
        if (this.closing) {
          reject(new SpdkError('the qpair is freed', { errno: ENOTCONN, op: OP_NAMES[opc] }));
          if (scratch && !scratch.freed) scratch.free();
          return;
        }
        const i = this.freeOps.pop() as number;
        this.ops[i] = { resolve, reject, info, scratch };
        this.opsOut++;
        const f = flags | (opts?.fua ? this.c.FLAG_FUA : 0);
        this.prep(opc, ns.id, buf ? buf.id : -1, opts?.bufferOffset ?? 0, lba, count, f, -(i + 1));
        if (!this.flushQueued) {
          this.flushQueued = true;
          queueMicrotask(() => this.internalFlush());
        }
      };
      try {
        if (!ns || typeof ns.id !== 'number') throw SpdkError.invalidArg(OP_NAMES[opc], 'ns must be an NvmeNamespace');
        if (buf !== undefined && (buf === null || typeof buf.id !== 'number')) throw SpdkError.invalidArg(OP_NAMES[opc], 'buf must be an SpdkBuffer');
        if (this.closing) throw new SpdkError('the qpair is freed', { errno: ENOTCONN, op: OP_NAMES[opc] });
        if (this.pending + this.inFlight >= this.depth || this.freeOps.length === 0) this.waitq.push(start);
        else start();
      } catch (e) {
        reject(e as Error);
        if (scratch && !scratch.freed) scratch.free();
      }
    });
  }

  private internalFlush(): void {
    this.flushQueued = false;
    if (this.pending === 0) return;
    if (this.waiter || this.armed === 'user') {
      // A user reap is waiting: it will see these completions (and settle them).
      this.flushSubmissions();
      return;
    }
    for (;;) {
      let n: number;
      try {
        n = this.nativeReap(this.iring, true);
      } catch (e) {
        this.noteUserError(e as Error);
        return;
      }
      if (n === 0) return;
      this.settleInternal(this.iring, n, true);
      if (this.opsOut === 0 && this.pending === 0) return;
    }
  }

  /** A user descriptor failed inside an internal flush: reported by the next user call. */
  private noteUserError(e: Error): void {
    if (this.userError === undefined) this.userError = e;
  }

  private throwUserError(): void {
    const e = this.userError;
    if (e) {
      this.userError = undefined;
      throw e;
    }
  }

  /**
   * A submission failed: drop the offending descriptor (or all, when the error has no index),
   * reject promise-API commands among them, and throw for user ones when `throwUser`.
   */
  private dropFailed(err: Error, n: number, throwUser: boolean): void {
    const index = (err as { index?: number }).index;
    const d = this.desc;
    const dropped: number[] = [];
    if (typeof index === 'number') {
      dropped.push(d[index * 8 + 1]);
      d.copyWithin(index * 8, (index + 1) * 8, n * 8);
      this.pending = n - 1;
    } else {
      for (let i = 0; i < n; i++) dropped.push(d[i * 8 + 1]);
      this.pending = 0;
    }
    const user: number[] = [];
    for (const tag of dropped) {
      if (tag < 0) this.settleError(-tag - 1, err);
      else user.push(tag);
    }
    if (user.length > 0 && throwUser) {
      if (typeof index === 'number') (err as { tag?: number }).tag = user[0];
      else (err as { tags?: number[] }).tags = user;
      throw err;
    }
  }

  private settleError(i: number, err: Error): void {
    const op = this.ops[i];
    if (!op) return;
    this.ops[i] = undefined;
    this.freeOps.push(i);
    this.opsOut--;
    op.reject(err);
    if (op.scratch && !op.scratch.freed) op.scratch.free();
    const next = this.waitq.shift();
    if (next) next();
  }

  private dropPending(err: Error): void {
    const d = this.desc;
    for (let i = 0; i < this.pending; i++) {
      const tag = d[i * 8 + 1];
      if (tag < 0) this.settleError(-tag - 1, err);
    }
    this.pending = 0;
  }

  /** Takes every completion native code holds: settles promise-API commands, stashes the rest. */
  private drain(): void {
    for (;;) {
      this.nativeCalls++;
      const n = this.q.reap(this.iring, 0, false);
      if (n === 0) break;
      this.inFlight -= n;
      this.settleInternal(this.iring, n, true);
    }
    if (this.waiter && this.stashCount > 0) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve(this.takeStash(w.ring));
    }
  }

  private async doFree(): Promise<void> {
    const freed = new SpdkError('the qpair is freed', { errno: ENOTCONN, op: 'nvme.free' });
    this.dropPending(freed);
    for (const start of this.waitq.splice(0)) start();
    try {
      await this.q.disconnect();
    } finally {
      this.armed = undefined;
      this.drain();
      if (this.waiter) {
        const w = this.waiter;
        this.waiter = undefined;
        w.resolve(0);
      }
      this.host.onFreed(this);
    }
  }
}

function opName(info: NvmeCommandInfo): string {
  return `nvme.${info.command.toLowerCase().replace(/ (\w)/g, (_, c: string) => c.toUpperCase())}`;
}
