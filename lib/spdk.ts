import { SpdkBuffer } from './buffer';
import { BdevHandle, QueueOptions } from './bdev/bdev';
import { IoQueue } from './bdev/queue';
import { BuiltinBdevBackend } from './bdev/backend';
import { chooseEngine, EngineChoice, EngineName, loadBuiltin } from './engine/load';
import type { BuiltinAddon, NativeEngine } from './engine/native';
import { SpdkError } from './errors';
import { Dispatcher } from './rpc/dispatcher';
import { RpcServer } from './rpc/server';
import { serveRpcHttp, RpcHttpEndpointOptions, RpcHttpServer } from './rpc/http';
import { registerCoreMethods } from './rpc/methods/core';
import { registerBdevMethods } from './rpc/methods/bdev';
import type { RpcMethods } from './rpc/types';
import { SubsystemRegistry, SpdkJsonConfig } from './config/subsystems';
import { applyConfig, readConfigFile } from './config/load';
import { bdevSubsystemConfig } from './rpc/methods/bdev-config';
import { registerLvolMethods } from './rpc/methods/lvol';
import { BuiltinLvolBackend } from './lvol/backend';
import { LvolApi } from './lvol';
import { registerNvmfMethods } from './rpc/methods/nvmf';
import { BuiltinNvmfBackend } from './nvmf/backend';
import { nvmfSubsystemConfig } from './config/nvmf-config';
import { NvmfApi } from './nvmf';
import { NvmeApi } from './nvme';

export interface SpdkOptions {
  /** 'auto' (default) picks libspdk when it is available, else builtin. */
  engine?: EngineChoice;
  /** CPU cores to run reactors on, one reactor per core (default [0]). */
  cores?: number[];
  /** Busy-poll instead of sleeping when idle (benchmarks). Default false. */
  polling?: boolean;
  /** Back large buffers with 2 MiB hugepages when the system has them. Default true. */
  hugepages?: boolean;
  /** Serve SPDK's JSON-RPC on this Unix socket (like SPDK's `-r`). */
  rpcSocket?: string;
  /**
   * An SPDK JSON config (like SPDK's `--json`): a file path or the parsed object. Applied before
   * start() resolves; if it fails, start() rejects and nothing it created is left.
   */
  config?: string | SpdkJsonConfig;
  /** Where config warnings go (default console.warn). */
  warn?: (line: string) => void;
}

/** Typed access to SPDK's JSON-RPC methods, served by this process's engine. */
export class RpcApi {
  /** @internal */
  constructor(private readonly dispatcher: Dispatcher) {}

  /**
   * Calls a JSON-RPC method by SPDK's name with SPDK's parameters; resolves with SPDK's result
   * or rejects with a JsonRpcError carrying SPDK's code and message.
   *
   * @example
   * await spdk.rpc.call('bdev_malloc_create', { name: 'Malloc0', num_blocks: 65536, block_size: 4096 });
   */
  call<M extends keyof RpcMethods>(method: M, ...params: RpcMethods[M]['params'] extends undefined ? [] : [RpcMethods[M]['params']]): Promise<RpcMethods[M]['result']>;
  call(method: string, params?: unknown): Promise<unknown>;
  call(method: string, params?: unknown): Promise<unknown> {
    return this.dispatcher.call(method, params);
  }
}

/** Opening bdevs for I/O. */
export class BdevApi {
  /** @internal */
  constructor(private readonly spdk: Spdk) {}

  /** Opens a bdev by name (or UUID) for I/O through a queue on reactor 0 (see QueueOptions). */
  open(name: string, opts: QueueOptions = {}): Promise<BdevHandle> {
    return this.spdk.openBdev(name, opts);
  }
}

/**
 * A running storage engine in this process.
 *
 * @example
 * const spdk = await Spdk.start({ engine: 'builtin', cores: [0] });
 * await spdk.rpc.call('bdev_malloc_create', { name: 'Malloc0', num_blocks: 65536, block_size: 4096 });
 * const bdev = await spdk.bdev.open('Malloc0');
 * const buf = spdk.allocBuffer(4096 * 8);
 * buf.bytes.fill(7);
 * await bdev.write(buf, { offsetBlocks: 0, numBlocks: 8 });
 * await spdk.stop();
 */
