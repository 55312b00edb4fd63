/**
 * The friendly lvol API (`spdk.lvol`): typed objects over SPDK's bdev_lvol_* JSON-RPC methods.
 * Every operation is one or more `spdk.rpc.call(...)` calls, so it behaves exactly as the RPCs do
 * (same checks, same errors: a failed call rejects with the JsonRpcError SPDK would answer) and
 * works the same against any target that speaks SPDK's JSON-RPC.
 *
 * Objects are snapshots of the state when they were read: `store.freeClusters` does not change
 * by itself; `refresh()` reads it again, and every mutating method resolves with a fresh object.
 */
import { SpdkError } from '../errors';
import { JsonRpcError } from '../rpc/errors';
import type { BdevJson, LvolClearMethodParam, LvolDriverSpecificJson, LvolJson, LvstoreJson } from '../rpc/types';

const MIB = 1024 * 1024;
const UUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** What the API needs from `spdk.rpc` (an RpcClient to a remote target works too). */
export interface RpcCaller {
  call(method: string, params?: unknown): Promise<unknown>;
}

export type LvolClearMethod = LvolClearMethodParam;

/** A size: whole MiB (what SPDK v25.09 takes) or bytes (rounded up to whole clusters). */
export type LvolSize = { sizeMiB: number; sizeBytes?: undefined } | { sizeBytes: number; sizeMiB?: undefined };

export interface CreateStoreOptions {
  /** The base bdev the store is written on (it becomes claimed). */
  bdev: string;
  /** The store's name, 1 to 63 bytes. */
  name: string;
  /** Bytes per cluster (default 4 MiB): a power of two, at least 4 KiB, a multiple of the block size. */
  clusterSize?: number;
  /** How clusters are cleared when freed (default 'unmap'); the default of the store's lvols. */
  clearMethod?: LvolClearMethod;
}

export type CreateLvolOptions = LvolSize & {
  /** Allocate clusters on first write instead of at creation (default false). */
  thin?: boolean;
  /** Default: the store's clear method. */
  clearMethod?: LvolClearMethod;
};

function sizeParams(op: string, size: LvolSize | undefined): { size_in_mib: number } | { size: number } {
  const s = size as { sizeMiB?: unknown; sizeBytes?: unknown } | undefined;
  if (s === undefined || (s.sizeMiB === undefined) === (s.sizeBytes === undefined)) {
    throw SpdkError.invalidArg(op, 'give exactly one of sizeMiB and sizeBytes');
  }
  const v = s.sizeMiB ?? s.sizeBytes;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw SpdkError.invalidArg(op, `${s.sizeMiB !== undefined ? 'sizeMiB' : 'sizeBytes'} must be a non-negative integer`);
  }
  if (s.sizeMiB !== undefined) return { size_in_mib: v };
  // Whole MiB go as SPDK v25.09's size_in_mib; other byte counts need spdk-node's legacy `size`.
  return v % MIB === 0 ? { size_in_mib: v / MIB } : { size: v };
}

function checkName(op: string, what: string, name: unknown): asserts name is string {
  if (typeof name !== 'string') throw SpdkError.invalidArg(op, `${what} must be a string`);
}

/**
 * Entry point: `spdk.lvol`.
 *
 * @example
 * await spdk.rpc.call('bdev_aio_create', { name: 'disk0', filename: '/var/lib/disk0.img', block_size: 4096 });
 * const store = await spdk.lvol.createStore({ bdev: 'disk0', name: 'lvs0' });
 * const vol = await store.create('vol1', { sizeMiB: 1024, thin: true });
 * const snap = await vol.snapshot('vol1-snap');
 * const copy = await snap.clone('vol1-copy');
 * const io = await spdk.bdev.open(copy.uuid);   // I/O goes to the lvol's bdev (named by its UUID)
 */
export class LvolApi {
  constructor(private readonly rpc: RpcCaller) {}

