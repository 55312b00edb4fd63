import { setTimeout as sleep } from 'node:timers/promises';
import type { BdevBackend, BdevInfo } from '../../engine/types';
import { decodeObject, Decoded } from '../decode';
import type { Dispatcher } from '../dispatcher';
import { JsonRpcError } from '../errors';
import { bdevToJson, currentTicks, iostatToJson } from './bdev-json';

const ENOMEM = 12;
const EEXIST = 17;
const ENODEV = 19;
const EINVAL = 22;
const EOPNOTSUPP = 95;
const ETIMEDOUT = 110;

const NULL_UUID = '00000000-0000-0000-0000-000000000000';
const MALLOC_MD_SIZES = [0, 8, 16, 32, 64, 128];

// Decoder tables of v25.09's RPC handlers; field names, types and optionality as in SPDK.
const MALLOC_CREATE = {
  name: { type: 'string', optional: true },
  uuid: { type: 'uuid', optional: true },
  num_blocks: { type: 'uint64' },
  block_size: { type: 'uint32' },
  physical_block_size: { type: 'uint32', optional: true },
  optimal_io_boundary: { type: 'uint32', optional: true },
  md_size: { type: 'uint32', optional: true },
  md_interleave: { type: 'bool', optional: true },
  dif_type: { type: 'int32', optional: true },
  dif_is_head_of_md: { type: 'bool', optional: true },
  dif_pi_format: { type: 'uint32', optional: true },
} as const; // module/bdev/malloc/bdev_malloc_rpc.c

const AIO_CREATE = {
  name: { type: 'string' },
  filename: { type: 'string' },
  block_size: { type: 'uint32', optional: true },
  readonly: { type: 'bool', optional: true },
  fallocate: { type: 'bool', optional: true },
  uuid: { type: 'uuid', optional: true },
} as const; // module/bdev/aio/bdev_aio_rpc.c

const URING_CREATE = {
  name: { type: 'string' },
  filename: { type: 'string' },
  block_size: { type: 'uint32', optional: true },
  uuid: { type: 'uuid', optional: true },
} as const; // module/bdev/uring/bdev_uring_rpc.c

const DELETE = { name: { type: 'string' } } as const;

const GET_BDEVS = {
  name: { type: 'string', optional: true },
  timeout: { type: 'uint64', optional: true },
} as const; // lib/bdev/bdev_rpc.c

const GET_IOSTAT = {
  name: { type: 'string', optional: true },
  per_channel: { type: 'bool', optional: true },
  reset_mode: { type: 'string', optional: true, values: ['all', 'maxmin', 'none'] },
} as const; // lib/bdev/bdev_rpc.c

function errno(e: number): JsonRpcError {
  return JsonRpcError.fromErrno(e);
}

/**
 * A parameter value SPDK accepts but the builtin engine cannot honour: -95 with strerror's
 * "Operation not supported" and what exactly (a documented difference; nothing is created).
 */
function unsupported(what: string): JsonRpcError {
  return new JsonRpcError(-EOPNOTSUPP, `Operation not supported: ${what} is not supported by spdk-node's builtin engine`);
}

/** A uuid param as the bdev layer sees it: the null UUID means "generate one". */
function givenUuid(uuid: string | undefined): string | undefined {
  return uuid === undefined || uuid === NULL_UUID ? undefined : uuid;
}

/**
 * Registers SPDK's bdev_malloc_*, bdev_aio_*, bdev_uring_*, bdev_get_bdevs and bdev_get_iostat
 * over `backend`, with v25.09's parameters, validation, results and error codes. All are
 * RUNTIME methods, as in SPDK.
 */
