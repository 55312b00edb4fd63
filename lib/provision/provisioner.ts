/**
 * The provisioner: volumes, snapshots and exports on the pools (lvstores) of one or more
 * storage nodes, entirely through SPDK's JSON-RPC, with its state in the storage itself.
 * Semantics, naming and the single-writer rule: docs/provisioning.md.
 */
import * as os from 'node:os';
import { isValidNqn } from '../nvmf/names';
import { JsonRpcError } from '../rpc/errors';
import { byPlacementOrder, effectiveSize, fits, matchesTopology, MIB, poolCapacities } from './capacity';
import { Cluster } from './cluster';
import { AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, OutOfCapacity, ProvisionError } from './errors';
import { ensureExport, exportInfo, removeExport, subsystemOf } from './exports';
import { collectHiddenChain, deleteLvol, deriveSource, poolLookup } from './lineage';
import { KeyedMutex } from './locks';
import {
  DEFAULT_NQN_PREFIX,
  hiddenSnapshotLvolName,
  nameProblem,
  newEpoch,
  nqnPrefixProblem,
  OWNER_MAX,
  snapshotLvolName,
  snapshotNameProblem,
  tempLvolName,
} from './names';
import type { LvolInfo, PoolInfo, StorageNode, StorageNodeConfig } from './node';
import { checkCreate, CheckedCreate, checkSize, checkTopology, mapRpcError } from './requests';
import { paginate } from './tokens';
import type {
  CapacityQuery,
  CapacityReport,
  CreateVolumeRequest,
  ListOptions,
  NodeCapacity,
  Page,
  PoolCapacity,
  Snapshot,
  Volume,
  VolumeExport,
  VolumeExportOptions,
} from './types';
import { byId, describe, inMemoryLookup, snapshotOf, sums, volumeOf } from './views';

export interface ProvisionerOptions {
  /** The storage nodes; at least one. */
  nodes: StorageNodeConfig[];
  /**
   * Who this provisioner is, written into each pool's owner marker (at most 30 bytes of letters,
   * digits, '.', '_', '-'). Default: the host name. Two provisioners with different owners on
   * the same pools are refused; see `takeOver`.
   */
  owner?: string;
  /** Claim pools another owner's marker holds (that provisioner then fails its next change). */
  takeOver?: boolean;
  /** Default thin over-commit ratio of every pool (default 1: provisioned ≤ pool size). */
  overcommit?: number;
  /** NQN of a volume's export: this prefix and the lvol UUID (default "nqn.2016-06.io.spdk-node:vol:"). */
  nqnPrefix?: string;
}

/**
 * Volumes, snapshots and NVMe/TCP exports over the pools of storage nodes.
 *
 * @example
 * const prov = await Provisioner.start({
 *   owner: 'csi-controller',
 *   nodes: [
 *     { name: 'local', rpc: spdk.rpc, listen: [{ traddr: '10.0.0.1', trsvcid: 4420 }] },
 *     { name: 'n2', rpc: { url: 'http://10.0.0.2:9009/', user: 'spdk', password: 'secret' }, labels: { zone: 'b' } },
 *   ],
 * });
 * const vol = await prov.createVolume({ name: 'pvc-1', sizeBytes: 10 * 2 ** 30 });
 * const exp = await prov.exportVolume(vol.id, { hosts: ['nqn.2014-08.org.nvmexpress:uuid:...'] });
 * console.log(exp.addresses[0].nvmeConnectArgs.join(' ')); // -t tcp -a 10.0.0.1 -s 4420 -n nqn...
 * await prov.close();
 */
export class Provisioner {
  readonly owner: string;
  readonly nqnPrefix: string;
  private readonly cluster: Cluster;
  private readonly names = new KeyedMutex();
  /** Held by everything that takes capacity (create, expand, detaching a snapshot's clones). */
  private readonly capacity = new KeyedMutex();
  private closed = false;

