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
  /** SPDK's claim type while claimed: 'read_many_write_one' (an lvstore's base), 'exclusive_write' (an NVMe-oF namespace). */
  claimType?: string;
  /** Why the lvstore found on this bdev when it was created was not loaded (absent: none). */
  tasteError?: string;
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
  /** Picks up a new size of a file bdev's file (bdev_aio_rescan / bdev_uring_rescan). */
  rescanFileBdev(name: string, driver: 'aio' | 'uring'): void;
  /** Every bdev, in creation order. */
  listBdevs(): BdevInfo[];
  /** Looks a bdev up by name, alias or UUID. */
  findBdev(nameOrAlias: string): BdevInfo | undefined;
  /**
   * A count that changes whenever a bdev goes away (any way: deleted, its lvstore unloaded), so
   * callers that keep bdev references can skip re-checking them while it stays the same.
   * Engines without it: undefined (check every time).
   */
  removals?(): number;
  bdevStats(name: string): BdevStats;
  /** Ticks per second of the latency counters. */
  tickRate(): number;
}

/** How freed clusters are cleared (SPDK's lvs_clear_method / lvol_clear_method). */
export type LvolClearMethod = 'none' | 'unmap' | 'write_zeroes';

/** What the engines report about an lvol store (the RPC layer builds bdev_lvol_get_lvstores from it). */
export interface LvstoreInfo {
  uuid: string;
  name: string;
  /** Name of the bdev the store lives on. */
  baseBdev: string;
  totalDataClusters: number;
  freeClusters: number;
  /** The store's I/O unit: the base bdev's block size. */
  blockSize: number;
  clusterSize: number;
  /** The store's default for lvols created without a clear_method. */
  clearMethod: LvolClearMethod;
}

/**
 * SPDK's `driver_specific.lvol` object for an lvol bdev (vbdev_lvol_dump_info_json,
 * module/bdev/lvol/vbdev_lvol.c): `base_snapshot` (the parent snapshot's lvol name) only for
 * clones, `clones` (lvol names) only for snapshots that have some.
 */
export interface LvolDriverSpecific {
  lvol_store_uuid: string;
  base_bdev: string;
  thin_provision: boolean;
  num_allocated_clusters: number;
  snapshot: boolean;
  clone: boolean;
  base_snapshot?: string;
  clones?: string[];
  esnap_clone: boolean;
}

/**
 * An lvol's bdev: name = lvol UUID, aliases = ["<lvs name>/<lvol name>"], driver 'lvol',
 * driverSpecific = SPDK's driver_specific.lvol, plus what the RPC layer needs besides.
 */
export interface LvolBdevInfo extends BdevInfo {
  driverSpecific: LvolDriverSpecific & Record<string, unknown>;
  lvsUuid: string;
  lvolName: string;
  /** Snapshots and lvols set read-only with bdev_lvol_set_read_only. */
  readOnly: boolean;
  clearMethod: LvolClearMethod;
  /** Size in clusters (num_blocks = numClusters · cluster_size / block_size). */
  numClusters: number;
}

/**
 * The lvol operations the control plane needs from an engine, written against by the
 * bdev_lvol_* RPC handlers. Failures reject with an SpdkError carrying a positive errno, as
 * SPDK's lvol library reports them (EEXIST, ENOSPC, EINVAL, EPERM, EBUSY, ...); an operation the
 * engine does not implement rejects with EOPNOTSUPP (95) and changes nothing.
 */
export interface LvolBackend {
  createLvstore(p: { bdevName: string; lvsName: string; clusterSize: number; clearMethod: LvolClearMethod }): Promise<LvstoreInfo>;
  /** Every lvol store, in the order they were created or tasted. */
  listLvstores(): LvstoreInfo[];
  /** Deletes the store and every lvol in it, and releases the base bdev. */
  deleteLvstore(uuid: string): Promise<void>;
  renameLvstore(uuid: string, newName: string): Promise<void>;
  /** Grows the store to the base bdev's current size (bdev_lvol_grow_lvstore). */
  growLvstore(uuid: string): Promise<void>;

  /** Creates an lvol of `sizeBytes` rounded up to whole clusters. */
  createLvol(p: { lvsUuid: string; name: string; sizeBytes: number; thin: boolean; clearMethod: LvolClearMethod }): Promise<LvolBdevInfo>;
  /** Every lvol bdev, in creation order. */
  listLvols(): LvolBdevInfo[];
  /** Looks an lvol up by bdev name (its UUID) or alias ("<lvs>/<lvol>"). */
  findLvol(nameOrAlias: string): LvolBdevInfo | undefined;
  deleteLvol(bdevName: string): Promise<void>;
  /** Resizes to `sizeBytes` rounded up to whole clusters (growing or shrinking). */
  resizeLvol(bdevName: string, sizeBytes: number): Promise<void>;
  setLvolReadOnly(bdevName: string): Promise<void>;
  renameLvol(bdevName: string, newName: string): Promise<void>;
  snapshotLvol(bdevName: string, snapshotName: string): Promise<LvolBdevInfo>;
  cloneLvol(snapshotBdevName: string, cloneName: string): Promise<LvolBdevInfo>;
  /** Allocates every cluster and removes the dependency on the parent snapshot. */
  inflateLvol(bdevName: string): Promise<void>;
  /** Copies the parent's allocated clusters and removes the dependency on it. */
  decoupleLvolParent(bdevName: string): Promise<void>;
}
