import * as net from 'node:net';
import { SpdkError } from '../errors';
import { JsonRpcError } from './errors';
import { scanJsonValue } from './json-parse';
import { writeJson } from './json-write';

const ECONNRESET = 104;
const ETIMEDOUT = 110;
const EPROTO = 71;

export interface RpcClientOptions {
  /** Per-call limit in milliseconds (default 60000, rpc.py's default); 0 = none. */
  timeoutMs?: number;
}

interface PendingCall {
  resolve(result: unknown): void;
  reject(err: Error): void;
  timer?: NodeJS.Timeout;
}

/**
 * A JSON-RPC client for a Unix-socket server with SPDK's framing (SPDK itself or spdk-node's
 * RpcServer). Requests are written like rpc.py writes them (`{"jsonrpc":"2.0","method":...,
 * "id":n,"params":...}`, params only when given); several calls may be in flight on the one
 * connection, and responses are matched to calls by id.
 */
export class RpcClient {
  private socket: net.Socket | undefined;
  private connecting: Promise<net.Socket> | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, PendingCall>();
  private received: Buffer = Buffer.alloc(0);
  private readonly timeoutMs: number;

  constructor(
    readonly path: string,
    opts: RpcClientOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? 60000;
  }

  /** Creates a client and opens its connection. */
  static async connect(path: string, opts?: RpcClientOptions): Promise<RpcClient> {
    const client = new RpcClient(path, opts);
    await client.open();
    return client;
  }

  /**
   * Calls `method`; resolves with the response's `result`, rejects with a JsonRpcError carrying
   * the server's code and message, or with an SpdkError when the connection fails.
   */
  async call<T = unknown>(method: string, params?: unknown): Promise<T> {
    const socket = await this.open();
    const id = this.nextId++;
    const request: Record<string, unknown> = { jsonrpc: '2.0', method, id };
    if (params !== undefined) request.params = params;
    return new Promise<T>((resolve, reject) => {
      const entry: PendingCall = { resolve: resolve as (r: unknown) => void, reject };
      if (this.timeoutMs > 0) {
        entry.timer = setTimeout(() => {
          this.fail(new SpdkError(`Timeout while waiting for response to ${method}`, { errno: ETIMEDOUT, op: method }));
        }, this.timeoutMs);
      }
      this.pending.set(id, entry);
      socket.write(writeJson(request));
    });
  }

  /** Closes the connection; calls still waiting are rejected. */
  async close(): Promise<void> {
    const socket = this.socket ?? (await this.connecting?.catch(() => undefined));
    this.socket = undefined;
    this.connecting = undefined;
    if (!socket || socket.destroyed) return;
    await new Promise<void>((resolve) => {
      socket.once('close', () => resolve());
      socket.destroy();
    });
  }

  private open(): Promise<net.Socket> {
    if (this.socket && !this.socket.destroyed) return Promise.resolve(this.socket);
    if (this.connecting) return this.connecting;
    this.connecting = new Promise<net.Socket>((resolve, reject) => {
      const socket = net.connect(this.path);
      socket.once('connect', () => {
        socket.off('error', reject);
        this.socket = socket;
        this.connecting = undefined;
        this.received = Buffer.alloc(0);
        socket.on('data', (chunk: Buffer) => this.receive(chunk));
        socket.on('error', (err) => this.fail(new SpdkError(err.message, { errno: ECONNRESET, op: 'rpc.call' })));
        socket.on('close', () => {
          if (this.socket === socket) this.socket = undefined;
          this.fail(new SpdkError('Connection closed with partial response', { errno: ECONNRESET, op: 'rpc.call' }));
        });
        resolve(socket);
      });
      socket.once('error', (err: NodeJS.ErrnoException) => {
        this.connecting = undefined;
        reject(
          new SpdkError(`Error while connecting to ${this.path}: ${err.message}`, {
            errno: -(err.errno ?? -ECONNRESET),
            op: 'rpc.connect',
          }),
        );
      });
    });
    return this.connecting;
  }

  private receive(chunk: Buffer): void {
    let buf = this.received.length > 0 ? Buffer.concat([this.received, chunk]) : chunk;
    for (;;) {
      const r = scanJsonValue(buf);
      if (r.status === 'incomplete') break;
      if (r.status === 'invalid') {
        this.fail(new SpdkError('Malformed JSON from RPC server', { errno: EPROTO, op: 'rpc.call' }));
        return;
      }
      buf = buf.subarray(r.end);
      this.settle(r.value);
    }
    this.received = Buffer.from(buf);
  }

  private settle(response: unknown): void {
    if (response === null || typeof response !== 'object') return;
    const r = response as { id?: unknown; result?: unknown; error?: { code?: unknown; message?: unknown } };
    // An error about a request the server could not attribute (id null) belongs to the oldest call.
    const id = typeof r.id === 'number' ? r.id : r.id === null ? this.pending.keys().next().value : undefined;
    const entry = id === undefined ? undefined : this.pending.get(id);
    if (id === undefined || entry === undefined) return;
    this.pending.delete(id);
    clearTimeout(entry.timer);
    if (r.error !== undefined) {
      const code = typeof r.error.code === 'number' ? r.error.code : 0;
      entry.reject(new JsonRpcError(code, String(r.error.message ?? '')));
    } else {
      entry.resolve(r.result);
    }
  }

  /** Rejects every call in flight and drops the connection. */
  private fail(err: Error): void {
    const calls = [...this.pending.values()];
    this.pending.clear();
    for (const c of calls) {
      clearTimeout(c.timer);
      c.reject(err);
    }
    const socket = this.socket;
    if (socket && !socket.destroyed && calls.length > 0) {
      this.socket = undefined;
      socket.destroy();
    }
  }
}
