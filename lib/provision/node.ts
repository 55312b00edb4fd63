/**
 * A storage node: one JSON-RPC endpoint (this process's engine, or a remote SPDK / spdk-node
 * target over its Unix socket or HTTP) and what the provisioner reads from it. Every read and
 * every change is a JSON-RPC call; a call that gets no answer becomes {@link Unavailable}.
 */
import type { RpcCaller } from '../lvol';
import type { ListenAddress } from '../nvmf';
import { RpcClient } from '../rpc/client';
import { JsonRpcError } from '../rpc/errors';
import { RpcHttpClient } from '../rpc/http-client';
import type { BdevJson, LvolDriverSpecificJson, LvstoreJson } from '../rpc/types';
import { InvalidArgument, isNoDevice, Unavailable } from './errors';
import { KeyedMutex } from './locks';
import { nameProblem, parseLvolName, ParsedLvolName } from './names';

/** How to reach a node's JSON-RPC. */
export type NodeRpc =
  /** Any caller: `spdk.rpc` (this process's engine), an RpcClient, an RpcHttpClient. */
  | RpcCaller
  /** A Unix socket (SPDK's, or `spdk-node target --rpc-socket`). */
  | { socket: string; timeoutMs?: number }
  /** HTTP(S) in rpc_http_proxy.py's protocol (SPDK's proxy, or `spdk-node target --http`). */
  | { url: string; user?: string; password?: string; timeoutMs?: number; ca?: string | Buffer; rejectUnauthorized?: boolean };


export interface StorageNodeConfig {
  /** The node's name: part of every volume and snapshot id ("<node>:<uuid>"). */
  name: string;
  rpc: NodeRpc;
  /** Where exports listen, as hosts reach them (a listener each); needed to export volumes from this node. */
  listen?: ListenAddress[];
  /** Topology labels (e.g. { zone: 'a' }); requests may ask for nodes with given labels. */
  labels?: Record<string, string>;
  /** The lvstores (by name) the provisioner uses; default: every lvstore on the node. */
  pools?: string[];
  /**
   * How far thin volumes may over-commit each pool: the sum of volume sizes may reach this times
   * the pool's size. A number for every pool of the node, or per pool name. Default: the
   * provisioner's `overcommit`.
   */
  overcommit?: number | Record<string, number>;
}

/** A pool: one lvstore as bdev_lvol_get_lvstores reports it. */
export interface PoolInfo {
  uuid: string;
  name: string;
  clusterSize: number;
  blockSize: number;
  totalClusters: number;
  freeClusters: number;
}

/** One lvol as bdev_get_bdevs reports it, with its name read back. */
export interface LvolInfo {
  uuid: string;
  lvolName: string;
  pool: PoolInfo;
  sizeBytes: number;
  thin: boolean;
  /** Read-only: a snapshot (or an lvol set read-only). */
  snapshot: boolean;
  /** The lvol name of the snapshot it was cloned from (same pool). */
  parent: string | undefined;
  /** Snapshots: the lvol names of their clones (same pool). */
  clones: string[];
  allocatedClusters: number;
  /** Claimed by another module: an NVMe-oF namespace. */
  claimed: boolean;
  parsed: ParsedLvolName;
}

const ADDR_FAMILIES = new Set(['IPv4', 'IPv6']);

/** @internal The provisioner's view of one node. */
export class StorageNode {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly listen: ReadonlyArray<{ trtype: 'TCP'; adrfam: 'IPv4' | 'IPv6'; traddr: string; trsvcid: string }>;
  /** Serializes this node's changes (creating, deleting, exporting, sweeping). */
  readonly lock = new KeyedMutex();
  /**
   * Whether the pools are claimed and swept. Cleared when a call gets no answer, so a node that
   * comes back is claimed and swept again before it is changed.
   */
  ready = false;
  /** UUIDs of the pools this run has claimed (their markers must stay). */
  readonly claimed = new Set<string>();
  private readonly rpc: RpcCaller;
  private readonly owned: { close(): unknown } | undefined;
  private readonly poolFilter: ReadonlySet<string> | undefined;
  private readonly overcommitOf: (pool: string) => number;

