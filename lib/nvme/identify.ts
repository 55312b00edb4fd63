/**
 * Decoders for the NVMe data structures the host reads (NVMe base 2.0, NVM command set 1.0,
 * NVMe-oF 1.1): Identify Controller, Identify Namespace, namespace identification descriptors,
 * the discovery log page. Field names are the specification's, in lower case, as SPDK's
 * `struct spdk_nvme_ctrlr_data` has them.
 */

function ascii(b: Uint8Array, off: number, len: number): string {
  return Buffer.from(b.buffer, b.byteOffset + off, len).toString('latin1').replace(/[\s\0]+$/, '');
}

function nulString(b: Uint8Array, off: number, len: number): string {
  const s = Buffer.from(b.buffer, b.byteOffset + off, len);
  const end = s.indexOf(0);
  return s.toString('utf8', 0, end < 0 ? len : end).replace(/\s+$/, '');
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function u64(v: DataView, off: number): number {
  // Exact up to 2^53, which every size and counter here stays below in practice.
  return v.getUint32(off, true) + v.getUint32(off + 4, true) * 4294967296;
}

function hexOf(b: Uint8Array, off: number, len: number): string {
  return Buffer.from(b.buffer, b.byteOffset + off, len).toString('hex');
}

function isZero(b: Uint8Array, off: number, len: number): boolean {
  for (let i = 0; i < len; i++) if (b[off + i] !== 0) return false;
  return true;
}

/** Identify Controller (CNS 01h), decoded. */
export interface ControllerData {
  /** PCI vendor ID. */
  vid: number;
  ssvid: number;
  /** Serial number. */
  sn: string;
  /** Model number. */
  mn: string;
  /** Firmware revision. */
  fr: string;
  rab: number;
  /** IEEE OUI identifier. */
  ieee: number;
  cmic: number;
  /** Maximum data transfer size: 2^mdts minimum pages per command (0: no limit). */
  mdts: number;
  cntlid: number;
  /** Version (as the VS register). */
  ver: number;
  oaes: number;
  ctratt: number;
  /** Controller type: 1 I/O, 2 discovery, 3 administrative. */
  cntrltype: number;
  oacs: number;
  acl: number;
  aerl: number;
  frmw: number;
  lpa: number;
  elpe: number;
  npss: number;
  /** Keep Alive Support: granularity in 100 ms units (0: not supported). */
  kas: number;
  sqes: number;
  cqes: number;
  maxcmd: number;
  /** Number of namespaces (the largest NSID). */
  nn: number;
  /** Optional NVM command support (bit 0 Compare, 2 DSM, 3 Write Zeroes, ...). */
  oncs: number;
  fuses: number;
  fna: number;
  /** Volatile write cache present (bit 0). */
  vwc: number;
  awun: number;
  awupf: number;
  acwu: number;
  sgls: number;
  mnan: number;
  /** The subsystem's NQN. */
  subnqn: string;
  /** I/O queue command capsule size in 16-byte units (NVMe-oF). */
  ioccsz: number;
  /** I/O queue response capsule size in 16-byte units. */
  iorcsz: number;
  icdoff: number;
  fcatt: number;
  msdbd: number;
  ofcs: number;
  /** The 4096 raw bytes. */
  raw: Buffer;
}

export function decodeControllerData(b: Buffer): ControllerData {
  const v = view(b);
  return {
    vid: v.getUint16(0, true),
    ssvid: v.getUint16(2, true),
    sn: ascii(b, 4, 20),
    mn: ascii(b, 24, 40),
    fr: ascii(b, 64, 8),
    rab: b[72],
    ieee: b[73] | (b[74] << 8) | (b[75] << 16),
    cmic: b[76],
    mdts: b[77],
    cntlid: v.getUint16(78, true),
    ver: v.getUint32(80, true),
    oaes: v.getUint32(92, true),
    ctratt: v.getUint32(96, true),
    cntrltype: b[111],
    oacs: v.getUint16(256, true),
    acl: b[258],
    aerl: b[259],
    frmw: b[260],
    lpa: b[261],
    elpe: b[262],
    npss: b[263],
    kas: v.getUint16(320, true),
    sqes: b[512],
    cqes: b[513],
    maxcmd: v.getUint16(514, true),
    nn: v.getUint32(516, true),
    oncs: v.getUint16(520, true),
    fuses: v.getUint16(522, true),
    fna: b[524],
    vwc: b[525],
    awun: v.getUint16(526, true),
    awupf: v.getUint16(528, true),
    acwu: v.getUint16(532, true),
    sgls: v.getUint32(536, true),
    mnan: v.getUint32(540, true),
    subnqn: nulString(b, 768, 256),
    ioccsz: v.getUint32(1792, true),
    iorcsz: v.getUint32(1796, true),
    icdoff: v.getUint16(1800, true),
    fcatt: b[1802],
    msdbd: b[1803],
    ofcs: v.getUint16(1804, true),
    raw: b,
  };
}

export interface LbaFormat {
  /** Metadata bytes per LBA. */
  ms: number;
  /** LBA data size in bytes. */
  dataSize: number;
  /** Relative performance (0 best). */
  rp: number;
}

/** Identify Namespace (CNS 00h) with its identification descriptors (CNS 03h), decoded. */
export interface NamespaceData {
  nsid: number;
  /** Namespace size in logical blocks. */
  nsze: number;
  ncap: number;
  nuse: number;
  nsfeat: number;
  nlbaf: number;
  flbas: number;
  dlfeat: number;
  lbaFormats: LbaFormat[];
  /** The format in use's LBA data size. */
  sectorSize: number;
  /** 32 hex digits, or undefined when zero. */
  nguid?: string;
  /** 16 hex digits, or undefined when zero. */
  eui64?: string;
  /** From the descriptors (CNS 03h), canonical 8-4-4-4-12 form. */
  uuid?: string;
  raw: Buffer;
}

export function decodeNamespaceData(nsid: number, b: Buffer, descriptors?: Buffer): NamespaceData {
  const v = view(b);
  const nlbaf = b[25];
  const lbaFormats: LbaFormat[] = [];
  for (let i = 0; i <= Math.min(nlbaf, 63); i++) {
    const o = 128 + 4 * i;
    lbaFormats.push({ ms: v.getUint16(o, true), dataSize: b[o + 2] >= 9 && b[o + 2] < 32 ? 2 ** b[o + 2] : 0, rp: b[o + 3] & 3 });
  }
  const flbas = b[26];
  const fmt = lbaFormats[flbas & 0xf];
  const ns: NamespaceData = {
    nsid,
    nsze: u64(v, 0),
    ncap: u64(v, 8),
    nuse: u64(v, 16),
    nsfeat: b[24],
    nlbaf,
    flbas,
    dlfeat: b[33],
    lbaFormats,
    sectorSize: fmt ? fmt.dataSize : 0,
    raw: b,
  };
  if (!isZero(b, 104, 16)) ns.nguid = hexOf(b, 104, 16);
  if (!isZero(b, 120, 8)) ns.eui64 = hexOf(b, 120, 8);
  if (descriptors) {
    for (const d of decodeNsDescriptors(descriptors)) {
      if (d.type === 3 && d.value.length === 16) ns.uuid = uuidString(d.value);
      if (d.type === 2 && !ns.nguid && d.value.length === 16) ns.nguid = d.value.toString('hex');
      if (d.type === 1 && !ns.eui64 && d.value.length === 8) ns.eui64 = d.value.toString('hex');
    }
  }
  return ns;
}

/** Namespace identification descriptors (CNS 03h): type 1 EUI-64, 2 NGUID, 3 UUID, 4 CSI. */
export function decodeNsDescriptors(b: Buffer): Array<{ type: number; value: Buffer }> {
  const out: Array<{ type: number; value: Buffer }> = [];
  let o = 0;
  while (o + 4 <= b.length) {
    const type = b[o];
    const len = b[o + 1];
    if (type === 0 || len === 0 || o + 4 + len > b.length) break;
    out.push({ type, value: Buffer.from(b.subarray(o + 4, o + 4 + len)) });
    o += 4 + len;
  }
  return out;
}

export function uuidString(b: Uint8Array): string {
  const h = Buffer.from(b).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** An active namespace list (CNS 02h). */
export function decodeNsList(b: Buffer): number[] {
  const out: number[] = [];
  for (let o = 0; o + 4 <= b.length; o += 4) {
    const id = b.readUInt32LE(o);
    if (id === 0) break;
    out.push(id);
  }
  return out;
}

/** One entry of the discovery log page (LID 70h). */
export interface DiscoveryLogEntry {
  /** 3 = TCP, 1 = RDMA, 2 = FC. */
  trtype: number;
  /** 1 = IPv4, 2 = IPv6. */
  adrfam: number;
  /** 1 = referral to another discovery service, 2 = NVM subsystem, 3 = this discovery controller. */
  subtype: number;
  treq: number;
  portid: number;
  cntlid: number;
  asqsz: number;
  eflags: number;
  trsvcid: string;
  subnqn: string;
  traddr: string;
}

export interface DiscoveryLog {
  /** Generation counter: changes whenever the log does. */
  genctr: number;
  numrec: number;
  recfmt: number;
  entries: DiscoveryLogEntry[];
}

export function decodeDiscoveryLog(b: Buffer): DiscoveryLog {
  const v = view(b);
  const numrec = u64(v, 8);
  const entries: DiscoveryLogEntry[] = [];
  for (let i = 0; i < numrec && 1024 + (i + 1) * 1024 <= b.length; i++) {
    const o = 1024 + i * 1024;
    entries.push({
      trtype: b[o],
      adrfam: b[o + 1],
      subtype: b[o + 2],
      treq: b[o + 3],
      portid: v.getUint16(o + 4, true),
      cntlid: v.getUint16(o + 6, true),
      asqsz: v.getUint16(o + 8, true),
      eflags: v.getUint16(o + 10, true),
      trsvcid: nulString(b, o + 32, 32),
      subnqn: nulString(b, o + 256, 256),
      traddr: nulString(b, o + 512, 256),
    });
  }
  return { genctr: u64(v, 0), numrec, recfmt: v.getUint16(16, true), entries };
}
