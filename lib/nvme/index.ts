/**
 * spdk.nvme: the NVMe host. On the builtin engine it speaks NVMe/TCP (native/builtin/nvme/):
 * controllers, admin commands, I/O queue pairs with zero-copy buffers, discovery.
 * docs/nvme-host.md has the whole story.
 */
import * as crypto from 'node:crypto';
import { SpdkError } from '../errors';
import type { SpdkBuffer } from '../buffer';
import type { NvmeAddon } from '../engine/native';
import { connectError, ControllerHost, NvmeController } from './controller';
import { decodeDiscoveryLog, DiscoveryLog } from './identify';
import { checkNqn, DISCOVERY_NQN, formatTransportId, normalizeTransportId, resolveAddress, TransportId } from './trid';

export { NvmeController, NvmeAdmin } from './controller';
export type { NvmeAsyncEvent } from './controller';
export type { ControllerCap } from './controller';
export { NvmeQpair } from './qpair';
export type { QpairOptions, QpairOwner, IoOptions, LbaRange } from './qpair';
export { NvmeNamespace } from './namespace';
export { NvmeError, statusName, decodeStatus, makeStatus, opcodeName, Sct } from './status';
export type { NvmeCommandInfo, NvmeStatusCode } from './status';
export { parseTransportId, normalizeTransportId, formatTransportId, DISCOVERY_NQN } from './trid';
export type { TransportId, ResolvedTransportId } from './trid';
export type { ControllerData, NamespaceData, DiscoveryLog, DiscoveryLogEntry, LbaFormat } from './identify';

export interface ConnectOptions {
  /** The host NQN (default: `nqn.2014-08.org.nvmexpress:uuid:<hostid>`, one per process). */
  hostnqn?: string;
  /** The host identifier, a UUID (default: the UUID in a uuid-form hostnqn, else one per process). */
  hostid?: string;
  /** Keep Alive Timeout given at Connect, in ms (default 10000, as SPDK); 0 disables keep-alive. */
  keepAliveTimeoutMs?: number;
  /** I/O queues to ask for (Set Features Number of Queues; default 1024: the target grants what it allows). */
  ioQueues?: number;
  /** NVMe/TCP header digest (CRC32C on every PDU header). */
  headerDigest?: boolean;
  /** NVMe/TCP data digest (CRC32C on every PDU's data). */
  dataDigest?: boolean;
  /** Host PDU data alignment asked for in ICReq: data starts at multiples of (hpda + 1) * 4 bytes (0..31). */
  hpda?: number;
  /** Admin queue entries (default 32). */
  adminQueueSize?: number;
  /** Connecting and initialising the controller must take less (default 10000 ms). */
  connectTimeoutMs?: number;
  /** An admin command not answered within this long fails the controller (default 0: none). */
  adminTimeoutMs?: number;
  /** Default per-command timeout of its queue pairs (QpairOptions.timeoutMs; default 0: none). */
  ioTimeoutMs?: number;
}

/** @internal What the API needs from its Spdk. */
export interface NvmeApiHost {
  /** The engine's NVMe host classes, what a controller is created with, whether PCIe/RDMA trids go through. */
  native: { addon: NvmeAddon; owner: object; anyTransport: boolean };
  reactors: number;
  allocBuffer(length: number): SpdkBuffer;
  assertRunning(op: string): void;
}

const PROCESS_HOST_UUID = crypto.randomUUID();

/**
 * `spdk.nvme`: connect to NVMe controllers and discover subsystems.
 *
 * @example
 * const ctrlr = await spdk.nvme.connect('trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:4420 subnqn:nqn.2016-06.io.spdk:cnode1');
 * const log = await spdk.nvme.discover('trtype:TCP traddr:127.0.0.1 trsvcid:4420');
 */
export class NvmeApi {
  private readonly controllers = new Set<NvmeController>();

  /** @internal */
  constructor(private readonly host: NvmeApiHost) {}

  /** Connected controllers not detached yet. */
  get controllerList(): NvmeController[] {
    return [...this.controllers];
  }

  /**
   * Connects to an NVMe-oF controller: TCP connection, ICReq/ICResp, Fabrics Connect, CC.EN,
   * Identify, Set Features Number of Queues, Identify of every active namespace. Rejects with
   * an SpdkError saying why (connection refused, Connect refused with the target's status, ...).
   */
  async connect(trid: string | TransportId, opts: ConnectOptions = {}): Promise<NvmeController> {
    return this.open(trid, opts, false);
  }

