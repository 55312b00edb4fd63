import type { BdevBackend, LvolBackend, LvolBdevInfo, LvolClearMethod, LvstoreInfo } from '../../engine/types';
import { SpdkError, strerror } from '../../errors';
import { decodeFailed, decodeObject } from '../decode';
import type { Dispatcher } from '../dispatcher';
import { JsonRpcError, JSONRPC_ERROR_INTERNAL_ERROR, JSONRPC_ERROR_INVALID_PARAMS, toJsonRpcError } from '../errors';

/*
 * SPDK v25.09's bdev_lvol_* methods (module/bdev/lvol/vbdev_lvol_rpc.c, vbdev_lvol.c,
 * lib/lvol/lvol.c, lib/blob/blobstore.c) over an LvolBackend.
 *
 * SPDK answers a failure in one of two ways, and which one depends on where it is found:
 * - checks made before the operation starts are answered `-errno` with strerror's text
 *   (`-19 "No such device"`, `-17 "File exists"`, `-22 "Invalid argument"`, ...);
 * - failures reported by the operation's completion callback are answered with a fixed JSON-RPC
 *   code and strerror's text: -32602 for most methods (`-32602 "No space left on device"`),
 *   -32603 for bdev_lvol_delete.
 * The handlers below make SPDK's early checks themselves, in SPDK's order, so that the answer
 * does not depend on which errno the engine picks, and map every engine failure to the method's
 * callback code. An engine that lacks an operation answers `-95 "Operation not supported"`
 * (docs/differences.md).
 *
 * Names are checked in bytes, as SPDK's strnlen does: lvol and lvstore names have at most 63.
 */

const EPERM = 1;
const ENOENT = 2;
const EEXIST = 17;
const ENODEV = 19;
const EINVAL = 22;
const EOPNOTSUPP = 95;

const MIB = 1024 * 1024;
/** SPDK_LVS_NAME_MAX and SPDK_LVOL_NAME_MAX: names are shorter than this many bytes. */
const NAME_MAX = 64;
/** SPDK_LVS_OPTS_CLUSTER_SZ. */
const DEFAULT_CLUSTER_SZ = 4 * MIB;
/** SPDK_BS_PAGE_SIZE: clusters are whole metadata pages. */
const BS_PAGE_SIZE = 4096;
/** spdk_lvs_opts_init's num_md_pages_per_cluster_ratio. */
const DEFAULT_MD_PAGES_RATIO = 100;

const UUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

// Decoder tables of v25.09's handlers; names, types and optionality as in vbdev_lvol_rpc.c.
// Every uuid is decoded as a string (spdk_json_decode_string) and parsed only when looked up.
const CREATE_LVSTORE = {
  bdev_name: { type: 'string' },
  cluster_sz: { type: 'uint32', optional: true },
  lvs_name: { type: 'string' },
  clear_method: { type: 'string', optional: true },
  num_md_pages_per_cluster_ratio: { type: 'uint32', optional: true },
  md_page_size: { type: 'uint32', optional: true },
} as const;

const RENAME = {
  old_name: { type: 'string' },
  new_name: { type: 'string' },
} as const; // bdev_lvol_rename_lvstore and bdev_lvol_rename

const LVS_UUID_XOR_NAME = {
  uuid: { type: 'string', optional: true },
  lvs_name: { type: 'string', optional: true },
} as const; // delete_lvstore, get_lvstores, grow_lvstore

/**
 * bdev_lvol_create. `size_in_mib` is required in SPDK; spdk-node also takes the legacy `size`
 * (bytes; SPDK before v24.05, still sent by OpenStack Cinder and spdk-csi) and requires one of
 * the two (checked after decoding).
 */
const CREATE = {
  uuid: { type: 'string', optional: true },
  lvs_name: { type: 'string', optional: true },
  lvol_name: { type: 'string' },
  size_in_mib: { type: 'uint64', optional: true },
  size: { type: 'uint64', optional: true },
  thin_provision: { type: 'bool', optional: true },
  clear_method: { type: 'string', optional: true },
} as const;

const SNAPSHOT = {
  lvol_name: { type: 'string' },
  snapshot_name: { type: 'string' },
} as const;

const CLONE = {
  snapshot_name: { type: 'string' },
  clone_name: { type: 'string', optional: true },
} as const;

