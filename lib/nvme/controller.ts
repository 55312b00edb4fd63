import { EventEmitter } from 'node:events';
import { SpdkError } from '../errors';
import type { SpdkBuffer } from '../buffer';
import type { NvmeAddon, NativeNvmeAsyncEvent, NativeNvmeController, NativeNvmeControllerInfo } from '../engine/native';
import { ControllerData, decodeControllerData, decodeNamespaceData } from './identify';
import { NvmeNamespace } from './namespace';
import { NvmeQpair, QpairOptions } from './qpair';
import { NvmeCommandInfo, NvmeError, opcodeName, statusError, statusName } from './status';
import type { ResolvedTransportId } from './trid';

/** CAP, decoded (NVMe base 2.0, 3.1.4.1). */
export interface ControllerCap {
  /** Maximum queue entries supported, 0's based. */
  mqes: number;
  /** Contiguous queues required. */
  cqr: boolean;
  /** Worst-case time to become ready, in 500 ms units. */
  to: number;
  dstrd: number;
  /** Command sets supported (bit 0 NVM). */
  css: number;
  /** Minimum memory page size: 2^(12 + mpsmin). */
  mpsmin: number;
  mpsmax: number;
}

/** What reset() and the connection told us about the controller. */
interface Snapshot {
  cntlid: number;
  data: ControllerData;
  cap: ControllerCap;
  vs: { major: number; minor: number; tertiary: number };
  ioQueues: number;
  maxTransferSize: number;
  inCapsuleDataSize: number;
  maxQueueEntries: number;
  namespaces: Map<number, NvmeNamespace>;
}

/** @internal What a controller needs from its Spdk. */
export interface ControllerHost {
  addon: NvmeAddon;
  allocBuffer(length: number): SpdkBuffer;
  reactors: number;
  onDetached(c: NvmeController): void;
}

/** Admin commands of a controller. Each rejects with an NvmeError carrying the status. */
export class NvmeAdmin {
  /** @internal */
  constructor(private readonly ctrlr: NvmeController) {}

  /**
   * Identify (opcode 06h): the 4096-byte structure for `cns` (0 namespace, 1 controller,
   * 2 active namespace list, 3 namespace identification descriptors, ...).
   */
  async identify(cns: number, opts: { nsid?: number; cntid?: number } = {}): Promise<Buffer> {
    checkU(cns, 0xff, 'cns');
    const s = sqe(0x06, opts.nsid ?? 0);
    s.setUint32(40, (cns & 0xff) | ((opts.cntid ?? 0) << 16), true);
    const r = await this.ctrlr.adminRaw(s, 4096, undefined, `CNS 0x${cns.toString(16)}`);
    return r.data as Buffer;
  }

