import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Spdk, BdevHandle } from '../../lib';
import { fillPattern, randomInt, tempDir } from '../helpers/env';

const SECONDS = Number(process.env.SPDK_NODE_SOAK_SECONDS ?? 60);

// Several writers on disjoint block ranges, each with its own handle (queue) on its own reactor,
// issuing random writes, reads, unmaps and write_zeroes, each verified against a shadow copy of
// its range. Runs on a malloc and a file bdev at once.
describe('soak: concurrent random I/O verified against a shadow copy', function () {
  this.timeout((SECONDS + 60) * 1000);

  it(`runs ${SECONDS}s without a wrong byte, then stops cleanly`, async () => {
    const tmp = tempDir();
    const spdk = await Spdk.start({ engine: 'builtin', cores: [0, 1] });
    try {
      const bs = 4096;
      const blocks = 8192;
      await spdk.rpc.call('bdev_malloc_create', { name: 'M0', num_blocks: blocks, block_size: bs });
      const f = path.join(tmp.dir, 'soak.img');
      fs.writeFileSync(f, Buffer.alloc(0));
      fs.truncateSync(f, blocks * bs);
      await spdk.rpc.call('bdev_uring_create', { name: 'F0', filename: f, block_size: bs });
      const end = Date.now() + SECONDS * 1000;
      let ops = 0;
      const worker = async (bdev: BdevHandle, first: number, count: number, seed: number): Promise<void> => {
        const shadow = new Uint8Array(count * bs);
        const buf = spdk.allocBuffer(32 * bs);
        const back = spdk.allocBuffer(32 * bs);
        let s = seed;
        while (Date.now() < end) {
          const n = 1 + randomInt(32);
          const off = randomInt(count - n);
          const r = { offsetBlocks: first + off, numBlocks: n };
          const kind = randomInt(10);
          if (kind < 5) {
            fillPattern(buf.bytes.subarray(0, n * bs), ++s);
            await bdev.write(buf, r);
            shadow.set(buf.bytes.subarray(0, n * bs), off * bs);
          } else if (kind < 6) {
            await bdev.unmap(r);
            shadow.fill(0, off * bs, (off + n) * bs);
          } else if (kind < 7) {
            await bdev.writeZeroes(r);
            shadow.fill(0, off * bs, (off + n) * bs);
          } else {
            await bdev.read(back, r);
            const want = shadow.subarray(off * bs, (off + n) * bs);
            if (Buffer.compare(back.bytes.subarray(0, n * bs), want) !== 0) {
              throw new Error(`${bdev.name}: wrong data at blocks ${first + off}..+${n}`);
            }
          }
          ops++;
        }
      };
      const jobs: Promise<void>[] = [];
      for (const name of ['M0', 'F0']) {
        for (let w = 0; w < 4; w++) {
          const reactor = w === 3 ? ('js' as const) : w % 2;
          const bdev = await spdk.bdev.open(name, { reactor, depth: 32 });
          jobs.push(worker(bdev, w * (blocks / 4), blocks / 4, w * 1000 + 1));
        }
      }
      await Promise.all(jobs);
      expect(ops).to.be.greaterThan(0);
    } finally {
      await spdk.stop();
      tmp.cleanup();
    }
  });

  it('start/stop churn with I/O in flight at every stop', async () => {
    for (let i = 0; i < 50; i++) {
      const spdk = await Spdk.start({ engine: 'builtin', cores: [0, 1] });
      await spdk.rpc.call('bdev_malloc_create', { name: 'M0', num_blocks: 1024, block_size: 4096 });
      const bdev = await spdk.bdev.open('M0', { reactor: i % 2 });
      const buf = spdk.allocBuffer(4096);
      // Settled (observed) from the start: stop() may reject some before we look.
      const inflight = Array.from({ length: 200 }, (_, k) => bdev.write(buf, { offsetBlocks: k % 1024, numBlocks: 1 })).map((p) =>
        p.then(
          () => ({ status: 'fulfilled' }),
          () => ({ status: 'rejected' }),
        ),
      );
      await spdk.stop();
      const settled = await Promise.all(inflight);
      // Every I/O either completed or was rejected: none is left pending by stop().
      expect(settled.length).to.equal(200);
      expect(() => buf.bytes).to.throw();
    }
  });
});
