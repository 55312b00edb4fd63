/**
 * NVMe and NVMe over Fabrics structures the test host needs, written from the NVM Express Base and
 * NVMe over Fabrics specifications: submission queue entries, completion queue entries and status
 * codes, properties, and decoders for Identify data and the log pages the tests read.
 * All multi-byte fields are little-endian.
 */

export const AdminOpc = {
  GetLogPage: 0x02,
  Identify: 0x06,
  Abort: 0x08,
  SetFeatures: 0x09,
  GetFeatures: 0x0a,
  AsyncEventRequest: 0x0c,
  KeepAlive: 0x18,
  Fabrics: 0x7f,
} as const;

export const IoOpc = {
  Flush: 0x00,
  Write: 0x01,
  Read: 0x02,
  Compare: 0x05,
  WriteZeroes: 0x08,
  DatasetManagement: 0x09,
} as const;

export const FabricsType = {
  PropertySet: 0x00,
  Connect: 0x01,
  PropertyGet: 0x04,
} as const;

export const Cns = {
  Namespace: 0x00,
  Controller: 0x01,
  ActiveNsList: 0x02,
  NsIdDescriptors: 0x03,
} as const;

export const LogId = {
  Error: 0x01,
  Smart: 0x02,
  ChangedNsList: 0x04,
  Discovery: 0x70,
} as const;

export const FeatureId = {
  NumberOfQueues: 0x07,
  AsyncEventConfig: 0x0b,
  KeepAliveTimer: 0x0f,
} as const;

export const Property = {
  CAP: 0x00,
  VS: 0x08,
  CC: 0x14,
  CSTS: 0x1c,
} as const;

export const Sct = {
  Generic: 0x0,
  CommandSpecific: 0x1,
  MediaError: 0x2,
  Path: 0x3,
} as const;

/** Generic command status (SCT 0). */
export const Sc = {
  Success: 0x00,
  InvalidOpcode: 0x01,
  InvalidField: 0x02,
  CommandIdConflict: 0x03,
  DataTransferError: 0x04,
  InternalDeviceError: 0x06,
  AbortedByRequest: 0x07,
  AbortedSqDeletion: 0x08,
  InvalidNamespaceOrFormat: 0x0b,
  CommandSequenceError: 0x0c,
  DataSglLengthInvalid: 0x0f,
  SglDescriptorTypeInvalid: 0x11,
  InvalidSglOffset: 0x16,
  KeepAliveInvalid: 0x1a,
  TransientTransportError: 0x22,
  LbaOutOfRange: 0x80,
  CapacityExceeded: 0x81,
  NamespaceNotReady: 0x82,
} as const;

/** Command specific status (SCT 1) of the Fabrics Connect command. */
export const FabricsSc = {
  IncompatibleFormat: 0x80,
  ControllerBusy: 0x81,
  InvalidParam: 0x82,
  RestartDiscovery: 0x83,
  InvalidHost: 0x84,
} as const;

/** Command specific status (SCT 1) of other commands. */
export const CmdSpecificSc = {
  InvalidQueueIdentifier: 0x01,
  InvalidLogPage: 0x09,
  FeatureIdNotSaveable: 0x0d,
  InvalidQueueDeletion: 0x0c,
  AsyncEventRequestLimitExceeded: 0x05,
} as const;

/** Media and data integrity errors (SCT 2). */
export const MediaSc = {
  CompareFailure: 0x85,
  DeallocatedOrUnwrittenBlock: 0x87,
} as const;

export const DISCOVERY_NQN = 'nqn.2014-08.org.nvmexpress.discovery';

// ---------------------------------------------------------------------------------------------
// Submission queue entries.

export interface SqeFields {
  opc: number;
  nsid?: number;
  /** Fabrics command type (byte 4, for opcode 0x7f). */
  fctype?: number;
  cdw10?: number;
  cdw11?: number;
  cdw12?: number;
  cdw13?: number;
  cdw14?: number;
  cdw15?: number;
}

