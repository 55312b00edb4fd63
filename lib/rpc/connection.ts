import type * as net from 'node:net';
import type { JsonRpcResponse, RpcTarget } from './dispatcher';
import { JSONRPC_ERROR_INTERNAL_ERROR, JSONRPC_ERROR_PARSE_ERROR } from './errors';
import { scanJsonValue } from './json-parse';
import { writeJson } from './json-write';

/** SPDK_JSONRPC_RECV_BUF_SIZE: the largest request SPDK's server can receive (lib/jsonrpc/jsonrpc_internal.h). */
export const SPDK_JSONRPC_RECV_BUF_SIZE = 32 * 1024;
/** SPDK_JSONRPC_MAX_VALUES: more JSON values than this in one request is a parse error. */
export const SPDK_JSONRPC_MAX_VALUES = 1024;

const EMPTY = Buffer.alloc(0);

/**
 * One client connection of the Unix-socket server, with the stream handling of SPDK's
 * jsonrpc_server_tcp.c / jsonrpc_server.c (v25.09):
 *
 * - The byte stream is a sequence of JSON values; each complete value is one request. A value may
 *   arrive in pieces or several may arrive in one read; whitespace between them is skipped.
 * - Requests are dispatched as soon as they are complete (handlers run concurrently).
 * - Each response is written as compact JSON followed by "\n" (end_response). Responses go out in
 *   request order. SPDK writes them in completion order, which differs only when a slower call
 *   precedes a faster one on the same connection.
 * - A request that does not complete within SPDK's 32 KiB receive buffer: SPDK's recv() then has
 *   no room, returns 0, and the connection is treated as closed by the peer. So the oversized
 *   request gets no response; responses to earlier requests are still sent; then the connection
 *   is closed. Same here.
 * - Malformed JSON (or more than 1024 values, or nesting deeper than 64): SPDK queues a -32700
 *   "Parse error" response (id null) and closes the connection at once, which in v25.09 discards
 *   the queued responses before they are sent, so an SPDK client only sees the connection close.
 *   Here the responses to earlier requests and the -32700 response are sent, then the connection
 *   is closed (a deliberate difference: the error SPDK means to send actually arrives). Nothing
 *   after the bad byte is processed, as in SPDK (a stream has no resync point).
 * - When the peer shuts down its sending side, pending responses are still sent, then the
 *   connection is closed (SPDK: conn->closed with outstanding requests).
 */
export class RpcConnection {
  private pending: Buffer = EMPTY;
  private receiving = true;
  private finishing = false;
  private tail: Promise<void> = Promise.resolve();
  private readonly abort = new AbortController();

  constructor(
    private readonly socket: net.Socket,
    private readonly dispatcher: RpcTarget,
    private readonly maxRequestSize = SPDK_JSONRPC_RECV_BUF_SIZE,
  ) {
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('end', () => this.finish());
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.abort.abort(new Error('RPC connection closed')));
  }

  /** Closes the connection at once; unsent responses are dropped (SPDK's server shutdown). */
  destroy(): void {
    this.receiving = false;
    this.socket.destroy();
  }

  private receive(chunk: Buffer): void {
    if (!this.receiving) return;
    const buf = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    let offset = 0;
    while (this.receiving) {
      const limit = Math.min(buf.length, offset + this.maxRequestSize);
      const r = scanJsonValue(buf, offset, limit);
      if (r.status === 'incomplete') {
        if (limit - offset >= this.maxRequestSize) this.finish();
        break;
      }
      if (r.status === 'invalid' || r.valueCount > SPDK_JSONRPC_MAX_VALUES) {
        this.enqueue(Promise.resolve(errorResponse(JSONRPC_ERROR_PARSE_ERROR, 'Parse error')));
        this.finish();
        break;
      }
      offset = r.end;
      this.enqueue(this.dispatcher.dispatch(r.value, { transport: 'unix', signal: this.abort.signal }));
    }
    // Copy the unparsed rest so a large chunk is not kept alive by a small remainder.
    this.pending = this.receiving && offset < buf.length ? Buffer.from(buf.subarray(offset)) : EMPTY;
  }

  private enqueue(response: Promise<JsonRpcResponse | null>): void {
    const safe = response.catch(() => errorResponse(JSONRPC_ERROR_INTERNAL_ERROR, 'Internal error'));
    this.tail = this.tail.then(async () => {
      const r = await safe;
      if (r !== null && this.socket.writable) this.socket.write(writeJson(r) + '\n');
    });
  }

  /** Stops reading; closes the connection once every response already due has been written. */
  private finish(): void {
    if (this.finishing) return;
    this.finishing = true;
    this.receiving = false;
    this.pending = EMPTY;
    // Like SPDK's close(): once the last response is flushed the descriptor is closed for good,
    // even if the peer keeps its side open.
    this.tail = this.tail.then(() => {
      this.socket.end(() => this.socket.destroy());
    });
  }
}

function errorResponse(code: number, message: string): JsonRpcResponse {
  return { jsonrpc: '2.0', id: null, error: { code, message } };
}