  /**
   * Get Log Page (opcode 02h): `length` bytes (a multiple of 4, at most 1 MiB) of log `lid`
   * from byte `offset`.
   */
  async getLogPage(lid: number, length: number, opts: { nsid?: number; offset?: number; lsp?: number; rae?: boolean } = {}): Promise<Buffer> {
    checkU(lid, 0xff, 'lid');
    if (!Number.isInteger(length) || length < 4 || length % 4 !== 0 || length > 1 << 20) {
      throw SpdkError.invalidArg('nvme.getLogPage', 'length must be a multiple of 4 between 4 and 1 MiB');
    }
    const offset = opts.offset ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset % 4 !== 0) throw SpdkError.invalidArg('nvme.getLogPage', 'offset must be a non-negative multiple of 4');
    const numd = length / 4 - 1;
    const s = sqe(0x02, opts.nsid ?? 0xffffffff);
    s.setUint32(40, (lid & 0xff) | ((opts.lsp ?? 0) << 8) | (opts.rae ? 1 << 15 : 0) | ((numd & 0xffff) << 16), true);
    s.setUint32(44, numd >>> 16, true);
    s.setUint32(48, offset % 4294967296, true);
    s.setUint32(52, Math.floor(offset / 4294967296), true);
    const r = await this.ctrlr.adminRaw(s, length, undefined, `LID 0x${lid.toString(16)}`);
    return r.data as Buffer;
  }

  /** Get Features (opcode 0Ah): resolves with DW0 of the completion. `sel`: 0 current, 1 default, 2 saved, 3 capabilities. */
  async getFeatures(fid: number, opts: { sel?: number; cdw11?: number; nsid?: number } = {}): Promise<number> {
    checkU(fid, 0xff, 'fid');
    const s = sqe(0x0a, opts.nsid ?? 0);
    s.setUint32(40, (fid & 0xff) | (((opts.sel ?? 0) & 7) << 8), true);
    s.setUint32(44, (opts.cdw11 ?? 0) >>> 0, true);
    const r = await this.ctrlr.adminRaw(s, 0, undefined, `FID 0x${fid.toString(16)}`);
    return r.dw0;
  }

  /** Set Features (opcode 09h): resolves with DW0 of the completion. */
  async setFeatures(fid: number, cdw11: number, opts: { save?: boolean; nsid?: number; cdw12?: number } = {}): Promise<number> {
    checkU(fid, 0xff, 'fid');
    const s = sqe(0x09, opts.nsid ?? 0);
    s.setUint32(40, (fid & 0xff) | (opts.save ? 1 << 31 : 0), true);
    s.setUint32(44, cdw11 >>> 0, true);
    s.setUint32(48, (opts.cdw12 ?? 0) >>> 0, true);
    const r = await this.ctrlr.adminRaw(s, 0, undefined, `FID 0x${fid.toString(16)}`);
    return r.dw0;
  }

  /** Keep Alive (opcode 18h); the controller also sends one every KATO/2 by itself. */
  async keepAlive(): Promise<void> {
    await this.ctrlr.adminRaw(sqe(0x18, 0), 0);
  }

  /**
   * Any admin command: `sqe` is the 64-byte submission entry (CID, PSDT and the data pointer are
   * filled in); `dataIn` bytes come back, or `dataOut` is sent.
   */
  async raw(cmd: Uint8Array, opts: { dataIn?: number; dataOut?: Uint8Array } = {}): Promise<{ dw0: number; dw1: number; data?: Buffer }> {
    if (!(cmd instanceof Uint8Array) || cmd.length !== 64) throw SpdkError.invalidArg('nvme.admin', 'sqe must be a 64-byte Uint8Array');
    const s = new DataView(Uint8Array.from(cmd).buffer);
    return this.ctrlr.adminRaw(s, opts.dataOut ? opts.dataOut.length : opts.dataIn ?? 0, opts.dataOut);
  }
}

function sqe(opc: number, nsid: number): DataView {
  const s = new DataView(new ArrayBuffer(64));
  s.setUint8(0, opc);
  s.setUint32(4, nsid >>> 0, true);
  return s;
}

function checkU(v: number, max: number, what: string): void {
  if (!Number.isInteger(v) || v < 0 || v > max) throw SpdkError.invalidArg('nvme.admin', `${what} must be an integer 0..${max}`);
}

/** An Asynchronous Event the controller reported (NVMe base 2.0, 5.2). */
export interface NvmeAsyncEvent {
  /** Asynchronous Event Type: 0 error, 1 SMART / health status, 2 notice, 6 I/O command set specific, 7 vendor specific. */
  type: number;
  /** 'error' | 'health' | 'notice' | 'io-command-set' | 'vendor' | 'reserved' */
  typeName: string;
  /** Asynchronous Event Information (for a notice: 0 namespace attribute changed, ...). */
  info: number;
  /** The log page the event points at (read by the host, which re-arms the event). */
  logPage: number;
  /** Namespace attribute notices: the Changed Namespace List (0xFFFFFFFF first: more than 1024 changed). */
  nsids: number[];
  /** The host could not re-read the namespaces after a namespace notice (the old data stays). */
  error?: string;
}

