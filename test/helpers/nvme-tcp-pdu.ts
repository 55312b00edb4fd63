/**
 * NVMe/TCP transport PDUs for the test host (test/helpers/nvme-tcp-host.ts), written from the
 * NVMe/TCP Transport Specification: the common header, each PDU's header layout, CRC32C header and
 * data digests, and a reader that frames PDUs out of a byte stream however TCP segments it.
 * All multi-byte fields are little-endian.
 */

export const PduType = {
  ICReq: 0x00,
  ICResp: 0x01,
  H2CTermReq: 0x02,
  C2HTermReq: 0x03,
  CapsuleCmd: 0x04,
  CapsuleResp: 0x05,
  H2CData: 0x06,
  C2HData: 0x07,
  R2T: 0x09,
} as const;

export function pduTypeName(t: number): string {
  for (const [k, v] of Object.entries(PduType)) if (v === t) return k;
  return `0x${t.toString(16)}`;
}

/** Common header flags (byte 1). */
export const Flag = {
  HDGSTF: 0x01,
  DDGSTF: 0x02,
  /** H2CData / C2HData: the last PDU of the transfer (or of the R2T). */
  LAST_PDU: 0x04,
  /** C2HData: the command completed successfully; no CapsuleResp follows. */
  SUCCESS: 0x08,
} as const;

/** Header lengths (HLEN, without the header digest) the specification fixes per PDU type. */
export const HLEN: Record<number, number> = {
  [PduType.ICReq]: 128,
  [PduType.ICResp]: 128,
  [PduType.H2CTermReq]: 24,
  [PduType.C2HTermReq]: 24,
  [PduType.CapsuleCmd]: 72,
  [PduType.CapsuleResp]: 24,
  [PduType.H2CData]: 24,
  [PduType.C2HData]: 24,
  [PduType.R2T]: 24,
};

/** Fatal Error Status of a termination request. */
export const Fes = {
  InvalidHeaderField: 0x01,
  PduSequenceError: 0x02,
  HeaderDigestError: 0x03,
  DataTransferOutOfRange: 0x04,
  DataTransferLimitExceeded: 0x05, // also "R2T limit exceeded"
  UnsupportedParameter: 0x06,
} as const;

export const DIGEST_LEN = 4;
/** A termination request carries at most this much of the offending PDU. */
export const TERM_REQ_MAX_DATA = 128;

// ---------------------------------------------------------------------------------------------
// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), slicing-by-8.

const CRC_TABLES: Uint32Array[] = (() => {
  const t: Uint32Array[] = [];
  for (let k = 0; k < 8; k++) t.push(new Uint32Array(256));
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let i = 0; i < 8; i++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[0][n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[0][n];
    for (let k = 1; k < 8; k++) {
      c = t[0][c & 0xff] ^ (c >>> 8);
      t[k][n] = c >>> 0;
    }
  }
  return t;
})();

/** Continues a CRC32C over `data` from running state `crc` (pass the result of a previous call). */
export function crc32cUpdate(crc: number, data: Uint8Array): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = CRC_TABLES;
  let c = crc >>> 0;
  let i = 0;
  const n = data.length;
  const end8 = n - (n % 8);
  for (; i < end8; i += 8) {
    const lo = (data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)) ^ c;
    c =
      t7[lo & 0xff] ^
      t6[(lo >>> 8) & 0xff] ^
      t5[(lo >>> 16) & 0xff] ^
      t4[lo >>> 24] ^
      t3[data[i + 4]] ^
      t2[data[i + 5]] ^
      t1[data[i + 6]] ^
      t0[data[i + 7]];
  }
  for (; i < n; i++) c = t0[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return c >>> 0;
}

/** CRC32C of the concatenation of `parts` (initial value all ones, final XOR all ones). */
export function crc32c(...parts: Uint8Array[]): number {
  let c = 0xffffffff;
  for (const p of parts) c = crc32cUpdate(c, p);
  return (c ^ 0xffffffff) >>> 0;
}