  constructor(cfg: StorageNodeConfig, defaultOvercommit: number) {
    const op = 'provisioner';
    const p = nameProblem('node name', cfg?.name);
    if (p !== undefined) throw new InvalidArgument(op, p);
    this.name = cfg.name;
    const rpc = cfg.rpc as NodeRpc | undefined;
    if (rpc === null || typeof rpc !== 'object') throw new InvalidArgument(op, `node ${cfg.name}: rpc must be a caller, { socket } or { url }`);
    if (typeof (rpc as RpcCaller).call === 'function') {
      this.rpc = rpc as RpcCaller;
    } else if (typeof (rpc as { socket?: unknown }).socket === 'string') {
      const r = rpc as { socket: string; timeoutMs?: number };
      const client = new RpcClient(r.socket, { timeoutMs: r.timeoutMs });
      this.rpc = client;
      this.owned = client;
    } else if (typeof (rpc as { url?: unknown }).url === 'string') {
      const r = rpc as { url: string; user?: string; password?: string; timeoutMs?: number; ca?: string | Buffer; rejectUnauthorized?: boolean };
      let client: RpcHttpClient;
      try {
        client = new RpcHttpClient(r.url, r);
      } catch (e) {
        throw new InvalidArgument(op, `node ${cfg.name}: ${(e as Error).message}`);
      }
      this.rpc = client;
      this.owned = client;
    } else {
      throw new InvalidArgument(op, `node ${cfg.name}: rpc must be a caller, { socket } or { url }`);
    }
    const labels = cfg.labels ?? {};
    if (typeof labels !== 'object' || Object.values(labels).some((v) => typeof v !== 'string')) {
      throw new InvalidArgument(op, `node ${cfg.name}: labels must map names to strings`);
    }
    this.labels = Object.freeze({ ...labels });
    this.listen = (cfg.listen ?? []).map((a) => {
      if (a === null || typeof a !== 'object' || typeof a.traddr !== 'string' || a.traddr === '') {
        throw new InvalidArgument(op, `node ${cfg.name}: a listen address needs a traddr`);
      }
      const port = Number(a.trsvcid);
      if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidArgument(op, `node ${cfg.name}: listen port '${a.trsvcid}' is not 1..65535`);
      const adrfam = a.adrfam ?? (a.traddr.includes(':') ? 'IPv6' : 'IPv4');
      if (!ADDR_FAMILIES.has(adrfam)) throw new InvalidArgument(op, `node ${cfg.name}: adrfam must be IPv4 or IPv6`);
      return { trtype: 'TCP' as const, adrfam, traddr: a.traddr, trsvcid: String(port) };
    });
    if (cfg.pools !== undefined && (!Array.isArray(cfg.pools) || cfg.pools.some((x) => typeof x !== 'string'))) {
      throw new InvalidArgument(op, `node ${cfg.name}: pools must be lvstore names`);
    }
    this.poolFilter = cfg.pools === undefined ? undefined : new Set(cfg.pools);
    const oc = cfg.overcommit;
    const checkRatio = (v: unknown, what: string): number => {
      if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new InvalidArgument(op, `node ${cfg.name}: ${what} must be a positive finite number`);
      return v;
    };
    if (oc === undefined) {
      this.overcommitOf = () => defaultOvercommit;
    } else if (typeof oc === 'number') {
      const r = checkRatio(oc, 'overcommit');
      this.overcommitOf = () => r;
    } else if (oc !== null && typeof oc === 'object') {
      const m = new Map(Object.entries(oc).map(([k, v]) => [k, checkRatio(v, `overcommit of pool ${k}`)]));
      this.overcommitOf = (pool) => m.get(pool) ?? defaultOvercommit;
    } else {
      throw new InvalidArgument(op, `node ${cfg.name}: overcommit must be a number or a map of pool names to numbers`);
    }
  }

  /** The over-commit ratio of a pool. */
  overcommit(pool: string): number {
    return this.overcommitOf(pool);
  }

  /**
   * Calls a JSON-RPC method. A JSON-RPC error (the node answered) rejects as is; no answer
   * (refused, lost, timed out, HTTP error) rejects with Unavailable and marks the node not ready.
   */
  async call<T = unknown>(op: string, method: string, params?: unknown): Promise<T> {
    try {
      return (await this.rpc.call(method, params)) as T;
    } catch (e) {
      if (e instanceof JsonRpcError) throw e;
      this.ready = false;
      throw new Unavailable(op, this.name, `storage node ${this.name} did not answer ${method}: ${(e as Error)?.message ?? String(e)}`, { cause: e });
    }
  }