const EVENT_TYPES: Record<number, string> = { 0: 'error', 1: 'health', 2: 'notice', 6: 'io-command-set', 7: 'vendor' };

/**
 * A connected NVMe controller (NVMe/TCP on the builtin engine): its admin queue, identity,
 * namespaces and I/O queue pairs. From `spdk.nvme.connect()`.
 *
 * @example
 * const ctrlr = await spdk.nvme.connect('trtype:TCP traddr:127.0.0.1 trsvcid:4420 subnqn:nqn.2016-06.io.spdk:cnode1');
 * console.log(ctrlr.data.mn, ctrlr.data.sn);
 * const ns = ctrlr.namespace(1);
 * const qp = await ctrlr.allocQpair({ depth: 32 });
 * await qp.read(ns, buf, 0, 8);
 * await ctrlr.detach();
 *
 * Events: `'asyncEvent'` (NvmeAsyncEvent) for every Asynchronous Event the controller reports;
 * `'namespacesChanged'` (changed NSIDs) after a namespace attribute notice, once the namespaces
 * were read again: `namespace(n)` then returns the new data (size after a resize, a namespace
 * added or removed). NvmeNamespace objects taken before keep the old values.
 */
export class NvmeController extends EventEmitter {
  /** The transport ID it was connected with. */
  readonly trid: ResolvedTransportId;
  readonly hostnqn: string;
  /** Admin commands. */
  readonly admin: NvmeAdmin;
  private snap: Snapshot;
  private readonly n: NativeNvmeController;
  private readonly host: ControllerHost;
  private readonly qpairs = new Set<NvmeQpair>();
  private readonly qids = new Set<number>();
  private lastQid = 0;
  private readonly ioTimeoutMs: number;
  private detaching: Promise<void> | undefined;

  /** @internal */
  constructor(n: NativeNvmeController, info: NativeNvmeControllerInfo, trid: ResolvedTransportId, hostnqn: string, host: ControllerHost, ioTimeoutMs: number) {
    super();
    this.n = n;
    this.trid = trid;
    this.hostnqn = hostnqn;
    this.host = host;
    this.ioTimeoutMs = ioTimeoutMs;
    this.admin = new NvmeAdmin(this);
    this.snap = snapshot(info);
  }

  /** Identify Controller, decoded (vid, sn, mn, fr, mdts, cntlid, subnqn, ...). */
  get data(): ControllerData {
    return this.snap.data;
  }

  /** The controller ID the target assigned (changes on reset). */
  get cntlid(): number {
    return this.snap.cntlid;
  }

  get cap(): ControllerCap {
    return this.snap.cap;
  }

  /** The VS register. */
  get version(): { major: number; minor: number; tertiary: number } {
    return this.snap.vs;
  }

  /** I/O queues the controller granted (Set Features Number of Queues). */
  get ioQueues(): number {
    return this.snap.ioQueues;
  }

  /** Largest transfer per command in bytes (MDTS; 0 = no limit). */
  get maxTransferSize(): number {
    return this.snap.maxTransferSize;
  }

  /** Write data sent inside the command capsule up to this size; larger writes go by R2T. */
  get inCapsuleDataSize(): number {
    return this.snap.inCapsuleDataSize;
  }

  /** True once the admin connection is gone (the target went away, keep-alive failed, ...); reset() reconnects. */
  get failed(): boolean {
    return this.n.state().failed;
  }

  /** Why it failed, if it did. */
  get failure(): string | undefined {
    return this.n.state().failure;
  }

  /** The active namespace IDs. */
  get namespaceIds(): number[] {
    return [...this.snap.namespaces.keys()];
  }

  /** Every active namespace. */
  namespaces(): NvmeNamespace[] {
    return [...this.snap.namespaces.values()];
  }

