/**
 * One fixture for the suites that run against both engines (issue 9): `forEachEngine` declares a
 * suite once per engine, `startTarget` starts a target on one, and `useTarget` gives a describe
 * block a target with the right lifetime.
 *
 * - builtin: `Spdk.start({ engine: 'builtin' })` in this process, serving our RPC server on a
 *   unique Unix socket; a fresh one per test (as these suites always did).
 * - libspdk: SPDK v25.09 in a child process (`SpdkChild`, test/helpers/libspdk-child.ts), because
 *   DPDK's environment starts once per process; SPDK's own JSON-RPC server on a unique Unix socket.
 *   Started with the options test/libspdk-engine.test.ts uses (one core, `noHuge`, SPDK's default
 *   1 GiB of ordinary memory). A child start is ~0.5 s, so `useTarget` shares one child per
 *   describe block and resets it through RPC after every test (nvmf subsystems, lvstores, bdevs),
 *   checking that the reset left exactly the state of a fresh start. What RPC cannot undo (an NVMe-oF
 *   transport: SPDK has no RPC to delete one; a deleted discovery subsystem) gets a new child before
 *   the next test. Every child is stopped, or killed by pid, in `after`/`afterEach` (SPDK's reactor
 *   polls its core at 100 %), and killed at process exit if anything was missed.
 *
 * Where SPDK is not installed (or the libspdk addon not built), the libspdk suites are skipped with
 * one line (`requireLibspdk`).
 */
import * as fs from 'node:fs';
import { Spdk } from '../../lib';
import type { SpdkJsonConfig } from '../../lib/config/subsystems';
import type { RpcCaller } from '../../lib/lvol';
import { RpcClient } from '../../lib/rpc/client';
import { RpcForwarder } from '../../lib/rpc/forwarder';
import { uniqueSocketPath } from './env';
import { SpdkChild } from './spdk-child';
import { requireLibspdk } from './spdk-install';

export type Engine = 'builtin' | 'libspdk';
export const ENGINES: readonly Engine[] = ['builtin', 'libspdk'];

/** Declares the suite once per engine (`body` calls describe). */
export function forEachEngine(body: (engine: Engine) => void, engines: readonly Engine[] = ENGINES): void {
  for (const engine of engines) body(engine);
}

export interface TargetOptions {
  /** Reactor cores (default [0]). */
  cores?: number[];
  /** An SPDK JSON config to start with. */
  config?: SpdkJsonConfig;
  /** Tag in the socket path. */
  tag?: string;
}

type RunFn<A, R> = (spdk: Spdk, args: A, require: NodeRequire, ctx: Record<string, any>) => Promise<R>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** A running target on either engine. */
export interface Target {
  readonly engine: Engine;
  /** The Unix socket JSON-RPC is served on: our RpcServer (builtin) or SPDK's own server (libspdk). */
  readonly rpcSocket: string;
  /** A client connected to rpcSocket. */
  readonly client: RpcClient;
  /**
   * `spdk.rpc` as the engine has it: builtin, the in-process method table; libspdk, an
   * RpcForwarder (what LibspdkBackend uses for spdk.rpc and the HTTP endpoint) over its own
   * connection to SPDK's socket, so the forwarder's additions (legacy lvol `size`, views) apply.
   */
  readonly rpc: RpcCaller & { call(method: string, params?: unknown, ctx?: Record<string, unknown>): Promise<unknown> };
  /** The in-process Spdk (builtin only; its internals have no libspdk counterpart). */
  readonly spdk: Spdk | undefined;
  /** The child's pid (libspdk). */
  readonly pid: number | undefined;
  /**
   * Runs `fn` with the target's own `spdk` object (in this process on builtin, in the child on
   * libspdk). `fn` is sent as source text: it may use only its parameters and globals (`require`
   * resolves from test/helpers; `ctx` is an object that lives as long as the target, to keep
   * handles between runs); `args` and the result go through JSON on both engines. A throw
   * rejects with an Error carrying the thrown error's name, code, errno and message.
   */
  run<A, R>(fn: RunFn<A, R>, args?: A): Promise<R>;
  stop(): Promise<void>;
}

const AsyncFunction = Object.getPrototypeOf(async () => undefined).constructor as new (...args: string[]) => (...a: unknown[]) => Promise<unknown>;

