import { SpdkError, strerror } from '../errors';

/**
 * NVMe completion status as the NVMe host reports it: one number per command, as in a
 * completion ring.
 *  - `0`: success;
 *  - `> 0`: the NVMe status field (CQE DW3 bits 31:17, SPDK's `spdk_nvme_status` without the
 *    phase bit): SC in bits 0-7, SCT in 8-10, CRD in 11-12, More in 13, DNR in 14;
 *  - `< 0`: a negative errno: the command got no completion from the controller (the
 *    connection was lost, the command timed out, ...).
 */
export type NvmeStatusCode = number;

/** Status code types (SCT). */
export const Sct = { Generic: 0, CommandSpecific: 1, MediaError: 2, Path: 3, VendorSpecific: 7 } as const;

/** Splits a positive status into its fields. */
export function decodeStatus(status: number): { sct: number; sc: number; crd: number; more: boolean; dnr: boolean } {
  return { sc: status & 0xff, sct: (status >> 8) & 7, crd: (status >> 11) & 3, more: ((status >> 13) & 1) === 1, dnr: ((status >> 14) & 1) === 1 };
}

/** The positive status value for (sct, sc). */
export function makeStatus(sct: number, sc: number, dnr = false): number {
  return (sc & 0xff) | ((sct & 7) << 8) | (dnr ? 1 << 14 : 0);
}

