// Run by test/50.exit.test.ts in a child process: start an engine, do I/O, then leave in the
// way argv[2] names. The parent checks the exit code, the signal and the time taken.
import { Spdk } from '../../lib';

async function main(mode: string): Promise<void> {
  const spdk = await Spdk.start({ engine: 'builtin', cores: [0, 1] });
  await spdk.rpc.call('bdev_malloc_create', { name: 'M0', num_blocks: 1024, block_size: 4096 });
  const bdev = await spdk.bdev.open('M0');
  const buf = spdk.allocBuffer(4096 * 8);
  buf.bytes.fill(1);
  await bdev.write(buf, { offsetBlocks: 0, numBlocks: 8 });
  await bdev.read(buf, { offsetBlocks: 0, numBlocks: 8 });
  switch (mode) {
    case 'stop':
      await spdk.stop();
      break; // the loop must empty by itself
    case 'exit':
      process.exit(0);
      break;
    case 'exit-inflight': {
      const q = await bdev.openQueue({ depth: 256 });
      const big = spdk.allocBuffer(4096 * 256);
      for (let i = 0; i < 256; i++) q.prepWrite(big, i * 4 % 1024, 1, i * 4096);
      q.submit();
      process.exit(0);
      break;
    }
    case 'unref':
      spdk.unref();
      break; // exits with the engine running; the cleanup hook joins the reactors
    case 'throw':
      setImmediate(() => {
        throw new Error('boom');
      });
      break;
    case 'gc-after-stop': {
      const bufs = Array.from({ length: 100 }, () => spdk.allocBuffer(65536));
      await spdk.stop();
      bufs.length = 0;
      (globalThis as { gc?: () => void }).gc?.();
      break;
    }
    default:
      throw new Error(`unknown mode ${mode}`);
  }
}

main(process.argv[2]).catch((e) => {
  console.error(e);
  process.exit(3);
});
