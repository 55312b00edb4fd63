import * as fs from 'node:fs';
import * as net from 'node:net';
import { SpdkError } from '../errors';
import { RpcConnection, SPDK_JSONRPC_RECV_BUF_SIZE } from './connection';
import type { RpcTarget } from './dispatcher';

const EADDRINUSE = 98;
const EINVAL = 22;
// sizeof(sockaddr_un.sun_path) on Linux, terminating NUL included.
const SUN_PATH_MAX = 108;

export interface RpcServerOptions {
  /** Largest request in bytes; default SPDK's receive buffer, 32 KiB. */
  maxRequestSize?: number;
}

/**
 * SPDK's JSON-RPC server on a Unix domain socket (see {@link RpcConnection} for the framing), so
 * SPDK's `scripts/rpc.py -s <path>` talks to it unchanged.
 *
 * Starting: a path where a live server answers is refused with EADDRINUSE ("RPC Unix domain
 * socket path ... in use. Specify another.", SPDK's message); a socket file nobody listens on is
 * stale and removed. SPDK decides this with an flock on `<path>.lock` and then unlinks whatever
 * is at the path; Node has no flock, so liveness is tested by connecting, no lock file is made,
 * and a path that is not a socket is refused instead of deleted.
 *
 * Unlike SPDK (64 connections, the rest wait in the listen backlog), connections are not capped.
 */
export class RpcServer {
  private server: net.Server | undefined;
  private socketPath: string | undefined;
  private socketIno: number | undefined;
  private readonly connections = new Set<RpcConnection>();
  private readonly maxRequestSize: number;

  constructor(
    readonly dispatcher: RpcTarget,
    opts: RpcServerOptions = {},
  ) {
    this.maxRequestSize = opts.maxRequestSize ?? SPDK_JSONRPC_RECV_BUF_SIZE;
  }

  /** The socket path while listening. */
  get path(): string | undefined {
    return this.socketPath;
  }

  /** Starts listening on `path`; rejects with an SpdkError when the path is unusable. */
  async listen(path: string): Promise<void> {
    if (this.server) throw new SpdkError('RPC server is already listening', { errno: EINVAL, op: 'rpc.listen' });
    if (Buffer.byteLength(path) >= SUN_PATH_MAX) {
      throw new SpdkError('RPC Listen address Unix socket path too long', { errno: EINVAL, op: 'rpc.listen' });
    }
    await removeStaleSocket(path);

    const server = net.createServer({ allowHalfOpen: true }, (socket) => {
      const conn = new RpcConnection(socket, this.dispatcher, this.maxRequestSize);
      this.connections.add(conn);
      socket.on('close', () => this.connections.delete(conn));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        reject(
          err.code === 'EADDRINUSE'
            ? inUse(path)
            : new SpdkError(`could not bind JSON-RPC server: ${err.message}`, { errno: -(err.errno ?? -EINVAL), op: 'rpc.listen' }),
        );
      });
      server.listen(path, () => resolve());
    });
    server.on('error', () => undefined);
    this.server = server;
    this.socketPath = path;
    this.socketIno = fs.statSync(path).ino;
  }

  /**
   * Stops listening, closes every connection (responses not yet written are dropped, as in
   * spdk_jsonrpc_server_shutdown) and removes the socket file if it is still ours.
   */
  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    for (const conn of this.connections) conn.destroy();
    this.connections.clear();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const path = this.socketPath;
    this.socketPath = undefined;
    if (path !== undefined) {
      try {
        if (fs.lstatSync(path).ino === this.socketIno) fs.unlinkSync(path);
      } catch {
        // Already gone (libuv unlinks a pipe it bound when the server closes).
      }
    }
  }
}

function inUse(path: string): SpdkError {
  return new SpdkError(`RPC Unix domain socket path ${path} in use. Specify another.`, {
    errno: EADDRINUSE,
    op: 'rpc.listen',
  });
}

/** Removes a socket file nobody listens on; throws when a server answers there. */
async function removeStaleSocket(path: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) {
    throw new SpdkError(`RPC Unix domain socket path ${path} exists and is not a socket; not removing it`, {
      errno: EADDRINUSE,
      op: 'rpc.listen',
    });
  }
  if (await isListening(path)) throw inUse(path);
  try {
    fs.unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** Connects to a Unix socket: true when something accepts (or its backlog is full). */
function isListening(path: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const probe = net.connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', (err: NodeJS.ErrnoException) => {
      probe.destroy();
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') resolve(false);
      else if (err.code === 'EAGAIN') resolve(true);
      else reject(err);
    });
  });
}
