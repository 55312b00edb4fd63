import { expect } from 'chai';
import { execFile, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseTargetArgs } from '../lib/cli/main';
import { dispatchRequest, JsonRpcResponse, RpcContext, RpcTarget } from '../lib/rpc/dispatcher';
import { HttpRpcContext, RpcHttpServer, serveRpcHttp } from '../lib/rpc/http';
import { tempDir, uniqueSocketPath } from './helpers/env';
import { forEachEngine, useTarget } from './helpers/engines';

// Credentials of the tests. The non-ASCII one checks both UTF-8 (curl, Go, Node) and Latin-1
// (python-requests) encodings of the same password.
const USER = 'cinder';
const PASSWORD = 'S3cret-cinder-7f1c';
const CSI_USER = 'csi';
const CSI_PASSWORD = 'pässwörd-csi';
// The CSI credential's view: the NVMe-oF subsystems named with spdk-csi's NQN prefix.
const CSI_VIEW = 'nqn.2020-04.io.spdk.csi:';

interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

interface RequestOptions {
  method?: string;
  path?: string;
  /** An Authorization header, or false for none. Default: Basic with USER/PASSWORD. */
  authorization?: string | false;
  headers?: http.OutgoingHttpHeaders;
  agent?: http.Agent | false;
  /** Write the body in these pieces (chunked encoding, as no Content-Length is set). */
  pieces?: Array<string | Buffer>;
  tls?: { ca: string | Buffer };
}

function basic(user: string, password: string, encoding: BufferEncoding = 'utf8'): string {
  return 'Basic ' + Buffer.from(`${user}:${password}`, encoding).toString('base64');
}

function request(port: number, body: string | Buffer | undefined, opts: RequestOptions = {}): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = { ...opts.headers };
    const auth = opts.authorization ?? basic(USER, PASSWORD);
    if (auth !== false) headers.authorization = auth;
    if (body !== undefined && opts.pieces === undefined) headers['content-length'] = Buffer.byteLength(body);
    const o: https.RequestOptions = { host: '127.0.0.1', port, method: opts.method ?? 'POST', path: opts.path ?? '/', headers, agent: opts.agent ?? false };
    const req = opts.tls ? https.request({ ...o, ca: opts.tls.ca }) : http.request(o);
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = text ? JSON.parse(text) : undefined;
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    if (opts.pieces) {
      void (async () => {
        for (const p of opts.pieces ?? []) {
          req.write(p);
          await sleep(20);
        }
        req.end();
      })();
    } else {
      req.end(body);
    }
  });
}

const rpcBody = (method: string, params?: unknown, id: unknown = 1): string =>
  JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) });

/**
 * A bare TCP connection that writes bytes as given and reads HTTP responses one at a time
 * (framed by Content-Length), to see keep-alive, HTTP/1.0 and connection closes exactly.
 */
class RawHttp {
  private data = Buffer.alloc(0);
  closed = false;
  private wake: (() => void) | undefined;

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (c: Buffer) => {
      this.data = Buffer.concat([this.data, c]);
      this.wake?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
    socket.on('error', () => undefined);
  }

  static connect(port: number): Promise<RawHttp> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => resolve(new RawHttp(s)));
      s.once('error', reject);
    });
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  destroy(): void {
    this.socket.destroy();
  }

  private async until(cond: () => boolean, ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!cond()) {
      if (this.closed) return;
      if (Date.now() > deadline) throw new Error('timed out waiting for the server');
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 50);
      });
    }
  }

  /** The next response; `head` for a response to HEAD (no body whatever the headers say). */
  async response(head = false): Promise<{ status: number; version: string; headers: Record<string, string>; body: string }> {
    await this.until(() => this.data.includes('\r\n\r\n'));
    const end = this.data.indexOf('\r\n\r\n');
    if (end < 0) throw new Error(`connection closed without a response (got '${this.data.toString()}')`);
    const lines = this.data.subarray(0, end).toString('latin1').split('\r\n');
    const [version, status] = lines[0].split(' ');
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    const length = head || status === '204' ? 0 : Number(headers['content-length'] ?? NaN);
    if (Number.isNaN(length)) throw new Error('response without Content-Length');
    await this.until(() => this.data.length >= end + 4 + length);
    const body = this.data.subarray(end + 4, end + 4 + length).toString('utf8');
    this.data = this.data.subarray(end + 4 + length);
    return { status: Number(status), version, headers, body };
  }

  /** Resolves true when the server closes the connection within `ms`. */
  async closedWithin(ms: number): Promise<boolean> {
    await this.until(() => false, ms).catch(() => undefined);
    return this.closed;
  }
}

