import * as net from 'node:net';
import {
  buildPdu,
  BuildOptions,
  capsuleCmdHeader,
  decodeICResp,
  decodeTermReq,
  Fes,
  Flag,
  h2cDataHeader,
  h2cTermReqHeader,
  ICResp,
  icReq,
  Pdu,
  PduReader,
  PduType,
  pduTypeName,
  ProtocolError,
  TermReq,
  TERM_REQ_MAX_DATA,
} from './nvme-tcp-pdu';
import { Cqe, decodeCqe, setSgl1, Sgl } from './nvme-tcp-spec';

/**
 * One NVMe/TCP connection (one queue pair) of the test host: the IC exchange, command capsules with
 * in-capsule data or a transport SGL, R2T answered with H2CData, C2HData reassembled, CapsuleResp
 * matched by CID. Everything a target does wrong at the transport level (a bad digest, a C2HData
 * out of order, an R2T outside the command's data, an unknown CID) is a protocol violation: the
 * queue sends an H2CTermReq, records the reason in `violation`, fails every outstanding command and
 * closes. Fabrics and NVMe commands are built on top of it (NvmeTcpController).
 */

export interface QueueOptions {
  host?: string;
  port: number;
  /** Ask for header digests in ICReq. */
  hdgst?: boolean;
  /** Ask for data digests in ICReq. */
  ddgst?: boolean;
  /** Host PDU data alignment (0's based, in dwords) asked of the controller. */
  hpda?: number;
  /** 0's based maximum outstanding R2Ts per command. */
  maxr2t?: number;
  pfv?: number;
  /** Send no ICReq (a test drives the exchange itself with sendRaw). */
  skipIc?: boolean;
  /** Split H2CData into PDUs of at most this many bytes even when MAXH2CDATA allows more. */
  h2cChunk?: number;
  /** Per-command timeout (ms). */
  timeoutMs?: number;
  /** Timeout of the connection and IC exchange (ms). */
  connectTimeoutMs?: number;
}

export interface SubmitOptions {
  /** Data the command carries to the controller. */
  dataOut?: Uint8Array;
  /** Bytes the command reads from the controller. */
  dataInLength?: number;
  /** true: in-capsule; false: transport SGL (R2T); default: in-capsule when it fits. */
  inCapsule?: boolean;
  timeoutMs?: number;
  /** Fault injection on this command's CapsuleCmd. */
  capsuleFaults?: BuildOptions;
  /** Fault injection on this command's H2CData PDUs. */
  h2cFaults?: BuildOptions;
  /** Leave the SQE's SGL1 and PSDT as given. */
  rawSgl?: boolean;
  /** Send the CapsuleCmd in TCP writes of this many bytes, 1 ms apart (segmentation tests). */
  segment?: number;
}

export interface Completion {
  cqe: Cqe;
  /** What C2HData delivered (dataInLength bytes), if the command reads. */
  data?: Buffer;
  /** The command completed through a C2HData PDU with the SUCCESS flag (no CapsuleResp). */
  viaSuccess: boolean;
  inCapsule: boolean;
  c2hPdus: number;
  r2ts: number;
  h2cPdus: number;
  /** C2HData PDUs whose data digest did not match (the command is then failed, see DataDigestError). */
  c2hDigestErrors: number;
}

/** A command's C2HData failed its data digest: the data is not trusted, whatever the CQE says. */
export class DataDigestError extends Error {
  constructor(
    message: string,
    readonly completion: Completion,
  ) {
    super(message);
    this.name = 'DataDigestError';
  }
}

/** The connection ended (closed, terminated, or a protocol violation) with the command outstanding. */
export class QueueClosedError extends Error {
  constructor(
    message: string,
    readonly termReq?: TermReq,
  ) {
    super(message);
    this.name = 'QueueClosedError';
  }
}

