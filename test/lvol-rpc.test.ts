import { expect } from 'chai';
import type { LvolJson, LvstoreJson } from '../lib/rpc/types';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SpdkError } from '../lib';
import { JsonRpcError } from '../lib/rpc';
import type { SpdkJsonConfig } from '../lib/config/subsystems';
import { LvolApi } from '../lib/lvol';
import type { RpcCaller } from '../lib/lvol';
import { fillPattern, tempDir } from './helpers/env';
import { forEachEngine, useTarget } from './helpers/engines';

const MIB = 1024 * 1024;
const DECODE_FAILED = { code: -32603, message: 'spdk_json_decode_object failed' };
const ENODEV = { code: -19, message: 'No such device' };
const EINVAL = { code: -22, message: 'Invalid argument' };
const EEXIST = { code: -17, message: 'File exists' };
const CB_EINVAL = { code: -32602, message: 'Invalid argument' };
const CB_EEXIST = { code: -32602, message: 'File exists' };
const CB_EPERM = { code: -32602, message: 'Operation not permitted' };
const CB_ENOSPC = { code: -32602, message: 'No space left on device' };
const NAME63 = 'n'.repeat(63);
const NAME64 = 'n'.repeat(64);

type Json = Record<string, unknown>;
type Lvs = LvstoreJson;
type LvolEntry = LvolJson;
interface Bdev {
  name: string;
  aliases: string[];
  product_name: string;
  block_size: number;
  num_blocks: number;
  uuid: string;
  claimed: boolean;
  claim_type?: string;
  supported_io_types: Record<string, boolean>;
  driver_specific: { lvol?: Json };
}

/**
 * SPDK v25.09's bdev_lvol_* methods through the Unix socket of a running target, on both engines:
 * results and their shapes, and every bad input answered with SPDK's code and message and
 * changing nothing (lvstores, lvols and bdevs compared before and after). The builtin engine's
 * answers were checked against SPDK v25.09's spdk_tgt (test/interop/differential-bdev.test.ts
 * repeats the common ones against it); on libspdk the socket is SPDK's own server, so the same
 * expectations check them against SPDK in the process. Where the two differ on purpose
 * (docs/differences.md, "lvol methods") the expectation says so, per engine.
 */
