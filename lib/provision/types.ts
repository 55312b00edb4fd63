/** The provisioning layer's public shapes. Ids are "<node name>:<lvol UUID>". */

/** Where a volume's content came from. */
export type VolumeSource = { snapshotId: string } | { volumeId: string };

export interface Volume {
  /** "<node>:<lvol UUID>". */
  id: string;
  name: string;
  node: string;
  /** The lvstore's name. */
  pool: string;
  /** The lvol's UUID: its bdev name, and the model number of its export. */
  uuid: string;
  sizeBytes: number;
  thin: boolean;
  /** Bytes of clusters the volume holds itself (not those it shares with its snapshots). */
  allocatedBytes: number;
  /**
   * What it was created from, as long as the storage still records it (a volume restored from a
   * snapshot that was later deleted no longer says so).
   */
  source?: VolumeSource;
  /** The node's labels: where the volume can be reached. */
  topology: Record<string, string>;
}

export interface Snapshot {
  /** "<node>:<lvol UUID>". */
  id: string;
  name: string;
  node: string;
  pool: string;
  uuid: string;
  /** The volume it was taken of (which may since have been deleted). */
  sourceVolumeId: string;
  /** The source volume's size when the snapshot was taken (what restoring needs at least). */
  sizeBytes: number;
  /** Bytes of clusters the snapshot holds. */
  allocatedBytes: number;
  /** When it was taken, to the second. */
  createdAt: Date;
  /** Snapshots are complete when created. */
  readyToUse: true;
}

export interface CreateVolumeRequest {
  /** 1 to 63 bytes of letters, digits, '.', '_' and '-', not starting with "__". */
  name: string;
  /** At least this many bytes; rounded up to whole MiB and whole clusters of the pool. */
  sizeBytes: number;
  /**
   * When given, an existing volume of this name matches if its size is between sizeBytes and
   * this (CSI's capacity range); without it, its size must be sizeBytes rounded up.
   */
  limitBytes?: number;
  /** Allocate on first write (default true); false allocates every cluster now. */
  thin?: boolean;
  /** Create from a snapshot, or clone another volume; the volume lands in the source's pool. */
  source?: VolumeSource;
  /** Only on this node / in this pool (lvstore name). */
  node?: string;
  pool?: string;
  /**
   * Only on a node whose labels hold every key/value of at least one of these segments (CSI's
   * accessibility requirements); empty or absent: any node.
   */
  topology?: Array<Record<string, string>>;
}

export interface ListOptions {
  /** At most this many entries (default: all). */
  maxEntries?: number;
  /** The nextToken of the previous page. */
  startingToken?: string;
}

export interface Page<T> {
  entries: T[];
  /** Present when more entries follow: pass it as startingToken. */
  nextToken?: string;
}

/** An NVMe/TCP address of an export, in the forms hosts use directly. */
export interface VolumeExportAddress {
  trtype: 'TCP';
  adrfam: 'IPv4' | 'IPv6';
  traddr: string;
  trsvcid: string;
  /** SPDK's transport ID string (spdk_nvme_transport_id_parse, spdk_nvme_perf -r, bdev_nvme_attach_controller). */
  transportId: string;
  /** The Linux initiator's `nvme connect` arguments. */
  nvmeConnectArgs: string[];
}

export interface VolumeExport {
  volumeId: string;
  nqn: string;
  /** The volume's namespace ID (undefined when an interrupted export has none yet). */
  nsid: number | undefined;
  /** The volume's UUID: hosts find the device by it (/dev/disk/by-id/nvme-<model>_<serial>). */
  modelNumber: string;
  serialNumber: string;
  allowAnyHost: boolean;
  hosts: string[];
  addresses: VolumeExportAddress[];
}

export interface VolumeExportOptions {
  /** Host NQNs allowed to connect; none or empty: any host. */
  hosts?: string[];
}

export interface PoolCapacity {
  node: string;
  pool: string;
  poolUuid: string;
  clusterSize: number;
  totalBytes: number;
  /** Clusters nobody holds. */
  freeBytes: number;
  /** Sum of the sizes of the pool's volumes (thin ones at their full size). */
  provisionedBytes: number;
  overcommit: number;
  /** overcommit × totalBytes: what provisionedBytes may reach. */
  maxProvisionedBytes: number;
  /** The largest thin volume that can be created now. */
  availableThinBytes: number;
  /** The largest thick volume that can be created now. */
  availableThickBytes: number;
}

export interface NodeCapacity {
  node: string;
  labels: Record<string, string>;
  totalBytes: number;
  freeBytes: number;
  provisionedBytes: number;
  /** The largest thin / thick volume that fits in one of its pools. */
  availableThinBytes: number;
  availableThickBytes: number;
  pools: PoolCapacity[];
}

export interface CapacityReport {
  nodes: NodeCapacity[];
  totalBytes: number;
  freeBytes: number;
  provisionedBytes: number;
  /** The largest thin / thick volume that fits in one pool anywhere. */
  availableThinBytes: number;
  availableThickBytes: number;
}

export interface CapacityQuery {
  node?: string;
  pool?: string;
  topology?: Array<Record<string, string>>;
}
