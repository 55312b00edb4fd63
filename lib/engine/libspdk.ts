import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { SpdkJsonConfig } from '../config/subsystems';
import { SpdkError } from '../errors';
import { RpcClient } from '../rpc/client';
import { RpcForwarder } from '../rpc/forwarder';
import type { EngineBackend } from './backend';
import { loadLibspdk } from './load';
import type { LibspdkAddon, NativeApp, NativeConstants, NativeIoQueue } from './native';
import type { BdevInfo } from './types';

/** How much SPDK logs to stderr (SPDK's --logflag levels / spdk_log_set_print_level). */
export type SpdkLogLevel = 'none' | 'error' | 'warning' | 'notice' | 'info' | 'debug';

const PRINT_LEVELS: Record<SpdkLogLevel, number> = { none: -1, error: 0, warning: 1, notice: 2, info: 3, debug: 4 };

/** Default memory with --no-huge (SPDK's apps are usually run with `--no-huge -s 1024`). */
export const DEFAULT_NO_HUGE_MIB = 1024;

/** How long process exit waits for SPDK to stop. */
const EXIT_STOP_MS = 10_000;

export interface LibspdkStartOptions {
  cores: number[];
  /** SPDK's -s (MiB). Default: 1024 with --no-huge; DPDK's own (grows as needed) with hugepages. */
  memoryMiB?: number;
  /** SPDK's --no-huge. Default: hugepages when the system has free ones (and `hugepages` is not false). */
  noHuge?: boolean;
  hugepages: boolean;
  /** Let DPDK probe PCI devices (SPDK's default; spdk-node's default is --no-pci). */
  pci: boolean;
  rpcSocket?: string;
  config?: SpdkJsonConfig;
  logLevel: SpdkLogLevel;
  interruptMode: boolean;
  warn: (line: string) => void;
}

/** Free 2 MiB hugepages and whether hugetlbfs is mounted (what DPDK needs to use them). */
export function hugepageState(): { free: number; mounted: boolean } {
  let free = 0;
  let mounted = false;
  try {
    free = Number(/^HugePages_Free:\s+(\d+)/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0);
    mounted = / hugetlbfs /.test(fs.readFileSync('/proc/mounts', 'utf8'));
  } catch {
    // not Linux, or /proc unreadable: no hugepages
  }
  return { free, mounted };
}

/** SPDK's reactor mask for a core list, e.g. [0, 1] -> "[0,1]". */
export function reactorMask(cores: number[]): string {
  return `[${cores.join(',')}]`;
}

/**
 * The libspdk engine: the installed SPDK's application framework (spdk_app_start) on a native
 * thread of this process, serving SPDK's own JSON-RPC on a Unix socket; spdk.rpc and the HTTP
 * endpoint forward to it (RpcForwarder). See docs/libspdk.md.
 */
export class LibspdkBackend implements EngineBackend {
  readonly name = 'libspdk' as const;
  private exitReason: string | undefined;
  private readonly exitHook = (): void => {
    // process.exit() or the end of the loop with SPDK running: stop it before exit() runs
    // DPDK's destructors under running reactors.
    if (this.app.stopSync(EXIT_STOP_MS)) this.cleanup();
  };

  private constructor(
    private readonly addon: LibspdkAddon,
    private readonly cores: number[],
    private readonly app: NativeApp,
    readonly rpc: RpcForwarder,
    readonly rpcSocket: string,
    private readonly privateDir: string | undefined,
    private readonly warn: (line: string) => void,
  ) {}