export function registerBdevMethods(dispatcher: Dispatcher, backend: BdevBackend): void {
  // bdev_malloc.c's malloc_disk_count: bumped for every generated name, used or not.
  let mallocDiskCount = 0;

  /** bdev_register's name/UUID checks, made before the engine is asked to create anything. */
  const checkNewBdev = (name: string, uuid: string | undefined): void => {
    if (name === '') throw errno(EINVAL);
    if (backend.findBdev(name) !== undefined) throw errno(EEXIST);
    if (uuid !== undefined && backend.findBdev(uuid) !== undefined) throw errno(EEXIST);
  };

  /** spdk_bdev_unregister_by_name: open by name/alias/UUID; another module's bdev is ENODEV. */
  const deleteOf = (driver: string) => async (params: unknown) => {
    const req = decodeObject(params, DELETE);
    const info = backend.findBdev(req.name);
    if (info === undefined || info.driver !== driver) throw errno(ENODEV);
    await backend.deleteBdev(info.name, driver);
    return true;
  };

  // bdev_aio_rescan / bdev_uring_rescan: decode failure -32603; bdev_*_rescan's errors as -errno
  // with strerror text (-19 for an unknown bdev or one of another module, -16 when shrinking a
  // bdev that is open or claimed).
  const rescanOf = (driver: 'aio' | 'uring') => (params: unknown) => {
    const req = decodeObject(params, DELETE);
    const info = backend.findBdev(req.name);
    if (info === undefined || info.driver !== driver) throw errno(ENODEV);
    backend.rescanFileBdev(info.name, driver);
    return true;
  };

  const createMalloc = (req: Decoded<typeof MALLOC_CREATE>): string => {
    const mdSize = req.md_size ?? 0;
    const difType = req.dif_type ?? 0;
    const physicalBlockSize = req.physical_block_size ?? 0;
    // create_malloc_disk's checks, in its order.
    if (req.num_blocks === 0) throw errno(EINVAL);
    if (req.block_size % 512 !== 0) throw errno(EINVAL);
    if (physicalBlockSize % 512 !== 0) throw errno(EINVAL);
    if (!MALLOC_MD_SIZES.includes(mdSize)) throw errno(EINVAL);
    // block_size 0 passes the checks above; SPDK then fails spdk_zmalloc(0) with -ENOMEM.
    if (req.block_size === 0) throw errno(ENOMEM);
    // spdk_dif_ctx_init: a DIF type needs metadata at least as large as the DIF.
    if (difType !== 0 && mdSize === 0) throw errno(EINVAL);

    // Values that change nothing in SPDK either (md_interleave without metadata,
    // dif_is_head_of_md / dif_pi_format without DIF) are accepted; the rest is not modelled.
    if (mdSize !== 0) throw unsupported(`md_size ${mdSize} (metadata)`);
    if (physicalBlockSize !== 0 && physicalBlockSize !== req.block_size) {
      throw unsupported(`physical_block_size ${physicalBlockSize} different from block_size`);
    }
    if ((req.optimal_io_boundary ?? 0) !== 0) throw unsupported('optimal_io_boundary');

    const name = req.name ?? `Malloc${mallocDiskCount++}`;
    const uuid = givenUuid(req.uuid);
    checkNewBdev(name, uuid);
    const info = backend.createMallocBdev({ name, numBlocks: req.num_blocks, blockSize: req.block_size, uuid });
    return info.name;
  };

  dispatcher.register('bdev_malloc_create', (params) => {
    const req = decodeObject(params, MALLOC_CREATE);
    return createMalloc(req);
  });
  dispatcher.register('bdev_malloc_delete', deleteOf('malloc'));

  dispatcher.register('bdev_aio_create', (params) => {
    const req = decodeObject(params, AIO_CREATE);
    // fallocate: SPDK then serves unmap/write_zeroes with fallocate(). The builtin file bdev
    // always does (falling back to writing zeroes where the file system cannot), so the flag
    // only changes what driver_specific reports.
    const uuid = givenUuid(req.uuid);
    checkNewBdev(req.name, uuid);
    backend.createFileBdev({
      name: req.name,
      filename: req.filename,
      blockSize: req.block_size ?? 0,
      readOnly: req.readonly ?? false,
      driver: 'aio',
      fallocate: req.fallocate ?? false,
      uuid,
    });
    return req.name;
  });

  dispatcher.register('bdev_aio_delete', deleteOf('aio'));

  // bdev_rpc.c: no params; answers true once examination is done (builtin bdevs have no examine
  // step, so at once).
  dispatcher.register('bdev_wait_for_examine', (params) => {
    if (params !== undefined) throw JsonRpcError.invalidParams('bdev_wait_for_examine requires no parameters');
    return true;
  });

  dispatcher.register('bdev_uring_create', (params) => {
    const req = decodeObject(params, URING_CREATE);
    // rpc_bdev_uring_create answers every failure of create_uring_bdev the same way.
    try {
      const uuid = givenUuid(req.uuid);
      checkNewBdev(req.name, uuid);
      backend.createFileBdev({
        name: req.name,
        filename: req.filename,
        blockSize: req.block_size ?? 0,
        readOnly: false,
        driver: 'uring',
        uuid,
      });
    } catch {
      throw JsonRpcError.internal('Unable to create URING bdev.');
    }
    return req.name;
  });

  dispatcher.register('bdev_uring_delete', deleteOf('uring'));
  dispatcher.register('bdev_aio_rescan', rescanOf('aio'));
  dispatcher.register('bdev_uring_rescan', rescanOf('uring'));

  dispatcher.register('bdev_get_bdevs', async (params, ctx) => {
    const req: Decoded<typeof GET_BDEVS> = params === undefined ? {} : decodeObject(params, GET_BDEVS);
    if (req.name === undefined) {
      // One listing for the whole answer: each lvol's entry looks its base bdev up, and
      // backend.findBdev lists every bdev again (quadratic in the number of lvols).
      const all = backend.listBdevs();
      const index = bdevIndex(all);
      return all.map((b) => bdevToJson(b, index));
    }
    return [bdevToJson(await openAsync(backend, req.name, req.timeout ?? 0, ctx.signal), backend)];
  });

  dispatcher.register('bdev_get_iostat', (params) => {
    const req: Decoded<typeof GET_IOSTAT> = params === undefined ? {} : decodeObject(params, GET_IOSTAT);
    if (req.per_channel === true && req.name === undefined) throw errno(EINVAL);
    let bdevs: BdevInfo[];
    if (req.name !== undefined) {
      const info = backend.findBdev(req.name);
      if (info === undefined) throw errno(ENODEV);
      bdevs = [info];
    } else {
      bdevs = backend.listBdevs();
    }
    if (req.per_channel === true) throw unsupported('per_channel statistics');
    // "maxmin" resets max/min latencies, which the engine does not track (always 0).
    if (req.reset_mode === 'all') throw unsupported('reset_mode "all"');
    const tickRate = backend.tickRate();
    return {
      tick_rate: Math.round(tickRate),
      ticks: currentTicks(tickRate),
      bdevs: bdevs.map((b) => iostatToJson(b.name, backend.bdevStats(b.name))),
    };
  });
}

