/**
 * Parameter and result types of the JSON-RPC methods spdk-node serves, by SPDK method name, for
 * `spdk.rpc.call(method, params)`. Names and shapes are SPDK v25.09's.
 * A method whose `params` is `undefined` takes none.
 */
import type { LvolDriverSpecific } from '../engine/types';

export interface SpdkVersion {
  version: string;
  fields: { major: number; minor: number; patch: number; suffix: string; commit?: string };
}

export interface BdevMallocCreateParams {
  name?: string;
  uuid?: string;
  num_blocks: number;
  block_size: number;
  physical_block_size?: number;
  optimal_io_boundary?: number;
  md_size?: number;
  md_interleave?: boolean;
  dif_type?: number;
  dif_is_head_of_md?: boolean;
  dif_pi_format?: number;
}

export interface BdevAioCreateParams {
  name: string;
  filename: string;
  block_size?: number;
  readonly?: boolean;
  fallocate?: boolean;
  uuid?: string;
}

export interface BdevUringCreateParams {
  name: string;
  filename: string;
  block_size?: number;
  uuid?: string;
}

export interface BdevGetBdevsParams {
  name?: string;
  /** Milliseconds to wait for `name` to appear (0 = answer at once). */
  timeout?: number;
}

export interface BdevGetIostatParams {
  name?: string;
  per_channel?: boolean;
  reset_mode?: 'all' | 'maxmin' | 'none';
}

/** One bdev_get_bdevs entry (keys in SPDK's order). */
export interface BdevJson {
  name: string;
  aliases: string[];
  product_name: string;
  block_size: number;
  num_blocks: number;
  preferred_write_alignment: number;
  preferred_write_granularity: number;
  optimal_write_size: number;
  preferred_unmap_alignment: number;
  preferred_unmap_granularity: number;
  uuid: string;
  numa_id?: number;
  assigned_rate_limits: Record<'rw_ios_per_sec' | 'rw_mbytes_per_sec' | 'r_mbytes_per_sec' | 'w_mbytes_per_sec', number>;
  claimed: boolean;
  claim_type?: string;
  zoned: boolean;
  supported_io_types: Record<string, boolean>;
  memory_domains?: { dma_device_id: string; dma_device_type: number }[];
  driver_specific: Record<string, unknown>;
}

/** One bdev_get_iostat `bdevs` entry. */
export interface BdevIostatJson {
  name: string;
  bytes_read: number;
  num_read_ops: number;
  bytes_written: number;
  num_write_ops: number;
  bytes_unmapped: number;
  num_unmap_ops: number;
  bytes_copied: number;
  num_copy_ops: number;
  read_latency_ticks: number;
  max_read_latency_ticks: number;
  min_read_latency_ticks: number;
  write_latency_ticks: number;
  max_write_latency_ticks: number;
  min_write_latency_ticks: number;
  unmap_latency_ticks: number;
  max_unmap_latency_ticks: number;
  min_unmap_latency_ticks: number;
  copy_latency_ticks: number;
  max_copy_latency_ticks: number;
  min_copy_latency_ticks: number;
  io_error: Record<string, number>;
}

export interface BdevGetIostatResult {
  tick_rate: number;
  ticks: number;
  bdevs: BdevIostatJson[];
}

export type LvolClearMethodParam = 'none' | 'unmap' | 'write_zeroes';

export interface BdevLvolCreateLvstoreParams {
  bdev_name: string;
  lvs_name: string;
  /** Bytes; default 4 MiB. */
  cluster_sz?: number;
  clear_method?: LvolClearMethodParam;
  num_md_pages_per_cluster_ratio?: number;
  md_page_size?: number;
}

/** Exactly one of `uuid` and `lvs_name`. */
export interface LvstoreSelector {
  uuid?: string;
  lvs_name?: string;
}

/** One bdev_lvol_get_lvstores entry (keys in SPDK's order). */
export interface LvstoreJson {
  uuid: string;
  name: string;
  base_bdev: string;
  total_data_clusters: number;
  free_clusters: number;
  block_size: number;
  cluster_size: number;
}

export interface BdevLvolCreateParams {
  lvol_name: string;
  /** The size in MiB (SPDK v25.09); or the legacy `size`. */
  size_in_mib?: number;
  /** spdk-node extension: the size in bytes, as SPDK before v24.05 took it (Cinder, spdk-csi). */
  size?: number;
  thin_provision?: boolean;
  /** The lvstore's UUID; or `lvs_name`. */
  uuid?: string;
  lvs_name?: string;
  clear_method?: LvolClearMethodParam;
}

/** One bdev_lvol_get_lvols entry (keys in SPDK's order). */
export interface LvolJson {
  alias: string;
  uuid: string;
  name: string;
  is_thin_provisioned: boolean;
  is_snapshot: boolean;
  is_clone: boolean;
  is_esnap_clone: boolean;
  is_degraded: boolean;
  num_allocated_clusters: number;
  lvs: { name: string; uuid: string };
}

/** driver_specific.lvol of an lvol's bdev_get_bdevs entry: the engine reports it in SPDK's shape. */
export type LvolDriverSpecificJson = LvolDriverSpecific;

/** Method name → its params and result. */
export interface RpcMethods {
  rpc_get_methods: { params: { current?: boolean; include_aliases?: boolean }; result: string[] };
  spdk_get_version: { params: undefined; result: SpdkVersion };
  framework_wait_init: { params: undefined; result: true };
  framework_start_init: { params: undefined; result: true };
  bdev_malloc_create: { params: BdevMallocCreateParams; result: string };
  bdev_malloc_delete: { params: { name: string }; result: true };
  bdev_aio_create: { params: BdevAioCreateParams; result: string };
  bdev_aio_delete: { params: { name: string }; result: true };
  bdev_uring_create: { params: BdevUringCreateParams; result: string };
  bdev_uring_delete: { params: { name: string }; result: true };
  bdev_get_bdevs: { params: BdevGetBdevsParams; result: BdevJson[] };
  bdev_get_iostat: { params: BdevGetIostatParams; result: BdevGetIostatResult };
  bdev_lvol_create_lvstore: { params: BdevLvolCreateLvstoreParams; result: string };
  bdev_lvol_get_lvstores: { params: LvstoreSelector; result: LvstoreJson[] };
  bdev_lvol_delete_lvstore: { params: LvstoreSelector; result: true };
  bdev_lvol_rename_lvstore: { params: { old_name: string; new_name: string }; result: true };
  bdev_lvol_grow_lvstore: { params: LvstoreSelector; result: true };
  bdev_lvol_create: { params: BdevLvolCreateParams; result: string };
  bdev_lvol_get_lvols: { params: { lvs_uuid?: string; lvs_name?: string }; result: LvolJson[] };
  bdev_lvol_delete: { params: { name: string }; result: true };
  bdev_lvol_resize: { params: { name: string; size_in_mib?: number; size?: number }; result: true };
  bdev_lvol_set_read_only: { params: { name: string }; result: true };
  bdev_lvol_rename: { params: { old_name: string; new_name: string }; result: true };
  bdev_lvol_snapshot: { params: { lvol_name: string; snapshot_name: string }; result: string };
  bdev_lvol_clone: { params: { snapshot_name: string; clone_name: string }; result: string };
  bdev_lvol_inflate: { params: { name: string }; result: true };
  bdev_lvol_decouple_parent: { params: { name: string }; result: true };
}
