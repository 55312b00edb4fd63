import type { BdevInfo, BdevStats, LvolDriverSpecific } from '../../engine/types';

/** SPDK's I/O type names in enum order (g_io_type_strings in lib/bdev/bdev.c, v25.09). */
export const BDEV_IO_TYPE_NAMES = [
  'read',
  'write',
  'unmap',
  'flush',
  'reset',
  'nvme_admin',
  'nvme_io',
  'nvme_io_md',
  'write_zeroes',
  'zcopy',
  'get_zone_info',
  'zone_management',
  'zone_append',
  'compare',
  'compare_and_write',
  'abort',
  'seek_hole',
  'seek_data',
  'copy',
  'nvme_iov_md',
  'nvme_nssr',
] as const;

/** QoS rate limit names in enum order (qos_rpc_type in lib/bdev/bdev.c). */
const QOS_RATE_LIMIT_NAMES = ['rw_ios_per_sec', 'rw_mbytes_per_sec', 'r_mbytes_per_sec', 'w_mbytes_per_sec'];

interface MemoryDomain {
  dma_device_id: string;
  dma_device_type: number;
}

/**
 * What SPDK's bdev modules contribute to bdev_get_bdevs beyond the bdev's fields:
 * - malloc has no dump_info_json (its driver_specific is `{}`), and its get_memory_domains
 *   reports every memory domain of the process: in an SPDK app the "system" domain
 *   (SPDK_DMA_DEVICE_TYPE_DMA = 1, lib/dma/dma.c) and the accel framework's
 *   "SPDK_ACCEL_DMA_DEVICE" (SPDK_DMA_DEVICE_TYPE_ACCEL = 2, lib/accel/accel.c)
 *   (module/bdev/malloc/bdev_malloc.c);
 * - aio and uring write `driver_specific.<module>` and have no memory domains.
 * Drivers not listed write `driver_specific.<driver>` and have no memory domains.
 */
const MODULE_TRAITS: Record<string, { dumpsInfo: boolean; memoryDomains: MemoryDomain[] }> = {
  malloc: {
    dumpsInfo: false,
    memoryDomains: [
      { dma_device_id: 'system', dma_device_type: 1 },
      { dma_device_id: 'SPDK_ACCEL_DMA_DEVICE', dma_device_type: 2 },
    ],
  },
};

/**
 * A bdev_get_bdevs entry with SPDK's keys in SPDK's order (rpc_dump_bdev_info in
 * lib/bdev/bdev_rpc.c, v25.09). Fields the engines do not model take the values SPDK writes for
 * malloc/aio/uring bdevs: the preferred_* / optimal_write_size hints 0, no numa_id, no metadata
 * keys (md_size 0), no QoS limits (all 0), zoned false.
 *
 * - `aliases`: SPDK's bdev layer adds the UUID as the first alias of every bdev whose name is not
 *   its UUID (bdev_register); it is added here when the engine does not list it.
 * - `claim_type` (written only when claimed): "read_many_write_one", the claim an lvstore takes
 *   on its base bdev (module/blob/bdev/blob_bdev.c), or "exclusive_write", the NVMe-oF target's
 *   claim on a namespace's bdev (lib/nvmf/subsystem.c), as the engine reports it.
 * - `supported_io_types`: the engine's read/write/flush/unmap/write_zeroes; every other type is
 *   false because the engine does not implement it (SPDK's malloc also reports reset, zcopy,
 *   abort and copy; aio reports reset).
 * - lvols (module/bdev/lvol/vbdev_lvol.c): product_name "Logical Volume"; name = UUID, so the
 *   only alias is "<lvs>/<lvol>"; write, unmap and write_zeroes false when read-only
 *   (vbdev_lvol_io_type_supported); the base bdev's memory domains
 *   (vbdev_lvol_get_memory_domains, which needs `bdevs` to find the base); driver_specific.lvol
 *   in vbdev_lvol_dump_info_json's key order.
 */
