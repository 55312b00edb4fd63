import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Spdk, SpdkError, SpdkBuffer, BdevHandle } from '../lib';
import { fillPattern, randomInt, tempDir } from './helpers/env';

interface Kind {
  name: string;
  create(spdk: Spdk, dir: string): Promise<string>;
}

const kinds: Kind[] = [
  {
    name: 'malloc',
    async create(spdk) {
      return (await spdk.rpc.call('bdev_malloc_create', { name: 'M0', num_blocks: 4096, block_size: 512 })) as string;
    },
  },
  {
    name: 'file (uring)',
    async create(spdk, dir) {
      const f = path.join(dir, 'disk.img');
      fs.writeFileSync(f, Buffer.alloc(0));
      fs.truncateSync(f, 4096 * 512);
      return (await spdk.rpc.call('bdev_uring_create', { name: 'F0', filename: f, block_size: 512 })) as string;
    },
  },
];

async function expectReject(p: Promise<unknown>, errno: number): Promise<SpdkError> {
  try {
    await p;
  } catch (e) {
    expect(e).to.be.instanceOf(SpdkError);
    expect((e as SpdkError).errno, (e as Error).message).to.equal(errno);
    return e as SpdkError;
  }
  throw new Error(`expected errno ${errno}, resolved`);
}

