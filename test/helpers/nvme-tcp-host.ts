import * as crypto from 'node:crypto';
import * as net from 'node:net';
import { Completion, NvmeTcpQueue, QueueOptions, SubmitOptions } from './nvme-tcp-queue';
import {
  AdminOpc,
  Cap,
  CC,
  Cns,
  CSTS,
  Cqe,
  decodeCap,
  decodeChangedNsList,
  decodeDiscoveryLog,
  decodeErrorLog,
  decodeIdentifyController,
  decodeIdentifyNamespace,
  decodeNsIdDescriptors,
  decodeNsList,
  decodeSmartLog,
  DiscoveryLog,
  DISCOVERY_LOG_ENTRY,
  DISCOVERY_LOG_HEADER,
  DISCOVERY_NQN,
  dsmRange,
  ERROR_LOG_ENTRY,
  ErrorLogEntry,
  FabricsType,
  FeatureId,
  IdentifyController,
  IdentifyNamespace,
  IoOpc,
  LogId,
  NsIdDescriptor,
  NvmeStatusError,
  Property,
  SmartLog,
  sqe,
} from './nvme-tcp-spec';

export * from './nvme-tcp-pdu';
export * from './nvme-tcp-spec';
export * from './nvme-tcp-queue';

/**
 * A small NVMe/TCP host for protocol tests, written from the NVMe over Fabrics and NVMe/TCP
 * specifications (test/helpers/nvme-tcp-pdu.ts: PDUs and digests; nvme-tcp-spec.ts: NVMe
 * structures; nvme-tcp-queue.ts: one connection). A controller is an admin queue plus I/O queues,
 * each its own TCP connection, associated by the controller ID the admin Connect returned.
 *
 * ```ts
 * const ctrl = await NvmeTcpController.connect({ port, subnqn, ioQueues: 2 });
 * await ctrl.write(1, 0n, data, { blockSize: 512 });
 * const back = await ctrl.read(1, 0n, 8, { blockSize: 512 });
 * await ctrl.close();
 * ```
 */

export interface ConnectParams {
  subnqn: string;
  hostnqn: string;
  hostid: Buffer;
  qid: number;
  /** 0's based submission queue size. */
  sqsize: number;
  /** Controller ID: 0xFFFF asks for a dynamic controller on the admin queue; I/O queues name the admin's. */
  cntlid: number;
  /** Keep alive timeout in ms (admin queue). */
  kato?: number;
  /** Connect attributes: bit 2 disables SQ flow control. */
  cattr?: number;
  recfmt?: number;
}

export const CATTR_DISABLE_SQ_FLOW_CONTROL = 1 << 2;

/** Builds a Fabrics Connect command and its 1024-byte data. */
export function connectCommand(p: ConnectParams): { sqe: Buffer; data: Buffer } {
  const s = sqe({ opc: AdminOpc.Fabrics, fctype: FabricsType.Connect });
  s.writeUInt16LE(p.recfmt ?? 0, 40);
  s.writeUInt16LE(p.qid, 42);
  s.writeUInt16LE(p.sqsize, 44);
  s[46] = p.cattr ?? 0;
  s.writeUInt32LE(p.kato ?? 0, 48);
  const d = Buffer.alloc(1024);
  p.hostid.copy(d, 0, 0, 16);
  d.writeUInt16LE(p.cntlid, 16);
  d.write(p.subnqn, 256, 255, 'utf8');
  d.write(p.hostnqn, 512, 255, 'utf8');
  return { sqe: s, data: d };
}

/** A host NQN in the UUID form the specification suggests. */
export function uuidHostNqn(uuid = crypto.randomUUID()): { hostnqn: string; hostid: Buffer } {
  return { hostnqn: `nqn.2014-08.org.nvmexpress:uuid:${uuid}`, hostid: Buffer.from(uuid.replace(/-/g, ''), 'hex') };
}

