/**
 * The shape of the builtin engine's addon as TypeScript sees it (native/builtin/addon.cc).
 * Only lib/ talks to these objects; users get the classes in lib/spdk.ts and lib/bdev/.
 */
import type { BdevInfo, BdevStats, LvolBdevInfo, LvstoreInfo } from './types';

export interface NativeConstants {
  DESC_OP: number;
  DESC_TAG: number;
  DESC_BUF: number;
  DESC_BUF_OFFSET: number;
  DESC_OFFSET_BLOCKS: number;
  DESC_NUM_BLOCKS: number;
  DESC_IOV_COUNT: number;
  DESC_IOV_START: number;
  DESC_WORDS: number;
  IOV_WORDS: number;
  MAX_IOVS: number;
  IO_READ: number;
  IO_WRITE: number;
  IO_FLUSH: number;
  IO_UNMAP: number;
  IO_WRITE_ZEROES: number;
}

export interface NativeEngine {
  start(opts: { cores: number[]; polling: boolean; hugepages: boolean }): void;
  stop(): Promise<void>;
  createMallocBdev(name: string, numBlocks: number, blockSize: number, uuid?: string): BdevInfo;
  createFileBdev(name: string, filename: string, blockSize: number, readOnly: boolean, driver: string, uuid?: string): BdevInfo;
  deleteBdev(name: string, driver: string): boolean;
  rescanFileBdev(name: string, driver: string): boolean;
  listBdevs(): BdevInfo[];
  /** The bdev with this name, alias or UUID (one native lookup), or undefined. */
  findBdev(nameOrAlias: string): BdevInfo | undefined;
  /** Bdevs removed since the engine started (any way). */
  bdevRemovals(): number;
  bdevStats(name: string): BdevStats;
  allocBuffer(len: number): { id: number; buffer: ArrayBuffer; hugepage: boolean };
  freeBuffer(id: number): void;
  bufferInfo(id: number): { inFlight: number; hugepage: boolean } | null;
  reactorStats(): Array<{ index: number; core: number; jsThread: boolean; busyIterations: number; idleSleeps: number }>;
  nativeBench(opts: { bdev: string; reactor: number; write: boolean; queueDepth: number; ioBlocks: number; durationMs: number }): Promise<{ ios: number; ns: number }>;
  unref(): void;
  ref(): void;

  // The lvol store (native/builtin/lvol/). All reject with an SpdkError carrying a positive
  // errno; clearMethod is 'none' | 'unmap' | 'write_zeroes'.
  createLvstore(bdevName: string, lvsName: string, clusterSize: number, clearMethod: string): Promise<LvstoreInfo>;
  listLvstores(): LvstoreInfo[];
  deleteLvstore(uuid: string): Promise<void>;
  renameLvstore(uuid: string, newName: string): Promise<void>;
  growLvstore(uuid: string): Promise<void>;
  createLvol(lvsUuid: string, name: string, sizeBytes: number, thin: boolean, clearMethod: string, uuid?: string): Promise<LvolBdevInfo>;
  deleteLvol(bdevName: string): Promise<void>;
  resizeLvol(bdevName: string, sizeBytes: number): Promise<void>;
  setLvolReadOnly(bdevName: string): Promise<void>;
  renameLvol(bdevName: string, newName: string): Promise<void>;
  snapshotLvol(bdevName: string, snapshotName: string): Promise<LvolBdevInfo>;
  cloneLvol(snapshotBdevName: string, cloneName: string): Promise<LvolBdevInfo>;
  inflateLvol(bdevName: string): Promise<void>;
  decoupleLvolParent(bdevName: string): Promise<void>;