  /** Checks the options; nothing is read or changed until {@link start} (or the first call). */
  constructor(opts: ProvisionerOptions) {
    const op = 'provisioner';
    if (opts === null || typeof opts !== 'object') throw new InvalidArgument(op, 'options must be an object');
    const owner = opts.owner ?? os.hostname().replace(/[^A-Za-z0-9._-]/g, '-').replace(/^_+/, '').slice(0, OWNER_MAX);
    const p = nameProblem('owner', owner, OWNER_MAX);
    if (p !== undefined) throw new InvalidArgument(op, p);
    this.owner = owner;
    const oc = opts.overcommit ?? 1;
    if (typeof oc !== 'number' || !Number.isFinite(oc) || oc <= 0) throw new InvalidArgument(op, 'overcommit must be a positive finite number');
    const prefix = opts.nqnPrefix ?? DEFAULT_NQN_PREFIX;
    const np = nqnPrefixProblem(prefix);
    if (np !== undefined) throw new InvalidArgument(op, np);
    this.nqnPrefix = prefix;
    this.cluster = new Cluster(opts.nodes, oc, { id: owner, epoch: newEpoch(), takeOver: opts.takeOver === true });
  }

  /**
   * Creates a provisioner and claims the pools of every node that answers (owner markers), then
   * sweeps what interrupted operations left. A node that does not answer is claimed when it
   * does; a pool another owner holds rejects with FailedPrecondition (unless `takeOver`).
   */
  static async start(opts: ProvisionerOptions): Promise<Provisioner> {
    const p = new Provisioner(opts);
    try {
      await p.cluster.claimAll();
    } catch (e) {
      await p.close();
      throw e;
    }
    return p;
  }

  /** The node names, in the order they were given. */
  get nodeNames(): string[] {
    return this.cluster.names;
  }

  /** Closes the connections the provisioner opened; the storage is left as it is. */
  async close(): Promise<void> {
    this.closed = true;
    await this.cluster.close();
  }

  // ----- volumes -------------------------------------------------------------------------------

  /**
   * Creates a volume, or returns the one of that name when it matches the request (size after
   * rounding, thin, source, placement constraints); AlreadyExists when it does not. Placed in the
   * pool, among those that satisfy the request, with the most free bytes.
   *
   * @example
   * const v = await prov.createVolume({ name: 'pvc-1', sizeBytes: 1 << 30, thin: true });
   * const copy = await prov.createVolume({ name: 'pvc-2', sizeBytes: 1 << 30, source: { volumeId: v.id } });
   */
  async createVolume(req: CreateVolumeRequest): Promise<Volume> {
    const op = 'createVolume';
    this.assertOpen(op);
    const r = checkCreate(op, req, this.cluster);
    return this.names.run(`volume/${r.name}`, async () => {
      const existing = await this.cluster.findVolume(op, r.name);
      if (existing !== undefined) return this.matchExisting(op, r, existing.node, existing.lvol);
      return this.capacity.run('capacity', () => this.placeAndCreate(op, r));
    });
  }

  /** A volume by id; NotFound when there is none. */
  async getVolume(id: string): Promise<Volume> {
    const op = 'getVolume';
    const { node, uuid } = this.cluster.parseId(op, id, 'volume');
    const l = await node.lvol(op, uuid);
    if (l === undefined || l.parsed.kind !== 'volume') throw new NotFound(op, `no volume ${id}`);
    return volumeOf(node, l, await deriveSource(l, poolLookup(node, op, l.pool)));
  }

  /** The volume of that name, or undefined (every node must answer: the name may be on any). */
  async findVolume(name: string): Promise<Volume | undefined> {
    const op = 'findVolume';
    const p = nameProblem('volume name', name);
    if (p !== undefined) throw new InvalidArgument(op, p);
    const hit = await this.cluster.findVolume(op, name);
    if (hit === undefined) return undefined;
    return volumeOf(hit.node, hit.lvol, await deriveSource(hit.lvol, poolLookup(hit.node, op, hit.lvol.pool)));
  }