/** A 64-byte SQE. CID, PSDT and SGL1 are filled in by the queue that submits it. */
export function sqe(f: SqeFields): Buffer {
  const b = Buffer.alloc(64);
  b[0] = f.opc;
  if (f.opc === AdminOpc.Fabrics) {
    b[4] = f.fctype ?? 0;
  } else {
    b.writeUInt32LE((f.nsid ?? 0) >>> 0, 4);
  }
  b.writeUInt32LE((f.cdw10 ?? 0) >>> 0, 40);
  b.writeUInt32LE((f.cdw11 ?? 0) >>> 0, 44);
  b.writeUInt32LE((f.cdw12 ?? 0) >>> 0, 48);
  b.writeUInt32LE((f.cdw13 ?? 0) >>> 0, 52);
  b.writeUInt32LE((f.cdw14 ?? 0) >>> 0, 56);
  b.writeUInt32LE((f.cdw15 ?? 0) >>> 0, 60);
  return b;
}

/** SGL descriptor types and subtypes (byte 15 of a descriptor: type << 4 | subtype). */
export const Sgl = {
  /** Data Block, Offset: in-capsule data at an offset into the capsule's data. */
  dataBlockOffset: 0x01,
  /** Transport Data Block, Transport specific: data moved by R2T/H2CData or C2HData. */
  transportDataBlock: 0x5a,
} as const;

/** Writes SGL1 (bytes 24..39) and PSDT = 01b (SGL for data, in byte 1). */
export function setSgl1(b: Buffer, kind: number, address: bigint, length: number): void {
  b[1] = (b[1] & 0x3f) | 0x40;
  b.writeBigUInt64LE(address, 24);
  b.writeUInt32LE(length >>> 0, 32);
  b[36] = 0;
  b[37] = 0;
  b[38] = 0;
  b[39] = kind;
}

// ---------------------------------------------------------------------------------------------
// Completion queue entries.

export interface Cqe {
  dw0: number;
  dw1: number;
  sqhd: number;
  sqid: number;
  cid: number;
  /** Status field without the phase bit. */
  status: number;
  sct: number;
  sc: number;
  crd: number;
  more: boolean;
  dnr: boolean;
  /** The raw 16 bytes. */
  raw: Buffer;
}

export function decodeCqe(b: Buffer): Cqe {
  const sf = b.readUInt16LE(14);
  return {
    dw0: b.readUInt32LE(0),
    dw1: b.readUInt32LE(4),
    sqhd: b.readUInt16LE(8),
    sqid: b.readUInt16LE(10),
    cid: b.readUInt16LE(12),
    status: sf >> 1,
    sc: (sf >> 1) & 0xff,
    sct: (sf >> 9) & 0x7,
    crd: (sf >> 12) & 0x3,
    more: (sf & 0x4000) !== 0,
    dnr: (sf & 0x8000) !== 0,
    raw: Buffer.from(b),
  };
}

export function statusName(sct: number, sc: number): string {
  const tables: Record<number, Record<string, number>> = { 0: Sc, 2: MediaSc };
  let name: string | undefined;
  const t = tables[sct];
  if (t) name = Object.entries(t).find(([, v]) => v === sc)?.[0];
  return `${name ?? 'status'} (SCT ${sct}, SC 0x${sc.toString(16).padStart(2, '0')})`;
}

/** A command that completed with a non-zero status. */
export class NvmeStatusError extends Error {
  readonly sct: number;
  readonly sc: number;
  readonly dnr: boolean;
  constructor(
    readonly what: string,
    readonly cqe: Cqe,
  ) {
    super(`${what} failed: ${statusName(cqe.sct, cqe.sc)}${cqe.dnr ? ' DNR' : ''}`);
    this.name = 'NvmeStatusError';
    this.sct = cqe.sct;
    this.sc = cqe.sc;
    this.dnr = cqe.dnr;
  }
}

// ---------------------------------------------------------------------------------------------
// Properties.

export interface Cap {
  mqes: number;
  cqr: boolean;
  ams: number;
  /** Worst-case ready time in 500 ms units. */
  to: number;
  dstrd: number;
  nssrs: boolean;
  css: number;
  mpsmin: number;
  mpsmax: number;
}