function digestBytes(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0, 0);
  return b;
}

// ---------------------------------------------------------------------------------------------
// Building PDUs.

export interface DigestState {
  hdgst: boolean;
  ddgst: boolean;
  /** Controller PDU data alignment (ICResp CPDA): PDU data of host PDUs starts at a multiple of (cpda+1)*4. */
  cpda: number;
}

export interface BuildOptions {
  /** Flip a bit in the header digest that is sent (fault injection). */
  corruptHeaderDigest?: boolean;
  /** Flip a bit in the data digest that is sent (fault injection). */
  corruptDataDigest?: boolean;
  /** Change the header once it is complete, before its digest (fault injection: a wrong TTAG, DATAO, ...). */
  editHeader?: (header: Buffer) => void;
}

/**
 * One PDU as a list of buffers to write: header (with its specific fields already filled in by the
 * caller), header digest, padding up to PDO, data, data digest. `header` must be HLEN bytes long;
 * type, flags, hlen, pdo and plen are written here.
 */
export function buildPdu(header: Buffer, data: Uint8Array | undefined, d: DigestState, extraFlags = 0, opts: BuildOptions = {}): Buffer[] {
  const type = header[0];
  const hlen = header.length;
  const digestsApply = type !== PduType.ICReq && type !== PduType.ICResp && type !== PduType.H2CTermReq && type !== PduType.C2HTermReq;
  const hd = digestsApply && d.hdgst;
  const dd = digestsApply && d.ddgst && data !== undefined && data.length > 0;
  let flags = extraFlags;
  if (hd) flags |= Flag.HDGSTF;
  if (dd) flags |= Flag.DDGSTF;
  let pdo = 0;
  let pad = 0;
  let plen = hlen + (hd ? DIGEST_LEN : 0);
  if (data && data.length > 0) {
    pdo = plen;
    // Term requests carry the offending header right after theirs, unaligned.
    if (digestsApply && d.cpda > 0) {
      const align = (d.cpda + 1) * 4;
      pdo = Math.ceil(plen / align) * align;
      pad = pdo - plen;
    }
    plen = pdo + data.length + (dd ? DIGEST_LEN : 0);
  }
  header[1] = flags;
  header[2] = hlen;
  header[3] = pdo;
  header.writeUInt32LE(plen, 4);
  opts.editHeader?.(header);
  const out: Buffer[] = [header];
  if (hd) {
    const dg = digestBytes(crc32c(header));
    if (opts.corruptHeaderDigest) dg[0] ^= 0x01;
    out.push(dg);
  }
  if (pad) out.push(Buffer.alloc(pad));
  if (data && data.length > 0) {
    out.push(Buffer.from(data.buffer, data.byteOffset, data.length));
    if (dd) {
      const dg = digestBytes(crc32c(data));
      if (opts.corruptDataDigest) dg[0] ^= 0x01;
      out.push(dg);
    }
  }
  return out;
}

export interface ICReqFields {
  pfv?: number;
  hpda?: number;
  hdgst?: boolean;
  ddgst?: boolean;
  /** 0's based: the number of outstanding R2Ts per command the host accepts, minus one. */
  maxr2t?: number;
}

export function icReq(f: ICReqFields): Buffer {
  const h = Buffer.alloc(128);
  h[0] = PduType.ICReq;
  h[2] = 128;
  h[3] = 0;
  h.writeUInt32LE(128, 4);
  h.writeUInt16LE(f.pfv ?? 0, 8);
  h[10] = f.hpda ?? 0;
  h[11] = (f.hdgst ? 1 : 0) | (f.ddgst ? 2 : 0);
  h.writeUInt32LE(f.maxr2t ?? 0, 12);
  return h;
}

export interface ICResp {
  pfv: number;
  cpda: number;
  hdgst: boolean;
  ddgst: boolean;
  maxh2cdata: number;
}

