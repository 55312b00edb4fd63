/** What the provisioner returns, made from what the nodes report. */
import { InternalError } from './errors';
import type { DerivedSource, Lookup } from './lineage';
import type { LvolInfo, PoolInfo, StorageNode } from './node';
import type { PoolCapacity, Snapshot, Volume, VolumeSource } from './types';

export function volumeOf(node: StorageNode, l: LvolInfo, derived: DerivedSource): Volume {
  let source: VolumeSource | undefined;
  if (derived.kind === 'snapshot') source = { snapshotId: `${node.name}:${derived.uuid}` };
  else if (derived.kind === 'volume') source = { volumeId: `${node.name}:${derived.uuid}` };
  const v: Volume = {
    id: `${node.name}:${l.uuid}`,
    name: l.parsed.kind === 'volume' ? l.parsed.name : l.lvolName,
    node: node.name,
    pool: l.pool.name,
    uuid: l.uuid,
    sizeBytes: l.sizeBytes,
    thin: l.thin,
    allocatedBytes: l.allocatedClusters * l.pool.clusterSize,
    topology: { ...node.labels },
  };
  if (source !== undefined) v.source = source;
  return v;
}

export function snapshotOf(node: StorageNode, l: LvolInfo): Snapshot {
  if (l.parsed.kind !== 'snapshot') throw new InternalError('snapshot', `lvol ${l.uuid} is not a snapshot`);
  return {
    id: `${node.name}:${l.uuid}`,
    name: l.parsed.name,
    node: node.name,
    pool: l.pool.name,
    uuid: l.uuid,
    sourceVolumeId: `${node.name}:${l.parsed.source}`,
    sizeBytes: l.sizeBytes,
    allocatedBytes: l.allocatedClusters * l.pool.clusterSize,
    createdAt: l.parsed.createdAt,
    readyToUse: true,
  };
}

export function byId(a: { id: string }, b: { id: string }): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** Lookups by lvol name in one scan's lvols. */
export function inMemoryLookup(lvols: LvolInfo[]): (pool: PoolInfo) => Lookup {
  const byName = new Map(lvols.map((l) => [`${l.pool.uuid}/${l.lvolName}`, l]));
  return (pool) => async (name) => byName.get(`${pool.uuid}/${name}`);
}

export function describe(c: PoolCapacity): string {
  return `${c.node}/${c.pool}: ${c.freeBytes} bytes free, ${c.provisionedBytes} of ${c.maxProvisionedBytes} provisioned`;
}

type Sums = { totalBytes: number; freeBytes: number; provisionedBytes: number; availableThinBytes: number; availableThickBytes: number };

/** Totals of pools (or nodes); the available sizes are the largest of one pool, not sums. */
export function sums(list: Sums[]): Sums {
  return {
    totalBytes: list.reduce((a, c) => a + c.totalBytes, 0),
    freeBytes: list.reduce((a, c) => a + c.freeBytes, 0),
    provisionedBytes: list.reduce((a, c) => a + c.provisionedBytes, 0),
    availableThinBytes: list.reduce((a, c) => Math.max(a, c.availableThinBytes), 0),
    availableThickBytes: list.reduce((a, c) => Math.max(a, c.availableThickBytes), 0),
  };
}
