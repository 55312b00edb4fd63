import { SpdkBuffer } from './buffer';
import { BdevHandle, QueueOptions } from './bdev/bdev';
import { IoQueue } from './bdev/queue';
import type { EngineBackend } from './engine/backend';
import { BuiltinBackend } from './engine/builtin';
import { LibspdkBackend, SpdkLogLevel, unsupported } from './engine/libspdk';
import { chooseEngine, EngineChoice, EngineName } from './engine/load';
import type { NativeEngine } from './engine/native';
import { SpdkError } from './errors';
import type { Dispatcher, RpcTarget } from './rpc/dispatcher';
import { serveRpcHttp, RpcHttpEndpointOptions, RpcHttpServer } from './rpc/http';
import type { RpcMethods } from './rpc/types';
import type { SpdkJsonConfig } from './config/subsystems';
import { readConfigFile, validateConfig } from './config/load';
import { LvolApi } from './lvol';
import { NvmfApi } from './nvmf';
import { NvmeApi } from './nvme';

export interface SpdkOptions {
  /** 'auto' (default) picks libspdk when it is available, else builtin. */
  engine?: EngineChoice;
  /** CPU cores to run reactors on, one reactor per core (default [0]). */
  cores?: number[];
  /** builtin: busy-poll instead of sleeping when idle (benchmarks). Default false. (libspdk reactors always poll; see interruptMode.) */
  polling?: boolean;
  /**
   * Use 2 MiB hugepages when the system has free ones. Default true. builtin: for large buffers;
   * libspdk: `false` means SPDK's --no-huge.
   */
  hugepages?: boolean;
  /**
   * Serve SPDK's JSON-RPC on this Unix socket (like SPDK's `-r`). libspdk: SPDK's own server
   * listens there; without it, on a private socket in a per-process temporary directory.
   */
  rpcSocket?: string;
  /** libspdk: SPDK's memory in MiB (`-s`). Default 1024 with --no-huge, else DPDK's (grows as needed). */
  memoryMiB?: number;
  /**
   * libspdk: SPDK's --no-huge (ordinary memory; not usable by PCIe devices). Default: used when the
   * system has no free hugepages, with one line through `warn` saying so.
   */
  noHuge?: boolean;
  /** libspdk: let DPDK probe and claim PCI devices (NVMe SSDs). Default false (`--no-pci`). */
  pci?: boolean;
  /** libspdk: SPDK log lines printed to stderr at this level and above. Default 'warning'. */
  logLevel?: SpdkLogLevel;
  /**
   * libspdk: SPDK's interrupt mode (reactors sleep when idle). Default false. SPDK v25.09 built
   * with the io_uring socket module cannot create a TCP transport in this mode.
   */
  interruptMode?: boolean;
  /**
   * An SPDK JSON config (like SPDK's `--json`): a file path or the parsed object. Applied before
   * start() resolves; if it fails, start() rejects and nothing it created is left.
   */
  config?: string | SpdkJsonConfig;
  /** Where config and engine warnings go (default console.warn). */
  warn?: (line: string) => void;
}