  /** Volumes ordered by id, a page at a time; `node` limits the listing to one node. */
  async listVolumes(opts: ListOptions & { node?: string } = {}): Promise<Page<Volume>> {
    const op = 'listVolumes';
    const nodes = this.cluster.nodesOf(op, opts?.node);
    const all: Volume[] = [];
    await Promise.all(
      nodes.map(async (node) => {
        const { lvols } = await node.scan(op);
        const lookup = inMemoryLookup(lvols);
        for (const l of lvols) {
          if (l.parsed.kind === 'volume') all.push(volumeOf(node, l, await deriveSource(l, lookup(l.pool))));
        }
      }),
    );
    return paginate(op, 'volumes', all.sort(byId), opts);
  }

  /**
   * Grows a volume to at least `sizeBytes` (rounded as at creation); a size it already has or
   * exceeds changes nothing (volumes never shrink). Thin growth stays within the over-commit
   * limit; thick growth needs free clusters.
   */
  async expandVolume(id: string, sizeBytes: number): Promise<Volume> {
    const op = 'expandVolume';
    this.assertOpen(op);
    const { node, uuid } = this.cluster.parseId(op, id, 'volume');
    checkSize(op, 'sizeBytes', sizeBytes);
    return this.capacity.run('capacity', () =>
      this.cluster.withNode(node, op, async () => {
        const l = await node.lvol(op, uuid);
        if (l === undefined || l.parsed.kind !== 'volume') throw new NotFound(op, `no volume ${id}`);
        const size = effectiveSize(sizeBytes, l.pool.clusterSize);
        if (size > l.sizeBytes) {
          await this.cluster.assertOwner(node, op, l.pool);
          const { pools, lvols } = await node.scan(op);
          const c = poolCapacities(node, pools, lvols).find((x) => x.poolUuid === l.pool.uuid) as PoolCapacity;
          const delta = size - l.sizeBytes;
          if (c.provisionedBytes + delta > c.maxProvisionedBytes || (!l.thin && delta > c.freeBytes)) {
            throw new OutOfCapacity(op, `pool ${c.pool} on node ${node.name} cannot grow ${l.thin ? 'thin' : 'thick'} volume ${id} by ${delta} bytes (${describe(c)})`);
          }
          await node.call(op, 'bdev_lvol_resize', { name: uuid, size_in_mib: Math.ceil(sizeBytes / MIB) }).catch((e) => Promise.reject(mapRpcError(op, e)));
        }
        const now = (await node.lvol(op, uuid)) as LvolInfo;
        return volumeOf(node, now, await deriveSource(now, poolLookup(node, op, now.pool)));
      }),
    );
  }

  /**
   * Deletes a volume: its export first (hosts are disconnected), then the lvol, then hidden
   * snapshots nothing needs any more. A volume that is not there is fine (idempotent). Snapshots
   * of the volume and volumes cloned from it stay as they are.
   */
  async deleteVolume(id: string): Promise<void> {
    const op = 'deleteVolume';
    this.assertOpen(op);
    const { node, uuid } = this.cluster.parseId(op, id, 'volume');
    await this.cluster.withNode(node, op, async () => {
      const l = await node.lvol(op, uuid);
      if (l === undefined) {
        // An interrupted delete may have left the export behind.
        if ((await subsystemOf(node, op, this.nqnOf(uuid))) !== undefined) {
          for (const pool of await node.pools(op)) await this.cluster.assertOwner(node, op, pool);
          await removeExport(node, op, this.nqnOf(uuid));
        }
        return;
      }
      if (l.parsed.kind !== 'volume') throw new NotFound(op, `${id} is not a volume`);
      await this.cluster.assertOwner(node, op, l.pool);
      await removeExport(node, op, this.nqnOf(uuid));
      try {
        await deleteLvol(node, op, uuid);
      } catch (e) {
        if (e instanceof JsonRpcError && /busy/i.test(e.message)) {
          throw new FailedPrecondition(op, `volume ${id} is in use by something other than its export (bdev ${uuid} is claimed): ${e.message}`, { cause: e });
        }
        throw mapRpcError(op, e);
      }
      await collectHiddenChain(node, op, l.pool, l.parent);
    });
  }