// Names as SPDK's spdk_nvme_cpl_get_status_string() prints them (NVMe base 2.0, figures 101-105,
// NVM command set 1.0, NVMe-oF 1.1).
const GENERIC: Record<number, string> = {
  0x00: 'SUCCESS',
  0x01: 'INVALID OPCODE',
  0x02: 'INVALID FIELD',
  0x03: 'COMMAND ID CONFLICT',
  0x04: 'DATA TRANSFER ERROR',
  0x05: 'ABORTED - POWER LOSS',
  0x06: 'INTERNAL DEVICE ERROR',
  0x07: 'ABORTED - BY REQUEST',
  0x08: 'ABORTED - SQ DELETION',
  0x09: 'ABORTED - FAILED FUSED',
  0x0a: 'ABORTED - MISSING FUSED',
  0x0b: 'INVALID NAMESPACE OR FORMAT',
  0x0c: 'COMMAND SEQUENCE ERROR',
  0x0d: 'INVALID SGL SEGMENT DESCRIPTOR',
  0x0e: 'INVALID NUMBER OF SGL DESCRIPTORS',
  0x0f: 'DATA SGL LENGTH INVALID',
  0x10: 'METADATA SGL LENGTH INVALID',
  0x11: 'SGL DESCRIPTOR TYPE INVALID',
  0x12: 'INVALID CONTROLLER MEMORY BUFFER',
  0x13: 'INVALID PRP OFFSET',
  0x14: 'ATOMIC WRITE UNIT EXCEEDED',
  0x15: 'OPERATION DENIED',
  0x16: 'INVALID SGL OFFSET',
  0x18: 'HOSTID INCONSISTENT FORMAT',
  0x19: 'KEEP ALIVE EXPIRED',
  0x1a: 'KEEP ALIVE INVALID',
  0x1b: 'ABORTED - PREEMPT AND ABORT',
  0x1c: 'SANITIZE FAILED',
  0x1d: 'SANITIZE IN PROGRESS',
  0x1e: 'SGL DATA BLOCK GRANULARITY INVALID',
  0x1f: 'COMMAND NOT SUPPORTED FOR QUEUE IN CMB',
  0x20: 'NAMESPACE IS WRITE PROTECTED',
  0x21: 'COMMAND INTERRUPTED',
  0x22: 'TRANSIENT TRANSPORT ERROR',
  0x80: 'LBA OUT OF RANGE',
  0x81: 'CAPACITY EXCEEDED',
  0x82: 'NAMESPACE NOT READY',
  0x83: 'RESERVATION CONFLICT',
  0x84: 'FORMAT IN PROGRESS',
};
const COMMAND_SPECIFIC: Record<number, string> = {
  0x00: 'COMPLETION QUEUE INVALID',
  0x01: 'INVALID QUEUE IDENTIFIER',
  0x02: 'MAX QUEUE SIZE EXCEEDED',
  0x03: 'ABORT CMD LIMIT EXCEEDED',
  0x05: 'ASYNC LIMIT EXCEEDED',
  0x06: 'INVALID FIRMWARE SLOT',
  0x07: 'INVALID FIRMWARE IMAGE',
  0x08: 'INVALID INTERRUPT VECTOR',
  0x09: 'INVALID LOG PAGE',
  0x0a: 'INVALID FORMAT',
  0x0b: 'FIRMWARE REQUIRES CONVENTIONAL RESET',
  0x0c: 'INVALID QUEUE DELETION',
  0x0d: 'FEATURE ID NOT SAVEABLE',
  0x0e: 'FEATURE NOT CHANGEABLE',
  0x0f: 'FEATURE NOT NAMESPACE SPECIFIC',
  0x10: 'FIRMWARE REQUIRES NVM RESET',
  0x11: 'FIRMWARE REQUIRES RESET',
  0x12: 'FIRMWARE REQUIRES MAX TIME VIOLATION',
  0x13: 'FIRMWARE ACTIVATION PROHIBITED',
  0x14: 'OVERLAPPING RANGE',
  0x15: 'NAMESPACE INSUFFICIENT CAPACITY',
  0x16: 'NAMESPACE ID UNAVAILABLE',
  0x18: 'NAMESPACE ALREADY ATTACHED',
  0x19: 'NAMESPACE IS PRIVATE',
  0x1a: 'NAMESPACE NOT ATTACHED',
  0x1b: 'THINPROVISIONING NOT SUPPORTED',
  0x1c: 'CONTROLLER LIST INVALID',
  0x80: 'CONFLICTING ATTRIBUTES',
  0x81: 'INVALID PROTECTION INFO',
  0x82: 'WRITE TO RO RANGE',
};
// Fabrics commands reuse the command-specific range from 0x80 with their own meanings.
const FABRICS: Record<number, string> = {
  0x80: 'CONNECT INCOMPATIBLE FORMAT',
  0x81: 'CONNECT CONTROLLER BUSY',
  0x82: 'CONNECT INVALID PARAMETERS',
  0x83: 'CONNECT RESTART DISCOVERY',
  0x84: 'CONNECT INVALID HOST',
  0x85: 'INVALID QUEUE TYPE',
  0x90: 'DISCOVER RESTART',
  0x91: 'AUTH REQUIRED',
};
const MEDIA: Record<number, string> = {
  0x80: 'WRITE FAULTS',
  0x81: 'UNRECOVERED READ ERROR',
  0x82: 'GUARD CHECK ERROR',
  0x83: 'APPLICATION TAG CHECK ERROR',
  0x84: 'REFERENCE TAG CHECK ERROR',
  0x85: 'COMPARE FAILURE',
  0x86: 'ACCESS DENIED',
  0x87: 'DEALLOCATED OR UNWRITTEN BLOCK',
};
const PATH: Record<number, string> = {
  0x00: 'INTERNAL PATH ERROR',
  0x01: 'ASYMMETRIC ACCESS PERSISTENT LOSS',
  0x02: 'ASYMMETRIC ACCESS INACCESSIBLE',
  0x03: 'ASYMMETRIC ACCESS TRANSITION',
  0x60: 'CONTROLLER PATHING ERROR',
  0x70: 'HOST PATHING ERROR',
  0x71: 'ABORTED BY HOST',
};

/** The status's name, as SPDK prints it ("LBA OUT OF RANGE"); `fabrics` for Fabrics commands. */
export function statusName(status: number, fabrics = false): string {
  if (status === 0) return 'SUCCESS';
  if (status < 0) return strerror(-status);
  const { sct, sc } = decodeStatus(status);
  const table = sct === 0 ? GENERIC : sct === 1 ? (fabrics && sc >= 0x80 ? FABRICS : COMMAND_SPECIFIC) : sct === 2 ? MEDIA : sct === 3 ? PATH : undefined;
  return table?.[sc] ?? (sct === 7 ? `VENDOR SPECIFIC (SC 0x${hex(sc)})` : `UNKNOWN (SCT 0x${sct.toString(16)}, SC 0x${hex(sc)})`);
}