export function decodeCap(v: bigint): Cap {
  const n = (lo: number, bits: number): number => Number((v >> BigInt(lo)) & ((1n << BigInt(bits)) - 1n));
  return { mqes: n(0, 16), cqr: n(16, 1) === 1, ams: n(17, 2), to: n(24, 8), dstrd: n(32, 4), nssrs: n(36, 1) === 1, css: n(37, 8), mpsmin: n(48, 4), mpsmax: n(52, 4) };
}

export function decodeVs(v: number): { major: number; minor: number; tertiary: number } {
  return { major: v >>> 16, minor: (v >> 8) & 0xff, tertiary: v & 0xff };
}

export const CC = {
  EN: 1 << 0,
  /** I/O SQ entry size 2^6 = 64, I/O CQ entry size 2^4 = 16. */
  IOSQES_64: 6 << 16,
  IOCQES_16: 4 << 20,
  SHN_NORMAL: 1 << 14,
  SHN_ABRUPT: 2 << 14,
  SHN_MASK: 3 << 14,
} as const;

export const CSTS = {
  RDY: 1 << 0,
  CFS: 1 << 1,
  SHST_MASK: 3 << 2,
  SHST_OCCURRING: 1 << 2,
  SHST_COMPLETE: 2 << 2,
} as const;

// ---------------------------------------------------------------------------------------------
// Identify.

function ascii(b: Buffer, off: number, len: number): string {
  return b.toString('latin1', off, off + len).replace(/\0.*$/s, '').trimEnd();
}

function nulString(b: Buffer, off: number, len: number): string {
  const s = b.subarray(off, off + len);
  const z = s.indexOf(0);
  return s.toString('utf8', 0, z < 0 ? len : z);
}

export interface IdentifyController {
  vid: number;
  ssvid: number;
  /** Serial number, trailing spaces removed. */
  sn: string;
  mn: string;
  fr: string;
  ieee: number;
  cmic: number;
  /** Maximum data transfer size as a power of two of CAP.MPSMIN units (0 = no limit). */
  mdts: number;
  cntlid: number;
  ver: number;
  oaes: number;
  ctratt: number;
  cntrltype: number;
  oacs: number;
  acl: number;
  aerl: number;
  lpa: number;
  elpe: number;
  kas: number;
  sqes: number;
  cqes: number;
  maxcmd: number;
  nn: number;
  oncs: number;
  fuses: number;
  vwc: number;
  sgls: number;
  subnqn: string;
  /** I/O queue command capsule supported size, in 16-byte units. */
  ioccsz: number;
  iorcsz: number;
  icdoff: number;
  fcatt: number;
  msdbd: number;
  raw: Buffer;
}

export function decodeIdentifyController(b: Buffer): IdentifyController {
  return {
    vid: b.readUInt16LE(0),
    ssvid: b.readUInt16LE(2),
    sn: ascii(b, 4, 20),
    mn: ascii(b, 24, 40),
    fr: ascii(b, 64, 8),
    ieee: b[73] | (b[74] << 8) | (b[75] << 16),
    cmic: b[76],
    mdts: b[77],
    cntlid: b.readUInt16LE(78),
    ver: b.readUInt32LE(80),
    oaes: b.readUInt32LE(92),
    ctratt: b.readUInt32LE(96),
    cntrltype: b[111],
    oacs: b.readUInt16LE(256),
    acl: b[258],
    aerl: b[259],
    lpa: b[261],
    elpe: b[262],
    kas: b.readUInt16LE(320),
    sqes: b[512],
    cqes: b[513],
    maxcmd: b.readUInt16LE(514),
    nn: b.readUInt32LE(516),
    oncs: b.readUInt16LE(520),
    fuses: b.readUInt16LE(522),
    vwc: b[525],
    sgls: b.readUInt32LE(536),
    subnqn: nulString(b, 768, 256),
    ioccsz: b.readUInt32LE(1792),
    iorcsz: b.readUInt32LE(1796),
    icdoff: b.readUInt16LE(1800),
    fcatt: b[1802],
    msdbd: b[1803],
    raw: b,
  };
}

/** ONCS bits. */
export const Oncs = {
  Compare: 1 << 0,
  WriteUncorrectable: 1 << 1,
  DatasetManagement: 1 << 2,
  WriteZeroes: 1 << 3,
} as const;

