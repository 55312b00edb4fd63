import * as net from 'node:net';
import { PduReader, PduType, Pdu } from './nvme-tcp-pdu';

/**
 * A scripted NVMe/TCP target (no digests) for testing the host against misbehaviour: it answers
 * enough of the protocol to bring a controller up (ICResp, Connect, properties, Identify, Set
 * Features, Keep Alive, Abort) and one namespace of 2048 x 512 B blocks held in memory, and lets
 * a test replace what it sends at any step. Not a target to test targets with: it trusts the host.
 */

export interface FakeConn {
  socket: net.Socket;
  qid: number;
  /** PDU types received from the host (H2CTermReq = 2 shows the host ended the connection). */
  received: number[];
  send(...bufs: Buffer[]): void;
}

export interface FakeHooks {
  /** The ICResp (or anything) to send for an ICReq; undefined = the normal one; 'silence' = nothing. */
  onIcReq?(conn: FakeConn): Buffer | 'silence' | 'close' | undefined;
  /** What to send for an I/O command (qid > 0); undefined = the normal answer. */
  onIo?(sqe: Buffer, data: Buffer, conn: FakeConn): Buffer[] | 'silence' | undefined;
}

export const BLOCKS = 2048;

export function capsuleResp(cid: number, status = 0, dw0 = 0, dw1 = 0, sqid = 0): Buffer {
  const b = Buffer.alloc(24);
  b[0] = PduType.CapsuleResp;
  b[2] = 24;
  b.writeUInt32LE(24, 4);
  b.writeUInt32LE(dw0 >>> 0, 8);
  b.writeUInt32LE(dw1 >>> 0, 12);
  b.writeUInt16LE(sqid, 18);
  b.writeUInt16LE(cid, 20);
  b.writeUInt16LE((status << 1) & 0xffff, 22);
  return b;
}

export function c2hData(cid: number, datao: number, data: Buffer, flags = 0x04): Buffer {
  const b = Buffer.alloc(24);
  b[0] = PduType.C2HData;
  b[1] = flags;
  b[2] = 24;
  b[3] = 24;
  b.writeUInt32LE(24 + data.length, 4);
  b.writeUInt16LE(cid, 8);
  b.writeUInt32LE(datao, 12);
  b.writeUInt32LE(data.length, 16);
  return Buffer.concat([b, data]);
}

export function r2t(cid: number, ttag: number, r2to: number, r2tl: number): Buffer {
  const b = Buffer.alloc(24);
  b[0] = PduType.R2T;
  b[2] = 24;
  b.writeUInt32LE(24, 4);
  b.writeUInt16LE(cid, 8);
  b.writeUInt16LE(ttag, 10);
  b.writeUInt32LE(r2to, 12);
  b.writeUInt32LE(r2tl, 16);
  return b;
}

export function icResp(o: { pfv?: number; cpda?: number; dgst?: number; maxh2cdata?: number } = {}): Buffer {
  const b = Buffer.alloc(128);
  b[0] = PduType.ICResp;
  b[2] = 128;
  b.writeUInt32LE(128, 4);
  b.writeUInt16LE(o.pfv ?? 0, 8);
  b[10] = o.cpda ?? 0;
  b[11] = o.dgst ?? 0;
  b.writeUInt32LE(o.maxh2cdata ?? 131072, 12);
  return b;
}

export function c2hTermReq(fes: number, fei: number): Buffer {
  const b = Buffer.alloc(24);
  b[0] = PduType.C2HTermReq;
  b[2] = 24;
  b.writeUInt32LE(24, 4);
  b.writeUInt16LE(fes, 8);
  b.writeUInt32LE(fei, 10);
  return b;
}

export class FakeTarget {
  hooks: FakeHooks = {};
  readonly conns: FakeConn[] = [];
  /** PDOs of the data PDUs received from the host (CapsuleCmd with data, H2CData). */
  readonly dataPdos: number[] = [];
  readonly media = Buffer.alloc(BLOCKS * 512);
  private readonly server: net.Server;
  private cc = 0;
  port = 0;

  constructor() {
    this.server = net.createServer((s) => this.accept(s));
  }

