import type { NvmfTarget } from '../nvmf/target';
import { DEFAULT_MAX_SUBSYSTEMS } from '../nvmf/target';
import { namespaceConfig, transportToJson, trid } from '../rpc/methods/nvmf-json';
import { DISCOVERY_FILTERS } from '../rpc/methods/nvmf-target';
import type { ConfigEntry } from './subsystems';

/**
 * The nvmf part of save_config, in SPDK v25.09's shape and order
 * (module/event/subsystems/nvmf/nvmf_tgt.c nvmf_subsystem_write_config_json and lib/nvmf/nvmf.c
 * spdk_nvmf_tgt_write_config_json): the start-up options (nvmf_set_config,
 * nvmf_set_max_subsystems, nvmf_set_crdt), the transport, then each subsystem in the target's
 * order (by NQN): nvmf_create_subsystem, its hosts, its namespaces, its listeners (the discovery
 * subsystem: only its listeners).
 *
 * The nvmf subsystem comes after bdev in the config, whose last call (bdev_wait_for_examine)
 * returns once the lvols on the bdevs it recreated are tasted: the namespaces' bdevs exist by the
 * time nvmf_subsystem_add_ns runs.
 */
export function nvmfSubsystemConfig(target: NvmfTarget): ConfigEntry[] {
  const conf = target.conf;
  const setConfig: Record<string, unknown> = {
    discovery_filter: DISCOVERY_FILTERS[conf.discoveryFilter],
    admin_cmd_passthru: { identify_ctrlr: conf.adminCmdPassthru.identifyCtrlr, vendor_specific: conf.adminCmdPassthru.vendorSpecific },
  };
  if (conf.pollGroupsMask !== undefined) setConfig.poll_groups_mask = conf.pollGroupsMask;
  setConfig.dhchap_digests = [...conf.dhchapDigests];
  setConfig.dhchap_dhgroups = [...conf.dhchapDhgroups];

  const out: ConfigEntry[] = [
    { method: 'nvmf_set_config', params: setConfig },
    { method: 'nvmf_set_max_subsystems', params: { max_subsystems: conf.maxSubsystems || DEFAULT_MAX_SUBSYSTEMS } },
    { method: 'nvmf_set_crdt', params: { crdt1: conf.crdt[0], crdt2: conf.crdt[1], crdt3: conf.crdt[2] } },
  ];
  if (target.transport) out.push({ method: 'nvmf_create_transport', params: transportToJson(target.transport) });

  for (const s of target.list()) {
    if (s.subtype === 'NVMe') {
      out.push({
        method: 'nvmf_create_subsystem',
        params: {
          nqn: s.nqn,
          allow_any_host: s.allowAnyHost,
          serial_number: s.serialNumber,
          model_number: s.modelNumber,
          max_namespaces: s.maxNamespaces,
          min_cntlid: s.minCntlid,
          max_cntlid: s.maxCntlid,
          ana_reporting: s.anaReporting,
        },
      });
      for (const host of s.hosts) out.push({ method: 'nvmf_subsystem_add_host', params: { nqn: s.nqn, host } });
      for (const ns of s.namespaces) out.push({ method: 'nvmf_subsystem_add_ns', params: namespaceConfig(s, ns) });
    }
    for (const l of s.listeners) {
      const params: Record<string, unknown> = { nqn: s.nqn, listen_address: trid(l), secure_channel: l.secureChannel };
      if (l.sockImpl !== undefined) params.sock_impl = l.sockImpl;
      out.push({ method: 'nvmf_subsystem_add_listener', params });
    }
  }
  return out;
}