interface Pending {
  cid: number;
  opc: number;
  dataOut?: Buffer;
  inCapsule: boolean;
  dataIn?: Buffer;
  received: number;
  lastSeen: boolean;
  solicited: Array<[number, number]>;
  c2hPdus: number;
  r2ts: number;
  h2cPdus: number;
  c2hDigestErrors: number;
  h2cFaults?: BuildOptions;
  resolve: (c: Completion) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export interface QueueStats {
  capsuleCmds: number;
  capsuleResps: number;
  c2hPdus: number;
  c2hSuccess: number;
  r2ts: number;
  h2cPdus: number;
  maxH2cDatal: number;
  maxC2hDatal: number;
}

export class NvmeTcpQueue {
  icresp: ICResp = { pfv: 0, cpda: 0, hdgst: false, ddgst: false, maxh2cdata: 0 };
  /** Queue ID after Fabrics Connect. */
  qid = -1;
  /** Bytes of data a command capsule may carry on this queue (admin: 8 KiB; I/O: from IOCCSZ). */
  inCapsuleMax: number;
  /** Most commands outstanding at once (SQSIZE given at Connect, 0's based: one slot stays empty). */
  depth = Infinity;
  /** The C2HTermReq the controller sent, if any. */
  termReq?: TermReq;
  /** Why this host ended the connection, if it did (a protocol violation by the target). */
  violation?: string;
  readonly stats: QueueStats = { capsuleCmds: 0, capsuleResps: 0, c2hPdus: 0, c2hSuccess: 0, r2ts: 0, h2cPdus: 0, maxH2cDatal: 0, maxC2hDatal: 0 };
  /** Every PDU received, by type name (for assertions on what a target sent). */
  readonly received: Record<string, number> = {};
  /** Called for each PDU before the queue handles it (tests that look at raw PDUs). */
  onPdu?: (p: Pdu) => void;

  private readonly socket: net.Socket;
  private readonly reader: PduReader;
  private digests = { hdgst: false, ddgst: false };
  private readonly pending = new Map<number, Pending>();
  private readonly waiting: Array<() => void> = [];
  private nextCid = 0;
  private icWaiter?: { resolve: (r: ICResp) => void; reject: (e: Error) => void };
  private isClosed = false;
  private readonly closedPromise: Promise<void>;
  private readonly opts: QueueOptions;
  private rawListener?: (chunk: Buffer) => void;

  private constructor(socket: net.Socket, opts: QueueOptions) {
    this.socket = socket;
    this.opts = opts;
    this.inCapsuleMax = 8192;
    this.reader = new PduReader(() => this.digests);
    socket.setNoDelay(true);
    this.closedPromise = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => this.fail(new QueueClosedError(this.closeReason(), this.termReq)));
  }