function rawPost(body: string, auth = basic(USER, PASSWORD), extra = ''): string {
  return `POST / HTTP/1.1\r\nHost: x\r\nAuthorization: ${auth}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;
}

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** A throwaway self-signed certificate for 127.0.0.1 (EC P-256), made with the openssl CLI. */
function makeCert(dir: string): { cert: string; key: string; certFile: string; keyFile: string; combinedFile: string } {
  const keyFile = path.join(dir, 'key.pem');
  const certFile = path.join(dir, 'cert.pem');
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', '/CN=spdk-node-test', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '-keyout', keyFile, '-out', certFile],
    { stdio: 'ignore' },
  );
  const cert = fs.readFileSync(certFile, 'utf8');
  const key = fs.readFileSync(keyFile, 'utf8');
  const combinedFile = path.join(dir, 'combined.pem');
  fs.writeFileSync(combinedFile, cert + key); // the proxy's single -c file
  return { cert, key, certFile, keyFile, combinedFile };
}

function python(script: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  // Asynchronous on purpose: the server under test runs on this process's event loop.
  return new Promise((resolve) => {
    execFile('python3', ['-c', script, ...args], { timeout: 30000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

function hasPython(module = 'json'): boolean {
  try {
    execFileSync('python3', ['-c', `import ${module}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

type TestMethod = (params: unknown, ctx: RpcContext) => unknown;

/**
 * The libspdk engine's HTTP target with the tests' own methods beside SPDK's: the engine's
 * RpcForwarder (spdk.rpc on libspdk, what spdk.serveRpcHttp serves there) for everything else.
 */
class WithTestMethods implements RpcTarget {
  constructor(
    private readonly inner: RpcTarget,
    private readonly methods: Record<string, TestMethod>,
  ) {}

  async call(method: string, params?: unknown, ctx: Partial<RpcContext> = {}): Promise<unknown> {
    const m = this.methods[method];
    return m ? m(params, { transport: 'internal', ...ctx }) : this.inner.call(method, params, ctx);
  }

  dispatch(request: unknown, ctx: Partial<RpcContext> = {}): Promise<JsonRpcResponse | null> {
    return dispatchRequest(this, request, ctx);
  }
}

/*
 * The HTTP endpoint is spdk-node's code on both engines; what differs is what it calls. builtin:
 * the engine's method table (test methods registered on it). libspdk: the engine's RpcForwarder
 * to SPDK's own socket in a child, exactly what spdk.serveRpcHttp serves on libspdk (here in the
 * test's process, so the test methods can sit beside it; the last test checks the child's own
 * spdk.serveRpcHttp answers the same).
 */
forEachEngine((engine) =>
describe(`HTTP endpoint (SPDK rpc_http_proxy.py protocol) (${engine} engine)`, function () {
  const t = useTarget(engine, { tag: 'http', sharedBuiltin: true });
  let target: RpcTarget;
  let server: RpcHttpServer;
  let port: number;
  let probeCalls = 0;
  const aborted: string[] = [];

  const bdevNames = async (): Promise<string[]> =>
    ((await t.client.call('bdev_get_bdevs')) as Array<{ name: string }>).map((b) => b.name);

  before(async () => {
    const methods: Record<string, TestMethod> = {
      test_http_probe: () => ++probeCalls,
      test_http_ctx: (_p, ctx) => {
        const c = ctx as unknown as HttpRpcContext;
        return { transport: c.transport, user: c.user, view: c.view ?? null };
      },
      test_http_sleep: async (p) => {
        await sleep((p as { ms: number }).ms);
        return (p as { ms: number }).ms;
      },
      test_http_wait_abort: (p, ctx) =>
        new Promise((resolve) => {
          const timer = setTimeout(() => resolve('timeout'), 5000);
          ctx.signal?.addEventListener('abort', () => {
            clearTimeout(timer);
            aborted.push((p as { tag: string }).tag);
            resolve('aborted');
          });
        }),
    };
    if (engine === 'builtin') {
      // Test-only methods on the engine's real method table.
      const dispatcher = t.spdk!.dispatcher;
      for (const [name, fn] of Object.entries(methods)) dispatcher.register(name, fn);
      target = dispatcher;
    } else {
      target = new WithTestMethods(t.rpc as RpcTarget, methods);
    }
    server = new RpcHttpServer(target, {
      credentials: [
        { user: USER, password: PASSWORD },
        { user: CSI_USER, password: CSI_PASSWORD, view: CSI_VIEW },
      ],
    });
    ({ port } = await server.listen('127.0.0.1', 0));
  });

  after(async () => {
    await server?.close();
  });

  describe('authentication', () => {
    it('accepts the right user and password and runs the call', async () => {
      const r = await request(port, rpcBody('bdev_malloc_create', { name: 'http_auth_ok', num_blocks: 256, block_size: 512 }));
      expect(r.status).to.equal(200);
      expect(r.json).to.deep.equal({ jsonrpc: '2.0', id: 1, result: 'http_auth_ok' });
      expect(await bdevNames()).to.include('http_auth_ok');
    });

    const bad: Array<[string, string | false]> = [
      ['a wrong password', basic(USER, PASSWORD + 'x')],
      ['a password prefix', basic(USER, PASSWORD.slice(0, -1))],
      ['a wrong user', basic('nova', PASSWORD)],
      ['the other user with the first password', basic(CSI_USER, PASSWORD)],
      ['no Authorization header', false],
      ['an empty Authorization header', ''],
      ['Basic without credentials', 'Basic'],
      ['credentials that are not base64', 'Basic !!not-base64!!'],
      ['base64 without a colon', 'Basic ' + Buffer.from(USER + PASSWORD).toString('base64')],
      ['the credentials unencoded', `Basic ${USER}:${PASSWORD}`],
      ['another scheme (Bearer)', 'Bearer ' + Buffer.from(`${USER}:${PASSWORD}`).toString('base64')],
      ['another scheme (Digest)', `Digest username="${USER}", realm="spdk-node", response="x"`],
    ];
    for (const [what, authorization] of bad) {
      it(`answers ${what} with 401 and dispatches nothing`, async () => {
        const name = `http_unauth_${what.replace(/\W+/g, '_')}`;
        const before = probeCalls;
        const r = await request(port, rpcBody('bdev_malloc_create', { name, num_blocks: 256, block_size: 512 }), { authorization });
        expect(r.status).to.equal(401);
        expect(r.headers['www-authenticate']).to.match(/^Basic realm="spdk-node"/);
        expect(r.headers['content-length']).to.equal('0');
        expect(r.text).to.equal('');
        expect(JSON.stringify(r.headers)).not.to.contain(PASSWORD);
        const p = await request(port, rpcBody('test_http_probe'), { authorization });
        expect(p.status).to.equal(401);
        expect(probeCalls).to.equal(before);
        expect(await bdevNames()).not.to.include(name);
      });
    }

    it('matches the scheme name case-insensitively (RFC 9110)', async () => {
      const r = await request(port, rpcBody('spdk_get_version'), { authorization: basic(USER, PASSWORD).replace('Basic', 'basic') });
      expect(r.status).to.equal(200);
    });

    it('serves every credential and hands its user and view to the handler', async () => {
      const a = await request(port, rpcBody('test_http_ctx'));
      expect(a.json.result).to.deep.equal({ transport: 'http', user: USER, view: null });
      const b = await request(port, rpcBody('test_http_ctx'), { authorization: basic(CSI_USER, CSI_PASSWORD) });
      expect(b.json.result).to.deep.equal({ transport: 'http', user: CSI_USER, view: CSI_VIEW });
      // python-requests encodes str credentials as Latin-1: the same password is accepted that way.
      const c = await request(port, rpcBody('test_http_ctx'), { authorization: basic(CSI_USER, CSI_PASSWORD, 'latin1') });
      expect(c.json.result.user).to.equal(CSI_USER);
    });

    it('refuses bad credential lists at construction', () => {
      const mk = (credentials: Array<{ user: string; password: string }>) => () => new RpcHttpServer(target, { credentials });
      expect(mk([])).to.throw(/at least one credential/);
      expect(mk([{ user: 'a:b', password: 'x' }])).to.throw(/without ':'/);
      expect(mk([{ user: '', password: 'x' }])).to.throw(/non-empty/);
      expect(mk([{ user: 'a', password: '' }])).to.throw(/non-empty/);
      expect(mk([{ user: 'a', password: 'x' }, { user: 'a', password: 'y' }])).to.throw(/twice/);
      expect(() => new RpcHttpServer(target, { credentials: [{ user: 'a', password: 'x', view: 'csi' }] })).to.throw(/NQN prefix/);
      // The message names the user, never the password.
      expect(mk([{ user: 'a', password: '' }])).to.throw(/'a'/);
    });
  });

  describe('HTTP methods and paths', () => {
    for (const p of ['/', '/jsonrpc', '/any/path/at/all?x=1&y=2', '//']) {
      it(`takes a POST on ${p}`, async () => {
        const r = await request(port, rpcBody('spdk_get_version', undefined, 7), { path: p });
        expect(r.status).to.equal(200);
        expect(r.json.id).to.equal(7);
        expect(r.json.result.fields.major).to.equal(25);
      });
    }

    it('answers HEAD with 200 and no body, without auth (as the proxy does)', async () => {
      const r = await request(port, undefined, { method: 'HEAD', authorization: false });
      expect(r.status).to.equal(200);
      expect(r.text).to.equal('');
      const s = await RawHttp.connect(port);
      s.write('HEAD /whatever HTTP/1.1\r\nHost: x\r\n\r\n');
      const h = await s.response(true);
      expect(h.status).to.equal(200);
      s.destroy();
    });

    for (const method of ['GET', 'PUT', 'DELETE', 'OPTIONS', 'PATCH']) {
      it(`answers ${method} with 501 and Allow: POST, HEAD, dispatching nothing`, async () => {
        const before = probeCalls;
        const r = await request(port, rpcBody('test_http_probe'), { method });
        expect(r.status).to.equal(501);
        expect(r.headers.allow).to.equal('POST, HEAD');
        expect(probeCalls).to.equal(before);
        const u = await request(port, undefined, { method, authorization: false });
        expect(u.status).to.equal(501);
      });
    }
  });

  describe('JSON-RPC responses', () => {
    it('returns a JSON-RPC error with HTTP 200 and the error object (unknown method)', async () => {
      const r = await request(port, rpcBody('no_such_method', undefined, 3));
      expect(r.status).to.equal(200);
      expect(r.headers['content-type']).to.equal('application/json');
      expect(Number(r.headers['content-length'])).to.equal(Buffer.byteLength(r.text));
      expect(r.json).to.deep.equal({ jsonrpc: '2.0', id: 3, error: { code: -32601, message: 'Method not found' } });
    });

    it('returns SPDK\'s errno error with HTTP 200 (bdev_get_bdevs of an unknown name: -19 "No such device")', async () => {
      const r = await request(port, rpcBody('bdev_get_bdevs', { name: 'http_nope' }, 4));
      expect(r.status).to.equal(200);
      expect(r.json).to.deep.equal({ jsonrpc: '2.0', id: 4, error: { code: -19, message: 'No such device' } });
    });

    it('returns parameter errors with HTTP 200 and changes nothing', async () => {
      const r = await request(port, rpcBody('bdev_malloc_create', { name: 'http_badparams', num_blocks: 'x', block_size: 512 }));
      expect(r.status).to.equal(200);
      expect(r.json.error.code).to.be.a('number');
      expect(r.json).not.to.have.property('result');
      expect(await bdevNames()).not.to.include('http_badparams');
    });

    it('ends the body with SPDK\'s compact JSON, its escaping and a newline', async () => {
      const r = await request(port, rpcBody('no_such_method', undefined, 'é€😀'));
      expect(r.text).to.equal('{"jsonrpc":"2.0","id":"\\u00E9\\u20AC\\uD83D\\uDE00","error":{"code":-32601,"message":"Method not found"}}\n');
    });

    const ids: Array<[string, unknown, string]> = [
      ['number 1', 1, '1'],
      ['number 0', 0, '0'],
      ['int32 max', 2147483647, '2147483647'],
      ['negative number', -5, '-5'],
      ['string', 'abc', '"abc"'],
      ['numeric string', '1', '"1"'],
      ['empty string', '', '""'],
    ];
    for (const [what, id, wire] of ids) {
      it(`echoes an id that is a ${what} with its JSON type`, async () => {
        const r = await request(port, rpcBody('spdk_get_version', undefined, id));
        expect(r.status).to.equal(200);
        expect(r.text.startsWith(`{"jsonrpc":"2.0","id":${wire},"result":`)).to.equal(true, r.text);
        expect(r.json.id).to.equal(id);
      });
    }

    it('answers a notification (no id) with 204 and no body, after running it', async () => {
      const r = await request(port, JSON.stringify({ jsonrpc: '2.0', method: 'bdev_malloc_create', params: { name: 'http_notified', num_blocks: 256, block_size: 512 } }));
      expect(r.status).to.equal(204);
      expect(r.text).to.equal('');
      expect(await bdevNames()).to.include('http_notified');
      const n = await request(port, JSON.stringify({ jsonrpc: '2.0', id: null, method: 'spdk_get_version' }));
      expect(n.status).to.equal(204);
    });

    it('answers a failing notification with its error (id null), as SPDK does', async () => {
      const r = await request(port, JSON.stringify({ jsonrpc: '2.0', method: 'no_such_method' }));
      expect(r.status).to.equal(200);
      expect(r.json).to.deep.equal({ jsonrpc: '2.0', id: null, error: { code: -32601, message: 'Method not found' } });
    });

    const malformed: Array<[string, string | Buffer]> = [
      ['not JSON', 'nope'],
      ['an empty body', ''],
      ['only whitespace', '  \n'],
      ['truncated JSON', '{"jsonrpc":"2.0","id":1,"method":"spdk_get_version"'],
      ['two JSON values', rpcBody('spdk_get_version') + rpcBody('spdk_get_version')],
      ['a trailing comma', '{"jsonrpc":"2.0","id":1,"method":"spdk_get_version",}'],
      ['invalid UTF-8', Buffer.concat([Buffer.from('{"jsonrpc":"2.0","id":"'), Buffer.from([0xff, 0xfe]), Buffer.from('","method":"spdk_get_version"}')])],
      ['more than 1024 JSON values', JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'bdev_get_bdevs', params: { x: new Array(1100).fill(0) } })],
    ];
    for (const [what, body] of malformed) {
      it(`answers ${what} with the -32700 parse error and HTTP 200`, async () => {
        const before = probeCalls;
        const r = await request(port, body);
        expect(r.status).to.equal(200);
        expect(r.json).to.deep.equal({ jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error' } });
        expect(probeCalls).to.equal(before);
      });
    }

    it('answers a JSON value that is not a request with -32600 (batch arrays, bare numbers)', async () => {
      for (const body of [`[${rpcBody('spdk_get_version')}]`, '42', '"x"']) {
        const r = await request(port, body);
        expect(r.status).to.equal(200);
        expect(r.json).to.deep.equal({ jsonrpc: '2.0', id: null, error: { code: -32600, message: 'Invalid request' } });
      }
    });

    it('accepts UTF-8 in the body (the proxy answers 500 to non-ASCII)', async () => {
      const r = await request(port, JSON.stringify({ jsonrpc: '2.0', id: 'ü', method: 'bdev_get_bdevs', params: { name: 'bdev-ü' } }));
      expect(r.status).to.equal(200);
      expect(r.json).to.deep.equal({ jsonrpc: '2.0', id: 'ü', error: { code: -19, message: 'No such device' } });
    });
  });

  describe('framing and connections', () => {
    it('takes a chunked body, sent in pieces', async () => {
      const body = rpcBody('bdev_malloc_create', { name: 'http_chunked', num_blocks: 256, block_size: 512 }, 'ch');
      const r = await request(port, body, { pieces: [body.slice(0, 10), body.slice(10, 40), body.slice(40)] });
      expect(r.status).to.equal(200);
      expect(r.json).to.deep.equal({ jsonrpc: '2.0', id: 'ch', result: 'http_chunked' });
    });

    it('takes a hand-made chunked body with chunk extensions and trailers', async () => {
      const s = await RawHttp.connect(port);
      const body = rpcBody('spdk_get_version', undefined, 11);
      const a = body.slice(0, 17);
      const b = body.slice(17);
      s.write(`POST / HTTP/1.1\r\nHost: x\r\nAuthorization: ${basic(USER, PASSWORD)}\r\nTransfer-Encoding: chunked\r\n\r\n`);
      s.write(`${a.length.toString(16)};ext=1\r\n${a}\r\n${b.length.toString(16)}\r\n${b}\r\n0\r\nX-Trailer: t\r\n\r\n`);
      const r = await s.response();
      expect(r.status).to.equal(200);
      expect(JSON.parse(r.body).id).to.equal(11);
      s.destroy();
    });

    it('keeps the connection alive across several requests (HTTP/1.1)', async () => {
      const s = await RawHttp.connect(port);
      for (let i = 1; i <= 5; i++) {
        s.write(rawPost(rpcBody('spdk_get_version', undefined, i)));
        const r = await s.response();
        expect(r.status).to.equal(200);
        expect(r.version).to.equal('HTTP/1.1');
        expect(JSON.parse(r.body).id).to.equal(i);
      }
      // A 401 on a small body keeps the connection too (curl retries on it).
      s.write(rawPost(rpcBody('spdk_get_version'), basic(USER, 'wrong')));
      expect((await s.response()).status).to.equal(401);
      s.write(rawPost(rpcBody('spdk_get_version', undefined, 'after')));
      const r = await s.response();
      expect(JSON.parse(r.body).id).to.equal('after');
      expect(s.closed).to.equal(false);
      s.destroy();
    });

    it('answers pipelined requests in order on one connection', async () => {
      const s = await RawHttp.connect(port);
      s.write(rawPost(rpcBody('test_http_sleep', { ms: 150 }, 'slow')) + rawPost(rpcBody('spdk_get_version', undefined, 'fast')));
      expect(JSON.parse((await s.response()).body).id).to.equal('slow');
      expect(JSON.parse((await s.response()).body).id).to.equal('fast');
      s.destroy();
    });

    it('reuses connections from a keep-alive agent (as Go and python-requests do)', async () => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      const ports = new Set<number>();
      agent.on('free', (sock: net.Socket) => ports.add(sock.localPort ?? -1));
      try {
        for (let i = 0; i < 5; i++) {
          const r = await request(port, rpcBody('spdk_get_version', undefined, i), { agent });
          expect(r.json.id).to.equal(i);
        }
        expect(ports.size).to.equal(1);
      } finally {
        agent.destroy();
      }
    });

    it('serves an HTTP/1.0 client and closes after the response', async () => {
      const s = await RawHttp.connect(port);
      const body = rpcBody('spdk_get_version', undefined, 10);
      s.write(`POST / HTTP/1.0\r\nAuthorization: ${basic(USER, PASSWORD)}\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      const r = await s.response();
      expect(r.status).to.equal(200);
      expect(JSON.parse(r.body).id).to.equal(10);
      expect(await s.closedWithin(2000)).to.equal(true);
    });

    it('treats a POST with neither Content-Length nor chunked as an empty body (-32700)', async () => {
      const s = await RawHttp.connect(port);
      s.write(`POST / HTTP/1.1\r\nHost: x\r\nAuthorization: ${basic(USER, PASSWORD)}\r\n\r\n`);
      const r = await s.response();
      expect(r.status).to.equal(200);
      expect(JSON.parse(r.body).error.code).to.equal(-32700);
      s.destroy();
    });

    it('handles 50 creates and 50 listings in parallel; every answer has its own id', async () => {
      const agent = new http.Agent({ keepAlive: true });
      try {
        const calls = [];
        for (let i = 0; i < 50; i++) {
          calls.push(request(port, rpcBody('bdev_malloc_create', { name: `http_par_${i}`, num_blocks: 256, block_size: 512 }, i), { agent }));
          calls.push(request(port, rpcBody('bdev_get_bdevs', undefined, `list-${i}`), { agent }));
        }
        const rs = await Promise.all(calls);
        for (let i = 0; i < 50; i++) {
          const c = rs[2 * i];
          const l = rs[2 * i + 1];
          expect(c.status).to.equal(200);
          expect(c.json).to.deep.equal({ jsonrpc: '2.0', id: i, result: `http_par_${i}` });
          expect(l.status).to.equal(200);
          expect(l.json.id).to.equal(`list-${i}`);
          expect(l.json.result).to.be.an('array');
        }
        const names = await bdevNames();
        for (let i = 0; i < 50; i++) expect(names).to.include(`http_par_${i}`);
      } finally {
        agent.destroy();
      }
    });

    it('does not hold a fast call behind a slow one on another connection', async () => {
      const order: string[] = [];
      const slow = request(port, rpcBody('test_http_sleep', { ms: 1000 }, 'slow')).then((r) => order.push(r.json.id));
      await sleep(50);
      await request(port, rpcBody('spdk_get_version', undefined, 'fast')).then((r) => order.push(r.json.id));
      await slow;
      expect(order).to.deep.equal(['fast', 'slow']);
    });

    it('aborts the call\'s signal when the client goes away', async () => {
      const s = await RawHttp.connect(port);
      s.write(rawPost(rpcBody('test_http_wait_abort', { tag: 'gone' })));
      await sleep(100);
      s.destroy();
      const deadline = Date.now() + 3000;
      while (!aborted.includes('gone') && Date.now() < deadline) await sleep(20);
      expect(aborted).to.include('gone');
    });

    it('checks auth before answering Expect: 100-continue', async () => {
      const body = rpcBody('bdev_malloc_create', { name: 'http_expect', num_blocks: 256, block_size: 512 }, 'ex');
      const attempt = (authorization: string): Promise<{ continued: boolean; status: number; json: any }> => // eslint-disable-line @typescript-eslint/no-explicit-any
        new Promise((resolve, reject) => {
          let continued = false;
          const req = http.request({
            host: '127.0.0.1',
            port,
            method: 'POST',
            path: '/',
            agent: false,
            headers: { authorization, expect: '100-continue', 'content-length': Buffer.byteLength(body) },
          });
          req.on('continue', () => {
            continued = true;
            req.end(body);
          });
          req.on('response', (res) => {
            let text = '';
            res.on('data', (c) => (text += c));
            res.on('end', () => resolve({ continued, status: res.statusCode ?? 0, json: text ? JSON.parse(text) : undefined }));
          });
          req.on('error', reject);
          req.flushHeaders();
        });
      const bad = await attempt(basic(USER, 'nope'));
      expect(bad).to.include({ continued: false, status: 401 });
      expect(await bdevNames()).not.to.include('http_expect');
      const good = await attempt(basic(USER, PASSWORD));
      expect(good.continued).to.equal(true);
      expect(good.json).to.deep.equal({ jsonrpc: '2.0', id: 'ex', result: 'http_expect' });
    });
  });

  describe('body size limit', () => {
    let small: RpcHttpServer;
    let smallPort: number;
    const LIMIT = 4096;
    const padded = (name: string, size: number): string => {
      const b = rpcBody('bdev_malloc_create', { name, num_blocks: 256, block_size: 512 });
      return b + ' '.repeat(size - b.length);
    };

    before(async () => {
      small = new RpcHttpServer(target, { credentials: [{ user: USER, password: PASSWORD }], maxBodyBytes: LIMIT });
      ({ port: smallPort } = await small.listen('127.0.0.1', 0));
    });
    after(() => small.close());

    it('takes a body of exactly maxBodyBytes', async () => {
      const r = await request(smallPort, padded('http_limit_exact', LIMIT));
      expect(r.status).to.equal(200);
      expect(r.json.result).to.equal('http_limit_exact');
    });

    it('answers 413 by Content-Length, dispatches nothing and closes the connection', async () => {
      const r = await request(smallPort, padded('http_limit_over', LIMIT + 1));
      expect(r.status).to.equal(413);
      expect(r.headers.connection).to.equal('close');
      expect(await bdevNames()).not.to.include('http_limit_over');
      // Announced but never sent: the status comes at once, the body is not awaited.
      const s = await RawHttp.connect(smallPort);
      s.write(`POST / HTTP/1.1\r\nHost: x\r\nAuthorization: ${basic(USER, PASSWORD)}\r\nContent-Length: 999999999\r\n\r\n{`);
      expect((await s.response()).status).to.equal(413);
      expect(await s.closedWithin(3000)).to.equal(true);
    });

    it('answers 413 to a chunked body once it passes the limit, and dispatches nothing', async () => {
      const body = padded('http_limit_chunked', LIMIT * 3);
      const r = await request(smallPort, body, { pieces: [body.slice(0, LIMIT - 10), body.slice(LIMIT - 10, LIMIT * 2), body.slice(LIMIT * 2)] });
      expect(r.status).to.equal(413);
      expect(await bdevNames()).not.to.include('http_limit_chunked');
    });

    it('applies the 1 MiB default', async () => {
      const r = await request(port, padded('http_limit_default', 1024 * 1024 + 1));
      expect(r.status).to.equal(413);
      const ok = await request(port, padded('http_limit_default_ok', 1024 * 1024));
      expect(ok.status).to.equal(200);
      expect(ok.json.result).to.equal('http_limit_default_ok');
      expect(await bdevNames()).not.to.include('http_limit_default');
    });
  });

  describe('TLS', () => {
    let tmp: { dir: string; cleanup: () => void };
    let pem: ReturnType<typeof makeCert>;
    let secure: RpcHttpServer;
    let securePort: number;

    before(async function () {
      if (!hasOpenssl()) {
        console.log('      (skipped: the openssl command is needed to make a test certificate)');
        this.skip();
      }
      tmp = tempDir('spdk-node-http-tls-');
      pem = makeCert(tmp.dir);
      secure = new RpcHttpServer(target, { credentials: [{ user: USER, password: PASSWORD }], tls: { cert: pem.cert, key: pem.key } });
      ({ port: securePort } = await secure.listen('127.0.0.1', 0));
    });
    after(async () => {
      await secure?.close();
      tmp?.cleanup();
    });

    it('serves HTTPS with a verified certificate, auth included', async () => {
      expect(secure.url).to.equal(`https://127.0.0.1:${securePort}/`);
      const r = await request(securePort, rpcBody('bdev_malloc_create', { name: 'http_tls', num_blocks: 256, block_size: 512 }), { tls: { ca: pem.cert } });
      expect(r.status).to.equal(200);
      expect(r.json.result).to.equal('http_tls');
      const u = await request(securePort, rpcBody('spdk_get_version'), { tls: { ca: pem.cert }, authorization: basic(USER, 'nope') });
      expect(u.status).to.equal(401);
    });

    it('does not speak plain HTTP on the TLS port', async () => {
      const err = await request(securePort, rpcBody('spdk_get_version')).then(
        (r) => r.status,
        (e: Error) => e,
      );
      // Node's TLS server drops a plain-text client (or answers 400 at best); never 200.
      expect(err).not.to.equal(200);
    });

    it('takes one PEM file holding both certificate and key (the proxy\'s -c) through serveRpcHttp', async () => {
      const s = await serveRpcHttp(target, { listen: '127.0.0.1:0', user: USER, password: PASSWORD, tlsCert: pem.combinedFile });
      try {
        const r = await request(s.address!.port, rpcBody('spdk_get_version', undefined, 5), { tls: { ca: pem.cert } });
        expect(r.json.id).to.equal(5);
      } finally {
        await s.close();
      }
    });
  });

  describe('real clients (python3)', function () {
    this.timeout(40000);

    // Cinder's _rpc_call (cinder/volume/drivers/spdk.py), verbatim in what it sends and reads.
    const CINDER = `
import json, sys
import requests
url, user, pw = sys.argv[1], sys.argv[2], sys.argv[3]
def _rpc_call(method, params=None):
    payload = {}
    payload['jsonrpc'] = '2.0'
    payload['id'] = 1
    payload['method'] = method
    if params is not None:
        payload['params'] = params
    req = requests.post(url, data=json.dumps(payload), auth=(user, pw), verify=False, timeout=30)
    if not req.ok:
        raise Exception('SPDK target responded with error: %s' % req.text)
    return req.json()['result']
out = {}
out['created'] = _rpc_call('bdev_malloc_create', {'name': 'py_cinder_' + sys.argv[4], 'num_blocks': 256, 'block_size': 512})
out['names'] = [b['name'] for b in _rpc_call('bdev_get_bdevs')]
try:
    _rpc_call('bdev_get_bdevs', {'name': 'py-missing'})
    out['missing'] = 'no error'
except KeyError as e:
    out['missing'] = 'KeyError ' + str(e)
try:
    _rpc_call('bdev_get_bdevs')
    bad = requests.post(url, data=json.dumps({'jsonrpc': '2.0', 'id': 1, 'method': 'bdev_get_bdevs'}), auth=(user, pw + 'x'), verify=False, timeout=30)
    out['bad_status'] = bad.status_code
except Exception as e:
    out['bad_status'] = repr(e)
print(json.dumps(out))
`;

    // The same request with the standard library only.
    const URLLIB = `
import base64, json, ssl, sys, urllib.request, urllib.error
url, user, pw = sys.argv[1], sys.argv[2], sys.argv[3]
def call(method, params=None, password=pw):
    payload = {'jsonrpc': '2.0', 'id': 1, 'method': method}
    if params is not None:
        payload['params'] = params
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method='POST')
    req.add_header('Authorization', 'Basic ' + base64.b64encode((user + ':' + password).encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, None
out = {}
status, body = call('bdev_malloc_create', {'name': 'py_urllib', 'num_blocks': 256, 'block_size': 512})
out['status'] = status
out['created'] = body['result']
status, body = call('bdev_get_bdevs', {'name': 'py_urllib'})
out['get'] = [status, body['id'], body['result'][0]['name']]
status, body = call('bdev_get_bdevs', {'name': 'py-missing'})
out['missing'] = [status, body]
out['bad'] = call('bdev_get_bdevs', None, pw + 'x')[0]
print(json.dumps(out))
`;

    it('urllib.request: Cinder\'s request shape (POST json.dumps, basic auth) reads [\'result\']', async function () {
      if (!hasPython()) {
        console.log('      (skipped: python3 not found)');
        this.skip();
      }
      const r = await python(URLLIB, [`http://127.0.0.1:${port}/`, USER, PASSWORD]);
      expect(r.code, r.stderr).to.equal(0);
      const out = JSON.parse(r.stdout);
      expect(out.status).to.equal(200);
      expect(out.created).to.equal('py_urllib');
      expect(out.get).to.deep.equal([200, 1, 'py_urllib']);
      expect(out.missing).to.deep.equal([200, { jsonrpc: '2.0', id: 1, error: { code: -19, message: 'No such device' } }]);
      expect(out.bad).to.equal(401);
    });

    it('python-requests: Cinder\'s _rpc_call verbatim, over HTTP and HTTPS (verify=False), Latin-1 credentials', async function () {
      if (!hasPython('requests')) {
        console.log('      (skipped: python3 with the requests module not found)');
        this.skip();
      }
      const plain = await python(CINDER, [`http://127.0.0.1:${port}/`, USER, PASSWORD, 'http']);
      expect(plain.code, plain.stderr).to.equal(0);
      const out = JSON.parse(plain.stdout);
      expect(out.created).to.equal('py_cinder_http');
      expect(out.names).to.include('py_cinder_http');
      // Cinder sees a JSON-RPC error as a KeyError on 'result': that needs HTTP 200.
      expect(out.missing).to.equal("KeyError 'result'");
      expect(out.bad_status).to.equal(401);

      // requests sends str credentials Latin-1 encoded.
      const latin = await python(CINDER, [`http://127.0.0.1:${port}/`, CSI_USER, CSI_PASSWORD, 'latin1']);
      expect(latin.code, latin.stderr).to.equal(0);
      expect(JSON.parse(latin.stdout).created).to.equal('py_cinder_latin1');

      if (!hasOpenssl()) return;
      const tmp = tempDir('spdk-node-http-py-');
      try {
        const pem = makeCert(tmp.dir);
        const s = new RpcHttpServer(target, { credentials: [{ user: USER, password: PASSWORD }], tls: { cert: pem.cert, key: pem.key } });
        const a = await s.listen('127.0.0.1', 0);
        try {
          const tls = await python(CINDER, [`https://127.0.0.1:${a.port}/`, USER, PASSWORD, 'https']);
          expect(tls.code, tls.stderr).to.equal(0);
          expect(JSON.parse(tls.stdout).created).to.equal('py_cinder_https');
        } finally {
          await s.close();
        }
      } finally {
        tmp.cleanup();
      }
    });
  });

  if (engine === 'libspdk') {
    it("the child's own spdk.serveRpcHttp answers as the forwarder here does", async () => {
      const childPort = await t.run(async (spdk, a) => {
        const s = await spdk.serveRpcHttp({ listen: '127.0.0.1:0', user: a.user, password: a.password });
        return s.address!.port;
      }, { user: USER, password: PASSWORD });
      for (const body of [rpcBody('bdev_get_bdevs', { name: 'http_nope' }, 4), rpcBody('no_such_method', undefined, 'é€😀'), rpcBody('spdk_get_version', undefined, 7), '{"jsonrpc":"2.0",']) {
        const [a, b] = [await request(port, body), await request(childPort, body)];
        expect([b.status, b.text], body).to.deep.equal([a.status, a.text]);
      }
      expect((await request(childPort, rpcBody('spdk_get_version'), { authorization: basic(USER, 'nope') })).status).to.equal(401);
      // (Closed by the child's spdk.stop().)
    });
  }
}),
);

describe('spdk-node target --http (CLI)', function () {
  this.timeout(30000);
  const cli = path.join(__dirname, '..', 'lib', 'cli', 'main.js');

  interface Child {
    output: () => string;
    url: Promise<string>;
    exit: Promise<{ code: number | null; signal: string | null }>;
    kill: (sig: NodeJS.Signals) => void;
  }

  function startTarget(args: string[]): Child {
    const p = spawn(process.execPath, [cli, 'target', '--engine', 'builtin', '--cores', '0', '--rpc-socket', uniqueSocketPath('http-cli'), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let found: ((u: string) => void) | undefined;
    let failed: ((e: Error) => void) | undefined;
    const url = new Promise<string>((resolve, reject) => {
      found = resolve;
      failed = reject;
    });
    const scan = (d: Buffer): void => {
      out += d.toString();
      const m = /over HTTPS? on (https?:\/\/\S+\/)/.exec(out);
      if (m) found?.(m[1]);
    };
    p.stdout.on('data', scan);
    p.stderr.on('data', scan);
    const killer = setTimeout(() => p.kill('SIGKILL'), 25000);
    const exit = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
      p.on('exit', (code, signal) => {
        clearTimeout(killer);
        failed?.(new Error(`target exited (${code ?? signal}) before serving HTTP:\n${out}`));
        resolve({ code, signal });
      }),
    );
    return { output: () => out, url, exit, kill: (sig) => p.kill(sig) };
  }

  it('serves HTTP on the port it logs, never logs the password, and stops cleanly on SIGTERM', async () => {
    const password = `pw-${process.pid}-${Date.now()}-XyZ`;
    const t = startTarget(['--http', '127.0.0.1:0', '--user', 'admin', '--password', password]);
    const url = await t.url;
    const port = Number(new URL(url).port);
    expect(port).to.be.above(0);
    const ok = await request(port, rpcBody('bdev_get_bdevs', undefined, 1), { authorization: basic('admin', password) });
    expect(ok.status).to.equal(200);
    expect(ok.json.result.map((b: { name: string }) => b.name)).to.include('Malloc0');
    const bad = await request(port, rpcBody('bdev_get_bdevs'), { authorization: basic(password, password + 'x') });
    expect(bad.status).to.equal(401);
    expect(bad.text).not.to.contain(password);
    await request(port, 'garbage', { authorization: basic('admin', password) });
    t.kill('SIGTERM');
    const e = await t.exit;
    expect(e, t.output()).to.deep.equal({ code: 0, signal: null });
    const out = t.output();
    expect(out).to.contain('stopped');
    expect(out).not.to.contain(password);
    expect(out).not.to.contain(Buffer.from(`admin:${password}`).toString('base64'));
  });

  it('reads the password from --password-file and serves HTTPS with --tls-cert/--tls-key', async function () {
    if (!hasOpenssl()) this.skip();
    const tmp = tempDir('spdk-node-http-cli-');
    try {
      const pem = makeCert(tmp.dir);
      const pwFile = path.join(tmp.dir, 'pw');
      const password = `file-pw-${Date.now()}`;
      fs.writeFileSync(pwFile, password + '\n', { mode: 0o600 });
      const t = startTarget(['--no-default-bdev', '--http', '127.0.0.1:0', '--user', 'admin', '--password-file', pwFile, '--tls-cert', pem.certFile, '--tls-key', pem.keyFile]);
      const url = await t.url;
      expect(url.startsWith('https://127.0.0.1:')).to.equal(true);
      const r = await request(Number(new URL(url).port), rpcBody('spdk_get_version', undefined, 2), { authorization: basic('admin', password), tls: { ca: pem.cert } });
      expect(r.json.id).to.equal(2);
      t.kill('SIGINT');
      expect((await t.exit).code, t.output()).to.equal(0);
      expect(t.output()).not.to.contain(password);
    } finally {
      tmp.cleanup();
    }
  });

  it('refuses --http without credentials, with usage exit code 2', async () => {
    const t = startTarget(['--http', '127.0.0.1:0', '--user', 'admin']);
    const e = await t.exit;
    t.url.catch(() => undefined);
    expect(e.code).to.equal(2);
    expect(t.output()).to.contain('--http needs --password or --password-file');
  });

  it('checks the HTTP flags together', () => {
    const parse = (...argv: string[]) => () => parseTargetArgs(argv);
    expect(parse('--http', '127.0.0.1:8000')).to.throw(/--http needs --user/);
    expect(parse('--http', '127.0.0.1:8000', '--password', 'x')).to.throw(/--http needs --user/);
    expect(parse('--user', 'u', '--password', 'p')).to.throw(/need --http/);
    expect(parse('--http', '127.0.0.1', '--user', 'u', '--password', 'p')).to.throw(/HOST:PORT/);
    expect(parse('--http', '127.0.0.1:70000', '--user', 'u', '--password', 'p')).to.throw(/HOST:PORT/);
    expect(parse('--http', '0.0.0.0:1', '--user', 'u', '--password', 'p', '--password-file', 'f')).to.throw(/not both/);
    expect(parse('--http', '0.0.0.0:1', '--user', 'u', '--password', 'p', '--tls-key', 'k')).to.throw(/--tls-key needs --tls-cert/);
    const ok = parseTargetArgs(['--http', '[::1]:8000', '--user', 'u', '--password-file', '/f', '--tls-cert', '/c']);
    expect(ok.http).to.deep.include({ listen: '[::1]:8000', user: 'u', passwordFile: '/f', tlsCert: '/c' });
    expect(parseTargetArgs([]).http).to.equal(undefined);
  });
});
