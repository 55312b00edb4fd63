import type { Dispatcher } from '../dispatcher';
import { checkTarget, decodeNvmf, engine, internal, invalidParams, NvmfContext } from './nvmf-common';

/*
 * Target-wide nvmf methods of SPDK v25.09: the start-up options (module/event/subsystems/nvmf/
 * nvmf_rpc.c: nvmf_set_config, nvmf_set_max_subsystems, nvmf_set_crdt, callable only before the
 * framework initialises, i.e. from a JSON config) and nvmf_get_stats (lib/nvmf/nvmf_rpc.c).
 *
 * The start-up options are kept and written back by save_config, so an SPDK config loads and
 * saves unchanged; what the builtin target does with them is in docs/differences.md.
 */

const MAX_SUBSYSTEMS = { max_subsystems: { type: 'uint32', optional: true } } as const;

const CRDT = {
  crdt1: { type: 'uint16', optional: true },
  crdt2: { type: 'uint16', optional: true },
  crdt3: { type: 'uint16', optional: true },
} as const;

const SET_CONFIG = {
  admin_cmd_passthru: { type: 'object', optional: true },
  poll_groups_mask: { type: 'string', optional: true },
  discovery_filter: { type: 'string', optional: true },
  dhchap_digests: { type: 'array', optional: true },
  dhchap_dhgroups: { type: 'array', optional: true },
} as const;

const ADMIN_PASSTHRU = {
  identify_ctrlr: { type: 'bool', optional: true },
  vendor_specific: { type: 'bool', optional: true },
} as const;

const GET_STATS = { tgt_name: { type: 'string', optional: true } } as const;

/** spdk_nvme_dhchap_get_digest_id / _get_dhgroup_id names, in their id order. */
export const DHCHAP_DIGESTS = ['sha256', 'sha384', 'sha512'];
export const DHCHAP_DHGROUPS = ['null', 'ffdhe2048', 'ffdhe3072', 'ffdhe4096', 'ffdhe6144', 'ffdhe8192'];

/** nvmf_subsystem_dump_discover_filter's names, indexed by the filter bits. */
export const DISCOVERY_FILTERS = [
  'match_any',
  'transport',
  'address',
  'transport,address',
  'svcid',
  'transport,svcid',
  'address,svcid',
  'transport,address,svcid',
];

/** decode_discovery_filter: comma-separated tokens, each matched on its prefix as SPDK's strncmp does. */
function parseDiscoveryFilter(s: string): number | undefined {
  let filter = 0;
  let matchAny = false;
  for (const tok of s.split(',').filter((t) => t.length > 0)) {
    if (tok.startsWith('match_any')) {
      if (filter !== 0) return undefined;
      matchAny = true;
    } else if (matchAny) {
      return undefined;
    } else if (tok.startsWith('transport')) {
      filter |= 1;
    } else if (tok.startsWith('address')) {
      filter |= 2;
    } else if (tok.startsWith('svcid')) {
      filter |= 4;
    } else {
      return undefined;
    }
  }
  return filter;
}

/**
 * spdk_cpuset_parse (hex with or without 0x, or a "[0,2-3]" list) and the check that every CPU is
 * one of the engine's; returns the mask as spdk_cpuset_fmt writes it (hex digits), or undefined.
 */
function parseCpuMask(s: string, cores: readonly number[]): string | undefined {
  const cpus = new Set<number>();
  const t = s.trim();
  if (t.startsWith('[')) {
    if (!t.endsWith(']')) return undefined;
    for (const part of t.slice(1, -1).split(',')) {
      const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
      if (!m) return undefined;
      const lo = Number(m[1]);
      const hi = m[2] === undefined ? lo : Number(m[2]);
      if (hi < lo || hi >= 1024) return undefined;
      for (let c = lo; c <= hi; c++) cpus.add(c);
    }
  } else {
    const hex = t.replace(/^0[xX]/, '');
    if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length > 256) return undefined;
    let bit = 0;
    for (let i = hex.length - 1; i >= 0; i--, bit += 4) {
      const d = parseInt(hex[i], 16);
      for (let b = 0; b < 4; b++) if (d & (1 << b)) cpus.add(bit + b);
    }
  }
  if ([...cpus].some((c) => !cores.includes(c))) return undefined;
  let out = 0n;
  for (const c of cpus) out |= 1n << BigInt(c);
  return out.toString(16);
}

