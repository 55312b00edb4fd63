import {
  JsonRpcError,
  JsonRpcErrorObject,
  JSONRPC_ERROR_INVALID_REQUEST,
  JSONRPC_ERROR_INVALID_STATE,
  JSONRPC_ERROR_METHOD_NOT_FOUND,
  toJsonRpcError,
} from './errors';
import { tryDecodeObject } from './decode';

/** SPDK_RPC_STARTUP: before subsystems are initialised (`--wait-for-rpc`). */
export const SPDK_RPC_STARTUP = 0x1;
/** SPDK_RPC_RUNTIME: after framework initialisation. */
export const SPDK_RPC_RUNTIME = 0x2;

/** The framework state the RPC layer is in (SPDK's g_rpc_state). */
export type RpcState = 'startup' | 'runtime';

const STATE_MASK: Record<RpcState, number> = { startup: SPDK_RPC_STARTUP, runtime: SPDK_RPC_RUNTIME };

/** A JSON-RPC request id: what SPDK accepts (string, number or null). */
export type JsonRpcId = string | number | null;

/** A response object, with its members in the order SPDK writes them. */
export type JsonRpcResponse =
  | { jsonrpc: '2.0'; id: JsonRpcId; result: unknown }
  | { jsonrpc: '2.0'; id: JsonRpcId; error: JsonRpcErrorObject };

/**
 * Where JSON-RPC requests go: the builtin engine's {@link Dispatcher} (the methods implemented in
 * TypeScript) or, on the libspdk engine, an RpcForwarder to SPDK's own JSON-RPC server. The
 * Unix-socket server, the HTTP endpoint and `spdk.rpc` are written against this only.
 */
export interface RpcTarget {
  /** Calls a method; resolves with its result or rejects with a JsonRpcError. */
  call(method: string, params?: unknown, ctx?: Partial<RpcContext>): Promise<unknown>;
  /** Handles one parsed request and returns the response to send (null: none). */
  dispatch(request: unknown, ctx?: Partial<RpcContext>): Promise<JsonRpcResponse | null>;
}

/** What a handler learns about the call besides its params. */
export interface RpcContext {
  /** The dispatcher running the handler (absent for calls forwarded to SPDK). */
  readonly dispatcher?: Dispatcher;
  /** Where the request came from: 'unix', 'http', 'internal', ... */
  readonly transport: string;
  /** Aborted when the caller has gone (its connection closed); long waits should stop then. */
  readonly signal?: AbortSignal;
  /**
   * HTTP: the authenticated user, and the view of the target that credential has, if any (an
   * NQN prefix limiting the NVMe-oF subsystems the nvmf methods see: HttpCredential.view).
   */
  readonly user?: string;
  readonly view?: string;
}

/**
 * A method handler: gets the request's params (`undefined` when absent or null, else the object
 * or array as sent) and returns the result, or throws (see toJsonRpcError for the mapping).
 */
export type RpcHandler = (params: unknown, ctx: RpcContext) => Promise<unknown> | unknown;

export interface RegisterOptions {
  /** States the method may be called in; default ['runtime'] (SPDK methods must name theirs). */
  states?: readonly RpcState[];
}

interface MethodEntry {
  name: string;
  handler: RpcHandler;
  mask: number;
  aliasOf?: MethodEntry;
}

const ENVELOPE = {
  jsonrpc: { type: 'any', optional: true },
  method: { type: 'any' },
  params: { type: 'any', optional: true },
  id: { type: 'any', optional: true },
} as const;

const NOT_INITIALIZED =
  'Method may only be called after framework is initialized using framework_start_init RPC.';
const ALREADY_INITIALIZED =
  'Method may only be called before framework is initialized. Use --wait-for-rpc command line ' +
  'parameter and then issue this RPC before the framework_start_init RPC.';

/**
 * SPDK's JSON-RPC method table and request handling (lib/rpc/rpc.c and
 * lib/jsonrpc/jsonrpc_server.c, v25.09), independent of the transport: the Unix-socket server and
 * the HTTP endpoint both hand parsed requests to {@link Dispatcher.dispatch}.
 */
export class Dispatcher implements RpcTarget {
  // Newest first: SPDK inserts at the head of its method list, and rpc_get_methods walks it.
  private readonly methods: MethodEntry[] = [];
  private readonly byName = new Map<string, MethodEntry>();
  private currentState: RpcState;
  private readonly runtimeWaiters = new Set<() => void>();

  /**
   * @param opts.state the initial framework state. Default 'runtime': a dispatcher is normally
   *   built once the engine is up; pass 'startup' to serve STARTUP-only methods first, as SPDK
   *   does with `--wait-for-rpc`.
   */
  constructor(opts: { state?: RpcState } = {}) {
    this.currentState = opts.state ?? 'runtime';
  }

  /** Adds a method. Registering a name twice is a programming error and throws. */
  register(name: string, handler: RpcHandler, opts: RegisterOptions = {}): void {
    if (this.byName.has(name)) throw new Error(`duplicate RPC ${name} registered`);
    const states = opts.states ?? ['runtime'];
    const mask = states.reduce((m, s) => m | STATE_MASK[s], 0);
    this.add({ name, handler, mask });
  }

  /** Adds a deprecated alias of a registered method (spdk_rpc_register_alias_deprecated). */
  registerAlias(method: string, alias: string): void {
    const base = this.byName.get(method);
    if (base === undefined) throw new Error(`cannot create alias ${alias} - method ${method} does not exist`);
    if (base.aliasOf) throw new Error(`cannot create alias ${alias} of alias ${method}`);
    if (this.byName.has(alias)) throw new Error(`duplicate RPC ${alias} registered`);
    this.add({ name: alias, handler: base.handler, mask: base.mask, aliasOf: base });
  }