function runCode(fn: RunFn<unknown, unknown>, args: unknown): string {
  return `return (${fn.toString()})(spdk, ${JSON.stringify(args ?? null)}, require, ctx);`;
}

/** Children not yet known to be gone: killed by pid at process exit, whatever happened. */
const liveChildren = new Set<SpdkChild>();
process.on('exit', () => {
  for (const c of liveChildren) c.kill();
});

class BuiltinTarget implements Target {
  readonly engine = 'builtin' as const;
  readonly pid = undefined;
  private readonly ctx: Record<string, unknown> = {};

  private constructor(
    readonly spdk: Spdk,
    readonly rpcSocket: string,
    readonly client: RpcClient,
  ) {}

  static async start(opts: TargetOptions): Promise<BuiltinTarget> {
    const sock = uniqueSocketPath(opts.tag ?? 'builtin');
    const spdk = await Spdk.start({ engine: 'builtin', cores: opts.cores ?? [0], rpcSocket: sock, config: opts.config });
    try {
      return new BuiltinTarget(spdk, sock, await RpcClient.connect(sock));
    } catch (e) {
      await spdk.stop();
      throw e;
    }
  }

  get rpc(): Target['rpc'] {
    return this.spdk.rpc as Target['rpc'];
  }

  async run<A, R>(fn: RunFn<A, R>, args?: A): Promise<R> {
    try {
      const result = await new AsyncFunction('spdk', 'ctx', 'require', runCode(fn as RunFn<unknown, unknown>, args))(this.spdk, this.ctx, require);
      return JSON.parse(JSON.stringify(result === undefined ? null : result)) as R;
    } catch (e) {
      const err = e as { name?: string; code?: unknown; errno?: unknown; message?: string };
      throw Object.assign(new Error(err.message), { name: err.name, code: err.code, errno: err.errno });
    }
  }

  async stop(): Promise<void> {
    await this.client.close();
    await this.spdk.stop();
  }
}

class LibspdkTarget implements Target {
  readonly engine = 'libspdk' as const;
  readonly spdk = undefined;

  private constructor(
    readonly child: SpdkChild,
    readonly rpcSocket: string,
    readonly client: RpcClient,
    readonly rpc: RpcForwarder,
  ) {}

  static async start(opts: TargetOptions): Promise<LibspdkTarget> {
    const sock = uniqueSocketPath(opts.tag ?? 'libspdk');
    // test/libspdk-engine.test.ts's options: one core, no hugepages (SPDK's -s default, 1 GiB).
    const child = new SpdkChild('serve', { engine: 'libspdk', cores: opts.cores ?? [0], noHuge: true, logLevel: 'error', rpcSocket: sock, config: opts.config });
    liveChildren.add(child);
    try {
      await child.started();
      const client = await RpcClient.connect(sock);
      return new LibspdkTarget(child, sock, client, new RpcForwarder(new RpcClient(sock, { timeoutMs: 0 })));
    } catch (e) {
      child.kill();
      liveChildren.delete(child);
      fs.rmSync(sock, { force: true });
      throw e;
    }
  }

  get pid(): number | undefined {
    return this.child.proc.pid;
  }

  run<A, R>(fn: RunFn<A, R>, args?: A): Promise<R> {
    return this.child.run(runCode(fn as RunFn<unknown, unknown>, args)) as Promise<R>;
  }

  async stop(): Promise<void> {
    await this.client.close();
    await this.rpc.close();
    try {
      const exit = await Promise.race([this.child.finish(), new Promise<undefined>((r) => setTimeout(() => r(undefined), 15000).unref())]);
      if (exit === undefined) throw new Error(`the libspdk child (pid ${this.pid}) did not stop within 15 s:\n${this.child.output}`);
      if (exit.code !== 0) throw new Error(`the libspdk child (pid ${this.pid}) exited with ${exit.code ?? exit.signal}:\n${this.child.output}`);
    } finally {
      this.child.kill();
      liveChildren.delete(this.child);
      fs.rmSync(this.rpcSocket, { force: true });
    }
  }
}

/** Starts a target on `engine`; the caller stops it. */
export function startTarget(engine: Engine, opts: TargetOptions = {}): Promise<Target> {
  return engine === 'builtin' ? BuiltinTarget.start(opts) : LibspdkTarget.start(opts);
}