  // ----- snapshots -----------------------------------------------------------------------------

  /**
   * Takes a snapshot of a volume, or returns the snapshot of that name when it is of the same
   * volume; AlreadyExists when it is of another.
   *
   * @example
   * const s = await prov.createSnapshot({ name: 'snap-1', volumeId: v.id });
   * const restored = await prov.restoreSnapshot(s.id, { name: 'pvc-restored' });
   */
  async createSnapshot(req: { name: string; volumeId: string }): Promise<Snapshot> {
    const op = 'createSnapshot';
    this.assertOpen(op);
    if (req === null || typeof req !== 'object') throw new InvalidArgument(op, 'request must be an object');
    const p = snapshotNameProblem(req.name);
    if (p !== undefined) throw new InvalidArgument(op, p);
    const { node, uuid } = this.cluster.parseId(op, req.volumeId, 'volumeId');
    return this.names.run(`snapshot/${req.name}`, async () => {
      const existing = await this.cluster.findSnapshot(op, req.name);
      if (existing !== undefined) {
        const src = existing.lvol.parsed.kind === 'snapshot' ? existing.lvol.parsed.source : '';
        if (existing.node === node && src === uuid) return snapshotOf(existing.node, existing.lvol);
        throw new AlreadyExists(op, `snapshot '${req.name}' already exists, of volume ${existing.node.name}:${src} (asked: of ${req.volumeId})`);
      }
      return this.cluster.withNode(node, op, async () => {
        const vol = await node.lvol(op, uuid);
        if (vol === undefined || vol.parsed.kind !== 'volume') throw new NotFound(op, `no volume ${req.volumeId}`);
        await this.cluster.assertOwner(node, op, vol.pool);
        const snapUuid = await node
          .call<string>(op, 'bdev_lvol_snapshot', { lvol_name: uuid, snapshot_name: snapshotLvolName(req.name, uuid, new Date()) })
          .catch((e) => Promise.reject(mapRpcError(op, e)));
        return snapshotOf(node, (await node.lvol(op, snapUuid)) as LvolInfo);
      });
    });
  }

  /** A snapshot by id; NotFound when there is none. */
  async getSnapshot(id: string): Promise<Snapshot> {
    const op = 'getSnapshot';
    const { node, uuid } = this.cluster.parseId(op, id, 'snapshot');
    const l = await node.lvol(op, uuid);
    if (l === undefined || l.parsed.kind !== 'snapshot') throw new NotFound(op, `no snapshot ${id}`);
    return snapshotOf(node, l);
  }

  /** The snapshot of that name, or undefined. */
  async findSnapshot(name: string): Promise<Snapshot | undefined> {
    const op = 'findSnapshot';
    const p = snapshotNameProblem(name);
    if (p !== undefined) throw new InvalidArgument(op, p);
    const hit = await this.cluster.findSnapshot(op, name);
    return hit === undefined ? undefined : snapshotOf(hit.node, hit.lvol);
  }

