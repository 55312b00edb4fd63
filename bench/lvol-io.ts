/**
 * Logical volume overhead and thin-provisioning allocation cost.
 *
 *   npm run build:ts && node dist/bench/lvol-io.js [--seconds 2] [--rounds 5]
 *
 * 1. 4 KiB random read and write at QD 32 on a thick lvol (256 MiB, in a 512 MiB malloc base)
 *    against the same workload on a malloc bdev of the lvol's size used directly (the
 *    reference), goal >= 0.95. Both are driven by the addon's native I/O loop on the reactor, so
 *    the ratio is the lvol layer's own cost (cluster lookup, child I/O), not the JS hand-off,
 *    whose run-to-run swings (see bdev-io) would hide it. The time is cut into slices of at most
 *    250 ms in which the bdevs take turns, and the ratio is the median of per-slice ratios: runs
 *    a fraction of a second apart, so the drift of a shared machine cancels out. A control
 *    column compares a second malloc bdev of the same size with the reference: how far its
 *    ratio is from 1 is the noise floor of the run.
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
  const rounds = arg('rounds', 5);
  const spdk = await Spdk.start({ engine: 'builtin', cores: [1], polling: true });
  await spdk.rpc.call('bdev_malloc_create', { name: 'Malloc0', num_blocks: (512 << 20) / BS, block_size: BS });
  await spdk.rpc.call('bdev_lvol_create_lvstore', { bdev_name: 'Malloc0', lvs_name: 'lvs' });
  const thickUuid = (await spdk.rpc.call('bdev_lvol_create', { lvs_name: 'lvs', lvol_name: 'thick', size_in_mib: 256 })) as string;
  // The reference: a malloc bdev of the lvol's size, the kind of bdev the lvol's I/O lands on
  // (and a second one, the control). Every mapping here uses 4 KiB pages (malloc bdevs are
  // MAP_POPULATE'd anonymous memory, no THP madvise), and each workload spans 256 MiB, far
  // beyond the caches, so lvol and reference meet the same TLB and cache misses.
  await spdk.rpc.call('bdev_malloc_create', { name: 'Malloc1', num_blocks: (256 << 20) / BS, block_size: BS });
  await spdk.rpc.call('bdev_malloc_create', { name: 'Malloc2', num_blocks: (256 << 20) / BS, block_size: BS });
  const native = spdk.nativeEngine;
  console.log(`# lvol-io: ${new Date().toISOString()} node ${process.version}; ${seconds}s x ${rounds} rounds per bdev, in ${Math.min(seconds, 0.25)}s slices taking turns, reactor core 1 polling, JS core 0`);
  console.log('| workload | lvol IOPS | base IOPS | lvol/base | control/base |');
  console.log('|---|---|---|---|---|');
  const run = async (bdev: string, write: boolean, secs: number): Promise<number> => {
    const r = await native.nativeBench({ bdev, reactor: 0, write, queueDepth: 32, ioBlocks: 1, durationMs: secs * 1000 });
    return r.ios / (r.ns / 1e9);
  };
  // Each round is cut into slices of at most 250 ms, the three bdevs taking turns slice by
  // slice (order alternating), so that a slice's ratio compares runs a fraction of a second
  // apart: the machine's drift (other tenants, frequency) cancels out of it.
  const slice = Math.min(seconds, 0.25);
  const slices = Math.max(1, Math.round((rounds * seconds) / slice));
  for (const write of [false, true]) {
    const res: Record<string, number[]> = { lvol: [], base: [], control: [] };
    const names: Record<string, string> = { lvol: thickUuid, base: 'Malloc1', control: 'Malloc2' };
    for (let r = 0; r < slices; r++) {
      for (const k of r % 2 === 0 ? ['lvol', 'base', 'control'] : ['control', 'base', 'lvol']) res[k].push(await run(names[k], write, slice));
    }
    const ratio = (k: string): string => median(res[k].map((x, i) => x / res.base[i])).toFixed(3);
    console.log(`| 4 KiB random ${write ? 'write' : 'read'} QD 32, thick lvol vs base | ${Math.round(median(res.lvol)).toLocaleString('en')} | ${Math.round(median(res.base)).toLocaleString('en')} | ${ratio('lvol')} | ${ratio('control')} |`);
  }
  const thinUuid = (await spdk.rpc.call('bdev_lvol_create', { lvs_name: 'lvs', lvol_name: 'thin', size_in_mib: 128, thin_provision: true })) as string;
  const thin = await spdk.bdev.open(thinUuid);
  const n = (128 << 20) / BS;
  const first = await sequentialPass(thin, spdk, n, 32);
  const second = await sequentialPass(thin, spdk, n, 32);
  console.log(`| thin lvol 4 KiB sequential write QD 32: first pass (allocating) vs second | ${Math.round(first).toLocaleString('en')} | ${Math.round(second).toLocaleString('en')} | ${(first / second).toFixed(3)} | |`);
  await spdk.stop();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
