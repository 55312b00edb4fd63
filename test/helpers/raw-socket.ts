import * as net from 'node:net';
import { scanJsonValue } from '../../lib/rpc/json-parse';

/**
 * A plain Unix-socket connection for framing tests: writes bytes as given and collects what the
 * server sends, so the tests see exactly SPDK's wire format.
 */
export class RawSocket {
  private data = Buffer.alloc(0);
  private closed = false;
  private readonly waiters = new Set<() => void>();

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.data = Buffer.concat([this.data, chunk]);
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  static connect(path: string): Promise<RawSocket> {
    return new Promise((resolve, reject) => {
      const s = net.connect(path);
      s.once('connect', () => resolve(new RawSocket(s)));
      s.once('error', reject);
    });
  }

  /** Everything received so far, as text. */
  get text(): string {
    return this.data.toString('utf8');
  }

  get isClosed(): boolean {
    return this.closed;
  }

  write(data: string | Buffer): Promise<void> {
    return new Promise((resolve, reject) => this.socket.write(data, (err) => (err ? reject(err) : resolve())));
  }

  /** Half-closes our sending side. */
  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** The JSON values received so far. */
  values(): unknown[] {
    const out: unknown[] = [];
    let off = 0;
    for (;;) {
      const r = scanJsonValue(this.data, off);
      if (r.status !== 'complete') return out;
      out.push(r.value);
      off = r.end;
    }
  }

  /** Waits until `n` JSON values have arrived; returns them. */
  async responses(n: number, timeoutMs = 2000): Promise<unknown[]> {
    await this.until(() => this.values().length >= n || this.closed, timeoutMs);
    const v = this.values();
    if (v.length < n) throw new Error(`expected ${n} responses, got ${v.length}: ${this.text}`);
    return v;
  }

  /** Waits for the server to close the connection; false on timeout. */
  async waitClosed(timeoutMs = 2000): Promise<boolean> {
    try {
      await this.until(() => this.closed, timeoutMs);
      return true;
    } catch {
      return false;
    }
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  private until(cond: () => boolean, timeoutMs: number): Promise<void> {
    if (cond()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (cond()) {
          clearTimeout(timer);
          this.waiters.delete(check);
          resolve();
        }
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`timed out; received: ${this.text}`));
      }, timeoutMs);
      this.waiters.add(check);
    });
  }
}
