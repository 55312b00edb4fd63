import type { NvmfSubsystemDesc, NvmfTransportOpts } from '../engine/native';
import type { NvmfBackend } from './backend';
import { DISCOVERY_NQN } from './names';

/*
 * The NVMe-oF target's configuration as SPDK v25.09 keeps it (struct spdk_nvmf_tgt,
 * spdk_nvmf_subsystem, spdk_nvmf_transport), owned by the control plane. The engine's data path
 * gets a copy: every accepted change is mirrored to the backend first and recorded here only when
 * the backend took it, so a refused change leaves both sides as they were.
 */

export type AnaState = 'optimized' | 'non_optimized' | 'inaccessible';

/** The transport's options, named as SPDK's nvmf_get_transports writes them. */
export interface TransportState {
  trtype: 'TCP';
  max_queue_depth: number;
  /** spdk_nvmf_transport_opts.max_qpairs_per_ctrlr: I/O queues + 1, a uint16 (65535 + 1 wraps to 0, as in SPDK). */
  max_qpairs_per_ctrlr: number;
  in_capsule_data_size: number;
  max_io_size: number;
  io_unit_size: number;
  max_aq_depth: number;
  num_shared_buffers: number;
  buf_cache_size: number;
  dif_insert_or_strip: boolean;
  zcopy: boolean;
  c2h_success: boolean;
  sock_priority: number;
  control_msg_num: number;
  abort_timeout_sec: number;
  ack_timeout: number;
  data_wr_pool_size: number;
  acceptor_poll_rate: number;
  disable_command_passthru: boolean;
  kas: number;
  min_kato: number;
  /** spdk-node's connection limit, when given to nvmf_create_transport (else the default applies). */
  max_connections?: number;
}

export interface ListenerState {
  trtype: 'TCP';
  adrfam: 'IPv4' | 'IPv6';
  /** As given (an IP literal). */
  traddr: string;
  /** As given (SPDK keeps the text, e.g. " +4420"). */
  trsvcid: string;
  /** The port trsvcid names. */
  port: number;
  secureChannel: boolean;
  sockImpl?: string;
  /** The ANA state every ANA group of the listener starts in. */
  anaState: AnaState;
}

export interface NamespaceState {
  nsid: number;
  bdevName: string;
  /** The bdev's own UUID when the namespace was added: a bdev of that name and UUID is the same bdev. */
  bdevUuid: string;
  uuid: string;
  /** 32 upper-case hex digits. */
  nguid: string;
  /** 16 upper-case hex digits, absent when not set. */
  eui64?: string;
  anagrpid: number;
  hideMetadata: boolean;
}

export interface SubsystemState {
  nqn: string;
  subtype: 'NVMe' | 'Discovery';
  serialNumber: string;
  modelNumber: string;
  allowAnyHost: boolean;
  anaReporting: boolean;
  /** SPDK's max_nsid: 0 for the discovery subsystem, 32 when not given. */
  maxNamespaces: number;
  minCntlid: number;
  maxCntlid: number;
  /** Newest first (SPDK inserts at the head of its lists). */
  hosts: string[];
  /** Newest first. */
  listeners: ListenerState[];
  /** In nsid order. */
  namespaces: NamespaceState[];
  maxDiscardSizeKib: number;
  maxWriteZeroesSizeKib: number;
  passthrough: boolean;
  enableNssr: boolean;
}

/** The target options of nvmf_set_config, nvmf_set_max_subsystems and nvmf_set_crdt. */
export interface TargetConf {
  /** 0 until nvmf_set_max_subsystems sets it; the target then has 1024. */
  maxSubsystems: number;
  crdt: [number, number, number];
  /** SPDK_NVMF_TGT_DISCOVERY_MATCH_* bits: transport 1, address 2, svcid 4. */
  discoveryFilter: number;
  adminCmdPassthru: { identifyCtrlr: boolean; vendorSpecific: boolean };
  /** The poll groups' CPU mask as SPDK formats it (hex digits), when set. */
  pollGroupsMask?: string;
  dhchapDigests: string[];
  dhchapDhgroups: string[];
}

/** SPDK_NVMF_DEFAULT_MAX_SUBSYSTEMS. */
export const DEFAULT_MAX_SUBSYSTEMS = 1024;