/** A TCP port no one listens on now (bind 127.0.0.1:0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface ControllerOptions extends Omit<QueueOptions, 'skipIc'> {
  subnqn: string;
  hostnqn?: string;
  hostid?: Buffer;
  /** Keep alive timeout (ms) given at the admin Connect; 0 disables keep alive. */
  kato?: number;
  /** Admin queue entries (Connect SQSIZE is this minus one). Default 32. */
  adminQueueSize?: number;
  /** Entries of each I/O queue. Default 32. */
  ioQueueSize?: number;
  /** I/O queues to connect (after enabling). Default 1. Discovery controllers have none. */
  ioQueues?: number;
  /** Set CATTR "disable SQ flow control" on every Connect. */
  disableSqFlowControl?: boolean;
  /** Enable the controller (CC.EN=1, wait CSTS.RDY) and identify it. Default true. */
  enable?: boolean;
}

export class NvmeTcpController {
  readonly admin: NvmeTcpQueue;
  readonly io: NvmeTcpQueue[] = [];
  readonly cntlid: number;
  readonly hostnqn: string;
  readonly hostid: Buffer;
  /** The admin Connect's completion. */
  readonly connectCqe: Cqe;
  cap?: Cap;
  vs?: number;
  identity?: IdentifyController;
  /** Block size per namespace, learnt from Identify Namespace. */
  readonly blockSizes = new Map<number, number>();
  private readonly opts: ControllerOptions;

  private constructor(opts: ControllerOptions, admin: NvmeTcpQueue, cntlid: number, cqe: Cqe, hostnqn: string, hostid: Buffer) {
    this.opts = opts;
    this.admin = admin;
    this.cntlid = cntlid;
    this.connectCqe = cqe;
    this.hostnqn = hostnqn;
    this.hostid = hostid;
  }

  /** Connects the admin queue, enables and identifies the controller, and connects I/O queues. */
  static async connect(opts: ControllerOptions): Promise<NvmeTcpController> {
    const id = opts.hostnqn ? { hostnqn: opts.hostnqn, hostid: opts.hostid ?? crypto.randomBytes(16) } : uuidHostNqn();
    const hostid = opts.hostid ?? id.hostid;
    const admin = await NvmeTcpQueue.connect(opts);
    let ctrl: NvmeTcpController | undefined;
    try {
      const c = await fabricsConnect(admin, {
        subnqn: opts.subnqn,
        hostnqn: id.hostnqn,
        hostid,
        qid: 0,
        sqsize: (opts.adminQueueSize ?? 32) - 1,
        cntlid: 0xffff,
        kato: opts.kato ?? 0,
        cattr: opts.disableSqFlowControl ? CATTR_DISABLE_SQ_FLOW_CONTROL : 0,
      });
      if (c.cqe.status !== 0) throw new NvmeStatusError('admin Connect', c.cqe);
      ctrl = new NvmeTcpController(opts, admin, c.cqe.dw0 & 0xffff, c.cqe, id.hostnqn, hostid);
      if (opts.enable ?? true) {
        await ctrl.enable();
        ctrl.identity = await ctrl.identifyController();
        for (let i = 0; i < (opts.ioQueues ?? 1); i++) await ctrl.connectIoQueue();
      }
      return ctrl;
    } catch (e) {
      if (ctrl) await ctrl.close();
      else admin.destroy();
      throw e;
    }
  }

  /** Connects one more I/O queue (qid = number of I/O queues + 1) to this controller. */
  async connectIoQueue(over: Partial<QueueOptions> & { sqsize?: number; qid?: number } = {}): Promise<NvmeTcpQueue> {
    const q = await NvmeTcpQueue.connect({ ...this.opts, ...over });
    try {
      const qid = over.qid ?? this.io.length + 1;
      const c = await fabricsConnect(q, {
        subnqn: this.opts.subnqn,
        hostnqn: this.hostnqn,
        hostid: this.hostid,
        qid,
        sqsize: over.sqsize ?? (this.opts.ioQueueSize ?? 32) - 1,
        cntlid: this.cntlid,
        cattr: this.opts.disableSqFlowControl ? CATTR_DISABLE_SQ_FLOW_CONTROL : 0,
      });
      if (c.cqe.status !== 0) throw new NvmeStatusError(`I/O queue ${qid} Connect`, c.cqe);
      if (this.identity) {
        if (this.identity.icdoff !== 0) throw new Error(`ICDOFF ${this.identity.icdoff}: this host sends in-capsule data at offset 0 only`);
        q.inCapsuleMax = Math.max(0, this.identity.ioccsz * 16 - 64);
      }
      this.io.push(q);
      return q;
    } catch (e) {
      q.destroy();
      throw e;
    }
  }

