import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as path from 'node:path';
import type * as net from 'node:net';
import { SpdkError } from '../errors';
import { SPDK_JSONRPC_MAX_VALUES } from './connection';
import type { JsonRpcResponse, RpcContext, RpcTarget } from './dispatcher';
import { JSONRPC_ERROR_INTERNAL_ERROR, JSONRPC_ERROR_PARSE_ERROR } from './errors';
import { scanJsonValue } from './json-parse';
import { writeJson } from './json-write';

/** One user allowed to call the HTTP endpoint. */
export interface HttpCredential {
  /** User name; non-empty, without ':' (RFC 7617) or control characters. */
  user: string;
  /** Password; non-empty. Never logged or echoed. */
  password: string;
  /**
   * The credential's view of the NVMe-oF target, as an NQN prefix: through this credential the
   * nvmf methods see the discovery subsystem and the subsystems whose NQN starts with it, and
   * nothing else (a subsystem outside the view answers as one that does not exist, and none can
   * be created there). Without a view, everything is seen. So that OpenStack Cinder (whose
   * driver expects every subsystem but discovery to be named `...cnode<N>`) and a CSI driver
   * can share one target (docs/differences.md, "nvmf methods"). Handed to method handlers in
   * the dispatch context. A view partitions names; it is not access control (bdevs and lvols
   * are shared).
   */
  view?: string;
}

export interface RpcHttpServerOptions {
  /** Who may call; at least one. Basic auth must match one of them exactly. */
  credentials: readonly HttpCredential[];
  /** Serve HTTPS with this certificate and key (PEM text or Buffers); plain HTTP without. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Largest request body in bytes; larger ones get 413. Default 1 MiB. */
  maxBodyBytes?: number;
}

/**
 * What a method handler sees of a call that came over HTTP: who called (the authenticated user)
 * and the view of that credential (both also on {@link RpcContext}).
 */
export interface HttpRpcContext extends Partial<RpcContext> {
  readonly transport: 'http';
  readonly user: string;
  readonly view?: string;
}

/** Default limit on a request body. SPDK's own socket takes 32 KiB; big params lists still fit. */
export const HTTP_DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

const REALM = 'spdk-node';
const JSON_TYPE = 'application/json';
// How long a connection that is being closed after a 413/401 keeps reading (and discarding) what
// the client still sends, so the client reads the status instead of a reset. Like a lingering
// close in nginx or Go's net/http.
const LINGER_MS = 2000;
// Longer than the 5 s default: POST is not retried by Go's or urllib3's connection pools when a
// reused idle connection turns out to be closed, so closing idle connections early costs calls.
const KEEP_ALIVE_TIMEOUT_MS = 65_000;
const SPACE = Buffer.from(' ');
const EINVAL = 22;

interface Principal {
  readonly user: string;
  readonly view?: string;
  /** SHA-256 of every byte form of "user:password" that is accepted. */
  readonly digests: readonly Buffer[];
}