/** spdk_nvme_transport_id_compare for two TCP listeners: traddr and trsvcid case-insensitive. */
export function sameListener(a: ListenerState, b: ListenerState): boolean {
  return a.adrfam === b.adrfam && a.traddr.toLowerCase() === b.traddr.toLowerCase() && a.trsvcid.toLowerCase() === b.trsvcid.toLowerCase();
}

function listenerKey(l: ListenerState): string {
  return `${l.adrfam}|${l.traddr.toLowerCase()}|${l.trsvcid.toLowerCase()}`;
}

/** SPDK's subsystem tree order: strncmp of the NQNs, i.e. byte order of their UTF-8. */
function nqnOrder(a: SubsystemState, b: SubsystemState): number {
  return Buffer.compare(Buffer.from(a.nqn, 'utf8'), Buffer.from(b.nqn, 'utf8'));
}

export class NvmfTarget {
  transport: TransportState | undefined;
  readonly conf: TargetConf = {
    maxSubsystems: 0,
    crdt: [0, 0, 0],
    discoveryFilter: 0,
    adminCmdPassthru: { identifyCtrlr: false, vendorSpecific: false },
    dhchapDigests: ['sha256', 'sha384', 'sha512'],
    dhchapDhgroups: ['null', 'ffdhe2048', 'ffdhe3072', 'ffdhe4096', 'ffdhe6144', 'ffdhe8192'],
  };
  private readonly subsystems = new Map<string, SubsystemState>();
  /** Subsystems the backend has been given (the discovery subsystem goes once a transport exists). */
  private readonly mirrored = new Set<string>();
  /** One listening socket per address, however many subsystems list it. */
  private readonly sockets = new Map<string, { traddr: string; port: number; refs: number }>();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly backend: NvmfBackend) {
    // The discovery subsystem exists from the start, as nvmf_tgt creates it at initialisation.
    this.subsystems.set(DISCOVERY_NQN, newSubsystem(DISCOVERY_NQN, 'Discovery', 0, true));
  }

  /**
   * Runs configuration changes one at a time: a change that waits for the engine (deleting a
   * subsystem) completes before the next one looks at the model.
   */
  serial<T>(op: () => T | Promise<T>): Promise<T> {
    const run = this.queue.then(op, op);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Every subsystem in SPDK's order (by NQN). */
  list(): SubsystemState[] {
    return [...this.subsystems.values()].sort(nqnOrder);
  }

  find(nqn: string): SubsystemState | undefined {
    return this.subsystems.get(nqn);
  }

  /** True when the engine has been given the subsystem (it can have controllers). */
  isMirrored(nqn: string): boolean {
    return this.mirrored.has(nqn);
  }

  get size(): number {
    return this.subsystems.size;
  }

  /** The number of subsystems the target may hold (tgt->max_subsystems). */
  get maxSubsystems(): number {
    return this.conf.maxSubsystems || DEFAULT_MAX_SUBSYSTEMS;
  }

  /** The namespace using a bdev (by the bdev's name), in any subsystem. */
  namespaceOfBdev(bdevName: string): { subsystem: SubsystemState; ns: NamespaceState } | undefined {
    for (const s of this.subsystems.values()) {
      const ns = s.namespaces.find((n) => n.bdevName === bdevName);
      if (ns) return { subsystem: s, ns };
    }
    return undefined;
  }

  createTransport(state: TransportState, opts: NvmfTransportOpts): void {
    // Hosts can reach the target once it has a transport: the engine gets the discovery
    // subsystem first, so that a refusal leaves no transport behind.
    const discovery = this.subsystems.get(DISCOVERY_NQN);
    if (discovery && !this.mirrored.has(DISCOVERY_NQN)) this.mirror(discovery);
    this.backend.createTransport(opts);
    this.transport = state;
  }

  /** Creates a subsystem (the backend first). */
  create(s: SubsystemState): void {
    this.commit(s);
  }

  /**
   * Replaces a subsystem's configuration with `next` (a changed copy): the backend gets the whole
   * new description; when it throws, nothing changes here either.
   */
  commit(next: SubsystemState): void {
    if (next.subtype === 'NVMe' || this.transport !== undefined || this.mirrored.has(next.nqn)) this.mirror(next);
    this.subsystems.set(next.nqn, next);
  }

  private mirror(s: SubsystemState): void {
    this.backend.setSubsystem(toDesc(s));
    this.mirrored.add(s.nqn);
  }

  /** Adds a listener to a subsystem, opening its socket when no other subsystem lists it. */
  addListener(s: SubsystemState, l: ListenerState): void {
    const key = listenerKey(l);
    const socket = this.sockets.get(key);
    if (socket === undefined) this.backend.listen(l.traddr, String(l.port));
    try {
      this.commit({ ...s, listeners: [l, ...s.listeners] });
    } catch (e) {
      if (socket === undefined) this.stopSocket(l.traddr, l.port);
      throw e;
    }
    if (socket) socket.refs++;
    else this.sockets.set(key, { traddr: l.traddr, port: l.port, refs: 1 });
  }

  /** Removes a listener from a subsystem, closing its socket when no subsystem lists it any more. */
  removeListener(s: SubsystemState, l: ListenerState): void {
    this.commit({ ...s, listeners: s.listeners.filter((x) => x !== l) });
    this.release([l]);
  }

  /** Deletes a subsystem: the engine disconnects its hosts and releases its bdevs first. */
  async delete(s: SubsystemState): Promise<void> {
    if (this.mirrored.has(s.nqn)) await this.backend.deleteSubsystem(s.nqn);
    this.mirrored.delete(s.nqn);
    this.subsystems.delete(s.nqn);
    this.release(s.listeners);
  }

  /**
   * Forgets namespaces whose bdev has gone (SPDK hot-removes a namespace when its bdev is
   * deleted); `exists(name, uuid)` tells whether that bdev is still there.
   */
  pruneNamespaces(exists: (name: string, uuid: string) => boolean): void {
    for (const s of [...this.subsystems.values()]) {
      const kept = s.namespaces.filter((n) => exists(n.bdevName, n.bdevUuid));
      if (kept.length === s.namespaces.length) continue;
      const next = { ...s, namespaces: kept };
      try {
        this.commit(next);
      } catch {
        // The engine dropped the namespace itself when the bdev went.
        this.subsystems.set(s.nqn, next);
      }
    }
  }

  private release(listeners: ListenerState[]): void {
    for (const l of listeners) {
      const key = listenerKey(l);
      const socket = this.sockets.get(key);
      if (socket === undefined) continue;
      if (--socket.refs > 0) continue;
      this.sockets.delete(key);
      this.stopSocket(socket.traddr, socket.port);
    }
  }

  private stopSocket(traddr: string, port: number): void {
    try {
      this.backend.stopListen(traddr, String(port));
    } catch {
      // The listener is gone from every subsystem; a socket the engine cannot close is its own
      // leak, not a configuration error.
    }
  }
}