  private add(entry: MethodEntry): void {
    this.methods.unshift(entry);
    this.byName.set(entry.name, entry);
  }

  /** True when a method (or alias) of that name is registered. */
  has(method: string): boolean {
    return this.byName.has(method);
  }

  /** True when the method may be called in that framework state. */
  allowedIn(method: string, state: RpcState): boolean {
    const entry = this.byName.get(method);
    const target = entry?.aliasOf ?? entry;
    return target !== undefined && (target.mask & STATE_MASK[state]) !== 0;
  }

  /** The current framework state. */
  get state(): RpcState {
    return this.currentState;
  }

  /** Moves to another framework state (SPDK moves startup → runtime once, in framework_start_init). */
  setState(state: RpcState): void {
    this.currentState = state;
    if (state === 'runtime') {
      for (const wake of [...this.runtimeWaiters]) wake();
    }
  }

  /** Resolves once the state is 'runtime' (rejects with the signal's reason when aborted first). */
  waitForRuntime(signal?: AbortSignal): Promise<void> {
    if (this.currentState === 'runtime') return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = (): void => {
        this.runtimeWaiters.delete(done);
        signal?.removeEventListener('abort', aborted);
        resolve();
      };
      const aborted = (): void => {
        this.runtimeWaiters.delete(done);
        reject(signal?.reason);
      };
      if (signal?.aborted) return aborted();
      this.runtimeWaiters.add(done);
      signal?.addEventListener('abort', aborted, { once: true });
    });
  }

  /**
   * Method names as rpc_get_methods lists them: newest registration first; aliases only with
   * `includeAliases`; with `current`, only those callable in the current state.
   */
  methodNames(opts: { current?: boolean; includeAliases?: boolean } = {}): string[] {
    const state = STATE_MASK[this.currentState];
    return this.methods
      .filter((m) => (opts.includeAliases || !m.aliasOf) && (!opts.current || (m.mask & state) === state))
      .map((m) => m.name);
  }

  /**
   * Calls a method in-process, with the same lookup and state checks as a request; returns the
   * result or throws a JsonRpcError.
   */
  async call(method: string, params?: unknown, ctx: Partial<RpcContext> = {}): Promise<unknown> {
    const entry = this.byName.get(method);
    if (entry === undefined) throw new JsonRpcError(JSONRPC_ERROR_METHOD_NOT_FOUND, 'Method not found');
    const target = entry.aliasOf ?? entry;
    const state = STATE_MASK[this.currentState];
    if ((target.mask & state) !== state) {
      throw new JsonRpcError(
        JSONRPC_ERROR_INVALID_STATE,
        this.currentState === 'startup' ? NOT_INITIALIZED : ALREADY_INITIALIZED,
      );
    }
    const full: RpcContext = { transport: 'internal', ...ctx, dispatcher: this };
    try {
      const result = await target.handler(params === null ? undefined : params, full);
      return result === undefined ? null : result;
    } catch (err) {
      throw toJsonRpcError(err);
    }
  }

  /**
   * Handles one parsed request the way jsonrpc_server.c does, and returns the response to send,
   * or `null` when none is sent:
   * - the top-level value must be an object; a batch array or anything else gets -32600
   *   "Invalid request" with id null (SPDK v25.09 does not support batches);
   * - the object may hold only `jsonrpc`, `method`, `params` and `id`, each at most once;
   *   `jsonrpc`, when present, must be the string "2.0"; `method` must be a string; `id`, when
   *   present, a string, number or null; `params` an object, an array, null (= absent) or
   *   absent. Otherwise -32600 "Invalid request"; the id is echoed only when the check that
   *   failed came after the id was accepted (params), as in parse_single_request;
   * - a successful call without an id, or with id null, gets no response (a notification), but
   *   an error is always answered, with id null when there was none, as SPDK does.
   */
  async dispatch(request: unknown, ctx: Partial<RpcContext> = {}): Promise<JsonRpcResponse | null> {
    return dispatchRequest(this, request, ctx);
  }
}

/**
 * One request's envelope checks and response, as {@link Dispatcher.dispatch} documents them, for
 * any RpcTarget's `call` (the RpcForwarder uses it too, so both engines answer a malformed
 * request alike).
 */
export async function dispatchRequest(target: Pick<RpcTarget, 'call'>, request: unknown, ctx: Partial<RpcContext>): Promise<JsonRpcResponse | null> {
  const envelope = tryDecodeObject(request, ENVELOPE);
  if (envelope === undefined) return errorResponse(null, invalidRequest());
  if (envelope.jsonrpc !== undefined && envelope.jsonrpc !== '2.0') return errorResponse(null, invalidRequest());
  if (typeof envelope.method !== 'string') return errorResponse(null, invalidRequest());
  let id: JsonRpcId | undefined;
  if ('id' in envelope) {
    const raw = envelope.id;
    if (raw !== null && typeof raw !== 'string' && typeof raw !== 'number') {
      return errorResponse(null, invalidRequest());
    }
    id = raw;
  }
  const params = envelope.params;
  if (params !== undefined && params !== null && typeof params !== 'object') {
    return errorResponse(id ?? null, invalidRequest());
  }

  let result: unknown;
  try {
    result = await target.call(envelope.method, params, ctx);
  } catch (err) {
    return errorResponse(id ?? null, toJsonRpcError(err));
  }
  if (id === undefined || id === null) return null;
  return { jsonrpc: '2.0', id, result };
}

function invalidRequest(): JsonRpcError {
  return new JsonRpcError(JSONRPC_ERROR_INVALID_REQUEST, 'Invalid request');
}

function errorResponse(id: JsonRpcId, err: JsonRpcError): JsonRpcResponse {
  return { jsonrpc: '2.0', id, error: { code: err.code, message: err.message } };
}
