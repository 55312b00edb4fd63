/**
 * The builtin engine's lvol store, driven through the addon directly (spdk.nativeEngine) and
 * through bdev queues for data: metadata operations and their errors, cluster allocation and
 * accounting, data across cluster boundaries, reuse of freed clusters, out of space, resize,
 * read-only, re-tasting after a restart (clean stop and SIGKILL), corrupt metadata slots,
 * concurrent allocation from two reactors, snapshots and clones, inflate and decouple.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Spdk, SpdkError, SpdkBuffer, BdevHandle } from '../lib';
import type { NativeEngine } from '../lib/engine/native';
import type { LvolBdevInfo, LvstoreInfo } from '../lib/engine/types';
import { fillPattern, tempDir } from './helpers/env';

type Native = Required<NativeEngine>;
/** What the native engine reports for an lvol bdev (LvolBdevInfo plus the store's name). */
type LvolInfo = LvolBdevInfo & { lvsName: string };

const KiB = 1024;
const MiB = 1024 * 1024;
const CLUSTER = 64 * KiB;

async function expectErrno(p: Promise<unknown> | (() => unknown), errno: number, match?: RegExp): Promise<SpdkError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    expect(e, String(e)).to.be.instanceOf(SpdkError);
    expect((e as SpdkError).errno, (e as Error).message).to.equal(errno);
    if (match) expect((e as Error).message).to.match(match);
    return e as SpdkError;
  }
  throw new Error(`expected errno ${errno}, resolved`);
}

const EPERM = 1;
const EBUSY = 16;
const EEXIST = 17;
const ENODEV = 19;
const EINVAL = 22;
const ENOSPC = 28;

function native(spdk: Spdk): Native {
  return spdk.nativeEngine as Native;
}

function lvolInfo(spdk: Spdk, name: string): LvolInfo {
  const b = native(spdk).listBdevs().find((x) => x.name === name || x.aliases.includes(name));
  if (!b) throw new Error(`no bdev ${name}`);
  return b as LvolInfo;
}

function store(spdk: Spdk, uuid: string): LvstoreInfo {
  const s = native(spdk).listLvstores().find((x) => x.uuid === uuid);
  if (!s) throw new Error(`no lvstore ${uuid}`);
  return s;
}

/** Slot size of a store created on `bytes` with `cluster` (docs/lvol-format.md). */
function slotSize(bytes: number, cluster: number): number {
  const maxClusters = Math.min(4 * Math.floor(bytes / cluster), 0xfffffffe);
  const raw = 64 * KiB + 8 * maxClusters + 96 * 1024;
  return Math.ceil(raw / 4096) * 4096;
}

function readSlotSequence(file: string, off: number): bigint | undefined {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(16);
    fs.readSync(fd, b, 0, 16, off);
    if (b.subarray(0, 8).toString('latin1') !== 'SPDKNLVM') return undefined;
    return b.readBigUInt64LE(8);
  } finally {
    fs.closeSync(fd);
  }
}

function flipByte(file: string, off: number): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, off);
    b[0] ^= 0x5a;
    fs.writeSync(fd, b, 0, 1, off);
  } finally {
    fs.closeSync(fd);
  }
}

function makeFile(dir: string, name: string, bytes: number): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, Buffer.alloc(0));
  fs.truncateSync(f, bytes);
  return f;
}