const NAME = { name: { type: 'string' } } as const; // delete, set_read_only, inflate, decouple_parent

/** bdev_lvol_resize, with the legacy `size` in bytes beside `size_in_mib` (see CREATE). */
const RESIZE = {
  name: { type: 'string' },
  size_in_mib: { type: 'uint64', optional: true },
  size: { type: 'uint64', optional: true },
} as const;

const GET_LVOLS = {
  lvs_uuid: { type: 'string', optional: true },
  lvs_name: { type: 'string', optional: true },
} as const;

function errno(e: number, message = strerror(e)): JsonRpcError {
  return new JsonRpcError(-e, message);
}

/** An error the operation's completion callback reports: `code` with strerror's text. */
function completionError(code: number, e: number): JsonRpcError {
  return new JsonRpcError(code, strerror(e));
}

/**
 * Maps an engine failure to what SPDK's completion callback answers: `code` and strerror's
 * text; EOPNOTSUPP (an operation the engine does not have) as -95.
 */
function fromEngine(err: unknown, code: number): JsonRpcError {
  if (err instanceof SpdkError && err.errno === EOPNOTSUPP) return errno(EOPNOTSUPP);
  if (err instanceof SpdkError && err.errno > 0) return completionError(code, err.errno);
  return toJsonRpcError(err);
}

async function completion<T>(op: () => Promise<T>, code: number = JSONRPC_ERROR_INVALID_PARAMS): Promise<T> {
  try {
    return await op();
  } catch (e) {
    throw fromEngine(e, code);
  }
}

/** A name SPDK's lvs_verify_lvol_name / vbdev_lvs_create_ext accept: 1 to 63 bytes. */
function validName(name: string | undefined): name is string {
  if (name === undefined) return false;
  const len = Buffer.byteLength(name, 'utf8');
  return len > 0 && len < NAME_MAX;
}

/** strcasecmp against SPDK's three clear methods; undefined when it is none of them. */
function parseClearMethod(v: string): LvolClearMethod | undefined {
  const m = v.toLowerCase();
  return m === 'none' || m === 'unmap' || m === 'write_zeroes' ? m : undefined;
}

/**
 * The byte size of bdev_lvol_create / bdev_lvol_resize: `size_in_mib` (SPDK v25.09) or the
 * legacy `size` in bytes. Both given: accepted when they say the same size, else -32602.
 * Neither: the decode failure SPDK answers for the missing `size_in_mib`.
 */
function requestedSize(req: { size_in_mib?: number; size?: number }): number {
  const { size_in_mib: mib, size } = req;
  if (mib === undefined && size === undefined) {
    const err = decodeFailed() as JsonRpcError & { detail?: string };
    err.detail = "missing parameter 'size_in_mib' (or the legacy 'size' in bytes)";
    throw err;
  }
  if (mib !== undefined && size !== undefined && mib * MIB !== size) {
    throw JsonRpcError.invalidParams(
      `Invalid parameters: size (${size} bytes) and size_in_mib (${mib} MiB) disagree; give one of them`,
    );
  }
  const bytes = size ?? (mib as number) * MIB;
  // JavaScript numbers are exact to 2^53-1 (the limit the decoder already puts on uint64s).
  if (!Number.isSafeInteger(bytes)) throw completionError(JSONRPC_ERROR_INVALID_PARAMS, EINVAL);
  return bytes;
}

/**
 * Registers SPDK's bdev_lvol_* methods (and the deprecated alias get_lvol_stores) over `lvols`,
 * with v25.09's decoders, checks, results and error answers. `bdevs` resolves base bdevs and
 * the global bdev namespace aliases live in. All are RUNTIME methods, as in SPDK.
 */
