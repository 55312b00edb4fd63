/**
 * Capacity of pools as the storage reports it, the thin over-commit limit, and placement.
 */
import type { LvolInfo, PoolInfo, StorageNode } from './node';
import type { PoolCapacity } from './types';

export const MIB = 1024 * 1024;

/**
 * The size an lvol of at least `sizeBytes` gets in a pool: whole MiB (bdev_lvol_create and
 * bdev_lvol_resize take size_in_mib), then whole clusters (the blobstore's unit).
 */
export function effectiveSize(sizeBytes: number, clusterSize: number): number {
  const mib = Math.ceil(sizeBytes / MIB) * MIB;
  return Math.ceil(mib / clusterSize) * clusterSize;
}

/**
 * Every managed pool's capacity. Provisioned bytes count every writable lvol at its full size
 * (volumes, volumes being built, and lvols the provisioner did not make), but not the owner
 * marker: it never holds a cluster.
 */
export function poolCapacities(node: StorageNode, pools: PoolInfo[], lvols: LvolInfo[]): PoolCapacity[] {
  return pools.map((p) => {
    let provisioned = 0;
    for (const l of lvols) {
      if (l.pool.uuid === p.uuid && !l.snapshot && l.parsed.kind !== 'marker') provisioned += l.sizeBytes;
    }
    return capacityOf(node, p, provisioned);
  });
}

export function capacityOf(node: StorageNode, p: PoolInfo, provisionedBytes: number): PoolCapacity {
  const totalBytes = p.totalClusters * p.clusterSize;
  const freeBytes = p.freeClusters * p.clusterSize;
  const overcommit = node.overcommit(p.name);
  const maxProvisionedBytes = Math.floor(overcommit * totalBytes);
  const headroom = Math.max(0, maxProvisionedBytes - provisionedBytes);
  // The largest size that is a whole number of clusters and MiB (what a request can be given).
  const unit = Math.max(p.clusterSize, MIB);
  const floorTo = (v: number): number => Math.floor(v / unit) * unit;
  return {
    node: node.name,
    pool: p.name,
    poolUuid: p.uuid,
    clusterSize: p.clusterSize,
    totalBytes,
    freeBytes,
    provisionedBytes,
    overcommit,
    maxProvisionedBytes,
    availableThinBytes: floorTo(headroom),
    availableThickBytes: floorTo(Math.min(headroom, freeBytes)),
  };
}

/**
 * Whether a new volume of `sizeBytes` (already effective for this pool) fits: thin volumes
 * within the over-commit headroom; thick ones within the free clusters too.
 */
export function fits(c: PoolCapacity, sizeBytes: number, thin: boolean): boolean {
  if (c.provisionedBytes + sizeBytes > c.maxProvisionedBytes) return false;
  return thin || sizeBytes <= c.freeBytes;
}

/** Whether labels satisfy one of the topology segments (none or empty: any). */
export function matchesTopology(labels: Readonly<Record<string, string>>, topology: Array<Record<string, string>> | undefined): boolean {
  if (topology === undefined || topology.length === 0) return true;
  return topology.some((seg) => Object.entries(seg).every(([k, v]) => labels[k] === v));
}

/** Most free bytes first; equal ones by node name, then pool name (deterministic). */
export function byPlacementOrder(a: PoolCapacity, b: PoolCapacity): number {
  if (a.freeBytes !== b.freeBytes) return b.freeBytes - a.freeBytes;
  if (a.node !== b.node) return a.node < b.node ? -1 : 1;
  return a.pool < b.pool ? -1 : a.pool > b.pool ? 1 : 0;
}
