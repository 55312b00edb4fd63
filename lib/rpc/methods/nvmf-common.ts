import type { BdevBackend } from '../../engine/types';
import { SpdkError } from '../../errors';
import type { NvmfBackend } from '../../nvmf/backend';
import { DISCOVERY_NQN } from '../../nvmf/names';
import type { NvmfTarget } from '../../nvmf/target';
import { decodeObject, Decoded, Schema } from '../decode';
import type { RpcContext } from '../dispatcher';
import { JsonRpcError } from '../errors';

/*
 * What SPDK v25.09's nvmf handlers answer, shared by the nvmf*.ts method files.
 *
 * Almost every failure of an nvmf method is -32602 "Invalid parameters", whatever went wrong
 * (a decode failure, an unknown subsystem, a listener that cannot be opened, a bdev that cannot
 * be claimed); the few others are spelt out where they happen.
 */

export const EOPNOTSUPP = 95;

/** Everything the nvmf methods work on. */
export interface NvmfContext {
  target: NvmfTarget;
  backend: NvmfBackend;
  bdevs: BdevBackend;
  /** The engine's reactor cores (SPDK's env core mask, for poll_groups_mask and buf_cache_size). */
  cores: readonly number[];
}

/**
 * True when the caller sees the subsystem. A call made through an HTTP credential with a view
 * (RpcContext.view, an NQN prefix: lib/rpc/http.ts) sees the discovery subsystem and the
 * subsystems whose NQN starts with the prefix; every other call sees all. The nvmf methods
 * answer a subsystem outside the view exactly as one that does not exist, and refuse to create
 * one there as they refuse an invalid NQN, so a client cannot tell it is there (docs/differences.md, "nvmf methods").
 */
export function inView(call: Pick<RpcContext, 'view'> | undefined, nqn: string): boolean {
  const prefix = call?.view;
  return prefix === undefined || nqn === DISCOVERY_NQN || nqn.startsWith(prefix);
}

/** -32602 "Invalid parameters". */
export function invalidParams(): JsonRpcError {
  return JsonRpcError.invalidParams();
}

/** -32603 with SPDK's text. */
export function internal(message: string): JsonRpcError {
  return JsonRpcError.internal(message);
}

/** spdk_json_decode_object(_relaxed) failing as -32602 "Invalid parameters". */
export function decodeNvmf<S extends Schema>(params: unknown, schema: S, relaxed = false): Decoded<S> {
  return decodeObject(params, schema, invalidParams, { relaxed });
}

/**
 * spdk_nvmf_get_tgt: the one target is "nvmf_tgt" (what SPDK's nvmf_tgt and spdk_tgt call
 * theirs); any other tgt_name answers -32603 with the method's own text.
 */
export function checkTarget(tgtName: string | undefined, message = 'Unable to find a target.'): void {
  if (tgtName !== undefined && tgtName !== 'nvmf_tgt') throw internal(message);
}

/**
 * Maps an engine failure: EOPNOTSUPP (the addon has no target yet) as `-95 "Operation not
 * supported"`, anything else as the method's own failure answer.
 */
export function fromEngine(err: unknown, failure: () => JsonRpcError): JsonRpcError {
  if (err instanceof SpdkError && err.errno === EOPNOTSUPP) return JsonRpcError.fromErrno(EOPNOTSUPP);
  if (err instanceof JsonRpcError) return err;
  const e = failure() as JsonRpcError & { detail?: string };
  if (err instanceof Error) e.detail = err.message;
  return e;
}

/** Runs an engine call, answering its failure with `failure()` (see fromEngine). */
export function engine<T>(op: () => T, failure: () => JsonRpcError = invalidParams): T {
  try {
    return op();
  } catch (e) {
    throw fromEngine(e, failure);
  }
}

/** The async form of {@link engine}. */
export async function engineAsync<T>(op: () => Promise<T>, failure: () => JsonRpcError = invalidParams): Promise<T> {
  try {
    return await op();
  } catch (e) {
    throw fromEngine(e, failure);
  }
}
