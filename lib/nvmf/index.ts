/**
 * The friendly NVMe-oF target API (`spdk.nvmf`): typed calls over SPDK's nvmf_* JSON-RPC
 * methods. Every operation is one or more `spdk.rpc.call(...)` calls, so it behaves exactly as
 * the RPCs do (same checks; a failed call rejects with the JsonRpcError SPDK would answer) and
 * works the same against any target that speaks SPDK's JSON-RPC.
 *
 * Subsystem objects are snapshots of the state when they were read; every mutating method
 * resolves with a fresh one.
 */
import { SpdkError } from '../errors';
import { JsonRpcError } from '../rpc/errors';
import type { RpcCaller } from '../lvol';
import type {
  ControllerJson,
  ListenAddressJson,
  ListenerJson,
  NamespaceJson,
  QpairJson,
  StatsJson,
  SubsystemJson,
  TransportJson,
} from './types';

export type * from './types';

/** The TCP transport's tuning (nvmf_create_transport's parameters, in camelCase). */
export interface TransportOptions {
  maxQueueDepth?: number;
  maxIoQpairsPerCtrlr?: number;
  inCapsuleDataSize?: number;
  maxIoSize?: number;
  ioUnitSize?: number;
  maxAqDepth?: number;
  c2hSuccess?: boolean;
  /** spdk-node's limit on TCP connections open at once (default 1024). */
  maxConnections?: number;
}

export interface SubsystemOptions {
  /** At most 20 printable ASCII characters (default "00000000000000000000"). */
  serialNumber?: string;
  /** At most 40 printable ASCII characters (default "SPDK bdev Controller"). */
  modelNumber?: string;
  /** Let any host connect (default false: only hosts added with addHost). */
  allowAnyHost?: boolean;
  /** Highest namespace ID (default 32). */
  maxNamespaces?: number;
  minCntlid?: number;
  maxCntlid?: number;
  anaReporting?: boolean;
}

/** A TCP listen address; adrfam follows from traddr when not given. */
export interface ListenAddress {
  traddr: string;
  trsvcid: string | number;
  adrfam?: 'IPv4' | 'IPv6';
}

export interface NamespaceOptions {
  /** Default: the lowest free one. */
  nsid?: number;
  /** Default: the bdev's UUID. */
  uuid?: string;
  /** 32 hex digits; default: the bdev's UUID. */
  nguid?: string;
  /** 16 hex digits; default: none. */
  eui64?: string;
}

export interface ExportOptions extends SubsystemOptions {
  /** The subsystem's NQN (created when it does not exist). */
  nqn: string;
  /** Where hosts connect. */
  listen: ListenAddress;
  /** Hosts allowed to connect (ignored with allowAnyHost). */
  hosts?: string[];
  nsid?: number;
}

const TRANSPORT_KEYS: Record<keyof TransportOptions, string> = {
  maxQueueDepth: 'max_queue_depth',
  maxIoQpairsPerCtrlr: 'max_io_qpairs_per_ctrlr',
  inCapsuleDataSize: 'in_capsule_data_size',
  maxIoSize: 'max_io_size',
  ioUnitSize: 'io_unit_size',
  maxAqDepth: 'max_aq_depth',
  c2hSuccess: 'c2h_success',
  maxConnections: 'max_connections',
};

const SUBSYSTEM_KEYS: Record<keyof SubsystemOptions, string> = {
  serialNumber: 'serial_number',
  modelNumber: 'model_number',
  allowAnyHost: 'allow_any_host',
  maxNamespaces: 'max_namespaces',
  minCntlid: 'min_cntlid',
  maxCntlid: 'max_cntlid',
  anaReporting: 'ana_reporting',
};

function checkString(op: string, what: string, v: unknown): asserts v is string {
  if (typeof v !== 'string') throw SpdkError.invalidArg(op, `${what} must be a string`);
}

function params<K extends string>(opts: Partial<Record<K, unknown>> | undefined, keys: Record<K, string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(opts ?? {})) {
    const key = (keys as Record<string, string>)[k];
    if (key !== undefined && v !== undefined) out[key] = v;
  }
  return out;
}

function listenAddress(op: string, a: ListenAddress): ListenAddressJson {
  if (a === null || typeof a !== 'object') throw SpdkError.invalidArg(op, 'listen address must be an object');
  checkString(op, 'traddr', a.traddr);
  if (typeof a.trsvcid !== 'string' && typeof a.trsvcid !== 'number') throw SpdkError.invalidArg(op, 'trsvcid must be a port');
  const adrfam = a.adrfam ?? (a.traddr.includes(':') ? 'IPv6' : 'IPv4');
  return { trtype: 'TCP', adrfam, traddr: a.traddr, trsvcid: String(a.trsvcid) };
}

