import { expect } from 'chai';
import * as net from 'node:net';
import { NvmfApi } from '../lib/nvmf';
import type { NvmfControllerInfo, NvmfQpairInfo, NvmfStats, NvmfSubsystemDesc, NvmfTransportOpts } from '../lib/engine/native';
import type { BdevBackend, BdevInfo } from '../lib/engine/types';
import { SpdkError } from '../lib/errors';
import type { NvmfBackend } from '../lib/nvmf/backend';
import { JsonRpcError } from '../lib/rpc';
import { Dispatcher } from '../lib/rpc/dispatcher';
import { registerNvmfMethods } from '../lib/rpc/methods/nvmf';
import { SubsystemRegistry, SpdkJsonConfig } from '../lib/config/subsystems';
import { nvmfSubsystemConfig } from '../lib/config/nvmf-config';
import { isValidNqn, parseTcpPort } from '../lib/nvmf/names';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tempDir } from './helpers/env';
import { forEachEngine, useTarget } from './helpers/engines';
import { NvmeTcpController, uuidHostNqn } from './helpers/nvme-tcp-host';

/*
 * SPDK v25.09's nvmf_* methods: results and their shapes, and every bad input answered with the
 * error object SPDK's nvmf_tgt answers, changing nothing. Every expected answer below was
 * observed from SPDK v25.09's nvmf_tgt with the same calls (test/interop/differential-nvmf.test.ts
 * repeats them against it where it is installed).
 *
 * Two halves: the control plane over a recording backend (validation, the model, what is
 * mirrored to the engine and what happens when the engine refuses), and the same methods on the
 * builtin engine's target (claims, listening sockets, save_config and restart).
 */

type Json = Record<string, unknown>;
type Err = { code: number; message: string };

const INVALID: Err = { code: -32602, message: 'Invalid parameters' };
const INTERNAL: Err = { code: -32603, message: 'Internal error' };
const ENODEV: Err = { code: -19, message: 'No such device' };
const EOPNOTSUPP: Err = { code: -95, message: 'Operation not supported' };
const DISCOVERY = 'nqn.2014-08.org.nvmexpress.discovery';
const CNODE1 = 'nqn.2016-06.io.spdk:cnode1';
const CNODE2 = 'nqn.2016-06.io.spdk:cnode2';
const HOST1 = 'nqn.2016-06.io.spdk:host1';
const UUID1 = '0a1b2c3d-0000-4000-8000-000000000001';
const UUID2 = '0a1b2c3d-0000-4000-8000-000000000002';
const UUID3 = '0a1b2c3d-0000-4000-8000-000000000003';
const UUID4 = '0a1b2c3d-0000-4000-8000-000000000004';
const NOT_RUNTIME = 'Method may only be called before framework is initialized. Use --wait-for-rpc command line parameter and then issue this RPC before the framework_start_init RPC.';

/** nvmf_get_transports of a default TCP transport (SPDK v25.09). */
const TCP_DEFAULTS = {
  trtype: 'TCP',
  max_queue_depth: 128,
  max_io_qpairs_per_ctrlr: 127,
  in_capsule_data_size: 4096,
  max_io_size: 131072,
  io_unit_size: 131072,
  max_aq_depth: 128,
  num_shared_buffers: 511,
  buf_cache_size: 4294967295,
  dif_insert_or_strip: false,
  zcopy: false,
  c2h_success: true,
  sock_priority: 0,
  abort_timeout_sec: 1,
  ack_timeout: 0,
  data_wr_pool_size: 0,
};

const DISCOVERY_JSON = { nqn: DISCOVERY, subtype: 'Discovery', listen_addresses: [], allow_any_host: true, hosts: [] };

/** An NVMe subsystem of nvmf_get_subsystems with SPDK's defaults. */
function subsystemJson(nqn: string, extra: Json = {}): Json {
  return {
    nqn,
    subtype: 'NVMe',
    listen_addresses: [],
    allow_any_host: false,
    hosts: [],
    serial_number: '00000000000000000000',
    model_number: 'SPDK bdev Controller',
    max_namespaces: 32,
    min_cntlid: 1,
    max_cntlid: 65519,
    namespaces: [],
    ...extra,
  };
}

function tcp(port: number | string, traddr = '127.0.0.1', adrfam = 'IPv4'): Json {
  return { trtype: 'TCP', adrfam, traddr, trsvcid: String(port) };
}

/** A TCP port nobody listens on now: bind 127.0.0.1:0, read the port, close. */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** Whether something listens on 127.0.0.1:port (our bind fails with EADDRINUSE). */
async function portInUse(port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', (e: NodeJS.ErrnoException) => (e.code === 'EADDRINUSE' ? resolve(true) : reject(e)));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(false)));
  });
}

/**
 * Waits until the port is free (the engine closes a listening socket on its reactor thread, just
 * after nvmfStopListen returns); false when it still is in use after 2 s.
 */