  async listen(): Promise<number> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }

  async close(): Promise<void> {
    for (const c of this.conns) c.socket.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  private accept(socket: net.Socket): void {
    const conn: FakeConn = { socket, qid: -1, received: [], send: (...b) => socket.write(Buffer.concat(b)) };
    this.conns.push(conn);
    const reader = new PduReader(() => ({ hdgst: false, ddgst: false }));
    const r2ts = new Map<number, { sqe: Buffer; got: Buffer[]; len: number }>();
    socket.on('error', () => undefined);
    socket.on('data', (chunk) => {
      reader.feed(chunk);
      for (;;) {
        let p: Pdu | undefined;
        try {
          p = reader.next();
        } catch {
          socket.destroy();
          return;
        }
        if (!p) break;
        conn.received.push(p.type);
        if ((p.type === PduType.CapsuleCmd || p.type === PduType.H2CData) && p.data.length > 0) this.dataPdos.push(p.pdo);
        if (p.type === PduType.ICReq) {
          const h = this.hooks.onIcReq?.(conn);
          if (h === 'silence') continue;
          if (h === 'close') {
            socket.destroy();
            return;
          }
          conn.send(h ?? icResp());
        } else if (p.type === PduType.CapsuleCmd) {
          this.command(conn, p.header.subarray(8, 72), p.data, r2ts);
        } else if (p.type === PduType.H2CData) {
          const cid = p.header.readUInt16LE(8);
          const w = r2ts.get(cid);
          if (!w) continue;
          w.got.push(p.data);
          if (Buffer.concat(w.got).length >= w.len) {
            r2ts.delete(cid);
            this.io(conn, w.sqe, Buffer.concat(w.got));
          }
        }
      }
    });
  }

  private command(conn: FakeConn, sqe: Buffer, data: Buffer, r2ts: Map<number, { sqe: Buffer; got: Buffer[]; len: number }>): void {
    const opc = sqe[0];
    const cid = sqe.readUInt16LE(2);
    if (opc === 0x7f) {
      const fct = sqe[4];
      if (fct === 0x01) {
        conn.qid = sqe.readUInt16LE(42);
        return conn.send(capsuleResp(cid, 0, 1));
      }
      if (fct === 0x04) {
        const ofst = sqe.readUInt32LE(44);
        if (ofst === 0x00) return conn.send(capsuleResp(cid, 0, 127 | (1 << 24), 0));
        if (ofst === 0x08) return conn.send(capsuleResp(cid, 0, 0x10400));
        if (ofst === 0x14) return conn.send(capsuleResp(cid, 0, this.cc));
        if (ofst === 0x1c) return conn.send(capsuleResp(cid, 0, this.cc & 1 ? 1 | (((this.cc >> 14) & 3) === 1 ? 8 : 0) : 0));
        return conn.send(capsuleResp(cid, 0x02));
      }
      if (fct === 0x00) {
        this.cc = sqe.readUInt32LE(48);
        return conn.send(capsuleResp(cid));
      }
      return conn.send(capsuleResp(cid, 0x01));
    }
    if (conn.qid === 0) {
      if (opc === 0x06) {
        const cns = sqe.readUInt32LE(40) & 0xff;
        const d = Buffer.alloc(4096);
        if (cns === 1) {
          d.write('FAKE0001', 4, 'latin1');
          d.write('fake target', 24, 'latin1');
          d[77] = 5; // MDTS: 128 KiB
          d.writeUInt16LE(1, 78);
          d.writeUInt32LE(1, 516);
          d.write('nqn.2016-06.io.spdk:fake', 768);
          d.writeUInt32LE(260, 1792); // IOCCSZ: 4 KiB in capsule
        } else if (cns === 2) {
          d.writeUInt32LE(1, 0);
        } else if (cns === 0) {
          d.writeUInt32LE(BLOCKS, 0);
          d[128 + 2] = 9;
        }
        return conn.send(c2hData(cid, 0, d), capsuleResp(cid));
      }
      if (opc === 0x09) return conn.send(capsuleResp(cid, 0, 0));
      if (opc === 0x08) return conn.send(capsuleResp(cid, 0, 1)); // Abort: not aborted
      return conn.send(capsuleResp(cid));
    }
    const len = ((sqe.readUInt32LE(48) & 0xffff) + 1) * 512;
    if (opc === 0x01 && data.length === 0) {
      r2ts.set(cid, { sqe: Buffer.from(sqe), got: [], len });
      return conn.send(r2t(cid, 7, 0, len));
    }
    this.io(conn, sqe, data);
  }

  private io(conn: FakeConn, sqe: Buffer, data: Buffer): void {
    const hooked = this.hooks.onIo?.(Buffer.from(sqe), data, conn);
    if (hooked === 'silence') return;
    if (hooked) return conn.send(...hooked);
    const opc = sqe[0];
    const cid = sqe.readUInt16LE(2);
    const lba = sqe.readUInt32LE(40);
    const len = ((sqe.readUInt32LE(48) & 0xffff) + 1) * 512;
    if (lba * 512 + len > this.media.length) return conn.send(capsuleResp(cid, 0x80 | (1 << 14), 0, 0, conn.qid));
    if (opc === 0x02) return conn.send(c2hData(cid, 0, this.media.subarray(lba * 512, lba * 512 + len)), capsuleResp(cid, 0, 0, 0, conn.qid));
    if (opc === 0x01) data.copy(this.media, lba * 512);
    conn.send(capsuleResp(cid, 0, 0, 0, conn.qid));
  }
}