  /**
   * Snapshots ordered by id, a page at a time: all, or those of one volume (`volumeId`, which
   * may have been deleted since), or of one node.
   */
  async listSnapshots(opts: ListOptions & { volumeId?: string; node?: string } = {}): Promise<Page<Snapshot>> {
    const op = 'listSnapshots';
    let source: string | undefined;
    let nodes: StorageNode[];
    if (opts?.volumeId !== undefined) {
      const { node, uuid } = this.cluster.parseId(op, opts.volumeId, 'volumeId');
      if (opts.node !== undefined && opts.node !== node.name) return paginate(op, 'snapshots', [], opts);
      nodes = [node];
      source = uuid;
    } else {
      nodes = this.cluster.nodesOf(op, opts?.node);
    }
    const all: Snapshot[] = [];
    await Promise.all(
      nodes.map(async (node) => {
        const { lvols } = await node.scan(op);
        for (const l of lvols) {
          if (l.parsed.kind === 'snapshot' && (source === undefined || l.parsed.source === source)) all.push(snapshotOf(node, l));
        }
      }),
    );
    return paginate(op, 'snapshots', all.sort(byId), opts);
  }

  /**
   * Deletes a snapshot; one that is not there is fine. Volumes restored from it keep their data:
   * SPDK deletes a snapshot with one clone by merging it into that clone, and refuses one with
   * more, so the provisioner first detaches all clones but one (bdev_lvol_decouple_parent: each
   * gets its own copy of the clusters it shared with the snapshot), which needs free clusters:
   * OutOfCapacity, with nothing detached, when the pool lacks them.
   */
  async deleteSnapshot(id: string): Promise<void> {
    const op = 'deleteSnapshot';
    this.assertOpen(op);
    const { node, uuid } = this.cluster.parseId(op, id, 'snapshot');
    await this.capacity.run('capacity', () =>
      this.cluster.withNode(node, op, async () => {
        const s = await node.lvol(op, uuid);
        if (s === undefined) return;
        if (s.parsed.kind !== 'snapshot') throw new NotFound(op, `${id} is not a snapshot`);
        await this.cluster.assertOwner(node, op, s.pool);
        const detach = s.clones.slice(1);
        if (detach.length > 0) {
          const [pool] = (await node.pools(op)).filter((p) => p.uuid === s.pool.uuid);
          const need = detach.length * s.allocatedClusters;
          if (need > pool.freeClusters) {
            throw new OutOfCapacity(
              op,
              `snapshot ${id} has ${s.clones.length} dependent clones; detaching ${detach.length} of them needs up to ${need * pool.clusterSize} bytes, pool ${pool.name} has ${pool.freeClusters * pool.clusterSize} free`,
            );
          }
          for (const c of detach) {
            await node.call(op, 'bdev_lvol_decouple_parent', { name: `${s.pool.name}/${c}` }).catch((e) => Promise.reject(mapRpcError(op, e)));
          }
        }
        await deleteLvol(node, op, uuid).catch((e) => Promise.reject(mapRpcError(op, e)));
        await collectHiddenChain(node, op, s.pool, s.parent);
      }),
    );
  }

  /** A new volume with a snapshot's content (createVolume with source { snapshotId }); size default: the snapshot's. */
  async restoreSnapshot(snapshotId: string, req: Omit<CreateVolumeRequest, 'source' | 'sizeBytes'> & { sizeBytes?: number }): Promise<Volume> {
    const op = 'restoreSnapshot';
    if (req === null || typeof req !== 'object') throw new InvalidArgument(op, 'request must be an object');
    let sizeBytes = req.sizeBytes;
    if (sizeBytes === undefined) sizeBytes = (await this.getSnapshot(snapshotId)).sizeBytes;
    return this.createVolume({ ...req, sizeBytes, source: { snapshotId } });
  }

  // ----- exports -------------------------------------------------------------------------------