export function bdevToJson(info: BdevInfo, bdevs?: { findBdev(name: string): BdevInfo | undefined }): Record<string, unknown> {
  const uuid = info.uuid.toLowerCase();
  const aliases = [...info.aliases];
  if (info.name !== uuid && !aliases.some((a) => a.toLowerCase() === uuid)) aliases.unshift(uuid);
  const lvol = info.driver === 'lvol';
  let traits = MODULE_TRAITS[info.driver] ?? { dumpsInfo: true, memoryDomains: [] };
  if (lvol) {
    const base = bdevs?.findBdev(String(info.driverSpecific.base_bdev));
    traits = { dumpsInfo: true, memoryDomains: (base && MODULE_TRAITS[base.driver]?.memoryDomains) ?? [] };
  }
  const ioTypes = { ...(info.ioTypes as Record<string, boolean | undefined>) };
  if (lvol && info.readOnly) ioTypes.write = ioTypes.unmap = ioTypes.write_zeroes = false;

  const out: Record<string, unknown> = {
    name: info.name,
    aliases,
    product_name: lvol ? 'Logical Volume' : info.productName,
    block_size: info.blockSize,
    num_blocks: info.numBlocks,
    preferred_write_alignment: 0,
    preferred_write_granularity: 0,
    optimal_write_size: 0,
    preferred_unmap_alignment: 0,
    preferred_unmap_granularity: 0,
    uuid,
    assigned_rate_limits: Object.fromEntries(QOS_RATE_LIMIT_NAMES.map((n) => [n, 0])),
    claimed: info.claimed,
  };
  if (info.claimed) out.claim_type = info.claimType ?? 'read_many_write_one';
  out.zoned = false;
  out.supported_io_types = Object.fromEntries(BDEV_IO_TYPE_NAMES.map((t) => [t, ioTypes[t] === true]));
  if (traits.memoryDomains.length > 0) out.memory_domains = traits.memoryDomains.map((d) => ({ ...d }));
  if (lvol) out.driver_specific = { lvol: lvolDriverSpecific(info.driverSpecific as unknown as LvolDriverSpecific) };
  else out.driver_specific = traits.dumpsInfo ? { [info.driver]: info.driverSpecific } : {};
  return out;
}

/** vbdev_lvol_dump_info_json: base_snapshot only for clones, clones only when there are some. */
function lvolDriverSpecific(ds: LvolDriverSpecific): Record<string, unknown> {
  const out: Record<string, unknown> = {
    lvol_store_uuid: ds.lvol_store_uuid,
    base_bdev: ds.base_bdev,
    thin_provision: ds.thin_provision,
    num_allocated_clusters: ds.num_allocated_clusters,
    snapshot: ds.snapshot,
    clone: ds.clone,
  };
  if (ds.clone && ds.base_snapshot !== undefined) out.base_snapshot = ds.base_snapshot;
  if (ds.snapshot && ds.clones !== undefined && ds.clones.length > 0) out.clones = [...ds.clones];
  out.esnap_clone = ds.esnap_clone ?? false;
  return out;
}

/**
 * One bdev_get_iostat entry: `name`, then spdk_bdev_dump_io_stat_json's keys in its order
 * (lib/bdev/bdev.c). The engine does not track copies or per-I/O max/min latencies; those are 0,
 * which is also what SPDK reports for a min/max that has seen no I/O. `io_error` lists non-zero
 * error counts by status name; the engine counts failures only, reported as "failed".
 */
export function iostatToJson(name: string, s: BdevStats): Record<string, unknown> {
  return {
    name,
    bytes_read: s.bytesRead,
    num_read_ops: s.numReadOps,
    bytes_written: s.bytesWritten,
    num_write_ops: s.numWriteOps,
    bytes_unmapped: s.bytesUnmapped,
    num_unmap_ops: s.numUnmapOps,
    bytes_copied: 0,
    num_copy_ops: 0,
    read_latency_ticks: s.readLatencyTicks,
    max_read_latency_ticks: 0,
    min_read_latency_ticks: 0,
    write_latency_ticks: s.writeLatencyTicks,
    max_write_latency_ticks: 0,
    min_write_latency_ticks: 0,
    unmap_latency_ticks: s.unmapLatencyTicks,
    max_unmap_latency_ticks: 0,
    min_unmap_latency_ticks: 0,
    copy_latency_ticks: 0,
    max_copy_latency_ticks: 0,
    min_copy_latency_ticks: 0,
    io_error: s.ioErrors > 0 ? { failed: s.ioErrors } : {},
  };
}

/**
 * A tick counter at `tickRate` ticks per second on a monotonic clock, for bdev_get_iostat's
 * `ticks` (SPDK's spdk_get_ticks). Only differences between two readings are meaningful, as
 * with SPDK's TSC.
 */
export function currentTicks(tickRate: number): number {
  return Number((process.hrtime.bigint() * BigInt(Math.round(tickRate))) / 1_000_000_000n);
}