// ---------------------------------------------------------------------------------------------
// Reset of a shared libspdk target.

type Json = Record<string, unknown>;

/** What a target holds that the tests make: compared with a fresh start's. */
export async function targetState(c: RpcCaller): Promise<{ bdevs: unknown; lvstores: unknown; subsystems: unknown; transports: unknown }> {
  // Pipelined on one connection: SPDK's RPC server answers what it has read once per poll.
  const [bdevs, lvstores, subsystems, transports] = await Promise.all(['bdev_get_bdevs', 'bdev_lvol_get_lvstores', 'nvmf_get_subsystems', 'nvmf_get_transports'].map((m) => c.call(m)));
  return { bdevs, lvstores, subsystems, transports };
}

const DISCOVERY = 'nqn.2014-08.org.nvmexpress.discovery';

/**
 * Deletes what tests make, through RPC: NVMe-oF subsystems (the discovery subsystem's listeners and
 * hosts), lvstores with their lvols, and every bdev (malloc, aio, uring). Resolves with what could
 * not be undone (empty when the target is as fresh), never throws on a single failed delete.
 */
export async function resetTarget(c: RpcCaller, fresh: Awaited<ReturnType<typeof targetState>>): Promise<string[]> {
  if (JSON.stringify(await targetState(c)) === JSON.stringify(fresh)) return [];
  const tryCall = (method: string, params: unknown): Promise<unknown> => c.call(method, params).catch(() => undefined);
  const subsystems = (await c.call('nvmf_get_subsystems')) as Array<Json & { nqn: string; listen_addresses?: Json[]; hosts?: Array<{ nqn: string }> }>;
  for (const s of subsystems) {
    if (s.nqn !== DISCOVERY) {
      await tryCall('nvmf_delete_subsystem', { nqn: s.nqn });
      continue;
    }
    for (const a of s.listen_addresses ?? []) await tryCall('nvmf_subsystem_remove_listener', { nqn: DISCOVERY, listen_address: a });
    for (const h of s.hosts ?? []) await tryCall('nvmf_subsystem_remove_host', { nqn: DISCOVERY, host: h.nqn });
    if (s.allow_any_host !== true) await tryCall('nvmf_subsystem_allow_any_host', { nqn: DISCOVERY, allow_any_host: true });
  }
  for (const s of (await c.call('bdev_lvol_get_lvstores')) as Array<{ uuid: string }>) {
    await tryCall('bdev_lvol_delete_lvstore', { uuid: s.uuid });
  }
  // Twice: a bdev may be claimed by another one (a passthru, an lvstore that went meanwhile).
  for (let round = 0; round < 2; round++) {
    for (const b of (await c.call('bdev_get_bdevs')) as Array<{ name: string; product_name: string }>) {
      const method = { 'Malloc disk': 'bdev_malloc_delete', 'AIO disk': 'bdev_aio_delete', 'URING bdev': 'bdev_uring_delete', 'URING disk': 'bdev_uring_delete' }[b.product_name];
      if (method) await tryCall(method, { name: b.name });
      else for (const m of ['bdev_malloc_delete', 'bdev_aio_delete', 'bdev_uring_delete', 'bdev_lvol_delete']) await tryCall(m, { name: b.name });
    }
  }
  const now = await targetState(c);
  const left: string[] = [];
  for (const k of Object.keys(now) as Array<keyof typeof now>) {
    if (JSON.stringify(now[k]) !== JSON.stringify(fresh[k])) left.push(`${k}: ${JSON.stringify(now[k])}`);
  }
  return left;
}

/** What RPC cannot undo: the caller starts a new target instead. */
function needsNewTarget(left: string[]): boolean {
  return left.every((l) => l.startsWith('transports:') || (l.startsWith('subsystems:') && !l.includes(DISCOVERY)));
}

// ---------------------------------------------------------------------------------------------

export interface UseTargetOptions extends TargetOptions {
  /**
   * libspdk: one child for the whole block, reset after each test (default true). false: a new
   * child per test, as builtin has.
   */
  shared?: boolean;
  /** builtin: one engine for the whole block instead of one per test (default false). */
  sharedBuiltin?: boolean;
  /**
   * libspdk with `shared`: reset after each test (default true). false: the tests build on each
   * other's state, as they do on a shared builtin engine (`sharedBuiltin`).
   */
  resetEachTest?: boolean;
}