forEachEngine((engine) =>
describe(`lvol RPC methods (${engine} engine)`, function () {
  this.timeout(30000);
  const t = useTarget(engine, { tag: 'lvol-rpc' });
  const builtin = engine === 'builtin';
  let tmp: { dir: string; cleanup: () => void };

  beforeEach(async () => {
    tmp = tempDir();
    // 64 MiB: with 1 MiB clusters, room for ~60 data clusters.
    await call('bdev_malloc_create', { name: 'M0', num_blocks: 131072, block_size: 512 });
  });

  afterEach(() => {
    tmp.cleanup();
  });

  /** bdev I/O through the target's own spdk.bdev: writes fillPattern(seed) (`bytes` long) at a block. */
  async function writePattern(name: string, offsetBlocks: number, numBlocks: number, bytes: number, seed: number, flush = false): Promise<Buffer> {
    await t.run(
      async (spdk, a, require) => {
        const { fillPattern } = require('./env');
        const h = await spdk.bdev.open(a.name);
        try {
          const buf = spdk.allocBuffer(a.bytes);
          fillPattern(buf.bytes, a.seed);
          await h.write(buf, { offsetBlocks: a.offsetBlocks, numBlocks: a.numBlocks });
          if (a.flush) await h.flush();
        } finally {
          await h.close();
        }
      },
      { name, offsetBlocks, numBlocks, bytes, seed, flush },
    );
    const expected = Buffer.alloc(bytes);
    fillPattern(expected, seed);
    return expected;
  }

  /** Reads `bytes` at a block through the target's own spdk.bdev. */
  async function readBytes(name: string, offsetBlocks: number, numBlocks: number, bytes: number): Promise<Buffer> {
    const b64 = await t.run(
      async (spdk, a) => {
        const h = await spdk.bdev.open(a.name);
        try {
          const buf = spdk.allocBuffer(a.bytes);
          await h.read(buf, { offsetBlocks: a.offsetBlocks, numBlocks: a.numBlocks });
          return Buffer.from(buf.bytes).toString('base64');
        } finally {
          await h.close();
        }
      },
      { name, offsetBlocks, numBlocks, bytes },
    );
    return Buffer.from(b64, 'base64');
  }

  function call<T = unknown>(method: string, params?: unknown): Promise<T> {
    return t.client.call(method, params) as Promise<T>;
  }

  /**
   * Where the legacy lvol `size` (bytes) is taken (docs/differences.md): the builtin engine's
   * methods, so its socket; on libspdk, spdk.rpc's forwarder, which sends it to SPDK as
   * size_in_mib (SPDK's own socket answers -32603, as SPDK v25.09 does: docs/libspdk.md).
   */
  const legacyCaller = (): RpcCaller => (builtin ? t.client : t.rpc);
  const legacy = <T = unknown>(method: string, params: unknown): Promise<T> => legacyCaller().call(method, params) as Promise<T>;

  async function state(): Promise<string> {
    // Pipelined: SPDK's RPC server answers what it has read once per poll (every 4 ms).
    return JSON.stringify(await Promise.all([call('bdev_lvol_get_lvstores'), call('bdev_lvol_get_lvols'), call('bdev_get_bdevs')]));
  }

  /** Calls and expects exactly this error, with lvstores, lvols and bdevs unchanged. */
  async function expectError(method: string, params: unknown, want: { code: number; message: string | RegExp }, via: RpcCaller = t.client): Promise<void> {
    const before = await state();
    const err = await via.call(method, params).then(
      (r) => expect.fail(`${method} ${JSON.stringify(params)} succeeded with ${JSON.stringify(r)}`),
      (e: unknown) => e,
    );
    expect(err, `${method} ${JSON.stringify(params)}`).to.be.instanceOf(JsonRpcError);
    const e = err as JsonRpcError;
    expect({ code: e.code, message: e.message }, `${method} ${JSON.stringify(params)}`).to.deep.equal({
      code: want.code,
      message: typeof want.message === 'string' ? want.message : e.message,
    });
    if (typeof want.message !== 'string') expect(e.message).to.match(want.message);
    expect(await state(), `${method} ${JSON.stringify(params)}: nothing changed`).to.equal(before);
  }

  /** The error a call answers (fails the test if it succeeds). */
  async function rpcError(method: string, params: unknown): Promise<{ code: number; message: string }> {
    const e = await t.client.call(method, params).then(
      (r) => expect.fail(`${method} ${JSON.stringify(params)} succeeded with ${JSON.stringify(r)}`),
      (err: JsonRpcError) => err,
    );
    expect(e).to.be.instanceOf(JsonRpcError);
    return { code: e.code, message: e.message };
  }

  async function store(name = 'lvs0', clusterSize = MIB, bdev = 'M0'): Promise<Lvs> {
    const uuid = await call<string>('bdev_lvol_create_lvstore', { bdev_name: bdev, lvs_name: name, cluster_sz: clusterSize });
    const [s] = await call<Lvs[]>('bdev_lvol_get_lvstores', { uuid });
    return s;
  }

  async function lvol(name: string, sizeMiB: number, extra: Json = {}, lvs = 'lvs0'): Promise<string> {
    return call<string>('bdev_lvol_create', { lvs_name: lvs, lvol_name: name, size_in_mib: sizeMiB, ...extra });
  }

  async function bdev(name: string): Promise<Bdev> {
    return (await call<Bdev[]>('bdev_get_bdevs', { name }))[0];
  }

  async function lvolEntry(uuid: string): Promise<LvolEntry> {
    const all = await call<LvolEntry[]>('bdev_lvol_get_lvols');
    const e = all.find((l) => l.uuid === uuid);
    if (!e) throw new Error(`${uuid} not in bdev_lvol_get_lvols`);
    return e;
  }

  async function free(): Promise<number> {
    return (await call<Lvs[]>('bdev_lvol_get_lvstores'))[0].free_clusters;
  }

  const uuidRe = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

  describe('bdev_lvol_create_lvstore', () => {
    it('creates a store: its UUID, SPDK\'s bdev_lvol_get_lvstores entry, the base bdev claimed', async () => {
      const uuid = await call<string>('bdev_lvol_create_lvstore', { bdev_name: 'M0', lvs_name: 'lvs0', cluster_sz: MIB });
      expect(uuid).to.match(uuidRe);
      const list = await call<Lvs[]>('bdev_lvol_get_lvstores');
      expect(list).to.have.length(1);
      expect(Object.keys(list[0])).to.deep.equal(['uuid', 'name', 'base_bdev', 'total_data_clusters', 'free_clusters', 'block_size', 'cluster_size']);
      expect(list[0]).to.include({ uuid, name: 'lvs0', base_bdev: 'M0', block_size: 512, cluster_size: MIB });
      expect(list[0].free_clusters).to.equal(list[0].total_data_clusters);
      // 64 MiB less the metadata clusters.
      expect(list[0].total_data_clusters).to.be.within(56, 63);
      const m0 = await bdev('M0');
      expect(m0.claimed).to.equal(true);
      expect(m0.claim_type).to.equal('read_many_write_one');
      // The deprecated alias answers the same.
      expect(await call('get_lvol_stores')).to.deep.equal(list);
    });

    it('defaults: 4 MiB clusters; clear_method matched case-insensitively', async () => {
      await call('bdev_lvol_create_lvstore', { bdev_name: 'M0', lvs_name: 'lvs0', clear_method: 'Write_Zeroes' });
      const [s] = await call<Lvs[]>('bdev_lvol_get_lvstores');
      expect(s.cluster_size).to.equal(4 * MIB);
      for (const cm of ['none', 'UNMAP']) {
        await call('bdev_malloc_create', { name: `B${cm}`, num_blocks: 16384, block_size: 512 });
        await call('bdev_lvol_create_lvstore', { bdev_name: `B${cm}`, lvs_name: `lvs-${cm}`, clear_method: cm, cluster_sz: MIB });
      }
      expect((await call<Lvs[]>('bdev_lvol_get_lvstores')).map((x) => x.name)).to.deep.equal(['lvs0', 'lvs-none', 'lvs-UNMAP']);
    });

    it('decode failures answer -32603', async () => {
      const ok = { bdev_name: 'M0', lvs_name: 'lvs0' };
      for (const params of [
        undefined,
        [],
        {},
        { bdev_name: 'M0' },
        { lvs_name: 'lvs0' },
        { ...ok, cluster_sz: '4096' },
        { ...ok, cluster_sz: -1 },
        { ...ok, cluster_sz: 2 ** 32 },
        { ...ok, cluster_sz: 1.5 },
        { ...ok, clear_method: 1 },
        { ...ok, lvs_name: null },
        { ...ok, md_page_size: 'x' },
        { ...ok, num_md_pages_per_cluster_ratio: -1 },
        { ...ok, colour: 'red' },
      ]) {
        await expectError('bdev_lvol_create_lvstore', params, DECODE_FAILED);
      }
    });

    it('SPDK\'s early checks answer -errno, in SPDK\'s order', async () => {
      await expectError('bdev_lvol_create_lvstore', { bdev_name: 'M0', lvs_name: 'x', clear_method: 'zero' }, { code: -22, message: 'Invalid clear_method parameter' });
      await expectError('bdev_lvol_create_lvstore', { bdev_name: 'nope', lvs_name: 'x', clear_method: 'zero' }, { code: -22, message: 'Invalid clear_method parameter' });
      await expectError('bdev_lvol_create_lvstore', { bdev_name: 'M0', lvs_name: '' }, EINVAL);
      await expectError('bdev_lvol_create_lvstore', { bdev_name: 'M0', lvs_name: NAME64 }, EINVAL);
      await expectError('bdev_lvol_create_lvstore', { bdev_name: 'M0', lvs_name: 'é'.repeat(32) }, EINVAL); // 64 bytes
      await expectError('bdev_lvol_create_lvstore', { bdev_name: 'nope', lvs_name: '' }, EINVAL);
      await expectError('bdev_lvol_create_lvstore', { bdev_name: 'M0', lvs_name: 'x', md_page_size: 1000 }, EINVAL);
      await expectError('bdev_lvol_create_lvstore', { bdev_name: 'M0', lvs_name: 'x', md_page_size: 3 * 4096 }, EINVAL);
      await expectError('bdev_lvol_create_lvstore', { bdev_name: 'nope', lvs_name: 'x' }, ENODEV);
      await expectError('bdev_lvol_create_lvstore', { bdev_name: 'M0', lvs_name: 'x', cluster_sz: 1000 }, EINVAL);
      await expectError('bdev_lvol_create_lvstore', { bdev_name: 'M0', lvs_name: 'x', cluster_sz: 256 }, EINVAL);
      await store('lvs0');
      // The base is claimed now.
      await expectError('bdev_lvol_create_lvstore', { bdev_name: 'M0', lvs_name: 'x' }, { code: -1, message: 'Operation not permitted' });
      await call('bdev_malloc_create', { name: 'M1', num_blocks: 16384, block_size: 512 });
      await expectError('bdev_lvol_create_lvstore', { bdev_name: 'M1', lvs_name: 'lvs0' }, EEXIST);
      // The claim is checked before the name.
      await expectError('bdev_lvol_create_lvstore', { bdev_name: 'M0', lvs_name: 'lvs0' }, { code: -1, message: 'Operation not permitted' });
    });

    it('geometry the store cannot have answers -32602 "Invalid argument"', async () => {
      await call('bdev_malloc_create', { name: 'Small', num_blocks: 2048, block_size: 512 }); // 1 MiB
      for (const params of [
        { bdev_name: 'M0', lvs_name: 'x', cluster_sz: 2048 }, // below 4 KiB
        { bdev_name: 'M0', lvs_name: 'x', cluster_sz: 128 * MIB }, // larger than the bdev
        { bdev_name: 'Small', lvs_name: 'x' }, // 4 MiB default cluster on 1 MiB
        { bdev_name: 'M0', lvs_name: 'x', cluster_sz: 4096, md_page_size: 8192 }, // cluster smaller than an md page
      ]) {
        await expectError('bdev_lvol_create_lvstore', params, CB_EINVAL);
      }
      // Not a power of two: refused by the builtin store's format, taken by SPDK (docs/differences.md).
      const notPow2 = { bdev_name: 'M0', lvs_name: 'x', cluster_sz: 12288 };
      if (builtin) await expectError('bdev_lvol_create_lvstore', notPow2, CB_EINVAL);
      else expect((await store('x', 12288)).cluster_size).to.equal(12288);
    });

    it('accepts SPDK\'s metadata tuning parameters', async () => {
      await call('bdev_lvol_create_lvstore', { bdev_name: 'M0', lvs_name: 'x', cluster_sz: MIB, num_md_pages_per_cluster_ratio: 200, md_page_size: 4096 });
      expect(await call<Lvs[]>('bdev_lvol_get_lvstores')).to.have.length(1);
    });

    it('a concurrent duplicate gets the same answer as a sequential one', async () => {
      await call('bdev_malloc_create', { name: 'M1', num_blocks: 16384, block_size: 512 });
      const results = await Promise.allSettled([
        call('bdev_lvol_create_lvstore', { bdev_name: 'M0', lvs_name: 'same', cluster_sz: MIB }),
        call('bdev_lvol_create_lvstore', { bdev_name: 'M1', lvs_name: 'same', cluster_sz: MIB }),
      ]);
      expect(results.map((r) => r.status).sort()).to.deep.equal(['fulfilled', 'rejected']);
      const failed = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      expect({ code: failed.reason.code, message: failed.reason.message }).to.deep.equal(EEXIST);
      expect(await call<Lvs[]>('bdev_lvol_get_lvstores')).to.have.length(1);
    });
  });

  describe('bdev_lvol_get_lvstores / get_lvols selection', () => {
    it('by uuid (either case) or lvs_name; exactly one of them', async () => {
      const s = await store('lvs0');
      expect(await call('bdev_lvol_get_lvstores', { uuid: s.uuid.toUpperCase() })).to.deep.equal([s]);
      expect(await call('bdev_lvol_get_lvstores', { lvs_name: 'lvs0' })).to.deep.equal([s]);
      await expectError('bdev_lvol_get_lvstores', {}, EINVAL);
      await expectError('bdev_lvol_get_lvstores', { uuid: s.uuid, lvs_name: 'lvs0' }, EINVAL);
      await expectError('bdev_lvol_get_lvstores', { lvs_name: 'nope' }, ENODEV);
      await expectError('bdev_lvol_get_lvstores', { uuid: 'nope' }, ENODEV);
      await expectError('bdev_lvol_get_lvstores', { uuid: '00000000-0000-0000-0000-000000000000' }, ENODEV);
      await expectError('bdev_lvol_get_lvstores', { uuid: 5 }, DECODE_FAILED);
      await expectError('bdev_lvol_get_lvstores', { x: 1 }, DECODE_FAILED);
      await expectError('bdev_lvol_get_lvstores', [], DECODE_FAILED);

      await expectError('bdev_lvol_get_lvols', {}, EINVAL);
      await expectError('bdev_lvol_get_lvols', { lvs_uuid: s.uuid, lvs_name: 'lvs0' }, EINVAL);
      await expectError('bdev_lvol_get_lvols', { lvs_name: 'nope' }, ENODEV);
      await expectError('bdev_lvol_get_lvols', { uuid: s.uuid }, DECODE_FAILED);
      expect(await call('bdev_lvol_get_lvols', { lvs_uuid: s.uuid })).to.deep.equal([]);
    });

    it('get_lvols lists store by store, each in creation order, with SPDK\'s keys', async () => {
      const a = await store('a');
      await call('bdev_malloc_create', { name: 'M1', num_blocks: 32768, block_size: 512 });
      const b = await store('b', MIB, 'M1');
      const b1 = await lvol('b1', 1, {}, 'b');
      const a1 = await lvol('a1', 2, { thin_provision: true }, 'a');
      const a2 = await lvol('a2', 1, {}, 'a');
      const all = await call<LvolEntry[]>('bdev_lvol_get_lvols');
      expect(all.map((l) => l.alias)).to.deep.equal(['a/a1', 'a/a2', 'b/b1']);
      expect(Object.keys(all[0])).to.deep.equal([
        'alias', 'uuid', 'name', 'is_thin_provisioned', 'is_snapshot', 'is_clone', 'is_esnap_clone', 'is_degraded', 'num_allocated_clusters', 'lvs',
      ]);
      expect(all[0]).to.deep.equal({
        alias: 'a/a1', uuid: a1, name: 'a1', is_thin_provisioned: true, is_snapshot: false, is_clone: false,
        is_esnap_clone: false, is_degraded: false, num_allocated_clusters: 0, lvs: { name: 'a', uuid: a.uuid },
      });
      expect(all[1]).to.include({ uuid: a2, is_thin_provisioned: false, num_allocated_clusters: 1 });
      expect(await call('bdev_lvol_get_lvols', { lvs_name: 'b' })).to.deep.equal([all[2]]);
      expect(all[2]).to.include({ uuid: b1 });
      expect(all[2].lvs).to.deep.equal({ name: 'b', uuid: b.uuid });
    });
  });

  describe('bdev_lvol_create', () => {
    it('creates a thick lvol: its UUID is the bdev name, the alias is <lvs>/<name>, SPDK\'s bdev_get_bdevs entry', async () => {
      const s = await store();
      const uuid = await lvol('vol1', 4);
      expect(uuid).to.match(uuidRe);
      const b = await bdev(uuid);
      expect(b).to.include({ name: uuid, uuid, product_name: 'Logical Volume', block_size: 512, num_blocks: 8192, claimed: false });
      expect(b.aliases).to.deep.equal(['lvs0/vol1']);
      expect(b).to.not.have.property('claim_type');
      expect(b.driver_specific).to.deep.equal({
        lvol: { lvol_store_uuid: s.uuid, base_bdev: 'M0', thin_provision: false, num_allocated_clusters: 4, snapshot: false, clone: false, esnap_clone: false },
      });
      expect(Object.keys(b.driver_specific.lvol as Json)).to.deep.equal(['lvol_store_uuid', 'base_bdev', 'thin_provision', 'num_allocated_clusters', 'snapshot', 'clone', 'esnap_clone']);
      expect(b.supported_io_types).to.include({ read: true, write: true, unmap: true, write_zeroes: true });
      // As SPDK reports the malloc base's memory domains for its lvols.
      expect((b as unknown as Json).memory_domains).to.deep.equal((await bdev('M0') as unknown as Json).memory_domains);
      expect(await bdev('lvs0/vol1')).to.deep.equal(b);
      expect(await free()).to.equal(s.free_clusters - 4);
      // Listed after its base bdev, in creation order.
      expect((await call<Bdev[]>('bdev_get_bdevs')).map((x) => x.name)).to.deep.equal(['M0', uuid]);
    });

    it('thin lvols take no clusters; sizes round up to whole clusters; 0 is a size', async () => {
      const s = await store();
      const thin = await lvol('thin', 1000, { thin_provision: true, clear_method: 'NONE' });
      expect((await bdev(thin)).driver_specific.lvol).to.include({ thin_provision: true, num_allocated_clusters: 0 });
      expect((await bdev(thin)).num_blocks).to.equal((1000 * MIB) / 512);
      expect(await free()).to.equal(s.free_clusters);
      const zero = await lvol('zero', 0);
      expect((await bdev(zero)).num_blocks).to.equal(0);
      // The legacy size in bytes rounds up to a cluster, as SPDK did.
      const odd = await legacy<string>('bdev_lvol_create', { uuid: s.uuid, lvol_name: 'odd', size: MIB + 1 });
      expect((await bdev(odd)).num_blocks).to.equal((2 * MIB) / 512);
      expect(await free()).to.equal(s.free_clusters - 2);
    });

    it('legacy size (bytes), as OpenStack Cinder and spdk-csi send it; both sizes must agree', async () => {
      const s = await store();
      // Cinder: {lvol_name, size, uuid}; spdk-csi: {lvol_name, size, lvs_name, clear_method, thin_provision}.
      const cinder = await legacy<string>('bdev_lvol_create', { lvol_name: 'volume-1', size: 3 * MIB, uuid: s.uuid });
      const csi = await legacy<string>('bdev_lvol_create', { lvol_name: 'pvc-1', size: 8 * MIB, lvs_name: 'lvs0', clear_method: 'unmap', thin_provision: true });
      expect((await bdev(cinder)).num_blocks * 512).to.equal(3 * MIB);
      expect((await bdev(csi)).num_blocks * 512).to.equal(8 * MIB);
      const bothAgree = { lvol_name: 'both', size: 2 * MIB, size_in_mib: 2, lvs_name: 'lvs0' };
      const disagree = { lvol_name: 'x', size: 2 * MIB, size_in_mib: 3, lvs_name: 'lvs0' };
      // Both keys: the builtin engine's methods and the libspdk engine's forwarder answer alike.
      const both = await legacy<string>('bdev_lvol_create', bothAgree);
      expect((await bdev(both)).num_blocks * 512).to.equal(2 * MIB);
      await expectError('bdev_lvol_create', disagree, { code: -32602, message: /^Invalid parameters: size .* and size_in_mib .* disagree/ }, legacyCaller());
      await expectError('bdev_lvol_create', { lvol_name: 'x', size: '2097152', lvs_name: 'lvs0' }, DECODE_FAILED, legacyCaller());
      await expectError('bdev_lvol_create', { lvol_name: 'x', size: -1, lvs_name: 'lvs0' }, DECODE_FAILED, legacyCaller());
      await expectError('bdev_lvol_create', { lvol_name: 'x', lvs_name: 'lvs0' }, DECODE_FAILED, legacyCaller());
    });

    it('decode failures answer -32603', async () => {
      const s = await store();
      const ok = { lvol_name: 'x', size_in_mib: 1, uuid: s.uuid };
      for (const params of [
        undefined,
        [],
        {},
        { size_in_mib: 1, uuid: s.uuid },
        { ...ok, size_in_mib: '1' },
        { ...ok, size_in_mib: -1 },
        { ...ok, size_in_mib: 1.5 },
        { ...ok, size_in_mib: null },
        { ...ok, thin_provision: 'yes' },
        { ...ok, uuid: null },
        { ...ok, lvs_name: 5 },
        { ...ok, clear_method: null },
        { ...ok, lvol_name: ['x'] },
        { ...ok, extra: 1 },
      ]) {
        await expectError('bdev_lvol_create', params, DECODE_FAILED);
      }
    });

    it('SPDK\'s early checks answer -errno', async () => {
      const s = await store();
      await lvol('taken', 1);
      await expectError('bdev_lvol_create', { lvol_name: 'x', size_in_mib: 1 }, EINVAL);
      await expectError('bdev_lvol_create', { lvol_name: 'x', size_in_mib: 1, uuid: s.uuid, lvs_name: 'lvs0' }, EINVAL);
      await expectError('bdev_lvol_create', { lvol_name: 'x', size_in_mib: 1, lvs_name: 'nope' }, ENODEV);
      await expectError('bdev_lvol_create', { lvol_name: 'x', size_in_mib: 1, uuid: 'nope' }, ENODEV);
      await expectError('bdev_lvol_create', { lvol_name: 'x', size_in_mib: 1, lvs_name: 'lvs0', clear_method: 'zero' }, { code: -22, message: 'Invalid clean_method option' });
      await expectError('bdev_lvol_create', { lvol_name: '', size_in_mib: 1, lvs_name: 'lvs0' }, EINVAL);
      await expectError('bdev_lvol_create', { lvol_name: NAME64, size_in_mib: 1, lvs_name: 'lvs0' }, EINVAL);
      await expectError('bdev_lvol_create', { lvol_name: 'taken', size_in_mib: 1, lvs_name: 'lvs0' }, EEXIST);
      await expectError('bdev_lvol_create', { lvol_name: 'taken', size_in_mib: 1, lvs_name: 'lvs0', thin_provision: true }, EEXIST);
      // 63 bytes, and '/' inside a name, are fine.
      await lvol(NAME63, 1);
      const slash = await lvol('a/b', 1);
      expect((await bdev(slash)).aliases).to.deep.equal(['lvs0/a/b']);
    });

    it('out of space answers -32602 "No space left on device" and takes nothing', async () => {
      const s = await store();
      await expectError('bdev_lvol_create', { lvol_name: 'big', size_in_mib: s.free_clusters + 1, lvs_name: 'lvs0' }, CB_ENOSPC);
      await lvol('all', s.free_clusters);
      expect(await free()).to.equal(0);
      await expectError('bdev_lvol_create', { lvol_name: 'one', size_in_mib: 1, lvs_name: 'lvs0' }, CB_ENOSPC);
      // A thin lvol needs no free cluster to be created.
      await lvol('thin', 10, { thin_provision: true });
    });

    it('a bdev already named <lvs>/<name> makes the alias fail: -32602 "File exists"', async () => {
      await store();
      await call('bdev_malloc_create', { name: 'lvs0/x', num_blocks: 16, block_size: 512 });
      await expectError('bdev_lvol_create', { lvol_name: 'x', size_in_mib: 1, lvs_name: 'lvs0' }, CB_EEXIST);
    });

    it('a concurrent duplicate name gets -17, as SPDK\'s pending-lvol check gives', async () => {
      await store();
      const results = await Promise.allSettled([lvol('dup', 1), lvol('dup', 1), lvol('dup', 1, { thin_provision: true })]);
      expect(results.filter((r) => r.status === 'fulfilled')).to.have.length(1);
      for (const r of results.filter((x): x is PromiseRejectedResult => x.status === 'rejected')) {
        expect({ code: r.reason.code, message: r.reason.message }).to.deep.equal(EEXIST);
      }
      expect(await call<LvolEntry[]>('bdev_lvol_get_lvols')).to.have.length(1);
    });
  });

  describe('bdev_lvol_resize', () => {
    it('grows and shrinks, in MiB or legacy bytes; free clusters follow', async () => {
      const s = await store();
      const v = await lvol('v', 4);
      await call('bdev_lvol_resize', { name: v, size_in_mib: 10 });
      expect((await bdev(v)).num_blocks).to.equal((10 * MIB) / 512);
      expect(await free()).to.equal(s.free_clusters - 10);
      await legacy('bdev_lvol_resize', { name: 'lvs0/v', size: 2 * MIB });
      expect((await bdev(v)).num_blocks).to.equal((2 * MIB) / 512);
      expect(await free()).to.equal(s.free_clusters - 2);
      await legacy('bdev_lvol_resize', { name: v, size: 3 * MIB + 7 });
      expect((await bdev(v)).num_blocks).to.equal((4 * MIB) / 512);
      await call('bdev_lvol_resize', { name: v, size_in_mib: 0 });
      expect((await bdev(v)).num_blocks).to.equal(0);
      expect(await free()).to.equal(s.free_clusters);
      // Thin: grows without taking clusters.
      const t = await lvol('t', 1, { thin_provision: true });
      await call('bdev_lvol_resize', { name: t, size_in_mib: 1000 });
      expect(await free()).to.equal(s.free_clusters);
    });

    it('bad input: decode -32603, unknown -19, out of space -32602, disagreeing sizes -32602', async () => {
      const s = await store();
      const v = await lvol('v', 4);
      for (const params of [
        undefined,
        {},
        { name: v },
        { size_in_mib: 4 },
        { name: v, size_in_mib: -1 },
        { name: v, size_in_mib: '8' },
        { name: v, size_in_mib: 1.5 },
        { name: v, size_in_mib: null },
        { name: v, size: -4096 },
        { name: v, size_in_mib: 8, extra: true },
      ]) {
        await expectError('bdev_lvol_resize', params, DECODE_FAILED);
      }
      await expectError('bdev_lvol_resize', { name: 'nope', size_in_mib: 8 }, ENODEV);
      await expectError('bdev_lvol_resize', { name: 'M0', size_in_mib: 8 }, ENODEV);
      await expectError('bdev_lvol_resize', { name: v, size_in_mib: s.free_clusters + 5 }, CB_ENOSPC);
      // SPDK's own socket (libspdk) has no `size` at all: its decoder refuses the call.
      await expectError('bdev_lvol_resize', { name: v, size_in_mib: 8, size: 4 * MIB }, builtin ? { code: -32602, message: /disagree/ } : DECODE_FAILED);
    });
  });

  describe('bdev_lvol_set_read_only', () => {
    it('makes writes fail and the lvol immutable; idempotent', async () => {
      await store();
      const v = await lvol('v', 2);
      // Data written before stays readable.
      const written = await writePattern(v, 0, 8, 4096, 5);

      expect(await call('bdev_lvol_set_read_only', { name: v })).to.equal(true);
      expect(await call('bdev_lvol_set_read_only', { name: 'lvs0/v' })).to.equal(true);
      const b = await bdev(v);
      expect(b.supported_io_types).to.include({ read: true, write: false, unmap: false, write_zeroes: false });

      const ro = await t.run(
        async (spdk, name, require) => {
          const { SpdkError } = require('../../lib');
          const h = await spdk.bdev.open(name);
          try {
            const other = spdk.allocBuffer(4096);
            other.bytes.fill(0xee);
            const err = await h.write(other, { offsetBlocks: 0, numBlocks: 8 }).then(() => 'write to a read-only lvol succeeded', (e: Error) => (e instanceof SpdkError ? 'SpdkError' : String(e)));
            const back = spdk.allocBuffer(4096);
            await h.read(back, { offsetBlocks: 0, numBlocks: 8 });
            return { err, back: Buffer.from(back.bytes).toString('base64') };
          } finally {
            await h.close();
          }
        },
        v,
      );
      expect(ro.err).to.equal('SpdkError');
      expect(Buffer.from(ro.back, 'base64').equals(written)).to.equal(true);

      await expectError('bdev_lvol_resize', { name: v, size_in_mib: 4 }, CB_EPERM);
      await expectError('bdev_lvol_set_read_only', { name: 'nope' }, ENODEV);
      await expectError('bdev_lvol_set_read_only', { name: 'M0' }, ENODEV);
      await expectError('bdev_lvol_set_read_only', {}, DECODE_FAILED);
      await expectError('bdev_lvol_set_read_only', undefined, DECODE_FAILED);
    });
  });

  describe('bdev_lvol_rename', () => {
    it('renames the lvol and its alias; the UUID stays', async () => {
      await store();
      const v = await lvol('v', 1);
      expect(await call('bdev_lvol_rename', { old_name: 'lvs0/v', new_name: 'w' })).to.equal(true);
      expect((await bdev(v)).aliases).to.deep.equal(['lvs0/w']);
      expect(await lvolEntry(v)).to.include({ name: 'w', alias: 'lvs0/w' });
      await expectError('bdev_get_bdevs', { name: 'lvs0/v' }, ENODEV);
      // By UUID, to a 63-byte name.
      await call('bdev_lvol_rename', { old_name: v, new_name: NAME63 });
      expect((await bdev(v)).aliases).to.deep.equal([`lvs0/${NAME63}`]);
    });

    it('bad input answers SPDK\'s errors and changes nothing', async () => {
      await store();
      const v = await lvol('v', 1);
      await lvol('other', 1);
      await expectError('bdev_lvol_rename', { old_name: 'nope', new_name: 'x' }, ENODEV);
      await expectError('bdev_lvol_rename', { old_name: 'M0', new_name: 'x' }, ENODEV);
      await expectError('bdev_lvol_rename', { old_name: v, new_name: 'other' }, CB_EEXIST);
      // SPDK adds the new alias first: the lvol's own name is taken too.
      await expectError('bdev_lvol_rename', { old_name: v, new_name: 'v' }, CB_EEXIST);
      await expectError('bdev_lvol_rename', { old_name: v }, DECODE_FAILED);
      await expectError('bdev_lvol_rename', { old_name: v, new_name: 5 }, DECODE_FAILED);
      // Refused by the builtin engine, taken (and truncated) by SPDK: docs/differences.md.
      if (builtin) {
        await expectError('bdev_lvol_rename', { old_name: v, new_name: '' }, CB_EINVAL);
        await expectError('bdev_lvol_rename', { old_name: v, new_name: NAME64 }, CB_EINVAL);
      } else {
        expect(await call('bdev_lvol_rename', { old_name: v, new_name: '' })).to.equal(true);
        expect((await bdev(v)).aliases).to.deep.equal(['lvs0/']);
        expect(await call('bdev_lvol_rename', { old_name: v, new_name: NAME64 })).to.equal(true);
        // The alias in full, the lvol's name truncated to 63 bytes.
        expect((await bdev(v)).aliases).to.deep.equal([`lvs0/${NAME64}`]);
        expect(await lvolEntry(v)).to.include({ name: NAME63 });
      }
    });

    it('a read-only lvol: -32602 "Operation not permitted", and its alias is not renamed (SPDK renames it)', async () => {
      await store();
      const v = await lvol('v', 1);
      await call('bdev_lvol_set_read_only', { name: v });
      if (builtin) {
        await expectError('bdev_lvol_rename', { old_name: v, new_name: 'w' }, CB_EPERM);
        expect((await bdev(v)).aliases).to.deep.equal(['lvs0/v']);
        expect(await lvolEntry(v)).to.include({ name: 'v' });
        await expectError('bdev_get_bdevs', { name: 'lvs0/w' }, ENODEV);
      } else {
        // SPDK v25.09 renames the alias before the blobstore refuses, and leaves it renamed
        // (docs/differences.md): the same error, the bdev now answers to the new alias only.
        expect(await rpcError('bdev_lvol_rename', { old_name: v, new_name: 'w' })).to.deep.equal(CB_EPERM);
        expect((await bdev(v)).aliases).to.deep.equal(['lvs0/w']);
        expect(await lvolEntry(v)).to.include({ name: 'v', alias: 'lvs0/v' });
        await expectError('bdev_get_bdevs', { name: 'lvs0/v' }, ENODEV);
      }
    });
  });

  describe('bdev_lvol_delete', () => {
    it('deletes by UUID or alias and gives the clusters back', async () => {
      const s = await store();
      const a = await lvol('a', 3);
      const b = await lvol('b', 2);
      expect(await call('bdev_lvol_delete', { name: a })).to.equal(true);
      expect(await call('bdev_lvol_delete', { name: 'lvs0/b' })).to.equal(true);
      expect(await call('bdev_lvol_get_lvols')).to.deep.equal([]);
      expect(await free()).to.equal(s.free_clusters);
      await expectError('bdev_get_bdevs', { name: b }, ENODEV);
      await expectError('bdev_lvol_delete', { name: a }, ENODEV);
      await expectError('bdev_lvol_delete', { name: 'lvs0/a' }, ENODEV);
      await expectError('bdev_lvol_delete', { name: 'M0' }, ENODEV);
      await expectError('bdev_lvol_delete', {}, DECODE_FAILED);
      await expectError('bdev_lvol_delete', { name: null }, DECODE_FAILED);
      await expectError('bdev_lvol_delete', undefined, DECODE_FAILED);
    });

    it('by the UUID in upper case (SPDK parses a name no bdev has as a UUID)', async () => {
      await store();
      const a = await lvol('a', 1);
      expect(await call('bdev_lvol_delete', { name: a.toUpperCase() })).to.equal(true);
      expect(await call('bdev_lvol_get_lvols')).to.deep.equal([]);
    });

    it('an lvol open for I/O is deleted all the same (SPDK hot-removes it); its I/O then fails', async () => {
      await store();
      const a = await lvol('a', 1);
      // The handle stays open in the target's process (ctx) while the socket deletes the lvol.
      await t.run(async (spdk, name, _require, ctx) => {
        ctx.h = await spdk.bdev.open(name);
      }, a);
      expect(await call('bdev_lvol_delete', { name: a })).to.equal(true);
      const read = await t.run(async (spdk, _a, require, ctx) => {
        const { SpdkError } = require('../../lib');
        const buf = spdk.allocBuffer(4096);
        const r = await ctx.h.read(buf, { offsetBlocks: 0, numBlocks: 8 }).then(() => 'I/O to a deleted lvol succeeded', (e: Error) => (e instanceof SpdkError ? 'SpdkError' : String(e)));
        await ctx.h.close().catch(() => undefined);
        return r;
      });
      expect(read).to.equal('SpdkError');
      await expectError('bdev_get_bdevs', { name: a }, ENODEV);
    });

    it('deleting the base bdev takes the store and its lvols with it', async () => {
      await store();
      const a = await lvol('a', 1);
      expect(await call('bdev_malloc_delete', { name: 'M0' })).to.equal(true);
      expect(await call('bdev_lvol_get_lvstores')).to.deep.equal([]);
      expect(await call('bdev_lvol_get_lvols')).to.deep.equal([]);
      expect(await call('bdev_get_bdevs')).to.deep.equal([]);
      await expectError('bdev_lvol_delete', { name: a }, ENODEV);
    });
  });

  describe('bdev_lvol_rename_lvstore / delete_lvstore / grow_lvstore', () => {
    it('rename: aliases follow; unknown is -2 "Lvol store <name> not found"; taken is -32602', async () => {
      const s = await store('lvs0');
      const v = await lvol('v', 1);
      await call('bdev_malloc_create', { name: 'M1', num_blocks: 16384, block_size: 512 });
      await store('other', MIB, 'M1');
      expect(await call('bdev_lvol_rename_lvstore', { old_name: 'lvs0', new_name: 'lvs0' })).to.equal(true);
      await expectError('bdev_lvol_rename_lvstore', { old_name: 'nope', new_name: 'x' }, { code: -2, message: 'Lvol store nope not found' });
      await expectError('bdev_lvol_rename_lvstore', { old_name: 'lvs0', new_name: 'other' }, CB_EEXIST);
      // SPDK refuses an empty store name as taken (docs/differences.md); the builtin engine too.
      await expectError('bdev_lvol_rename_lvstore', { old_name: 'lvs0', new_name: '' }, CB_EEXIST);
      // 64 bytes: refused by the builtin engine, taken and truncated by SPDK (checked at the end).
      if (builtin) await expectError('bdev_lvol_rename_lvstore', { old_name: 'lvs0', new_name: NAME64 }, CB_EINVAL);
      await expectError('bdev_lvol_rename_lvstore', { old_name: 'lvs0' }, DECODE_FAILED);
      await expectError('bdev_lvol_rename_lvstore', { uuid: s.uuid, new_name: 'x' }, DECODE_FAILED);
      expect(await call('bdev_lvol_rename_lvstore', { old_name: 'lvs0', new_name: 'pool' })).to.equal(true);
      expect((await call<Lvs[]>('bdev_lvol_get_lvstores', { uuid: s.uuid }))[0].name).to.equal('pool');
      expect((await bdev(v)).aliases).to.deep.equal(['pool/v']);
      expect(await lvolEntry(v)).to.include({ alias: 'pool/v' });
      expect((await lvolEntry(v)).lvs).to.deep.equal({ name: 'pool', uuid: s.uuid });
      if (!builtin) {
        expect(await call('bdev_lvol_rename_lvstore', { old_name: 'pool', new_name: NAME64 })).to.equal(true);
        expect((await call<Lvs[]>('bdev_lvol_get_lvstores', { uuid: s.uuid }))[0].name).to.equal(NAME63);
      }
    });

    it('delete: every lvol goes and the base bdev is released', async () => {
      const s = await store('lvs0');
      const v = await lvol('v', 1);
      await expectError('bdev_lvol_delete_lvstore', undefined, DECODE_FAILED);
      await expectError('bdev_lvol_delete_lvstore', {}, EINVAL);
      await expectError('bdev_lvol_delete_lvstore', { uuid: s.uuid, lvs_name: 'lvs0' }, EINVAL);
      await expectError('bdev_lvol_delete_lvstore', { lvs_name: 'nope' }, ENODEV);
      await expectError('bdev_lvol_delete_lvstore', { uuid: 'nope' }, ENODEV);
      await expectError('bdev_lvol_delete_lvstore', { name: 'lvs0' }, DECODE_FAILED);
      expect(await call('bdev_lvol_delete_lvstore', { lvs_name: 'lvs0' })).to.equal(true);
      expect(await call('bdev_lvol_get_lvstores')).to.deep.equal([]);
      expect(await call('bdev_lvol_get_lvols')).to.deep.equal([]);
      await expectError('bdev_get_bdevs', { name: v }, ENODEV);
      const m0 = await bdev('M0');
      expect(m0.claimed).to.equal(false);
      expect(m0).to.not.have.property('claim_type');
      // The bdev can carry a new store.
      await store('again');
    });

    it('grow: the selector is checked as SPDK does', async () => {
      const s = await store('lvs0');
      await expectError('bdev_lvol_grow_lvstore', undefined, DECODE_FAILED);
      await expectError('bdev_lvol_grow_lvstore', {}, EINVAL);
      await expectError('bdev_lvol_grow_lvstore', { lvs_name: 'nope' }, ENODEV);
      await expectError('bdev_lvol_grow_lvstore', { uuid: 'nope' }, ENODEV);
      await expectError('bdev_lvol_grow_lvstore', { uuid: s.uuid, lvs_name: 'lvs0' }, EINVAL);
    });
  });

  describe('snapshots and clones', () => {
    it('snapshot: a read-only lvol the origin becomes a clone of; clone: a thin lvol of a snapshot', async () => {
      const s = await store();
      const v = await lvol('v', 4);
      const written = await writePattern(v, 0, MIB / 512, MIB, 9);

      const snap = await call<string>('bdev_lvol_snapshot', { lvol_name: v, snapshot_name: 'snap' });
      expect(snap).to.match(uuidRe);
      const sb = await bdev(snap);
      expect(sb.aliases).to.deep.equal(['lvs0/snap']);
      expect(sb.num_blocks).to.equal((4 * MIB) / 512);
      expect(sb.supported_io_types).to.include({ read: true, write: false });
      expect(sb.driver_specific.lvol).to.include({ snapshot: true, clone: false });
      expect(sb.driver_specific.lvol?.clones).to.deep.equal(['v']);
      const vb = await bdev(v);
      expect(vb.driver_specific.lvol).to.include({ snapshot: false, clone: true, base_snapshot: 'snap' });
      expect(Object.keys(vb.driver_specific.lvol as Json)).to.deep.equal(['lvol_store_uuid', 'base_bdev', 'thin_provision', 'num_allocated_clusters', 'snapshot', 'clone', 'base_snapshot', 'esnap_clone']);
      expect(await lvolEntry(snap)).to.include({ is_snapshot: true, is_clone: false });

      const clone = await call<string>('bdev_lvol_clone', { snapshot_name: 'lvs0/snap', clone_name: 'c1' });
      const cb = await bdev(clone);
      expect(cb.driver_specific.lvol).to.include({ clone: true, thin_provision: true, base_snapshot: 'snap', num_allocated_clusters: 0 });
      expect((await bdev(snap)).driver_specific.lvol?.clones).to.deep.equal(['v', 'c1']);
      // The clone reads the snapshot's data.
      expect((await readBytes(clone, 0, MIB / 512, MIB)).equals(written)).to.equal(true);
      expect((await call<Lvs[]>('bdev_lvol_get_lvstores'))[0].total_data_clusters).to.equal(s.total_data_clusters);
    });

    it('bad snapshot and clone requests answer SPDK\'s errors and change nothing', async () => {
      await store();
      const v = await lvol('v', 2);
      await expectError('bdev_lvol_snapshot', { lvol_name: 'nope', snapshot_name: 's' }, ENODEV);
      await expectError('bdev_lvol_snapshot', { lvol_name: 'M0', snapshot_name: 's' }, ENODEV);
      await expectError('bdev_lvol_snapshot', { lvol_name: v }, DECODE_FAILED);
      await expectError('bdev_lvol_snapshot', { lvol_name: v, snapshot_name: 's', x: 1 }, DECODE_FAILED);
      await expectError('bdev_lvol_snapshot', { lvol_name: v, snapshot_name: '' }, CB_EINVAL);
      await expectError('bdev_lvol_snapshot', { lvol_name: v, snapshot_name: NAME64 }, CB_EINVAL);
      await expectError('bdev_lvol_snapshot', { lvol_name: v, snapshot_name: 'v' }, CB_EEXIST);
      // Clone of a writable lvol.
      await expectError('bdev_lvol_clone', { snapshot_name: v, clone_name: 'c' }, CB_EINVAL);
      await expectError('bdev_lvol_clone', { snapshot_name: 'nope', clone_name: 'c' }, ENODEV);
      await expectError('bdev_lvol_clone', { snapshot_name: v, clone_name: 'c', y: 1 }, DECODE_FAILED);
      await expectError('bdev_lvol_clone', { clone_name: 'c' }, DECODE_FAILED);

      const snap = await call<string>('bdev_lvol_snapshot', { lvol_name: v, snapshot_name: 's' });
      await expectError('bdev_lvol_snapshot', { lvol_name: v, snapshot_name: 's' }, CB_EEXIST);
      // A snapshot of a snapshot (read-only).
      await expectError('bdev_lvol_snapshot', { lvol_name: snap, snapshot_name: 'ss' }, CB_EINVAL);
      // clone_name is optional to the decoder, required by the lvol library.
      await expectError('bdev_lvol_clone', { snapshot_name: snap }, CB_EINVAL);
      await expectError('bdev_lvol_clone', { snapshot_name: snap, clone_name: 'v' }, CB_EEXIST);
      await expectError('bdev_lvol_clone', { snapshot_name: snap, clone_name: '' }, CB_EINVAL);
      // Snapshots cannot be resized or renamed.
      await expectError('bdev_lvol_resize', { name: snap, size_in_mib: 8 }, CB_EPERM);
      if (builtin) await expectError('bdev_lvol_rename', { old_name: snap, new_name: 's2' }, CB_EPERM);
      else {
        // SPDK answers the same but has renamed the alias already (docs/differences.md).
        expect(await rpcError('bdev_lvol_rename', { old_name: snap, new_name: 's2' })).to.deep.equal(CB_EPERM);
        expect((await bdev(snap)).aliases).to.deep.equal(['lvs0/s2']);
      }
    });

    it('a snapshot with two clones cannot be deleted (-32603 "Operation not permitted"); with one it can', async () => {
      await store();
      const v = await lvol('v', 2);
      const snap = await call<string>('bdev_lvol_snapshot', { lvol_name: v, snapshot_name: 's' });
      const c = await call<string>('bdev_lvol_clone', { snapshot_name: snap, clone_name: 'c' });
      await expectError('bdev_lvol_delete', { name: snap }, { code: -32603, message: 'Operation not permitted' });
      await call('bdev_lvol_delete', { name: c });
      expect((await bdev(snap)).driver_specific.lvol?.clones).to.deep.equal(['v']);
      expect(await call('bdev_lvol_delete', { name: snap })).to.equal(true);
      // The clone keeps the data and is no clone any more.
      const vb = await bdev(v);
      expect(vb.driver_specific.lvol).to.include({ clone: false });
      expect(vb.driver_specific.lvol).to.not.have.property('base_snapshot');
      expect((await call<LvolEntry[]>('bdev_lvol_get_lvols')).map((l) => l.name)).to.deep.equal(['v']);
    });

    it('a snapshot without clones lists no `clones` key (Cinder reads it only when present)', async () => {
      await store();
      const v = await lvol('v', 2);
      const snap = await call<string>('bdev_lvol_snapshot', { lvol_name: v, snapshot_name: 's' });
      await call('bdev_lvol_delete', { name: v });
      expect((await bdev(snap)).driver_specific.lvol).to.not.have.property('clones');
    });

    it('"snapshot" stays true once the last clone is gone, until the store is loaded again (SPDK v25.09)', async () => {
      // SPDK's spdk_blob_is_snapshot() is "the blobstore has a clone list for this blob": made
      // when the blob first gets a clone (snapshot, clone of a read-only lvol, or found at load
      // with clones), kept when its clones go (delete, inflate, decouple), gone after a reload.
      // Checked against spdk_tgt v25.09.
      const file = path.join(tmp.dir, 'disk.img');
      fs.writeFileSync(file, Buffer.alloc(0));
      fs.truncateSync(file, 64 * MIB);
      await call('bdev_aio_create', { name: 'disk', filename: file, block_size: 4096 });
      await store('lvs0', MIB, 'disk');
      const isSnapshot = async (name: string): Promise<unknown[]> => {
        const ds = (await bdev(name)).driver_specific.lvol;
        return [ds?.snapshot, (await lvolEntry((await bdev(name)).name)).is_snapshot, ds?.clones];
      };
      // A snapshot whose origin is deleted; a read-only lvol whose clone is deleted.
      const v = await lvol('v', 2, { thin_provision: true });
      await call('bdev_lvol_snapshot', { lvol_name: v, snapshot_name: 's' });
      const r = await lvol('r', 2, { thin_provision: true });
      expect(await isSnapshot(r)).to.deep.equal([false, false, undefined]);
      await call('bdev_lvol_set_read_only', { name: r });
      expect(await isSnapshot(r)).to.deep.equal([false, false, undefined]);
      const rc = await call<string>('bdev_lvol_clone', { snapshot_name: r, clone_name: 'rc' });
      expect(await isSnapshot(r)).to.deep.equal([true, true, ['rc']]);
      // A snapshot whose only clone is inflated, another whose only clone is decoupled.
      const w = await lvol('w', 2, { thin_provision: true });
      await call('bdev_lvol_snapshot', { lvol_name: w, snapshot_name: 'ws' });
      const x = await lvol('x', 2, { thin_provision: true });
      await call('bdev_lvol_snapshot', { lvol_name: x, snapshot_name: 'xs' });
      // And one that keeps its clone.
      const y = await lvol('y', 2, { thin_provision: true });
      await call('bdev_lvol_snapshot', { lvol_name: y, snapshot_name: 'ys' });

      await call('bdev_lvol_delete', { name: v });
      await call('bdev_lvol_delete', { name: rc });
      await call('bdev_lvol_inflate', { name: w });
      await call('bdev_lvol_decouple_parent', { name: x });
      for (const n of ['lvs0/s', 'lvs0/r', 'lvs0/ws', 'lvs0/xs']) expect(await isSnapshot(n), n).to.deep.equal([true, true, undefined]);
      expect(await isSnapshot('lvs0/ys')).to.deep.equal([true, true, ['y']]);

      // Loaded again (the base bdev goes and comes back): only lvols with clones are snapshots.
      await call('bdev_aio_delete', { name: 'disk' });
      await call('bdev_aio_create', { name: 'disk', filename: file, block_size: 4096 });
      for (const n of ['lvs0/s', 'lvs0/r', 'lvs0/ws', 'lvs0/xs']) expect(await isSnapshot(n), n).to.deep.equal([false, false, undefined]);
      expect(await isSnapshot('lvs0/ys')).to.deep.equal([true, true, ['y']]);
      // A clone made now turns it back into a snapshot, and its deletion does not undo that.
      const sc = await call<string>('bdev_lvol_clone', { snapshot_name: 'lvs0/s', clone_name: 'sc' });
      await call('bdev_lvol_delete', { name: sc });
      expect(await isSnapshot('lvs0/s')).to.deep.equal([true, true, undefined]);
    });
  });

  describe('bdev_lvol_inflate / bdev_lvol_decouple_parent', () => {
    it('lookups, decoding and the parent check answer as SPDK', async () => {
      await store();
      const v = await lvol('v', 2, { thin_provision: true });
      for (const m of ['bdev_lvol_inflate', 'bdev_lvol_decouple_parent']) {
        await expectError(m, { name: 'nope' }, ENODEV);
        await expectError(m, { name: 'M0' }, ENODEV);
        await expectError(m, {}, DECODE_FAILED);
        await expectError(m, { name: v, x: 1 }, DECODE_FAILED);
        await expectError(m, undefined, DECODE_FAILED);
      }
      // Decoupling an lvol without a parent is EINVAL in the blobstore.
      await expectError('bdev_lvol_decouple_parent', { name: v }, CB_EINVAL);
    });

    it('inflate allocates every cluster and drops the parent; decouple drops the parent', async () => {
      await store();
      const v = await lvol('v', 2, { thin_provision: true });
      // A thin lvol without a parent: every cluster gets allocated.
      expect(await call('bdev_lvol_inflate', { name: v })).to.equal(true);
      expect(await lvolEntry(v)).to.include({ is_thin_provisioned: false, num_allocated_clusters: 2 });
      const written = await writePattern(v, 0, MIB / 512, MIB, 3);
      const snap = await call<string>('bdev_lvol_snapshot', { lvol_name: v, snapshot_name: 's' });
      const c = await call<string>('bdev_lvol_clone', { snapshot_name: snap, clone_name: 'c' });
      expect(await call('bdev_lvol_decouple_parent', { name: c })).to.equal(true);
      expect(await lvolEntry(c)).to.include({ is_clone: false });
      expect((await bdev(snap)).driver_specific.lvol?.clones).to.deep.equal(['v']);
      expect(await call('bdev_lvol_inflate', { name: v })).to.equal(true);
      expect(await lvolEntry(v)).to.include({ is_clone: false, is_thin_provisioned: false, num_allocated_clusters: 2 });
      expect((await bdev(snap)).driver_specific.lvol).to.not.have.property('clones');
      // Both keep the data, and the snapshot can go now.
      await call('bdev_lvol_delete', { name: snap });
      for (const name of [v, c]) {
        expect((await readBytes(name, 0, MIB / 512, MIB)).equals(written), name).to.equal(true);
      }
    });

    it('inflate of a thick lvol without a parent changes nothing; out of space is -32602', async () => {
      const s = await store();
      const thick = await lvol('thick', 2);
      expect(await call('bdev_lvol_inflate', { name: thick })).to.equal(true);
      expect(await lvolEntry(thick)).to.include({ is_thin_provisioned: false, num_allocated_clusters: 2 });
      const thin = await lvol('thin', s.free_clusters + 10, { thin_provision: true });
      await expectError('bdev_lvol_inflate', { name: thin }, CB_ENOSPC);
    });
  });

  describe('bdev_lvol_grow_lvstore on an unchanged base', () => {
    it('answers true and changes nothing when the base bdev did not grow', async () => {
      const s = await store();
      expect(await call('bdev_lvol_grow_lvstore', { uuid: s.uuid })).to.equal(true);
      expect(await call('bdev_lvol_grow_lvstore', { lvs_name: 'lvs0' })).to.equal(true);
      expect(await call('bdev_lvol_get_lvstores', { uuid: s.uuid })).to.deep.equal([s]);
    });
  });

  describe('save_config and restart', () => {
    it('writes no lvol calls; a target restarted from save_config tastes the store and has the same lvols and data', async () => {
      const file = path.join(tmp.dir, 'lvs.img');
      fs.writeFileSync(file, Buffer.alloc(0));
      fs.truncateSync(file, 64 * MIB);
      await call('bdev_aio_create', { name: 'disk', filename: file, block_size: 4096 });
      await store('lvs0', MIB, 'disk');
      const thick = await lvol('thick', 3);
      const thin = await lvol('thin', 5, { thin_provision: true, clear_method: 'none' });
      await call('bdev_lvol_rename', { old_name: thin, new_name: 'thin2' });
      // Flushed on builtin (its lvol flushes the base and commits metadata); SPDK's lvol bdev does
      // not take flush (docs/differences.md) and its aio bdev writes with O_DIRECT.
      const written = await writePattern(thin, 300, 2, 8192, 31, builtin);

      // builtin: the engine's own (synchronous) spdk.saveConfig(); libspdk: SPDK's save_config
      // as rpc.py reads it (spdk.rpc.saveConfig(); spdk.saveConfig() is builtin-only there).
      const saveConfig = (): Promise<SpdkJsonConfig> => (builtin ? Promise.resolve(t.spdk!.saveConfig()) : t.run(async (spdk) => spdk.rpc.saveConfig()));
      const saved = await saveConfig();
      const methods = JSON.stringify(saved).match(/"method":"[a-z_]+"/g) ?? [];
      expect(methods.filter((m) => m.includes('lvol'))).to.deep.equal([]);
      const before = { lvs: await call('bdev_lvol_get_lvstores'), lvols: await call('bdev_lvol_get_lvols'), thick: await bdev(thick), thin: await bdev(thin) };

      await t.restart({ config: saved });
      expect(await call('bdev_lvol_get_lvstores')).to.deep.equal(before.lvs);
      expect(await call('bdev_lvol_get_lvols')).to.deep.equal(before.lvols);
      expect(await bdev(thick)).to.deep.equal(before.thick);
      expect(await bdev('lvs0/thin2')).to.deep.equal(before.thin);
      expect((await readBytes(thin, 300, 2, 8192)).equals(written)).to.equal(true);
      // And it saves the same config again.
      expect(await saveConfig()).to.deep.equal(saved);
    });
  });

  describe('friendly API (spdk.lvol) over spdk.rpc.call', () => {
    it('stores, lvols, resize, read-only, rename, delete', async () => {
      const api = new LvolApi(t.rpc);
      const st = await api.createStore({ bdev: 'M0', name: 'pool', clusterSize: MIB });
      expect(st).to.include({ name: 'pool', baseBdev: 'M0', clusterSize: MIB, blockSize: 512 });
      expect(st.freeBytes).to.equal(st.totalBytes);
      expect((await api.stores()).map((x) => x.uuid)).to.deep.equal([st.uuid]);
      expect((await api.store('pool')).uuid).to.equal(st.uuid);
      expect((await api.store(st.uuid)).name).to.equal('pool');

      const vol = await st.create('vol', { sizeMiB: 4 });
      expect(vol).to.include({ name: 'vol', alias: 'pool/vol', storeUuid: st.uuid, storeName: 'pool', thin: false, readOnly: false, sizeBytes: 4 * MIB });
      expect(vol.bdevName).to.equal(vol.uuid);
      const odd = await st.create('odd', { sizeBytes: MIB + 1, thin: true });
      expect(odd.sizeBytes).to.equal(2 * MIB);
      expect((await st.refresh()).freeClusters).to.equal(st.freeClusters - 4);

      const bigger = await vol.resize({ sizeMiB: 6 });
      expect(bigger.sizeBytes).to.equal(6 * MIB);
      const renamed = await bigger.rename('vol2');
      expect(renamed.alias).to.equal('pool/vol2');
      expect((await api.get('pool/vol2')).uuid).to.equal(vol.uuid);
      expect((await st.lvols()).map((l) => l.name)).to.deep.equal(['vol2', 'odd']);
      expect((await api.lvols()).map((l) => l.name)).to.deep.equal(['vol2', 'odd']);
      const ro = await odd.setReadOnly();
      expect(ro.readOnly).to.equal(true);

      await expectRpcError(api.get('M0'), ENODEV);
      await expectRpcError(api.get('nope'), ENODEV);
      await expectRpcError(st.create('vol2', { sizeMiB: 1 }), EEXIST);
      for (const bad of [{}, { sizeMiB: 1, sizeBytes: MIB }, { sizeMiB: -1 }, { sizeBytes: 1.5 }]) {
        await st.create('x', bad as never).then(
          () => expect.fail(`accepted ${JSON.stringify(bad)}`),
          (e: unknown) => expect(e).to.be.instanceOf(SpdkError).with.property('code', 'ERR_INVALID_ARG'),
        );
      }

      await renamed.delete();
      await ro.delete();
      const st2 = await st.rename('pool2');
      expect(st2.name).to.equal('pool2');
      await st2.delete();
      expect(await api.stores()).to.deep.equal([]);
    });

    it('snapshot and clone', async () => {
      const api = new LvolApi(t.rpc);
      const st = await api.createStore({ bdev: 'M0', name: 'pool', clusterSize: MIB });
      const vol = await st.create('vol', { sizeMiB: 2 });
      const snap = await vol.snapshot('snap');
      expect(snap).to.include({ isSnapshot: true, readOnly: true, name: 'snap' });
      expect(snap.clones).to.deep.equal(['vol']);
      const copy = await snap.clone('copy');
      expect(copy).to.include({ isClone: true, baseSnapshot: 'snap', thin: true });
      expect((await snap.refresh()).clones).to.deep.equal(['vol', 'copy']);
      await expectRpcError(snap.delete(), { code: -32603, message: 'Operation not permitted' });
      await expectRpcError(vol.refresh().then((v) => v.clone('nope')), CB_EINVAL);
    });
  });

  async function expectRpcError(p: Promise<unknown>, want: { code: number; message: string }): Promise<void> {
    const e = await p.then(
      () => expect.fail('succeeded'),
      (err: unknown) => err,
    );
    expect(e).to.be.instanceOf(JsonRpcError);
    expect({ code: (e as JsonRpcError).code, message: (e as JsonRpcError).message }).to.deep.equal(want);
  }
}),
);