  /** Opens the TCP connection and, unless skipIc, does the ICReq/ICResp exchange. */
  static async connect(opts: QueueOptions): Promise<NvmeTcpQueue> {
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host: opts.host ?? '127.0.0.1', port: opts.port });
      const t = setTimeout(() => {
        s.destroy();
        reject(new Error(`connect to ${opts.host ?? '127.0.0.1'}:${opts.port} timed out`));
      }, opts.connectTimeoutMs ?? 10000);
      s.once('connect', () => {
        clearTimeout(t);
        s.removeAllListeners('error');
        resolve(s);
      });
      s.once('error', (e) => {
        clearTimeout(t);
        reject(e);
      });
    });
    const q = new NvmeTcpQueue(socket, opts);
    if (!opts.skipIc) {
      try {
        await q.initialize();
      } catch (e) {
        q.destroy();
        throw e;
      }
    }
    return q;
  }

  /** Sends ICReq and waits for ICResp; checks PFV and applies the negotiated digests. */
  async initialize(fields: { hdgst?: boolean; ddgst?: boolean; hpda?: number; maxr2t?: number; pfv?: number; segment?: number } = {}): Promise<ICResp> {
    const f = { hdgst: this.opts.hdgst, ddgst: this.opts.ddgst, hpda: this.opts.hpda, maxr2t: this.opts.maxr2t, pfv: this.opts.pfv, ...fields };
    const resp = new Promise<ICResp>((resolve, reject) => {
      this.icWaiter = { resolve, reject };
    });
    const timer = setTimeout(() => this.icWaiter?.reject(new Error('no ICResp within the connect timeout')), this.opts.connectTimeoutMs ?? 10000);
    try {
      await (fields.segment ? this.writeSegmented([icReq(f)], fields.segment) : this.write([icReq(f)]));
      const r = await resp;
      if (r.pfv !== 0) throw new Error(`ICResp PFV ${r.pfv} (expected 0)`);
      if (r.hdgst && !f.hdgst) throw new Error('ICResp enables header digests the host did not ask for');
      if (r.ddgst && !f.ddgst) throw new Error('ICResp enables data digests the host did not ask for');
      if (r.cpda > 31) throw new Error(`ICResp CPDA ${r.cpda} > 31`);
      if (r.maxh2cdata < 4096 || r.maxh2cdata % 4 !== 0) throw new Error(`ICResp MAXH2CDATA ${r.maxh2cdata} (at least 4096, a multiple of 4)`);
      this.icresp = r;
      this.digests = { hdgst: r.hdgst, ddgst: r.ddgst };
      return r;
    } finally {
      clearTimeout(timer);
      this.icWaiter = undefined;
    }
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Resolves when the socket has closed. */
  whenClosed(): Promise<void> {
    return this.closedPromise;
  }

  get outstanding(): number {
    return this.pending.size;
  }

  /**
   * Runs `fn` with the socket corked: the PDUs of every command it submits synchronously go out
   * in one write (several PDUs in one TCP segment, as far as the segment size allows).
   */
  batch<T>(fn: () => T): T {
    this.socket.cork();
    try {
      return fn();
    } finally {
      process.nextTick(() => this.socket.uncork());
    }
  }

  /** Writes bytes as given (fault injection; the framing is the caller's). */
  sendRaw(bytes: Uint8Array): Promise<void> {
    return this.write([Buffer.from(bytes)]);
  }

  /** Receives the raw byte stream instead of parsing PDUs (tests that send malformed bytes). */
  captureRaw(listener: (chunk: Buffer) => void): void {
    this.rawListener = listener;
  }

  /** Sends an H2CTermReq and closes the connection. */
  async terminate(fes: number, fei = 0, offending: Buffer = Buffer.alloc(0)): Promise<void> {
    if (this.isClosed) return;
    const data = offending.subarray(0, TERM_REQ_MAX_DATA);
    await this.write(buildPdu(h2cTermReqHeader(fes, fei), data, { hdgst: false, ddgst: false, cpda: 0 })).catch(() => undefined);
    this.socket.end();
  }

  /** Closes the connection (FIN) and waits until it is closed. */
  async close(): Promise<void> {
    if (!this.socket.destroyed) this.socket.end();
    const t = setTimeout(() => this.socket.destroy(), 2000);
    await this.closedPromise;
    clearTimeout(t);
  }

  /** Drops the connection at once. */
  destroy(): void {
    this.socket.destroy();
  }

  /**
   * Submits a 64-byte SQE (CID, PSDT and SGL1 filled in here) and resolves with its completion,
   * whatever its status. Rejects when the connection ends or on a protocol violation.
   */
  async submit(sqeIn: Buffer, o: SubmitOptions = {}): Promise<Completion> {
    while (this.pending.size >= this.depth && !this.isClosed) await new Promise<void>((r) => this.waiting.push(r));
    if (this.isClosed) throw new QueueClosedError(this.closeReason(), this.termReq);
    const sqe = Buffer.from(sqeIn);
    const cid = this.allocCid();
    sqe.writeUInt16LE(cid, 2);
    const dataOut = o.dataOut ? Buffer.from(o.dataOut.buffer, o.dataOut.byteOffset, o.dataOut.length) : undefined;
    if (dataOut && o.dataInLength) throw new Error('a command moves data in one direction');
    const inCapsule = dataOut !== undefined && dataOut.length > 0 && (o.inCapsule ?? dataOut.length <= this.inCapsuleMax);
    if (!o.rawSgl) {
      if (inCapsule) setSgl1(sqe, Sgl.dataBlockOffset, 0n, dataOut!.length);
      else setSgl1(sqe, Sgl.transportDataBlock, 0n, dataOut?.length ?? o.dataInLength ?? 0);
    }
    return new Promise<Completion>((resolve, reject) => {
      const p: Pending = {
        cid,
        opc: sqe[0],
        dataOut,
        inCapsule,
        dataIn: o.dataInLength ? Buffer.alloc(o.dataInLength) : undefined,
        received: 0,
        lastSeen: false,
        solicited: [],
        c2hPdus: 0,
        r2ts: 0,
        h2cPdus: 0,
        c2hDigestErrors: 0,
        h2cFaults: o.h2cFaults,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.pending.delete(cid);
          this.wakeOne();
          reject(new Error(`command opc 0x${sqe[0].toString(16)} cid ${cid} on qid ${this.qid}: no completion within ${o.timeoutMs ?? this.opts.timeoutMs ?? 10000} ms`));
        }, o.timeoutMs ?? this.opts.timeoutMs ?? 10000),
      };
      this.pending.set(cid, p);
      this.stats.capsuleCmds++;
      const pdu = buildPdu(capsuleCmdHeader(sqe), inCapsule ? dataOut : undefined, this.digestState(), 0, o.capsuleFaults);
      (o.segment ? this.writeSegmented(pdu, o.segment) : this.write(pdu)).catch((e: Error) => this.complete(p, undefined, e));
    });
  }

  // -------------------------------------------------------------------------------------------

  private digestState(): { hdgst: boolean; ddgst: boolean; cpda: number } {
    return { ...this.digests, cpda: this.icresp.cpda };
  }

  private closeReason(): string {
    if (this.violation) return `host ended the connection: ${this.violation}`;
    if (this.termReq) return `controller terminated the connection: C2HTermReq FES 0x${this.termReq.fes.toString(16)} FEI 0x${this.termReq.fei.toString(16)}`;
    return 'connection closed';
  }

  private allocCid(): number {
    for (;;) {
      const cid = this.nextCid;
      this.nextCid = (this.nextCid + 1) & 0xffff;
      if (!this.pending.has(cid)) return cid;
    }
  }

  private write(bufs: Buffer[]): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.socket.destroyed || this.socket.writableEnded) {
        reject(new QueueClosedError(this.closeReason(), this.termReq));
        return;
      }
      this.socket.cork();
      for (let i = 0; i < bufs.length; i++) {
        if (i === bufs.length - 1) this.socket.write(bufs[i], (err) => (err ? reject(err) : resolve()));
        else this.socket.write(bufs[i]);
      }
      this.socket.uncork();
    });
  }

  /** Writes the bytes in pieces of `segment` bytes, each its own TCP segment (Nagle is off), 1 ms apart. */
  private async writeSegmented(bufs: Buffer[], segment: number): Promise<void> {
    const all = Buffer.concat(bufs);
    for (let off = 0; off < all.length; off += segment) {
      await this.write([all.subarray(off, off + segment)]);
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  private wakeOne(): void {
    const w = this.waiting.shift();
    if (w) w();
  }

  private complete(p: Pending, c: Completion | undefined, err?: Error): void {
    if (this.pending.get(p.cid) !== p) return;
    this.pending.delete(p.cid);
    clearTimeout(p.timer);
    this.wakeOne();
    if (err) p.reject(err);
    else p.resolve(c!);
  }

  private completion(p: Pending, cqe: Cqe, viaSuccess: boolean): Completion {
    return { cqe, data: p.dataIn, viaSuccess, inCapsule: p.inCapsule, c2hPdus: p.c2hPdus, r2ts: p.r2ts, h2cPdus: p.h2cPdus, c2hDigestErrors: p.c2hDigestErrors };
  }

  private fail(e: Error): void {
    this.isClosed = true;
    for (const p of [...this.pending.values()]) this.complete(p, undefined, e);
    if (this.icWaiter) this.icWaiter.reject(e);
    for (const w of this.waiting.splice(0)) w();
  }

  private violate(e: ProtocolError | string, offending?: Pdu): void {
    const pe = typeof e === 'string' ? new ProtocolError(e, Fes.InvalidHeaderField) : e;
    if (this.violation) return;
    this.violation = pe.message;
    const hdr = offending ? offending.header : Buffer.alloc(0);
    void this.terminate(pe.fes, pe.fei, hdr);
    this.fail(new QueueClosedError(this.closeReason()));
    setTimeout(() => this.socket.destroy(), 500).unref();
  }

  private onData(chunk: Buffer): void {
    if (this.rawListener) {
      this.rawListener(chunk);
      return;
    }
    if (this.violation) return;
    this.reader.feed(chunk);
    for (;;) {
      let p: Pdu | undefined;
      try {
        p = this.reader.next();
      } catch (e) {
        this.violate(e as ProtocolError);
        return;
      }
      if (!p) return;
      const name = pduTypeName(p.type);
      this.received[name] = (this.received[name] ?? 0) + 1;
      this.onPdu?.(p);
      try {
        this.handle(p);
      } catch (e) {
        this.violate(e instanceof ProtocolError ? e : new ProtocolError(String((e as Error).message)), p);
        return;
      }
      if (this.violation || this.isClosed) return;
    }
  }

  private handle(p: Pdu): void {
    switch (p.type) {
      case PduType.ICResp: {
        if (!this.icWaiter) throw new ProtocolError('ICResp outside the IC exchange', Fes.PduSequenceError);
        this.icWaiter.resolve(decodeICResp(p.header));
        return;
      }
      case PduType.C2HTermReq: {
        this.termReq = decodeTermReq(p);
        this.fail(new QueueClosedError(this.closeReason(), this.termReq));
        this.socket.destroy();
        return;
      }
      case PduType.CapsuleResp:
        return this.onCapsuleResp(p);
      case PduType.C2HData:
        return this.onC2HData(p);
      case PduType.R2T:
        return this.onR2T(p);
      default:
        throw new ProtocolError(`a controller does not send ${pduTypeName(p.type)}`, Fes.InvalidHeaderField, 0);
    }
  }

  private onCapsuleResp(p: Pdu): void {
    if (this.icWaiter) throw new ProtocolError('CapsuleResp before ICResp', Fes.PduSequenceError);
    const cqe = decodeCqe(p.header.subarray(8, 24));
    this.stats.capsuleResps++;
    const cmd = this.pending.get(cqe.cid);
    if (!cmd) throw new ProtocolError(`CapsuleResp for CID ${cqe.cid}, which is not outstanding`, Fes.InvalidHeaderField, 20);
    if (cmd.dataIn && cqe.status === 0 && cmd.received !== cmd.dataIn.length) {
      throw new ProtocolError(`successful CapsuleResp for CID ${cqe.cid} after ${cmd.received} of ${cmd.dataIn.length} bytes of C2HData`, Fes.PduSequenceError);
    }
    if (cmd.dataOut && !cmd.inCapsule && cqe.status === 0 && !covers(cmd.solicited, cmd.dataOut.length)) {
      throw new ProtocolError(`successful CapsuleResp for CID ${cqe.cid} before the controller solicited all ${cmd.dataOut.length} bytes`, Fes.PduSequenceError);
    }
    const c = this.completion(cmd, cqe, false);
    if (cmd.c2hDigestErrors) this.complete(cmd, undefined, new DataDigestError(`CID ${cqe.cid}: C2HData data digest mismatch`, c));
    else this.complete(cmd, c);
  }

  private onC2HData(p: Pdu): void {
    const h = p.header;
    const cccid = h.readUInt16LE(8);
    const datao = h.readUInt32LE(12);
    const datal = h.readUInt32LE(16);
    const cmd = this.pending.get(cccid);
    this.stats.c2hPdus++;
    this.stats.maxC2hDatal = Math.max(this.stats.maxC2hDatal, datal);
    if (!cmd) throw new ProtocolError(`C2HData for CCCID ${cccid}, which is not outstanding`, Fes.InvalidHeaderField, 8);
    if (!cmd.dataIn) throw new ProtocolError(`C2HData for CCCID ${cccid}, which reads no data`, Fes.InvalidHeaderField, 8);
    if (datal !== p.data.length) throw new ProtocolError(`C2HData DATAL ${datal} but ${p.data.length} bytes of PDU data`, Fes.InvalidHeaderField, 16);
    if (datal === 0) throw new ProtocolError('C2HData with DATAL 0', Fes.InvalidHeaderField, 16);
    if (datao !== cmd.received) throw new ProtocolError(`C2HData DATAO ${datao}, expected ${cmd.received} (data in order, no gaps)`, Fes.DataTransferOutOfRange, 12);
    if (datao + datal > cmd.dataIn.length) throw new ProtocolError(`C2HData [${datao}, ${datao + datal}) beyond the command's ${cmd.dataIn.length} bytes`, Fes.DataTransferOutOfRange, 16);
    if (cmd.lastSeen) throw new ProtocolError('C2HData after the LAST_PDU one', Fes.PduSequenceError);
    const hpda = this.opts.hpda ?? 0;
    if (hpda > 0 && p.pdo % ((hpda + 1) * 4) !== 0) throw new ProtocolError(`C2HData PDO ${p.pdo} not aligned to HPDA ${hpda}`, Fes.InvalidHeaderField, 3);
    p.data.copy(cmd.dataIn, datao);
    cmd.received += datal;
    cmd.c2hPdus++;
    if (p.ddgstOk === false) cmd.c2hDigestErrors++;
    const last = (p.flags & Flag.LAST_PDU) !== 0;
    const success = (p.flags & Flag.SUCCESS) !== 0;
    if (last) {
      cmd.lastSeen = true;
      if (cmd.received !== cmd.dataIn.length) throw new ProtocolError(`C2HData LAST_PDU after ${cmd.received} of ${cmd.dataIn.length} bytes`, Fes.PduSequenceError);
    }
    if (success) {
      if (!last) throw new ProtocolError('C2HData with SUCCESS but not LAST_PDU', Fes.InvalidHeaderField, 1);
      this.stats.c2hSuccess++;
      const raw = Buffer.alloc(16);
      raw.writeUInt16LE(cccid, 12);
      raw.writeUInt16LE(this.qid < 0 ? 0 : this.qid, 10);
      const c = this.completion(cmd, decodeCqe(raw), true);
      if (cmd.c2hDigestErrors) this.complete(cmd, undefined, new DataDigestError(`CID ${cccid}: C2HData data digest mismatch`, c));
      else this.complete(cmd, c);
    }
  }

  private onR2T(p: Pdu): void {
    const h = p.header;
    const cccid = h.readUInt16LE(8);
    const ttag = h.readUInt16LE(10);
    const r2to = h.readUInt32LE(12);
    const r2tl = h.readUInt32LE(16);
    this.stats.r2ts++;
    const cmd = this.pending.get(cccid);
    if (!cmd) throw new ProtocolError(`R2T for CCCID ${cccid}, which is not outstanding`, Fes.InvalidHeaderField, 8);
    if (!cmd.dataOut) throw new ProtocolError(`R2T for CCCID ${cccid}, which writes no data`, Fes.InvalidHeaderField, 8);
    if (cmd.inCapsule) throw new ProtocolError(`R2T for CCCID ${cccid}, whose data was in the capsule`, Fes.PduSequenceError);
    if (r2tl === 0) throw new ProtocolError('R2T with R2TL 0', Fes.InvalidHeaderField, 16);
    if (r2to + r2tl > cmd.dataOut.length) throw new ProtocolError(`R2T [${r2to}, ${r2to + r2tl}) beyond the command's ${cmd.dataOut.length} bytes`, Fes.DataTransferOutOfRange, 12);
    for (const [a, b] of cmd.solicited) {
      if (r2to < b && a < r2to + r2tl) throw new ProtocolError(`R2T [${r2to}, ${r2to + r2tl}) overlaps data already solicited`, Fes.DataTransferOutOfRange, 12);
    }
    cmd.solicited.push([r2to, r2to + r2tl]);
    cmd.r2ts++;
    const max = Math.min(this.icresp.maxh2cdata, this.opts.h2cChunk ?? Infinity);
    const bufs: Buffer[] = [];
    for (let off = r2to; off < r2to + r2tl; off += max) {
      const len = Math.min(max, r2to + r2tl - off);
      const last = off + len === r2to + r2tl;
      bufs.push(...buildPdu(h2cDataHeader(cccid, ttag, off, len), cmd.dataOut.subarray(off, off + len), this.digestState(), last ? Flag.LAST_PDU : 0, cmd.h2cFaults));
      cmd.h2cPdus++;
      this.stats.h2cPdus++;
      this.stats.maxH2cDatal = Math.max(this.stats.maxH2cDatal, len);
    }
    this.write(bufs).catch((e: Error) => this.complete(cmd, undefined, e));
  }
}

function covers(ranges: Array<[number, number]>, len: number): boolean {
  const s = [...ranges].sort((a, b) => a[0] - b[0]);
  let end = 0;
  for (const [a, b] of s) {
    if (a > end) return false;
    end = Math.max(end, b);
  }
  return end >= len;
}
