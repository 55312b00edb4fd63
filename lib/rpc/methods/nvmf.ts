import * as net from 'node:net';
import type { BdevBackend, BdevInfo } from '../../engine/types';
import { SpdkError } from '../../errors';
import type { NvmfBackend } from '../../nvmf/backend';
import {
  isValidIdString,
  isValidNqn,
  isZeroHex,
  MN_MAX_LEN,
  parseHexId,
  SN_MAX_LEN,
  uuidToNguid,
} from '../../nvmf/names';
import { newSubsystem, NamespaceState, NvmfTarget, SubsystemState } from '../../nvmf/target';
import type { Dispatcher, RpcContext } from '../dispatcher';
import { JsonRpcError } from '../errors';
import { checkTarget, decodeNvmf, engine, fromEngine, inView, internal, invalidParams, NvmfContext } from './nvmf-common';
import { subsystemToJson, trid } from './nvmf-json';
import { registerNvmfListenerMethods } from './nvmf-listener';
import { pollGroupName, registerNvmfTargetMethods } from './nvmf-target';
import { registerNvmfTransportMethods } from './nvmf-transport';

/*
 * SPDK v25.09's NVMe-oF target methods (lib/nvmf/nvmf_rpc.c, subsystem.c) over an NvmfTarget
 * model mirrored into an NvmfBackend. Each handler makes SPDK's checks in SPDK's order and
 * answers SPDK's error object; a refused call changes nothing, here or in the engine.
 */

const GET_SUBSYSTEMS = {
  nqn: { type: 'string', optional: true },
  tgt_name: { type: 'string', optional: true },
} as const;

const CREATE_SUBSYSTEM = {
  nqn: { type: 'string' },
  serial_number: { type: 'string', optional: true },
  model_number: { type: 'string', optional: true },
  tgt_name: { type: 'string', optional: true },
  max_namespaces: { type: 'uint32', optional: true },
  allow_any_host: { type: 'bool', optional: true },
  ana_reporting: { type: 'bool', optional: true },
  min_cntlid: { type: 'uint16', optional: true },
  max_cntlid: { type: 'uint16', optional: true },
  max_discard_size_kib: { type: 'uint64', optional: true },
  max_write_zeroes_size_kib: { type: 'uint64', optional: true },
  passthrough: { type: 'bool', optional: true },
  enable_nssr: { type: 'bool', optional: true },
} as const;

const NQN_ONLY = {
  nqn: { type: 'string' },
  tgt_name: { type: 'string', optional: true },
} as const; // delete_subsystem, get_controllers, get_qpairs

const ADD_NS = {
  nqn: { type: 'string' },
  namespace: { type: 'object' },
  tgt_name: { type: 'string', optional: true },
} as const;

/** rpc_ns_params_decoders (strict). */
const NS_PARAMS = {
  nsid: { type: 'uint32', optional: true },
  bdev_name: { type: 'string' },
  ptpl_file: { type: 'string', optional: true },
  nguid: { type: 'string', optional: true },
  eui64: { type: 'string', optional: true },
  uuid: { type: 'uuid', optional: true },
  anagrpid: { type: 'uint32', optional: true },
  no_auto_visible: { type: 'bool', optional: true },
  hide_metadata: { type: 'bool', optional: true },
} as const;

const REMOVE_NS = {
  nqn: { type: 'string' },
  nsid: { type: 'uint32' },
  tgt_name: { type: 'string', optional: true },
} as const;

const HOST = {
  nqn: { type: 'string' },
  host: { type: 'string' },
  tgt_name: { type: 'string', optional: true },
  dhchap_key: { type: 'string', optional: true },
  dhchap_ctrlr_key: { type: 'string', optional: true },
} as const;

const ANY_HOST = {
  nqn: { type: 'string' },
  allow_any_host: { type: 'bool' },
  tgt_name: { type: 'string', optional: true },
} as const;

/** NVMF_SUBSYSTEM_DEFAULT_NAMESPACES. */
const DEFAULT_NAMESPACES = 32;
/**
 * SPDK allocates per-namespace arrays of max_namespaces entries when the subsystem is created
 * and fails the creation when that allocation fails (4294967295 does); here the limit is fixed
 * (docs/differences.md).
 */
const MAX_NAMESPACES_LIMIT = 1 << 24;
/** NVMF_MIN_CNTLID, NVMF_MAX_CNTLID (FFF0h..FFFFh are reserved). */
const MIN_CNTLID = 1;
const MAX_CNTLID = 0xffef;
/** SPDK_NVME_GLOBAL_NS_TAG. */
const GLOBAL_NS_TAG = 0xffffffff;

const isPow2 = (v: number): boolean => v > 0 && (BigInt(v) & (BigInt(v) - 1n)) === 0n;

