import * as http from 'node:http';
import * as https from 'node:https';
import { SpdkError } from '../errors';
import { JsonRpcError } from './errors';

const EACCES = 13;
const EPROTO = 71;
const ETIMEDOUT = 110;
const ECONNRESET = 104;

export interface RpcHttpClientOptions {
  /** HTTP Basic credentials (what rpc_http_proxy.py and spdk-node's --http want). */
  user?: string;
  password?: string;
  /** Per-call limit in milliseconds (default 60000); 0 = none. */
  timeoutMs?: number;
  /** For https: a CA to trust (PEM), and whether to check the certificate (default true). */
  ca?: string | Buffer;
  rejectUnauthorized?: boolean;
}

/**
 * A JSON-RPC client for SPDK's HTTP protocol (`scripts/rpc_http_proxy.py`, spdk-node's
 * `--http` endpoint): each call is a POST of `{"jsonrpc":"2.0","id":n,"method":...,"params":...}`
 * with Basic auth, answered by the JSON-RPC response. Connections are kept alive and reused.
 *
 * Rejects with a JsonRpcError carrying the server's code and message when the server answers an
 * error, and with an SpdkError (errno set) when there is no usable answer: connection refused or
 * lost, timeout, HTTP 401 (EACCES), another HTTP status or a body that is not the response
 * (EPROTO).
 *
 * @example
 * const rpc = new RpcHttpClient('http://10.0.0.5:9009/', { user: 'spdk', password: 'secret' });
 * const stores = await rpc.call('bdev_lvol_get_lvstores');
 * rpc.close();
 */
export class RpcHttpClient {
  private nextId = 1;
  private readonly url: URL;
  private readonly agent: http.Agent;
  private readonly auth: string | undefined;
  private readonly timeoutMs: number;

  constructor(
    url: string,
    opts: RpcHttpClientOptions = {},
  ) {
    this.url = new URL(url);
    if (this.url.protocol !== 'http:' && this.url.protocol !== 'https:') {
      throw SpdkError.invalidArg('rpc.http.client', `unsupported URL scheme '${this.url.protocol}' (want http: or https:)`);
    }
    if ((opts.user === undefined) !== (opts.password === undefined)) {
      throw SpdkError.invalidArg('rpc.http.client', 'give both user and password, or neither');
    }
    this.auth = opts.user === undefined ? undefined : `Basic ${Buffer.from(`${opts.user}:${opts.password}`).toString('base64')}`;
    this.timeoutMs = opts.timeoutMs ?? 60000;
    // Idle connections are closed by the client well before the servers' keep-alive limits
    // (spdk-node: 65 s), so a reused connection is rarely found closed by the server.
    const agentOpts = { keepAlive: true, timeout: 30000 };
    this.agent =
      this.url.protocol === 'https:'
        ? new https.Agent({ ...agentOpts, ca: opts.ca, rejectUnauthorized: opts.rejectUnauthorized ?? true })
        : new http.Agent(agentOpts);
  }

  /** Calls `method`; resolves with the response's `result`. */
  async call<T = unknown>(method: string, params?: unknown): Promise<T> {
    const id = this.nextId++;
    const request: Record<string, unknown> = { jsonrpc: '2.0', id, method };
    if (params !== undefined) request.params = params;
    const body = Buffer.from(JSON.stringify(request));
    let res: { status: number; body: Buffer };
    try {
      res = await this.post(method, body);
    } catch (e) {
      // A kept-alive connection the server had just closed: the request never got there (Node's
      // documented retry condition), so it is sent once more on a new connection.
      if ((e as { reusedSocket?: boolean }).reusedSocket === true && (e as NodeJS.ErrnoException).code === 'ECONNRESET') {
        res = await this.post(method, body);
      } else {
        throw e;
      }
    }
    if (res.status === 401) throw new SpdkError(`${method}: HTTP 401 Unauthorized from ${this.url.host} (wrong user or password)`, { errno: EACCES, op: method });
    if (res.status !== 200) throw new SpdkError(`${method}: HTTP ${res.status} from ${this.url.host}`, { errno: EPROTO, op: method });
    let response: { id?: unknown; result?: unknown; error?: { code?: unknown; message?: unknown } };
    try {
      response = JSON.parse(res.body.toString('utf8'));
    } catch {
      throw new SpdkError(`${method}: the answer from ${this.url.host} is not JSON`, { errno: EPROTO, op: method });
    }
    if (response === null || typeof response !== 'object' || (response.id !== id && response.id !== null)) {
      throw new SpdkError(`${method}: the answer from ${this.url.host} is not the response to request ${id}`, { errno: EPROTO, op: method });
    }
    if (response.error !== undefined) {
      const code = typeof response.error?.code === 'number' ? response.error.code : 0;
      throw new JsonRpcError(code, String(response.error?.message ?? ''));
    }
    return response.result as T;
  }

  /** Closes idle connections; calls in flight finish. The client can still be used afterwards. */
  close(): void {
    this.agent.destroy();
  }

  private post(method: string, body: Buffer): Promise<{ status: number; body: Buffer }> {
    const lib = this.url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const headers: http.OutgoingHttpHeaders = { 'Content-Type': 'application/json', 'Content-Length': body.length };
      if (this.auth !== undefined) headers.Authorization = this.auth;
      const req = lib.request(this.url, { method: 'POST', agent: this.agent, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) });
        });
        res.on('error', (err) => fail(err));
      });
      const fail = (err: NodeJS.ErrnoException): void => {
        clearTimeout(timer);
        const e = new SpdkError(`${method}: ${this.url.host}: ${err.message}`, {
          errno: err.errno !== undefined ? Math.abs(err.errno) : ECONNRESET,
          op: method,
        });
        (e as { reusedSocket?: boolean }).reusedSocket = req.reusedSocket;
        reject(e);
      };
      const timer =
        this.timeoutMs > 0
          ? setTimeout(() => {
              req.destroy();
              reject(new SpdkError(`Timeout while waiting for response to ${method} from ${this.url.host}`, { errno: ETIMEDOUT, op: method }));
            }, this.timeoutMs)
          : undefined;
      req.on('error', fail);
      req.end(body);
    });
  }
}