export function registerLvolMethods(dispatcher: Dispatcher, lvols: LvolBackend, bdevs: BdevBackend): void {
  // Names being created right now: SPDK checks new lvstore names against stores still being
  // initialised, and new lvol names against lvols still being created (pending_lvols), so a
  // concurrent duplicate gets the same early answer as a sequential one.
  const pendingStores = new Set<string>();
  const pendingBases = new Set<string>();
  const pendingLvols = new Set<string>();
  const lvolKey = (lvsUuid: string, name: string): string => `${lvsUuid}\0${name}`;

  /** vbdev_get_lvol_store_by_uuid: the string must parse as a UUID. */
  const storeByUuid = (uuid: string): LvstoreInfo | undefined => {
    if (!UUID_RE.test(uuid)) return undefined;
    const u = uuid.toLowerCase();
    return lvols.listLvstores().find((s) => s.uuid.toLowerCase() === u);
  };
  const storeByName = (name: string): LvstoreInfo | undefined => lvols.listLvstores().find((s) => s.name === name);

  /** vbdev_get_lvol_store_by_uuid_xor_name: exactly one of the two; -22 / -19 otherwise. */
  const storeByUuidXorName = (uuid: string | undefined, name: string | undefined): LvstoreInfo => {
    if ((uuid === undefined) === (name === undefined)) throw errno(EINVAL);
    const lvs = uuid !== undefined ? storeByUuid(uuid) : storeByName(name as string);
    if (lvs === undefined) throw errno(ENODEV);
    return lvs;
  };

  /** spdk_bdev_get_by_name + vbdev_lvol_get_from_bdev: any other bdev is -19 too. */
  const lvolByName = (name: string): LvolBdevInfo => {
    const lvol = lvols.findLvol(name);
    if (lvol === undefined) throw errno(ENODEV);
    return lvol;
  };

  const storeOf = (lvol: LvolBdevInfo): LvstoreInfo => {
    const lvs = storeByUuid(lvol.lvsUuid);
    if (lvs === undefined) throw errno(ENODEV);
    return lvs;
  };

  /**
   * spdk_lvol_create's lvs_verify_lvol_name (empty or too long: EINVAL; taken in the store or
   * being created: EEXIST), then _create_lvol_disk's spdk_bdev_alias_add: the alias
   * "<lvs>/<name>" must not name any bdev (EEXIST). Returns the errno, 0 when the name is free.
   */
  const lvolNameTaken = (lvs: LvstoreInfo, name: string): boolean =>
    pendingLvols.has(lvolKey(lvs.uuid, name)) || lvols.listLvols().some((l) => l.lvsUuid === lvs.uuid && l.lvolName === name);
  const newLvolNameErrno = (lvs: LvstoreInfo, name: string | undefined): number => {
    if (!validName(name)) return EINVAL;
    if (lvolNameTaken(lvs, name)) return EEXIST;
    if (bdevs.findBdev(`${lvs.name}/${name}`) !== undefined) return EEXIST;
    return 0;
  };

  /** Runs `op` with `keys` reserved in `set`. */
  const reserving = async <T>(set: Set<string>, keys: string[], op: () => Promise<T>): Promise<T> => {
    for (const k of keys) set.add(k);
    try {
      return await op();
    } finally {
      for (const k of keys) set.delete(k);
    }
  };

  dispatcher.register('bdev_lvol_create_lvstore', async (params) => {
    const req = decodeObject(params, CREATE_LVSTORE);
    let clearMethod: LvolClearMethod = 'unmap';
    if (req.clear_method !== undefined) {
      const m = parseClearMethod(req.clear_method);
      if (m === undefined) throw new JsonRpcError(-EINVAL, 'Invalid clear_method parameter');
      clearMethod = m;
    }
    const clusterSize = req.cluster_sz || DEFAULT_CLUSTER_SZ;
    const ratio = req.num_md_pages_per_cluster_ratio || DEFAULT_MD_PAGES_RATIO;
    const mdPageSize = req.md_page_size ?? 0;

    // vbdev_lvs_create_ext, in its order.
    if (!validName(req.lvs_name)) throw errno(EINVAL);
    if (mdPageSize !== 0 && (mdPageSize < 4096 || mdPageSize > 65536 || (mdPageSize & (mdPageSize - 1)) !== 0)) {
      throw errno(EINVAL);
    }
    const base = bdevs.findBdev(req.bdev_name);
    if (base === undefined) throw errno(ENODEV);
    // spdk_bdev_create_bs_dev_ext opens the base for writing: a claimed bdev refuses.
    if (base.claimed || pendingBases.has(base.name)) throw errno(EPERM);
    // spdk_lvs_init.
    if (clusterSize < base.blockSize || clusterSize % base.blockSize !== 0) throw errno(EINVAL);
    if (pendingStores.has(req.lvs_name) || storeByName(req.lvs_name) !== undefined) throw errno(EEXIST);

    // From here SPDK answers through rpc_lvol_store_construct_cb: -32602 and strerror.
    // spdk_bs_init: clusters are whole 4 KiB pages, at least one metadata page (ratio × clusters
    // / 100) and at least one cluster; metadata pages are max(4 KiB, md_page_size).
    const totalClusters = Math.floor((base.numBlocks * base.blockSize) / clusterSize);
    const badGeometry =
      clusterSize % BS_PAGE_SIZE !== 0 ||
      Math.floor((ratio * totalClusters) / 100) === 0 ||
      clusterSize < Math.max(BS_PAGE_SIZE, mdPageSize);
    // The builtin store's clusters are powers of two (docs/lvol-format.md); SPDK also accepts
    // other multiples of 4 KiB (docs/differences.md).
    if (badGeometry || (clusterSize & (clusterSize - 1)) !== 0) throw completionError(JSONRPC_ERROR_INVALID_PARAMS, EINVAL);

    const info = await reserving(pendingStores, [req.lvs_name], () =>
      reserving(pendingBases, [base.name], () =>
        completion(() => lvols.createLvstore({ bdevName: base.name, lvsName: req.lvs_name, clusterSize, clearMethod })),
      ),
    );
    return info.uuid;
  });

  dispatcher.register('bdev_lvol_rename_lvstore', async (params) => {
    const req = decodeObject(params, RENAME);
    const lvs = storeByName(req.old_name);
    if (lvs === undefined) throw errno(ENOENT, `Lvol store ${req.old_name} not found`);
    // spdk_lvs_rename: the same name succeeds at once; a name another store has (or is being
    // created with) is EEXIST, through the callback.
    if (req.new_name === lvs.name) return true;
    if (pendingStores.has(req.new_name) || storeByName(req.new_name) !== undefined) {
      throw completionError(JSONRPC_ERROR_INVALID_PARAMS, EEXIST);
    }
    // SPDK also compares the new name with every store's `new_name`, which stays empty until that
    // store is renamed: an empty name is EEXIST whenever some store never was (always, in practice;
    // observed on SPDK v25.09). Here it always is.
    if (req.new_name === '') throw completionError(JSONRPC_ERROR_INVALID_PARAMS, EEXIST);
    // SPDK stores an over-long new name (and then truncates it); here a name no lvstore could be
    // created with is refused (docs/differences.md).
    if (!validName(req.new_name)) throw completionError(JSONRPC_ERROR_INVALID_PARAMS, EINVAL);
    await reserving(pendingStores, [req.new_name], () => completion(() => lvols.renameLvstore(lvs.uuid, req.new_name)));
    return true;
  });

  dispatcher.register('bdev_lvol_delete_lvstore', async (params) => {
    const req = decodeObject(params, LVS_UUID_XOR_NAME);
    const lvs = storeByUuidXorName(req.uuid, req.lvs_name);
    await completion(() => lvols.deleteLvstore(lvs.uuid));
    return true;
  });

  dispatcher.register('bdev_lvol_grow_lvstore', async (params) => {
    const req = decodeObject(params, LVS_UUID_XOR_NAME);
    const lvs = storeByUuidXorName(req.uuid, req.lvs_name);
    await completion(() => lvols.growLvstore(lvs.uuid));
    return true;
  });

  dispatcher.register('bdev_lvol_get_lvstores', (params) => {
    if (params === undefined) return lvols.listLvstores().map(lvstoreToJson);
    const req = decodeObject(params, LVS_UUID_XOR_NAME);
    return [lvstoreToJson(storeByUuidXorName(req.uuid, req.lvs_name))];
  });
  dispatcher.registerAlias('bdev_lvol_get_lvstores', 'get_lvol_stores');

  dispatcher.register('bdev_lvol_get_lvols', (params) => {
    let stores = lvols.listLvstores();
    if (params !== undefined) {
      const req = decodeObject(params, GET_LVOLS);
      stores = [storeByUuidXorName(req.lvs_uuid, req.lvs_name)];
    }
    // rpc_dump_lvols: store by store, each store's lvols in creation order.
    const all = lvols.listLvols();
    return stores.flatMap((lvs) => all.filter((l) => l.lvsUuid === lvs.uuid).map((l) => lvolToJson(l, lvs)));
  });

  dispatcher.register('bdev_lvol_create', async (params) => {
    const req = decodeObject(params, CREATE);
    const sizeBytes = requestedSize(req);
    const lvs = storeByUuidXorName(req.uuid, req.lvs_name);
    let clearMethod: LvolClearMethod = lvs.clearMethod; // LVOL_CLEAR_WITH_DEFAULT: the store's
    if (req.clear_method !== undefined) {
      const m = parseClearMethod(req.clear_method);
      if (m === undefined) throw new JsonRpcError(-EINVAL, 'Invalid clean_method option');
      clearMethod = m;
    }
    // spdk_lvol_create checks the name before it starts (-errno); a bdev outside the store
    // already named "<lvs>/<name>" makes _create_lvol_disk's alias_add fail in the callback.
    const nameErr = newLvolNameErrno(lvs, req.lvol_name);
    if (nameErr !== 0) {
      const aliasTaken = validName(req.lvol_name) && !lvolNameTaken(lvs, req.lvol_name);
      throw aliasTaken ? completionError(JSONRPC_ERROR_INVALID_PARAMS, nameErr) : errno(nameErr);
    }
    const thin = req.thin_provision ?? false;
    const lvol = await reserving(pendingLvols, [lvolKey(lvs.uuid, req.lvol_name)], () =>
      completion(() => lvols.createLvol({ lvsUuid: lvs.uuid, name: req.lvol_name, sizeBytes, thin, clearMethod })),
    );
    return lvol.name;
  });

  dispatcher.register('bdev_lvol_snapshot', async (params) => {
    const req = decodeObject(params, SNAPSHOT);
    const lvol = lvolByName(req.lvol_name);
    const lvs = storeOf(lvol);
    // spdk_lvol_create_snapshot reports everything through its callback: the name first, then
    // the blobstore's refusal to snapshot a read-only blob (EINVAL).
    const nameErr = newLvolNameErrno(lvs, req.snapshot_name);
    if (nameErr !== 0) throw completionError(JSONRPC_ERROR_INVALID_PARAMS, nameErr);
    if (lvol.readOnly) throw completionError(JSONRPC_ERROR_INVALID_PARAMS, EINVAL);
    const snap = await reserving(pendingLvols, [lvolKey(lvs.uuid, req.snapshot_name)], () =>
      completion(() => lvols.snapshotLvol(lvol.name, req.snapshot_name)),
    );
    return snap.name;
  });

  dispatcher.register('bdev_lvol_clone', async (params) => {
    const req = decodeObject(params, CLONE);
    const snap = lvolByName(req.snapshot_name);
    const lvs = storeOf(snap);
    // spdk_lvol_create_clone: a missing clone_name fails the name check (EINVAL); the
    // blobstore clones only read-only blobs (EINVAL), all through the callback.
    const nameErr = newLvolNameErrno(lvs, req.clone_name);
    if (nameErr !== 0) throw completionError(JSONRPC_ERROR_INVALID_PARAMS, nameErr);
    if (!snap.readOnly) throw completionError(JSONRPC_ERROR_INVALID_PARAMS, EINVAL);
    const cloneName = req.clone_name as string;
    const clone = await reserving(pendingLvols, [lvolKey(lvs.uuid, cloneName)], () =>
      completion(() => lvols.cloneLvol(snap.name, cloneName)),
    );
    return clone.name;
  });

  dispatcher.register('bdev_lvol_rename', async (params) => {
    const req = decodeObject(params, RENAME);
    const lvol = lvolByName(req.old_name);
    const lvs = storeOf(lvol);
    // vbdev_lvol_rename adds the new alias first: a bdev of that name, this lvol's own current
    // alias included, is EEXIST. Every failure goes through the callback (-32602).
    if (bdevs.findBdev(`${lvs.name}/${req.new_name}`) !== undefined || pendingLvols.has(lvolKey(lvs.uuid, req.new_name))) {
      throw completionError(JSONRPC_ERROR_INVALID_PARAMS, EEXIST);
    }
    // SPDK takes an empty or over-long name here (truncating it); refused (docs/differences.md).
    if (!validName(req.new_name)) throw completionError(JSONRPC_ERROR_INVALID_PARAMS, EINVAL);
    // The blobstore refuses to change a read-only blob's name (EPERM). SPDK has renamed the
    // bdev alias by then and leaves it renamed; here nothing changes (docs/differences.md).
    if (lvol.readOnly) throw completionError(JSONRPC_ERROR_INVALID_PARAMS, EPERM);
    await reserving(pendingLvols, [lvolKey(lvs.uuid, req.new_name)], () => completion(() => lvols.renameLvol(lvol.name, req.new_name)));
    return true;
  });

  dispatcher.register('bdev_lvol_resize', async (params) => {
    const req = decodeObject(params, RESIZE);
    const sizeBytes = requestedSize(req);
    const lvol = lvolByName(req.name);
    // spdk_blob_resize: a read-only blob (snapshot, or set read-only) is EPERM.
    if (lvol.readOnly) throw completionError(JSONRPC_ERROR_INVALID_PARAMS, EPERM);
    await completion(() => lvols.resizeLvol(lvol.name, sizeBytes));
    return true;
  });

  dispatcher.register('bdev_lvol_set_read_only', async (params) => {
    const req = decodeObject(params, NAME);
    const lvol = lvolByName(req.name);
    await completion(() => lvols.setLvolReadOnly(lvol.name));
    return true;
  });

  dispatcher.register('bdev_lvol_delete', async (params) => {
    const req = decodeObject(params, NAME);
    // By bdev name or alias; then, as for degraded lvols (which the builtin store does not
    // have), by the lvol UUID parsed in either case (spdk_uuid_parse) and by "<lvs>/<lvol>".
    const lvol =
      lvols.findLvol(req.name) ??
      (UUID_RE.test(req.name) ? lvols.findLvol(req.name.toLowerCase()) : undefined) ??
      lvolByName(req.name);
    // _vbdev_lvol_destroy: a snapshot with more than one clone cannot go (EPERM), answered
    // by rpc_bdev_lvol_delete_cb with -32603.
    if ((lvol.driverSpecific.clones?.length ?? 0) > 1) throw completionError(JSONRPC_ERROR_INTERNAL_ERROR, EPERM);
    await completion(() => lvols.deleteLvol(lvol.name), JSONRPC_ERROR_INTERNAL_ERROR);
    return true;
  });

  dispatcher.register('bdev_lvol_inflate', async (params) => {
    const req = decodeObject(params, NAME);
    const lvol = lvolByName(req.name);
    await completion(() => lvols.inflateLvol(lvol.name));
    return true;
  });

  dispatcher.register('bdev_lvol_decouple_parent', async (params) => {
    const req = decodeObject(params, NAME);
    const lvol = lvolByName(req.name);
    // bs_inflate_blob_open_cpl: decoupling a blob without a parent is EINVAL.
    if (!lvol.driverSpecific.clone) throw completionError(JSONRPC_ERROR_INVALID_PARAMS, EINVAL);
    await completion(() => lvols.decoupleLvolParent(lvol.name));
    return true;
  });
}

