/**
 * Logical volume overhead and thin-provisioning allocation cost.
 *
 *   npm run build:ts && node dist/bench/lvol-io.js [--seconds 2] [--rounds 3]
 *
 * 1. 4 KiB random read and write at QD 32 on a thick lvol, against the same workload on a malloc
 *    bdev of the same size directly (the reference), alternating; reports the ratio (goal >=
 *    0.95). Both are driven by the addon's native I/O loop on the reactor, so the ratio is the
 *    lvol layer's own cost (cluster lookup, splitting), not the JS hand-off, whose run-to-run
 *    swings (see bdev-io) would hide it.
 * 2. First-write allocation on a thin lvol: a sequential 4 KiB write pass over fresh clusters
 *    (each first write allocates and zeroes a cluster) against a second pass over the same
 *    blocks (already allocated): IOPS of both and their ratio.
 * Pinned like bench/bdev-io.ts: JS on core 0, the reactor (polling) on core 1.
 */
import { Spdk, BdevHandle } from '../lib';
import { arg, median, pinToCore0 } from './common';

const BS = 4096;

async function sequentialPass(bdev: BdevHandle, spdk: Spdk, blocks: number, qd: number): Promise<number> {
  const q = await bdev.openQueue({ depth: qd });
  const buf = spdk.allocBuffer(qd * BS);
  buf.bytes.fill(0x3c);
  let next = 0;
  let done = 0;
  const t0 = process.hrtime.bigint();
  await new Promise<void>((resolve, reject) => {
    q.onComplete = (tag, status) => {
      if (status !== 0) reject(new Error(`write failed: ${status}`));
      done++;
      if (next < blocks) q.prepWrite(buf, next++, 1, tag * BS);
      else if (done === blocks) resolve();
    };
    q.onBatchEnd = () => q.submit();
    for (let i = 0; i < qd && next < blocks; i++) q.prepWrite(buf, next++, 1, i * BS);
    q.submit();
  });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  await q.close();
  buf.free();
  return blocks / secs;
}

async function main(): Promise<void> {
  pinToCore0();
  const seconds = arg('seconds', 2);
  const rounds = arg('rounds', 3);
  const spdk = await Spdk.start({ engine: 'builtin', cores: [1], polling: true });
  await spdk.rpc.call('bdev_malloc_create', { name: 'Malloc0', num_blocks: (512 << 20) / BS, block_size: BS });
  await spdk.rpc.call('bdev_lvol_create_lvstore', { bdev_name: 'Malloc0', lvs_name: 'lvs' });
  const thickUuid = (await spdk.rpc.call('bdev_lvol_create', { lvs_name: 'lvs', lvol_name: 'thick', size_in_mib: 256 })) as string;
  // The reference: a malloc bdev of the lvol's size, the kind of bdev the lvol's I/O lands on.
  await spdk.rpc.call('bdev_malloc_create', { name: 'Malloc1', num_blocks: (256 << 20) / BS, block_size: BS });
  const native = spdk.nativeEngine;
  console.log(`# lvol-io: ${new Date().toISOString()} node ${process.version}; ${seconds}s x ${rounds} rounds alternating, reactor core 1 polling, JS core 0`);
  console.log('| workload | lvol IOPS | base IOPS | lvol/base |');
  console.log('|---|---|---|---|');
  const run = async (bdev: string, write: boolean): Promise<number> => {
    const r = await native.nativeBench({ bdev, reactor: 0, write, queueDepth: 32, ioBlocks: 1, durationMs: seconds * 1000 });
    return r.ios / (r.ns / 1e9);
  };
  for (const write of [false, true]) {
    const a: number[] = [];
    const b: number[] = [];
    for (let r = 0; r < rounds; r++) {
      a.push(await run(thickUuid, write));
      b.push(await run('Malloc1', write));
    }
    console.log(`| 4 KiB random ${write ? 'write' : 'read'} QD 32, thick lvol vs base | ${Math.round(median(a)).toLocaleString('en')} | ${Math.round(median(b)).toLocaleString('en')} | ${(median(a) / median(b)).toFixed(3)} |`);
  }
  const thinUuid = (await spdk.rpc.call('bdev_lvol_create', { lvs_name: 'lvs', lvol_name: 'thin', size_in_mib: 128, thin_provision: true })) as string;
  const thin = await spdk.bdev.open(thinUuid);
  const n = (128 << 20) / BS;
  const first = await sequentialPass(thin, spdk, n, 32);
  const second = await sequentialPass(thin, spdk, n, 32);
  console.log(`| thin lvol 4 KiB sequential write QD 32: first pass (allocating) vs second | ${Math.round(first).toLocaleString('en')} | ${Math.round(second).toLocaleString('en')} | ${(first / second).toFixed(3)} |`);
  await spdk.stop();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
