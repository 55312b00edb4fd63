// Run inside a worker_thread by test/50.exit.test.ts: an engine per worker, I/O, then either a
// clean stop or termination by the parent with the engine still running.
import { parentPort, workerData } from 'node:worker_threads';
import { Spdk } from '../../lib';

async function main(): Promise<void> {
  const spdk = await Spdk.start({ engine: 'builtin', cores: [workerData.core as number] });
  await spdk.rpc.call('bdev_malloc_create', { name: 'M0', num_blocks: 256, block_size: 4096 });
  const bdev = await spdk.bdev.open('M0');
  const buf = spdk.allocBuffer(4096);
  buf.bytes.fill(workerData.core + 1);
  await bdev.write(buf, { offsetBlocks: 1, numBlocks: 1 });
  buf.bytes.fill(0);
  await bdev.read(buf, { offsetBlocks: 1, numBlocks: 1 });
  if (workerData.stop) await spdk.stop();
  parentPort?.postMessage(buf.freed ? -1 : buf.bytes[0]);
}

main().catch((e) => {
  parentPort?.postMessage(String(e));
});