  /**
   * Exports a volume over NVMe/TCP on every listen address of its node, open to exactly `hosts`
   * (any host when none are given). Repeating it is harmless and makes the export match the
   * request (hosts added and removed, missing pieces of an interrupted export added).
   *
   * @example
   * const e = await prov.exportVolume(v.id, { hosts: [hostNqn] });
   * // nvme connect ${e.addresses[0].nvmeConnectArgs.join(' ')}
   */
  async exportVolume(id: string, opts: VolumeExportOptions = {}): Promise<VolumeExport> {
    const op = 'exportVolume';
    this.assertOpen(op);
    const { node, uuid } = this.cluster.parseId(op, id, 'volume');
    if (opts === null || typeof opts !== 'object') throw new InvalidArgument(op, 'options must be an object');
    const hosts = opts.hosts ?? [];
    if (!Array.isArray(hosts)) throw new InvalidArgument(op, 'hosts must be an array of host NQNs');
    for (const h of hosts) if (typeof h !== 'string' || !isValidNqn(h)) throw new InvalidArgument(op, `'${String(h)}' is not a valid host NQN`);
    const wanted = [...new Set(hosts)].sort();
    return this.cluster.withNode(node, op, async () => {
      const l = await node.lvol(op, uuid);
      if (l === undefined || l.parsed.kind !== 'volume') throw new NotFound(op, `no volume ${id}`);
      await this.cluster.assertOwner(node, op, l.pool);
      return ensureExport(node, op, this.nqnOf(uuid), id, uuid, wanted).catch((e) => Promise.reject(mapRpcError(op, e)));
    });
  }

  /** Removes a volume's export (hosts are disconnected); none is fine. */
  async unexportVolume(id: string): Promise<void> {
    const op = 'unexportVolume';
    this.assertOpen(op);
    const { node, uuid } = this.cluster.parseId(op, id, 'volume');
    await this.cluster.withNode(node, op, async () => {
      if ((await subsystemOf(node, op, this.nqnOf(uuid))) === undefined) return;
      const l = await node.lvol(op, uuid);
      if (l !== undefined) await this.cluster.assertOwner(node, op, l.pool);
      else for (const pool of await node.pools(op)) await this.cluster.assertOwner(node, op, pool);
      await removeExport(node, op, this.nqnOf(uuid));
    });
  }

  /** The volume's export as the node reports it, undefined when it has none; NotFound when there is no volume either. */
  async getExport(id: string): Promise<VolumeExport | undefined> {
    const op = 'getExport';
    const { node, uuid } = this.cluster.parseId(op, id, 'volume');
    const s = await subsystemOf(node, op, this.nqnOf(uuid));
    if (s !== undefined) return exportInfo(node, id, uuid, s);
    const l = await node.lvol(op, uuid);
    if (l === undefined || l.parsed.kind !== 'volume') throw new NotFound(op, `no volume ${id}`);
    return undefined;
  }

  /** The NQN of a volume's export. */
  nqnOf(uuid: string): string {
    return `${this.nqnPrefix}${uuid.toLowerCase()}`;
  }

  // ----- capacity ------------------------------------------------------------------------------

  /** Capacity per pool and per node (of one node, one pool name, or nodes matching a topology). */
  async capacityReport(q: CapacityQuery = {}): Promise<CapacityReport> {
    const op = 'capacity';
    if (q === null || typeof q !== 'object') throw new InvalidArgument(op, 'query must be an object');
    const topology = checkTopology(op, q.topology);
    const nodes = this.cluster.nodesOf(op, q.node).filter((n) => matchesTopology(n.labels, topology));
    const per = await Promise.all(
      nodes.map(async (node): Promise<NodeCapacity> => {
        const { pools, lvols } = await node.scan(op);
        const caps = poolCapacities(node, pools, lvols).filter((c) => q.pool === undefined || c.pool === q.pool);
        return { node: node.name, labels: { ...node.labels }, ...sums(caps), pools: caps };
      }),
    );
    return { nodes: per, ...sums(per) };
  }

  // ----- internals -----------------------------------------------------------------------------

  private assertOpen(op: string): void {
    if (this.closed) throw new FailedPrecondition(op, 'the provisioner is closed');
  }