  /**
   * Creates an lvol store on a bdev (bdev_lvol_create_lvstore).
   *
   * @example
   * const store = await spdk.lvol.createStore({ bdev: 'Malloc0', name: 'lvs0', clusterSize: 1 << 20 });
   * console.log(store.uuid, store.freeClusters * store.clusterSize, 'bytes free');
   */
  async createStore(opts: CreateStoreOptions): Promise<LvolStore> {
    const op = 'lvol.createStore';
    checkName(op, 'bdev', opts?.bdev);
    checkName(op, 'name', opts.name);
    const params: Record<string, unknown> = { bdev_name: opts.bdev, lvs_name: opts.name };
    if (opts.clusterSize !== undefined) {
      if (!Number.isSafeInteger(opts.clusterSize) || opts.clusterSize <= 0 || opts.clusterSize > 0xffffffff) {
        throw SpdkError.invalidArg(op, 'clusterSize must be a positive 32-bit integer');
      }
      params.cluster_sz = opts.clusterSize;
    }
    if (opts.clearMethod !== undefined) params.clear_method = opts.clearMethod;
    const uuid = (await this.rpc.call('bdev_lvol_create_lvstore', params)) as string;
    return this.storeByUuid(uuid);
  }

  /** Every lvol store (bdev_lvol_get_lvstores). */
  async stores(): Promise<LvolStore[]> {
    const list = (await this.rpc.call('bdev_lvol_get_lvstores')) as LvstoreJson[];
    return list.map((s) => new LvolStore(this, s));
  }

  /**
   * One store, by UUID or name; rejects with `-19 "No such device"` when there is none.
   *
   * @example
   * const store = await spdk.lvol.store('lvs0');
   */
  async store(uuidOrName: string): Promise<LvolStore> {
    checkName('lvol.store', 'uuidOrName', uuidOrName);
    if (UUID_RE.test(uuidOrName)) {
      try {
        return await this.storeByUuid(uuidOrName);
      } catch (e) {
        if (!(e instanceof JsonRpcError && e.code === -19)) throw e;
      }
    }
    const [s] = (await this.rpc.call('bdev_lvol_get_lvstores', { lvs_name: uuidOrName })) as LvstoreJson[];
    return new LvolStore(this, s);
  }

  /**
   * An lvol by its bdev name (its UUID) or alias ("<store>/<lvol>"); rejects with
   * `-19 "No such device"` when there is no such lvol.
   *
   * @example
   * const vol = await spdk.lvol.get('lvs0/vol1');
   * await vol.resize({ sizeMiB: 2048 });
   */
  async get(nameOrAlias: string): Promise<Lvol> {
    checkName('lvol.get', 'nameOrAlias', nameOrAlias);
    const [bdev] = (await this.rpc.call('bdev_get_bdevs', { name: nameOrAlias })) as BdevJson[];
    const ds = (bdev.driver_specific as { lvol?: LvolDriverSpecificJson }).lvol;
    if (ds === undefined) throw new JsonRpcError(-19, 'No such device');
    const lvols = (await this.rpc.call('bdev_lvol_get_lvols', { lvs_uuid: ds.lvol_store_uuid })) as LvolJson[];
    const entry = lvols.find((l) => l.uuid === bdev.uuid);
    if (entry === undefined) throw new JsonRpcError(-19, 'No such device');
    return new Lvol(this, bdev, ds, entry);
  }

  /** Every lvol of every store, store by store in creation order (bdev_lvol_get_lvols). */
  async lvols(): Promise<Lvol[]> {
    const list = (await this.rpc.call('bdev_lvol_get_lvols')) as LvolJson[];
    return this.lvolsOf(list);
  }

  /** @internal */
  async lvolsOf(list: LvolJson[]): Promise<Lvol[]> {
    const bdevs = (await this.rpc.call('bdev_get_bdevs')) as BdevJson[];
    const byUuid = new Map(bdevs.map((b) => [b.uuid, b]));
    const out: Lvol[] = [];
    for (const l of list) {
      const b = byUuid.get(l.uuid);
      const ds = b && (b.driver_specific as { lvol?: LvolDriverSpecificJson }).lvol;
      if (b && ds) out.push(new Lvol(this, b, ds, l));
    }
    return out;
  }

  /** @internal */
  async storeByUuid(uuid: string): Promise<LvolStore> {
    const [s] = (await this.rpc.call('bdev_lvol_get_lvstores', { uuid })) as LvstoreJson[];
    return new LvolStore(this, s);
  }

