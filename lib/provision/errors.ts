/**
 * The provisioning layer's errors: one class per outcome a caller acts on differently, each an
 * SpdkError with a `code` naming the outcome, so the CSI layer maps them to gRPC status codes in
 * one function ({@link grpcCodeOf}) and everything else can still test `instanceof SpdkError`.
 */
import { SpdkError } from '../errors';
import { JsonRpcError } from '../rpc/errors';

export type ProvisionErrorCode =
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'OUT_OF_CAPACITY'
  | 'INVALID_ARGUMENT'
  | 'UNAVAILABLE'
  | 'FAILED_PRECONDITION'
  | 'INTERNAL';

const ERRNO: Record<ProvisionErrorCode, number> = {
  NOT_FOUND: 2, // ENOENT
  ALREADY_EXISTS: 17, // EEXIST
  OUT_OF_CAPACITY: 28, // ENOSPC
  INVALID_ARGUMENT: 22, // EINVAL
  UNAVAILABLE: 107, // ENOTCONN
  FAILED_PRECONDITION: 1, // EPERM
  INTERNAL: 5, // EIO
};

/** The base class: `code` says what happened, `op` which provisioner call, `cause` what a node answered. */
export class ProvisionError extends SpdkError {
  declare readonly code: ProvisionErrorCode;

  constructor(code: ProvisionErrorCode, op: string, message: string, options: { cause?: unknown } = {}) {
    super(message, { code, errno: ERRNO[code], op });
    this.name = 'ProvisionError';
    if (options.cause !== undefined) (this as { cause?: unknown }).cause = options.cause;
  }
}

/** The volume, snapshot, node or source named does not exist. */
export class NotFound extends ProvisionError {
  constructor(op: string, message: string, options?: { cause?: unknown }) {
    super('NOT_FOUND', op, message, options);
    this.name = 'NotFound';
  }
}

/** The name is taken by a volume or snapshot made with other parameters. */
export class AlreadyExists extends ProvisionError {
  constructor(op: string, message: string, options?: { cause?: unknown }) {
    super('ALREADY_EXISTS', op, message, options);
    this.name = 'AlreadyExists';
  }
}

/** No pool that satisfies the request has the space (or the thin over-commit headroom). */
export class OutOfCapacity extends ProvisionError {
  constructor(op: string, message: string, options?: { cause?: unknown }) {
    super('OUT_OF_CAPACITY', op, message, options);
    this.name = 'OutOfCapacity';
  }
}

/** The request itself is wrong; nothing was changed. */
export class InvalidArgument extends ProvisionError {
  constructor(op: string, message: string, options?: { cause?: unknown }) {
    super('INVALID_ARGUMENT', op, message, options);
    this.name = 'InvalidArgument';
  }
}

/** A storage node did not answer (connection refused or lost, timeout, refused credentials). */
export class Unavailable extends ProvisionError {
  /** The node that did not answer. */
  readonly node: string;

  constructor(op: string, node: string, message: string, options?: { cause?: unknown }) {
    super('UNAVAILABLE', op, message, options);
    this.name = 'Unavailable';
    this.node = node;
  }
}

/**
 * The system is not in a state the operation needs: another provisioner owns the pool, a
 * snapshot's dependants cannot be detached, a node has no NVMe/TCP address to export on.
 */
export class FailedPrecondition extends ProvisionError {
  constructor(op: string, message: string, options?: { cause?: unknown }) {
    super('FAILED_PRECONDITION', op, message, options);
    this.name = 'FailedPrecondition';
  }
}

/** A node answered something the provisioner did not expect (a JSON-RPC error it has no meaning for). */
export class InternalError extends ProvisionError {
  constructor(op: string, message: string, options?: { cause?: unknown }) {
    super('INTERNAL', op, message, options);
    this.name = 'InternalError';
  }
}

/** gRPC status codes (grpc/status.h). */
export const GrpcCode = {
  OK: 0,
  INVALID_ARGUMENT: 3,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

const GRPC_OF: Record<ProvisionErrorCode, number> = {
  NOT_FOUND: GrpcCode.NOT_FOUND,
  ALREADY_EXISTS: GrpcCode.ALREADY_EXISTS,
  OUT_OF_CAPACITY: GrpcCode.RESOURCE_EXHAUSTED,
  INVALID_ARGUMENT: GrpcCode.INVALID_ARGUMENT,
  UNAVAILABLE: GrpcCode.UNAVAILABLE,
  FAILED_PRECONDITION: GrpcCode.FAILED_PRECONDITION,
  INTERNAL: GrpcCode.INTERNAL,
};

/**
 * The gRPC status code for an error the provisioner threw: NOT_FOUND 5, ALREADY_EXISTS 6,
 * RESOURCE_EXHAUSTED 8 (OutOfCapacity), INVALID_ARGUMENT 3, UNAVAILABLE 14,
 * FAILED_PRECONDITION 9, and INTERNAL 13 for anything else (a bug, or an error from elsewhere).
 *
 * @example
 * try { await prov.createVolume(req); } catch (e) { callback({ code: grpcCodeOf(e), details: (e as Error).message }); }
 */
export function grpcCodeOf(err: unknown): number {
  if (err instanceof ProvisionError) return GRPC_OF[err.code] ?? GrpcCode.INTERNAL;
  return GrpcCode.INTERNAL;
}

/** True when a node's JSON-RPC error is SPDK's "no such device" (-19 / ENODEV). */
export function isNoDevice(e: unknown): boolean {
  return e instanceof JsonRpcError && (e.code === -19 || /No such device/i.test(e.message));
}