export interface LbaFormat {
  ms: number;
  /** log2 of the LBA data size. */
  lbads: number;
  rp: number;
}

export interface IdentifyNamespace {
  nsze: bigint;
  ncap: bigint;
  nuse: bigint;
  nsfeat: number;
  /** Number of LBA formats, 0's based. */
  nlbaf: number;
  flbas: number;
  dlfeat: number;
  nmic: number;
  nguid: Buffer;
  eui64: Buffer;
  lbaf: LbaFormat[];
  /** The format in use (FLBAS bits 3:0, with bits 6:5 as the upper bits). */
  currentLbaf: LbaFormat;
  blockSize: number;
  raw: Buffer;
}

export function decodeIdentifyNamespace(b: Buffer): IdentifyNamespace {
  const nlbaf = b[25];
  const lbaf: LbaFormat[] = [];
  for (let i = 0; i <= Math.min(nlbaf, 63); i++) {
    const o = 128 + i * 4;
    lbaf.push({ ms: b.readUInt16LE(o), lbads: b[o + 2], rp: b[o + 3] & 3 });
  }
  const flbas = b[26];
  const idx = (flbas & 0x0f) | (((flbas >> 5) & 3) << 4);
  const currentLbaf = lbaf[idx] ?? { ms: 0, lbads: 0, rp: 0 };
  return {
    nsze: b.readBigUInt64LE(0),
    ncap: b.readBigUInt64LE(8),
    nuse: b.readBigUInt64LE(16),
    nsfeat: b[24],
    nlbaf,
    flbas,
    dlfeat: b[33],
    nmic: b[30],
    nguid: Buffer.from(b.subarray(104, 120)),
    eui64: Buffer.from(b.subarray(120, 128)),
    lbaf,
    currentLbaf,
    blockSize: currentLbaf.lbads ? 2 ** currentLbaf.lbads : 0,
    raw: b,
  };
}

export function decodeNsList(b: Buffer): number[] {
  const out: number[] = [];
  for (let o = 0; o + 4 <= b.length; o += 4) {
    const id = b.readUInt32LE(o);
    if (id === 0) break;
    out.push(id);
  }
  return out;
}

export const Nidt = { EUI64: 1, NGUID: 2, UUID: 3, CSI: 4 } as const;

export interface NsIdDescriptor {
  nidt: number;
  nid: Buffer;
}

export function decodeNsIdDescriptors(b: Buffer): NsIdDescriptor[] {
  const out: NsIdDescriptor[] = [];
  let o = 0;
  while (o + 4 <= b.length) {
    const nidt = b[o];
    const nidl = b[o + 1];
    if (nidt === 0) break;
    out.push({ nidt, nid: Buffer.from(b.subarray(o + 4, o + 4 + nidl)) });
    o += 4 + nidl;
  }
  return out;
}