  // The NVMe-oF target (native/builtin/nvmf/). The RPC layer (lib/rpc/methods/nvmf.ts) owns the
  // configuration model, validates it and answers SPDK's errors; native mirrors it for the data
  // path. Failures throw (or reject with) an SpdkError carrying a positive errno.
  /** Creates the TCP transport (once; a second call throws EEXIST). */
  nvmfCreateTransport(opts: NvmfTransportOpts): void;
  /**
   * Creates the subsystem or replaces its whole configuration. Native diffs against the previous
   * one: new namespaces open (and claim) their bdevs — ENODEV when a bdev is missing, EBUSY when
   * it is claimed by someone else, and then nothing changes; removed namespaces release theirs;
   * connected controllers get namespace-change events; controllers whose host is no longer
   * allowed, or whose listener is no longer listed, are disconnected.
   */
  nvmfSetSubsystem(desc: NvmfSubsystemDesc): void;
  /** Disconnects the subsystem's controllers, releases its bdevs, forgets it. */
  nvmfDeleteSubsystem(nqn: string): Promise<void>;
  /** Opens a listening socket (EADDRINUSE, EADDRNOTAVAIL, EINVAL as bind/listen fail). */
  nvmfListen(traddr: string, trsvcid: string): void;
  /** Closes a listening socket; connections accepted through it stay until their subsystem drops them. */
  nvmfStopListen(traddr: string, trsvcid: string): void;
  nvmfControllers(nqn: string): NvmfControllerInfo[];
  nvmfQpairs(nqn: string): NvmfQpairInfo[];
  nvmfStats(): NvmfStats;
}

export interface NvmfTransportOpts {
  maxQueueDepth: number;
  maxIoQpairsPerCtrlr: number;
  inCapsuleDataSize: number;
  maxIoSize: number;
  ioUnitSize: number;
  /** Buffers of ioUnitSize bytes shared by the poll groups: the data in flight at once (SPDK's num_shared_buffers). */
  numSharedBuffers: number;
  /** C2HData SUCCESS flag allowed (SPDK's c2h_success). */
  c2hSuccess: boolean;
  /** Admin queue depth (SPDK's max_aq_depth). */
  maxAqDepth: number;
  /** TCP connections open at once (spdk-node's max_connections). */
  maxConnections: number;
}

export interface NvmfSubsystemDesc {
  nqn: string;
  subtype: 'NVMe' | 'Discovery';
  serialNumber: string;
  modelNumber: string;
  allowAnyHost: boolean;
  /** Allowed host NQNs (checked at Connect unless allowAnyHost). */
  hosts: string[];
  /** Addresses hosts may connect through; also what the discovery log lists. */
  listeners: Array<{ traddr: string; trsvcid: string }>;
  /** uuid/nguid/eui64: canonical text (uuid with dashes, nguid 32 hex, eui64 16 hex) or absent. */
  namespaces: Array<{ nsid: number; bdevName: string; uuid?: string; nguid?: string; eui64?: string }>;
  minCntlid: number;
  maxCntlid: number;
  maxNamespaces: number;
}

export interface NvmfControllerInfo {
  cntlid: number;
  hostnqn: string;
  /** Host identifier as a UUID string. */
  hostid: string;
  numIoQpairs: number;
}

export interface NvmfQpairInfo {
  cntlid: number;
  qid: number;
  /** 'active' | 'deactivating' | 'error' ... (SPDK's nvmf_qpair_state_str). */
  state: string;
  /** Local address the connection came in on. */
  listenAddress: { traddr: string; trsvcid: string };
  peerAddress: { traddr: string; trsvcid: string };
  reactor: number;
}

export interface NvmfStats {
  tickRate: number;
  pollGroups: Array<{
    name: string;
    adminQpairs: number;
    ioQpairs: number;
    currentAdminQpairs: number;
    currentIoQpairs: number;
    pendingBdevIo: number;
    completedNvmeIo: number;
  }>;
  /** Bytes of command data the transport copied in native code (0 when every transfer is zero-copy). */
  dataCopies: number;
  /** TCP connections open now (any state, handshake included). */
  connections: number;
  /** Connections closed at accept because `max_connections` were open. */
  refusedConnections: number;
  /** Connections closed for not completing ICReq and Connect within 10 s. */
  connectTimeouts: number;
  /** Controllers torn down because their host stopped sending Keep Alive. */
  keepAliveTimeouts: number;
}