/**
 * SPDK's JSON-RPC over HTTP, the protocol of SPDK's `scripts/rpc_http_proxy.py` (v25.09), which
 * is what OpenStack Cinder's SPDK driver and spdk-csi speak. Requests go to the same
 * {@link RpcTarget} as the Unix socket, in-process (no proxy hop on the builtin engine; on libspdk, the
 * calls go to SPDK's own server over its socket).
 *
 * As the proxy does:
 * - POST on any path carries one JSON-RPC request (the body). HTTP Basic auth must match a
 *   credential; else 401 and the body is neither read nor dispatched.
 * - HEAD answers 200 without auth and without a body.
 * - Methods other than POST and HEAD answer 501 (what the proxy's BaseHTTPRequestHandler sends
 *   for a method it has no do_X for; chosen over 405 to stay the same), with `Allow: POST, HEAD`.
 * - Every JSON-RPC response, errors included, is HTTP 200 with the dispatcher's response as the
 *   body (SPDK's compact JSON and escaping, then "\n" as SPDK ends each response), so the `id`
 *   comes back with its JSON type.
 *
 * Deliberately different (docs/differences.md, "HTTP endpoint"):
 * - Content-Type is application/json (the proxy says text/html), Content-Length is always sent
 *   (except on 204, where HTTP forbids it), HTTP/1.1 keep-alive works (the proxy answers
 *   HTTP/1.0 and closes); HTTP/1.0 clients work too.
 * - Every request is answered: a body that is not one JSON value gets the -32700 "Parse error"
 *   response with HTTP 200 (the proxy: 500, empty); a notification (no id) gets 204 No Content
 *   (the proxy writes nothing, the client waits for the connection to close).
 * - A body larger than `maxBodyBytes` gets 413 before anything is dispatched and the connection
 *   is closed (the proxy has no limit, but SPDK's socket drops requests over 32 KiB).
 * - Requests are handled concurrently (the proxy serves one at a time).
 * - 401 carries `WWW-Authenticate: Basic realm="spdk-node"` (the proxy sends the non-standard
 *   `WWW-Authenticate: text/html`); the scheme name matches case-insensitively (RFC 9110) and
 *   the credential is compared as decoded bytes, in constant time.
 * - Bodies may be UTF-8 (the proxy answers 500 to non-ASCII); a body with neither Content-Length
 *   nor chunked encoding is empty (the proxy drops the connection).
 * - TLS works on current Node (the proxy's `-c` crashes on Python 3.12+).
 */
export class RpcHttpServer {
  private server: http.Server | undefined;
  private bound: { host: string; port: number } | undefined;
  private readonly principals: readonly Principal[];
  private readonly tls: { cert: string | Buffer; key: string | Buffer } | undefined;
  private readonly maxBodyBytes: number;
  private readonly sockets = new Set<net.Socket>();

  constructor(
    readonly dispatcher: RpcTarget,
    opts: RpcHttpServerOptions,
  ) {
    this.principals = checkCredentials(opts.credentials);
    this.maxBodyBytes = opts.maxBodyBytes ?? HTTP_DEFAULT_MAX_BODY_BYTES;
    if (!Number.isSafeInteger(this.maxBodyBytes) || this.maxBodyBytes < 1) {
      throw SpdkError.invalidArg('rpc.http', 'maxBodyBytes must be a positive integer');
    }
    if (opts.tls !== undefined && (!opts.tls.cert || !opts.tls.key)) {
      throw SpdkError.invalidArg('rpc.http', 'tls needs both cert and key');
    }
    this.tls = opts.tls;
  }

  /** Who may call, and with which view; never the passwords. */
  get users(): ReadonlyArray<{ user: string; view?: string }> {
    return this.principals.map((p) => (p.view === undefined ? { user: p.user } : { user: p.user, view: p.view }));
  }

  /** True when serving HTTPS. */
  get secure(): boolean {
    return this.tls !== undefined;
  }

  /** The bound address while listening (the real port when 0 was asked for). */
  get address(): { host: string; port: number } | undefined {
    return this.bound;
  }

  /** The URL clients post to, e.g. `http://127.0.0.1:8000/`, while listening. */
  get url(): string | undefined {
    if (!this.bound) return undefined;
    const host = this.bound.host.includes(':') ? `[${this.bound.host}]` : this.bound.host;
    return `${this.secure ? 'https' : 'http'}://${host}:${this.bound.port}/`;
  }