  /** The existing volume if it matches the request, else AlreadyExists. */
  private async matchExisting(op: string, r: CheckedCreate, node: StorageNode, l: LvolInfo): Promise<Volume> {
    const derived = await deriveSource(l, poolLookup(node, op, l.pool));
    const vol = volumeOf(node, l, derived);
    const size = effectiveSize(r.sizeBytes, l.pool.clusterSize);
    const problems: string[] = [];
    if (r.limitBytes === undefined ? l.sizeBytes !== size : l.sizeBytes < size || l.sizeBytes > r.limitBytes) {
      problems.push(`it has ${l.sizeBytes} bytes, asked ${r.limitBytes === undefined ? size : `${size}..${r.limitBytes}`}`);
    }
    if (l.thin !== r.thin) problems.push(`it is ${l.thin ? 'thin' : 'thick'}`);
    if (r.node !== undefined && r.node !== node.name) problems.push(`it is on node ${node.name}`);
    if (r.pool !== undefined && r.pool !== l.pool.name) problems.push(`it is in pool ${l.pool.name}`);
    if (!matchesTopology(node.labels, r.topology)) problems.push(`its node ${node.name} is outside the requested topology`);
    // The source is compared while the storage can tell: the requested source still exists and
    // the lineage says something (a thick volume made from a source was inflated: no lineage).
    const canTell = derived.kind !== 'unknown' && !(derived.kind === 'none' && !l.thin);
    if (canTell) {
      if (r.source === undefined) {
        if (derived.kind !== 'none') problems.push(`it was made from ${derived.kind} ${node.name}:${derived.uuid}`);
      } else if (await this.sourceExists(op, r.source)) {
        if (derived.kind !== r.source.kind || r.source.node !== node || derived.uuid !== r.source.uuid) {
          problems.push(derived.kind === 'none' ? 'it was not made from a source' : `it was made from ${derived.kind} ${node.name}:${derived.uuid}`);
        }
      }
    }
    if (problems.length > 0) throw new AlreadyExists(op, `volume '${r.name}' already exists with other parameters (${vol.id}): ${problems.join('; ')}`);
    return vol;
  }

  private async sourceExists(op: string, s: NonNullable<CheckedCreate['source']>): Promise<boolean> {
    const l = await s.node.lvol(op, s.uuid);
    return l !== undefined && l.parsed.kind === s.kind;
  }

