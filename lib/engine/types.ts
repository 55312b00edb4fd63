/**
 * What the engines report about a bdev, independent of SPDK's JSON shape (the RPC layer builds
 * SPDK's `bdev_get_bdevs` objects from this).
 */
export interface BdevInfo {
  name: string;
  aliases: string[];
  productName: string;
  blockSize: number;
  numBlocks: number;
  uuid: string;
  /** SPDK's driver_specific key: 'malloc', 'aio', 'uring', 'lvol', ... */
  driver: string;
  requiredAlignment: number;
  readOnly: boolean;
  claimed: boolean;
  ioTypes: { read: boolean; write: boolean; flush: boolean; unmap: boolean; write_zeroes: boolean };
  /** The object SPDK writes under driver_specific[driver]. */
  driverSpecific: Record<string, unknown>;
}

export interface BdevStats {
  bytesRead: number;
  numReadOps: number;
  bytesWritten: number;
  numWriteOps: number;
  bytesUnmapped: number;
  numUnmapOps: number;
  numFlushOps: number;
  numWriteZeroesOps: number;
  bytesWriteZeroes: number;
  readLatencyTicks: number;
  writeLatencyTicks: number;
  unmapLatencyTicks: number;
  ioErrors: number;
}

export interface MallocBdevParams {
  name: string;
  numBlocks: number;
  blockSize: number;
  uuid?: string;
}

export interface FileBdevParams {
  name: string;
  filename: string;
  /** 0 = detect (the file's logical block size, 512 for regular files). */
  blockSize: number;
  readOnly: boolean;
  /** Which SPDK module name the bdev is reported under. */
  driver: 'aio' | 'uring';
  /** aio only: SPDK's `fallocate` flag, reported in driver_specific. */
  fallocate?: boolean;
  uuid?: string;
}

/**
 * The bdev operations the control plane needs from an engine. The builtin engine implements
 * them over its addon; the RPC method handlers are written against this interface only.
 */
export interface BdevBackend {
  createMallocBdev(p: MallocBdevParams): BdevInfo;
  createFileBdev(p: FileBdevParams): BdevInfo;
  /** Deletes a bdev; rejects with SpdkError ENODEV when there is none of that name and driver. */
  deleteBdev(name: string, driver: string): Promise<void>;
  /** Every bdev, in creation order. */
  listBdevs(): BdevInfo[];
  /** Looks a bdev up by name, alias or UUID. */
  findBdev(nameOrAlias: string): BdevInfo | undefined;
  bdevStats(name: string): BdevStats;
  /** Ticks per second of the latency counters. */
  tickRate(): number;
}