async function portFreed(port: number): Promise<boolean> {
  const deadline = Date.now() + 2000;
  while (await portInUse(port)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}

interface Caller {
  call(method: string, params?: unknown): Promise<unknown>;
}

/** Test helpers over any caller: calls, expected errors with nothing changed. */
function helpers(caller: () => Caller, extraState: () => Promise<unknown> = async () => null) {
  const call = <T = unknown>(method: string, params?: unknown): Promise<T> => caller().call(method, params) as Promise<T>;
  // Pipelined: SPDK's RPC server answers what it has read once per poll (every 4 ms).
  const state = async (): Promise<string> => JSON.stringify(await Promise.all([call('nvmf_get_subsystems'), call('nvmf_get_transports'), extraState()]));
  async function expectError(method: string, params: unknown, want: Err): Promise<void> {
    const before = await state();
    const err = await call(method, params).then(
      (r) => expect.fail(`${method} ${JSON.stringify(params)} succeeded with ${JSON.stringify(r)}`),
      (e: unknown) => e,
    );
    expect(err, `${method} ${JSON.stringify(params)}`).to.be.instanceOf(JsonRpcError);
    const e = err as JsonRpcError;
    expect({ code: e.code, message: e.message }, `${method} ${JSON.stringify(params)}`).to.deep.equal(want);
    expect(await state(), `${method} ${JSON.stringify(params)}: nothing changed`).to.equal(before);
  }
  /** The error alone (for the startup state, where nvmf_get_subsystems cannot be called). */
  async function expectOnlyError(method: string, params: unknown, want: Err): Promise<void> {
    const err = await call(method, params).then(
      (r) => expect.fail(`${method} ${JSON.stringify(params)} succeeded with ${JSON.stringify(r)}`),
      (e: unknown) => e as JsonRpcError,
    );
    expect({ code: err.code, message: err.message }, `${method} ${JSON.stringify(params)}`).to.deep.equal(want);
  }
  return { call, expectError, expectOnlyError, state };
}

// ---------------------------------------------------------------------------------------------
// A recording engine: what the control plane mirrors, and failures on request.

class RecordingNvmfBackend implements NvmfBackend {
  transport: NvmfTransportOpts | undefined;
  readonly subsystems = new Map<string, NvmfSubsystemDesc>();
  readonly sockets = new Set<string>();
  readonly calls: string[] = [];
  controllerList: NvmfControllerInfo[] = [];
  qpairList: NvmfQpairInfo[] = [];
  private readonly failures = new Map<string, number>();

  /** Makes the next call of `method` throw an SpdkError with `errno`, as the engine does. */
  failNext(method: keyof NvmfBackend, errno: number): void {
    this.failures.set(method, errno);
  }

  private enter(method: keyof NvmfBackend, detail: string): void {
    this.calls.push(`${method} ${detail}`);
    const errno = this.failures.get(method);
    if (errno !== undefined) {
      this.failures.delete(method);
      throw SpdkError.fromErrno(errno, method);
    }
  }

  createTransport(opts: NvmfTransportOpts): void {
    this.enter('createTransport', '');
    this.transport = opts;
  }

  setSubsystem(desc: NvmfSubsystemDesc): void {
    this.enter('setSubsystem', desc.nqn);
    this.subsystems.set(desc.nqn, structuredClone(desc));
  }

  async deleteSubsystem(nqn: string): Promise<void> {
    this.enter('deleteSubsystem', nqn);
    if (!this.subsystems.delete(nqn)) throw SpdkError.fromErrno(2, 'deleteSubsystem');
  }

  listen(traddr: string, trsvcid: string): void {
    this.enter('listen', `${traddr}:${trsvcid}`);
    if (this.sockets.has(`${traddr}:${trsvcid}`)) throw SpdkError.fromErrno(98, 'listen');
    this.sockets.add(`${traddr}:${trsvcid}`);
  }

  stopListen(traddr: string, trsvcid: string): void {
    this.enter('stopListen', `${traddr}:${trsvcid}`);
    this.sockets.delete(`${traddr}:${trsvcid}`);
  }

  controllers(nqn: string): NvmfControllerInfo[] {
    this.enter('controllers', nqn);
    return this.controllerList;
  }

  qpairs(nqn: string): NvmfQpairInfo[] {
    this.enter('qpairs', nqn);
    return this.qpairList;
  }

  stats(): NvmfStats {
    this.enter('stats', '');
    const g = { name: 'nvmf_tgt_poll_group_000', adminQpairs: 1, ioQpairs: 2, currentAdminQpairs: 1, currentIoQpairs: 1, pendingBdevIo: 0, completedNvmeIo: 42 };
    return { tickRate: 2600000000, pollGroups: [g], dataCopies: 0, connections: 0, refusedConnections: 0, connectTimeouts: 0, keepAliveTimeouts: 0 };
  }
}

/** Just what the nvmf methods use of a BdevBackend: bdevs to look up. */
class FakeBdevs implements BdevBackend {
  readonly bdevs: BdevInfo[] = [];

  add(name: string, uuid: string, claimed = false): void {
    this.bdevs.push({
      name,
      aliases: [uuid],
      productName: 'Malloc disk',
      blockSize: 512,
      numBlocks: 64,
      uuid,
      driver: 'malloc',
      requiredAlignment: 0,
      readOnly: false,
      claimed,
      ioTypes: { read: true, write: true, flush: true, unmap: true, write_zeroes: true },
      driverSpecific: {},
    });
  }

  remove(name: string): void {
    this.bdevs.splice(
      this.bdevs.findIndex((b) => b.name === name),
      1,
    );
  }

  listBdevs(): BdevInfo[] {
    return [...this.bdevs];
  }

  findBdev(nameOrAlias: string): BdevInfo | undefined {
    return this.bdevs.find((b) => b.name === nameOrAlias || b.aliases.includes(nameOrAlias));
  }

  createMallocBdev(): BdevInfo {
    throw new Error('not modelled');
  }

  createFileBdev(): BdevInfo {
    throw new Error('not modelled');
  }

  async deleteBdev(): Promise<void> {
    throw new Error('not modelled');
  }

  rescanFileBdev(): void {
    throw new Error('not modelled');
  }

  bdevStats(): never {
    throw new Error('not modelled');
  }

  tickRate(): number {
    return 1;
  }
}

describe('nvmf RPC methods: NQN and port syntax', () => {
  describe('names', () => {
    it('NQNs as nvmf_nqn_is_valid judges them', () => {
      const good = [
        CNODE1,
        DISCOVERY,
        'nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555',
        'nqn.2016-06.io.spdk:a-b.c-d0:x',
        'nqn.2016-06.:x',
        'nqn.2016-06.io.:x',
        'nqn.2016-06.io.spdk:é中',
        `nqn.2016-06.${'a'.repeat(63)}:x`,
        // SPDK checks a label's length before adding the character: 64 pass.
        `nqn.2016-06.${'a'.repeat(64)}:x`,
        `nqn.2016-06.io.spdk:${'x'.repeat(203)}`,
      ];
      const bad = [
        'nqn.2016-06.io.spdk:',
        'nqn.16-06.io.spdk:x',
        'nqn.2016-06.1o.spdk:x',
        'iqn.2016-06.io.spdk:x',
        'short',
        'nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-55555555555',
        'nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-55555555555g',
        'nqn.2016-06.io-.spdk:x',
        'nqn.2016-06.i_o:x',
        'nqn.2016-06.io..spdk:x',
        `nqn.2016-06.${'a'.repeat(65)}:x`,
        `nqn.2016-06.io.spdk:${'x'.repeat(204)}`,
      ];
      for (const n of good) expect(isValidNqn(n), n).to.equal(true);
      for (const n of bad) expect(isValidNqn(n), n).to.equal(false);
    });

    it('TCP ports as nvmf_tcp_trsvcid_to_int reads them (strtoull)', () => {
      expect(parseTcpPort('4420')).to.equal(4420);
      expect(parseTcpPort(' +4420')).to.equal(4420);
      expect(parseTcpPort('004420')).to.equal(4420);
      for (const bad of ['', '0', 'abc', '70000', '65536', '-1', '-0', '44 20', '4420x', '0x10']) expect(parseTcpPort(bad), bad).to.equal(-1);
    });
  });
});

/*
 * The control plane: on builtin, the TypeScript nvmf methods over a recording backend (what is
 * mirrored to the engine, and what happens when the engine refuses: `backend.failNext`); on
 * libspdk, the same calls to SPDK's own server in a child (bdevs M0..M3 with the same UUIDs), so
 * the answers these tests hold for SPDK's are checked against SPDK itself. What only the recording
 * backend can show (engine refusals, fake controllers, the startup state) is builtin-only.
 * Listen ports: on builtin nothing listens, so SPDK's own 4420/4421 as observed from nvmf_tgt; on
 * libspdk SPDK really listens, so two free ports.
 */
forEachEngine((engine) =>
describe(`nvmf RPC methods: the control plane (${engine === 'builtin' ? 'builtin engine, recording backend' : 'libspdk engine'})`, () => {
  const builtin = engine === 'builtin';
  const t = builtin ? undefined : useTarget(engine, { tag: 'nvmf-plane' });
  /** A test that needs the recording backend (engine failures, fakes, the startup state). */
  const recordingIt = (title: string, fn: () => Promise<void>): void => {
    if (builtin) it(title, fn);
  };
  let dispatcher: Dispatcher;
  let backend: RecordingNvmfBackend;
  let bdevs: FakeBdevs;
  let registry: SubsystemRegistry;
  let P0 = '4420';
  let P1 = '4421';
  // libspdk: through the engine's spdk.rpc (the forwarder), as users call it.
  const { call, expectError, expectOnlyError } = helpers(
    () => (builtin ? dispatcher : t!.rpc),
    async () => (builtin ? [...backend.subsystems.values()] : t!.client.call('bdev_get_bdevs')),
  );

  before(async () => {
    if (!builtin) [P0, P1] = [String(await freePort()), String(await freePort())];
  });

  /** Another bdev, as the bdev layer would have it (libspdk: a malloc bdev). */
  async function addBdev(name: string, uuid: string): Promise<void> {
    if (builtin) bdevs.add(name, uuid);
    else await call('bdev_malloc_create', { name, num_blocks: 64, block_size: 512, uuid });
  }

  function start(state: 'startup' | 'runtime' = 'runtime', cores = [0]): void {
    dispatcher = new Dispatcher({ state });
    backend = new RecordingNvmfBackend();
    bdevs = new FakeBdevs();
    const target = registerNvmfMethods(dispatcher, backend, bdevs, cores);
    registry = new SubsystemRegistry();
    registry.register('nvmf', ['bdev'], () => nvmfSubsystemConfig(target));
    registry.registerMethods(dispatcher);
    bdevs.add('M0', UUID1);
    bdevs.add('M1', UUID2);
    bdevs.add('M2', UUID3);
    bdevs.add('M3', UUID4);
  }

  beforeEach(async () => {
    if (builtin) start();
    else for (const [name, uuid] of [['M0', UUID1], ['M1', UUID2], ['M2', UUID3], ['M3', UUID4]]) await addBdev(name, uuid);
  });

  describe('nvmf_create_transport / nvmf_get_transports', () => {
    it('defaults, SPDK\'s answer shape, what the engine gets', async () => {
      expect(await call('nvmf_get_transports')).to.deep.equal([]);
      expect(await call('nvmf_create_transport', { trtype: 'tcp', colour: 'red' })).to.equal(true);
      expect(await call('nvmf_get_transports')).to.deep.equal([TCP_DEFAULTS]);
      expect(await call('nvmf_get_transports', { trtype: 'tcp' })).to.deep.equal([TCP_DEFAULTS]);
      if (builtin) {
        expect(backend.transport).to.deep.equal({
          maxQueueDepth: 128,
          maxIoQpairsPerCtrlr: 127,
          inCapsuleDataSize: 4096,
          maxIoSize: 131072,
          ioUnitSize: 131072,
          numSharedBuffers: 511,
          c2hSuccess: true,
          maxAqDepth: 128,
          maxConnections: 1024,
        });
      }
    });

    it('adjusts options as SPDK does (max_aq_depth, max_queue_depth, io_unit_size, ICD, the uint16 wrap of max_io_qpairs_per_ctrlr)', async () => {
      await call('nvmf_create_transport', {
        trtype: 'tcp',
        max_io_qpairs_per_ctrlr: 65535,
        max_aq_depth: 5,
        max_queue_depth: 1,
        in_capsule_data_size: 200000,
        io_unit_size: 8192,
        max_io_size: 65536,
        kas: 7,
        min_kato: 1001,
      });
      // Observed from nvmf_tgt with the same call.
      expect(await call('nvmf_get_transports')).to.deep.equal([
        { ...TCP_DEFAULTS, max_io_qpairs_per_ctrlr: 4294967295, in_capsule_data_size: 65536, max_io_size: 65536, io_unit_size: 8192, max_aq_depth: 32 },
      ]);
    });

    it('TCP options: c2h_success, sock_priority; max_aq_depth above 4096 falls back to 128', async () => {
      await call('nvmf_create_transport', { trtype: 'TCP', c2h_success: false, sock_priority: 16, max_aq_depth: 5000, zcopy: true, dif_insert_or_strip: true, ack_timeout: 3, data_wr_pool_size: 9, abort_timeout_sec: 0 });
      expect(await call('nvmf_get_transports')).to.deep.equal([
        { ...TCP_DEFAULTS, c2h_success: false, sock_priority: 16, max_aq_depth: 128, zcopy: true, dif_insert_or_strip: true, ack_timeout: 3, data_wr_pool_size: 9, abort_timeout_sec: 0 },
      ]);
      if (builtin) expect(backend.transport?.c2hSuccess).to.equal(false);
    });

    it('refuses what SPDK refuses, with its answers', async () => {
      const invalidType = (t: string): Err => ({ code: -32602, message: `Invalid transport type '${t}'` });
      const createFailed: Err = { code: -32603, message: "Transport type 'tcp' create failed" };
      const failed: Err = { code: -32603, message: 'Failed to create transport.' };
      await expectError('nvmf_create_transport', { trtype: 'rdma' }, invalidType('rdma'));
      await expectError('nvmf_create_transport', { trtype: 'PCIe' }, invalidType('PCIe'));
      await expectError('nvmf_create_transport', { trtype: 'foo' }, invalidType('foo'));
      await expectError('nvmf_create_transport', {}, INVALID);
      await expectError('nvmf_create_transport', undefined, INVALID);
      await expectError('nvmf_create_transport', { trtype: 5 }, INVALID);
      await expectError('nvmf_create_transport', { trtype: 'rdma', max_queue_depth: 70000 }, INVALID);
      await expectError('nvmf_create_transport', { trtype: 'tcp', max_queue_depth: 70000 }, INVALID);
      await expectError('nvmf_create_transport', { trtype: 'tcp', tgt_name: 'x' }, { code: -32603, message: 'Unable to find a target.' });
      await expectError('nvmf_create_transport', { trtype: 'tcp', max_io_size: 4096 }, createFailed);
      await expectError('nvmf_create_transport', { trtype: 'tcp', max_io_size: 12288 }, createFailed);
      await expectError('nvmf_create_transport', { trtype: 'tcp', io_unit_size: 0 }, createFailed);
      await expectError('nvmf_create_transport', { trtype: 'tcp', io_unit_size: 135169 }, createFailed);
      await expectError('nvmf_create_transport', { trtype: 'tcp', kas: 0 }, createFailed);
      await expectError('nvmf_create_transport', { trtype: 'tcp', min_kato: 0 }, createFailed);
      await expectError('nvmf_create_transport', { trtype: 'tcp', io_unit_size: 1024 }, failed);
      await expectError('nvmf_create_transport', { trtype: 'tcp', sock_priority: 17 }, failed);
      await expectError('nvmf_create_transport', { trtype: 'tcp', c2h_success: 1 }, failed);
      await expectError('nvmf_create_transport', { trtype: 'tcp', buf_cache_size: 600 }, failed);
      // SPDK divides by zero here (SIGFPE, the whole process on libspdk); refused instead, by the
      // builtin engine and by the libspdk engine's forwarder (docs/differences.md).
      await expectError('nvmf_create_transport', { trtype: 'tcp', max_io_size: 0 }, failed);
      await expectError('nvmf_create_transport', { trtype: 'TCP', max_io_size: 0, io_unit_size: 8192 }, failed);
      if (builtin) expect(backend.calls).to.deep.equal([]);
    });

    it('a second transport of the type fails, in any case', async () => {
      await call('nvmf_create_transport', { trtype: 'tcp' });
      await expectError('nvmf_create_transport', { trtype: 'tcp' }, { code: -32603, message: "Transport type 'tcp' already exists" });
      await expectError('nvmf_create_transport', { trtype: 'TCP' }, { code: -32603, message: "Transport type 'TCP' already exists" });
      await expectError('nvmf_create_transport', { trtype: 'Tcp', max_queue_depth: 1 }, { code: -32603, message: "Transport type 'Tcp' already exists" });
    });

    recordingIt('an engine that refuses the transport: "Failed to create transport.", nothing created', async () => {
      backend.failNext('createTransport', 98);
      await expectOnlyError('nvmf_create_transport', { trtype: 'tcp' }, { code: -32603, message: 'Failed to create transport.' });
      expect(await call('nvmf_get_transports')).to.deep.equal([]);
      if (builtin) expect(backend.transport).to.equal(undefined);
      // The discovery subsystem went to the engine first; it stays there, harmlessly.
      if (builtin) expect([...backend.subsystems.keys()]).to.deep.equal([DISCOVERY]);
      expect(await call('nvmf_create_transport', { trtype: 'tcp' })).to.equal(true);
      backend.failNext('setSubsystem', 12);
      await call('nvmf_subsystem_add_listener', { nqn: DISCOVERY, listen_address: { trtype: 'tcp', traddr: '127.0.0.1', trsvcid: P0 } }).catch(() => undefined);
      if (builtin) expect(backend.subsystems.get(DISCOVERY)?.listeners).to.deep.equal([]);
    });

    it('nvmf_get_transports: unknown trtype -19, bad params -32602', async () => {
      await expectError('nvmf_get_transports', { trtype: 'tcp' }, ENODEV);
      await call('nvmf_create_transport', { trtype: 'tcp' });
      await expectError('nvmf_get_transports', { trtype: 'rdma' }, ENODEV);
      await expectError('nvmf_get_transports', { x: 1 }, INVALID);
      await expectError('nvmf_get_transports', { tgt_name: 'nope' }, { code: -32603, message: 'Unable to find a target.' });
      expect(await call('nvmf_get_transports', { tgt_name: 'nvmf_tgt' })).to.deep.equal([TCP_DEFAULTS]);
    });
  });

  describe('nvmf_create_subsystem / nvmf_get_subsystems / nvmf_delete_subsystem', () => {
    it('the discovery subsystem exists from the start; subsystems are listed in NQN order', async () => {
      expect(await call('nvmf_get_subsystems')).to.deep.equal([DISCOVERY_JSON]);
      await call('nvmf_create_subsystem', { nqn: CNODE1 });
      await call('nvmf_create_subsystem', {
        nqn: 'nqn.2016-06.io.spdk:cnode3',
        serial_number: 'SN3',
        model_number: 'MN3',
        allow_any_host: true,
        ana_reporting: true,
        max_namespaces: 4,
        min_cntlid: 3,
        max_cntlid: 9,
      });
      await call('nvmf_create_subsystem', { nqn: 'nqn.2000-01.aaa:first' });
      await call('nvmf_create_subsystem', { nqn: 'nqn.2016-06.io.spdk:Cnode0' });
      await call('nvmf_create_subsystem', { nqn: 'nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555' });
      // SPDK keeps subsystems in a tree ordered by NQN: discovery is not always first.
      expect(await call('nvmf_get_subsystems')).to.deep.equal([
        subsystemJson('nqn.2000-01.aaa:first'),
        DISCOVERY_JSON,
        subsystemJson('nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555'),
        subsystemJson('nqn.2016-06.io.spdk:Cnode0'),
        subsystemJson(CNODE1),
        subsystemJson('nqn.2016-06.io.spdk:cnode3', { allow_any_host: true, serial_number: 'SN3', model_number: 'MN3', max_namespaces: 4, min_cntlid: 3, max_cntlid: 9 }),
      ]);
      expect(await call('nvmf_get_subsystems', { nqn: CNODE1 })).to.deep.equal([subsystemJson(CNODE1)]);
      expect(await call('nvmf_get_subsystems', { nqn: CNODE1, tgt_name: 'nvmf_tgt' })).to.deep.equal([subsystemJson(CNODE1)]);
      // What the engine got.
      if (builtin) {
        expect(backend.subsystems.get('nqn.2016-06.io.spdk:cnode3')).to.deep.equal({
          nqn: 'nqn.2016-06.io.spdk:cnode3',
          subtype: 'NVMe',
          serialNumber: 'SN3',
          modelNumber: 'MN3',
          allowAnyHost: true,
          hosts: [],
          listeners: [],
          namespaces: [],
          minCntlid: 3,
          maxCntlid: 9,
          maxNamespaces: 4,
        });
      }
      // The discovery subsystem goes to the engine with the transport (hosts can connect from then on).
      if (builtin) expect(backend.subsystems.has(DISCOVERY)).to.equal(false);
      await call('nvmf_create_transport', { trtype: 'tcp' });
      if (builtin) expect(backend.subsystems.get(DISCOVERY)).to.include({ subtype: 'Discovery', allowAnyHost: true, maxNamespaces: 0 });
    });

    it('serial and model numbers: up to 20 and 40 printable ASCII bytes, empty allowed', async () => {
      await call('nvmf_create_subsystem', { nqn: 'nqn.2016-06.io.spdk:a', serial_number: '' });
      await call('nvmf_create_subsystem', { nqn: 'nqn.2016-06.io.spdk:b', model_number: '', serial_number: 'S'.repeat(20) });
      await call('nvmf_create_subsystem', { nqn: 'nqn.2016-06.io.spdk:c', model_number: '~ !'.repeat(13) + 'x' });
      expect(await call('nvmf_get_subsystems', { nqn: 'nqn.2016-06.io.spdk:a' })).to.deep.equal([subsystemJson('nqn.2016-06.io.spdk:a', { serial_number: '' })]);
      expect(await call('nvmf_get_subsystems', { nqn: 'nqn.2016-06.io.spdk:b' })).to.deep.equal([
        subsystemJson('nqn.2016-06.io.spdk:b', { serial_number: 'S'.repeat(20), model_number: '' }),
      ]);
    });

    it('refuses what SPDK refuses, with its answers', async () => {
      await call('nvmf_create_subsystem', { nqn: CNODE1 });
      const unable = (nqn: string): Err => ({ code: -32603, message: `Unable to create subsystem ${nqn}` });
      for (const nqn of [CNODE1, DISCOVERY, 'nqn.2016-06.io.spdk:', 'nqn.16-06.io.spdk:x', 'iqn.2016-06.io.spdk:x', 'short', 'nqn.2016-06.i_o:x']) {
        await expectError('nvmf_create_subsystem', { nqn }, unable(nqn));
      }
      await expectError('nvmf_create_subsystem', { nqn: 'nqn.2016-06.io.spdk:big', max_namespaces: 4294967295 }, unable('nqn.2016-06.io.spdk:big'));
      await expectError('nvmf_create_subsystem', { nqn: CNODE2, serial_number: 'SPDK00000000000000001', model_number: 'm' }, { code: -32602, message: 'Invalid SN SPDK00000000000000001' });
      await expectError('nvmf_create_subsystem', { nqn: CNODE2, serial_number: 'SPDKé', model_number: 'm' }, { code: -32602, message: 'Invalid SN SPDKé' });
      await expectError('nvmf_create_subsystem', { nqn: CNODE2, model_number: 'x'.repeat(41) }, { code: -32602, message: `Invalid MN ${'x'.repeat(41)}` });
      await expectError('nvmf_create_subsystem', { nqn: CNODE2, model_number: 'tab\there' }, { code: -32602, message: 'Invalid MN tab\there' });
      await expectError('nvmf_create_subsystem', { nqn: CNODE2, min_cntlid: 0 }, { code: -32602, message: 'Invalid cntlid range [0-65519]' });
      await expectError('nvmf_create_subsystem', { nqn: CNODE2, min_cntlid: 10, max_cntlid: 5 }, { code: -32602, message: 'Invalid cntlid range [10-5]' });
      await expectError('nvmf_create_subsystem', { nqn: CNODE2, max_cntlid: 65520 }, { code: -32602, message: 'Invalid cntlid range [1-65520]' });
      await expectError('nvmf_create_subsystem', { nqn: CNODE2, max_cntlid: 65536 }, INVALID);
      await expectError('nvmf_create_subsystem', { nqn: CNODE2, max_write_zeroes_size_kib: 3 }, { code: -32602, message: 'Invalid max_write_zeroes_size_kib 3' });
      await expectError('nvmf_create_subsystem', { nqn: CNODE2, max_write_zeroes_size_kib: 2 }, { code: -32602, message: 'Invalid max_write_zeroes_size_kib 2' });
      await expectError('nvmf_create_subsystem', { nqn: CNODE2, colour: 1 }, INVALID);
      await expectError('nvmf_create_subsystem', { nqn: 5 }, INVALID);
      await expectError('nvmf_create_subsystem', {}, INVALID);
      await expectError('nvmf_create_subsystem', undefined, INVALID);
      await expectError('nvmf_create_subsystem', [CNODE2], INVALID);
      await expectError('nvmf_create_subsystem', { nqn: CNODE2, tgt_name: 'x' }, { code: -32603, message: 'Unable to find target x' });
      expect(await call('nvmf_create_subsystem', { nqn: CNODE2, max_write_zeroes_size_kib: 4, max_discard_size_kib: 7, enable_nssr: true })).to.equal(true);
    });

    it('nvmf_get_subsystems with an unknown nqn is -19; bad params -32602', async () => {
      await expectError('nvmf_get_subsystems', { nqn: 'nqn.2016-06.io.spdk:nope' }, ENODEV);
      await expectError('nvmf_get_subsystems', { nqn: 3 }, INVALID);
      await expectError('nvmf_get_subsystems', { x: 3 }, INVALID);
      await expectError('nvmf_get_subsystems', { tgt_name: 'x' }, { code: -32603, message: 'Unable to find a target.' });
    });

    recordingIt('the engine refusing a new subsystem: "Subsystem <nqn> start failed", nothing created', async () => {
      backend.failNext('setSubsystem', 12);
      await expectError('nvmf_create_subsystem', { nqn: CNODE1 }, { code: -32603, message: `Subsystem ${CNODE1} start failed` });
      expect(await call('nvmf_create_subsystem', { nqn: CNODE1 })).to.equal(true);
    });

    it('deletes (the discovery subsystem too, as SPDK lets it); unknown -32602', async () => {
      await call('nvmf_create_subsystem', { nqn: CNODE1 });
      await expectError('nvmf_delete_subsystem', { nqn: 'nqn.2016-06.io.spdk:nope' }, INVALID);
      await expectError('nvmf_delete_subsystem', {}, INVALID);
      await expectError('nvmf_delete_subsystem', { nqn: CNODE1, tgt_name: 'nope' }, { code: -32603, message: 'Unable to find a target.' });
      expect(await call('nvmf_delete_subsystem', { nqn: CNODE1 })).to.equal(true);
      if (builtin) expect(backend.subsystems.has(CNODE1)).to.equal(false);
      expect(await call('nvmf_delete_subsystem', { nqn: DISCOVERY })).to.equal(true);
      expect(await call('nvmf_get_subsystems')).to.deep.equal([]);
    });

    recordingIt('the engine failing a delete: -32603, the subsystem stays', async () => {
      await call('nvmf_create_subsystem', { nqn: CNODE1 });
      backend.failNext('deleteSubsystem', 16);
      await expectError('nvmf_delete_subsystem', { nqn: CNODE1 }, { code: -32603, message: 'Subsystem destruction failed, rc -16' });
    });

    recordingIt('nvmf_set_max_subsystems limits subsystems, the discovery subsystem included', async () => {
      start('startup');
      expect(await call('nvmf_set_max_subsystems', { max_subsystems: 3 })).to.equal(true);
      await expectOnlyError('nvmf_set_max_subsystems', { max_subsystems: 4 }, { code: -32603, message: 'Must not call more than once' });
      dispatcher.setState('runtime');
      await call('nvmf_create_subsystem', { nqn: 'nqn.2016-06.io.spdk:a' });
      await call('nvmf_create_subsystem', { nqn: 'nqn.2016-06.io.spdk:b' });
      await expectError('nvmf_create_subsystem', { nqn: 'nqn.2016-06.io.spdk:c' }, { code: -32603, message: 'Unable to create subsystem nqn.2016-06.io.spdk:c' });
      await call('nvmf_delete_subsystem', { nqn: 'nqn.2016-06.io.spdk:a' });
      expect(await call('nvmf_create_subsystem', { nqn: 'nqn.2016-06.io.spdk:c' })).to.equal(true);
    });
  });

  describe('nvmf_subsystem_add_ns / nvmf_subsystem_remove_ns', () => {
    beforeEach(async () => {
      await call('nvmf_create_subsystem', { nqn: CNODE1, max_namespaces: 3 });
    });

    it('the lowest free nsid, a chosen one honoured; uuid and nguid default to the bdev\'s UUID', async () => {
      expect(await call('nvmf_subsystem_add_ns', { nqn: CNODE1, namespace: { bdev_name: 'M0' }, x: 1 })).to.equal(1);
      expect(await call('nvmf_subsystem_add_ns', { nqn: CNODE1, namespace: { bdev_name: 'M1', nsid: 3 } })).to.equal(3);
      expect(await call('nvmf_subsystem_add_ns', { nqn: CNODE1, namespace: { bdev_name: 'M2', nsid: 0 } })).to.equal(2);
      const [s] = await call<Json[]>('nvmf_get_subsystems', { nqn: CNODE1 });
      expect(s.namespaces).to.deep.equal([
        { nsid: 1, bdev_name: 'M0', name: 'M0', nguid: '0A1B2C3D000040008000000000000001', uuid: UUID1 },
        { nsid: 2, bdev_name: 'M2', name: 'M2', nguid: '0A1B2C3D000040008000000000000003', uuid: UUID3 },
        { nsid: 3, bdev_name: 'M1', name: 'M1', nguid: '0A1B2C3D000040008000000000000002', uuid: UUID2 },
      ]);
      if (builtin) {
        expect(backend.subsystems.get(CNODE1)?.namespaces).to.deep.equal([
          { nsid: 1, bdevName: 'M0', uuid: UUID1, nguid: '0A1B2C3D000040008000000000000001' },
          { nsid: 2, bdevName: 'M2', uuid: UUID3, nguid: '0A1B2C3D000040008000000000000003' },
          { nsid: 3, bdevName: 'M1', uuid: UUID2, nguid: '0A1B2C3D000040008000000000000002' },
        ]);
      }
      // Full: no free nsid.
      await expectError('nvmf_subsystem_add_ns', { nqn: CNODE1, namespace: { bdev_name: 'M3' } }, INVALID);
    });

    it('identifiers as given (any case; all-zero means not given), the bdev by alias, anagrpid with ana_reporting', async () => {
      await call('nvmf_create_subsystem', { nqn: CNODE2, ana_reporting: true, max_namespaces: 0 });
      const ns = { bdev_name: UUID1, nsid: 7, nguid: '00112233445566778899aabbccddeeff', eui64: '0011223344556677', uuid: 'AAAAAAAA-0000-4000-8000-000000000001' };
      expect(await call('nvmf_subsystem_add_ns', { nqn: CNODE2, namespace: ns })).to.equal(7);
      const zeroes = { bdev_name: 'M1', anagrpid: 3, nguid: '0'.repeat(32), uuid: '00000000-0000-0000-0000-000000000000', eui64: '0'.repeat(16) };
      expect(await call('nvmf_subsystem_add_ns', { nqn: CNODE2, namespace: zeroes })).to.equal(1);
      expect(await call('nvmf_subsystem_add_ns', { nqn: CNODE2, namespace: { bdev_name: 'M2', hide_metadata: true } })).to.equal(2);
      await expectError('nvmf_subsystem_add_ns', { nqn: CNODE2, namespace: { bdev_name: 'M3', anagrpid: 33 } }, INVALID);
      await expectError('nvmf_subsystem_add_ns', { nqn: CNODE2, namespace: { bdev_name: 'M3', nsid: 33 } }, INVALID);
      const [s] = await call<Json[]>('nvmf_get_subsystems', { nqn: CNODE2 });
      expect(s.namespaces).to.deep.equal([
        { nsid: 1, bdev_name: 'M1', name: 'M1', nguid: '0A1B2C3D000040008000000000000002', uuid: UUID2, anagrpid: 3 },
        { nsid: 2, bdev_name: 'M2', name: 'M2', nguid: '0A1B2C3D000040008000000000000003', uuid: UUID3, anagrpid: 2 },
        { nsid: 7, bdev_name: 'M0', name: 'M0', nguid: '00112233445566778899AABBCCDDEEFF', eui64: '0011223344556677', uuid: 'aaaaaaaa-0000-4000-8000-000000000001', anagrpid: 7 },
      ]);
      if (builtin) {
        expect(backend.subsystems.get(CNODE2)?.namespaces[2]).to.deep.equal({
          nsid: 7,
          bdevName: 'M0',
          uuid: 'aaaaaaaa-0000-4000-8000-000000000001',
          nguid: '00112233445566778899AABBCCDDEEFF',
          eui64: '0011223344556677',
        });
      }
    });

    it('refuses what SPDK refuses: all -32602 "Invalid parameters"', async () => {
      await call('nvmf_subsystem_add_ns', { nqn: CNODE1, namespace: { bdev_name: 'M0' } });
      if (builtin) bdevs.add('Claimed', '0a1b2c3d-0000-4000-8000-0000000000cc', true);
      else {
        // Claimed by another subsystem's namespace (exclusive_write).
        await addBdev('Claimed', '0a1b2c3d-0000-4000-8000-0000000000cc');
        await call('nvmf_create_subsystem', { nqn: 'nqn.2016-06.io.spdk:claimer' });
        await call('nvmf_subsystem_add_ns', { nqn: 'nqn.2016-06.io.spdk:claimer', namespace: { bdev_name: 'Claimed' } });
      }
      const bad: Json[] = [
        { nqn: CNODE1, namespace: { bdev_name: 'nope' } },
        { nqn: 'nqn.2016-06.io.spdk:nope', namespace: { bdev_name: 'M1' } },
        { nqn: CNODE1 },
        { nqn: CNODE1, namespace: {} },
        { nqn: CNODE1, namespace: 'M1' },
        { nqn: CNODE1, namespace: { bdev_name: 'M1', x: 1 } },
        { nqn: CNODE1, namespace: { bdev_name: 'M1', nguid: '00112233' } },
        { nqn: CNODE1, namespace: { bdev_name: 'M1', nguid: '0011223344556677889900AABBCCDDEZ' } },
        { nqn: CNODE1, namespace: { bdev_name: 'M1', eui64: '00112233445566778' } },
        { nqn: CNODE1, namespace: { bdev_name: 'M1', uuid: 'zz' } },
        { nqn: CNODE1, namespace: { bdev_name: 'M1', nsid: 4 } },
        { nqn: CNODE1, namespace: { bdev_name: 'M1', nsid: 1 } },
        { nqn: CNODE1, namespace: { bdev_name: 'M1', nsid: 4294967295 } },
        { nqn: CNODE1, namespace: { bdev_name: 'M1', anagrpid: 9 } },
        { nqn: CNODE1, namespace: { bdev_name: 'M0' } },
        { nqn: CNODE1, namespace: { bdev_name: UUID1 } },
        { nqn: CNODE1, namespace: { bdev_name: 'Claimed' } },
        { nqn: DISCOVERY, namespace: { bdev_name: 'M1' } },
      ];
      // Not part of the builtin target (docs/differences.md); SPDK takes them.
      if (builtin) bad.push({ nqn: CNODE1, namespace: { bdev_name: 'M1', no_auto_visible: true } }, { nqn: CNODE1, namespace: { bdev_name: 'M1', ptpl_file: '/tmp/ptpl.json' } });
      for (const p of bad) await expectError('nvmf_subsystem_add_ns', p, INVALID);
      await expectError('nvmf_subsystem_add_ns', { nqn: CNODE1, namespace: { bdev_name: 'M1' }, tgt_name: 'x' }, { code: -32603, message: 'Unable to find a target.' });
      // A passthrough subsystem takes only bdev_nvme namespaces.
      await call('nvmf_create_subsystem', { nqn: CNODE2, passthrough: true });
      await expectError('nvmf_subsystem_add_ns', { nqn: CNODE2, namespace: { bdev_name: 'M1' } }, INVALID);
    });

    recordingIt('the engine refusing the namespace (EBUSY): -32602, nothing added', async () => {
      backend.failNext('setSubsystem', 16);
      await expectError('nvmf_subsystem_add_ns', { nqn: CNODE1, namespace: { bdev_name: 'M0' } }, INVALID);
      expect(await call('nvmf_subsystem_add_ns', { nqn: CNODE1, namespace: { bdev_name: 'M0' } })).to.equal(1);
    });

    it('removes by nsid; the nsid is free again; bad nsids -32602', async () => {
      await call('nvmf_subsystem_add_ns', { nqn: CNODE1, namespace: { bdev_name: 'M0' } });
      await call('nvmf_subsystem_add_ns', { nqn: CNODE1, namespace: { bdev_name: 'M1' } });
      for (const p of [{ nqn: CNODE1, nsid: 5 }, { nqn: CNODE1, nsid: 0 }, { nqn: CNODE1, nsid: 3 }, { nqn: CNODE1 }, { nqn: 'nqn.2016-06.io.spdk:nope', nsid: 1 }, { nqn: CNODE1, nsid: 1, x: 1 }]) {
        await expectError('nvmf_subsystem_remove_ns', p, INVALID);
      }
      expect(await call('nvmf_subsystem_remove_ns', { nqn: CNODE1, nsid: 1 })).to.equal(true);
      await expectError('nvmf_subsystem_remove_ns', { nqn: CNODE1, nsid: 1 }, INVALID);
      if (builtin) expect(backend.subsystems.get(CNODE1)?.namespaces.map((n) => n.nsid)).to.deep.equal([2]);
      // The bdev is free for another subsystem, the nsid for another bdev.
      await call('nvmf_create_subsystem', { nqn: CNODE2 });
      expect(await call('nvmf_subsystem_add_ns', { nqn: CNODE2, namespace: { bdev_name: 'M0', nsid: 1 } })).to.equal(1);
      expect(await call('nvmf_subsystem_add_ns', { nqn: CNODE1, namespace: { bdev_name: 'M2' } })).to.equal(1);
    });

    it('a deleted bdev\'s namespace is gone (SPDK hot-removes it)', async () => {
      await call('nvmf_subsystem_add_ns', { nqn: CNODE1, namespace: { bdev_name: 'M0' } });
      await call('nvmf_subsystem_add_ns', { nqn: CNODE1, namespace: { bdev_name: 'M1' } });
      if (builtin) bdevs.remove('M0');
      else expect(await call('bdev_malloc_delete', { name: 'M0' })).to.equal(true);
      const [s] = await call<Json[]>('nvmf_get_subsystems', { nqn: CNODE1 });
      expect((s.namespaces as Json[]).map((n) => n.bdev_name)).to.deep.equal(['M1']);
      // A new bdev of the same name is not the namespace's bdev.
      await addBdev('M0', '0a1b2c3d-0000-4000-8000-0000000000ee');
      expect(await call('nvmf_subsystem_add_ns', { nqn: CNODE1, namespace: { bdev_name: 'M0' } })).to.equal(1);
    });
  });

  describe('hosts', () => {
    beforeEach(async () => {
      await call('nvmf_create_subsystem', { nqn: CNODE1 });
    });

    it('adds (newest first, as SPDK lists them), removes, allow_any_host', async () => {
      const uuidHost = 'nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555';
      expect(await call('nvmf_subsystem_add_host', { nqn: CNODE1, host: uuidHost })).to.equal(true);
      expect(await call('nvmf_subsystem_add_host', { nqn: CNODE1, host: HOST1, x: 1 })).to.equal(true);
      // No transport yet: TCP's psk is not looked at.
      expect(await call('nvmf_subsystem_add_host', { nqn: CNODE1, host: 'nqn.2016-06.io.spdk:host3', psk: 'k' })).to.equal(true);
      expect(await call('nvmf_subsystem_add_host', { nqn: DISCOVERY, host: HOST1 })).to.equal(true);
      const [s] = await call<Json[]>('nvmf_get_subsystems', { nqn: CNODE1 });
      expect(s.hosts).to.deep.equal([{ nqn: 'nqn.2016-06.io.spdk:host3' }, { nqn: HOST1 }, { nqn: uuidHost }]);
      if (builtin) expect(backend.subsystems.get(CNODE1)?.hosts).to.deep.equal(['nqn.2016-06.io.spdk:host3', HOST1, uuidHost]);
      expect(await call('nvmf_subsystem_remove_host', { nqn: CNODE1, host: HOST1 })).to.equal(true);
      if (builtin) expect(backend.subsystems.get(CNODE1)?.hosts).to.deep.equal(['nqn.2016-06.io.spdk:host3', uuidHost]);
      expect(await call('nvmf_subsystem_allow_any_host', { nqn: CNODE1, allow_any_host: true })).to.equal(true);
      expect(await call('nvmf_subsystem_allow_any_host', { nqn: CNODE1, allow_any_host: true })).to.equal(true);
      if (builtin) expect(backend.subsystems.get(CNODE1)?.allowAnyHost).to.equal(true);
      expect(await call('nvmf_subsystem_allow_any_host', { nqn: DISCOVERY, allow_any_host: false })).to.equal(true);
      expect((await call<Json[]>('nvmf_get_subsystems'))[0]).to.deep.equal({ ...DISCOVERY_JSON, allow_any_host: false, hosts: [{ nqn: HOST1 }] });
    });

    it('refuses what SPDK refuses, with its answers', async () => {
      await call('nvmf_subsystem_add_host', { nqn: CNODE1, host: HOST1 });
      await expectError('nvmf_subsystem_add_host', { nqn: CNODE1, host: HOST1 }, INTERNAL);
      await expectError('nvmf_subsystem_add_host', { nqn: CNODE1, host: 'badhost' }, INTERNAL);
      await expectError('nvmf_subsystem_add_host', { nqn: 'nqn.2016-06.io.spdk:nope', host: HOST1 }, INVALID);
      await expectError('nvmf_subsystem_add_host', { nqn: CNODE1 }, INVALID);
      await expectError('nvmf_subsystem_add_host', { nqn: CNODE1, host: 'nqn.2016-06.io.spdk:h3', dhchap_key: 'k' }, INVALID);
      await expectError('nvmf_subsystem_add_host', { nqn: CNODE1, host: 'nqn.2016-06.io.spdk:h3', tgt_name: 'foo' }, { code: -32603, message: 'Unable to find a target.' });
      await call('nvmf_create_transport', { trtype: 'tcp' });
      // With the TCP transport, a PSK (TLS) cannot be resolved: no keyring.
      await expectError('nvmf_subsystem_add_host', { nqn: CNODE1, host: 'nqn.2016-06.io.spdk:h3', psk: 'k' }, INTERNAL);
      await expectError('nvmf_subsystem_add_host', { nqn: CNODE1, host: 'nqn.2016-06.io.spdk:h3', psk: 5 }, INTERNAL);
      await expectError('nvmf_subsystem_remove_host', { nqn: CNODE1, host: 'nqn.2016-06.io.spdk:hostX' }, INTERNAL);
      await expectError('nvmf_subsystem_remove_host', { nqn: CNODE1, host: HOST1, x: 1 }, INVALID);
      await expectError('nvmf_subsystem_remove_host', { nqn: 'nqn.2016-06.io.spdk:nope', host: HOST1 }, INVALID);
      await expectError('nvmf_subsystem_allow_any_host', { nqn: CNODE1 }, INVALID);
      await expectError('nvmf_subsystem_allow_any_host', { nqn: CNODE1, allow_any_host: 1 }, INVALID);
      await expectError('nvmf_subsystem_allow_any_host', { nqn: 'nqn.2016-06.io.spdk:nope', allow_any_host: true }, INVALID);
      if (builtin) {
        backend.failNext('setSubsystem', 12);
        await expectError('nvmf_subsystem_add_host', { nqn: CNODE1, host: 'nqn.2016-06.io.spdk:h4' }, INTERNAL);
      }
      expect(await call('nvmf_subsystem_add_host', { nqn: CNODE1, host: 'nqn.2016-06.io.spdk:h4', tgt_name: 'nvmf_tgt' })).to.equal(true);
    });
  });

  describe('listeners', () => {
    beforeEach(async () => {
      await call('nvmf_create_subsystem', { nqn: CNODE1, max_namespaces: 3 });
    });

    it('needs the transport; adds (newest first), one socket per address however many subsystems list it', async () => {
      await expectError('nvmf_subsystem_add_listener', { nqn: CNODE1, listen_address: { trtype: 'tcp', traddr: '127.0.0.1', trsvcid: P0 } }, INVALID);
      await call('nvmf_create_transport', { trtype: 'tcp' });
      expect(await call('nvmf_subsystem_add_listener', { nqn: CNODE1, listen_address: { trtype: 'tcp', traddr: '127.0.0.1', trsvcid: P0 } })).to.equal(true);
      expect(await call('nvmf_subsystem_add_listener', { nqn: CNODE1, listen_address: { trtype: 'tcp', adrfam: 'IPv6', traddr: '::1', trsvcid: P0 } })).to.equal(true);
      expect(await call('nvmf_subsystem_add_listener', { nqn: CNODE1, listen_address: { trtype: 'tcp', traddr: '127.0.0.1', trsvcid: ` +${P1}` }, extra: 1 })).to.equal(true);
      await call('nvmf_create_subsystem', { nqn: CNODE2, allow_any_host: true });
      // SPDK v25.09 crashes (SIGSEGV, NULL sock_impl in spdk_nvmf_transport_listen's strncmp) when a
      // listener opened without sock_impl is added again with one: the libspdk engine's forwarder
      // sends it without sock_impl (docs/differences.md); the builtin engine takes it.
      expect(await call('nvmf_subsystem_add_listener', { nqn: CNODE2, listen_address: { trtype: 'TCP', adrfam: 'ipv4', traddr: '127.0.0.1', trsvcid: P0 }, sock_impl: 'posix' })).to.equal(true);
      expect(await call('nvmf_subsystem_add_listener', { nqn: DISCOVERY, listen_address: { trtype: 'tcp', traddr: '127.0.0.1', trsvcid: P0 } })).to.equal(true);
      if (builtin) expect([...backend.sockets].sort()).to.deep.equal(['127.0.0.1:4420', '127.0.0.1:4421', '::1:4420']);
      const subs = await call<Json[]>('nvmf_get_subsystems');
      expect(subs.map((s) => s.listen_addresses)).to.deep.equal([
        [tcp(P0)],
        [tcp(` +${P1}`), tcp(P0, '::1', 'IPv6'), tcp(P0)],
        [tcp(P0)],
      ]);
      expect(await call('nvmf_subsystem_get_listeners', { nqn: CNODE1 })).to.deep.equal([{ address: tcp(` +${P1}`) }, { address: tcp(P0, '::1', 'IPv6') }, { address: tcp(P0) }]);
      if (builtin) {
        expect(backend.subsystems.get(CNODE1)?.listeners).to.deep.equal([
          { traddr: '127.0.0.1', trsvcid: P1 },
          { traddr: '::1', trsvcid: P0 },
          { traddr: '127.0.0.1', trsvcid: P0 },
        ]);
      }

      // Removing from one subsystem keeps the socket the others list; the last one closes it.
      expect(await call('nvmf_subsystem_remove_listener', { nqn: CNODE1, listen_address: { trtype: 'tcp', traddr: '127.0.0.1', trsvcid: P0 } })).to.equal(true);
      if (builtin) expect(backend.sockets.has('127.0.0.1:4420')).to.equal(true);
      await call('nvmf_delete_subsystem', { nqn: CNODE2 });
      if (builtin) expect(backend.sockets.has('127.0.0.1:4420')).to.equal(true);
      await call('nvmf_subsystem_remove_listener', { nqn: DISCOVERY, listen_address: { trtype: 'tcp', traddr: '127.0.0.1', trsvcid: P0 } });
      if (builtin) expect(backend.sockets.has('127.0.0.1:4420')).to.equal(false);
      await call('nvmf_delete_subsystem', { nqn: CNODE1 });
      if (builtin) expect([...backend.sockets]).to.deep.equal([]);
    });

    it('refuses what SPDK refuses, with its answers', async () => {
      await call('nvmf_create_transport', { trtype: 'tcp' });
      await call('nvmf_subsystem_add_listener', { nqn: CNODE1, listen_address: { trtype: 'tcp', traddr: '127.0.0.1', trsvcid: P0 } });
      const la = (a: Json): Json => ({ nqn: CNODE1, listen_address: { trtype: 'tcp', traddr: '127.0.0.1', trsvcid: P1, ...a } });
      const bad: Json[] = [
        { nqn: CNODE1, listen_address: { trtype: 'tcp', traddr: '127.0.0.1', trsvcid: P0 } },
        { nqn: CNODE1, listen_address: { trtype: 'TCP', adrfam: 'ipv4', traddr: '127.0.0.1', trsvcid: P0 } },
        la({ adrfam: 'ib' }),
        la({ adrfam: 'foo' }),
        la({ trtype: 'rdma' }),
        la({ trtype: 'foo' }),
        la({ trtype: undefined }),
        la({ trsvcid: undefined }),
        la({ trsvcid: '0' }),
        la({ trsvcid: 'abc' }),
        la({ trsvcid: '70000' }),
        la({ traddr: 'not-an-ip' }),
        la({ traddr: '::1' }),
        la({ adrfam: 'ipv6' }),
        la({ extra: 1 }),
        // TLS listeners: not in the builtin target (docs/differences.md); SPDK takes them.
        ...(builtin ? [{ ...la({}), secure_channel: true }] : []),
        { ...la({}), ana_state: 'bogus' },
        { ...la({}), sock_impl: 'bogus' },
        { ...la({}), nqn: 'nqn.2016-06.io.spdk:nope' },
        { nqn: CNODE1 },
        { nqn: CNODE1, listen_address: 'x' },
      ];
      for (const p of bad) await expectError('nvmf_subsystem_add_listener', JSON.parse(JSON.stringify(p)), INVALID);
      await expectError('nvmf_subsystem_add_listener', { ...la({}), tgt_name: 'x' }, { code: -32603, message: 'Unable to find a target.' });
      await call('nvmf_create_subsystem', { nqn: CNODE2, allow_any_host: true });
      await expectError('nvmf_subsystem_add_listener', { ...la({}), nqn: CNODE2, secure_channel: true }, { code: -32603, message: "Cannot establish secure channel, when 'allow_any_host' is set" });

      const rm = (a: Json): Json => ({ nqn: CNODE1, listen_address: { trtype: 'tcp', traddr: '127.0.0.1', trsvcid: P0, ...a } });
      for (const p of [rm({ trsvcid: '4429' }), rm({ trtype: 'rdma' }), { ...rm({}), x: 1 }, { ...rm({}), nqn: 'nqn.2016-06.io.spdk:nope' }, rm({ adrfam: 'IPv6' })]) {
        await expectError('nvmf_subsystem_remove_listener', p, INVALID);
      }
      expect(await call('nvmf_subsystem_remove_listener', { ...rm({}), ana_state: 'whatever' })).to.equal(true);
      await expectError('nvmf_subsystem_remove_listener', rm({}), INVALID);
      await expectError('nvmf_subsystem_get_listeners', { nqn: 'nqn.2016-06.io.spdk:nope' }, INVALID);
      await expectError('nvmf_subsystem_get_listeners', {}, INVALID);
      await expectError('nvmf_subsystem_get_listeners', { nqn: CNODE1, tgt_name: 'x' }, { code: -32603, message: 'Unable to find a target' });
    });

    recordingIt('the engine failing to listen: -32602, nothing listed; failing the subsystem update closes the new socket', async () => {
      await call('nvmf_create_transport', { trtype: 'tcp' });
      backend.failNext('listen', 98);
      await expectError('nvmf_subsystem_add_listener', { nqn: CNODE1, listen_address: { trtype: 'tcp', traddr: '127.0.0.1', trsvcid: P0 } }, INVALID);
      backend.failNext('setSubsystem', 12);
      await expectError('nvmf_subsystem_add_listener', { nqn: CNODE1, listen_address: { trtype: 'tcp', traddr: '127.0.0.1', trsvcid: P0 } }, INVALID);
      if (builtin) expect([...backend.sockets]).to.deep.equal([]);
      expect(await call('nvmf_subsystem_add_listener', { nqn: CNODE1, listen_address: { trtype: 'tcp', traddr: '127.0.0.1', trsvcid: P0 } })).to.equal(true);
    });

    it('ANA: with ana_reporting, each listener lists its state per ANA group', async () => {
      await call('nvmf_create_transport', { trtype: 'tcp' });
      await call('nvmf_create_subsystem', { nqn: 'nqn.2016-06.io.spdk:ana', ana_reporting: true, max_namespaces: 2 });
      await call('nvmf_subsystem_add_listener', { nqn: 'nqn.2016-06.io.spdk:ana', listen_address: { trtype: 'tcp', traddr: '127.0.0.1', trsvcid: P0 }, ana_state: 'Non_Optimized' });
      expect(await call('nvmf_subsystem_get_listeners', { nqn: 'nqn.2016-06.io.spdk:ana' })).to.deep.equal([
        {
          address: tcp(P0),
          ana_states: [
            { ana_group: 1, ana_state: 'non_optimized' },
            { ana_group: 2, ana_state: 'non_optimized' },
          ],
        },
      ]);
    });
  });

  describe('controllers, qpairs, stats', () => {
    recordingIt('SPDK\'s shapes from what the engine reports', async () => {
      await call('nvmf_create_transport', { trtype: 'tcp' });
      await call('nvmf_create_subsystem', { nqn: CNODE1, allow_any_host: true });
      await call('nvmf_subsystem_add_listener', { nqn: CNODE1, listen_address: { trtype: 'tcp', traddr: '127.0.0.1', trsvcid: P0 } });
      expect(await call('nvmf_subsystem_get_controllers', { nqn: CNODE1 })).to.deep.equal([]);
      expect(await call('nvmf_subsystem_get_qpairs', { nqn: CNODE1 })).to.deep.equal([]);
      backend.controllerList = [{ cntlid: 1, hostnqn: HOST1, hostid: 'a9b5e84c-91de-4702-98a9-38cac054b86f', numIoQpairs: 1 }];
      backend.qpairList = [0, 1].map((qid) => ({
        cntlid: 1,
        qid,
        state: 'enabled',
        listenAddress: { traddr: '127.0.0.1', trsvcid: P0 },
        peerAddress: { traddr: '127.0.0.1', trsvcid: String(56654 + qid) },
        reactor: 0,
      }));
      // Observed from nvmf_tgt with spdk_nvme_perf connected (one I/O queue).
      expect(await call('nvmf_subsystem_get_controllers', { nqn: CNODE1 })).to.deep.equal([
        { cntlid: 1, cntrltype: 'io', hostnqn: HOST1, hostid: 'a9b5e84c-91de-4702-98a9-38cac054b86f', num_io_qpairs: 2 },
      ]);
      expect(await call('nvmf_subsystem_get_qpairs', { nqn: CNODE1 })).to.deep.equal(
        [0, 1].map((qid) => ({
          cntlid: 1,
          qid,
          state: 'enabled',
          thread: 'nvmf_tgt_poll_group_000',
          hostnqn: HOST1,
          listen_address: tcp(P0),
          peer_address: tcp(56654 + qid),
        })),
      );
      expect(await call('nvmf_get_stats')).to.deep.equal({
        tick_rate: 2600000000,
        poll_groups: [
          { name: 'nvmf_tgt_poll_group_000', admin_qpairs: 1, io_qpairs: 2, current_admin_qpairs: 1, current_io_qpairs: 1, pending_bdev_io: 0, completed_nvme_io: 42, transports: [{ trtype: 'TCP' }] },
        ],
      });
      for (const m of ['nvmf_subsystem_get_controllers', 'nvmf_subsystem_get_qpairs']) {
        await expectError(m, { nqn: 'nqn.2016-06.io.spdk:nope' }, INVALID);
        await expectError(m, { nqn: CNODE1, x: 1 }, INVALID);
        await expectError(m, undefined, INVALID);
        await expectError(m, { nqn: CNODE1, tgt_name: 'x' }, { code: -32603, message: 'Unable to find a target' });
      }
      await expectError('nvmf_get_stats', { x: 1 }, INVALID);
      await expectError('nvmf_get_stats', { tgt_name: 'x' }, { code: -32603, message: 'Unable to find a target.' });
    });

    recordingIt('an engine without the target answers -95 "Operation not supported"', async () => {
      backend.failNext('stats', 95);
      await expectError('nvmf_get_stats', undefined, EOPNOTSUPP);
      backend.failNext('setSubsystem', 95);
      await expectError('nvmf_create_subsystem', { nqn: CNODE1 }, EOPNOTSUPP);
    });
  });

  describe('start-up options and save_config', () => {
    it('nvmf_set_config, nvmf_set_max_subsystems, nvmf_set_crdt: -1 once the framework is initialised, as SPDK', async () => {
      for (const m of ['nvmf_set_config', 'nvmf_set_max_subsystems', 'nvmf_set_crdt']) await expectError(m, {}, { code: -1, message: NOT_RUNTIME });
    });

    // The startup state (SPDK's --wait-for-rpc) is the recording dispatcher's: Spdk.start has no such state.
    recordingIt('nvmf_set_config, nvmf_set_max_subsystems, nvmf_set_crdt before framework init, as SPDK', async () => {
      start('startup', [0, 1]);
      await expectOnlyError('nvmf_set_crdt', { crdt1: 1, crdt2: 70000 }, INVALID);
      expect(await call('nvmf_set_crdt', { crdt1: 1, crdt3: 5 })).to.equal(true);
      expect(await call('nvmf_set_config', { discovery_filter: 'transport,address' })).to.equal(true);
      await expectOnlyError('nvmf_set_config', { discovery_filter: 'bogus' }, INVALID);
      await expectOnlyError('nvmf_set_config', { discovery_filter: 'match_any,transport' }, INVALID);
      await expectOnlyError('nvmf_set_config', { poll_groups_mask: '0x4' }, INVALID);
      expect(await call('nvmf_set_config', { poll_groups_mask: '0x2' })).to.equal(true);
      expect(await call('nvmf_set_config', { dhchap_digests: ['sha384'], dhchap_dhgroups: ['null', 'ffdhe2048'] })).to.equal(true);
      await expectOnlyError('nvmf_set_config', { dhchap_digests: ['md5'] }, INVALID);
      expect(await call('nvmf_set_config', { admin_cmd_passthru: { identify_ctrlr: true } })).to.equal(true);
      await expectOnlyError('nvmf_set_config', { admin_cmd_passthru: { x: true } }, INVALID);
      await expectOnlyError('nvmf_set_config', { x: 1 }, INVALID);
      expect(await call('nvmf_set_max_subsystems', { max_subsystems: 3 })).to.equal(true);
      dispatcher.setState('runtime');
      await expectError('nvmf_get_subsystems', { x: 1 }, INVALID);
      // Observed from nvmf_tgt (--wait-for-rpc, -m 0x3) after the same calls.
      expect((await call<Json[]>('framework_get_config', { name: 'nvmf' })).slice(0, 3)).to.deep.equal([
        {
          method: 'nvmf_set_config',
          params: {
            discovery_filter: 'transport,address',
            admin_cmd_passthru: { identify_ctrlr: true, vendor_specific: false },
            poll_groups_mask: '2',
            dhchap_digests: ['sha384'],
            dhchap_dhgroups: ['null', 'ffdhe2048'],
          },
        },
        { method: 'nvmf_set_max_subsystems', params: { max_subsystems: 3 } },
        { method: 'nvmf_set_crdt', params: { crdt1: 1, crdt2: 0, crdt3: 5 } },
      ]);
    });

    it('framework_get_config writes the target in SPDK\'s shape and order', async () => {
      const defaults = [
        {
          method: 'nvmf_set_config',
          params: {
            discovery_filter: 'match_any',
            admin_cmd_passthru: { identify_ctrlr: false, vendor_specific: false },
            dhchap_digests: ['sha256', 'sha384', 'sha512'],
            dhchap_dhgroups: ['null', 'ffdhe2048', 'ffdhe3072', 'ffdhe4096', 'ffdhe6144', 'ffdhe8192'],
          },
        },
        { method: 'nvmf_set_max_subsystems', params: { max_subsystems: 1024 } },
        { method: 'nvmf_set_crdt', params: { crdt1: 0, crdt2: 0, crdt3: 0 } },
      ];
      expect(await call('framework_get_config', { name: 'nvmf' })).to.deep.equal(defaults);
      await call('nvmf_create_transport', { trtype: 'tcp' });
      await call('nvmf_create_subsystem', { nqn: 'nqn.2016-06.io.spdk:ana', ana_reporting: true, max_namespaces: 2 });
      await call('nvmf_subsystem_add_ns', { nqn: 'nqn.2016-06.io.spdk:ana', namespace: { bdev_name: 'M2' } });
      await call('nvmf_subsystem_add_listener', { nqn: 'nqn.2016-06.io.spdk:ana', listen_address: { trtype: 'tcp', traddr: '127.0.0.1', trsvcid: P0 } });
      await call('nvmf_create_subsystem', { nqn: CNODE1, allow_any_host: true, max_namespaces: 3 });
      await call('nvmf_subsystem_add_host', { nqn: CNODE1, host: HOST1 });
      await call('nvmf_subsystem_add_host', { nqn: CNODE1, host: 'nqn.2016-06.io.spdk:host2' });
      await call('nvmf_subsystem_add_ns', { nqn: CNODE1, namespace: { bdev_name: 'M1', nsid: 2 } });
      await call('nvmf_subsystem_add_ns', { nqn: CNODE1, namespace: { bdev_name: 'M0', nsid: 3, eui64: '0011223344556677' } });
      await call('nvmf_subsystem_add_listener', { nqn: CNODE1, listen_address: { trtype: 'tcp', traddr: '127.0.0.1', trsvcid: P1 }, sock_impl: 'posix' });
      await call('nvmf_subsystem_add_listener', { nqn: DISCOVERY, listen_address: { trtype: 'tcp', traddr: '127.0.0.1', trsvcid: P0 } });
      const listener = (nqn: string, port: number | string, extra: Json = {}): Json => ({ method: 'nvmf_subsystem_add_listener', params: { nqn, listen_address: tcp(port), secure_channel: false, ...extra } });
      expect(await call('framework_get_config', { name: 'nvmf' })).to.deep.equal([
        ...defaults,
        { method: 'nvmf_create_transport', params: TCP_DEFAULTS },
        listener(DISCOVERY, P0),
        {
          method: 'nvmf_create_subsystem',
          params: { nqn: 'nqn.2016-06.io.spdk:ana', allow_any_host: false, serial_number: '00000000000000000000', model_number: 'SPDK bdev Controller', max_namespaces: 2, min_cntlid: 1, max_cntlid: 65519, ana_reporting: true },
        },
        {
          method: 'nvmf_subsystem_add_ns',
          params: { nqn: 'nqn.2016-06.io.spdk:ana', namespace: { nsid: 1, bdev_name: 'M2', nguid: '0A1B2C3D000040008000000000000003', uuid: UUID3, anagrpid: 1, no_auto_visible: false } },
        },
        listener('nqn.2016-06.io.spdk:ana', P0),
        {
          method: 'nvmf_create_subsystem',
          params: { nqn: CNODE1, allow_any_host: true, serial_number: '00000000000000000000', model_number: 'SPDK bdev Controller', max_namespaces: 3, min_cntlid: 1, max_cntlid: 65519, ana_reporting: false },
        },
        { method: 'nvmf_subsystem_add_host', params: { nqn: CNODE1, host: 'nqn.2016-06.io.spdk:host2' } },
        { method: 'nvmf_subsystem_add_host', params: { nqn: CNODE1, host: HOST1 } },
        { method: 'nvmf_subsystem_add_ns', params: { nqn: CNODE1, namespace: { nsid: 2, bdev_name: 'M1', nguid: '0A1B2C3D000040008000000000000002', uuid: UUID2, no_auto_visible: false } } },
        {
          method: 'nvmf_subsystem_add_ns',
          params: { nqn: CNODE1, namespace: { nsid: 3, bdev_name: 'M0', nguid: '0A1B2C3D000040008000000000000001', eui64: '0011223344556677', uuid: UUID1, no_auto_visible: false } },
        },
        listener(CNODE1, P1, { sock_impl: 'posix' }),
      ]);
      if (builtin) expect(registry.saveConfig().subsystems.map((s) => s.subsystem)).to.deep.equal(['nvmf']);
    });
  });

  describe('concurrency', () => {
    it('a create racing a delete: builtin runs changes one at a time (the create sees the delete finished); SPDK refuses it while the deletion runs', async () => {
      await call('nvmf_create_subsystem', { nqn: CNODE1 });
      const results = await Promise.allSettled([
        call('nvmf_delete_subsystem', { nqn: CNODE1 }),
        call('nvmf_create_subsystem', { nqn: CNODE1 }),
        call('nvmf_create_subsystem', { nqn: CNODE1 }),
      ]);
      const nqns = (await call<Json[]>('nvmf_get_subsystems')).map((x) => x.nqn);
      if (builtin) {
        expect(results.map((r) => r.status)).to.deep.equal(['fulfilled', 'fulfilled', 'rejected']);
        expect(backend.subsystems.has(CNODE1)).to.equal(true);
        expect(nqns).to.include(CNODE1);
      } else {
        // SPDK v25.09 answers the delete once the subsystem is stopped and destroyed, but takes
        // the creates in the meantime, while the NQN is still in its tree.
        expect(results.map((r) => r.status)).to.deep.equal(['fulfilled', 'rejected', 'rejected']);
        for (const r of results.slice(1) as PromiseRejectedResult[]) {
          expect({ code: r.reason.code, message: r.reason.message }).to.deep.equal({ code: -32603, message: `Unable to create subsystem ${CNODE1}` });
        }
        expect(nqns).to.not.include(CNODE1);
      }
    });
  });
}),
);

// ---------------------------------------------------------------------------------------------

/*
 * The same methods on a running target, both engines: claims, listening sockets, connected hosts,
 * save_config and restart. libspdk: SPDK's own server in a child (one per block, reset between
 * tests; a new one after a test that made a transport).
 */
forEachEngine((engine) =>
describe(`nvmf RPC methods on a running target (${engine} engine)`, function () {
  this.timeout(30000);
  const t = useTarget(engine, { tag: 'nvmf-rpc' });
  const builtin = engine === 'builtin';
  const { call, expectError } = helpers(() => t.client, () => t.client.call('bdev_get_bdevs'));
  /** The saved configuration: builtin's own spdk.saveConfig(); on libspdk SPDK's, as rpc.py reads it. */
  const saveConfig = (): Promise<SpdkJsonConfig> => (builtin ? Promise.resolve(t.spdk!.saveConfig()) : t.run(async (spdk) => spdk.rpc.saveConfig()));

  beforeEach(async function () {
    for (const [name, uuid] of [['M0', UUID1], ['M1', UUID2], ['M2', UUID3]]) {
      await call('bdev_malloc_create', { name, num_blocks: 8192, block_size: 512, uuid });
    }
  });

  it('exports a bdev: the bdev is claimed while it is a namespace, free again when removed', async () => {
    await call('nvmf_create_transport', { trtype: 'TCP' });
    await call('nvmf_create_subsystem', { nqn: CNODE1, allow_any_host: true });
    expect(await call('nvmf_subsystem_add_ns', { nqn: CNODE1, namespace: { bdev_name: 'M0' } })).to.equal(1);
    expect((await call<Json[]>('bdev_get_bdevs', { name: 'M0' }))[0].claimed).to.equal(true);
    // Claimed: neither another namespace nor an lvstore can have it.
    await call('nvmf_create_subsystem', { nqn: CNODE2 });
    await expectError('nvmf_subsystem_add_ns', { nqn: CNODE2, namespace: { bdev_name: 'M0' } }, INVALID);
    await call('nvmf_subsystem_remove_ns', { nqn: CNODE1, nsid: 1 });
    expect((await call<Json[]>('bdev_get_bdevs', { name: 'M0' }))[0].claimed).to.equal(false);
    expect(await call('nvmf_subsystem_add_ns', { nqn: CNODE2, namespace: { bdev_name: 'M0', nsid: 5 } })).to.equal(5);
    await call('nvmf_delete_subsystem', { nqn: CNODE2 });
    expect((await call<Json[]>('bdev_get_bdevs', { name: 'M0' }))[0].claimed).to.equal(false);
    // An lvstore's base bdev is claimed by the store: not a namespace; its lvols are, by alias.
    await call('bdev_lvol_create_lvstore', { bdev_name: 'M1', lvs_name: 'lvs0', cluster_sz: 65536 });
    await expectError('nvmf_subsystem_add_ns', { nqn: CNODE1, namespace: { bdev_name: 'M1' } }, INVALID);
    const lvol = await call<string>('bdev_lvol_create', { lvs_name: 'lvs0', lvol_name: 'vol', size_in_mib: 1 });
    expect(await call('nvmf_subsystem_add_ns', { nqn: CNODE1, namespace: { bdev_name: 'lvs0/vol' } })).to.equal(1);
    const [s] = await call<Json[]>('nvmf_get_subsystems', { nqn: CNODE1 });
    expect(s.namespaces).to.deep.equal([{ nsid: 1, bdev_name: lvol, name: lvol, nguid: lvol.replace(/-/g, '').toUpperCase(), uuid: lvol }]);
  });

  it('listens on first use, one socket per address, and stops when no subsystem lists it', async () => {
    const port = await freePort();
    await call('nvmf_create_transport', { trtype: 'tcp' });
    await call('nvmf_create_subsystem', { nqn: CNODE1 });
    await call('nvmf_create_subsystem', { nqn: CNODE2 });
    const la = { trtype: 'tcp', traddr: '127.0.0.1', trsvcid: String(port) };
    expect(await portInUse(port)).to.equal(false);
    await call('nvmf_subsystem_add_listener', { nqn: CNODE1, listen_address: la });
    expect(await portInUse(port)).to.equal(true);
    await call('nvmf_subsystem_add_listener', { nqn: CNODE2, listen_address: la });
    await call('nvmf_delete_subsystem', { nqn: CNODE1 });
    expect(await portInUse(port)).to.equal(true);
    expect(await call('nvmf_subsystem_get_listeners', { nqn: CNODE2 })).to.deep.equal([{ address: tcp(port) }]);
    await call('nvmf_subsystem_remove_listener', { nqn: CNODE2, listen_address: la });
    expect(await portFreed(port)).to.equal(true);
    // A port someone else has: the listen fails, nothing is listed.
    const other = net.createServer();
    await new Promise<void>((r) => other.listen(port, '127.0.0.1', () => r()));
    try {
      await expectError('nvmf_subsystem_add_listener', { nqn: CNODE2, listen_address: la }, INVALID);
    } finally {
      await new Promise((r) => other.close(r));
    }
    // An address this machine does not have.
    await expectError('nvmf_subsystem_add_listener', { nqn: CNODE2, listen_address: { ...la, traddr: '10.255.255.1' } }, INVALID);
  });

  it('get_controllers, get_qpairs with nobody connected; get_stats in SPDK\'s shape', async () => {
    await call('nvmf_create_subsystem', { nqn: CNODE1 });
    expect(await call('nvmf_subsystem_get_controllers', { nqn: CNODE1 })).to.deep.equal([]);
    expect(await call('nvmf_subsystem_get_qpairs', { nqn: CNODE1 })).to.deep.equal([]);
    await call('nvmf_create_transport', { trtype: 'tcp' });
    const stats = await call<{ tick_rate: number; poll_groups: Json[] }>('nvmf_get_stats');
    expect(stats.tick_rate).to.be.a('number').greaterThan(0);
    expect(stats.poll_groups).to.have.length(1);
    expect(stats.poll_groups[0]).to.deep.equal({
      name: 'nvmf_tgt_poll_group_000',
      admin_qpairs: 0,
      io_qpairs: 0,
      current_admin_qpairs: 0,
      current_io_qpairs: 0,
      pending_bdev_io: 0,
      completed_nvme_io: 0,
      transports: [{ trtype: 'TCP' }],
    });
  });

  it('a connected host: its controller, queue pairs and stats; removing the host disconnects it', async () => {
    const port = await freePort();
    const host = uuidHostNqn();
    await call('nvmf_create_transport', { trtype: 'tcp' });
    await call('nvmf_create_subsystem', { nqn: CNODE1 });
    await call('nvmf_subsystem_add_ns', { nqn: CNODE1, namespace: { bdev_name: 'M0' } });
    await call('nvmf_subsystem_add_host', { nqn: CNODE1, host: host.hostnqn });
    await call('nvmf_subsystem_add_listener', { nqn: CNODE1, listen_address: tcp(port) });
    const ctrl = await NvmeTcpController.connect({ host: '127.0.0.1', port, subnqn: CNODE1, hostnqn: host.hostnqn, hostid: host.hostid, ioQueues: 2 });
    try {
      const hostid = [...host.hostid].map((b) => b.toString(16).padStart(2, '0')).join('').replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, '$1-$2-$3-$4-$5');
      // SPDK counts the admin queue in num_io_qpairs.
      expect(await call('nvmf_subsystem_get_controllers', { nqn: CNODE1 })).to.deep.equal([{ cntlid: ctrl.cntlid, cntrltype: 'io', hostnqn: host.hostnqn, hostid, num_io_qpairs: 3 }]);
      const qpairs = await call<Array<Json & { peer_address: Json }>>('nvmf_subsystem_get_qpairs', { nqn: CNODE1 });
      expect(qpairs.map((q) => q.qid).sort()).to.deep.equal([0, 1, 2]);
      for (const q of qpairs) {
        expect(Object.keys(q)).to.deep.equal(['cntlid', 'qid', 'state', 'thread', 'hostnqn', 'listen_address', 'peer_address']);
        expect(q).to.deep.include({ cntlid: ctrl.cntlid, state: 'enabled', thread: 'nvmf_tgt_poll_group_000', hostnqn: host.hostnqn, listen_address: tcp(port) });
        expect(q.peer_address).to.include({ trtype: 'TCP', adrfam: 'IPv4', traddr: '127.0.0.1' });
      }
      const stats = await call<{ poll_groups: Json[] }>('nvmf_get_stats');
      expect(stats.poll_groups[0]).to.include({ current_admin_qpairs: 1, current_io_qpairs: 2 });
      await call('nvmf_subsystem_remove_host', { nqn: CNODE1, host: host.hostnqn });
      const deadline = Date.now() + 5000;
      while ((await call<unknown[]>('nvmf_subsystem_get_controllers', { nqn: CNODE1 })).length > 0) {
        if (Date.now() > deadline) expect.fail('the removed host is still connected');
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      await ctrl.close().catch(() => undefined);
    }
  });

  it('save_config round-trips: a target restarted from it exports the same subsystems', async () => {
    const port = await freePort();
    await call('nvmf_create_transport', { trtype: 'tcp', max_io_size: 262144, in_capsule_data_size: 8192 });
    await call('nvmf_create_subsystem', { nqn: CNODE1, serial_number: 'SPDK0001', model_number: 'spdk-node test', max_namespaces: 8 });
    await call('nvmf_subsystem_add_ns', { nqn: CNODE1, namespace: { bdev_name: 'M0', nsid: 3, eui64: '0011223344556677' } });
    await call('nvmf_subsystem_add_ns', { nqn: CNODE1, namespace: { bdev_name: 'M1', uuid: UUID4 } });
    await call('nvmf_subsystem_add_host', { nqn: CNODE1, host: HOST1 });
    await call('nvmf_subsystem_add_listener', { nqn: CNODE1, listen_address: tcp(port) });
    await call('nvmf_subsystem_add_listener', { nqn: DISCOVERY, listen_address: tcp(port) });
    const saved = await saveConfig();
    // builtin saves what it has; SPDK every subsystem of its framework.
    if (builtin) expect(saved.subsystems.map((s) => s.subsystem)).to.deep.equal(['bdev', 'nvmf']);
    else expect(saved.subsystems.map((s) => s.subsystem)).to.include.members(['bdev', 'nvmf']);
    const subsystems = await call('nvmf_get_subsystems');
    const transports = await call('nvmf_get_transports');
    await t.stop();
    expect(await portFreed(port)).to.equal(true);

    await t.restart({ config: JSON.parse(JSON.stringify(saved)) });
    expect(await call('nvmf_get_subsystems')).to.deep.equal(subsystems);
    expect(await call('nvmf_get_transports')).to.deep.equal(transports);
    expect(await saveConfig()).to.deep.equal(saved);
    expect(await portInUse(port)).to.equal(true);
    await t.stop();
    expect(await portFreed(port)).to.equal(true);
  });

  it('an exported lvol comes back after a restart from save_config (nvmf runs after its store is tasted)', async () => {
    const tmp = tempDir();
    try {
      const file = path.join(tmp.dir, 'lvs.img');
      fs.writeFileSync(file, Buffer.alloc(0));
      fs.truncateSync(file, 16 << 20);
      await call('bdev_aio_create', { name: 'A0', filename: file, block_size: 512 });
      await call('bdev_lvol_create_lvstore', { bdev_name: 'A0', lvs_name: 'lvs0', cluster_sz: 1 << 20 });
      const lvol = await call<string>('bdev_lvol_create', { lvs_name: 'lvs0', lvol_name: 'vol', size_in_mib: 4 });
      await call('nvmf_create_transport', { trtype: 'tcp' });
      await call('nvmf_create_subsystem', { nqn: CNODE1, allow_any_host: true, model_number: lvol });
      expect(await call('nvmf_subsystem_add_ns', { nqn: CNODE1, namespace: { bdev_name: 'lvs0/vol', nsid: 10 } })).to.equal(10);
      const saved = await saveConfig();
      const subsystems = await call('nvmf_get_subsystems');
      await t.restart({ config: saved });
      expect(await call('nvmf_get_subsystems')).to.deep.equal(subsystems);
      const [bdev] = await call<Array<{ claimed: boolean }>>('bdev_get_bdevs', { name: lvol });
      expect(bdev.claimed).to.equal(true);
    } finally {
      await t.stop();
      tmp.cleanup();
    }
  });

  it('spdk.nvmf: export, subsystems, listeners, remove', async () => {
    // spdk.nvmf is an NvmfApi over spdk.rpc (the forwarder on libspdk).
    const spdk = { nvmf: new NvmfApi(t.rpc) };
    const port = await freePort();
    const sub = await spdk.nvmf.export('M2', { nqn: CNODE1, listen: { traddr: '127.0.0.1', trsvcid: port }, hosts: [HOST1], serialNumber: 'SN1' });
    expect(sub.namespaces).to.deep.equal([{ nsid: 1, bdev_name: 'M2', name: 'M2', nguid: '0A1B2C3D000040008000000000000003', uuid: UUID3 }]);
    expect(sub.hosts).to.deep.equal([HOST1]);
    expect(sub.serialNumber).to.equal('SN1');
    expect(sub.listenAddresses).to.deep.equal([tcp(port)]);
    expect((await spdk.nvmf.transports()).map((t) => t.trtype)).to.deep.equal(['TCP']);
    expect((await spdk.nvmf.subsystems()).map((s) => s.nqn)).to.deep.equal([DISCOVERY, CNODE1]);
    const again = await spdk.nvmf.export('M1', { nqn: CNODE1, listen: { traddr: '127.0.0.1', trsvcid: port } });
    expect(again.namespaces.map((n) => n.nsid)).to.deep.equal([1, 2]);
    const after = await (await again.removeNamespace(1)).removeHost(HOST1);
    expect(after.namespaces.map((n) => n.bdev_name)).to.deep.equal(['M1']);
    expect(after.hosts).to.deep.equal([]);
    await spdk.nvmf.export('M1', { nqn: CNODE1, listen: { traddr: '127.0.0.1', trsvcid: port } }).then(
      () => expect.fail('M1 exported twice'),
      (e: JsonRpcError) => expect({ code: e.code, message: e.message }).to.deep.equal(INVALID),
    );
    await after.delete();
    await spdk.nvmf.subsystem(CNODE1).then(
      () => expect.fail('deleted subsystem still there'),
      (e: JsonRpcError) => expect({ code: e.code, message: e.message }).to.deep.equal(ENODEV),
    );
    expect(await portFreed(port)).to.equal(true);
  });
}),
);