export class Spdk {
  /** The engine that runs: 'builtin' or 'libspdk'. */
  readonly engine: EngineName;
  /** Why that engine was chosen. */
  readonly engineReason: string;
  readonly cores: number[];
  readonly rpc: RpcApi;
  readonly bdev: BdevApi;
  /** Logical volumes: stores, volumes, snapshots, clones (on SPDK's bdev_lvol_* RPCs). */
  readonly lvol: LvolApi;
  /** The NVMe-oF target: transports, subsystems, namespaces, listeners, hosts (on SPDK's nvmf_* RPCs). */
  readonly nvmf: NvmfApi;
  /** The NVMe host: controllers, admin commands, I/O queue pairs (NVMe/TCP on the builtin engine). */
  readonly nvme: NvmeApi;
  /** @internal */
  readonly dispatcher: Dispatcher;
  private readonly addon: BuiltinAddon;
  private readonly native: NativeEngine;
  private readonly handles = new Set<BdevHandle>();
  private readonly openQueues = new Set<IoQueue>();
  private rpcServer: RpcServer | undefined;
  private readonly httpServers = new Set<RpcHttpServer>();
  private stopping: Promise<void> | undefined;
  private readonly subsystems = new SubsystemRegistry();

  private constructor(engine: EngineName, why: string, addon: BuiltinAddon, native: NativeEngine, cores: number[]) {
    this.engine = engine;
    this.engineReason = why;
    this.addon = addon;
    this.native = native;
    this.cores = cores;
    // Startup state until the config (if any) has run its startup-only methods, as in SPDK.
    this.dispatcher = new Dispatcher({ state: 'startup' });
    registerCoreMethods(this.dispatcher, { engine });
    const bdevs = new BuiltinBdevBackend(native);
    registerBdevMethods(this.dispatcher, bdevs);
    registerLvolMethods(this.dispatcher, new BuiltinLvolBackend(native), bdevs);
    const nvmf = registerNvmfMethods(this.dispatcher, new BuiltinNvmfBackend(native), bdevs, cores);
    this.subsystems.register('bdev', [], () => bdevSubsystemConfig(bdevs));
    this.subsystems.register('nvmf', ['bdev'], () => nvmfSubsystemConfig(nvmf));
    this.subsystems.registerMethods(this.dispatcher);
    this.rpc = new RpcApi(this.dispatcher);
    this.bdev = new BdevApi(this);
    this.lvol = new LvolApi(this.rpc);
    this.nvmf = new NvmfApi(this.rpc);
    this.nvme = new NvmeApi({
      addon,
      native,
      reactors: cores.length,
      allocBuffer: (n) => this.allocBuffer(n),
      assertRunning: (op) => this.assertRunning(op),
    });
  }

  /** Starts an engine with reactors on `cores`. */
  static async start(opts: SpdkOptions = {}): Promise<Spdk> {
    const cores = validateCores(opts.cores ?? [0]);
    const { engine, why } = chooseEngine(opts.engine ?? 'auto');
    if (engine !== 'builtin') {
      throw new SpdkError('the libspdk engine is not implemented yet', { code: 'ERR_ENGINE_UNAVAILABLE', errno: 19, op: 'spdk.start' });
    }
    const addon = loadBuiltin();
    const native = new addon.Engine();
    native.start({ cores, polling: opts.polling ?? false, hugepages: opts.hugepages ?? true });
    const spdk = new Spdk(engine, why, addon, native, cores);
    try {
      if (opts.config !== undefined) {
        const config = typeof opts.config === 'string' ? readConfigFile(opts.config) : opts.config;
        await applyConfig(spdk.dispatcher, config, { warn: opts.warn });
      } else {
        spdk.dispatcher.setState('runtime');
      }
      if (opts.rpcSocket) await spdk.serveRpc(opts.rpcSocket);
    } catch (e) {
      // Stopping the engine releases everything the config created: nothing is half-made.
      await spdk.stop();
      throw e;
    }
    return spdk;
  }

  /** True until stop() is called. */
  get running(): boolean {
    return this.stopping === undefined;
  }

  /** The Unix socket path SPDK's JSON-RPC is served on, if any. */
  get rpcSocket(): string | undefined {
    return this.rpcServer?.path;
  }

  /** Serves SPDK's JSON-RPC (SPDK's framing, so scripts/rpc.py works) on a Unix socket. */
  async serveRpc(path: string): Promise<void> {
    this.assertRunning('spdk.serveRpc');
    if (this.rpcServer) throw new SpdkError(`already serving JSON-RPC on ${this.rpcServer.path}`, { errno: 114, op: 'spdk.serveRpc' });
    const server = new RpcServer(this.dispatcher);
    await server.listen(path);
    this.rpcServer = server;
  }

  /**
   * Serves the same JSON-RPC over HTTP the way SPDK's `scripts/rpc_http_proxy.py` does (what
   * OpenStack Cinder and spdk-csi call): POST with Basic auth, HTTP 200 for every JSON-RPC
   * answer, optional TLS. Closed by stop().
   *
   * @example
   * const http = await spdk.serveRpcHttp({ listen: '127.0.0.1:8000', user: 'spdk', password: 'secret' });
   * console.log(http.url);
   */
  async serveRpcHttp(opts: RpcHttpEndpointOptions): Promise<RpcHttpServer> {
    this.assertRunning('spdk.serveRpcHttp');
    const server = await serveRpcHttp(this.dispatcher, opts);
    this.httpServers.add(server);
    return server;
  }