/**
 * Registers every nvmf method. `backend` is the engine's target; `cores` the engine's reactor
 * cores.
 *
 * @returns the target model (save_config writes it: lib/config/nvmf-config.ts).
 */
export function registerNvmfMethods(dispatcher: Dispatcher, backend: NvmfBackend, bdevs: BdevBackend, cores: readonly number[]): NvmfTarget {
  const target = new NvmfTarget(backend);
  const ctx: NvmfContext = { target, backend, bdevs, cores };
  registerNvmfTargetMethods(dispatcher, ctx);
  registerNvmfTransportMethods(dispatcher, ctx);
  registerNvmfSubsystemMethods(dispatcher, ctx);
  registerNvmfListenerMethods(dispatcher, ctx);
  return target;
}

/** A bdev looked up as spdk_bdev_open_ext does: by name or alias (a UUID is an alias). */
function findBdev(bdevs: BdevBackend, name: string): BdevInfo | undefined {
  return bdevs.findBdev(name);
}

function registerNvmfSubsystemMethods(dispatcher: Dispatcher, ctx: NvmfContext): void {
  const { target, backend, bdevs } = ctx;

  /** Namespaces whose bdev was deleted have gone from SPDK's subsystem (nvmf_ns_hot_remove). */
  // Only when a bdev went away since the last look (the engine counts removals): with a
  // thousand exports, checking every namespace's bdev on every call cost more than the call.
  let seenRemovals: number | undefined;
  const prune = (): void => {
    const removals = bdevs.removals?.();
    if (removals !== undefined && removals === seenRemovals) return;
    seenRemovals = removals;
    target.pruneNamespaces((name, uuid) => {
      const b = bdevs.findBdev(name);
      return b !== undefined && b.name === name && b.uuid.toLowerCase() === uuid;
    });
  };

  /**
   * spdk_nvmf_tgt_find_subsystem for methods that answer a missing one with "Invalid parameters";
   * one outside the caller's view is missing.
   */
  const subsystemOf = (nqn: string, call: RpcContext): SubsystemState => {
    const s = target.find(nqn);
    if (s === undefined || !inView(call, nqn)) throw invalidParams();
    return s;
  };

  /** Runs a configuration change in turn, with hot-removed namespaces forgotten first. */
  const change = <T>(op: () => T | Promise<T>): Promise<T> =>
    target.serial(() => {
      prune();
      return op();
    });

  dispatcher.register('nvmf_get_subsystems', (params, call) => {
    const req = params === undefined ? {} : decodeNvmf(params, GET_SUBSYSTEMS);
    checkTarget(req.tgt_name);
    prune();
    if (req.nqn !== undefined) {
      const s = target.find(req.nqn);
      if (s === undefined || !inView(call, s.nqn)) throw JsonRpcError.fromErrno(19);
      return [subsystemToJson(s)];
    }
    const all = target.list();
    if (call.view === undefined) return all.map(subsystemToJson);
    // Through a view: the discovery subsystem first, then the view's subsystems in SPDK's (NQN)
    // order. SPDK itself lists discovery first only when no NQN sorts before
    // "nqn.2014-08.org.nvmexpress.discovery"; Cinder's driver skips entry 0 unread.
    const discovery = all.filter((s) => s.subtype === 'Discovery');
    return [...discovery, ...all.filter((s) => s.subtype !== 'Discovery' && inView(call, s.nqn))].map(subsystemToJson);
  });

  dispatcher.register('nvmf_create_subsystem', (params, call) =>
    change(() => {
      const req = decodeNvmf(params, CREATE_SUBSYSTEM);
      checkTarget(req.tgt_name, `Unable to find target ${req.tgt_name}`);
      // spdk_nvmf_subsystem_create: a taken NQN, an invalid one, no free subsystem id.
      const maxNs = req.max_namespaces || DEFAULT_NAMESPACES;
      // Outside the caller's view, an NQN is refused as an invalid one is.
      if (target.find(req.nqn) !== undefined || !isValidNqn(req.nqn) || !inView(call, req.nqn) || target.size >= target.maxSubsystems || maxNs > MAX_NAMESPACES_LIMIT) {
        throw internal(`Unable to create subsystem ${req.nqn}`);
      }
      const s = newSubsystem(req.nqn, 'NVMe', maxNs);
      if (req.serial_number !== undefined) {
        if (!isValidIdString(req.serial_number, SN_MAX_LEN)) throw JsonRpcError.invalidParams(`Invalid SN ${req.serial_number}`);
        s.serialNumber = req.serial_number;
      }
      if (req.model_number !== undefined) {
        if (!isValidIdString(req.model_number, MN_MAX_LEN)) throw JsonRpcError.invalidParams(`Invalid MN ${req.model_number}`);
        s.modelNumber = req.model_number;
      }
      s.allowAnyHost = req.allow_any_host ?? false;
      s.anaReporting = req.ana_reporting ?? false;
      const min = req.min_cntlid ?? MIN_CNTLID;
      const max = req.max_cntlid ?? MAX_CNTLID;
      if (min > max || min < MIN_CNTLID || max > MAX_CNTLID) throw JsonRpcError.invalidParams(`Invalid cntlid range [${min}-${max}]`);
      s.minCntlid = min;
      s.maxCntlid = max;
      s.maxDiscardSizeKib = req.max_discard_size_kib ?? 0;
      const wz = req.max_write_zeroes_size_kib ?? 0;
      if (!(wz === 0 || (wz > 2 && isPow2(wz)))) throw JsonRpcError.invalidParams(`Invalid max_write_zeroes_size_kib ${wz}`);
      s.maxWriteZeroesSizeKib = wz;
      s.passthrough = req.passthrough ?? false;
      s.enableNssr = req.enable_nssr ?? false;
      engine(() => target.create(s), () => internal(`Subsystem ${req.nqn} start failed`));
      return true;
    }),
  );

  dispatcher.register('nvmf_delete_subsystem', (params, call) =>
    change(async () => {
      const req = decodeNvmf(params, NQN_ONLY);
      checkTarget(req.tgt_name);
      const s = subsystemOf(req.nqn, call);
      try {
        await target.delete(s);
      } catch (e) {
        const errno = e instanceof SpdkError && e.errno > 0 ? e.errno : 5;
        throw fromEngine(e, () => internal(`Subsystem destruction failed, rc -${errno}`));
      }
      return true;
    }),
  );

  dispatcher.register('nvmf_subsystem_add_ns', (params, call) =>
    change(() => {
      const req = decodeNvmf(params, ADD_NS, true);
      const p = decodeNvmf(req.namespace, NS_PARAMS);
      // decode_ns_nguid / decode_ns_eui64 are part of the decode.
      const nguid = p.nguid === undefined ? undefined : parseHexId(p.nguid, 16);
      const eui64 = p.eui64 === undefined ? undefined : parseHexId(p.eui64, 8);
      if (nguid === undefined && p.nguid !== undefined) throw invalidParams();
      if (eui64 === undefined && p.eui64 !== undefined) throw invalidParams();
      checkTarget(req.tgt_name);
      const s = subsystemOf(req.nqn, call);
      // spdk_nvmf_subsystem_add_ns_ext, in its order.
      const used = new Set(s.namespaces.map((n) => n.nsid));
      let nsid = p.nsid ?? 0;
      if (nsid === GLOBAL_NS_TAG) throw invalidParams();
      if (nsid === 0) {
        nsid = 1;
        while (nsid <= s.maxNamespaces && used.has(nsid)) nsid++;
      }
      if (nsid > s.maxNamespaces || used.has(nsid)) throw invalidParams();
      const anagrpid = p.anagrpid || nsid;
      if (anagrpid > s.maxNamespaces) throw invalidParams();
      // spdk_bdev_open_ext and spdk_bdev_module_claim_bdev: the bdev must exist and be unclaimed.
      const bdev = findBdev(bdevs, p.bdev_name);
      if (bdev === undefined || bdev.claimed || target.namespaceOfBdev(bdev.name) !== undefined) throw invalidParams();
      if (s.passthrough) throw invalidParams(); // only bdev_nvme namespaces can be passed through
      // Persistent reservations and per-host namespace visibility are not part of the builtin
      // target (docs/differences.md).
      if (p.ptpl_file !== undefined || p.no_auto_visible === true) throw invalidParams();
      const bdevUuid = bdev.uuid.toLowerCase();
      const ns: NamespaceState = {
        nsid,
        bdevName: bdev.name,
        bdevUuid,
        uuid: p.uuid !== undefined && !isZeroHex(p.uuid) ? p.uuid : bdevUuid,
        nguid: nguid !== undefined && !isZeroHex(nguid) ? nguid : uuidToNguid(bdevUuid),
        anagrpid,
        hideMetadata: p.hide_metadata ?? false,
      };
      if (eui64 !== undefined && !isZeroHex(eui64)) ns.eui64 = eui64;
      const namespaces = [...s.namespaces, ns].sort((a, b) => a.nsid - b.nsid);
      engine(() => target.commit({ ...s, namespaces }));
      return nsid;
    }),
  );

  dispatcher.register('nvmf_subsystem_remove_ns', (params, call) =>
    change(() => {
      const req = decodeNvmf(params, REMOVE_NS);
      checkTarget(req.tgt_name);
      const s = subsystemOf(req.nqn, call);
      if (!s.namespaces.some((n) => n.nsid === req.nsid)) throw invalidParams();
      engine(() => target.commit({ ...s, namespaces: s.namespaces.filter((n) => n.nsid !== req.nsid) }));
      return true;
    }),
  );

  dispatcher.register('nvmf_subsystem_add_host', (params, call) =>
    change(() => {
      const req = decodeNvmf(params, HOST, true);
      checkTarget(req.tgt_name);
      const s = subsystemOf(req.nqn, call);
      // The keyring is not part of the builtin engine: no DH-HMAC-CHAP key name resolves.
      if (req.dhchap_key !== undefined || req.dhchap_ctrlr_key !== undefined) throw invalidParams();
      // spdk_nvmf_subsystem_add_host_ext: an invalid or already allowed host NQN is -EINVAL.
      if (!isValidNqn(req.host) || s.hosts.includes(req.host)) throw internal('Internal error');
      // TCP's subsystem_add_host reads a "psk" (TLS) it cannot resolve without a keyring.
      if (target.transport !== undefined && Object.prototype.hasOwnProperty.call(params as object, 'psk')) throw internal('Internal error');
      engine(() => target.commit({ ...s, hosts: [req.host, ...s.hosts] }), () => internal('Internal error'));
      return true;
    }),
  );

  dispatcher.register('nvmf_subsystem_remove_host', (params, call) =>
    change(() => {
      const req = decodeNvmf(params, HOST);
      checkTarget(req.tgt_name);
      const s = subsystemOf(req.nqn, call);
      if (!s.hosts.includes(req.host)) throw internal('Internal error');
      // The engine disconnects the host's controllers (spdk_nvmf_subsystem_disconnect_host).
      engine(() => target.commit({ ...s, hosts: s.hosts.filter((h) => h !== req.host) }), () => internal('Internal error'));
      return true;
    }),
  );

  dispatcher.register('nvmf_subsystem_allow_any_host', (params, call) =>
    change(() => {
      const req = decodeNvmf(params, ANY_HOST);
      checkTarget(req.tgt_name);
      const s = subsystemOf(req.nqn, call);
      if (s.allowAnyHost !== req.allow_any_host) {
        engine(() => target.commit({ ...s, allowAnyHost: req.allow_any_host }), () => internal('Internal error'));
      }
      return true;
    }),
  );

  dispatcher.register('nvmf_subsystem_get_controllers', (params, call) => {
    const req = decodeNvmf(params, NQN_ONLY);
    checkTarget(req.tgt_name, 'Unable to find a target');
    const s = subsystemOf(req.nqn, call);
    return controllers(backend, target, s).map((c) => ({
      cntlid: c.cntlid,
      cntrltype: s.subtype === 'Discovery' ? 'discovery' : 'io',
      hostnqn: c.hostnqn,
      hostid: c.hostid,
      // SPDK counts the bits of the controller's qpair mask, which include the admin queue.
      num_io_qpairs: c.numIoQpairs + 1,
    }));
  });

  dispatcher.register('nvmf_subsystem_get_qpairs', (params, call) => {
    const req = decodeNvmf(params, NQN_ONLY);
    checkTarget(req.tgt_name, 'Unable to find a target');
    const s = subsystemOf(req.nqn, call);
    const hostnqn = new Map(controllers(backend, target, s).map((c) => [c.cntlid, c.hostnqn]));
    const qpairs = target.isMirrored(s.nqn) ? engine(() => backend.qpairs(s.nqn), () => internal('Internal error')) : [];
    return qpairs.map((q) => {
      // The listener's trid as configured (SPDK writes the listener's own text).
      const l = s.listeners.find((x) => x.port === Number(q.listenAddress.trsvcid) && x.traddr.toLowerCase() === q.listenAddress.traddr.toLowerCase());
      return {
        cntlid: q.cntlid,
        qid: q.qid,
        // SPDK v25.09's nvmf_qpair_state_str calls a working queue pair "enabled".
        state: q.state === 'active' ? 'enabled' : q.state,
        thread: pollGroupName(q.reactor),
        hostnqn: hostnqn.get(q.cntlid) ?? '',
        listen_address: l ? trid(l) : addressJson(q.listenAddress),
        peer_address: addressJson(q.peerAddress),
      };
    });
  });
}

function controllers(backend: NvmfBackend, target: NvmfTarget, s: SubsystemState): ReturnType<NvmfBackend['controllers']> {
  if (!target.isMirrored(s.nqn)) return [];
  return engine(() => backend.controllers(s.nqn), () => internal('Internal error'));
}

function addressJson(a: { traddr: string; trsvcid: string }): Record<string, string> {
  return trid({ trtype: 'TCP', adrfam: net.isIPv6(a.traddr) ? 'IPv6' : 'IPv4', traddr: a.traddr, trsvcid: a.trsvcid });
}