function nameList(v: unknown[], names: string[]): string[] | undefined {
  if (v.length > 32 || !v.every((x) => typeof x === 'string' && names.includes(x))) return undefined;
  // SPDK keeps a bit mask: duplicates collapse and the order is the id order.
  return names.filter((n) => v.includes(n));
}

/** The name SPDK gives a poll group's thread (nvmf_tgt_create_poll_group). */
export function pollGroupName(reactor: number): string {
  return `nvmf_tgt_poll_group_${String(reactor).padStart(3, '0')}`;
}

export function registerNvmfTargetMethods(dispatcher: Dispatcher, ctx: NvmfContext): void {
  const { target } = ctx;
  const startup = { states: ['startup'] as const };

  dispatcher.register(
    'nvmf_set_max_subsystems',
    (params) => {
      if (target.conf.maxSubsystems !== 0) throw internal('Must not call more than once');
      const req = params === undefined ? {} : decodeNvmf(params, MAX_SUBSYSTEMS);
      target.conf.maxSubsystems = req.max_subsystems ?? 0;
      return true;
    },
    startup,
  );

  dispatcher.register(
    'nvmf_set_crdt',
    (params) => {
      const req = params === undefined ? {} : decodeNvmf(params, CRDT);
      target.conf.crdt = [req.crdt1 ?? 0, req.crdt2 ?? 0, req.crdt3 ?? 0];
      return true;
    },
    startup,
  );

  dispatcher.register(
    'nvmf_set_config',
    (params) => {
      if (params === undefined) return true;
      const req = decodeNvmf(params, SET_CONFIG);
      // Decoded into a copy of the current options, stored only when all of it decodes.
      const conf = { ...target.conf, adminCmdPassthru: { ...target.conf.adminCmdPassthru } };
      if (req.admin_cmd_passthru !== undefined) {
        const p = decodeNvmf(req.admin_cmd_passthru, ADMIN_PASSTHRU);
        if (p.identify_ctrlr !== undefined) conf.adminCmdPassthru.identifyCtrlr = p.identify_ctrlr;
        if (p.vendor_specific !== undefined) conf.adminCmdPassthru.vendorSpecific = p.vendor_specific;
      }
      if (req.poll_groups_mask !== undefined) {
        const mask = parseCpuMask(req.poll_groups_mask, ctx.cores);
        if (mask === undefined) throw invalidParams();
        conf.pollGroupsMask = mask;
      }
      if (req.discovery_filter !== undefined) {
        const f = parseDiscoveryFilter(req.discovery_filter);
        if (f === undefined) throw invalidParams();
        conf.discoveryFilter = f;
      }
      if (req.dhchap_digests !== undefined) {
        const d = nameList(req.dhchap_digests, DHCHAP_DIGESTS);
        if (d === undefined) throw invalidParams();
        conf.dhchapDigests = d;
      }
      if (req.dhchap_dhgroups !== undefined) {
        const g = nameList(req.dhchap_dhgroups, DHCHAP_DHGROUPS);
        if (g === undefined) throw invalidParams();
        conf.dhchapDhgroups = g;
      }
      Object.assign(target.conf, conf);
      return true;
    },
    startup,
  );

  dispatcher.register('nvmf_get_stats', (params) => {
    const req = params === undefined ? {} : decodeNvmf(params, GET_STATS);
    checkTarget(req.tgt_name);
    const stats = engine(() => ctx.backend.stats(), () => internal('Unable to find a target.'));
    const transports = target.transport ? [{ trtype: target.transport.trtype }] : [];
    return {
      tick_rate: stats.tickRate,
      // One poll group per reactor, named as SPDK names its poll group threads.
      poll_groups: stats.pollGroups.map((g, i) => ({
        name: pollGroupName(i),
        admin_qpairs: g.adminQpairs,
        io_qpairs: g.ioQpairs,
        current_admin_qpairs: g.currentAdminQpairs,
        current_io_qpairs: g.currentIoQpairs,
        pending_bdev_io: g.pendingBdevIo,
        completed_nvme_io: g.completedNvmeIo,
        transports: transports.map((t) => ({ ...t })),
      })),
    };
  });
}