  /**
   * Starts SPDK. Rejects with an SpdkError: ERR_ADDON_LOAD (the addon or an SPDK/DPDK library
   * does not load), ERR_SPDK_ENV_ONCE (SPDK already ran in this process), ERR_SPDK_ENV (DPDK's
   * environment did not come up), ERR_SPDK_START (a later step failed: the config, the socket).
   * Nothing is left running after a rejection.
   */
  static async start(opts: LibspdkStartOptions): Promise<LibspdkBackend> {
    const addon = loadLibspdk();
    const mem = memoryPlan(opts);
    let privateDir: string | undefined;
    let socket = opts.rpcSocket;
    if (socket === undefined) {
      // spdk.rpc needs SPDK's server even when no socket was asked for: a private one.
      privateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'spdk-node-'));
      socket = path.join(privateDir, 'spdk.sock');
    }
    sweepDpdkRuntimeDirs();
    const app = new addon.App();
    let backend: LibspdkBackend | undefined;
    try {
      await app.start(
        {
          reactorMask: reactorMask(opts.cores),
          memSizeMiB: mem.memSizeMiB,
          noHuge: mem.noHuge,
          noPci: !opts.pci,
          rpcAddr: socket,
          json: opts.config === undefined ? '' : JSON.stringify(opts.config),
          printLevel: PRINT_LEVELS[opts.logLevel],
          interruptMode: opts.interruptMode,
        },
        (rc, errors) => backend?.exitedByItself(rc, errors),
      );
    } catch (e) {
      if (privateDir) fs.rmSync(privateDir, { recursive: true, force: true });
      removeDpdkRuntimeDir(process.pid);
      throw e;
    }
    // The warning only once SPDK runs: a failed start says why in its error instead.
    if (mem.note) opts.warn(mem.note);
    const forwarder = new RpcForwarder(new RpcClient(socket, { timeoutMs: 0 }));
    backend = new LibspdkBackend(addon, opts.cores, app, forwarder, socket, privateDir, opts.warn);
    process.on('exit', backend.exitHook);
    return backend;
  }

  get buffers(): NativeApp {
    return this.app;
  }

  /** SPDK's NVMe driver, polled from the JS thread (native/libspdk/nvme/); any trtype SPDK knows. */
  get nvme(): { addon: LibspdkAddon; owner: NativeApp; anyTransport: boolean } {
    return { addon: this.addon, owner: this.app, anyTransport: true };
  }

  get failure(): string | undefined {
    return this.exitReason;
  }

  async findBdev(name: string): Promise<BdevInfo | undefined> {
    let list: unknown;
    try {
      list = await this.rpc.call('bdev_get_bdevs', { name });
    } catch (e) {
      if ((e as { code?: number }).code === -19) return undefined; // SPDK: no such device
      throw e;
    }
    return Array.isArray(list) && list.length > 0 ? bdevInfoFromSpdk(list[0] as SpdkBdevJson) : undefined;
  }

  createIoQueue(bdev: string, reactor: number, depth: number, onComplete: () => void): { queue: NativeIoQueue; constants: NativeConstants } {
    // SPDK's bdev layer runs on SPDK threads: a queue always lives on a reactor.
    if (reactor < 0) throw unsupported('bdev.open', "reactor 'js' (SPDK's bdevs are driven by SPDK threads): give a reactor index");
    return { queue: new this.addon.IoQueue(this.app, bdev, this.cores[reactor], depth, onComplete), constants: this.addon.constants };
  }

  async serveRpc(_path: string): Promise<void> {
    throw new SpdkError(`SPDK serves JSON-RPC itself, on ${this.rpcSocket} (choose the path with the rpcSocket start option)`, {
      errno: 114,
      op: 'spdk.serveRpc',
    });
  }

  saveConfig(): SpdkJsonConfig {
    throw unsupported('spdk.saveConfig', 'the configuration lives in SPDK: use `await spdk.rpc.saveConfig()`');
  }

  ref(): void {
    this.app.ref();
  }

  unref(): void {
    this.app.unref();
  }

  async closeRpc(): Promise<void> {
    await this.rpc.close();
  }

  async stop(): Promise<void> {
    await this.closeRpc();
    await this.app.stop();
    this.cleanup();
  }

  private exitedByItself(rc: number, errors: string): void {
    this.exitReason = `SPDK stopped by itself (spdk_app_start returned ${rc})${errors ? `: ${errors.split('\n').pop()}` : ''}`;
    this.warn(`spdk-node: ${this.exitReason}`);
    void this.rpc.close();
    this.cleanup();
  }

  private cleanup(): void {
    process.off('exit', this.exitHook);
    if (this.privateDir) fs.rmSync(this.privateDir, { recursive: true, force: true });
    removeDpdkRuntimeDir(process.pid);
  }
}