  /** An active namespace; throws ENODEV for an NSID that is not active. */
  namespace(nsid: number): NvmeNamespace {
    const ns = this.snap.namespaces.get(nsid);
    if (!ns) {
      throw new SpdkError(`namespace ${nsid} is not active on ${this.trid.subnqn} (active: ${this.namespaceIds.join(', ') || 'none'})`, { errno: 19, op: 'nvme.namespace' });
    }
    return ns;
  }

  /** The queue pairs allocated and not freed. */
  get ioQpairs(): NvmeQpair[] {
    return [...this.qpairs];
  }

  /**
   * Connects an I/O queue pair (a new TCP connection with Fabrics Connect for the next free
   * queue ID). See QpairOptions for the owners.
   */
  async allocQpair(opts: QpairOptions = {}): Promise<NvmeQpair> {
    const op = 'nvme.allocQpair';
    this.assertUsable(op);
    const depth = opts.depth ?? 128;
    if (!Number.isInteger(depth) || depth < 1 || depth > 65535) throw SpdkError.invalidArg(op, 'depth must be 1..65535');
    const owner = opts.owner ?? 'js';
    if (owner !== 'js' && owner !== 'reactor') throw SpdkError.invalidArg(op, "owner must be 'js' or 'reactor'");
    let reactor = -1;
    if (owner === 'reactor') {
      reactor = opts.reactor ?? 0;
      if (!Number.isInteger(reactor) || reactor < 0 || reactor >= this.host.reactors) throw SpdkError.invalidArg(op, `reactor must be 0..${this.host.reactors - 1}`);
    } else if (opts.reactor !== undefined) {
      throw SpdkError.invalidArg(op, "reactor is only for owner 'reactor'");
    }
    const timeoutMs = opts.timeoutMs ?? this.ioTimeoutMs;
    if (!Number.isInteger(timeoutMs) || timeoutMs < 0 || timeoutMs > 3600000) throw SpdkError.invalidArg(op, 'timeoutMs must be 0..3600000');
    // One slot of a queue always stays empty: depth commands need depth + 1 entries, up to CAP.MQES + 1.
    const queueSize = Math.max(2, Math.min(depth + 1, this.snap.maxQueueEntries));
    for (let attempt = 0; ; attempt++) {
      const qid = this.takeQid(op);
      try {
        return await this.connectQpair(qid, depth, queueSize, reactor, owner, opts.spin ?? true, timeoutMs, op);
      } catch (e) {
        // A queue ID freed a moment ago may still be in use on the target (it has not seen the
        // old connection close yet): it refuses Connect with invalid parameters, field QID.
        // Queue IDs are handed out round robin, so the next attempt gets another one.
        if (!isQidConflict(e) || attempt >= 3) throw e;
        await new Promise((r) => setTimeout(r, 10 * (attempt + 1)));
      }
    }
  }

  /** The next free queue ID after the last one handed out (round robin over 1..granted). */
  private takeQid(op: string): number {
    const maxQid = this.snap.ioQueues > 0 ? this.snap.ioQueues : 65534;
    for (let i = 0; i < maxQid; i++) {
      const qid = ((this.lastQid + i) % maxQid) + 1;
      if (!this.qids.has(qid)) {
        this.lastQid = qid;
        this.qids.add(qid);
        return qid;
      }
    }
    throw new SpdkError(`no free I/O queue: the controller granted ${this.snap.ioQueues}, all in use`, { errno: 16, op });
  }

  private async connectQpair(qid: number, depth: number, queueSize: number, reactor: number, owner: 'js' | 'reactor', spin: boolean, timeoutMs: number, op: string): Promise<NvmeQpair> {
    let qp: NvmeQpair | undefined;
    let nq;
    try {
      nq = new this.host.addon.NvmeQpair(this.n, { qid, depth, queueSize, reactor, spin, timeoutMs }, (k: number) => qp?.onReady(k));
    } catch (e) {
      this.qids.delete(qid);
      throw e;
    }
    qp = new NvmeQpair(nq, this.host.addon.nvmeConstants, qid, depth, owner, {
      allocBuffer: (n) => this.host.allocBuffer(n),
      onFreed: (q) => {
        this.qpairs.delete(q);
        this.qids.delete(q.id);
      },
    });
    this.qpairs.add(qp);
    try {
      await nq.connect();
    } catch (e) {
      await qp.free().catch(() => undefined);
      throw connectError(e as Error, op, `cannot connect I/O qpair ${qid} to ${this.trid.traddr}:${this.trid.trsvcid} (${this.trid.subnqn})`);
    }
    return qp;
  }

