import { SpdkError, strerror } from '../errors';

// JSON-RPC error codes as SPDK defines them (include/spdk/jsonrpc.h, v25.09).
export const JSONRPC_ERROR_PARSE_ERROR = -32700;
export const JSONRPC_ERROR_INVALID_REQUEST = -32600;
export const JSONRPC_ERROR_METHOD_NOT_FOUND = -32601;
export const JSONRPC_ERROR_INVALID_PARAMS = -32602;
export const JSONRPC_ERROR_INTERNAL_ERROR = -32603;
/** SPDK's own code: the method is not allowed in the current framework state. */
export const JSONRPC_ERROR_INVALID_STATE = -1;

/** The `error` member of a JSON-RPC response. */
export interface JsonRpcErrorObject {
  code: number;
  message: string;
}

/**
 * A JSON-RPC error: thrown by method handlers to answer with exactly this code and message, and
 * thrown by {@link RpcClient} when the server answers with an error.
 */
export class JsonRpcError extends Error {
  readonly code: number;

  constructor(code: number, message: string) {
    super(message);
    this.name = 'JsonRpcError';
    this.code = code;
  }

  /** `-errno` with glibc's strerror text: what SPDK handlers send for a failed operation. */
  static fromErrno(errno: number): JsonRpcError {
    const e = Math.abs(errno);
    return new JsonRpcError(-e, strerror(e));
  }

  /** -32602 "Invalid parameters" (the text jsonrpc_server_tcp.c uses), or another message. */
  static invalidParams(message = 'Invalid parameters'): JsonRpcError {
    return new JsonRpcError(JSONRPC_ERROR_INVALID_PARAMS, message);
  }

  /** -32603 with the given message. */
  static internal(message = 'Internal error'): JsonRpcError {
    return new JsonRpcError(JSONRPC_ERROR_INTERNAL_ERROR, message);
  }

  toJSON(): JsonRpcErrorObject {
    return { code: this.code, message: this.message };
  }
}

/**
 * Maps whatever a handler threw to the error a response carries:
 * - a JsonRpcError as is;
 * - an SpdkError with an errno as `-errno` and the strerror text, which is what most SPDK handlers
 *   send when the operation fails (`spdk_jsonrpc_send_error_response(request, rc,
 *   spdk_strerror(-rc))`). Methods whose SPDK handler answers differently catch and rethrow;
 * - anything else as -32603 with the error's message, so a bug is visible to the caller.
 */
export function toJsonRpcError(err: unknown): JsonRpcError {
  if (err instanceof JsonRpcError) return err;
  if (err instanceof SpdkError && err.errno > 0) return JsonRpcError.fromErrno(err.errno);
  if (err instanceof Error && err.message) return JsonRpcError.internal(err.message);
  return JsonRpcError.internal();
}