  /**
   * Starts listening; port 0 picks a free port. Resolves with the bound address; rejects with an
   * SpdkError (errno set) when the address cannot be bound.
   */
  async listen(host: string, port: number): Promise<{ host: string; port: number }> {
    if (this.server) throw new SpdkError('HTTP endpoint is already listening', { errno: EINVAL, op: 'rpc.http.listen' });
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw SpdkError.invalidArg('rpc.http.listen', `invalid port ${port}`);
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => this.handle(req, res);
    const server: http.Server = this.tls
      ? https.createServer({ cert: this.tls.cert, key: this.tls.key, noDelay: true }, handler)
      : http.createServer({ noDelay: true }, handler);
    // Expect: 100-continue: check auth and size before telling the client to send the body.
    server.on('checkContinue', (req: http.IncomingMessage, res: http.ServerResponse) => this.handle(req, res, true));
    server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
    server.on('connection', (socket: net.Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        reject(
          new SpdkError(`could not bind HTTP endpoint to ${host}:${port}: ${err.message}`, {
            errno: -(err.errno ?? -EINVAL),
            op: 'rpc.http.listen',
          }),
        );
      });
      server.listen(port, host, () => resolve());
    });
    server.on('error', () => undefined);
    const a = server.address() as net.AddressInfo;
    this.server = server;
    this.bound = { host: a.address, port: a.port };
    return this.bound;
  }

  /**
   * Stops listening and closes every connection; calls still running finish, but their
   * responses are dropped (as the Unix-socket server does on shutdown).
   */
  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    this.bound = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await closed;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse, expectContinue = false): void {
    res.on('error', () => undefined);
    req.on('error', () => undefined);
    if (req.method === 'HEAD') {
      // The proxy's do_HEAD: 200, no auth check (a liveness probe).
      res.writeHead(200, { 'Content-Type': JSON_TYPE, 'Content-Length': 0 });
      res.end();
      return;
    }
    if (req.method !== 'POST') {
      reply(res, 501, { Allow: 'POST, HEAD' });
      return;
    }

    const chunked = req.headers['content-length'] === undefined && /\bchunked\b/i.test(req.headers['transfer-encoding'] ?? '');
    const declared = req.headers['content-length'] === undefined ? 0 : Number(req.headers['content-length']);
    const principal = this.authenticate(req.headers.authorization);
    if (principal === undefined) {
      // A small body is skipped by Node and the connection stays usable; a large or streamed one
      // is not worth reading for an unauthenticated client, and after refusing an
      // `Expect: 100-continue` the client may or may not send its body, so the stream is lost.
      const close = expectContinue || chunked || declared > this.maxBodyBytes;
      reply(res, 401, { 'WWW-Authenticate': `Basic realm="${REALM}", charset="UTF-8"` }, close);
      return;
    }
    if (declared > this.maxBodyBytes) {
      reply(res, 413, {}, true);
      return;
    }
    if (expectContinue) res.writeContinue();

    const chunks: Buffer[] = [];
    let total = 0;
    let refused = false;
    req.on('data', (chunk: Buffer) => {
      if (refused) return;
      total += chunk.length;
      if (total > this.maxBodyBytes) {
        refused = true;
        chunks.length = 0;
        reply(res, 413, {}, true);
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (refused) return;
      void this.answer(Buffer.concat(chunks, total), principal, res);
    });
  }

  private async answer(body: Buffer, principal: Principal, res: http.ServerResponse): Promise<void> {
    const abort = new AbortController();
    const onClose = (): void => {
      if (!res.writableFinished) abort.abort(new Error('HTTP client disconnected'));
    };
    res.once('close', onClose);

    let response: JsonRpcResponse | null;
    const value = parseBody(body);
    if (value === PARSE_FAILED) {
      response = errorResponse(JSONRPC_ERROR_PARSE_ERROR, 'Parse error');
    } else {
      const ctx: HttpRpcContext = { transport: 'http', user: principal.user, view: principal.view, signal: abort.signal };
      try {
        response = await this.dispatcher.dispatch(value, ctx);
      } catch {
        response = errorResponse(JSONRPC_ERROR_INTERNAL_ERROR, 'Internal error');
      }
    }
    res.off('close', onClose);
    if (res.destroyed || res.writableEnded) return;
    if (response === null) {
      // A notification: nothing to say, but always answer (the proxy leaves the client hanging).
      res.writeHead(204);
      res.end();
      return;
    }
    const text = writeJson(response) + '\n';
    res.writeHead(200, { 'Content-Type': JSON_TYPE, 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  }

  /**
   * The credential the Authorization header proves, or undefined. Every credential is compared,
   * over SHA-256 digests with timingSafeEqual, so neither which one matched nor how long the
   * right password is shows in the timing.
   */
  private authenticate(header: string | undefined): Principal | undefined {
    if (header === undefined) return undefined;
    const m = /^basic +([A-Za-z0-9+/]+={0,2}) *$/i.exec(header);
    if (m === null) return undefined;
    const presented = sha256(Buffer.from(m[1], 'base64'));
    let found: Principal | undefined;
    for (const p of this.principals) {
      for (const d of p.digests) {
        if (crypto.timingSafeEqual(presented, d) && found === undefined) found = p;
      }
    }
    return found;
  }
}

/** Where and how {@link serveRpcHttp} serves, as the CLI gathers it. */
export interface RpcHttpEndpointOptions {
  /** `HOST:PORT` (`[v6addr]:PORT` for IPv6), or the parts; port 0 picks a free port. */
  listen: string | { host: string; port: number };
  /** One user (with `password` or `passwordFile`); or `credentialsFile`, or both. */
  user?: string;
  /** The password, or `passwordFile` to keep it off the command line. */
  password?: string;
  /** A file holding the password (one trailing newline is ignored). */
  passwordFile?: string;
  /**
   * A JSON file listing credentials, each with its own view (see {@link readCredentialsFile});
   * served beside `user`, if given.
   */
  credentialsFile?: string;
  /**
   * PEM file with the certificate (chain); it may also hold the key, as the proxy's single `-c`
   * file does, when `tlsKey` is not given.
   */
  tlsCert?: string;
  /** PEM file with the private key. */
  tlsKey?: string;
  maxBodyBytes?: number;
}

/**
 * Starts the HTTP endpoint for a dispatcher (`spdk.dispatcher`) from file names and a listen
 * address, as the `spdk-node target --http` command line gives them; resolves once listening.
 *
 * @example
 * const http = await serveRpcHttp(spdk.dispatcher, { listen: '127.0.0.1:8000', user: 'spdk', passwordFile: '/etc/spdk/pw' });
 * // ... later, before spdk.stop():
 * await http.close();
 */
export async function serveRpcHttp(dispatcher: RpcTarget, opts: RpcHttpEndpointOptions): Promise<RpcHttpServer> {
  const { host, port } = typeof opts.listen === 'string' ? parseHostPort(opts.listen) : opts.listen;
  const credentials: HttpCredential[] = [];
  if (opts.user !== undefined) {
    credentials.push({ user: opts.user, password: readPassword(opts.password, opts.passwordFile) });
  } else if (opts.password !== undefined || opts.passwordFile !== undefined) {
    throw SpdkError.invalidArg('rpc.http', 'a password needs a user');
  }
  if (opts.credentialsFile !== undefined) credentials.push(...readCredentialsFile(opts.credentialsFile));
  if (credentials.length === 0) throw SpdkError.invalidArg('rpc.http', 'the HTTP endpoint needs a user and a password, or a credentials file');
  if (opts.tlsKey !== undefined && opts.tlsCert === undefined) {
    throw SpdkError.invalidArg('rpc.http', 'a TLS key needs a TLS certificate');
  }
  let tls: RpcHttpServerOptions['tls'];
  if (opts.tlsCert !== undefined) {
    const cert = readFile(opts.tlsCert, 'TLS certificate');
    tls = { cert, key: opts.tlsKey !== undefined ? readFile(opts.tlsKey, 'TLS key') : cert };
  }
  const server = new RpcHttpServer(dispatcher, {
    credentials,
    tls,
    maxBodyBytes: opts.maxBodyBytes,
  });
  await server.listen(host, port);
  return server;
}

function readPassword(password: string | undefined, passwordFile: string | undefined, who = ''): string {
  if (password !== undefined && passwordFile !== undefined) {
    throw SpdkError.invalidArg('rpc.http', `give either a password or a password file${who}, not both`);
  }
  if (passwordFile !== undefined) return readFile(passwordFile, 'password file').toString('utf8').replace(/\r?\n$/, '');
  if (password === undefined) throw SpdkError.invalidArg('rpc.http', `the HTTP endpoint needs a password${who}`);
  return password;
}

const CREDENTIAL_KEYS = ['user', 'password', 'password_file', 'nqn_prefix'];

/**
 * Reads a credentials file (`spdk-node target --http-credentials FILE`):
 *
 * ```json
 * { "credentials": [
 *     { "user": "cinder", "password_file": "cinder.pw", "nqn_prefix": "nqn.2014-08.org.spdk:cnode" },
 *     { "user": "spdkcsiuser", "password": "spdkcsipass", "nqn_prefix": "nqn.2020-04.io.spdk.csi:" },
 *     { "user": "admin", "password_file": "/etc/spdk-node/admin.pw" } ] }
 * ```
 *
 * Each entry has a `user`, exactly one of `password` and `password_file` (relative to the
 * file's directory; one trailing newline ignored), and optionally `nqn_prefix`, the credential's
 * {@link HttpCredential.view}. Any other key is an error (a misspelt `nqn_prefix` would
 * otherwise silently give a credential the whole target). Errors name the entry, never a password.
 */
export function readCredentialsFile(file: string): HttpCredential[] {
  const bad = (msg: string): SpdkError => SpdkError.invalidArg('rpc.http', `credentials file ${file}: ${msg}`);
  let doc: unknown;
  try {
    doc = JSON.parse(readFile(file, 'credentials file').toString('utf8'));
  } catch (e) {
    if (e instanceof SpdkError) throw e;
    // Not JSON.parse's message: it quotes the text, which may hold a password.
    throw bad('not valid JSON');
  }
  const list = (doc as { credentials?: unknown } | null)?.credentials;
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc) || Object.keys(doc).some((k) => k !== 'credentials') || !Array.isArray(list)) {
    throw bad('want an object {"credentials": [...]}');
  }
  if (list.length === 0) throw bad('"credentials" is empty');
  return list.map((entry: unknown, i: number) => {
    const where = `entry ${i}`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw bad(`${where} is not an object`);
    const e = entry as Record<string, unknown>;
    const unknown = Object.keys(e).find((k) => !CREDENTIAL_KEYS.includes(k));
    if (unknown !== undefined) throw bad(`${where}: unknown key '${unknown}' (allowed: ${CREDENTIAL_KEYS.join(', ')})`);
    if (typeof e.user !== 'string') throw bad(`${where}: "user" must be a string`);
    const who = ` for user '${e.user}'`;
    for (const k of ['password', 'password_file', 'nqn_prefix']) {
      if (e[k] !== undefined && typeof e[k] !== 'string') throw bad(`${where}: "${k}"${who} must be a string`);
    }
    const pwFile = e.password_file === undefined ? undefined : path.resolve(path.dirname(file), e.password_file as string);
    let password: string;
    try {
      password = readPassword(e.password as string | undefined, pwFile, who);
    } catch (err) {
      throw bad((err as Error).message);
    }
    return e.nqn_prefix === undefined ? { user: e.user, password } : { user: e.user, password, view: e.nqn_prefix as string };
  });
}

