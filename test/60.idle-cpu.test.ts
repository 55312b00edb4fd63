import { expect } from 'chai';
import { Spdk } from '../lib';

// An idle engine in interrupt mode sleeps in epoll_wait: its reactor threads use close to no CPU.
// Measured as the process's CPU time over wall time while the JS thread is idle too.
describe('idle CPU', function () {
  this.timeout(20000);

  it('a started, idle engine with two reactors uses well under 5% of a core', async () => {
    const spdk = await Spdk.start({ engine: 'builtin', cores: [0, 1] });
    try {
      await spdk.rpc.call('bdev_malloc_create', { name: 'M0', num_blocks: 1024, block_size: 4096 });
      const bdev = await spdk.bdev.open('M0');
      const buf = spdk.allocBuffer(4096);
      await bdev.read(buf, { offsetBlocks: 0, numBlocks: 1 });
      await new Promise((r) => setTimeout(r, 200)); // let the reactors fall asleep
      const c0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      await new Promise((r) => setTimeout(r, 2000));
      const c = process.cpuUsage(c0);
      const wallUs = Number(process.hrtime.bigint() - t0) / 1000;
      const share = (c.user + c.system) / wallUs;
      expect(share, `CPU share ${(share * 100).toFixed(2)}%`).to.be.below(0.05);
      // And the reactors really were asleep, not spinning.
      for (const r of spdk.reactorStats()) expect(r.idleSleeps).to.be.greaterThan(0);
    } finally {
      await spdk.stop();
    }
  });

  it('in polling mode the reactors never sleep', async () => {
    const spdk = await Spdk.start({ engine: 'builtin', cores: [0], polling: true });
    try {
      await new Promise((r) => setTimeout(r, 100));
      expect(spdk.reactorStats()[0].idleSleeps).to.equal(0);
    } finally {
      await spdk.stop();
    }
  });
});