/** Typed access to SPDK's JSON-RPC methods, served by this process's engine. */
export class RpcApi {
  /** @internal */
  constructor(private readonly target: RpcTarget) {}

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
    return this.target.call(method, params);
  }

  /**
   * The configuration in SPDK's JSON config format, read the way SPDK's `rpc.py save_config`
   * reads it (framework_get_subsystems, then framework_get_config of each). Works on both
   * engines; starting an engine with it recreates the same bdevs, lvols and exports.
   *
   * @example
   * fs.writeFileSync('config.json', JSON.stringify(await spdk.rpc.saveConfig(), null, 2));
   */
  async saveConfig(): Promise<SpdkJsonConfig> {
    const list = (await this.call('framework_get_subsystems')) as Array<{ subsystem: string }>;
    const subsystems: SpdkJsonConfig['subsystems'] = [];
    for (const s of list) {
      const config = (await this.call('framework_get_config', { name: s.subsystem })) as SpdkJsonConfig['subsystems'][number]['config'];
      subsystems.push({ subsystem: s.subsystem, config });
    }
    return { subsystems };
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
  /** Bdev I/O: handles with promise reads and writes, and queues for the throughput path (both engines). */
  readonly bdev: BdevApi;
  /** Logical volumes: stores, volumes, snapshots, clones (on SPDK's bdev_lvol_* RPCs). */
  readonly lvol: LvolApi;
  /** The NVMe-oF target: transports, subsystems, namespaces, listeners, hosts (on SPDK's nvmf_* RPCs). */
  readonly nvmf: NvmfApi;
  /** The NVMe host: controllers, admin commands, I/O queue pairs (NVMe/TCP on the builtin engine). */
  readonly nvme: NvmeApi;
  private readonly backend: EngineBackend;
  /** The builtin engine's backend; undefined on libspdk. */
  private readonly builtin: BuiltinBackend | undefined;
  private readonly handles = new Set<BdevHandle>();
  private readonly openQueues = new Set<IoQueue>();
  private readonly httpServers = new Set<RpcHttpServer>();
  private stopping: Promise<void> | undefined;

  private constructor(engine: EngineName, why: string, backend: EngineBackend, cores: number[]) {
    this.engine = engine;
    this.engineReason = why;
    this.backend = backend;
    this.builtin = backend instanceof BuiltinBackend ? backend : undefined;
    this.cores = cores;
    this.rpc = new RpcApi(backend.rpc);
    this.bdev = new BdevApi(this);
    this.lvol = new LvolApi(this.rpc);
    this.nvmf = new NvmfApi(this.rpc);
    this.nvme = new NvmeApi({
      native: backend.nvme,
      reactors: cores.length,
      allocBuffer: (n) => this.allocBuffer(n),
      assertRunning: (op) => this.assertRunning(op),
    });
  }

  /**
   * Starts an engine with reactors on `cores`. With `engine: 'auto'` (the default) that is
   * libspdk when its addon was built, loads and SPDK's environment initialises, else builtin;
   * `engineReason` says which and why.
   */
  static async start(opts: SpdkOptions = {}): Promise<Spdk> {
    const cores = validateCores(opts.cores ?? [0]);
    const warn = opts.warn ?? ((l: string) => console.warn(l));
    const config = opts.config === undefined ? undefined : typeof opts.config === 'string' ? readConfigFile(opts.config) : opts.config;
    const choice = opts.engine ?? 'auto';
    let { engine, why } = chooseEngine(choice);
    let backend: EngineBackend | undefined;
    if (engine === 'libspdk') {
      try {
        backend = await LibspdkBackend.start({
          cores,
          memoryMiB: opts.memoryMiB,
          noHuge: opts.noHuge,
          hugepages: opts.hugepages ?? true,
          pci: opts.pci ?? false,
          rpcSocket: opts.rpcSocket,
          config: config === undefined ? undefined : validateConfig(config),
          logLevel: opts.logLevel ?? 'warning',
          interruptMode: opts.interruptMode ?? false,
          warn,
        });
      } catch (e) {
        // 'auto' falls back when SPDK cannot run here at all, not when it ran and refused the
        // config or the socket (the builtin engine would then quietly differ).
        const code = (e as SpdkError).code;
        const fallBack = choice === 'auto' && ['ERR_ADDON_LOAD', 'ERR_SPDK_ENV', 'ERR_SPDK_ENV_ONCE'].includes(code);
        if (!fallBack) throw e;
        engine = 'builtin';
        why = `auto: libspdk did not start (${(e as Error).message.split('\n')[0]})`;
        warn(`spdk-node: ${why}; using the builtin engine`);
      }
    }
    if (backend === undefined) {
      backend = await BuiltinBackend.start({ cores, polling: opts.polling ?? false, hugepages: opts.hugepages ?? true, config, warn: opts.warn });
    }
    const spdk = new Spdk(engine, why, backend, cores);
    if (opts.rpcSocket && engine === 'builtin') {
      try {
        await spdk.serveRpc(opts.rpcSocket);
      } catch (e) {
        await spdk.stop();
        throw e;
      }
    }
    return spdk;
  }

  /** True until stop() is called (and, on libspdk, while SPDK runs). */
  get running(): boolean {
    return this.stopping === undefined && this.backend.failure === undefined;
  }

  /** The Unix socket path SPDK's JSON-RPC is served on, if any (libspdk: always; maybe a private one). */
  get rpcSocket(): string | undefined {
    return this.backend.rpcSocket;
  }

  /** @internal The builtin engine's method table (tests register probes on it). */
  get dispatcher(): Dispatcher {
    return this.requireBuiltin('spdk.dispatcher', 'the methods are SPDK\'s own').dispatcher;
  }

  /**
   * Serves SPDK's JSON-RPC (SPDK's framing, so scripts/rpc.py works) on a Unix socket. builtin
   * only: SPDK serves its own (the `rpcSocket` start option).
   */
  async serveRpc(path: string): Promise<void> {
    this.assertRunning('spdk.serveRpc');
    await this.backend.serveRpc(path);
  }

  /**
   * Serves the same JSON-RPC over HTTP the way SPDK's `scripts/rpc_http_proxy.py` does (what
   * OpenStack Cinder and spdk-csi call): POST with Basic auth, HTTP 200 for every JSON-RPC
   * answer, optional TLS, per-credential views of the NVMe-oF subsystems. Closed by stop().
   * On libspdk the calls go to SPDK's own server.
   *
   * @example
   * const http = await spdk.serveRpcHttp({ listen: '127.0.0.1:8000', user: 'spdk', password: 'secret' });
   * console.log(http.url);
   */
  async serveRpcHttp(opts: RpcHttpEndpointOptions): Promise<RpcHttpServer> {
    this.assertRunning('spdk.serveRpcHttp');
    const server = await serveRpcHttp(this.backend.rpc, opts);
    this.httpServers.add(server);
    return server;
  }

  /**
   * Engine memory for I/O, seen from JavaScript as `buf.bytes` without copies. Page aligned.
   * builtin: hugepage backed when `hugepages` is on and the system has free hugepages. libspdk:
   * SPDK DMA memory (spdk_zmalloc), zeroed.
   */
  allocBuffer(length: number): SpdkBuffer {
    this.assertRunning('spdk.allocBuffer');
    if (!Number.isSafeInteger(length) || length < 1) throw SpdkError.invalidArg('spdk.allocBuffer', 'length must be a positive integer');
    return new SpdkBuffer(this.backend.buffers, length);
  }

  /** @internal */
  async openBdev(name: string, opts: QueueOptions): Promise<BdevHandle> {
    this.assertRunning('bdev.open');
    const info = await this.backend.findBdev(name);
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
    const { queue: nq, constants } = this.backend.createIoQueue(bdev, reactor, depth, () => queue?.poll());
    queue = new IoQueue(nq, constants, depth, () => this.openQueues.delete(queue as IoQueue));
    this.openQueues.add(queue);
    await nq.open();
    return queue;
  }

  /**
   * The engine's configuration in SPDK's JSON config format (what SPDK's `rpc.py save_config`
   * writes, built from framework_get_subsystems and framework_get_config). Starting an engine
   * with it (`Spdk.start({ config })`, `spdk-node target --config`) recreates the same bdevs.
   * builtin only (it is synchronous); `await spdk.rpc.saveConfig()` works on both engines.
   */
  saveConfig(): SpdkJsonConfig {
    return this.backend.saveConfig();
  }

  /** Per-reactor counters (busy iterations, idle sleeps) for monitoring (builtin). */
  reactorStats(): ReturnType<NativeEngine['reactorStats']> {
    return this.requireBuiltin('spdk.reactorStats', "use SPDK's framework_get_reactors RPC").native.reactorStats();
  }

  /** @internal The native engine (benchmarks, builtin). */
  get nativeEngine(): NativeEngine {
    return this.requireBuiltin('spdk.nativeEngine', 'it is the builtin addon').native;
  }

  /** Lets the process exit while the engine runs (like server.unref()). */
  unref(): this {
    this.backend.unref();
    return this;
  }

  ref(): this {
    this.backend.ref();
    return this;
  }

  /**
   * Stops serving RPC, waits for in-flight I/O, closes every queue, joins every reactor thread
   * and frees every buffer. Safe to call twice. On libspdk: SPDK's subsystems finish, its
   * thread is joined and spdk_app_fini has run; SPDK cannot be started again in this process.
   */
  stop(): Promise<void> {
    if (!this.stopping) this.stopping = this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    await Promise.all([this.backend.closeRpc(), ...[...this.httpServers].map((s) => s.close())]);
    this.httpServers.clear();
    await this.nvme.detachAll();
    await Promise.all([...this.handles].map((h) => h.close()));
    await Promise.all([...this.openQueues].map((q) => q.close()));
    await this.backend.stop();
  }

  private assertRunning(op: string): void {
    if (this.stopping) throw new SpdkError('the engine is stopped', { code: 'ESHUTDOWN', errno: 108, op });
    const failure = this.backend.failure;
    if (failure !== undefined) throw new SpdkError(failure, { code: 'ESHUTDOWN', errno: 108, op });
  }

  private requireBuiltin(op: string, why: string): BuiltinBackend {
    if (this.builtin === undefined) throw unsupported(op, why);
    return this.builtin;
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
