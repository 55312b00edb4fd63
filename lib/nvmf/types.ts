/** The JSON shapes of SPDK v25.09's nvmf methods (keys in SPDK's order). */

export interface ListenAddressJson {
  trtype: string;
  adrfam: string;
  traddr: string;
  trsvcid: string;
}

export interface NamespaceJson {
  nsid: number;
  bdev_name: string;
  /** Kept by SPDK for compatibility: the same as bdev_name. */
  name: string;
  nguid: string;
  eui64?: string;
  uuid: string;
  /** Only when the subsystem has ana_reporting. */
  anagrpid?: number;
}

/** One nvmf_get_subsystems entry. */
export interface SubsystemJson {
  nqn: string;
  subtype: 'NVMe' | 'Discovery';
  listen_addresses: ListenAddressJson[];
  allow_any_host: boolean;
  hosts: Array<{ nqn: string }>;
  /** The rest only for NVMe subsystems. */
  serial_number?: string;
  model_number?: string;
  max_namespaces?: number;
  min_cntlid?: number;
  max_cntlid?: number;
  namespaces?: NamespaceJson[];
}

/** One nvmf_get_transports entry. */
export interface TransportJson {
  trtype: string;
  max_queue_depth: number;
  max_io_qpairs_per_ctrlr: number;
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
  abort_timeout_sec: number;
  ack_timeout: number;
  data_wr_pool_size: number;
  /** spdk-node only, and only when set at nvmf_create_transport. */
  max_connections?: number;
}

/** One nvmf_subsystem_get_listeners entry. */
export interface ListenerJson {
  address: ListenAddressJson;
  ana_states?: Array<{ ana_group: number; ana_state: string }>;
}

/** One nvmf_subsystem_get_controllers entry. */
export interface ControllerJson {
  cntlid: number;
  cntrltype: 'io' | 'discovery';
  hostnqn: string;
  hostid: string;
  /** SPDK counts the admin queue too. */
  num_io_qpairs: number;
}

/** One nvmf_subsystem_get_qpairs entry. */
export interface QpairJson {
  cntlid: number;
  qid: number;
  state: string;
  thread: string;
  hostnqn: string;
  listen_address: ListenAddressJson;
  peer_address: ListenAddressJson;
}

/** nvmf_get_stats. */
export interface StatsJson {
  tick_rate: number;
  poll_groups: Array<{
    name: string;
    admin_qpairs: number;
    io_qpairs: number;
    current_admin_qpairs: number;
    current_io_qpairs: number;
    pending_bdev_io: number;
    completed_nvme_io: number;
    transports: Array<{ trtype: string }>;
  }>;
}