/**
 * DPDK's runtime directory of an SPDK app started with a private file prefix (`spdk_pid<pid>`,
 * as this engine starts it): /var/run/dpdk/<prefix> as root, else under XDG_RUNTIME_DIR or /tmp.
 * DPDK leaves it behind when the process ends.
 */
function dpdkRuntimeBase(): string {
  if (process.getuid?.() === 0) return '/var/run/dpdk';
  return path.join(process.env.XDG_RUNTIME_DIR ?? '/tmp', 'dpdk');
}

function removeDpdkRuntimeDir(pid: number): void {
  try {
    fs.rmSync(path.join(dpdkRuntimeBase(), `spdk_pid${pid}`), { recursive: true, force: true });
  } catch {
    // not ours to insist on
  }
}

/** Removes the runtime directories of SPDK apps (`spdk_pid<pid>`) whose process is gone (killed ones leave theirs). */
function sweepDpdkRuntimeDirs(): void {
  let names: string[];
  try {
    names = fs.readdirSync(dpdkRuntimeBase());
  } catch {
    return;
  }
  for (const name of names) {
    const m = /^spdk_pid(\d+)$/.exec(name);
    if (!m || Number(m[1]) === process.pid) continue;
    try {
      process.kill(Number(m[1]), 0);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ESRCH') removeDpdkRuntimeDir(Number(m[1]));
    }
  }
}

/** An SpdkError for a feature the libspdk engine does not have yet. */
export function unsupported(op: string, what: string): SpdkError {
  return new SpdkError(`${op} is not available on the libspdk engine yet: ${what}`, { code: 'ERR_ENGINE_UNSUPPORTED', errno: 95, op });
}

/** --no-huge or not, and -s, with the line explaining a fall-back to --no-huge. */
function memoryPlan(opts: LibspdkStartOptions): { noHuge: boolean; memSizeMiB: number; note?: string } {
  const noHugeMem = opts.memoryMiB ?? DEFAULT_NO_HUGE_MIB;
  if (opts.noHuge === true || !opts.hugepages) return { noHuge: true, memSizeMiB: noHugeMem };
  if (opts.noHuge === false) return { noHuge: false, memSizeMiB: opts.memoryMiB ?? -1 };
  const h = hugepageState();
  if (h.free > 0 && h.mounted) return { noHuge: false, memSizeMiB: opts.memoryMiB ?? -1 };
  const why = h.free === 0 ? 'no free hugepages (HugePages_Free is 0 in /proc/meminfo)' : 'no hugetlbfs mounted';
  return {
    noHuge: true,
    memSizeMiB: noHugeMem,
    note:
      `spdk-node: ${why}: SPDK runs with --no-huge and ${noHugeMem} MiB of ordinary memory ` +
      '(fine for NVMe/TCP and malloc bdevs; PCIe NVMe devices need hugepages, reserve them with: spdk-node setup --hugepages 1024)',
  };
}

/** The parts of SPDK's bdev_get_bdevs entry a BdevInfo needs. */
interface SpdkBdevJson {
  name: string;
  aliases?: string[];
  product_name?: string;
  block_size: number;
  num_blocks: number;
  uuid?: string;
  claimed?: boolean;
  claim_type?: string;
  supported_io_types?: Record<string, boolean>;
  driver_specific?: Record<string, unknown>;
}

function bdevInfoFromSpdk(j: SpdkBdevJson): BdevInfo {
  const io = j.supported_io_types ?? {};
  const ds = j.driver_specific ?? {};
  const driver = Object.keys(ds)[0] ?? '';
  const lvol = ds.lvol as { read_only?: boolean } | undefined;
  return {
    name: j.name,
    aliases: j.aliases ?? [],
    productName: j.product_name ?? '',
    blockSize: j.block_size,
    numBlocks: j.num_blocks,
    uuid: j.uuid ?? '',
    driver,
    requiredAlignment: 1,
    readOnly: lvol?.read_only === true,
    claimed: j.claimed === true,
    ...(j.claim_type !== undefined ? { claimType: j.claim_type } : {}),
    ioTypes: { read: io.read === true, write: io.write === true, flush: io.flush === true, unmap: io.unmap === true, write_zeroes: io.write_zeroes === true },
    driverSpecific: (ds[driver] as Record<string, unknown>) ?? {},
  };
}