  /**
   * Reconnects: a new admin connection and controller (new CNTLID), initialised again; every
   * queue pair is connected again to it (commands in flight complete with ABORTED - SQ
   * DELETION, or their transport error if the connection was already lost).
   */
  async reset(): Promise<void> {
    this.assertAttached('nvme.reset');
    let info: NativeNvmeControllerInfo;
    try {
      info = await this.n.reset();
    } catch (e) {
      throw connectError(e as Error, 'nvme.reset', `cannot reconnect to ${this.trid.traddr}:${this.trid.trsvcid} (${this.trid.subnqn})`);
    }
    this.snap = snapshot(info);
    const failures: Error[] = [];
    for (const qp of [...this.qpairs]) {
      try {
        await qp.reconnect();
      } catch (e) {
        failures.push(connectError(e as Error, 'nvme.reset', `cannot reconnect I/O qpair ${qp.id}`));
      }
    }
    if (failures.length > 0) {
      const e = failures[0] as SpdkError;
      throw new SpdkError(`controller reset, but ${failures.length} queue pair(s) did not reconnect: ${e.message}`, { errno: e.errno || 5, op: 'nvme.reset' });
    }
  }

  /** @internal An event from the native controller (its namespaces already re-read). */
  onAsyncEvent(e: NativeNvmeAsyncEvent): void {
    if (this.detaching) return;
    this.snap = snapshot(e.controller);
    const ev: NvmeAsyncEvent = { type: e.type, typeName: EVENT_TYPES[e.type] ?? 'reserved', info: e.info, logPage: e.logPage, nsids: e.nsids };
    if (e.error !== undefined) ev.error = e.error;
    this.emit('asyncEvent', ev);
    if (e.type === 2 && e.info === 0 && e.error === undefined) this.emit('namespacesChanged', e.nsids);
  }

  /** Frees every queue pair, shuts the controller down (CC.SHN) and disconnects. Safe to call twice. */
  detach(): Promise<void> {
    if (!this.detaching) this.detaching = this.doDetach();
    return this.detaching;
  }

  private async doDetach(): Promise<void> {
    await Promise.all([...this.qpairs].map((q) => q.free().catch(() => undefined)));
    try {
      await this.n.detach();
    } finally {
      this.host.onDetached(this);
    }
  }

  /** Transport counters of the admin queue. */
  stats(): ReturnType<NativeNvmeController['stats']> {
    return this.n.stats();
  }

  /** @internal */
  async adminRaw(s: DataView, len: number, out?: Uint8Array, context?: string): Promise<{ dw0: number; dw1: number; data?: Buffer }> {
    const opcode = s.getUint8(0);
    const info: NvmeCommandInfo = { queue: 'admin', opcode, command: opcodeName(opcode, true), qid: 0 };
    const op = `nvme.${info.command.toLowerCase().replace(/ (\w)/g, (_, c: string) => c.toUpperCase())}`;
    this.assertUsable(op);
    const r = await this.n.admin(new Uint8Array(s.buffer, s.byteOffset, 64), len, out ?? null);
    if (r.status > 0) throw new NvmeError(r.status, info, op, context);
    if (r.status < 0) throw statusError(r.status, info, op, r.error);
    return { dw0: r.dw0, dw1: r.dw1, data: r.data };
  }

  private assertAttached(op: string): void {
    if (this.detaching) throw new SpdkError('the controller is detached', { errno: 107, op });
  }