const IO_OPCODES: Record<number, string> = { 0x00: 'FLUSH', 0x01: 'WRITE', 0x02: 'READ', 0x05: 'COMPARE', 0x08: 'WRITE ZEROES', 0x09: 'DATASET MANAGEMENT' };
const ADMIN_OPCODES: Record<number, string> = {
  0x00: 'DELETE IO SQ',
  0x01: 'CREATE IO SQ',
  0x02: 'GET LOG PAGE',
  0x04: 'DELETE IO CQ',
  0x05: 'CREATE IO CQ',
  0x06: 'IDENTIFY',
  0x08: 'ABORT',
  0x09: 'SET FEATURES',
  0x0a: 'GET FEATURES',
  0x0c: 'ASYNC EVENT REQUEST',
  0x18: 'KEEP ALIVE',
  0x7f: 'FABRIC',
};

/** An opcode's name ("READ", "IDENTIFY"). */
export function opcodeName(opcode: number, admin: boolean): string {
  return (admin ? ADMIN_OPCODES : IO_OPCODES)[opcode] ?? `OPCODE 0x${hex(opcode)}`;
}

function hex(n: number): string {
  return n.toString(16).padStart(2, '0');
}

/** The command an error is about. */
export interface NvmeCommandInfo {
  /** 'admin' or 'io'. */
  queue: 'admin' | 'io';
  opcode: number;
  /** Opcode name ("READ"). */
  command: string;
  nsid?: number;
  lba?: number;
  blocks?: number;
  /** The queue pair's ID (0 for admin). */
  qid?: number;
}

/**
 * A command the controller completed with an error status. Carries the status fields and the
 * command (an `SpdkError` with code `'ERR_NVME_STATUS'`, errno EIO).
 *
 * @example
 * try { await qp.read(ns, buf, ns.numSectors, 1); }
 * catch (e) { if (e instanceof NvmeError && e.statusName === 'LBA OUT OF RANGE') ... }
 */
export class NvmeError extends SpdkError {
  /** The raw status value (see NvmeStatusCode). */
  readonly status: number;
  readonly sct: number;
  readonly sc: number;
  /** Do Not Retry. */
  readonly dnr: boolean;
  readonly more: boolean;
  /** The status's name ("LBA OUT OF RANGE"). */
  readonly statusName: string;
  readonly opcode: number;
  /** The command's name ("READ"). */
  readonly command: string;
  readonly cmd: NvmeCommandInfo;

  constructor(status: number, cmd: NvmeCommandInfo, op: string, context?: string) {
    const f = decodeStatus(status);
    const name = statusName(status, cmd.opcode === 0x7f);
    const where = cmd.queue === 'io' ? describeIo(cmd) : cmd.command;
    super(`${where}${context ? ` ${context}` : ''} failed: ${name} (SCT 0x${f.sct.toString(16)}, SC 0x${hex(f.sc)}${f.dnr ? ', DNR' : ''})`, {
      code: 'ERR_NVME_STATUS',
      errno: 5,
      op,
    });
    this.name = 'NvmeError';
    this.status = status;
    this.sct = f.sct;
    this.sc = f.sc;
    this.dnr = f.dnr;
    this.more = f.more;
    this.statusName = name;
    this.opcode = cmd.opcode;
    this.command = cmd.command;
    this.cmd = cmd;
  }
}

function describeIo(c: NvmeCommandInfo): string {
  let s = `${c.command} (nsid ${c.nsid ?? '?'}`;
  if (c.lba !== undefined) s += `, lba ${c.lba}`;
  if (c.blocks !== undefined) s += `, ${c.blocks} blocks`;
  return `${s}, qid ${c.qid ?? '?'})`;
}

/**
 * The error for a completion status: NvmeError for an NVMe status, SpdkError (with the errno)
 * for a command that got no completion (`transport` says why, e.g. the connection's failure).
 */
export function statusError(status: number, cmd: NvmeCommandInfo, op: string, transport?: string): SpdkError {
  if (status > 0) return new NvmeError(status, cmd, op);
  const errno = -status;
  const what = cmd.queue === 'io' ? describeIo(cmd) : cmd.command;
  let why: string;
  if (errno === 110) why = 'timed out';
  else if (errno === 103) why = 'aborted: the queue pair was disconnected';
  else why = `got no completion: ${strerror(errno)}`;
  return new SpdkError(`${what} ${why}${transport ? ` (${transport})` : ''}`, { errno, op });
}