  /** Closes every queue (I/O first). Does not shut the controller down: call shutdown() first for that. */
  async close(): Promise<void> {
    await Promise.all(this.io.map((q) => q.close()));
    await this.admin.close();
  }

  // ---- commands -----------------------------------------------------------------------------

  /** Submits on a queue and returns the completion whatever its status. */
  exec(q: NvmeTcpQueue, s: Buffer, o?: SubmitOptions): Promise<Completion> {
    return q.submit(s, o);
  }

  /** Submits and throws NvmeStatusError unless the command succeeded. */
  async run(what: string, q: NvmeTcpQueue, s: Buffer, o?: SubmitOptions): Promise<Completion> {
    const c = await q.submit(s, o);
    if (c.cqe.status !== 0) throw new NvmeStatusError(what, c.cqe);
    return c;
  }

  // ---- fabrics properties ---------------------------------------------------------------------

  async propertyGet(ofst: number, size8 = false): Promise<bigint> {
    const c = await this.run(`Property Get 0x${ofst.toString(16)}`, this.admin, propertyGetCommand(ofst, size8));
    return size8 ? c.cqe.raw.readBigUInt64LE(0) : BigInt(c.cqe.dw0);
  }

  async propertySet(ofst: number, value: bigint | number, size8 = false): Promise<void> {
    await this.run(`Property Set 0x${ofst.toString(16)}`, this.admin, propertySetCommand(ofst, BigInt(value), size8));
  }

  /** CC.EN = 1 (with 64-byte SQEs and 16-byte CQEs), then waits for CSTS.RDY within CAP.TO. */
  async enable(): Promise<void> {
    this.cap = decodeCap(await this.propertyGet(Property.CAP, true));
    this.vs = Number(await this.propertyGet(Property.VS));
    const cc = Number(await this.propertyGet(Property.CC));
    if (cc & CC.EN) throw new Error('CC.EN already set after Connect');
    await this.propertySet(Property.CC, (CC.EN | CC.IOSQES_64 | CC.IOCQES_16) >>> 0);
    await this.waitCsts((v) => (v & CSTS.RDY) !== 0, 'CSTS.RDY = 1');
  }

  /** CC.SHN = normal shutdown, then waits for CSTS.SHST = complete. */
  async shutdown(): Promise<void> {
    const cc = Number(await this.propertyGet(Property.CC));
    await this.propertySet(Property.CC, ((cc & ~CC.SHN_MASK) | CC.SHN_NORMAL) >>> 0);
    await this.waitCsts((v) => (v & CSTS.SHST_MASK) === CSTS.SHST_COMPLETE, 'CSTS.SHST = complete');
  }

  /** CC.EN = 0 (controller reset), then waits for CSTS.RDY = 0. */
  async disable(): Promise<void> {
    const cc = Number(await this.propertyGet(Property.CC));
    await this.propertySet(Property.CC, (cc & ~CC.EN) >>> 0);
    await this.waitCsts((v) => (v & CSTS.RDY) === 0, 'CSTS.RDY = 0');
  }