for (const kind of kinds) {
  describe(`bdev I/O on ${kind.name}`, () => {
    let spdk: Spdk;
    let bdev: BdevHandle;
    let tmp: ReturnType<typeof tempDir>;

    beforeEach(async () => {
      tmp = tempDir();
      spdk = await Spdk.start({ engine: 'builtin', cores: [0, 1] });
      const name = await kind.create(spdk, tmp.dir);
      bdev = await spdk.bdev.open(name);
    });

    afterEach(async () => {
      await spdk.stop();
      tmp.cleanup();
    });

    it('writes and reads back random patterns at random offsets and sizes', async () => {
      const bs = bdev.blockSize;
      const shadow = new Uint8Array(bdev.numBlocks * bs);
      const buf = spdk.allocBuffer(64 * bs);
      for (let round = 0; round < 200; round++) {
        const n = 1 + randomInt(64);
        const off = randomInt(bdev.numBlocks - n);
        fillPattern(buf.bytes.subarray(0, n * bs), round + 1);
        await bdev.write(buf, { offsetBlocks: off, numBlocks: n });
        shadow.set(buf.bytes.subarray(0, n * bs), off * bs);
      }
      for (let off = 0; off < bdev.numBlocks; off += 64) {
        buf.bytes.fill(0xee);
        await bdev.read(buf, { offsetBlocks: off, numBlocks: 64 });
        expect(Buffer.compare(buf.bytes, shadow.subarray(off * bs, (off + 64) * bs)), `blocks ${off}..+64`).to.equal(0);
      }
    });

    it('batches many I/Os issued in one tick (more than the queue depth)', async () => {
      const bs = bdev.blockSize;
      const count = 300; // > default depth 128: the rest wait for free tags
      const bufs: SpdkBuffer[] = [];
      for (let i = 0; i < count; i++) {
        const b = spdk.allocBuffer(bs);
        fillPattern(b.bytes, 1000 + i);
        bufs.push(b);
      }
      await Promise.all(bufs.map((b, i) => bdev.write(b, { offsetBlocks: i * 3, numBlocks: 1 })));
      const back = bufs.map(() => spdk.allocBuffer(bs));
      await Promise.all(back.map((b, i) => bdev.read(b, { offsetBlocks: i * 3, numBlocks: 1 })));
      for (let i = 0; i < count; i++) expect(Buffer.compare(back[i].bytes, bufs[i].bytes), `I/O ${i}`).to.equal(0);
    });

    it('readv/writev scatter and gather across buffers', async () => {
      const bs = bdev.blockSize;
      const a = spdk.allocBuffer(2 * bs);
      const b = spdk.allocBuffer(4 * bs);
      fillPattern(a.bytes, 7);
      fillPattern(b.bytes, 8);
      await bdev.writev([{ buffer: a }, { buffer: b, offset: bs, length: 2 * bs }], { offsetBlocks: 10, numBlocks: 4 });
      const flat = spdk.allocBuffer(4 * bs);
      await bdev.read(flat, { offsetBlocks: 10, numBlocks: 4 });
      expect(Buffer.compare(flat.bytes.subarray(0, 2 * bs), a.bytes)).to.equal(0);
      expect(Buffer.compare(flat.bytes.subarray(2 * bs), b.bytes.subarray(bs, 3 * bs))).to.equal(0);
      const c = spdk.allocBuffer(bs);
      const d = spdk.allocBuffer(3 * bs);
      await bdev.readv([{ buffer: c }, { buffer: d }], { offsetBlocks: 10, numBlocks: 4 });
      expect(Buffer.compare(c.bytes, flat.bytes.subarray(0, bs))).to.equal(0);
      expect(Buffer.compare(d.bytes, flat.bytes.subarray(bs))).to.equal(0);
    });

    it('flush, unmap and write_zeroes; unmapped blocks read as zeroes', async () => {
      const bs = bdev.blockSize;
      const buf = spdk.allocBuffer(16 * bs);
      fillPattern(buf.bytes, 3);
      await bdev.write(buf, { offsetBlocks: 100, numBlocks: 16 });
      await bdev.flush();
      await bdev.unmap({ offsetBlocks: 100, numBlocks: 8 });
      await bdev.writeZeroes({ offsetBlocks: 108, numBlocks: 4 });
      const back = spdk.allocBuffer(16 * bs);
      await bdev.read(back, { offsetBlocks: 100, numBlocks: 16 });
      expect(back.bytes.subarray(0, 12 * bs).every((x) => x === 0)).to.equal(true);
      expect(Buffer.compare(back.bytes.subarray(12 * bs), buf.bytes.subarray(12 * bs))).to.equal(0);
    });

    it('rejects bad I/O with a clear error and changes nothing', async () => {
      const bs = bdev.blockSize;
      const buf = spdk.allocBuffer(4 * bs);
      fillPattern(buf.bytes, 11);
      await bdev.write(buf, { offsetBlocks: 0, numBlocks: 4 });
      const junk = spdk.allocBuffer(4 * bs);
      junk.bytes.fill(0x55);
      await expectReject(bdev.write(junk, { offsetBlocks: bdev.numBlocks - 1, numBlocks: 2 }), 34); // past the end
      await expectReject(bdev.write(junk, { offsetBlocks: 0, numBlocks: 8 }), 34); // buffer too small
      await expectReject(bdev.write(junk, { offsetBlocks: 0, numBlocks: 0 }), 22);
      await expectReject(bdev.write(junk, { offsetBlocks: -1, numBlocks: 1 }), 22);
      await expectReject(bdev.write(junk, { offsetBlocks: 0.5, numBlocks: 1 }), 22);
      await expectReject(bdev.write(junk, { offsetBlocks: 0, numBlocks: 1, bufferOffset: 4 * bs }), 34);
      const freed = spdk.allocBuffer(bs);
      freed.free();
      await expectReject(bdev.write(freed, { offsetBlocks: 0, numBlocks: 1 }), 9);
      // One bad I/O in a batch fails alone; its neighbours succeed.
      const good = spdk.allocBuffer(bs);
      good.bytes.fill(0x11);
      const results = await Promise.allSettled([
        bdev.write(good, { offsetBlocks: 50, numBlocks: 1 }),
        bdev.write(junk, { offsetBlocks: bdev.numBlocks, numBlocks: 1 }),
        bdev.write(good, { offsetBlocks: 51, numBlocks: 1 }),
      ]);
      expect(results.map((r) => r.status)).to.deep.equal(['fulfilled', 'rejected', 'fulfilled']);
      const back = spdk.allocBuffer(4 * bs);
      await bdev.read(back, { offsetBlocks: 0, numBlocks: 4 });
      expect(Buffer.compare(back.bytes, buf.bytes)).to.equal(0);
    });

    it('a buffer under I/O cannot be freed; afterwards it can', async () => {
      const buf = spdk.allocBuffer(64 * bdev.blockSize);
      const p = bdev.read(buf, { offsetBlocks: 0, numBlocks: 64 });
      // The read's submission microtask was queued first, so it has run by now; its completion
      // is delivered by a later wake-up, so the buffer is in flight here.
      await Promise.resolve();
      expect(buf.inFlight).to.equal(1);
      expect(() => buf.free()).to.throw(SpdkError).with.property('errno', 16);
      await p;
      expect(buf.inFlight).to.equal(0);
      buf.free();
      expect(() => buf.bytes).to.throw(SpdkError);
      expect(() => buf.free()).to.throw(SpdkError);
    });

    it('a buffer is the I/O\'s from the call: free() right after read() (before the batch is submitted) throws EBUSY', async () => {
      const buf = spdk.allocBuffer(8 * bdev.blockSize);
      const p = bdev.read(buf, { offsetBlocks: 0, numBlocks: 8 });
      expect(buf.inFlight).to.equal(1);
      expect(() => buf.free()).to.throw(SpdkError).with.property('errno', 16);
      await p;
      expect(buf.inFlight).to.equal(0);
      buf.free();
    });

    it('an I/O on a deleted bdev fails with ENODEV', async () => {
      const driver = kind.name === 'malloc' ? 'bdev_malloc_delete' : 'bdev_uring_delete';
      await spdk.rpc.call(driver, { name: bdev.name });
      const buf = spdk.allocBuffer(bdev.blockSize);
      await expectReject(bdev.read(buf, { offsetBlocks: 0, numBlocks: 1 }), 19);
    });

    it('I/O from the JS-thread reactor (polled by the event loop)', async () => {
      const q = await bdev.openQueue({ depth: 32, reactor: 'js' });
      const bs = bdev.blockSize;
      const buf = spdk.allocBuffer(32 * bs);
      fillPattern(buf.bytes, 99);
      let done = 0;
      let failed = 0;
      await new Promise<void>((resolve) => {
        q.onComplete = (_tag, status) => {
          if (status !== 0) failed++;
          if (++done === 32) resolve();
        };
        for (let i = 0; i < 32; i++) expect(q.prepWrite(buf, 200 + i, 1, i * bs)).to.be.at.least(0);
        expect(q.submit()).to.equal(32);
      });
      expect(failed).to.equal(0);
      const back = spdk.allocBuffer(32 * bs);
      await bdev.read(back, { offsetBlocks: 200, numBlocks: 32 });
      expect(Buffer.compare(back.bytes, buf.bytes)).to.equal(0);
      await q.close();
    });
  });
}