/** A subsystem with SPDK's defaults (spdk_nvmf_subsystem_create). */
export function newSubsystem(nqn: string, subtype: 'NVMe' | 'Discovery', maxNamespaces: number, allowAnyHost = false): SubsystemState {
  return {
    nqn,
    subtype,
    serialNumber: '00000000000000000000',
    modelNumber: 'SPDK bdev Controller',
    allowAnyHost,
    anaReporting: false,
    maxNamespaces,
    minCntlid: 1,
    maxCntlid: 0xffef,
    hosts: [],
    listeners: [],
    namespaces: [],
    maxDiscardSizeKib: 0,
    maxWriteZeroesSizeKib: 0,
    passthrough: false,
    enableNssr: false,
  };
}

/** What the engine gets for a subsystem. */
export function toDesc(s: SubsystemState): NvmfSubsystemDesc {
  return {
    nqn: s.nqn,
    subtype: s.subtype,
    serialNumber: s.serialNumber,
    modelNumber: s.modelNumber,
    allowAnyHost: s.allowAnyHost,
    hosts: [...s.hosts],
    listeners: s.listeners.map((l) => ({ traddr: l.traddr, trsvcid: String(l.port) })),
    namespaces: s.namespaces.map((n) => {
      const ns: NvmfSubsystemDesc['namespaces'][number] = { nsid: n.nsid, bdevName: n.bdevName, uuid: n.uuid, nguid: n.nguid };
      if (n.eui64 !== undefined) ns.eui64 = n.eui64;
      return ns;
    }),
    minCntlid: s.minCntlid,
    maxCntlid: s.maxCntlid,
    maxNamespaces: s.maxNamespaces,
  };
}