/** 16 bytes as the canonical 8-4-4-4-12 UUID string. */
export function uuidString(b: Buffer): string {
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// ---------------------------------------------------------------------------------------------
// Log pages.

export interface DiscoveryLogEntry {
  trtype: number;
  adrfam: number;
  subtype: number;
  treq: number;
  portid: number;
  cntlid: number;
  asqsz: number;
  eflags: number;
  trsvcid: string;
  subnqn: string;
  traddr: string;
  /** TCP: security type (TSAS byte 0). */
  sectype: number;
}

export interface DiscoveryLog {
  genctr: bigint;
  numrec: bigint;
  recfmt: number;
  entries: DiscoveryLogEntry[];
}

export const DISCOVERY_LOG_HEADER = 1024;
export const DISCOVERY_LOG_ENTRY = 1024;

export function decodeDiscoveryLog(b: Buffer): DiscoveryLog {
  const numrec = b.readBigUInt64LE(8);
  const entries: DiscoveryLogEntry[] = [];
  for (let i = 0; i < Number(numrec); i++) {
    const o = DISCOVERY_LOG_HEADER + i * DISCOVERY_LOG_ENTRY;
    if (o + DISCOVERY_LOG_ENTRY > b.length) break;
    entries.push({
      trtype: b[o],
      adrfam: b[o + 1],
      subtype: b[o + 2],
      treq: b[o + 3],
      portid: b.readUInt16LE(o + 4),
      cntlid: b.readUInt16LE(o + 6),
      asqsz: b.readUInt16LE(o + 8),
      eflags: b.readUInt16LE(o + 10),
      // Space padded, as the specification asks; some targets NUL-pad.
      trsvcid: nulString(b, o + 32, 32).trimEnd(),
      subnqn: nulString(b, o + 256, 256),
      traddr: nulString(b, o + 512, 256).trimEnd(),
      sectype: b[o + 768],
    });
  }
  return { genctr: b.readBigUInt64LE(0), numrec, recfmt: b.readUInt16LE(16), entries };
}

export interface SmartLog {
  criticalWarning: number;
  /** Kelvin. */
  compositeTemperature: number;
  availableSpare: number;
  availableSpareThreshold: number;
  percentageUsed: number;
  dataUnitsRead: bigint;
  dataUnitsWritten: bigint;
  hostReadCommands: bigint;
  hostWriteCommands: bigint;
  controllerBusyTime: bigint;
  powerCycles: bigint;
  powerOnHours: bigint;
  unsafeShutdowns: bigint;
  mediaErrors: bigint;
  errorLogEntries: bigint;
}

function u128(b: Buffer, o: number): bigint {
  return b.readBigUInt64LE(o) | (b.readBigUInt64LE(o + 8) << 64n);
}

export function decodeSmartLog(b: Buffer): SmartLog {
  return {
    criticalWarning: b[0],
    compositeTemperature: b.readUInt16LE(1),
    availableSpare: b[3],
    availableSpareThreshold: b[4],
    percentageUsed: b[5],
    dataUnitsRead: u128(b, 32),
    dataUnitsWritten: u128(b, 48),
    hostReadCommands: u128(b, 64),
    hostWriteCommands: u128(b, 80),
    controllerBusyTime: u128(b, 96),
    powerCycles: u128(b, 112),
    powerOnHours: u128(b, 128),
    unsafeShutdowns: u128(b, 144),
    mediaErrors: u128(b, 160),
    errorLogEntries: u128(b, 176),
  };
}

export interface ErrorLogEntry {
  errorCount: bigint;
  sqid: number;
  cid: number;
  /** Status field without the phase tag. */
  status: number;
  parameterErrorLocation: number;
  lba: bigint;
  nsid: number;
  trtype: number;
}

export const ERROR_LOG_ENTRY = 64;

export function decodeErrorLog(b: Buffer): ErrorLogEntry[] {
  const out: ErrorLogEntry[] = [];
  for (let o = 0; o + ERROR_LOG_ENTRY <= b.length; o += ERROR_LOG_ENTRY) {
    out.push({
      errorCount: b.readBigUInt64LE(o),
      sqid: b.readUInt16LE(o + 8),
      cid: b.readUInt16LE(o + 10),
      status: b.readUInt16LE(o + 12) >> 1,
      parameterErrorLocation: b.readUInt16LE(o + 14),
      lba: b.readBigUInt64LE(o + 16),
      nsid: b.readUInt32LE(o + 24),
      trtype: b[o + 29],
    });
  }
  return out;
}

/** Changed Namespace List: up to 1024 NSIDs; a first entry of 0xFFFFFFFF means "more than 1024 changed". */
export function decodeChangedNsList(b: Buffer): number[] {
  return decodeNsList(b);
}

/** Asynchronous Event Request completion dword 0. */
export function decodeAsyncEvent(dw0: number): { type: number; info: number; logPage: number } {
  return { type: dw0 & 0x7, info: (dw0 >> 8) & 0xff, logPage: (dw0 >> 16) & 0xff };
}

/** A Dataset Management range (16 bytes). */
export function dsmRange(slba: bigint | number, nlb: number, attributes = 0): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(attributes >>> 0, 0);
  b.writeUInt32LE(nlb >>> 0, 4);
  b.writeBigUInt64LE(BigInt(slba), 8);
  return b;
}
