import { BuiltinBdevBackend } from '../bdev/backend';
import { applyConfig } from '../config/load';
import { nvmfSubsystemConfig } from '../config/nvmf-config';
import { SpdkJsonConfig, SubsystemRegistry } from '../config/subsystems';
import { SpdkError } from '../errors';
import { BuiltinLvolBackend } from '../lvol/backend';
import { BuiltinNvmfBackend } from '../nvmf/backend';
import { Dispatcher } from '../rpc/dispatcher';
import { bdevSubsystemConfig } from '../rpc/methods/bdev-config';
import { registerBdevMethods } from '../rpc/methods/bdev';
import { registerCoreMethods } from '../rpc/methods/core';
import { registerLvolMethods } from '../rpc/methods/lvol';
import { registerNvmfMethods } from '../rpc/methods/nvmf';
import { RpcServer } from '../rpc/server';
import type { EngineBackend } from './backend';
import { loadBuiltin } from './load';
import type { BuiltinAddon, NativeConstants, NativeEngine, NativeIoQueue } from './native';
import type { BdevInfo } from './types';

export interface BuiltinStartOptions {
  cores: number[];
  polling: boolean;
  hugepages: boolean;
  /** Parsed SPDK JSON config, applied through the dispatcher before start resolves. */
  config?: SpdkJsonConfig;
  warn?: (line: string) => void;
}

/**
 * The builtin engine: the project's own reactors, bdevs, lvols and NVMe-oF target in its addon,
 * and SPDK's JSON-RPC methods implemented in TypeScript over it (the Dispatcher).
 */
export class BuiltinBackend implements EngineBackend {
  readonly name = 'builtin' as const;
  readonly dispatcher: Dispatcher;
  readonly failure = undefined;
  private readonly subsystems = new SubsystemRegistry();
  private rpcServer: RpcServer | undefined;

  private constructor(
    readonly addon: BuiltinAddon,
    readonly native: NativeEngine,
    cores: number[],
  ) {
    // Startup state until the config (if any) has run its startup-only methods, as in SPDK.
    this.dispatcher = new Dispatcher({ state: 'startup' });
    registerCoreMethods(this.dispatcher, { engine: 'builtin' });
    const bdevs = new BuiltinBdevBackend(native);
    registerBdevMethods(this.dispatcher, bdevs);
    registerLvolMethods(this.dispatcher, new BuiltinLvolBackend(native), bdevs);
    const nvmf = registerNvmfMethods(this.dispatcher, new BuiltinNvmfBackend(native), bdevs, cores);
    this.subsystems.register('bdev', [], () => bdevSubsystemConfig(bdevs));
    this.subsystems.register('nvmf', ['bdev'], () => nvmfSubsystemConfig(nvmf));
    this.subsystems.registerMethods(this.dispatcher);
  }

  /** Starts the reactors and applies the config; on a config failure nothing is left running. */
  static async start(opts: BuiltinStartOptions): Promise<BuiltinBackend> {
    const addon = loadBuiltin();
    const native = new addon.Engine();
    native.start({ cores: opts.cores, polling: opts.polling, hugepages: opts.hugepages });
    const backend = new BuiltinBackend(addon, native, opts.cores);
    try {
      if (opts.config !== undefined) {
        await applyConfig(backend.dispatcher, opts.config, { warn: opts.warn });
      } else {
        backend.dispatcher.setState('runtime');
      }
    } catch (e) {
      // Stopping the engine releases everything the config created: nothing is half-made.
      await backend.stop();
      throw e;
    }
    return backend;
  }

  get rpc(): Dispatcher {
    return this.dispatcher;
  }

  get buffers(): NativeEngine {
    return this.native;
  }

  get nvme(): { addon: BuiltinAddon; owner: NativeEngine; anyTransport: boolean } {
    return { addon: this.addon, owner: this.native, anyTransport: false };
  }

  get rpcSocket(): string | undefined {
    return this.rpcServer?.path;
  }

  async findBdev(name: string): Promise<BdevInfo | undefined> {
    return this.native.listBdevs().find((b) => b.name === name || b.uuid === name || b.aliases.includes(name));
  }

  createIoQueue(bdev: string, reactor: number, depth: number, onComplete: () => void): { queue: NativeIoQueue; constants: NativeConstants } {
    return { queue: new this.addon.IoQueue(this.native, bdev, reactor, depth, onComplete), constants: this.addon.constants };
  }

  async serveRpc(path: string): Promise<void> {
    if (this.rpcServer) throw new SpdkError(`already serving JSON-RPC on ${this.rpcServer.path}`, { errno: 114, op: 'spdk.serveRpc' });
    const server = new RpcServer(this.dispatcher);
    await server.listen(path);
    this.rpcServer = server;
  }

  saveConfig(): SpdkJsonConfig {
    return this.subsystems.saveConfig();
  }

  ref(): void {
    this.native.ref();
  }

  unref(): void {
    this.native.unref();
  }

  async closeRpc(): Promise<void> {
    await this.rpcServer?.close();
    this.rpcServer = undefined;
  }

  async stop(): Promise<void> {
    await this.closeRpc();
    await this.native.stop();
  }
}