  /**
   * Reads the discovery log of the discovery controller at `trid` (subnqn defaults to the
   * discovery NQN): the whole log, re-read until its generation counter is stable.
   */
  async discover(trid: string | TransportId, opts: ConnectOptions = {}): Promise<DiscoveryLog> {
    const tr = typeof trid === 'string' ? trid : { ...trid };
    const ctrlr = await this.open(tr, { keepAliveTimeoutMs: 0, ...opts }, true);
    try {
      for (let attempt = 0; attempt < 10; attempt++) {
        const head = await ctrlr.admin.getLogPage(0x70, 1024, { rae: true });
        const before = decodeDiscoveryLog(head);
        const total = 1024 + before.numrec * 1024;
        const chunks: Buffer[] = [head];
        for (let off = 1024; off < total; ) {
          const n = Math.min(total - off, 256 * 1024);
          chunks.push(await ctrlr.admin.getLogPage(0x70, n, { offset: off, rae: true }));
          off += n;
        }
        const again = decodeDiscoveryLog(await ctrlr.admin.getLogPage(0x70, 1024, { rae: true }));
        if (again.genctr === before.genctr && again.numrec === before.numrec) return decodeDiscoveryLog(Buffer.concat(chunks));
      }
      throw new SpdkError('the discovery log kept changing while being read (GENCTR)', { errno: 11, op: 'nvme.discover' });
    } finally {
      await ctrlr.detach();
    }
  }

  /** @internal Detaches every controller (spdk.stop()). */
  async detachAll(): Promise<void> {
    await Promise.all([...this.controllers].map((c) => c.detach().catch(() => undefined)));
  }

  private async open(trid: string | TransportId, opts: ConnectOptions, discovery: boolean): Promise<NvmeController> {
    const op = discovery ? 'nvme.discover' : 'nvme.connect';
    this.host.assertRunning(op);
    if (opts === null || typeof opts !== 'object') throw SpdkError.invalidArg(op, 'options must be an object');
    const tr = normalizeTransportId(trid, { anyTransport: this.host.native.anyTransport });
    if (discovery && typeof trid !== 'string' && trid.subnqn === undefined) tr.subnqn = DISCOVERY_NQN;
    if (!discovery && tr.subnqn === DISCOVERY_NQN) throw SpdkError.invalidArg(op, 'subnqn is the discovery NQN: use spdk.nvme.discover()');
    const hostnqn = tr.hostnqn ?? opts.hostnqn ?? `nqn.2014-08.org.nvmexpress:uuid:${opts.hostid ?? PROCESS_HOST_UUID}`;
    checkNqn(hostnqn, 'hostnqn');
    let hostid = opts.hostid;
    if (hostid === undefined) {
      const m = /^nqn\.2014-08\.org\.nvmexpress:uuid:([0-9a-f-]{36})$/i.exec(hostnqn);
      hostid = m ? m[1] : PROCESS_HOST_UUID;
    }
    if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(hostid)) throw SpdkError.invalidArg(op, `hostid '${hostid}' is not a UUID`);
    const int = (v: number | undefined, def: number, min: number, max: number, what: string): number => {
      const x = v ?? def;
      if (!Number.isInteger(x) || x < min || x > max) throw SpdkError.invalidArg(op, `${what} must be an integer ${min}..${max}`);
      return x;
    };
    const keepAliveMs = int(opts.keepAliveTimeoutMs, 10000, 0, 3600000, 'keepAliveTimeoutMs');
    const ioQueues = int(opts.ioQueues, 1024, 1, 65535, 'ioQueues');
    const hpda = int(opts.hpda, 0, 0, 31, 'hpda');
    const adminQueueSize = int(opts.adminQueueSize, 32, 2, 4096, 'adminQueueSize');
    const connectTimeoutMs = int(opts.connectTimeoutMs, 10000, 1, 3600000, 'connectTimeoutMs');
    const adminTimeoutMs = int(opts.adminTimeoutMs, 0, 0, 3600000, 'adminTimeoutMs');
    const ioTimeoutMs = int(opts.ioTimeoutMs, 0, 0, 3600000, 'ioTimeoutMs');
    const { address, family } = tr.trtype === 'PCIe' ? { address: tr.traddr, family: 4 as const } : await resolveAddress(tr);
    this.host.assertRunning(op);
    const n = new this.host.native.addon.NvmeController(this.host.native.owner);
    let ctrlr: NvmeController | undefined;
    n.onEvent((e) => ctrlr?.onAsyncEvent(e));
    const info = await n
      .connect({
        trid: formatTransportId({ ...tr, traddr: address }),
        where: tr.trtype === 'PCIe' ? tr.traddr : family === 6 ? `[${address}]:${tr.trsvcid}` : `${address}:${tr.trsvcid}`,
        traddr: address,
        trsvcid: tr.trsvcid,
        family,
        subnqn: tr.subnqn,
        hostnqn,
        hostid: Buffer.from(hostid.replace(/-/g, ''), 'hex'),
        keepAliveMs,
        adminQueueSize,
        hdgst: opts.headerDigest ?? false,
        ddgst: opts.dataDigest ?? false,
        hpda,
        ioQueues,
        discovery,
        connectTimeoutMs,
        adminTimeoutMs,
      })
      .catch((e: Error) => {
        throw connectError(e, op, `cannot connect to ${tr.trtype === 'PCIe' ? tr.traddr : `${tr.traddr}:${tr.trsvcid}`} (${tr.subnqn})`);
      });
    const host: ControllerHost = {
      addon: this.host.native.addon,
      reactors: this.host.reactors,
      allocBuffer: (len) => this.host.allocBuffer(len),
      onDetached: (c) => this.controllers.delete(c),
    };
    ctrlr = new NvmeController(n, info, tr, hostnqn, host, ioTimeoutMs);
    this.controllers.add(ctrlr);
    return ctrlr;
  }
}