  /**
   * Engine memory for I/O, seen from JavaScript as `buf.bytes` without copies.
   * Page aligned; hugepage backed when `hugepages` is on and the system has free hugepages.
   */
  allocBuffer(length: number): SpdkBuffer {
    this.assertRunning('spdk.allocBuffer');
    if (!Number.isSafeInteger(length) || length < 1) throw SpdkError.invalidArg('spdk.allocBuffer', 'length must be a positive integer');
    return new SpdkBuffer(this.native, length);
  }

  /** @internal */
  async openBdev(name: string, opts: QueueOptions): Promise<BdevHandle> {
    const info = this.native.listBdevs().find((b) => b.name === name || b.uuid === name || b.aliases.includes(name));
    if (!info) throw SpdkError.fromErrno(19, 'bdev.open', `no bdev named '${name}'`);
    const queue = await this.openQueue(info.name, opts);
    const handle = new BdevHandle(info, queue, this, () => this.handles.delete(handle));
    this.handles.add(handle);
    return handle;
  }

  /** @internal */
  async openQueue(bdev: string, opts: QueueOptions): Promise<IoQueue> {
    this.assertRunning('bdev.open');
    const depth = opts.depth ?? 128;
    if (!Number.isSafeInteger(depth) || depth < 1 || depth > 65536) throw SpdkError.invalidArg('bdev.open', 'depth must be 1..65536');
    const r = opts.reactor ?? 0;
    let reactor: number;
    if (r === 'js') reactor = -1;
    else if (Number.isSafeInteger(r) && r >= 0 && r < this.cores.length) reactor = r;
    else throw SpdkError.invalidArg('bdev.open', `reactor must be 'js' or 0..${this.cores.length - 1}`);
    let queue: IoQueue | undefined;
    const nq = new this.addon.IoQueue(this.native, bdev, reactor, depth, () => queue?.poll());
    queue = new IoQueue(nq, this.addon.constants, depth, () => this.openQueues.delete(queue as IoQueue));
    this.openQueues.add(queue);
    await nq.open();
    return queue;
  }

  /**
   * The engine's configuration in SPDK's JSON config format (what SPDK's `rpc.py save_config`
   * writes, built from framework_get_subsystems and framework_get_config). Starting an engine
   * with it (`Spdk.start({ config })`, `spdk-node target --config`) recreates the same bdevs.
   */
  saveConfig(): SpdkJsonConfig {
    return this.subsystems.saveConfig();
  }

  /** Per-reactor counters (busy iterations, idle sleeps) for monitoring. */
  reactorStats(): ReturnType<NativeEngine['reactorStats']> {
    return this.native.reactorStats();
  }

  /** @internal The native engine (benchmarks). */
  get nativeEngine(): NativeEngine {
    return this.native;
  }

  /** Lets the process exit while the engine runs (like server.unref()). */
  unref(): this {
    this.native.unref();
    return this;
  }

  ref(): this {
    this.native.ref();
    return this;
  }

  /**
   * Stops serving RPC, waits for in-flight I/O, closes every queue, joins every reactor thread
   * and frees every buffer. Safe to call twice.
   */
  stop(): Promise<void> {
    if (!this.stopping) this.stopping = this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    await Promise.all([this.rpcServer?.close(), ...[...this.httpServers].map((s) => s.close())]);
    this.rpcServer = undefined;
    this.httpServers.clear();
    await this.nvme.detachAll();
    await Promise.all([...this.handles].map((h) => h.close()));
    await Promise.all([...this.openQueues].map((q) => q.close()));
    await this.native.stop();
  }

  private assertRunning(op: string): void {
    if (this.stopping) throw new SpdkError('the engine is stopped', { code: 'ESHUTDOWN', errno: 108, op });
  }
}

function validateCores(cores: number[]): number[] {
  if (!Array.isArray(cores) || cores.length === 0) throw SpdkError.invalidArg('spdk.start', 'cores must be a non-empty array of CPU numbers');
  const seen = new Set<number>();
  for (const c of cores) {
    if (!Number.isSafeInteger(c) || c < 0 || c >= 1024) throw SpdkError.invalidArg('spdk.start', `invalid core ${String(c)}`);
    if (seen.has(c)) throw SpdkError.invalidArg('spdk.start', `core ${c} listed twice`);
    seen.add(c);
  }
  return [...cores];
}