export function decodeICResp(h: Buffer): ICResp {
  return { pfv: h.readUInt16LE(8), cpda: h[10], hdgst: (h[11] & 1) !== 0, ddgst: (h[11] & 2) !== 0, maxh2cdata: h.readUInt32LE(12) };
}

/** An empty CapsuleCmd header around a 64-byte SQE. */
export function capsuleCmdHeader(sqe: Buffer): Buffer {
  const h = Buffer.alloc(72);
  h[0] = PduType.CapsuleCmd;
  sqe.copy(h, 8, 0, 64);
  return h;
}

export function h2cDataHeader(cccid: number, ttag: number, datao: number, datal: number): Buffer {
  const h = Buffer.alloc(24);
  h[0] = PduType.H2CData;
  h.writeUInt16LE(cccid, 8);
  h.writeUInt16LE(ttag, 10);
  h.writeUInt32LE(datao, 12);
  h.writeUInt32LE(datal, 16);
  return h;
}

export function h2cTermReqHeader(fes: number, fei: number): Buffer {
  const h = Buffer.alloc(24);
  h[0] = PduType.H2CTermReq;
  h.writeUInt16LE(fes, 8);
  h.writeUInt32LE(fei >>> 0, 10);
  return h;
}

// ---------------------------------------------------------------------------------------------
// Reading PDUs.

/** A PDU as received: its header (HLEN bytes), and its data with padding and digests removed. */
export interface Pdu {
  type: number;
  flags: number;
  hlen: number;
  pdo: number;
  plen: number;
  header: Buffer;
  data: Buffer;
  /** Whether a header digest was present and matched (undefined: none present). */
  hdgstOk?: boolean;
  /** Whether a data digest was present and matched (undefined: none present). */
  ddgstOk?: boolean;
}

export interface TermReq {
  /** PduType.H2CTermReq or C2HTermReq. */
  type: number;
  fes: number;
  /** Fatal Error Information: for an invalid header field, the byte offset of the field. */
  fei: number;
  /** The start of the PDU that caused it (up to 128 bytes). */
  data: Buffer;
}

export function decodeTermReq(p: Pdu): TermReq {
  return { type: p.type, fes: p.header.readUInt16LE(8), fei: p.header.readUInt32LE(10), data: p.data };
}