export interface NativeIoQueue {
  readonly desc: Float64Array;
  readonly iovs: Float64Array;
  readonly cq: Int32Array;
  readonly cqCapacity: number;
  readonly blockSize: number;
  readonly numBlocks: number;
  readonly requiredAlignment: number;
  _onClosed?: () => void;
  open(): Promise<void>;
  /** Submits descriptors [0, count). Throws (with `index`) having submitted none. */
  submit(count: number): number;
  /** Completions ready to read: start index in cq (pairs) * 2^17 + count. */
  reap(): number;
  close(): void;
  inFlight(): number;
}

/** The NVMe host's descriptor layout (native/builtin/nvme/js_nvme.h). */
export interface NativeNvmeConstants {
  DESC_OP: number;
  DESC_TAG: number;
  DESC_NSID: number;
  DESC_BUF: number;
  DESC_BUF_OFFSET: number;
  DESC_LBA: number;
  DESC_COUNT: number;
  DESC_FLAGS: number;
  DESC_WORDS: number;
  OP_READ: number;
  OP_WRITE: number;
  OP_FLUSH: number;
  OP_WRITE_ZEROES: number;
  OP_DEALLOCATE: number;
  OP_COMPARE: number;
  FLAG_FUA: number;
  FLAG_DEAC: number;
}

/** What the native controller's connect() takes; TypeScript validated every field. */
export interface NativeNvmeConnectOptions {
  /** SPDK's string form, with the address resolved (the libspdk engine parses it with spdk_nvme_transport_id_parse). */
  trid: string;
  /** How errors name the controller, e.g. 127.0.0.1:4420. */
  where: string;
  traddr: string;
  trsvcid: string;
  family: 4 | 6;
  subnqn: string;
  hostnqn: string;
  hostid: Uint8Array;
  keepAliveMs: number;
  adminQueueSize: number;
  hdgst: boolean;
  ddgst: boolean;
  hpda: number;
  ioQueues: number;
  discovery: boolean;
  connectTimeoutMs: number;
  adminTimeoutMs: number;
}

export interface NativeNvmeControllerInfo {
  cntlid: number;
  capLo: number;
  capHi: number;
  vs: number;
  identify: Buffer;
  ioQueues: number;
  maxXfer: number;
  inCapsuleDataSize: number;
  maxQueueEntries: number;
  namespaces: Array<{ nsid: number; identify: Buffer; descriptors?: Buffer }>;
}

export interface NativeNvmeController {
  /** Rejects with an SpdkError (with `status`/`dw0` when the target refused Connect). */
  connect(opts: NativeNvmeConnectOptions): Promise<NativeNvmeControllerInfo>;
  /** Resolves with the completion; status < 0 when the command got none (`error` says why). */
  admin(sqe: Uint8Array, len: number, data: Uint8Array | null): Promise<{ status: number; dw0: number; dw1: number; data?: Buffer; error?: string }>;
  reset(): Promise<NativeNvmeControllerInfo>;
  detach(): Promise<void>;
  state(): { ready: boolean; failed: boolean; detached: boolean; failure?: string; cntlid: number };
  stats(): { pdusSent?: number; pdusReceived?: number };
  /** fn runs for every asynchronous event, with the controller's data re-read. */
  onEvent(fn: (e: NativeNvmeAsyncEvent) => void): void;
}

export interface NativeNvmeAsyncEvent {
  type: number;
  info: number;
  logPage: number;
  nsids: number[];
  error?: string;
  controller: NativeNvmeControllerInfo;
}

export interface NativeNvmeQpair {
  readonly desc: Float64Array;
  connect(): Promise<void>;
  /** Submits descriptors [0, count); throws (with `index`) having submitted none. */
  submit(count: number): number;
  /** Submits `pending`, copies ready completions into ring; with `wait`, arms onReady. */
  reap(ring: Int32Array, pending: number, wait: boolean): number;
  disconnect(): Promise<void>;
  reconnect(): Promise<void>;
  state(): { phase: 'new' | 'connecting' | 'ready' | 'failed' | 'closing' | 'closed'; failure?: string };
  /** builtin: PDUs, system calls, bytes copied vs read in place; libspdk: submissions, completions, processCalls. */
  stats(): { pdusSent?: number; pdusReceived?: number; sendmsgCalls?: number; recvCalls?: number; copiedBytes?: number; directBytes?: number; submissions?: number; completions?: number; processCalls?: number };
  inFlight(): number;
}