describe('file bdev persistence', () => {
  it('data survives closing and re-creating the file bdev, and a restart of the engine', async () => {
    const tmp = tempDir();
    const f = path.join(tmp.dir, 'persist.img');
    fs.writeFileSync(f, Buffer.alloc(0));
    fs.truncateSync(f, 1 << 20);
    const pattern = new Uint8Array(8 * 4096);
    fillPattern(pattern, 42);
    let spdk = await Spdk.start({ engine: 'builtin', cores: [0] });
    try {
      await spdk.rpc.call('bdev_aio_create', { name: 'A0', filename: f, block_size: 4096 });
      let bdev = await spdk.bdev.open('A0');
      const buf = spdk.allocBuffer(pattern.length);
      buf.bytes.set(pattern);
      await bdev.write(buf, { offsetBlocks: 5, numBlocks: 8 });
      await bdev.flush();
      await bdev.close();
      await spdk.rpc.call('bdev_aio_delete', { name: 'A0' });
      await spdk.rpc.call('bdev_aio_create', { name: 'A0', filename: f, block_size: 4096 });
      bdev = await spdk.bdev.open('A0');
      buf.bytes.fill(0);
      await bdev.read(buf, { offsetBlocks: 5, numBlocks: 8 });
      expect(Buffer.compare(buf.bytes, pattern)).to.equal(0);
    } finally {
      await spdk.stop();
    }
    spdk = await Spdk.start({ engine: 'builtin', cores: [0] });
    try {
      await spdk.rpc.call('bdev_uring_create', { name: 'U0', filename: f, block_size: 4096 });
      const bdev = await spdk.bdev.open('U0');
      const buf = spdk.allocBuffer(pattern.length);
      await bdev.read(buf, { offsetBlocks: 5, numBlocks: 8 });
      expect(Buffer.compare(buf.bytes, pattern)).to.equal(0);
    } finally {
      await spdk.stop();
      tmp.cleanup();
    }
  });
});

describe('bdev I/O backlog', () => {
  it('I/O queued beyond the depth settles when its bdev is deleted', async () => {
    const spdk = await Spdk.start({ engine: 'builtin', cores: [0] });
    try {
      await spdk.rpc.call('bdev_malloc_create', { name: 'M0', num_blocks: 64, block_size: 4096 });
      const bdev = await spdk.bdev.open('M0', { depth: 16 });
      const buf = spdk.allocBuffer(4096);
      const ios = Array.from({ length: 500 }, (_, i) => bdev.write(buf, { offsetBlocks: i % 64, numBlocks: 1 }));
      await spdk.rpc.call('bdev_malloc_delete', { name: 'M0' });
      const settled = await Promise.race([Promise.allSettled(ios), new Promise((r) => setTimeout(() => r('timeout'), 5000))]);
      expect(settled).to.not.equal('timeout');
      const rejected = (settled as PromiseSettledResult<void>[]).filter((s) => s.status === 'rejected') as PromiseRejectedResult[];
      for (const r of rejected) expect((r.reason as SpdkError).errno).to.equal(19);
    } finally {
      await spdk.stop();
    }
  });
});
