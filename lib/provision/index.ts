/**
 * The provisioning layer: volumes, snapshots, clones and NVMe/TCP exports on the lvstores of
 * storage nodes, over SPDK's JSON-RPC only. See docs/provisioning.md.
 */
export { Provisioner } from './provisioner';
export type { ProvisionerOptions } from './provisioner';
export type { StorageNodeConfig, NodeRpc } from './node';
export {
  ProvisionError,
  NotFound,
  AlreadyExists,
  OutOfCapacity,
  InvalidArgument,
  Unavailable,
  FailedPrecondition,
  InternalError,
  GrpcCode,
  grpcCodeOf,
} from './errors';
export type { ProvisionErrorCode } from './errors';
export type * from './types';