describe('lvol store (native)', function () {
  this.timeout(60000);
  let spdk: Spdk;
  let ne: Native;
  let tmp: ReturnType<typeof tempDir>;
  const handles: BdevHandle[] = [];
  const buffers: SpdkBuffer[] = [];

  async function open(name: string, reactor: number | 'js' = 0): Promise<BdevHandle> {
    const h = await spdk.bdev.open(name, { reactor });
    handles.push(h);
    return h;
  }
  function buffer(n: number): SpdkBuffer {
    const b = spdk.allocBuffer(n);
    buffers.push(b);
    return b;
  }
  async function closeAll(): Promise<void> {
    await Promise.all(handles.splice(0).map((h) => h.close()));
  }
  async function restart(): Promise<void> {
    await closeAll();
    buffers.length = 0;
    await spdk.stop();
    spdk = await Spdk.start({ engine: 'builtin', cores: [0, 1] });
    ne = native(spdk);
  }
  async function mallocStore(blocks = 8192, bs = 4096, cluster = CLUSTER): Promise<LvstoreInfo> {
    ne.createMallocBdev('M0', blocks, bs);
    return ne.createLvstore('M0', 'lvs0', cluster, 'unmap');
  }
  /** Reads the whole lvol and checks it against `model`. */
  async function verify(h: BdevHandle, model: Uint8Array): Promise<void> {
    const chunk = 64;
    const buf = buffer(chunk * h.blockSize);
    for (let off = 0; off < h.numBlocks; off += chunk) {
      const n = Math.min(chunk, h.numBlocks - off);
      buf.bytes.fill(0xee);
      await h.read(buf, { offsetBlocks: off, numBlocks: n });
      const got = buf.bytes.subarray(0, n * h.blockSize);
      const want = model.subarray(off * h.blockSize, (off + n) * h.blockSize);
      if (Buffer.compare(got, want) !== 0) {
        let i = 0;
        while (got[i] === want[i]) i++;
        throw new Error(`mismatch at byte ${off * h.blockSize + i} (block ${off + Math.floor(i / h.blockSize)}): got ${got[i]}, want ${want[i]}`);
      }
    }
  }

  beforeEach(async () => {
    tmp = tempDir();
    spdk = await Spdk.start({ engine: 'builtin', cores: [0, 1] });
    ne = native(spdk);
  });

  afterEach(async () => {
    await closeAll();
    buffers.length = 0;
    await spdk.stop();
    tmp.cleanup();
  });

  describe('lvstores', () => {
    it('creates a store on a malloc bdev, claims it and reports its geometry', async () => {
      const lvs = await mallocStore(8192, 4096);
      expect(lvs.name).to.equal('lvs0');
      expect(lvs.baseBdev).to.equal('M0');
      expect(lvs.blockSize).to.equal(4096);
      expect(lvs.clusterSize).to.equal(CLUSTER);
      expect(lvs.clearMethod).to.equal('unmap');
      // 32 MiB / 64 KiB = 512 clusters; slot size 64K + 8*2048 + 96K -> 176 KiB; md = 4K + 2 slots -> 6 clusters.
      expect(lvs.totalDataClusters).to.equal(512 - Math.ceil((4096 + 2 * slotSize(32 * MiB, CLUSTER)) / CLUSTER));
      expect(lvs.freeClusters).to.equal(lvs.totalDataClusters);
      expect(lvs.uuid).to.match(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(ne.listLvstores()).to.deep.equal([lvs]);
      const base = ne.listBdevs().find((b) => b.name === 'M0')!;
      expect(base.claimed).to.equal(true);
      // A claimed base cannot be opened for I/O, nor carry a second store.
      await expectErrno(() => spdk.bdev.open('M0'), EBUSY);
      await expectErrno(ne.createLvstore('M0', 'other', CLUSTER, 'unmap'), EBUSY);
    });

    it('refuses bad parameters with SPDK errnos and changes nothing', async () => {
      ne.createMallocBdev('M0', 8192, 512);
      ne.createMallocBdev('M1', 8192, 512);
      ne.createMallocBdev('Tiny', 64, 4096);
      await expectErrno(ne.createLvstore('nope', 'lvs0', CLUSTER, 'unmap'), ENODEV);
      await expectErrno(ne.createLvstore('M0', '', CLUSTER, 'unmap'), EINVAL);
      await expectErrno(ne.createLvstore('M0', 'x'.repeat(64), CLUSTER, 'unmap'), EINVAL);
      await expectErrno(ne.createLvstore('M0', 'lvs0', 3 * 4096, 'unmap'), EINVAL); // not a power of two
      await expectErrno(ne.createLvstore('M0', 'lvs0', 2048, 'unmap'), EINVAL); // below 4 KiB
      await expectErrno(ne.createLvstore('Tiny', 'lvs0', 4096, 'unmap'), ENOSPC);
      expect(ne.listLvstores()).to.deep.equal([]);
      expect(ne.listBdevs().every((b) => !b.claimed)).to.equal(true);
      const lvs = await ne.createLvstore('M0', 'lvs0', 4096, 'none');
      expect(lvs.clearMethod).to.equal('none');
      await expectErrno(ne.createLvstore('M1', 'lvs0', 4096, 'unmap'), EEXIST);
      await expectErrno(ne.deleteLvstore('00000000-0000-4000-8000-000000000000'), ENODEV);
      await expectErrno(ne.createLvol('00000000-0000-4000-8000-000000000000', 'v', MiB, true, 'unmap'), ENODEV);
    });

    it('creates a store on a file bdev (aio)', async () => {
      const f = makeFile(tmp.dir, 'disk.img', 32 * MiB);
      ne.createFileBdev('F0', f, 0, false, 'aio');
      const lvs = await ne.createLvstore('F0', 'lvsf', CLUSTER, 'unmap');
      expect(lvs.blockSize).to.equal(ne.listBdevs()[0].blockSize);
      const lv = await ne.createLvol(lvs.uuid, 'v', MiB, true, 'unmap');
      const h = await open(lv.name);
      const model = new Uint8Array(MiB);
      const buf = buffer(3 * CLUSTER);
      fillPattern(buf.bytes, 7);
      const off = CLUSTER - 2 * h.blockSize; // straddles clusters 0..3
      await h.write(buf, { offsetBlocks: off / h.blockSize, numBlocks: buf.length / h.blockSize });
      model.set(buf.bytes, off);
      await verify(h, model);
    });

    it('renames a store: every lvol alias follows; names are unique across stores', async () => {
      const lvs = await mallocStore();
      ne.createMallocBdev('M1', 4096, 4096);
      const other = await ne.createLvstore('M1', 'lvs1', CLUSTER, 'unmap');
      const a = await ne.createLvol(lvs.uuid, 'a', MiB, true, 'unmap');
      await expectErrno(ne.renameLvstore(lvs.uuid, 'lvs1'), EEXIST);
      await ne.renameLvstore(lvs.uuid, 'renamed');
      expect(store(spdk, lvs.uuid).name).to.equal('renamed');
      expect(lvolInfo(spdk, a.name).aliases).to.deep.equal(['renamed/a']);
      expect(lvolInfo(spdk, 'renamed/a').name).to.equal(a.name);
      expect(store(spdk, other.uuid).name).to.equal('lvs1');
      await ne.renameLvstore(lvs.uuid, 'lvs0');
      expect(lvolInfo(spdk, 'lvs0/a').name).to.equal(a.name);
    });

    it('grows a store into the space its base bdev gained (bdev_lvol_grow_lvstore)', async () => {
      const f = makeFile(tmp.dir, 'disk.img', 16 * MiB);
      ne.createFileBdev('F0', f, 4096, false, 'aio');
      const lvs = await ne.createLvstore('F0', 'lvs0', CLUSTER, 'unmap');
      await ne.growLvstore(lvs.uuid); // nothing gained: no change
      expect(store(spdk, lvs.uuid).totalDataClusters).to.equal(lvs.totalDataClusters);
      const a = await ne.createLvol(lvs.uuid, 'a', 2 * CLUSTER, false, 'unmap');
      await restart();
      fs.truncateSync(f, 48 * MiB);
      ne.createFileBdev('F0', f, 4096, false, 'aio');
      expect(store(spdk, lvs.uuid).totalDataClusters).to.equal(lvs.totalDataClusters);
      await ne.growLvstore(lvs.uuid);
      const grown = store(spdk, lvs.uuid);
      expect(grown.totalDataClusters).to.equal(lvs.totalDataClusters + (32 * MiB) / CLUSTER);
      expect(grown.freeClusters).to.equal(grown.totalDataClusters - 2);
      // The new clusters are usable, and the new size persists.
      const big = await ne.createLvol(lvs.uuid, 'big', (grown.freeClusters - 1) * CLUSTER, false, 'none');
      expect(store(spdk, lvs.uuid).freeClusters).to.equal(1);
      await restart();
      ne.createFileBdev('F0', f, 4096, false, 'aio');
      expect(store(spdk, lvs.uuid)).to.deep.equal({ ...grown, freeClusters: 1 });
      expect(ne.listBdevs().filter((b) => b.driver === 'lvol').map((b) => b.name)).to.deep.equal([a.name, big.name]);
      await expectErrno(ne.growLvstore('00000000-0000-4000-8000-000000000000'), ENODEV);
    });

    it('deletes a store: lvols go, the base is released and no longer tastes', async () => {
      const f = makeFile(tmp.dir, 'disk.img', 16 * MiB);
      ne.createFileBdev('F0', f, 4096, false, 'aio');
      const lvs = await ne.createLvstore('F0', 'lvs0', CLUSTER, 'unmap');
      const a = await ne.createLvol(lvs.uuid, 'a', MiB, false, 'unmap');
      await ne.createLvol(lvs.uuid, 'b', MiB, true, 'unmap');
      await ne.deleteLvstore(lvs.uuid);
      expect(ne.listLvstores()).to.deep.equal([]);
      expect(ne.listBdevs().map((b) => b.name)).to.deep.equal(['F0']);
      expect(ne.listBdevs()[0].claimed).to.equal(false);
      await expectErrno(() => spdk.bdev.open(a.name), ENODEV);
      (await open('F0')).close();
      await restart();
      const info = ne.createFileBdev('F0', f, 4096, false, 'aio');
      expect(info.claimed).to.equal(false);
      expect(info.tasteError).to.equal(undefined);
      expect(ne.listLvstores()).to.deep.equal([]);
    });

    it('deleting the base bdev unloads the store: its lvols disappear, nothing is written', async () => {
      const f = makeFile(tmp.dir, 'disk.img', 16 * MiB);
      ne.createFileBdev('F0', f, 4096, false, 'aio');
      const lvs = await ne.createLvstore('F0', 'lvs0', CLUSTER, 'unmap');
      const a = await ne.createLvol(lvs.uuid, 'a', MiB, true, 'unmap');
      const h = await open(a.name);
      const buf = buffer(4096);
      buf.bytes.fill(3);
      await h.write(buf, { offsetBlocks: 0, numBlocks: 1 });
      await h.flush();
      const before = fs.readFileSync(f);
      expect(ne.deleteBdev('F0', 'aio')).to.equal(true);
      expect(ne.listLvstores()).to.deep.equal([]);
      expect(ne.listBdevs()).to.deep.equal([]);
      await expectErrno(h.write(buf, { offsetBlocks: 0, numBlocks: 1 }), ENODEV);
      await closeAll();
      expect(Buffer.compare(fs.readFileSync(f), before)).to.equal(0);
      // And it tastes again, data included.
      ne.createFileBdev('F0', f, 4096, false, 'aio');
      const again = await open(a.name);
      buf.bytes.fill(0);
      await again.read(buf, { offsetBlocks: 0, numBlocks: 1 });
      expect(buf.bytes.every((x) => x === 3)).to.equal(true);
    });
  });

  describe('lvols', () => {
    it('creates thin and thick lvols: bdev info, size rounding, cluster accounting', async () => {
      const lvs = await mallocStore();
      const total = lvs.totalDataClusters;
      const thick = (await ne.createLvol(lvs.uuid, 'thick', 3 * CLUSTER + 1, false, 'write_zeroes')) as LvolInfo;
      expect(thick.numBlocks).to.equal((4 * CLUSTER) / 4096);
      expect(thick.productName).to.equal('Logical Volume');
      expect(thick.driver).to.equal('lvol');
      expect(thick.name).to.equal(thick.uuid);
      expect(thick.aliases).to.deep.equal(['lvs0/thick']);
      expect(thick.claimed).to.equal(false);
      expect(thick.lvsUuid).to.equal(lvs.uuid);
      expect(thick.lvsName).to.equal('lvs0');
      expect(thick.lvolName).to.equal('thick');
      expect(thick.clearMethod).to.equal('write_zeroes');
      expect(thick.numClusters).to.equal(4);
      expect(thick.readOnly).to.equal(false);
      expect(thick.driverSpecific).to.deep.equal({
        lvol_store_uuid: lvs.uuid,
        base_bdev: 'M0',
        thin_provision: false,
        num_allocated_clusters: 4,
        snapshot: false,
        clone: false,
        esnap_clone: false,
      });
      expect(Object.keys(thick.driverSpecific)).to.deep.equal(['lvol_store_uuid', 'base_bdev', 'thin_provision', 'num_allocated_clusters', 'snapshot', 'clone', 'esnap_clone']);
      expect(store(spdk, lvs.uuid).freeClusters).to.equal(total - 4);

      const uuid = '0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0';
      const thin = (await ne.createLvol(lvs.uuid, 'thin', 100 * MiB, true, 'unmap', uuid.toUpperCase())) as LvolInfo;
      expect(thin.name).to.equal(uuid);
      expect(thin.numClusters).to.equal((100 * MiB) / CLUSTER); // over-provisioned: fine for thin
      expect(thin.driverSpecific.thin_provision).to.equal(true);
      expect(thin.driverSpecific.num_allocated_clusters).to.equal(0);
      expect(store(spdk, lvs.uuid).freeClusters).to.equal(total - 4);
      // Creation order, lvols after their base; found by name, UUID and alias.
      expect(ne.listBdevs().map((b) => b.name)).to.deep.equal(['M0', thick.name, thin.name]);
      expect(lvolInfo(spdk, 'lvs0/thin').name).to.equal(uuid);

      await expectErrno(ne.createLvol(lvs.uuid, 'thin', MiB, true, 'unmap'), EEXIST);
      await expectErrno(ne.createLvol(lvs.uuid, 'other', MiB, true, 'unmap', uuid), EEXIST);
      await expectErrno(ne.createLvol(lvs.uuid, '', MiB, true, 'unmap'), EINVAL);
      await expectErrno(ne.createLvol(lvs.uuid, 'y'.repeat(64), MiB, true, 'unmap'), EINVAL);
      await expectErrno(ne.createLvol(lvs.uuid, 'big', (total + 1) * CLUSTER, false, 'unmap'), ENOSPC);
      expect(() => ne.deleteBdev(thin.name, 'lvol')).to.throw(SpdkError);
      // A size of 0 is a size (SPDK registers a 0-block bdev), thick or thin.
      const zero = await ne.createLvol(lvs.uuid, 'zero', 0, false, 'unmap');
      expect(zero.numBlocks).to.equal(0);
      await ne.deleteLvol(zero.name);
      expect(ne.listBdevs().length).to.equal(3);
      expect(store(spdk, lvs.uuid).freeClusters).to.equal(total - 4);
    });

    for (const thin of [true, false]) {
      it(`${thin ? 'thin' : 'thick'}: random patterns across cluster boundaries match a model; unwritten blocks read zeroes`, async () => {
        const lvs = await mallocStore(8192, 512, 16 * KiB);
        const lv = await ne.createLvol(lvs.uuid, 'v', 2 * MiB, thin, 'unmap');
        const h = await open(lv.name);
        const bs = h.blockSize;
        const model = new Uint8Array(h.numBlocks * bs);
        await verify(h, model); // never written: zeroes
        const buf = buffer(200 * bs);
        for (let round = 0; round < 150; round++) {
          const n = 1 + Math.floor(Math.random() * 200);
          const off = Math.floor(Math.random() * (h.numBlocks - n));
          fillPattern(buf.bytes.subarray(0, n * bs), round + 1);
          await h.write(buf, { offsetBlocks: off, numBlocks: n });
          model.set(buf.bytes.subarray(0, n * bs), off * bs);
        }
        // Vectored I/O whose segments do not line up with clusters.
        const a = buffer(3 * 1024 + 512);
        const b = buffer(29 * 1024 + 512);
        fillPattern(a.bytes, 1001);
        fillPattern(b.bytes, 1002);
        const voff = 30; // blocks; 33 KiB crosses two 16 KiB cluster boundaries
        await h.writev([{ buffer: a }, { buffer: b }], { offsetBlocks: voff, numBlocks: 66 });
        model.set(a.bytes, voff * bs);
        model.set(b.bytes, voff * bs + a.length);
        // unmap / write_zeroes across boundaries zero exactly their range.
        await h.unmap({ offsetBlocks: 20, numBlocks: 70 });
        model.fill(0, 20 * bs, 90 * bs);
        await h.writeZeroes({ offsetBlocks: 1000, numBlocks: 100 });
        model.fill(0, 1000 * bs, 1100 * bs);
        await h.flush();
        await verify(h, model);
        const ra = buffer(a.length);
        const rb = buffer(b.length);
        await h.readv([{ buffer: ra }, { buffer: rb }], { offsetBlocks: 500, numBlocks: 66 });
        expect(Buffer.compare(Buffer.concat([ra.bytes, rb.bytes]), model.subarray(500 * bs, 566 * bs))).to.equal(0);
      });
    }

    it('a cluster freed by deleting one lvol reads zeroes in the next lvol that gets it', async () => {
      for (const clear of ['none', 'unmap', 'write_zeroes']) {
        if (ne.listLvstores().length) {
          await ne.deleteLvstore(ne.listLvstores()[0].uuid);
          ne.deleteBdev('M0', 'malloc');
        }
        // A store with exactly one data cluster free after A: A must give its cluster to B.
        const lvs = await mallocStore(8192, 4096);
        const total = lvs.totalDataClusters;
        const filler = await ne.createLvol(lvs.uuid, 'filler', (total - 1) * CLUSTER, false, 'none');
        const a = await ne.createLvol(lvs.uuid, 'a', CLUSTER, true, clear);
        const ha = await open(a.name);
        const buf = buffer(CLUSTER);
        buf.bytes.fill(0xa5);
        await ha.write(buf, { offsetBlocks: 0, numBlocks: CLUSTER / 4096 });
        expect(store(spdk, lvs.uuid).freeClusters).to.equal(0);
        await closeAll();
        await ne.deleteLvol(a.name);
        expect(store(spdk, lvs.uuid).freeClusters).to.equal(1);
        const b = await ne.createLvol(lvs.uuid, 'b', CLUSTER, true, 'unmap');
        const hb = await open(b.name);
        buf.bytes.fill(0x3c, 0, 4096);
        await hb.write(buf, { offsetBlocks: 5, numBlocks: 1 });
        expect(store(spdk, lvs.uuid).freeClusters).to.equal(0);
        const model = new Uint8Array(CLUSTER);
        model.fill(0x3c, 5 * 4096, 6 * 4096);
        await verify(hb, model);
        await closeAll();
        await ne.deleteLvol(b.name);
        await ne.deleteLvol(filler.name);
        expect(store(spdk, lvs.uuid).freeClusters).to.equal(total);
      }
    });

    it('out of space on a thin store: the write fails ENOSPC; after a delete it succeeds', async () => {
      const lvs = await mallocStore(2048, 4096); // 8 MiB
      const total = lvs.totalDataClusters;
      const a = await ne.createLvol(lvs.uuid, 'a', 4 * total * CLUSTER, true, 'unmap');
      const b = await ne.createLvol(lvs.uuid, 'b', 2 * CLUSTER, true, 'unmap');
      const ha = await open(a.name);
      const buf = buffer(CLUSTER);
      buf.bytes.fill(1);
      const per = CLUSTER / 4096;
      for (let i = 0; i < total; i++) await ha.write(buf, { offsetBlocks: i * 2 * per, numBlocks: 1 });
      expect(store(spdk, lvs.uuid).freeClusters).to.equal(0);
      await expectErrno(ha.write(buf, { offsetBlocks: 2 * total * per + 3, numBlocks: 1 }), ENOSPC);
      // A write to an allocated cluster still works; metadata stays consistent.
      await ha.write(buf, { offsetBlocks: 1, numBlocks: 1 });
      const hb = await open(b.name);
      await expectErrno(hb.write(buf, { offsetBlocks: 0, numBlocks: per }), ENOSPC);
      expect(lvolInfo(spdk, b.name).driverSpecific.num_allocated_clusters).to.equal(0);
      await hb.close();
      handles.splice(handles.indexOf(hb), 1);
      await ne.deleteLvol(b.name);
      await ha.flush();
      expect(lvolInfo(spdk, a.name).driverSpecific.num_allocated_clusters).to.equal(total);
      // Shrinking A frees clusters; the write then succeeds.
      await ha.close();
      handles.splice(handles.indexOf(ha), 1);
      await ne.resizeLvol(a.name, total * CLUSTER); // keeps clusters 0, 2, 4, ...: about half
      const kept = Math.ceil(total / 2);
      expect(store(spdk, lvs.uuid).freeClusters).to.equal(total - kept);
      const h2 = await open(a.name);
      await h2.write(buf, { offsetBlocks: per, numBlocks: per });
      expect(store(spdk, lvs.uuid).freeClusters).to.equal(total - kept - 1);
    });

    it('resizes: thin and thick grow and shrink, data kept, new space reads zeroes', async () => {
      const lvs = await mallocStore();
      const total = lvs.totalDataClusters;
      for (const thin of [true, false]) {
        const lv = await ne.createLvol(lvs.uuid, thin ? 'thin' : 'thick', 4 * CLUSTER, thin, 'unmap');
        let h = await open(lv.name);
        const data = buffer(4 * CLUSTER);
        fillPattern(data.bytes, thin ? 11 : 12);
        await h.write(data, { offsetBlocks: 0, numBlocks: h.numBlocks });
        await ne.resizeLvol(lv.name, 10 * CLUSTER - 100);
        const grown = lvolInfo(spdk, lv.name);
        expect(grown.numBlocks).to.equal((10 * CLUSTER) / 4096);
        expect(grown.numClusters).to.equal(10);
        expect(grown.driverSpecific.num_allocated_clusters).to.equal(thin ? 4 : 10);
        await closeAll();
        h = await open(lv.name);
        expect(h.numBlocks).to.equal((10 * CLUSTER) / 4096);
        const model = new Uint8Array(10 * CLUSTER);
        model.set(data.bytes, 0);
        await verify(h, model);
        await closeAll();
        await ne.resizeLvol(lv.name, 2 * CLUSTER);
        const shrunk = lvolInfo(spdk, lv.name);
        expect(shrunk.numClusters).to.equal(2);
        expect(shrunk.driverSpecific.num_allocated_clusters).to.equal(2);
        h = await open(lv.name);
        await verify(h, model.subarray(0, 2 * CLUSTER));
        await expectErrno(h.read(data, { offsetBlocks: h.numBlocks, numBlocks: 1 }), 34 /* ERANGE from the queue */);
        await closeAll();
        await ne.resizeLvol(lv.name, 3 * CLUSTER); // the cluster given back reads zeroes
        h = await open(lv.name);
        const m3 = new Uint8Array(3 * CLUSTER);
        m3.set(data.bytes.subarray(0, 2 * CLUSTER), 0);
        await verify(h, m3);
        await closeAll();
      }
      await expectErrno(ne.resizeLvol(lvolInfo(spdk, 'lvs0/thick').name, (total + 10) * CLUSTER), ENOSPC);
      expect(lvolInfo(spdk, 'lvs0/thick').numClusters).to.equal(3);
      expect(store(spdk, lvs.uuid).freeClusters).to.equal(total - 3 - 2);
      await expectErrno(ne.resizeLvol('nope', MiB), ENODEV);
      await expectErrno(ne.resizeLvol('M0', MiB), ENODEV);
    });

    it('read-only lvols refuse writes (EPERM), resize and rename; reads still work', async () => {
      const lvs = await mallocStore();
      const lv = await ne.createLvol(lvs.uuid, 'ro', MiB, true, 'unmap');
      const h = await open(lv.name);
      const buf = buffer(4096);
      buf.bytes.fill(9);
      await h.write(buf, { offsetBlocks: 3, numBlocks: 1 });
      await ne.setLvolReadOnly(lv.name);
      await ne.setLvolReadOnly(lv.name); // idempotent
      const info = lvolInfo(spdk, lv.name);
      expect(info.readOnly).to.equal(true);
      expect(info.ioTypes.write).to.equal(false);
      await expectErrno(h.write(buf, { offsetBlocks: 0, numBlocks: 1 }), EPERM);
      await expectErrno(h.writeZeroes({ offsetBlocks: 0, numBlocks: 1 }), EPERM);
      await expectErrno(h.unmap({ offsetBlocks: 0, numBlocks: 1 }), EPERM);
      buf.bytes.fill(0);
      await h.read(buf, { offsetBlocks: 3, numBlocks: 1 });
      expect(buf.bytes.every((x) => x === 9)).to.equal(true);
      await expectErrno(ne.resizeLvol(lv.name, 2 * MiB), EPERM);
      await expectErrno(ne.renameLvol(lv.name, 'other'), EPERM);
      expect(lvolInfo(spdk, lv.name).aliases).to.deep.equal(['lvs0/ro']);
    });

    it('renames an lvol: the alias changes with the commit; duplicates are refused', async () => {
      const lvs = await mallocStore();
      const a = await ne.createLvol(lvs.uuid, 'a', MiB, true, 'unmap');
      await ne.createLvol(lvs.uuid, 'b', MiB, true, 'unmap');
      await expectErrno(ne.renameLvol(a.name, 'b'), EEXIST);
      await ne.renameLvol(a.name, 'a'); // same name: nothing to do
      await ne.renameLvol('lvs0/a', 'c');
      expect(lvolInfo(spdk, a.name).aliases).to.deep.equal(['lvs0/c']);
      expect(lvolInfo(spdk, a.name).lvolName).to.equal('c');
      expect(ne.listBdevs().some((b) => b.aliases.includes('lvs0/a'))).to.equal(false);
      await ne.createLvol(lvs.uuid, 'a', MiB, true, 'unmap'); // the old name is free again
      await expectErrno(ne.deleteLvol('lvs0/nope'), ENODEV);
    });

    it('concurrent first writes from two reactors to the same thin clusters: data and accounting correct', async () => {
      const lvs = await mallocStore(16384, 512, 16 * KiB);
      const lv = await ne.createLvol(lvs.uuid, 'v', 4 * MiB, true, 'unmap');
      const h0 = await open(lv.name, 0);
      const h1 = await open(lv.name, 1);
      const bs = 512;
      const perCluster = (16 * KiB) / bs;
      const clusters = (4 * MiB) / (16 * KiB);
      const model = new Uint8Array(4 * MiB);
      // Every cluster gets blocks from both reactors at once; even blocks from reactor 0, odd
      // from reactor 1, all in flight together.
      const ios: Promise<void>[] = [];
      for (let c = 0; c < clusters; c++) {
        for (let k = 0; k < 4; k++) {
          const blk = c * perCluster + ((c * 7 + k * 5) % perCluster);
          const h = blk % 2 === 0 ? h0 : h1;
          const b = buffer(bs);
          fillPattern(b.bytes, blk + 1);
          model.set(b.bytes, blk * bs);
          ios.push(h.write(b, { offsetBlocks: blk, numBlocks: 1 }));
        }
      }
      await Promise.all(ios);
      await Promise.all([h0.flush(), h1.flush()]);
      const info = lvolInfo(spdk, lv.name);
      expect(info.driverSpecific.num_allocated_clusters).to.equal(clusters);
      expect(store(spdk, lvs.uuid).freeClusters).to.equal(lvs.totalDataClusters - clusters);
      await verify(h0, model);
      await verify(h1, model);
    });
  });

  describe('persistence', () => {
    it('re-tastes after a restart: same store, UUIDs, names, sizes, flags and data', async () => {
      const f = makeFile(tmp.dir, 'disk.img', 64 * MiB);
      ne.createFileBdev('F0', f, 4096, false, 'aio');
      const lvs = await ne.createLvstore('F0', 'lvs0', CLUSTER, 'write_zeroes');
      const thick = await ne.createLvol(lvs.uuid, 'thick', 5 * CLUSTER, false, 'write_zeroes');
      const thin = await ne.createLvol(lvs.uuid, 'thin', 40 * CLUSTER, true, 'none');
      const ro = await ne.createLvol(lvs.uuid, 'ro', CLUSTER, true, 'unmap');
      const models = new Map<string, Uint8Array>();
      for (const lv of [thick, thin, ro]) {
        const h = await open(lv.name);
        const m = new Uint8Array(h.numBlocks * 4096);
        const buf = buffer(3 * CLUSTER);
        for (let i = 0; i < 5; i++) {
          const n = 1 + Math.floor(Math.random() * Math.min(40, h.numBlocks - 1));
          const off = Math.floor(Math.random() * (h.numBlocks - n));
          fillPattern(buf.bytes.subarray(0, n * 4096), i + lv.name.charCodeAt(0));
          await h.write(buf, { offsetBlocks: off, numBlocks: n });
          m.set(buf.bytes.subarray(0, n * 4096), off * 4096);
        }
        models.set(lv.name, m);
      }
      await ne.setLvolReadOnly(ro.name);
      await ne.renameLvol(thin.name, 'thin2');
      // No flush: stop() commits the allocations of acknowledged writes.
      const before = ne.listBdevs().filter((b) => b.driver === 'lvol');
      const storeBefore = store(spdk, lvs.uuid);
      await restart();
      const base = ne.createFileBdev('F0', f, 4096, false, 'aio');
      expect(base.claimed).to.equal(true);
      expect(base.tasteError).to.equal(undefined);
      expect(ne.listLvstores()).to.deep.equal([storeBefore]);
      const after = ne.listBdevs().filter((b) => b.driver === 'lvol');
      expect(after).to.deep.equal(before);
      expect(lvolInfo(spdk, 'lvs0/thin2').name).to.equal(thin.name);
      expect(lvolInfo(spdk, ro.name).readOnly).to.equal(true);
      for (const [name, m] of models) await verify(await open(name), m);
    });

    it('refuses a store whose two metadata slots are corrupt; the base bdev is still usable', async () => {
      const f = makeFile(tmp.dir, 'disk.img', 16 * MiB);
      ne.createFileBdev('F0', f, 4096, false, 'aio');
      const lvs = await ne.createLvstore('F0', 'lvs0', CLUSTER, 'unmap');
      await ne.createLvol(lvs.uuid, 'a', MiB, true, 'unmap');
      await restart();
      const s = slotSize(16 * MiB, CLUSTER);
      const copy = path.join(tmp.dir, 'copy.img');
      fs.copyFileSync(f, copy);
      flipByte(copy, 4096 + 30);
      flipByte(copy, 4096 + s + 30);
      const info = ne.createFileBdev('C0', copy, 4096, false, 'aio');
      expect(info.claimed).to.equal(false);
      expect(info.tasteError).to.match(/^lvstore metadata on C0 is corrupt: both metadata copies fail their checksum/);
      expect(ne.listLvstores()).to.deep.equal([]);
      expect(ne.listBdevs().map((b) => b.name)).to.deep.equal(['C0']);
      const h = await open('C0');
      const buf = buffer(4096);
      await h.read(buf, { offsetBlocks: 0, numBlocks: 1 });
      expect(Buffer.from(buf.bytes.subarray(0, 8)).toString('latin1')).to.equal('SPDKNLVS');
      await closeAll();
      // The original, untouched, still loads.
      ne.createFileBdev('F0', f, 4096, false, 'aio');
      expect(ne.listLvstores().map((x) => x.uuid)).to.deep.equal([lvs.uuid]);
    });

    it('a corrupt newest slot falls back to the other one (the previous commit)', async () => {
      const f = makeFile(tmp.dir, 'disk.img', 16 * MiB);
      ne.createFileBdev('F0', f, 4096, false, 'aio');
      const lvs = await ne.createLvstore('F0', 'lvs0', CLUSTER, 'unmap');
      const a = await ne.createLvol(lvs.uuid, 'a', MiB, true, 'unmap');
      await ne.createLvol(lvs.uuid, 'b', MiB, true, 'unmap');
      await restart();
      const s = slotSize(16 * MiB, CLUSTER);
      const seqA = readSlotSequence(f, 4096)!;
      const seqB = readSlotSequence(f, 4096 + s)!;
      expect(seqA + seqB).to.equal(5n); // 1 (creation), 2 (a), 3 (b): slot A then B then A
      const newest = seqA > seqB ? 4096 : 4096 + s;
      flipByte(f, newest + 100); // inside the 176-byte image
      ne.createFileBdev('F0', f, 4096, false, 'aio');
      expect(ne.listLvstores().map((x) => x.uuid)).to.deep.equal([lvs.uuid]);
      expect(ne.listBdevs().filter((b) => b.driver === 'lvol').map((b) => b.name)).to.deep.equal([a.name]);
      // The next commit goes to the corrupt slot, and the store keeps working.
      await ne.createLvol(lvs.uuid, 'c', MiB, true, 'unmap');
      await restart();
      ne.createFileBdev('F0', f, 4096, false, 'aio');
      expect(ne.listBdevs().filter((b) => b.driver === 'lvol').map((b) => (b as LvolInfo).lvolName)).to.deep.equal(['a', 'c']);
    });

    it('refuses an image that references a data cluster twice, with a clear error', async () => {
      // Build a store with two thick lvols, then rewrite the newest image so that both map the
      // same data cluster (with a valid checksum: the semantic check must catch it).
      const f = makeFile(tmp.dir, 'disk.img', 16 * MiB);
      ne.createFileBdev('F0', f, 4096, false, 'aio');
      const lvs = await ne.createLvstore('F0', 'lvs0', CLUSTER, 'unmap');
      await ne.createLvol(lvs.uuid, 'a', CLUSTER, false, 'unmap');
      await ne.createLvol(lvs.uuid, 'b', CLUSTER, false, 'unmap');
      await restart();
      const s = slotSize(16 * MiB, CLUSTER);
      const img = fs.readFileSync(f);
      for (const off of [4096, 4096 + s]) {
        const len = img.readUInt32LE(off + 16);
        const image = Buffer.from(img.subarray(off, off + len));
        if (image.subarray(0, 8).toString('latin1') !== 'SPDKNLVM' || image.readUInt32LE(44) !== 2) {
          image.fill(0, 0, 64); // the older image (one lvol): make it invalid too
        } else {
          // The last 4 bytes are b's only (index 0 -> data cluster) pair's cluster number; a's
          // record ends right before b's record: find a's cluster number and copy it into b's.
          const nameField = (n: number): number => (2 + n + 7) & ~7;
          let p = 48 + nameField(image.readUInt16LE(48));
          const recEnd = (q: number): number => q + 48 + nameField(image.readUInt16LE(q + 48));
          const aCount = recEnd(p);
          const aCluster = image.readUInt32LE(aCount + 4 + 4);
          p = aCount + 4 + 8;
          const bCount = recEnd(p);
          image.writeUInt32LE(aCluster, bCount + 4 + 4);
          image.writeUInt32LE(0, 20);
          image.writeUInt32LE(crc32c(image), 20);
        }
        image.copy(img, off);
      }
      fs.writeFileSync(f, img);
      const info = ne.createFileBdev('F0', f, 4096, false, 'aio');
      expect(info.tasteError).to.match(/both metadata copies are invalid .*referenced twice/);
      expect(info.claimed).to.equal(false);
      expect(ne.listLvstores()).to.deep.equal([]);
    });

    it('a SIGKILLed process: flushed data and answered operations are back', async function () {
      this.timeout(60000);
      const f = makeFile(tmp.dir, 'disk.img', 32 * MiB);
      const lib = path.join(__dirname, '..', 'lib');
      const script = `
        const { Spdk } = require(${JSON.stringify(lib)});
        (async () => {
          const spdk = await Spdk.start({ engine: 'builtin', cores: [0, 1] });
          const ne = spdk.nativeEngine;
          ne.createFileBdev('F0', ${JSON.stringify(f)}, 4096, false, 'aio');
          const lvs = await ne.createLvstore('F0', 'lvs0', ${CLUSTER}, 'unmap');
          const lv = await ne.createLvol(lvs.uuid, 'v', ${8 * MiB}, true, 'unmap');
          const h = await spdk.bdev.open(lv.name, { reactor: 1 });
          const buf = spdk.allocBuffer(${CLUSTER});
          for (let i = 0; i < 20; i++) {
            buf.bytes.fill(i + 1);
            await h.write(buf, { offsetBlocks: i * 48, numBlocks: 16 });
          }
          await h.flush();
          process.stdout.write(JSON.stringify({ lvs: lvs.uuid, lv: lv.name }) + '\\n');
          // Keep writing (unflushed) until killed.
          for (let i = 0; ; i++) {
            buf.bytes.fill(200);
            await h.write(buf, { offsetBlocks: 1000 + (i % 20) * 16, numBlocks: 16 });
          }
        })();`;
      const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      const line = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('\n')) resolve(out.split('\n')[0]);
        });
        child.on('exit', (code) => reject(new Error(`child exited ${code}`)));
      });
      const ids = JSON.parse(line) as { lvs: string; lv: string };
      await new Promise((r) => setTimeout(r, 100));
      child.kill('SIGKILL');
      await new Promise((r) => child.on('exit', r));
      const info = ne.createFileBdev('F0', f, 4096, false, 'aio');
      expect(info.tasteError).to.equal(undefined);
      expect(ne.listLvstores().map((x) => x.uuid)).to.deep.equal([ids.lvs]);
      const h = await open(ids.lv);
      const buf = buffer(16 * 4096);
      for (let i = 0; i < 20; i++) {
        await h.read(buf, { offsetBlocks: i * 48, numBlocks: 16 });
        expect(buf.bytes.every((x) => x === i + 1), `write ${i}`).to.equal(true);
      }
      // Unflushed writes: each block reads either what was written or zeroes, never garbage.
      await h.read(buf, { offsetBlocks: 1000, numBlocks: 16 });
      expect(buf.bytes.every((x) => x === 0 || x === 200)).to.equal(true);
      const s = store(spdk, ids.lvs);
      const lv = lvolInfo(spdk, ids.lv);
      expect(s.freeClusters).to.equal(s.totalDataClusters - (lv.driverSpecific.num_allocated_clusters as number));
    });
  });

  describe('snapshots and clones', () => {
    it('snapshot: read-only copy of the moment; the origin becomes a thin clone and diverges', async () => {
      const lvs = await mallocStore();
      const total = lvs.totalDataClusters;
      const origin = await ne.createLvol(lvs.uuid, 'origin', 4 * CLUSTER, false, 'unmap');
      const h = await open(origin.name, 1);
      const buf = buffer(4 * CLUSTER);
      fillPattern(buf.bytes, 5);
      await h.write(buf, { offsetBlocks: 0, numBlocks: h.numBlocks });
      const model = new Uint8Array(buf.bytes);
      // I/O keeps flowing while the snapshot is taken.
      const busy = (async () => {
        const b = buffer(4096);
        for (let i = 0; i < 200; i++) await h.read(b, { offsetBlocks: i % h.numBlocks, numBlocks: 1 });
      })();
      const snap = (await ne.snapshotLvol(origin.name, 'snap')) as LvolInfo;
      await busy;
      expect(snap.readOnly).to.equal(true);
      expect(snap.aliases).to.deep.equal(['lvs0/snap']);
      expect(snap.numBlocks).to.equal(h.numBlocks);
      expect(snap.driverSpecific).to.deep.equal({
        lvol_store_uuid: lvs.uuid,
        base_bdev: 'M0',
        thin_provision: false,
        num_allocated_clusters: 4,
        snapshot: true,
        clone: false,
        clones: ['origin'],
        esnap_clone: false,
      });
      const o = lvolInfo(spdk, origin.name);
      expect(o.driverSpecific).to.deep.equal({
        lvol_store_uuid: lvs.uuid,
        base_bdev: 'M0',
        thin_provision: true,
        num_allocated_clusters: 0,
        snapshot: false,
        clone: true,
        base_snapshot: 'snap',
        esnap_clone: false,
      });
      expect(store(spdk, lvs.uuid).freeClusters).to.equal(total - 4);
      await verify(h, model); // reads through to the snapshot
      // Copy-on-write: one block into cluster 1 copies that cluster.
      const one = buffer(4096);
      one.bytes.fill(0x77);
      await h.write(one, { offsetBlocks: 20, numBlocks: 1 });
      model.set(one.bytes, 20 * 4096);
      expect(lvolInfo(spdk, origin.name).driverSpecific.num_allocated_clusters).to.equal(1);
      expect(store(spdk, lvs.uuid).freeClusters).to.equal(total - 5);
      await verify(h, model);
      const hs = await open(snap.name, 0);
      await verify(hs, buf.bytes);
      await expectErrno(hs.write(one, { offsetBlocks: 0, numBlocks: 1 }), EPERM);
      // Snapshot of a read-only lvol is refused, as in SPDK.
      await expectErrno(ne.snapshotLvol(snap.name, 'snap2'), EINVAL);
      await expectErrno(ne.snapshotLvol(origin.name, 'snap'), EEXIST);
    });

    it('clones: thin, COW from the snapshot, independent of each other; delete rules', async () => {
      const lvs = await mallocStore();
      const total = lvs.totalDataClusters;
      const base = await ne.createLvol(lvs.uuid, 'base', 3 * CLUSTER, true, 'unmap');
      const hb = await open(base.name);
      const data = buffer(3 * CLUSTER);
      fillPattern(data.bytes, 9);
      await hb.write(data, { offsetBlocks: 0, numBlocks: (2 * CLUSTER) / 4096 }); // clusters 0, 1
      await closeAll();
      await expectErrno(ne.cloneLvol(base.name, 'c0'), EINVAL); // not read-only
      await ne.setLvolReadOnly(base.name);
      const c1 = (await ne.cloneLvol(base.name, 'c1')) as LvolInfo;
      const c2 = (await ne.cloneLvol('lvs0/base', 'c2')) as LvolInfo;
      expect(c1.driverSpecific.clone).to.equal(true);
      expect(c1.driverSpecific.base_snapshot).to.equal('base');
      expect(c1.driverSpecific.thin_provision).to.equal(true);
      expect(c1.numBlocks).to.equal((3 * CLUSTER) / 4096);
      expect(lvolInfo(spdk, base.name).driverSpecific.clones).to.deep.equal(['c1', 'c2']);
      expect(lvolInfo(spdk, base.name).driverSpecific.snapshot).to.equal(true);
      const h1 = await open(c1.name, 0);
      const h2 = await open(c2.name, 1);
      const m1 = new Uint8Array(3 * CLUSTER);
      m1.set(data.bytes.subarray(0, 2 * CLUSTER));
      const m2 = new Uint8Array(m1);
      const w = buffer(8192);
      w.bytes.fill(0x11);
      await h1.write(w, { offsetBlocks: 1, numBlocks: 2 }); // COW of cluster 0
      m1.set(w.bytes, 4096);
      w.bytes.fill(0x22);
      await h2.write(w, { offsetBlocks: 40, numBlocks: 2 }); // cluster 2: parent has none -> zeroes
      m2.set(w.bytes, 40 * 4096);
      await h2.writeZeroes({ offsetBlocks: 16, numBlocks: 1 }); // zeroes over parent data -> COW
      m2.fill(0, 16 * 4096, 17 * 4096);
      await verify(h1, m1);
      await verify(h2, m2);
      expect(store(spdk, lvs.uuid).freeClusters).to.equal(total - 2 - 3);
      // A snapshot with two clones cannot be deleted.
      await expectErrno(ne.deleteLvol(base.name), EBUSY);
      await closeAll();
      await ne.deleteLvol(c2.name);
      expect(lvolInfo(spdk, base.name).driverSpecific.clones).to.deep.equal(['c1']);
      // With one clone left, deleting the snapshot hands its clusters to the clone.
      await ne.deleteLvol(base.name);
      const c1after = lvolInfo(spdk, c1.name);
      expect(c1after.driverSpecific.clone).to.equal(false);
      expect(c1after.driverSpecific.base_snapshot).to.equal(undefined);
      expect(c1after.driverSpecific.num_allocated_clusters).to.equal(2); // its own 0 + inherited 1
      expect(store(spdk, lvs.uuid).freeClusters).to.equal(total - 2);
      await verify(await open(c1.name), m1);
    });

    it('snapshot chains survive a restart and read through every level', async () => {
      const f = makeFile(tmp.dir, 'disk.img', 32 * MiB);
      ne.createFileBdev('F0', f, 4096, false, 'aio');
      const lvs = await ne.createLvstore('F0', 'lvs0', CLUSTER, 'unmap');
      const v = await ne.createLvol(lvs.uuid, 'v', 4 * CLUSTER, true, 'unmap');
      let h = await open(v.name);
      const model = new Uint8Array(4 * CLUSTER);
      const w = buffer(CLUSTER);
      for (let level = 0; level < 3; level++) {
        fillPattern(w.bytes, 100 + level);
        await h.write(w, { offsetBlocks: (level * CLUSTER) / 4096, numBlocks: CLUSTER / 4096 });
        model.set(w.bytes, level * CLUSTER);
        await ne.snapshotLvol(v.name, `s${level}`);
      }
      w.bytes.fill(0xfe);
      await h.write(w, { offsetBlocks: 8, numBlocks: 1 }); // COW from s0 through s2 -> s1 -> s0
      model.set(w.bytes.subarray(0, 4096), 8 * 4096);
      await verify(h, model);
      const clone = await ne.cloneLvol('lvs0/s1', 'fromS1');
      await closeAll();
      await restart();
      ne.createFileBdev('F0', f, 4096, false, 'aio');
      const names = ne.listBdevs().filter((b) => b.driver === 'lvol').map((b) => (b as LvolInfo).lvolName);
      expect(names).to.deep.equal(['v', 's0', 's1', 's2', 'fromS1']);
      expect(lvolInfo(spdk, 'lvs0/v').driverSpecific.base_snapshot).to.equal('s2');
      expect(lvolInfo(spdk, 'lvs0/s2').driverSpecific.base_snapshot).to.equal('s1');
      expect(lvolInfo(spdk, 'lvs0/s1').driverSpecific.clones).to.deep.equal(['s2', 'fromS1']);
      h = await open(v.name);
      await verify(h, model);
      // fromS1 sees s1's moment: levels 0 and 1 written, without the later block write.
      const m1real = new Uint8Array(4 * CLUSTER);
      const t = new Uint8Array(CLUSTER);
      fillPattern(t, 100);
      m1real.set(t, 0);
      fillPattern(t, 101);
      m1real.set(t, CLUSTER);
      await verify(await open(clone.name), m1real);
    });
  });

  describe('inflate and decouple', () => {
    const B = CLUSTER / 4096; // blocks per cluster

    it('inflate: every cluster allocated, data identical, no parent, thick; survives a restart; the snapshot can go', async () => {
      const f = makeFile(tmp.dir, 'disk.img', 32 * MiB);
      ne.createFileBdev('F0', f, 4096, false, 'aio');
      const lvs = await ne.createLvstore('F0', 'lvs0', CLUSTER, 'unmap');
      const total = lvs.totalDataClusters;
      const v = await ne.createLvol(lvs.uuid, 'v', 6 * CLUSTER, true, 'unmap');
      const hv = await open(v.name);
      const w = buffer(4 * CLUSTER);
      fillPattern(w.bytes, 21);
      await hv.write(w, { offsetBlocks: 0, numBlocks: 4 * B }); // clusters 0..3; 4, 5 unwritten
      const snapModel = new Uint8Array(6 * CLUSTER);
      snapModel.set(w.bytes);
      const snap = await ne.snapshotLvol(v.name, 'snap');
      const c = await ne.cloneLvol(snap.name, 'c');
      const hc = await open(c.name, 1);
      const model = new Uint8Array(snapModel);
      const one = buffer(2 * 4096);
      one.bytes.fill(0x5c);
      await hc.write(one, { offsetBlocks: B + 3, numBlocks: 2 }); // COW of cluster 1
      model.set(one.bytes, (B + 3) * 4096);
      one.bytes.fill(0xa7);
      await hc.write(one, { offsetBlocks: 5 * B + 1, numBlocks: 1 }); // cluster 5: zeroes + a block
      model.set(one.bytes.subarray(0, 4096), (5 * B + 1) * 4096);
      await verify(hc, model);
      expect(lvolInfo(spdk, c.name).driverSpecific.num_allocated_clusters).to.equal(2);
      expect(store(spdk, lvs.uuid).freeClusters).to.equal(total - 4 - 2);
      // I/O keeps flowing on both reactors while the clone is inflated: reads of every cluster,
      // and first writes into clusters the inflate is copying.
      const reader = (async () => {
        const b = buffer(4096);
        for (let i = 0; i < 200; i++) await hc.read(b, { offsetBlocks: (i * 7) % (6 * B), numBlocks: 1 });
      })();
      const hc0 = await open(c.name, 0);
      const writer = (async () => {
        const b = buffer(4096);
        for (let i = 0; i < 8; i++) {
          b.bytes.fill(0x30 + i);
          const blk = (i % 2 === 0 ? 2 * B : 4 * B) + i;
          await hc0.write(b, { offsetBlocks: blk, numBlocks: 1 });
          model.set(b.bytes, blk * 4096);
        }
      })();
      await ne.inflateLvol(c.name);
      await Promise.all([reader, writer]);
      const ci = lvolInfo(spdk, c.name);
      expect(ci.driverSpecific).to.include({ thin_provision: false, clone: false, num_allocated_clusters: 6 });
      expect(ci.driverSpecific).to.not.have.property('base_snapshot');
      expect(lvolInfo(spdk, snap.name).driverSpecific.clones).to.deep.equal(['v']);
      expect(store(spdk, lvs.uuid).freeClusters).to.equal(total - 4 - 6);
      await verify(hc, model);
      await verify(await open(snap.name), snapModel);
      // Inflating again (thick now) changes nothing.
      await ne.inflateLvol(c.name);
      expect(store(spdk, lvs.uuid).freeClusters).to.equal(total - 4 - 6);
      // Persisted: the clone opens as an independent thick lvol with the same data.
      await closeAll();
      await restart();
      ne.createFileBdev('F0', f, 4096, false, 'aio');
      const after = lvolInfo(spdk, 'lvs0/c');
      expect(after.driverSpecific).to.include({ thin_provision: false, clone: false, num_allocated_clusters: 6 });
      expect(lvolInfo(spdk, 'lvs0/snap').driverSpecific.clones).to.deep.equal(['v']);
      // The snapshot no longer backs c: v and then the snapshot can go, c keeps its data.
      await ne.deleteLvol('lvs0/v');
      await ne.deleteLvol('lvs0/snap');
      expect(store(spdk, lvs.uuid).freeClusters).to.equal(total - 6);
      await verify(await open('lvs0/c'), model);
    });

    it('decouple: copies only what the parent holds; the grandparent becomes the parent; without a parent EINVAL', async () => {
      const lvs = await mallocStore();
      const total = lvs.totalDataClusters;
      const v = await ne.createLvol(lvs.uuid, 'v', 6 * CLUSTER, true, 'unmap');
      const hv = await open(v.name);
      const w = buffer(3 * CLUSTER);
      fillPattern(w.bytes, 31);
      await hv.write(w, { offsetBlocks: 0, numBlocks: 3 * B }); // clusters 0..2 -> s0
      const model = new Uint8Array(6 * CLUSTER);
      model.set(w.bytes);
      const s0 = await ne.snapshotLvol(v.name, 's0');
      fillPattern(w.bytes, 32);
      await hv.write(w, { offsetBlocks: 3 * B, numBlocks: B }); // cluster 3 -> s1
      model.set(w.bytes.subarray(0, CLUSTER), 3 * CLUSTER);
      const s1 = await ne.snapshotLvol(v.name, 's1');
      const c = await ne.cloneLvol(s1.name, 'c');
      const hc = await open(c.name, 1);
      const b = buffer(4096);
      b.bytes.fill(0x99);
      await hc.write(b, { offsetBlocks: 5 * B, numBlocks: 1 }); // cluster 5 (no ancestor has it)
      model.set(b.bytes, 5 * B * 4096);
      await verify(hc, model);
      const free0 = store(spdk, lvs.uuid).freeClusters;
      expect(free0).to.equal(total - 3 - 1 - 1);
      // First decouple: s1 holds only cluster 3; c becomes a clone of s0 (as SPDK does).
      await ne.decoupleLvolParent(c.name);
      let ci = lvolInfo(spdk, c.name);
      expect(ci.driverSpecific).to.include({ thin_provision: true, clone: true, base_snapshot: 's0', num_allocated_clusters: 2 });
      expect(lvolInfo(spdk, s1.name).driverSpecific.clones).to.deep.equal(['v']);
      expect(lvolInfo(spdk, s0.name).driverSpecific.clones).to.deep.equal(['s1', 'c']);
      expect(store(spdk, lvs.uuid).freeClusters).to.equal(free0 - 1);
      await verify(hc, model);
      // Second: s0's clusters 0..2; no parent left, cluster 4 stays unallocated (still thin).
      await ne.decoupleLvolParent(c.name);
      ci = lvolInfo(spdk, c.name);
      expect(ci.driverSpecific).to.include({ thin_provision: true, clone: false, num_allocated_clusters: 5 });
      expect(ci.driverSpecific).to.not.have.property('base_snapshot');
      expect(lvolInfo(spdk, s0.name).driverSpecific.clones).to.deep.equal(['s1']);
      expect(store(spdk, lvs.uuid).freeClusters).to.equal(free0 - 4);
      await verify(hc, model);
      await expectErrno(ne.decoupleLvolParent(c.name), EINVAL, /no parent/);
      await expectErrno(ne.decoupleLvolParent(v.name + 'x'), ENODEV);
      // Inflating a snapshot that has a parent and a clone: it becomes independent, and the
      // clone still reads through it.
      const vModel = new Uint8Array(model);
      vModel.fill(0, 5 * CLUSTER);
      await ne.inflateLvol(s1.name);
      expect(lvolInfo(spdk, s1.name).driverSpecific).to.include({ clone: false, num_allocated_clusters: 6, thin_provision: false });
      expect(lvolInfo(spdk, s0.name).driverSpecific).to.not.have.property('clones');
      await verify(hv, vModel);
      await ne.deleteLvol(s0.name);
      await verify(hv, vModel);
      await verify(hc, model);
    });

    it('out of space: inflate fails ENOSPC before changing anything; decouple still fits', async () => {
      const lvs = await mallocStore(2048); // 8 MiB: a few dozen clusters
      const total = lvs.totalDataClusters;
      const big = total + 8;
      const v = await ne.createLvol(lvs.uuid, 'v', big * CLUSTER, true, 'unmap');
      const hv = await open(v.name);
      const w = buffer(2 * CLUSTER);
      fillPattern(w.bytes, 41);
      await hv.write(w, { offsetBlocks: 0, numBlocks: 2 * B });
      const snap = await ne.snapshotLvol(v.name, 'snap');
      const c = await ne.cloneLvol(snap.name, 'c');
      const hc = await open(c.name, 1);
      const b = buffer(4096);
      b.bytes.fill(0x42);
      await hc.write(b, { offsetBlocks: 10 * B, numBlocks: 1 });
      const before = JSON.stringify([lvolInfo(spdk, c.name), lvolInfo(spdk, snap.name), store(spdk, lvs.uuid)]);
      await expectErrno(ne.inflateLvol(c.name), ENOSPC, /free clusters/);
      await expectErrno(ne.inflateLvol(v.name), ENOSPC);
      expect(JSON.stringify([lvolInfo(spdk, c.name), lvolInfo(spdk, snap.name), store(spdk, lvs.uuid)])).to.equal(before);
      const model = new Uint8Array(12 * CLUSTER);
      model.set(w.bytes);
      model.set(b.bytes, 10 * B * 4096);
      const head = buffer(12 * CLUSTER);
      await hc.read(head, { offsetBlocks: 0, numBlocks: 12 * B });
      expect(Buffer.compare(head.bytes, model)).to.equal(0);
      // Decoupling needs only the snapshot's two clusters.
      await ne.decoupleLvolParent(c.name);
      expect(lvolInfo(spdk, c.name).driverSpecific).to.include({ clone: false, num_allocated_clusters: 3 });
      head.bytes.fill(0xee);
      await hc.read(head, { offsetBlocks: 0, numBlocks: 12 * B });
      expect(Buffer.compare(head.bytes, model)).to.equal(0);
    });
  });

  describe('metadata operations under write load', () => {
    // Each operation freezes the lvols whose maps or parent it changes and waits until no
    // channel of theirs has an I/O in flight. Writers and readers on three reactors (two reactor
    // threads and the JS thread's) keep I/O in flight on a slow base the whole time, opening new
    // channels as they go; each block's content names its block and version, so a lost,
    // misplaced or torn write, or a read from the wrong place, shows up.
    const BS = 4096;
    const B = CLUSTER / BS;

    function stamp(bytes: Uint8Array, blk: number, version: number): void {
      fillPattern(bytes, (blk * 7919 + version * 104729) >>> 0);
      const dv = new DataView(bytes.buffer, bytes.byteOffset, 8);
      dv.setUint32(0, blk, true);
      dv.setUint32(4, version, true);
    }
    /** The version a block holds (0 = never written: all zeroes), or an error for anything else. */
    function versionOf(bytes: Uint8Array, blk: number): number {
      if (bytes.every((x) => x === 0)) return 0;
      const dv = new DataView(bytes.buffer, bytes.byteOffset, 8);
      const v = dv.getUint32(4, true);
      const want = new Uint8Array(BS);
      stamp(want, blk, v);
      if (dv.getUint32(0, true) !== blk || Buffer.compare(bytes, want) !== 0) {
        throw new Error(`block ${blk}: neither zeroes nor a whole write of it (says block ${dv.getUint32(0, true)} version ${v})`);
      }
      return v;
    }

    it('a channel opened while its lvol is frozen starts frozen: its I/O waits for the thaw', async () => {
      // Each I/O on this base takes 4 ms, so the snapshot's commit (flush, slot write, flush),
      // during which the origin stays frozen, takes at least 12 ms.
      (ne as unknown as { createRecordBdev(n: string, blocks: number, bs: number, delayUs: number): unknown }).createRecordBdev('R0', (16 * MiB) / BS, BS, 4000);
      const lvs = await ne.createLvstore('R0', 'lvs0', CLUSTER, 'unmap');
      let exercised = 0;
      // The case is exercised when the channel exists before the snapshot is answered; on a busy
      // machine the open may come late, so up to 5 attempts.
      for (let attempt = 0; attempt < 5 && exercised === 0; attempt++) {
        const v = await ne.createLvol(lvs.uuid, `v${attempt}`, 4 * CLUSTER, true, 'unmap');
        const b = buffer(BS);
        stamp(b.bytes, 0, 1);
        const h0 = await open(v.name, 0);
        await h0.write(b, { offsetBlocks: 0, numBlocks: 1 });
        await h0.flush(); // no commit pending: the snapshot's starts at once
        const events: string[] = [];
        const snap = ne.snapshotLvol(v.name, `s${attempt}`).then(() => events.push('snapshot answered'));
        await new Promise((r) => setTimeout(r, 5)); // the freeze has begun
        const h1 = await open(v.name, 1); // a new channel, created while v is frozen
        events.push('opened');
        const r = buffer(BS);
        await h1.read(r, { offsetBlocks: 0, numBlocks: 1 }); // 4 ms once it reaches the base
        events.push('read done');
        await snap;
        expect(versionOf(r.bytes, 0)).to.equal(1);
        if (events[0] !== 'opened') continue; // opened after the thaw: try again
        expect(events).to.deep.equal(['opened', 'snapshot answered', 'read done']);
        exercised++;
      }
      expect(exercised, 'no attempt opened the channel during the freeze').to.equal(1);
    });

    it('snapshot, resize, snapshot delete (merge), inflate and decouple: no acknowledged write lost, reads and snapshots hold writes of their moment', async () => {
      // A slow RAM disk (TEST-ONLY, bdev/record.h): each I/O lands and completes 300 us after
      // submission, so every operation below meets writes and reads in flight.
      (ne as unknown as { createRecordBdev(n: string, blocks: number, bs: number, delayUs: number): unknown }).createRecordBdev('R0', (64 * MiB) / BS, BS, 300);
      const lvs = await ne.createLvstore('R0', 'lvs0', CLUSTER, 'unmap');
      const clusters = 12;
      const blocks = clusters * B;
      const v = await ne.createLvol(lvs.uuid, 'v', clusters * CLUSTER, true, 'unmap');
      const reactors: Array<number | 'js'> = [0, 1, 'js'];
      const hs = await Promise.all(reactors.map((r) => open(v.name, r)));
      const submitted = new Array<number>(blocks).fill(0);
      const acked = new Array<number>(blocks).fill(0);
      let stop = false;
      let writes = 0;
      let reads = 0;
      let readError: Error | undefined;
      // Writer k owns the blocks b with b % 3 == k, in 4 lanes of one write in flight each (a
      // block's versions are acknowledged in order). Lane 3 opens a new handle (a new channel,
      // created frozen or not) for every 8 writes.
      const writer = async (k: number, lane: number): Promise<void> => {
        let h = hs[k];
        const buf = buffer(BS);
        let x = k * 31 + lane * 7 + 1;
        for (let n = 0; !stop; n++) {
          if (lane === 3 && n % 8 === 0) h = await spdk.bdev.open(v.name, { reactor: reactors[k] });
          x = (x * 1103515245 + 12345) >>> 0;
          const blk = ((x >>> 8) % (blocks / 12)) * 12 + lane * 3 + k; // lane- and owner-disjoint
          const ver = ++submitted[blk];
          stamp(buf.bytes, blk, ver);
          await h.write(buf, { offsetBlocks: blk, numBlocks: 1 });
          acked[blk] = ver;
          writes++;
          if (lane === 3 && (n % 8 === 7 || stop)) await h.close();
        }
      };
      // Readers on every reactor: a block reads as a version acknowledged no earlier than the
      // read's submission and submitted no later than its completion (never a freed or cleared
      // cluster, never the wrong ancestor).
      const reader = async (k: number): Promise<void> => {
        const buf = buffer(BS);
        let x = k + 101;
        while (!stop && !readError) {
          x = (x * 1103515245 + 12345) >>> 0;
          const blk = (x >>> 8) % blocks;
          const low = acked[blk];
          const submittedBefore = submitted[blk];
          await hs[k].read(buf, { offsetBlocks: blk, numBlocks: 1 });
          // A read that overlapped a write of the same block (from another reactor thread) may
          // see it half done, as on any block device: only whole-block results are checked then.
          const overlapped = submittedBefore !== low || submitted[blk] !== submittedBefore;
          try {
            if (overlapped) {
              try {
                versionOf(buf.bytes, blk);
              } catch {
                reads++;
                continue;
              }
            }
            const ver = versionOf(buf.bytes, blk);
            if (ver < low || ver > submitted[blk]) throw new Error(`read block ${blk}: version ${ver}, outside [${low}, ${submitted[blk]}]`);
          } catch (e) {
            readError = e as Error;
          }
          reads++;
        }
      };
      const running = [0, 1, 2].flatMap((k) => [0, 1, 2, 3].map((lane) => writer(k, lane)).concat([reader(k)]));
      const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 5));
      const snaps: Array<{ name: string; low: number[]; high: number[] }> = [];
      const snapshot = async (name: string): Promise<string> => {
        const low = acked.slice();
        const s = await ne.snapshotLvol(v.name, name);
        snaps.push({ name: s.name, low, high: submitted.slice() });
        return s.name;
      };
      try {
        for (let round = 0; round < 8; round++) {
          await settle();
          const s1 = await snapshot(`a${round}`);
          await settle();
          await ne.resizeLvol(v.name, (clusters + 1 + round) * CLUSTER);
          await settle();
          await snapshot(`b${round}`);
          await settle();
          // a<round>'s only clone is b<round>: deleting it merges it into b<round> (which, and v,
          // are frozen meanwhile).
          await ne.deleteLvol(s1);
          snaps.splice(snaps.findIndex((s) => s.name === s1), 1);
          await settle();
          await ne.decoupleLvolParent(v.name); // v: a clone of b<round>, whose clusters are copied
          await settle();
          await snapshot(`c${round}`);
          await settle();
          await ne.inflateLvol(v.name); // every cluster, no parent, thick
          await settle();
          expect(lvolInfo(spdk, v.name).driverSpecific).to.include({ clone: false, thin_provision: false });
          // Thin again for the next round (a snapshot makes v a thin clone).
          await snapshot(`d${round}`);
        }
      } finally {
        stop = true;
        await Promise.all(running);
      }
      if (readError) throw readError;
      expect(writes).to.be.greaterThan(100);
      expect(reads).to.be.greaterThan(100);
      await Promise.all(hs.map((h) => h.flush()));
      const buf = buffer(blocks * BS);
      const check = async (name: string, ok: (blk: number, ver: number) => string | undefined): Promise<void> => {
        const h = await open(name, 1);
        await h.read(buf, { offsetBlocks: 0, numBlocks: blocks });
        for (let blk = 0; blk < blocks; blk++) {
          const why = ok(blk, versionOf(buf.bytes.subarray(blk * BS, (blk + 1) * BS), blk));
          if (why) throw new Error(`${name} block ${blk}: ${why}`);
        }
      };
      await check(v.name, (blk, ver) => (ver === acked[blk] ? undefined : `version ${ver}, last acknowledged ${acked[blk]}`));
      for (const s of snaps) {
        await check(s.name, (blk, ver) =>
          ver >= s.low[blk] && ver <= s.high[blk] ? undefined : `version ${ver}, outside [${s.low[blk]}, ${s.high[blk]}]`,
        );
      }
    });
  });
});

// CRC-32C (Castagnoli), bitwise: only for building test images.
function crc32c(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