/** The block's current target, with the fixture's controls. */
export interface TargetRef extends Target {
  /** The target itself (it changes when the fixture starts a new one). */
  readonly current: Target;
  /** Stops this target and starts another on the same engine (e.g. from a saved config). */
  restart(opts?: TargetOptions): Promise<void>;
  /** Closed before the reset / stop at the end of the test (NVMe/TCP hosts, HTTP servers). */
  defer(close: () => Promise<unknown> | unknown): void;
}

const FRESH = Symbol('fresh target');

/**
 * Marks a test that needs a target nobody used before (auto-generated names, counters): on
 * libspdk the shared child is replaced before it runs. Returns the test.
 */
export function fresh<T extends Mocha.Test>(test: T): T {
  (test as unknown as Record<symbol, boolean>)[FRESH] = true;
  return test;
}

/**
 * In a describe block: the block's target. builtin: a new engine per test (or one for the block
 * with `sharedBuiltin`). libspdk: one child for the block, reset and checked after each test
 * (`shared: false` for one per test). Call it first in the block, so its before hook (which skips
 * the libspdk block where SPDK is absent) runs first.
 */
export function useTarget(engine: Engine, opts: UseTargetOptions = {}): TargetRef {
  const shared = engine === 'libspdk' ? opts.shared ?? true : opts.sharedBuiltin ?? false;
  let target: Target | undefined;
  let freshState: Awaited<ReturnType<typeof targetState>> | undefined;
  let used = false;
  let replace = false;
  const deferred: Array<() => Promise<unknown> | unknown> = [];

  const start = async (o: TargetOptions = opts): Promise<void> => {
    target = await startTarget(engine, o);
    freshState = shared && engine === 'libspdk' ? await targetState(target.client) : undefined;
    used = false;
    replace = false;
  };
  const stop = async (): Promise<void> => {
    const t = target;
    target = undefined;
    await t?.stop();
  };
  // (start() sets `target` only once the new one is up, after stop() has taken the old one.)
  const closeDeferred = async (): Promise<void> => {
    for (const d of deferred.splice(0).reverse()) await Promise.resolve(d()).catch(() => undefined);
  };

  before(async function () {
    if (engine === 'libspdk') requireLibspdk(this, `${this.test?.parent?.fullTitle() ?? 'suite'}`);
    if (shared) await start();
  });
  beforeEach(async function () {
    const wantsFresh = (this.currentTest as unknown as Record<symbol, boolean> | undefined)?.[FRESH] === true;
    if (!shared) await start();
    else if (replace || (wantsFresh && used) || target === undefined) {
      // The old child stops while the new one starts (each takes ~0.3-0.5 s).
      await Promise.all([stop(), start()]);
    }
    used = true;
  });
  afterEach(async function () {
    await closeDeferred();
    if (!shared) return stop();
    if (target === undefined || replace || engine === 'builtin' || opts.resetEachTest === false) return;
    const left = await resetTarget(target.client, freshState!).catch((e: Error) => [`reset failed: ${e.message}`]);
    if (left.length === 0) return;
    replace = true;
    if (!needsNewTarget(left)) {
      // The reset itself is broken: fail loudly (the next test gets a new child all the same).
      throw new Error(`the reset of the shared libspdk target left:\n${left.join('\n')}`);
    }
  });
  after(async () => {
    await closeDeferred();
    await stop();
  });

  const cur = (): Target => {
    if (!target) throw new Error('no target: used outside a test of its block');
    return target;
  };
  return {
    get current() {
      return cur();
    },
    get engine() {
      return engine;
    },
    get rpcSocket() {
      return cur().rpcSocket;
    },
    get client() {
      return cur().client;
    },
    get rpc() {
      return cur().rpc;
    },
    get spdk() {
      return cur().spdk;
    },
    get pid() {
      return cur().pid;
    },
    run: (fn, args) => cur().run(fn, args),
    stop: () => stop(),
    restart: async (o?: TargetOptions) => {
      await stop();
      await start({ ...opts, ...o });
      // Whatever the restarted target holds is the test's: the block's next test gets a new one.
      replace = true;
      used = true;
    },
    defer: (d) => {
      deferred.push(d);
    },
  };
}
