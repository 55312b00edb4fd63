import type { ListenerState, NamespaceState, SubsystemState, TransportState } from '../../nvmf/target';

/*
 * The JSON SPDK v25.09 writes for NVMe-oF objects, keys in SPDK's order (lib/nvmf/nvmf_rpc.c,
 * lib/nvmf/transport.c, lib/nvmf/tcp.c, lib/nvmf/nvmf.c).
 */

/** nvmf_transport_listen_dump_trid. */
export function trid(l: Pick<ListenerState, 'trtype' | 'adrfam' | 'traddr' | 'trsvcid'>): Record<string, string> {
  return { trtype: l.trtype, adrfam: l.adrfam, traddr: l.traddr, trsvcid: l.trsvcid };
}

/** nvmf_transport_dump_opts with TCP's dump_opts: one nvmf_get_transports entry. */
export function transportToJson(t: TransportState): Record<string, unknown> {
  return {
    trtype: t.trtype,
    max_queue_depth: t.max_queue_depth,
    // SPDK writes max_qpairs_per_ctrlr - 1 as a uint32: 0 (65535 I/O queues + 1, wrapped) is 4294967295.
    max_io_qpairs_per_ctrlr: (t.max_qpairs_per_ctrlr - 1) >>> 0,
    in_capsule_data_size: t.in_capsule_data_size,
    max_io_size: t.max_io_size,
    io_unit_size: t.io_unit_size,
    max_aq_depth: t.max_aq_depth,
    num_shared_buffers: t.num_shared_buffers,
    buf_cache_size: t.buf_cache_size,
    dif_insert_or_strip: t.dif_insert_or_strip,
    zcopy: t.zcopy,
    c2h_success: t.c2h_success,
    sock_priority: t.sock_priority,
    abort_timeout_sec: t.abort_timeout_sec,
    ack_timeout: t.ack_timeout,
    data_wr_pool_size: t.data_wr_pool_size,
    // spdk-node's own option: listed only when it was given, so the default answer is SPDK's.
    ...(t.max_connections !== undefined ? { max_connections: t.max_connections } : {}),
  };
}

/** One namespace of nvmf_get_subsystems (nguid before eui64 before uuid, as SPDK writes them). */
function namespaceToJson(n: NamespaceState, anaReporting: boolean): Record<string, unknown> {
  const out: Record<string, unknown> = { nsid: n.nsid, bdev_name: n.bdevName, name: n.bdevName, nguid: n.nguid };
  if (n.eui64 !== undefined) out.eui64 = n.eui64;
  out.uuid = n.uuid;
  if (anaReporting) out.anagrpid = n.anagrpid;
  return out;
}

/** dump_nvmf_subsystem: one nvmf_get_subsystems entry. */
export function subsystemToJson(s: SubsystemState): Record<string, unknown> {
  const out: Record<string, unknown> = {
    nqn: s.nqn,
    subtype: s.subtype,
    listen_addresses: s.listeners.map(trid),
    allow_any_host: s.allowAnyHost,
    hosts: s.hosts.map((nqn) => ({ nqn })),
  };
  if (s.subtype === 'NVMe') {
    out.serial_number = s.serialNumber;
    out.model_number = s.modelNumber;
    if (s.maxNamespaces !== 0) out.max_namespaces = s.maxNamespaces;
    out.min_cntlid = s.minCntlid;
    out.max_cntlid = s.maxCntlid;
    out.namespaces = s.namespaces.map((n) => namespaceToJson(n, s.anaReporting));
  }
  return out;
}

/** dump_nvmf_subsystem_listener: one nvmf_subsystem_get_listeners entry. */
export function listenerToJson(s: SubsystemState, l: ListenerState): Record<string, unknown> {
  const out: Record<string, unknown> = { address: trid(l) };
  if (s.anaReporting) {
    out.ana_states = Array.from({ length: s.maxNamespaces }, (_, i) => ({ ana_group: i + 1, ana_state: l.anaState }));
  }
  return out;
}

/** The nvmf_subsystem_add_ns params save_config writes for a namespace. */
export function namespaceConfig(s: SubsystemState, n: NamespaceState): Record<string, unknown> {
  const ns: Record<string, unknown> = { nsid: n.nsid, bdev_name: n.bdevName, nguid: n.nguid };
  if (n.eui64 !== undefined) ns.eui64 = n.eui64;
  ns.uuid = n.uuid;
  if (s.anaReporting) ns.anagrpid = n.anagrpid;
  ns.no_auto_visible = false;
  return { nqn: s.nqn, namespace: ns };
}