  /** Chooses the pool and creates the volume in it (capacity lock held). */
  private async placeAndCreate(op: string, r: CheckedCreate): Promise<Volume> {
    let base: { node: StorageNode; lvol: LvolInfo } | undefined;
    if (r.source !== undefined) {
      const l = await r.source.node.lvol(op, r.source.uuid);
      if (l === undefined || l.parsed.kind !== r.source.kind) throw new NotFound(op, `no ${r.source.kind} ${r.source.id}`);
      const where = `${r.source.kind} ${r.source.id} is on node ${r.source.node.name}, pool ${l.pool.name}`;
      if (r.node !== undefined && r.node !== r.source.node.name) throw new InvalidArgument(op, `${where}: a volume made from it lives there too`);
      if (r.pool !== undefined && r.pool !== l.pool.name) throw new InvalidArgument(op, `${where}: a volume made from it lives there too`);
      if (!matchesTopology(r.source.node.labels, r.topology)) throw new InvalidArgument(op, `${where}, outside the requested topology`);
      if (effectiveSize(r.sizeBytes, l.pool.clusterSize) < l.sizeBytes) {
        throw new InvalidArgument(op, `${r.source.kind} ${r.source.id} has ${l.sizeBytes} bytes; a volume made from it needs at least that (asked ${r.sizeBytes})`);
      }
      base = { node: r.source.node, lvol: l };
    }
    const nodes = base !== undefined ? [base.node] : this.cluster.nodesOf(op, r.node).filter((n) => matchesTopology(n.labels, r.topology));
    const candidates: PoolCapacity[] = [];
    await Promise.all(
      nodes.map(async (node) => {
        const { pools, lvols } = await node.scan(op);
        for (const c of poolCapacities(node, pools, lvols)) {
          if (r.pool !== undefined && c.pool !== r.pool) continue;
          if (base !== undefined && c.poolUuid !== base.lvol.pool.uuid) continue;
          candidates.push(c);
        }
      }),
    );
    const fitting = candidates.filter((c) => fits(c, effectiveSize(r.sizeBytes, c.clusterSize), r.thin)).sort(byPlacementOrder);
    if (fitting.length === 0) {
      const where = candidates.length === 0 ? 'no pool satisfies the request' : candidates.map(describe).join('; ');
      throw new OutOfCapacity(op, `no pool has room for a ${r.thin ? 'thin' : 'thick'} volume of ${r.sizeBytes} bytes: ${where}`);
    }
    const chosen = fitting[0];
    const node = this.cluster.get(chosen.node) as StorageNode;
    return this.cluster.withNode(node, op, async () => {
      const pool = (await node.pools(op)).find((p) => p.uuid === chosen.poolUuid);
      if (pool === undefined) throw new NotFound(op, `pool ${chosen.pool} went away from node ${node.name}`);
      await this.cluster.assertOwner(node, op, pool);
      const size = effectiveSize(r.sizeBytes, pool.clusterSize);
      let uuid: string;
      if (base === undefined) {
        uuid = await node
          .call<string>(op, 'bdev_lvol_create', { lvol_name: r.name, uuid: pool.uuid, size_in_mib: Math.ceil(r.sizeBytes / MIB), thin_provision: r.thin })
          .catch((e) => Promise.reject(mapRpcError(op, e)));
      } else {
        uuid = await this.createFrom(op, node, pool, base.lvol, r, size);
      }
      const l = (await node.lvol(op, uuid)) as LvolInfo;
      return volumeOf(node, l, await deriveSource(l, poolLookup(node, op, pool)));
    });
  }

  /**
   * A volume made from a snapshot, or from another volume through a hidden snapshot of it: a
   * clone built under a temporary name (grown, inflated when thick), then renamed, so the
   * volume's name appears only once it is complete. What a failure leaves is removed here when
   * the node answers, else by the sweep when it is back.
   */
  private async createFrom(op: string, node: StorageNode, pool: PoolInfo, src: LvolInfo, r: CheckedCreate, size: number): Promise<string> {
    let snapUuid = src.uuid;
    let hiddenName: string | undefined;
    let cloneUuid: string | undefined;
    try {
      if (src.parsed.kind === 'volume') {
        hiddenName = hiddenSnapshotLvolName(src.uuid, new Date());
        snapUuid = await node.call<string>(op, 'bdev_lvol_snapshot', { lvol_name: src.uuid, snapshot_name: hiddenName });
      }
      cloneUuid = await node.call<string>(op, 'bdev_lvol_clone', { snapshot_name: snapUuid, clone_name: tempLvolName() });
      if (size > src.sizeBytes) await node.call(op, 'bdev_lvol_resize', { name: cloneUuid, size_in_mib: Math.ceil(r.sizeBytes / MIB) });
      if (!r.thin) await node.call(op, 'bdev_lvol_inflate', { name: cloneUuid });
      // Copying may have taken long: still the owner before the name appears?
      await this.cluster.assertOwner(node, op, pool);
      await node.call(op, 'bdev_lvol_rename', { old_name: cloneUuid, new_name: r.name });
      return cloneUuid;
    } catch (e) {
      if (!(e instanceof ProvisionError && e.code === 'UNAVAILABLE')) {
        if (cloneUuid !== undefined) await deleteLvol(node, op, cloneUuid).catch(() => undefined);
        if (hiddenName !== undefined) await collectHiddenChain(node, op, pool, hiddenName).catch(() => undefined);
      }
      throw mapRpcError(op, e);
    }
  }
}