/**
 * Entry point: `spdk.nvmf`.
 *
 * @example
 * await spdk.rpc.call('bdev_malloc_create', { name: 'Malloc0', num_blocks: 131072, block_size: 512 });
 * const sub = await spdk.nvmf.export('Malloc0', {
 *   nqn: 'nqn.2016-06.io.spdk:cnode1',
 *   listen: { traddr: '127.0.0.1', trsvcid: 4420 },
 *   allowAnyHost: true,
 * });
 * console.log(sub.namespaces); // [{ nsid: 1, bdev_name: 'Malloc0', ... }]
 */
export class NvmfApi {
  constructor(private readonly rpc: RpcCaller) {}

  /** Creates the TCP transport (nvmf_create_transport); rejects when it exists. */
  async createTransport(opts: TransportOptions = {}): Promise<void> {
    await this.rpc.call('nvmf_create_transport', { trtype: 'TCP', ...params(opts, TRANSPORT_KEYS) });
  }

  /** The transports (nvmf_get_transports). */
  async transports(): Promise<TransportJson[]> {
    return (await this.rpc.call('nvmf_get_transports')) as TransportJson[];
  }

  /**
   * Creates an NVMe subsystem (nvmf_create_subsystem).
   *
   * @example
   * const sub = await spdk.nvmf.createSubsystem('nqn.2016-06.io.spdk:cnode1', { serialNumber: 'SPDK0001' });
   */
  async createSubsystem(nqn: string, opts: SubsystemOptions = {}): Promise<NvmfSubsystem> {
    checkString('nvmf.createSubsystem', 'nqn', nqn);
    await this.rpc.call('nvmf_create_subsystem', { nqn, ...params(opts, SUBSYSTEM_KEYS) });
    return this.subsystem(nqn);
  }

  /** Every subsystem, the discovery subsystem included, in the target's order (nvmf_get_subsystems). */
  async subsystems(): Promise<NvmfSubsystem[]> {
    const list = (await this.rpc.call('nvmf_get_subsystems')) as SubsystemJson[];
    return list.map((s) => new NvmfSubsystem(this, s));
  }

  /** One subsystem; rejects with `-19 "No such device"` when there is none. */
  async subsystem(nqn: string): Promise<NvmfSubsystem> {
    checkString('nvmf.subsystem', 'nqn', nqn);
    const list = (await this.rpc.call('nvmf_get_subsystems', { nqn })) as SubsystemJson[];
    return new NvmfSubsystem(this, list[0]);
  }

  /** Deletes a subsystem, disconnecting its hosts (nvmf_delete_subsystem). */
  async deleteSubsystem(nqn: string): Promise<void> {
    await this.rpc.call('nvmf_delete_subsystem', { nqn });
  }

  /** Lets hosts connect to a subsystem through a TCP address (nvmf_subsystem_add_listener). */
  async addListener(nqn: string, address: ListenAddress): Promise<void> {
    await this.rpc.call('nvmf_subsystem_add_listener', { nqn, listen_address: listenAddress('nvmf.addListener', address) });
  }

  async removeListener(nqn: string, address: ListenAddress): Promise<void> {
    await this.rpc.call('nvmf_subsystem_remove_listener', { nqn, listen_address: listenAddress('nvmf.removeListener', address) });
  }

  async listeners(nqn: string): Promise<ListenerJson[]> {
    return (await this.rpc.call('nvmf_subsystem_get_listeners', { nqn })) as ListenerJson[];
  }

  /** Exports a bdev as a namespace (nvmf_subsystem_add_ns); resolves with its NSID. */
  async addNamespace(nqn: string, bdev: string, opts: NamespaceOptions = {}): Promise<number> {
    checkString('nvmf.addNamespace', 'bdev', bdev);
    const namespace: Record<string, unknown> = { bdev_name: bdev };
    for (const k of ['nsid', 'uuid', 'nguid', 'eui64'] as const) if (opts[k] !== undefined) namespace[k] = opts[k];
    return (await this.rpc.call('nvmf_subsystem_add_ns', { nqn, namespace })) as number;
  }

  async removeNamespace(nqn: string, nsid: number): Promise<void> {
    await this.rpc.call('nvmf_subsystem_remove_ns', { nqn, nsid });
  }

  /** Allows a host NQN to connect (nvmf_subsystem_add_host). */
  async addHost(nqn: string, host: string): Promise<void> {
    await this.rpc.call('nvmf_subsystem_add_host', { nqn, host });
  }

  /** Forbids a host NQN and disconnects it (nvmf_subsystem_remove_host). */
  async removeHost(nqn: string, host: string): Promise<void> {
    await this.rpc.call('nvmf_subsystem_remove_host', { nqn, host });
  }

  async allowAnyHost(nqn: string, allow: boolean): Promise<void> {
    await this.rpc.call('nvmf_subsystem_allow_any_host', { nqn, allow_any_host: allow });
  }

  async controllers(nqn: string): Promise<ControllerJson[]> {
    return (await this.rpc.call('nvmf_subsystem_get_controllers', { nqn })) as ControllerJson[];
  }

