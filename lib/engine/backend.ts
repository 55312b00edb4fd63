import type { SpdkJsonConfig } from '../config/subsystems';
import type { RpcTarget } from '../rpc/dispatcher';
import type { EngineName } from './load';
import type { NativeBufferOwner, NativeConstants, NativeIoQueue, NvmeAddon } from './native';
import type { BdevInfo } from './types';

/**
 * What the Spdk class needs from an engine (lib/engine/builtin.ts, lib/engine/libspdk.ts). Both
 * engines serve SPDK's JSON-RPC methods: the builtin one through its Dispatcher, the libspdk one
 * by forwarding to SPDK's own server. Everything the Spdk class builds on RPC (spdk.rpc,
 * spdk.lvol, spdk.nvmf, the HTTP endpoint, provisioning) is therefore shared.
 */
export interface EngineBackend {
  readonly name: EngineName;
  /** Where spdk.rpc calls, the HTTP endpoint and (builtin) the Unix-socket server send requests. */
  readonly rpc: RpcTarget;
  /** Engine memory for spdk.allocBuffer(). */
  readonly buffers: NativeBufferOwner;
  /**
   * spdk.nvme's native side: the addon's NvmeController/NvmeQpair classes and the object a
   * controller is created with (builtin: its NVMe/TCP host on the Engine; libspdk: SPDK's NVMe
   * driver, with the App whose buffers are the payloads).
   */
  readonly nvme: { addon: NvmeAddon; owner: object; anyTransport: boolean };
  /** The Unix socket SPDK's JSON-RPC is served on, if any. */
  readonly rpcSocket: string | undefined;
  /** A bdev by name, alias or UUID (undefined: none). */
  findBdev(name: string): Promise<BdevInfo | undefined>;
  /**
   * The native half of a bdev I/O queue (lib/bdev/queue.ts) on reactor `reactor` (an index into
   * the engine's cores; -1: the JS thread, where the engine can), not opened yet.
   */
  createIoQueue(bdev: string, reactor: number, depth: number, onComplete: () => void): { queue: NativeIoQueue; constants: NativeConstants };
  /** Serves the JSON-RPC on a Unix socket (rejects where the engine cannot). */
  serveRpc(path: string): Promise<void>;
  /** Stops serving and taking JSON-RPC calls (first step of stop()). */
  closeRpc(): Promise<void>;
  /** Why the engine is no longer usable although stop() was not called (SPDK exited), else undefined. */
  readonly failure: string | undefined;
  /** The configuration in SPDK's JSON config format, synchronously (engines that can). */
  saveConfig(): SpdkJsonConfig;
  ref(): void;
  unref(): void;
  /** Stops the engine; the Spdk class closed its HTTP endpoints, queues and controllers first. */
  stop(): Promise<void>;
}