/** Splits `HOST:PORT` / `[V6]:PORT`; throws an ERR_INVALID_ARG SpdkError when malformed. */
export function parseHostPort(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw SpdkError.invalidArg('rpc.http', `invalid HTTP listen address '${s}' (want HOST:PORT)`);
  return { host: m[1] ?? m[2], port };
}

const PARSE_FAILED = Symbol('parse failed');

/**
 * The one JSON value a body holds, with the grammar and limits of SPDK's parser, or
 * PARSE_FAILED: empty, malformed, truncated, more than one value, or over SPDK's 1024 values.
 */
function parseBody(body: Buffer): unknown {
  let buf = body;
  let r = scanJsonValue(buf);
  // The stream scanner cannot know that a number at the very end is complete; a body is whole.
  if (r.status === 'incomplete' && buf.length > 0) {
    buf = Buffer.concat([body, SPACE]);
    r = scanJsonValue(buf);
  }
  if (r.status !== 'complete' || r.end !== buf.length || r.valueCount > SPDK_JSONRPC_MAX_VALUES) return PARSE_FAILED;
  return r.value;
}

function errorResponse(code: number, message: string): JsonRpcResponse {
  return { jsonrpc: '2.0', id: null, error: { code, message } };
}

/**
 * An empty-bodied status reply. With `close`, the connection is closed after it, but lingers,
 * discarding input, so that a client still sending its body sees the status and not a reset.
 */