/**
 * A name/UUID/alias lookup over one listing, answering as BdevBackend.findBdev does (the first
 * bdev in list order that has the key as its name, UUID or an alias).
 */
export function bdevIndex(all: BdevInfo[]): { findBdev(name: string): BdevInfo | undefined } {
  const byKey = new Map<string, BdevInfo>();
  for (const b of all) {
    for (const k of [b.name, b.uuid, ...b.aliases]) if (!byKey.has(k)) byKey.set(k, b);
  }
  return { findBdev: (name) => byKey.get(name) };
}

/**
 * spdk_bdev_open_async as bdev_get_bdevs uses it: look the name up now; with timeout 0 a miss is
 * -ENODEV; otherwise retry every 100 ms and answer -ETIMEDOUT when the bdev has not appeared by
 * the time a retry finds the deadline passed.
 */
async function openAsync(backend: BdevBackend, name: string, timeoutMs: number, signal?: AbortSignal): Promise<BdevInfo> {
  const start = Date.now();
  for (;;) {
    const info = backend.findBdev(name);
    if (info !== undefined) return info;
    if (timeoutMs === 0) throw errno(ENODEV);
    if (Date.now() - start >= timeoutMs) throw errno(ETIMEDOUT);
    await sleep(100, undefined, { signal });
  }
}
