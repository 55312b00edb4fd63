/**
 * Helpers of the provisioning tests: storage targets in child processes (`spdk-node target`
 * with a file-backed lvstore, served on a Unix socket and optionally HTTP), a caller wrapper
 * that acts when a chosen method is about to be called (to kill a node or stop a provisioner
 * at an exact step), and an NVMe/TCP connection to an export.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { RpcCaller } from '../../lib/lvol';
import { RpcClient } from '../../lib/rpc/client';
import type { VolumeExport } from '../../lib/provision';
import { fillPattern, uniqueSocketPath } from './env';
import { freePort, NvmeTcpController } from './nvme-tcp-host';

const MAIN = path.join(__dirname, '..', '..', 'lib', 'cli', 'main.js');

export interface TargetOptions {
  /** Directory for the backing file, config and password file. */
  dir: string;
  tag: string;
  /** Size of the backing file. */
  sizeMiB: number;
  lvsName: string;
  clusterSize?: number;
  /** Also serve HTTP with Basic auth. */
  http?: { user: string; password: string };
  /** The engine (default builtin); libspdk runs SPDK in the process, without hugepages. */
  engine?: 'builtin' | 'libspdk';
}

/** A `spdk-node target` child process with a file-backed lvstore that survives restarts. */
export class TargetProcess {
  readonly socket: string;
  httpUrl: string | undefined;
  private child: ChildProcess | undefined;
  private output = '';
  private exited: Promise<number | null> = Promise.resolve(null);
  private readonly args: string[];
  private httpPort = 0;

  private constructor(private readonly opts: TargetOptions) {
    this.socket = uniqueSocketPath(`prov-${opts.tag}`);
    const file = path.join(opts.dir, `${opts.tag}.img`);
    fs.writeFileSync(file, '');
    fs.truncateSync(file, opts.sizeMiB * 1024 * 1024);
    const config = path.join(opts.dir, `${opts.tag}.json`);
    fs.writeFileSync(
      config,
      JSON.stringify({ subsystems: [{ subsystem: 'bdev', config: [{ method: 'bdev_aio_create', params: { name: `${opts.tag}-disk`, filename: file, block_size: 4096 } }] }] }),
    );
    const engine = opts.engine ?? 'builtin';
    // libspdk: test/libspdk-engine.test.ts's options (one core, no hugepages, SPDK's 1 GiB).
    this.args = [MAIN, 'target', '--engine', engine, ...(engine === 'libspdk' ? ['--no-huge'] : []), '--rpc-socket', this.socket, '--config', config];
  }

  /** Starts the process and creates its lvstore. */
  static async start(opts: TargetOptions): Promise<TargetProcess> {
    const t = new TargetProcess(opts);
    if (opts.http) {
      t.httpPort = await freePort();
      const pw = path.join(opts.dir, `${opts.tag}.pw`);
      fs.writeFileSync(pw, opts.http.password);
      t.args.push('--http', `127.0.0.1:${t.httpPort}`, '--user', opts.http.user, '--password-file', pw);
      t.httpUrl = `http://127.0.0.1:${t.httpPort}/`;
    }
    await t.spawn();
    const c = new RpcClient(t.socket);
    try {
      await c.call('bdev_lvol_create_lvstore', { bdev_name: `${opts.tag}-disk`, lvs_name: opts.lvsName, cluster_sz: opts.clusterSize ?? 1 << 20 });
    } finally {
      await c.close();
    }
    return t;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts the process again (same socket, port and file: the lvstore is loaded from the file). */
  async restart(): Promise<void> {
    await this.spawn();
  }

  /** SIGKILL, and waits for the process to be gone. */
  async kill(): Promise<void> {
    if (this.child === undefined) return;
    this.child.kill('SIGKILL');
    await this.exited;
    this.child = undefined;
  }

  /** SIGTERM (a clean stop), and waits; resolves with the exit code. */
  async stop(): Promise<number | null> {
    if (this.child === undefined) return null;
    this.child.kill('SIGTERM');
    const code = await this.exited;
    this.child = undefined;
    return code;
  }

  /** A caller on the Unix socket (close it when done). */
  client(): RpcClient {
    return new RpcClient(this.socket);
  }

  private async spawn(): Promise<void> {
    fs.rmSync(this.socket, { force: true });
    this.output = '';
    const child = spawn(process.execPath, this.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.stdout?.on('data', (d) => (this.output += d));
    child.stderr?.on('data', (d) => (this.output += d));
    this.exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
    const want = this.opts.http ? 'serving SPDK JSON-RPC over HTTP' : 'serving SPDK JSON-RPC on';
    const end = Date.now() + 15000;
    while (!this.output.includes(want)) {
      if (child.exitCode !== null || Date.now() > end) {
        child.kill('SIGKILL');
        throw new Error(`target ${this.opts.tag} did not start:\n${this.output}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/**
 * Passes calls through to `inner`, except that the first call of an armed method first runs the
 * armed action (kill a node; or never return, as a provisioner that died there).
 */
export class Tripwire implements RpcCaller {
  private armed: { method: string; action: () => Promise<void> } | undefined;
  /** Methods called, in order (since the last reset). */
  calls: string[] = [];

  constructor(private readonly inner: RpcCaller) {}

  arm(method: string, action: () => Promise<void>): void {
    this.armed = { method, action };
  }

  async call(method: string, params?: unknown): Promise<unknown> {
    this.calls.push(method);
    const a = this.armed;
    if (a !== undefined && a.method === method) {
      this.armed = undefined;
      await a.action();
    }
    return this.inner.call(method, params);
  }
}

/** A promise that never settles: a provisioner stopped at that step for good. */
export function never(): Promise<void> {
  return new Promise<void>(() => undefined);
}

/** Connects the test's NVMe/TCP host to an export's first address and identifies namespace `nsid`. */
export async function connectExport(info: VolumeExport, hostnqn?: string): Promise<NvmeTcpController> {
  const a = info.addresses[0];
  const c = await NvmeTcpController.connect({ host: a.traddr, port: Number(a.trsvcid), subnqn: info.nqn, hostnqn } as never);
  try {
    await c.identifyNamespace(info.nsid ?? 1);
  } catch (e) {
    await c.close();
    throw e;
  }
  return c;
}

export function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  fillPattern(b, seed);
  return b;
}
