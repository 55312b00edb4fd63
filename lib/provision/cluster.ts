/**
 * The storage nodes of one provisioner: looking them up, ids, searching them by name, and the
 * discipline every change follows (the node's lock, claim and sweep before the first change,
 * the owner check before each one).
 */
import { InvalidArgument, NotFound, ProvisionError } from './errors';
import { sweep } from './lineage';
import { encodeSnapshotName, isUuid } from './names';
import { LvolInfo, PoolInfo, StorageNode, StorageNodeConfig } from './node';
import { checkOwner, claimPool, Owner } from './ownership';

export type Found = { node: StorageNode; lvol: LvolInfo };

/** @internal */
export class Cluster {
  private readonly nodeMap = new Map<string, StorageNode>();

  constructor(
    configs: StorageNodeConfig[],
    overcommit: number,
    private readonly owner: Owner,
  ) {
    const op = 'provisioner';
    if (!Array.isArray(configs) || configs.length === 0) throw new InvalidArgument(op, 'nodes must list at least one storage node');
    try {
      for (const cfg of configs) {
        const n = new StorageNode(cfg, overcommit);
        if (this.nodeMap.has(n.name)) {
          void n.close();
          throw new InvalidArgument(op, `two nodes are named '${n.name}'`);
        }
        this.nodeMap.set(n.name, n);
      }
    } catch (e) {
      void this.close();
      throw e;
    }
  }

  get names(): string[] {
    return [...this.nodeMap.keys()];
  }

  get all(): StorageNode[] {
    return [...this.nodeMap.values()];
  }

  get(name: string): StorageNode | undefined {
    return this.nodeMap.get(name);
  }

  /** Every node, or the one named (NotFound when there is none). */
  nodesOf(op: string, name: string | undefined): StorageNode[] {
    if (name === undefined) return this.all;
    const n = this.nodeMap.get(name);
    if (n === undefined) throw new NotFound(op, `no storage node '${name}'`);
    return [n];
  }

  /** "<node>:<uuid>" → node and UUID: InvalidArgument when malformed, NotFound for an unknown node. */
  parseId(op: string, id: unknown, what: string): { node: StorageNode; uuid: string } {
    if (typeof id !== 'string') throw new InvalidArgument(op, `${what} id must be a string`);
    const colon = id.lastIndexOf(':');
    const uuid = id.slice(colon + 1);
    if (colon <= 0 || !isUuid(uuid)) throw new InvalidArgument(op, `'${id}' is not a ${what} id ("<node>:<uuid>")`);
    const node = this.nodeMap.get(id.slice(0, colon));
    if (node === undefined) throw new NotFound(op, `${what} ${id}: no storage node '${id.slice(0, colon)}'`);
    return { node, uuid: uuid.toLowerCase() };
  }

  /** Runs `fn` with the node's lock held, after claiming and sweeping the node if it needs it. */
  withNode<T>(node: StorageNode, op: string, fn: () => Promise<T>): Promise<T> {
    return node.lock.run('node', async () => {
      if (!node.ready) {
        for (const pool of await node.pools(op)) await this.assertOwner(node, op, pool);
        await sweep(node, op);
        node.ready = true;
      }
      return fn();
    });
  }

  /**
   * Before a change in `pool`: a pool first seen in this run is claimed (taking over only as
   * `takeOver` allows); one claimed before must still hold this run's marker.
   */
  async assertOwner(node: StorageNode, op: string, pool: PoolInfo): Promise<void> {
    if (node.claimed.has(pool.uuid)) {
      await checkOwner(node, op, pool, this.owner);
    } else {
      await claimPool(node, op, pool, this.owner);
      node.claimed.add(pool.uuid);
    }
  }

  /** Claims and sweeps every node that answers; FailedPrecondition when one is owned by another. */
  async claimAll(): Promise<void> {
    const results = await Promise.allSettled(this.all.map((n) => this.withNode(n, 'start', async () => undefined)));
    const refused = results.find((r) => r.status === 'rejected' && !(r.reason instanceof ProvisionError && r.reason.code === 'UNAVAILABLE'));
    if (refused) throw (refused as PromiseRejectedResult).reason;
  }

  /** Finds a volume by name on every node (each must answer). */
  async findVolume(op: string, name: string): Promise<Found | undefined> {
    const hits = await Promise.all(
      this.all.map(async (node) => {
        const pools = await node.pools(op);
        for (const pool of pools) {
          const l = await node.lvol(op, `${pool.name}/${name}`, pools);
          if (l !== undefined && l.parsed.kind === 'volume') return { node, lvol: l };
        }
        return undefined;
      }),
    );
    return hits.find((h) => h !== undefined);
  }

  /** Finds a snapshot by name on every node (each must answer). */
  async findSnapshot(op: string, name: string): Promise<Found | undefined> {
    const prefix = `${encodeSnapshotName(name)}@`;
    const hits = await Promise.all(
      this.all.map(async (node) => {
        for (const l of await node.lvolNames(op)) {
          if (!l.lvolName.startsWith(prefix)) continue;
          const info = await node.lvol(op, l.uuid);
          if (info !== undefined && info.parsed.kind === 'snapshot' && info.parsed.name === name) return { node, lvol: info };
        }
        return undefined;
      }),
    );
    return hits.find((h) => h !== undefined);
  }

  /** Closes the connections the nodes opened. */
  async close(): Promise<void> {
    await Promise.all(this.all.map((n) => n.close()));
  }
}