  /** @internal */
  call(method: string, params?: unknown): Promise<unknown> {
    return this.rpc.call(method, params);
  }
}

/** An lvol store, as read from bdev_lvol_get_lvstores. */
export class LvolStore {
  readonly uuid: string;
  readonly name: string;
  /** The bdev the store lives on. */
  readonly baseBdev: string;
  readonly clusterSize: number;
  readonly blockSize: number;
  readonly totalDataClusters: number;
  readonly freeClusters: number;

  /** @internal */
  constructor(
    private readonly api: LvolApi,
    json: LvstoreJson,
  ) {
    this.uuid = json.uuid;
    this.name = json.name;
    this.baseBdev = json.base_bdev;
    this.clusterSize = json.cluster_size;
    this.blockSize = json.block_size;
    this.totalDataClusters = json.total_data_clusters;
    this.freeClusters = json.free_clusters;
  }

  /** Data capacity in bytes. */
  get totalBytes(): number {
    return this.totalDataClusters * this.clusterSize;
  }

  /** Unallocated bytes (what thick lvols and thin lvols' first writes can still get). */
  get freeBytes(): number {
    return this.freeClusters * this.clusterSize;
  }

  /**
   * Creates an lvol (bdev_lvol_create); its size is rounded up to whole clusters.
   *
   * @example
   * const vol = await store.create('vol1', { sizeMiB: 512 });
   * const thin = await store.create('vol2', { sizeBytes: 10 * 2 ** 30, thin: true, clearMethod: 'none' });
   */
  async create(name: string, opts: CreateLvolOptions): Promise<Lvol> {
    checkName('lvolStore.create', 'name', name);
    const params: Record<string, unknown> = { lvol_name: name, uuid: this.uuid, ...sizeParams('lvolStore.create', opts) };
    if (opts.thin !== undefined) params.thin_provision = opts.thin;
    if (opts.clearMethod !== undefined) params.clear_method = opts.clearMethod;
    const uuid = (await this.api.call('bdev_lvol_create', params)) as string;
    return this.api.get(uuid);
  }

  /** The store's lvols in creation order (bdev_lvol_get_lvols). */
  async lvols(): Promise<Lvol[]> {
    const list = (await this.api.call('bdev_lvol_get_lvols', { lvs_uuid: this.uuid })) as LvolJson[];
    return this.api.lvolsOf(list);
  }

  /** The store as it is now. */
  refresh(): Promise<LvolStore> {
    return this.api.storeByUuid(this.uuid);
  }

  /** Renames the store (bdev_lvol_rename_lvstore); every lvol's alias follows. */
  async rename(newName: string): Promise<LvolStore> {
    checkName('lvolStore.rename', 'newName', newName);
    await this.api.call('bdev_lvol_rename_lvstore', { old_name: this.name, new_name: newName });
    return this.refresh();
  }

  /** Grows the store into its base bdev's current size (bdev_lvol_grow_lvstore). */
  async grow(): Promise<LvolStore> {
    await this.api.call('bdev_lvol_grow_lvstore', { uuid: this.uuid });
    return this.refresh();
  }

  /** Deletes the store and every lvol in it, and releases the base bdev (bdev_lvol_delete_lvstore). */
  async delete(): Promise<void> {
    await this.api.call('bdev_lvol_delete_lvstore', { uuid: this.uuid });
  }
}

/**
 * A logical volume: a bdev named by its UUID, with the alias "<store>/<name>". Snapshots are
 * read-only lvols that clones share clusters with.
 */
export class Lvol {
  /** The lvol's UUID, which is also its bdev name (for spdk.bdev.open, nvmf namespaces, ...). */
  readonly uuid: string;
  readonly name: string;
  /** "<store name>/<lvol name>". */
  readonly alias: string;
  readonly storeUuid: string;
  readonly storeName: string;
  readonly blockSize: number;
  readonly numBlocks: number;
  readonly thin: boolean;
  readonly isSnapshot: boolean;
  readonly isClone: boolean;
  /** Snapshots, and lvols set read-only. */
  readonly readOnly: boolean;
  /** Clones: the name of the snapshot they were cloned from. */
  readonly baseSnapshot: string | undefined;
  /** Snapshots: the names of their clones. */
  readonly clones: readonly string[];
  readonly allocatedClusters: number;