function reply(res: http.ServerResponse, status: number, headers: http.OutgoingHttpHeaders, close = false): void {
  if (res.headersSent) return;
  res.writeHead(status, { ...headers, 'Content-Length': 0, ...(close ? { Connection: 'close' } : {}) });
  const socket = res.socket;
  if (close && socket) lingerOnClose(socket);
  res.end();
}

function lingerOnClose(socket: net.Socket): void {
  // Node ends a `Connection: close` response with socket.destroySoon(), which closes the
  // descriptor as soon as the response is flushed; unread input then makes the kernel send a
  // reset. Replace it, for this socket only, by a half-close and a bounded drain.
  socket.destroySoon = function lingeringDestroySoon(this: net.Socket): void {
    this.end();
    this.resume();
    const timer = setTimeout(() => this.destroy(), LINGER_MS);
    timer.unref();
    this.once('close', () => clearTimeout(timer));
    this.once('end', () => this.destroy());
  };
}

function checkCredentials(list: readonly HttpCredential[]): Principal[] {
  if (!Array.isArray(list) || list.length === 0) throw SpdkError.invalidArg('rpc.http', 'the HTTP endpoint needs at least one credential');
  const seen = new Set<string>();
  return list.map((c) => {
    if (typeof c?.user !== 'string' || c.user === '' || /[:\u0000-\u001f\u007f]/.test(c.user)) {
      throw SpdkError.invalidArg('rpc.http', "an HTTP user name must be non-empty, without ':' or control characters");
    }
    if (typeof c.password !== 'string' || c.password === '') {
      throw SpdkError.invalidArg('rpc.http', `the HTTP password of user '${c.user}' must be a non-empty string`);
    }
    if (c.view !== undefined && !isNqnPrefix(c.view)) {
      throw SpdkError.invalidArg('rpc.http', `the view of HTTP user '${c.user}' must be an NQN prefix ('nqn.' and at most 223 bytes)`);
    }
    if (seen.has(c.user)) throw SpdkError.invalidArg('rpc.http', `HTTP user '${c.user}' is listed twice`);
    seen.add(c.user);
    const text = `${c.user}:${c.password}`;
    // RFC 7617 clients send UTF-8 (Go, curl); python-requests sends Latin-1 for str credentials.
    const forms = [Buffer.from(text, 'utf8')];
    if (/^[\u0000-\u00ff]*$/.test(text) && /[\u0080-\u00ff]/.test(text)) forms.push(Buffer.from(text, 'latin1'));
    return { user: c.user, view: c.view, digests: forms.map(sha256) };
  });
}

/** A view: the start of an NQN (NQNs begin with "nqn." and are at most 223 bytes). */
function isNqnPrefix(v: unknown): v is string {
  return typeof v === 'string' && v.startsWith('nqn.') && Buffer.byteLength(v) <= 223 && !/[\u0000-\u001f\u007f]/.test(v);
}

function sha256(b: Buffer): Buffer {
  return crypto.createHash('sha256').update(b).digest();
}

function readFile(path: string, what: string): Buffer {
  try {
    return fs.readFileSync(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new SpdkError(`cannot read ${what} ${path}: ${err.code ?? err.message}`, { errno: -(err.errno ?? -EINVAL), op: 'rpc.http' });
  }
}