export class ProtocolError extends Error {
  constructor(
    message: string,
    /** The FES the host would send in an H2CTermReq for it. */
    readonly fes: number = Fes.InvalidHeaderField,
    readonly fei = 0,
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/**
 * Frames PDUs from a TCP byte stream: feed() every chunk as it arrives (any segmentation: a header
 * split over several chunks, many PDUs in one chunk), next() returns each complete PDU. Digests
 * are checked against what ICResp negotiated: `digests` is consulted per PDU, so it can change
 * after the IC exchange.
 */
export class PduReader {
  private chunks: Buffer[] = [];
  private head = 0; // consumed bytes of chunks[0]
  private avail = 0;

  constructor(private readonly digests: () => { hdgst: boolean; ddgst: boolean }) {}

  feed(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.avail += chunk.length;
  }

  get buffered(): number {
    return this.avail;
  }

  private peek(n: number): Buffer {
    // Copies only what a header needs; data is taken with take().
    const out = Buffer.alloc(n);
    let off = 0;
    let ci = 0;
    let pos = this.head;
    while (off < n) {
      const c = this.chunks[ci];
      const k = Math.min(n - off, c.length - pos);
      c.copy(out, off, pos, pos + k);
      off += k;
      ci++;
      pos = 0;
    }
    return out;
  }

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0];
    if (first.length - this.head >= n) {
      const b = first.subarray(this.head, this.head + n);
      this.head += n;
      this.avail -= n;
      if (this.head === first.length) {
        this.chunks.shift();
        this.head = 0;
      }
      return b;
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0];
      const k = Math.min(n - off, c.length - this.head);
      c.copy(out, off, this.head, this.head + k);
      off += k;
      this.head += k;
      if (this.head === c.length) {
        this.chunks.shift();
        this.head = 0;
      }
    }
    this.avail -= n;
    return out;
  }

  /** The next complete PDU, or undefined until more bytes arrive. Throws ProtocolError on malformed framing. */
  next(): Pdu | undefined {
    if (this.avail < 8) return undefined;
    const ch = this.peek(8);
    const type = ch[0];
    const flags = ch[1];
    const hlen = ch[2];
    const pdo = ch[3];
    const plen = ch.readUInt32LE(4);
    const want = HLEN[type];
    if (want === undefined) throw new ProtocolError(`unknown PDU type ${pduTypeName(type)}`, Fes.InvalidHeaderField, 0);
    if (hlen !== want) throw new ProtocolError(`${pduTypeName(type)} with HLEN ${hlen} (the specification fixes ${want})`, Fes.InvalidHeaderField, 2);
    const isIc = type === PduType.ICReq || type === PduType.ICResp;
    const isTerm = type === PduType.H2CTermReq || type === PduType.C2HTermReq;
    const dg = this.digests();
    const hd = !isIc && !isTerm && dg.hdgst;
    if (hd && !(flags & Flag.HDGSTF)) throw new ProtocolError(`${pduTypeName(type)} without HDGSTF although header digests were negotiated`, Fes.InvalidHeaderField, 1);
    if (!hd && flags & Flag.HDGSTF && !isTerm) throw new ProtocolError(`${pduTypeName(type)} with HDGSTF although header digests were not negotiated`, Fes.InvalidHeaderField, 1);
    const hdrEnd = hlen + (hd ? DIGEST_LEN : 0);
    if (plen < hdrEnd) throw new ProtocolError(`${pduTypeName(type)} PLEN ${plen} shorter than its header`, Fes.InvalidHeaderField, 4);
    if (isTerm && plen > 24 + TERM_REQ_MAX_DATA) throw new ProtocolError(`termination request PLEN ${plen} > 152`, Fes.InvalidHeaderField, 4);
    if (plen > 64 * 1024 * 1024) throw new ProtocolError(`PLEN ${plen} is implausible`, Fes.InvalidHeaderField, 4);
    if (this.avail < plen) return undefined;
    const all = this.take(plen);
    const header = Buffer.from(all.subarray(0, hlen));
    const p: Pdu = { type, flags, hlen, pdo, plen, header, data: Buffer.alloc(0) };
    if (hd) {
      const got = all.readUInt32LE(hlen);
      p.hdgstOk = got === crc32c(header);
      if (!p.hdgstOk) throw new ProtocolError(`${pduTypeName(type)} header digest mismatch`, Fes.HeaderDigestError, 0);
    }
    if (plen > hdrEnd) {
      if (isTerm) {
        p.data = Buffer.from(all.subarray(hlen, plen));
        return p;
      }
      const dd = dg.ddgst && (type === PduType.C2HData || type === PduType.H2CData || type === PduType.CapsuleCmd);
      if (dd !== ((flags & Flag.DDGSTF) !== 0)) throw new ProtocolError(`${pduTypeName(type)} DDGSTF ${flags & Flag.DDGSTF ? 'set' : 'clear'} against the negotiated data digest`, Fes.InvalidHeaderField, 1);
      if (pdo < hdrEnd || pdo > plen) throw new ProtocolError(`${pduTypeName(type)} PDO ${pdo} outside [${hdrEnd}, ${plen}]`, Fes.InvalidHeaderField, 3);
      const dataEnd = plen - (dd ? DIGEST_LEN : 0);
      if (dataEnd < pdo) throw new ProtocolError(`${pduTypeName(type)} PLEN ${plen} leaves no room for data at PDO ${pdo}`, Fes.InvalidHeaderField, 4);
      // Copy: the chunk a subarray points into may be large and long-lived otherwise.
      p.data = Buffer.from(all.subarray(pdo, dataEnd));
      if (dd) {
        p.ddgstOk = all.readUInt32LE(dataEnd) === crc32c(p.data);
      }
    }
    // Without data, PDO is reserved: not checked.
    return p;
  }
}