  /** @internal */
  constructor(
    private readonly api: LvolApi,
    bdev: BdevJson,
    ds: LvolDriverSpecificJson,
    entry: LvolJson,
  ) {
    this.uuid = bdev.name;
    this.name = entry.name;
    this.alias = entry.alias;
    this.storeUuid = entry.lvs.uuid;
    this.storeName = entry.lvs.name;
    this.blockSize = bdev.block_size;
    this.numBlocks = bdev.num_blocks;
    this.thin = ds.thin_provision;
    this.isSnapshot = ds.snapshot;
    this.isClone = ds.clone;
    this.readOnly = bdev.supported_io_types.write === false;
    this.baseSnapshot = ds.base_snapshot;
    this.clones = Object.freeze([...(ds.clones ?? [])]);
    this.allocatedClusters = ds.num_allocated_clusters;
  }

  /** The bdev name to open it with (its UUID). */
  get bdevName(): string {
    return this.uuid;
  }

  get sizeBytes(): number {
    return this.numBlocks * this.blockSize;
  }

  /** The lvol as it is now. */
  refresh(): Promise<Lvol> {
    return this.api.get(this.uuid);
  }

  /**
   * Takes a read-only snapshot (bdev_lvol_snapshot); this lvol becomes its clone.
   *
   * @example
   * const snap = await vol.snapshot('vol1-2024-06-01');
   */
  async snapshot(name: string): Promise<Lvol> {
    checkName('lvol.snapshot', 'name', name);
    const uuid = (await this.api.call('bdev_lvol_snapshot', { lvol_name: this.uuid, snapshot_name: name })) as string;
    return this.api.get(uuid);
  }

  /**
   * Clones a snapshot (or another read-only lvol) into a new thin lvol (bdev_lvol_clone).
   *
   * @example
   * const copy = await snap.clone('vol1-copy');
   */
  async clone(name: string): Promise<Lvol> {
    checkName('lvol.clone', 'name', name);
    const uuid = (await this.api.call('bdev_lvol_clone', { snapshot_name: this.uuid, clone_name: name })) as string;
    return this.api.get(uuid);
  }

  /**
   * Grows or shrinks the lvol (bdev_lvol_resize); the size is rounded up to whole clusters.
   *
   * @example
   * const bigger = await vol.resize({ sizeMiB: 2048 });
   */
  async resize(size: LvolSize): Promise<Lvol> {
    await this.api.call('bdev_lvol_resize', { name: this.uuid, ...sizeParams('lvol.resize', size) });
    return this.refresh();
  }

  /** Makes the lvol read-only for good (bdev_lvol_set_read_only). */
  async setReadOnly(): Promise<Lvol> {
    await this.api.call('bdev_lvol_set_read_only', { name: this.uuid });
    return this.refresh();
  }

  /** Renames the lvol within its store (bdev_lvol_rename); its UUID stays. */
  async rename(newName: string): Promise<Lvol> {
    checkName('lvol.rename', 'newName', newName);
    await this.api.call('bdev_lvol_rename', { old_name: this.uuid, new_name: newName });
    return this.refresh();
  }

  /** Allocates every cluster and cuts the tie to the parent snapshot (bdev_lvol_inflate). */
  async inflate(): Promise<Lvol> {
    await this.api.call('bdev_lvol_inflate', { name: this.uuid });
    return this.refresh();
  }

  /** Copies what the parent snapshot holds and cuts the tie to it (bdev_lvol_decouple_parent). */
  async decoupleParent(): Promise<Lvol> {
    await this.api.call('bdev_lvol_decouple_parent', { name: this.uuid });
    return this.refresh();
  }

  /** Deletes the lvol (bdev_lvol_delete); a snapshot with more than one clone cannot be deleted. */
  async delete(): Promise<void> {
    await this.api.call('bdev_lvol_delete', { name: this.uuid });
  }
}
