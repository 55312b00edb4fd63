export {
  JsonRpcError,
  JsonRpcErrorObject,
  toJsonRpcError,
  JSONRPC_ERROR_PARSE_ERROR,
  JSONRPC_ERROR_INVALID_REQUEST,
  JSONRPC_ERROR_METHOD_NOT_FOUND,
  JSONRPC_ERROR_INVALID_PARAMS,
  JSONRPC_ERROR_INTERNAL_ERROR,
  JSONRPC_ERROR_INVALID_STATE,
} from './errors';
export {
  Decoded,
  FieldSpec,
  FieldType,
  Schema,
  DECODE_FAILED_MESSAGE,
  decodeFailed,
  decodeObject,
  tryDecodeObject,
} from './decode';
export {
  Dispatcher,
  JsonRpcId,
  JsonRpcResponse,
  RegisterOptions,
  RpcContext,
  RpcHandler,
  RpcState,
  RpcTarget,
  dispatchRequest,
  SPDK_RPC_RUNTIME,
  SPDK_RPC_STARTUP,
} from './dispatcher';
export { scanJsonValue, JsonScanResult, hasDuplicateKeys, duplicateKeys } from './json-parse';
export { writeJson } from './json-write';
export { SPDK_JSONRPC_MAX_VALUES, SPDK_JSONRPC_RECV_BUF_SIZE } from './connection';
export { RpcServer, RpcServerOptions } from './server';
export { RpcClient, RpcClientOptions } from './client';
export { RpcForwarder } from './forwarder';
export { RpcHttpServer, serveRpcHttp } from './http';
export type { HttpRpcContext } from './http';
export { registerCoreMethods, CoreMethodOptions, spdkVersion, SPDK_REFERENCE_VERSION } from './methods/core';
export { registerBdevMethods } from './methods/bdev';
export { registerLvolMethods, lvstoreToJson, lvolToJson } from './methods/lvol';
export * from './types';