  private assertUsable(op: string): void {
    this.assertAttached(op);
    const st = this.n.state();
    if (!st.ready) throw new SpdkError(`the controller is not usable (${st.failure ?? 'not ready'}); reset() reconnects it`, { errno: 107, op });
  }
}

/** Connect refused with invalid parameters in the command at the QID's offset (42). */
function isQidConflict(e: unknown): boolean {
  const status = (e as { status?: number }).status;
  const cause = (e as { cause?: { status?: number } }).cause;
  const st = typeof status === 'number' ? status : cause?.status;
  if (typeof st !== 'number' || ((st >> 8) & 7) !== 1 || (st & 0xff) !== 0x82) return false;
  return /: qid \(SCT/.test((e as Error).message);
}

function snapshot(info: NativeNvmeControllerInfo): Snapshot {
  const cap = { lo: info.capLo, hi: info.capHi };
  const namespaces = new Map<number, NvmeNamespace>();
  for (const n of info.namespaces) namespaces.set(n.nsid, new NvmeNamespace(decodeNamespaceData(n.nsid, n.identify, n.descriptors)));
  return {
    cntlid: info.cntlid,
    data: decodeControllerData(info.identify),
    cap: {
      mqes: cap.lo & 0xffff,
      cqr: ((cap.lo >>> 16) & 1) === 1,
      to: (cap.lo >>> 24) & 0xff,
      dstrd: cap.hi & 0xf,
      css: (cap.hi >>> 5) & 0xff,
      mpsmin: (cap.hi >>> 16) & 0xf,
      mpsmax: (cap.hi >>> 20) & 0xf,
    },
    vs: { major: info.vs >>> 16, minor: (info.vs >>> 8) & 0xff, tertiary: info.vs & 0xff },
    ioQueues: info.ioQueues,
    maxTransferSize: info.maxXfer,
    inCapsuleDataSize: info.inCapsuleDataSize,
    maxQueueEntries: info.maxQueueEntries,
    namespaces,
  };
}

/**
 * A refused Connect as an error that says what the target objected to: the NVMe status (an
 * NvmeError carries it as `cause`) and, for invalid parameters, which field.
 */
export function connectError(e: Error, op: string, what: string): Error {
  const status = (e as { status?: number }).status;
  if (typeof status !== 'number' || status <= 0) return e;
  const dw0 = (e as { dw0?: number }).dw0 ?? 0;
  const sct = (status >> 8) & 7;
  const sc = status & 0xff;
  let detail = statusName(status, true);
  if (sct === 1 && sc === 0x82) {
    // IATTR (bit 16): 1 = the parameter is in the Connect data; IPO (bits 15:0): its byte offset.
    const inData = ((dw0 >>> 16) & 1) === 1;
    const ipo = dw0 & 0xffff;
    const field = inData ? ({ 0: 'hostid', 16: 'cntlid', 256: 'subnqn', 512: 'hostnqn' } as Record<number, string>)[ipo] : ({ 42: 'qid', 44: 'sqsize', 46: 'cattr', 48: 'kato' } as Record<number, string>)[ipo];
    if (field === 'subnqn') detail += ': no such subsystem at this address (subnqn)';
    else if (field) detail += `: ${field}`;
  } else if (sct === 1 && sc === 0x84) {
    detail += ': this host NQN is not allowed to connect to the subsystem';
  }
  const err = new SpdkError(`${what}: Connect refused: ${detail} (SCT 0x${sct.toString(16)}, SC 0x${sc.toString(16).padStart(2, '0')})`, {
    errno: sct === 1 && sc === 0x84 ? 13 : sct === 1 && sc === 0x82 ? 22 : 111,
    op,
  });
  (err as { status?: number }).status = status;
  (err as { cause?: unknown }).cause = new NvmeError(status, { queue: 'admin', opcode: 0x7f, command: 'CONNECT' }, op);
  return err;
}