  async qpairs(nqn: string): Promise<QpairJson[]> {
    return (await this.rpc.call('nvmf_subsystem_get_qpairs', { nqn })) as QpairJson[];
  }

  async stats(): Promise<StatsJson> {
    return (await this.rpc.call('nvmf_get_stats')) as StatsJson;
  }

  /**
   * Exports a bdev over NVMe/TCP in one call: creates the TCP transport and the subsystem when
   * they do not exist, adds the bdev as a namespace, the listener (unless the subsystem has it)
   * and the hosts. A step that fails rejects; the steps before it stay done.
   *
   * @example
   * await spdk.nvmf.export('lvs0/vol1', { nqn: 'nqn.2016-06.io.spdk:vol1', listen: { traddr: '0.0.0.0', trsvcid: 4420 }, hosts: [hostNqn] });
   */
  async export(bdev: string, opts: ExportOptions): Promise<NvmfSubsystem> {
    const op = 'nvmf.export';
    checkString(op, 'bdev', bdev);
    checkString(op, 'nqn', opts?.nqn);
    const address = listenAddress(op, opts.listen);
    if ((await this.transports()).length === 0) await this.createTransport();
    let sub = await this.subsystem(opts.nqn).catch((e: unknown) => {
      if (e instanceof JsonRpcError && e.code === -19) return undefined;
      throw e;
    });
    if (sub === undefined) sub = await this.createSubsystem(opts.nqn, opts);
    await this.addNamespace(opts.nqn, bdev, opts.nsid !== undefined ? { nsid: opts.nsid } : {});
    const has = sub.listenAddresses.some((l) => l.traddr.toLowerCase() === address.traddr.toLowerCase() && l.trsvcid === address.trsvcid && l.adrfam === address.adrfam);
    if (!has) await this.rpc.call('nvmf_subsystem_add_listener', { nqn: opts.nqn, listen_address: address });
    for (const h of opts.hosts ?? []) if (!sub.hosts.includes(h)) await this.addHost(opts.nqn, h);
    return this.subsystem(opts.nqn);
  }
}

/** A subsystem as nvmf_get_subsystems last reported it. */
export class NvmfSubsystem {
  readonly nqn: string;
  readonly subtype: 'NVMe' | 'Discovery';
  readonly listenAddresses: ListenAddressJson[];
  readonly allowAnyHost: boolean;
  /** Allowed host NQNs (newest first, as SPDK lists them). */
  readonly hosts: string[];
  readonly serialNumber?: string;
  readonly modelNumber?: string;
  readonly maxNamespaces?: number;
  readonly minCntlid?: number;
  readonly maxCntlid?: number;
  readonly namespaces: NamespaceJson[];

  /** @internal */
  constructor(
    private readonly api: NvmfApi,
    json: SubsystemJson,
  ) {
    this.nqn = json.nqn;
    this.subtype = json.subtype;
    this.listenAddresses = json.listen_addresses;
    this.allowAnyHost = json.allow_any_host;
    this.hosts = json.hosts.map((h) => h.nqn);
    this.serialNumber = json.serial_number;
    this.modelNumber = json.model_number;
    this.maxNamespaces = json.max_namespaces;
    this.minCntlid = json.min_cntlid;
    this.maxCntlid = json.max_cntlid;
    this.namespaces = json.namespaces ?? [];
  }

  refresh(): Promise<NvmfSubsystem> {
    return this.api.subsystem(this.nqn);
  }

  async addNamespace(bdev: string, opts: NamespaceOptions = {}): Promise<number> {
    return this.api.addNamespace(this.nqn, bdev, opts);
  }

  async removeNamespace(nsid: number): Promise<NvmfSubsystem> {
    await this.api.removeNamespace(this.nqn, nsid);
    return this.refresh();
  }

  async addListener(address: ListenAddress): Promise<NvmfSubsystem> {
    await this.api.addListener(this.nqn, address);
    return this.refresh();
  }

  async removeListener(address: ListenAddress): Promise<NvmfSubsystem> {
    await this.api.removeListener(this.nqn, address);
    return this.refresh();
  }

  async addHost(host: string): Promise<NvmfSubsystem> {
    await this.api.addHost(this.nqn, host);
    return this.refresh();
  }

  async removeHost(host: string): Promise<NvmfSubsystem> {
    await this.api.removeHost(this.nqn, host);
    return this.refresh();
  }

  async setAllowAnyHost(allow: boolean): Promise<NvmfSubsystem> {
    await this.api.allowAnyHost(this.nqn, allow);
    return this.refresh();
  }

  controllers(): Promise<ControllerJson[]> {
    return this.api.controllers(this.nqn);
  }

  qpairs(): Promise<QpairJson[]> {
    return this.api.qpairs(this.nqn);
  }

  delete(): Promise<void> {
    return this.api.deleteSubsystem(this.nqn);
  }
}