  /** The managed pools (lvstores), in the node's order. */
  async pools(op: string): Promise<PoolInfo[]> {
    const list = await this.call<LvstoreJson[]>(op, 'bdev_lvol_get_lvstores');
    return list.filter((s) => this.poolFilter === undefined || this.poolFilter.has(s.name)).map(poolOf);
  }

  /**
   * One lvol by bdev name (its UUID) or alias ("<pool>/<lvol name>"); undefined when there is no
   * such lvol in a managed pool. `pools` saves a call when the caller has them.
   */
  async lvol(op: string, nameOrAlias: string, pools?: PoolInfo[]): Promise<LvolInfo | undefined> {
    let bdevs: BdevJson[];
    try {
      bdevs = await this.call<BdevJson[]>(op, 'bdev_get_bdevs', { name: nameOrAlias });
    } catch (e) {
      if (isNoDevice(e)) return undefined;
      throw e;
    }
    const b = bdevs[0];
    const ds = lvolOf(b);
    if (ds === undefined) return undefined;
    const all = pools ?? (await this.pools(op));
    const pool = all.find((p) => p.uuid === ds.lvol_store_uuid.toLowerCase());
    return pool === undefined ? undefined : lvolInfo(b, ds, pool);
  }

  /** Every lvol of the managed pools, with the pools (two calls). */
  async scan(op: string): Promise<{ pools: PoolInfo[]; lvols: LvolInfo[] }> {
    const [pools, bdevs] = await Promise.all([this.pools(op), this.call<BdevJson[]>(op, 'bdev_get_bdevs')]);
    const byUuid = new Map(pools.map((p) => [p.uuid, p]));
    const lvols: LvolInfo[] = [];
    for (const b of bdevs) {
      const ds = lvolOf(b);
      const pool = ds && byUuid.get(ds.lvol_store_uuid.toLowerCase());
      if (ds && pool) lvols.push(lvolInfo(b, ds, pool));
    }
    return { pools, lvols };
  }

  /** Lvol names and UUIDs of the managed pools, without sizes (bdev_lvol_get_lvols: lighter than a scan). */
  async lvolNames(op: string): Promise<Array<{ uuid: string; lvolName: string; poolUuid: string; snapshot: boolean }>> {
    const [pools, list] = await Promise.all([
      this.pools(op),
      this.call<Array<{ uuid: string; name: string; is_snapshot: boolean; lvs: { uuid: string } }>>(op, 'bdev_lvol_get_lvols'),
    ]);
    const managed = new Set(pools.map((p) => p.uuid));
    return list
      .filter((l) => managed.has(l.lvs.uuid.toLowerCase()))
      .map((l) => ({ uuid: l.uuid.toLowerCase(), lvolName: l.name, poolUuid: l.lvs.uuid.toLowerCase(), snapshot: l.is_snapshot }));
  }

  /** Closes the connection the node opened itself (not a caller that was handed in). */
  async close(): Promise<void> {
    await this.owned?.close();
  }
}

function poolOf(s: LvstoreJson): PoolInfo {
  return {
    uuid: s.uuid.toLowerCase(),
    name: s.name,
    clusterSize: s.cluster_size,
    blockSize: s.block_size,
    totalClusters: s.total_data_clusters,
    freeClusters: s.free_clusters,
  };
}

function lvolOf(b: BdevJson | undefined): LvolDriverSpecificJson | undefined {
  return (b?.driver_specific as { lvol?: LvolDriverSpecificJson } | undefined)?.lvol;
}

function lvolInfo(b: BdevJson, ds: LvolDriverSpecificJson, pool: PoolInfo): LvolInfo {
  const prefix = `${pool.name}/`;
  const alias = b.aliases.find((a) => a.startsWith(prefix));
  const lvolName = alias === undefined ? '' : alias.slice(prefix.length);
  const snapshot = b.supported_io_types?.write === false;
  return {
    uuid: b.uuid.toLowerCase(),
    lvolName,
    pool,
    sizeBytes: b.num_blocks * b.block_size,
    thin: ds.thin_provision,
    snapshot,
    parent: ds.clone ? ds.base_snapshot : undefined,
    clones: [...(ds.clones ?? [])],
    allocatedClusters: ds.num_allocated_clusters,
    claimed: b.claimed,
    parsed: lvolName === '' ? { kind: 'foreign' } : parseLvolName(lvolName, snapshot || ds.snapshot),
  };
}
