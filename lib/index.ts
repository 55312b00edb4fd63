export { Spdk, RpcApi, BdevApi } from './spdk';
export type { SpdkOptions } from './spdk';
export type { SpdkLogLevel } from './engine/libspdk';
export { SpdkBuffer } from './buffer';
export { BdevHandle } from './bdev/bdev';
export type { IoRange, QueueOptions } from './bdev/bdev';
export { IoQueue } from './bdev/queue';
export type { CompletionHandler, IoSegment } from './bdev/queue';
export { SpdkError } from './errors';
export { JsonRpcError } from './rpc/errors';
export type { BdevInfo, BdevStats } from './engine/types';
export { LvolApi, LvolStore, Lvol } from './lvol';
export type { CreateStoreOptions, CreateLvolOptions, LvolSize, LvolClearMethod, RpcCaller } from './lvol';
export { NvmfApi, NvmfSubsystem } from './nvmf';
export type { TransportOptions, SubsystemOptions, ListenAddress, NamespaceOptions, ExportOptions } from './nvmf';
export * from './provision';
export type { NvmeAsyncEvent } from './nvme';
export { NvmeApi, NvmeController, NvmeAdmin, NvmeQpair, NvmeNamespace, NvmeError, parseTransportId, normalizeTransportId, formatTransportId, statusName, decodeStatus, makeStatus, DISCOVERY_NQN } from './nvme';
export type {
  ConnectOptions,
  QpairOptions,
  QpairOwner,
  IoOptions,
  LbaRange,
  TransportId,
  ResolvedTransportId,
  ControllerData,
  NamespaceData,
  DiscoveryLog,
  DiscoveryLogEntry,
  NvmeCommandInfo,
  NvmeStatusCode,
  ControllerCap,
} from './nvme';