/** The NVMe host classes both addons export with the same interface (lib/nvme uses them). */
export interface NvmeAddon {
  /** `owner`: the builtin Engine, or the libspdk App. */
  NvmeController: new (owner: object) => NativeNvmeController;
  NvmeQpair: new (
    ctrlr: NativeNvmeController,
    opts: { qid: number; depth: number; queueSize: number; reactor: number; spin: boolean; timeoutMs: number },
    onReady: (n: number) => void,
  ) => NativeNvmeQpair;
  nvmeConstants: NativeNvmeConstants;
}

export interface BuiltinAddon extends NvmeAddon {
  engine: 'builtin';
  setErrorClass(cls: Function): void;
  Engine: new () => NativeEngine;
  IoQueue: new (engine: NativeEngine, bdev: string, reactor: number, depth: number, onComplete: () => void) => NativeIoQueue;
  constants: NativeConstants;
}

/** What both engines' addons hand out as I/O memory (native/common/buffer_table.h). */
export interface NativeBufferOwner {
  allocBuffer(len: number): { id: number; buffer: ArrayBuffer; hugepage: boolean };
  freeBuffer(id: number): void;
  bufferInfo(id: number): { inFlight: number; hugepage: boolean } | null;
}

/** The options native/libspdk/js_app.cc reads; TypeScript validated and defaulted each. */
export interface NativeAppStartOptions {
  /** SPDK's -m: the reactor cores, e.g. "[0,1]". */
  reactorMask: string;
  /** SPDK's -s in MiB; -1 = DPDK's default. */
  memSizeMiB: number;
  noHuge: boolean;
  noPci: boolean;
  /** The Unix socket SPDK's JSON-RPC server listens on. */
  rpcAddr: string;
  /** SPDK JSON config text ('' = none). */
  json: string;
  /** spdk_log_level: -1 none, 0 error, 1 warning, 2 notice, 3 info, 4 debug. */
  printLevel: number;
  interruptMode: boolean;
}

/** SPDK's application framework on its own native thread (native/libspdk/js_app.h). */
export interface NativeApp extends NativeBufferOwner {
  /**
   * Starts SPDK (once per process). Resolves once SPDK's start callback ran; rejects with an
   * SpdkError (code ERR_SPDK_START, SPDK's error lines in the message) when spdk_app_start
   * fails, after its thread is gone. Throws ERR_SPDK_ENV_ONCE when SPDK already ran here.
   * `onExit` is called if SPDK stops by itself later.
   */
  start(opts: NativeAppStartOptions, onExit: (rc: number, errors: string) => void): Promise<void>;
  /** Frees every buffer, stops SPDK, joins its thread (spdk_app_fini ran). */
  stop(): Promise<void>;
  /** Process exit: stop and wait up to timeoutMs on the JS thread. True when SPDK is gone. */
  stopSync(timeoutMs: number): boolean;
  ref(): void;
  unref(): void;
  state(): 'never' | 'starting' | 'running' | 'stopping' | 'exited';
}

export interface LibspdkAddon extends NvmeAddon {
  engine: 'libspdk';
  /** The SPDK the addon was built against, e.g. "SPDK v25.09". */
  spdkVersion: string;
  setErrorClass(cls: Function): void;
  App: new () => NativeApp;
  /** A bdev I/O queue on an SPDK thread of reactor core `core` (native/libspdk/bdev_queue.h). */
  IoQueue: new (app: NativeApp, bdev: string, core: number, depth: number, onComplete: () => void) => NativeIoQueue;
  constants: NativeConstants;
}