/** One bdev_lvol_get_lvstores entry (rpc_dump_lvol_store_info): SPDK's keys in SPDK's order. */
export function lvstoreToJson(s: LvstoreInfo): Record<string, unknown> {
  return {
    uuid: s.uuid.toLowerCase(),
    name: s.name,
    base_bdev: s.baseBdev,
    total_data_clusters: s.totalDataClusters,
    free_clusters: s.freeClusters,
    block_size: s.blockSize,
    cluster_size: s.clusterSize,
  };
}

/** One bdev_lvol_get_lvols entry (rpc_dump_lvol): SPDK's keys in SPDK's order. */
export function lvolToJson(l: LvolBdevInfo, lvs: LvstoreInfo): Record<string, unknown> {
  const ds = l.driverSpecific;
  return {
    alias: `${lvs.name}/${l.lvolName}`,
    uuid: l.uuid.toLowerCase(),
    name: l.lvolName,
    is_thin_provisioned: ds.thin_provision,
    is_snapshot: ds.snapshot,
    is_clone: ds.clone,
    is_esnap_clone: ds.esnap_clone ?? false,
    // Degraded lvols are esnap clones whose external snapshot is missing; the builtin store
    // has no external snapshots.
    is_degraded: false,
    num_allocated_clusters: ds.num_allocated_clusters,
    lvs: { name: lvs.name, uuid: lvs.uuid.toLowerCase() },
  };
}