  private async waitCsts(ok: (csts: number) => boolean, what: string): Promise<number> {
    const timeout = Math.max(1, this.cap?.to ?? 30) * 500;
    const deadline = Date.now() + timeout;
    for (;;) {
      const v = Number(await this.propertyGet(Property.CSTS));
      if (v & CSTS.CFS) throw new Error(`controller fatal status while waiting for ${what}`);
      if (ok(v)) return v;
      if (Date.now() > deadline) throw new Error(`no ${what} within CAP.TO (${timeout} ms); CSTS 0x${v.toString(16)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  // ---- admin ---------------------------------------------------------------------------------

  async identify(cns: number, nsid = 0, cntid = 0): Promise<Buffer> {
    const c = await this.run(`Identify CNS ${cns}`, this.admin, sqe({ opc: AdminOpc.Identify, nsid, cdw10: (cns & 0xff) | (cntid << 16) }), { dataInLength: 4096 });
    return c.data!;
  }

  async identifyController(): Promise<IdentifyController> {
    return decodeIdentifyController(await this.identify(Cns.Controller));
  }

  async identifyNamespace(nsid: number): Promise<IdentifyNamespace> {
    const ns = decodeIdentifyNamespace(await this.identify(Cns.Namespace, nsid));
    if (ns.blockSize) this.blockSizes.set(nsid, ns.blockSize);
    return ns;
  }

  /** Active namespace IDs greater than `after`. */
  async activeNamespaces(after = 0): Promise<number[]> {
    return decodeNsList(await this.identify(Cns.ActiveNsList, after));
  }

  async nsIdDescriptors(nsid: number): Promise<NsIdDescriptor[]> {
    return decodeNsIdDescriptors(await this.identify(Cns.NsIdDescriptors, nsid));
  }

  /** Get Log Page: `length` bytes (a multiple of 4) from byte `offset`. */
  async getLogPage(lid: number, length: number, o: { nsid?: number; lsp?: number; rae?: boolean; offset?: number } = {}): Promise<Buffer> {
    return (await this.run(`Get Log Page 0x${lid.toString(16)}`, this.admin, getLogPageCommand(lid, length, o), { dataInLength: length })).data!;
  }

  /** The whole discovery log: the header first for NUMREC, then header and entries, re-read if GENCTR moved. */
  async discoveryLog(): Promise<DiscoveryLog> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const head = decodeDiscoveryLog(await this.getLogPage(LogId.Discovery, DISCOVERY_LOG_HEADER));
      const len = DISCOVERY_LOG_HEADER + Number(head.numrec) * DISCOVERY_LOG_ENTRY;
      const all = decodeDiscoveryLog(await this.getLogPage(LogId.Discovery, len));
      if (all.genctr === head.genctr) return all;
    }
    throw new Error('discovery log kept changing (GENCTR)');
  }

  async smartLog(nsid = 0xffffffff): Promise<SmartLog> {
    return decodeSmartLog(await this.getLogPage(LogId.Smart, 512, { nsid }));
  }

  async errorLog(entries = 1): Promise<ErrorLogEntry[]> {
    return decodeErrorLog(await this.getLogPage(LogId.Error, entries * ERROR_LOG_ENTRY));
  }

  async changedNsList(): Promise<number[]> {
    return decodeChangedNsList(await this.getLogPage(LogId.ChangedNsList, 4096, { nsid: 0xffffffff }));
  }

  /** Get Features: completion dword 0. `sel` 0 current, 1 default, 2 saved, 3 supported capabilities. */
  async getFeatures(fid: number, o: { sel?: number; cdw11?: number; nsid?: number } = {}): Promise<number> {
    const c = await this.run(`Get Features 0x${fid.toString(16)}`, this.admin, sqe({ opc: AdminOpc.GetFeatures, nsid: o.nsid, cdw10: (fid & 0xff) | ((o.sel ?? 0) << 8), cdw11: o.cdw11 }));
    return c.cqe.dw0;
  }

  /** Set Features: completion dword 0. */
  async setFeatures(fid: number, cdw11: number, o: { save?: boolean; nsid?: number } = {}): Promise<number> {
    const c = await this.run(`Set Features 0x${fid.toString(16)}`, this.admin, sqe({ opc: AdminOpc.SetFeatures, nsid: o.nsid, cdw10: (fid & 0xff) | (o.save ? 0x80000000 : 0), cdw11 }));
    return c.cqe.dw0;
  }

  /** Number of Queues: asks for `count` I/O submission and completion queues; returns what was allocated (1's based). */
  async setNumberOfQueues(nsq: number, ncq = nsq): Promise<{ nsqa: number; ncqa: number }> {
    const dw0 = await this.setFeatures(FeatureId.NumberOfQueues, ((nsq - 1) & 0xffff) | (((ncq - 1) & 0xffff) << 16));
    return { nsqa: (dw0 & 0xffff) + 1, ncqa: (dw0 >>> 16) + 1 };
  }

  async keepAlive(): Promise<void> {
    await this.run('Keep Alive', this.admin, sqe({ opc: AdminOpc.KeepAlive }));
  }

  /** Submits an Asynchronous Event Request; resolves when the controller reports an event. */
  asyncEventRequest(): Promise<Completion> {
    return this.admin.submit(sqe({ opc: AdminOpc.AsyncEventRequest }), { timeoutMs: 24 * 3600 * 1000 });
  }

  // ---- I/O -----------------------------------------------------------------------------------

  queue(i = 0): NvmeTcpQueue {
    const q = this.io[i];
    if (!q) throw new Error(`no I/O queue ${i}`);
    return q;
  }

  private blockSize(nsid: number, o: { blockSize?: number }): number {
    const bs = o.blockSize ?? this.blockSizes.get(nsid);
    if (!bs) throw new Error(`block size of namespace ${nsid} unknown: identify it or pass blockSize`);
    return bs;
  }

  async read(nsid: number, slba: bigint | number, nlb: number, o: IoOptions = {}): Promise<Buffer> {
    const len = nlb * this.blockSize(nsid, o);
    const c = await this.run('Read', o.queue ?? this.queue(), rwCommand(IoOpc.Read, nsid, slba, nlb, o), { dataInLength: len, timeoutMs: o.timeoutMs });
    return c.data!;
  }

  /** Read returning the completion (status not checked). */
  readCmd(nsid: number, slba: bigint | number, nlb: number, o: IoOptions = {}): Promise<Completion> {
    const len = nlb * this.blockSize(nsid, o);
    return this.exec(o.queue ?? this.queue(), rwCommand(IoOpc.Read, nsid, slba, nlb, o), { dataInLength: len, timeoutMs: o.timeoutMs });
  }

  async write(nsid: number, slba: bigint | number, data: Uint8Array, o: IoOptions = {}): Promise<Completion> {
    const c = await this.writeCmd(nsid, slba, data, o);
    if (c.cqe.status !== 0) throw new NvmeStatusError('Write', c.cqe);
    return c;
  }

  /** Write returning the completion (status not checked). */
  writeCmd(nsid: number, slba: bigint | number, data: Uint8Array, o: IoOptions = {}): Promise<Completion> {
    const bs = this.blockSize(nsid, o);
    if (data.length % bs !== 0) throw new Error(`write of ${data.length} bytes is not a multiple of the ${bs}-byte block`);
    const nlb = o.nlb ?? data.length / bs;
    return this.exec(o.queue ?? this.queue(), rwCommand(IoOpc.Write, nsid, slba, nlb, o), { dataOut: data, inCapsule: o.inCapsule, timeoutMs: o.timeoutMs, h2cFaults: o.h2cFaults, capsuleFaults: o.capsuleFaults });
  }

  /** Compare returning the completion: success when the blocks match, Compare Failure (SCT 2, SC 0x85) when not. */
  compareCmd(nsid: number, slba: bigint | number, data: Uint8Array, o: IoOptions = {}): Promise<Completion> {
    const bs = this.blockSize(nsid, o);
    return this.exec(o.queue ?? this.queue(), rwCommand(IoOpc.Compare, nsid, slba, data.length / bs, o), { dataOut: data, inCapsule: o.inCapsule, timeoutMs: o.timeoutMs });
  }

  flushCmd(nsid: number, o: IoOptions = {}): Promise<Completion> {
    return this.exec(o.queue ?? this.queue(), sqe({ opc: IoOpc.Flush, nsid }), { timeoutMs: o.timeoutMs });
  }

  writeZeroesCmd(nsid: number, slba: bigint | number, nlb: number, o: IoOptions & { deallocate?: boolean } = {}): Promise<Completion> {
    const s = rwCommand(IoOpc.WriteZeroes, nsid, slba, nlb, o);
    if (o.deallocate) s.writeUInt32LE((s.readUInt32LE(48) | (1 << 25)) >>> 0, 48);
    return this.exec(o.queue ?? this.queue(), s, { timeoutMs: o.timeoutMs });
  }

  /** Dataset Management with the Deallocate attribute over these ranges. */
  deallocateCmd(nsid: number, ranges: Array<{ slba: bigint | number; nlb: number }>, o: IoOptions = {}): Promise<Completion> {
    const data = Buffer.concat(ranges.map((r) => dsmRange(r.slba, r.nlb)));
    const s = sqe({ opc: IoOpc.DatasetManagement, nsid, cdw10: ranges.length - 1, cdw11: 1 << 2 });
    return this.exec(o.queue ?? this.queue(), s, { dataOut: data, inCapsule: o.inCapsule, timeoutMs: o.timeoutMs });
  }
}

export interface IoOptions {
  queue?: NvmeTcpQueue;
  blockSize?: number;
  /** NLB to put in the command instead of the one the data implies (error tests). */
  nlb?: number;
  inCapsule?: boolean;
  fua?: boolean;
  timeoutMs?: number;
  h2cFaults?: SubmitOptions['h2cFaults'];
  capsuleFaults?: SubmitOptions['capsuleFaults'];
}

/** Read, Write, Compare, Write Zeroes: SLBA in CDW10/11, NLB (0's based) in CDW12. */
export function rwCommand(opc: number, nsid: number, slba: bigint | number, nlb: number, o: { fua?: boolean } = {}): Buffer {
  const lba = BigInt(slba);
  return sqe({
    opc,
    nsid,
    cdw10: Number(lba & 0xffffffffn),
    cdw11: Number((lba >> 32n) & 0xffffffffn),
    cdw12: (((nlb - 1) & 0xffff) | (o.fua ? 1 << 30 : 0)) >>> 0,
  });
}

export function propertyGetCommand(ofst: number, size8: boolean): Buffer {
  const s = sqe({ opc: AdminOpc.Fabrics, fctype: FabricsType.PropertyGet });
  s[40] = size8 ? 1 : 0;
  s.writeUInt32LE(ofst, 44);
  return s;
}

export function propertySetCommand(ofst: number, value: bigint, size8: boolean): Buffer {
  const s = sqe({ opc: AdminOpc.Fabrics, fctype: FabricsType.PropertySet });
  s[40] = size8 ? 1 : 0;
  s.writeUInt32LE(ofst, 44);
  s.writeBigUInt64LE(size8 ? value : value & 0xffffffffn, 48);
  return s;
}

export function getLogPageCommand(lid: number, length: number, o: { nsid?: number; lsp?: number; rae?: boolean; offset?: number } = {}): Buffer {
  if (length % 4 !== 0 || length === 0) throw new Error(`log page length ${length} is not a positive multiple of 4`);
  const numd = length / 4 - 1;
  const off = BigInt(o.offset ?? 0);
  return sqe({
    opc: AdminOpc.GetLogPage,
    nsid: o.nsid ?? 0,
    cdw10: ((lid & 0xff) | ((o.lsp ?? 0) << 8) | (o.rae ? 1 << 15 : 0) | ((numd & 0xffff) << 16)) >>> 0,
    cdw11: (numd >>> 16) & 0xffff,
    cdw12: Number(off & 0xffffffffn),
    cdw13: Number(off >> 32n),
  });
}

/** Fabrics Connect on a queue that has done its IC exchange; on success, sets the queue's qid and depth. */
export async function fabricsConnect(q: NvmeTcpQueue, p: ConnectParams, o: SubmitOptions = {}): Promise<Completion> {
  const { sqe: s, data } = connectCommand(p);
  const c = await q.submit(s, { dataOut: data, inCapsule: true, ...o });
  if (c.cqe.status === 0) {
    q.qid = p.qid;
    q.depth = Math.max(1, p.sqsize);
  }
  return c;
}

/** Connects to the discovery subsystem and reads its log (the admin queue only, no I/O queues). */
export async function discover(o: Omit<ControllerOptions, 'subnqn'>): Promise<{ log: DiscoveryLog; ctrl: NvmeTcpController }> {
  const ctrl = await NvmeTcpController.connect({ ...o, subnqn: DISCOVERY_NQN, ioQueues: 0 });
  try {
    return { log: await ctrl.discoveryLog(), ctrl };
  } catch (e) {
    await ctrl.close();
    throw e;
  }
}
