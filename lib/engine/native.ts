/**
 * The shape of the builtin engine's addon as TypeScript sees it (native/builtin/addon.cc).
 * Only lib/ talks to these objects; users get the classes in lib/spdk.ts and lib/bdev/.
 */
import type { BdevInfo, BdevStats, LvolBdevInfo, LvstoreInfo } from './types';

export interface NativeConstants {
  DESC_OP: number;
  DESC_TAG: number;
  DESC_BUF: number;
  DESC_BUF_OFFSET: number;
  DESC_OFFSET_BLOCKS: number;
  DESC_NUM_BLOCKS: number;
  DESC_IOV_COUNT: number;
  DESC_IOV_START: number;
  DESC_WORDS: number;
  IOV_WORDS: number;
  MAX_IOVS: number;
  IO_READ: number;
  IO_WRITE: number;
  IO_FLUSH: number;
  IO_UNMAP: number;
  IO_WRITE_ZEROES: number;
}

export interface NativeEngine {
  start(opts: { cores: number[]; polling: boolean; hugepages: boolean }): void;
  stop(): Promise<void>;
  createMallocBdev(name: string, numBlocks: number, blockSize: number, uuid?: string): BdevInfo;
  createFileBdev(name: string, filename: string, blockSize: number, readOnly: boolean, driver: string, uuid?: string): BdevInfo;
  deleteBdev(name: string, driver: string): boolean;
  rescanFileBdev(name: string, driver: string): boolean;
  listBdevs(): BdevInfo[];
  bdevStats(name: string): BdevStats;
  allocBuffer(len: number): { id: number; buffer: ArrayBuffer; hugepage: boolean };
  freeBuffer(id: number): void;
  bufferInfo(id: number): { inFlight: number; hugepage: boolean } | null;
  reactorStats(): Array<{ index: number; core: number; jsThread: boolean; busyIterations: number; idleSleeps: number }>;
  nativeBench(opts: { bdev: string; reactor: number; write: boolean; queueDepth: number; ioBlocks: number; durationMs: number }): Promise<{ ios: number; ns: number }>;
  unref(): void;
  ref(): void;

  // The lvol store (native/builtin/lvol/). All reject with an SpdkError carrying a positive
  // errno; clearMethod is 'none' | 'unmap' | 'write_zeroes'.
  createLvstore(bdevName: string, lvsName: string, clusterSize: number, clearMethod: string): Promise<LvstoreInfo>;
  listLvstores(): LvstoreInfo[];
  deleteLvstore(uuid: string): Promise<void>;
  renameLvstore(uuid: string, newName: string): Promise<void>;
  growLvstore(uuid: string): Promise<void>;
  createLvol(lvsUuid: string, name: string, sizeBytes: number, thin: boolean, clearMethod: string, uuid?: string): Promise<LvolBdevInfo>;
  deleteLvol(bdevName: string): Promise<void>;
  resizeLvol(bdevName: string, sizeBytes: number): Promise<void>;
  setLvolReadOnly(bdevName: string): Promise<void>;
  renameLvol(bdevName: string, newName: string): Promise<void>;
  snapshotLvol(bdevName: string, snapshotName: string): Promise<LvolBdevInfo>;
  cloneLvol(snapshotBdevName: string, cloneName: string): Promise<LvolBdevInfo>;
  inflateLvol(bdevName: string): Promise<void>;
  decoupleLvolParent(bdevName: string): Promise<void>;
}

export interface NativeIoQueue {
  readonly desc: Float64Array;
  readonly iovs: Float64Array;
  readonly cq: Int32Array;
  readonly cqCapacity: number;
  readonly blockSize: number;
  readonly numBlocks: number;
  readonly requiredAlignment: number;
  _onClosed?: () => void;
  open(): Promise<void>;
  /** Submits descriptors [0, count). Throws (with `index`) having submitted none. */
  submit(count: number): number;
  /** Completions ready to read: start index in cq (pairs) * 2^17 + count. */
  reap(): number;
  close(): void;
  inFlight(): number;
}

export interface BuiltinAddon {
  engine: 'builtin';
  setErrorClass(cls: Function): void;
  Engine: new () => NativeEngine;
  IoQueue: new (engine: NativeEngine, bdev: string, reactor: number, depth: number, onComplete: () => void) => NativeIoQueue;
  constants: NativeConstants;
}
