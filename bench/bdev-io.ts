/**
 * JS-driven bdev I/O against the same workload driven by a C++ loop inside the addon.
 *
 *   npm run bench                       # or: node dist/bench/bdev-io.js [--seconds 2] [--rounds 3]
 *
 * 4 KiB random reads and writes on a 64 MiB malloc bdev at queue depth 1, 32 and 128. Every I/O
 * of the JS runs is chosen and submitted by JavaScript, in three modes:
 *  - promise:  one Promise per I/O (`bdev.read`), on the reactor thread of core 1;
 *  - batch:    the batch path (`IoQueue`: descriptors in shared memory, one native call per
 *              batch, completions delivered per batch), on the reactor thread of core 1;
 *  - batch-js: the batch path on the JS thread's own reactor (`reactor: 'js'`): the bdev work
 *              itself (the malloc copy) then runs on the JS thread, core 0.
 * The reference runs the same random I/O from a native loop on the reactor thread of core 1.
 * JS and reference runs alternate, `rounds` times each; medians are reported.
 *
 * Pinning: the script re-runs itself under `taskset -c 0` (JS thread and Node's helper threads on
 * core 0); the reactor pins itself to core 1. Reactors busy-poll (`polling: true`) as in SPDK.
 * Reported per configuration: IOPS of both, their ratio, average latency (QD / IOPS), JS thread
 * CPU time per I/O (ns, from /proc/self/task/<tid>/schedstat), and native calls per I/O.
 */
import { execFileSync } from 'node:child_process';
import { Spdk, BdevHandle, SpdkBuffer } from '../lib';
import { arg, jsThreadCpuNs, median, pinToCore0, rng, runBatch, RunResult } from './common';

const BS = 4096;
const BLOCKS = 16384;

async function runPromise(bdev: BdevHandle, buf: SpdkBuffer, write: boolean, qd: number, ms: number): Promise<RunResult> {
  const next = rng(12345, BLOCKS);
  let ios = 0;
  const end = Date.now() + ms;
  const calls0 = bdev.nativeCalls;
  const cpu0 = jsThreadCpuNs();
  const t0 = process.hrtime.bigint();
  const worker = async (slot: number): Promise<void> => {
    const r = { offsetBlocks: 0, numBlocks: 1, bufferOffset: slot * BS };
    while (Date.now() < end) {
      r.offsetBlocks = next();
      await (write ? bdev.write(buf, r) : bdev.read(buf, r));
      ios++;
    }
  };
  await Promise.all(Array.from({ length: qd }, (_, i) => worker(i)));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { ios, seconds, jsCpuNs: jsThreadCpuNs() - cpu0, nativeCalls: bdev.nativeCalls - calls0 };
}

async function main(): Promise<void> {
  pinToCore0(); // JS thread on core 0; the reactor pins itself to core 1
  const seconds = arg('seconds', 2);
  const rounds = arg('rounds', 3);
  const spdk = await Spdk.start({ engine: 'builtin', cores: [1], polling: true });
  await spdk.rpc.call('bdev_malloc_create', { name: 'Malloc0', num_blocks: BLOCKS, block_size: BS });
  const bdev = await spdk.bdev.open('Malloc0', { depth: 128 });
  const buf = spdk.allocBuffer(128 * BS);
  buf.bytes.fill(0x5a);
  const native = spdk.nativeEngine;

  console.log(`# bdev-io: 4 KiB random I/O, malloc ${BLOCKS * BS >> 20} MiB, ${seconds}s x ${rounds} rounds alternating, reactor core 1 polling, JS on core 0`);
  console.log(`# ${new Date().toISOString()} node ${process.version} ${execFileSync('uname', ['-r']).toString().trim()}`);
  console.log('| mode | op | QD | JS IOPS | native IOPS | JS/native | avg lat JS (us) | JS CPU ns/IO | native calls/IO |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const mode of ['promise', 'batch', 'batch-js'] as const) {
    for (const write of [false, true]) {
      for (const qd of [1, 32, 128]) {
        const js: number[] = [];
        const ref: number[] = [];
        const cpu: number[] = [];
        const calls: number[] = [];
        for (let r = 0; r < rounds; r++) {
          const res =
            mode === 'promise'
              ? await runPromise(bdev, buf, write, qd, seconds * 1000)
              : await runBatch(bdev, buf, write, qd, seconds * 1000, mode === 'batch' ? 0 : 'js', rng(6789, BLOCKS));
          js.push(res.ios / res.seconds);
          cpu.push(res.jsCpuNs / res.ios);
          calls.push(res.nativeCalls / res.ios);
          const n = await native.nativeBench({ bdev: 'Malloc0', reactor: 0, write, queueDepth: qd, ioBlocks: 1, durationMs: seconds * 1000 });
          ref.push(n.ios / (n.ns / 1e9));
        }
        const j = median(js);
        const n = median(ref);
        const c = median(calls);
        console.log(
          `| ${mode} | ${write ? 'write' : 'read'} | ${qd} | ${Math.round(j).toLocaleString('en')} | ${Math.round(n).toLocaleString('en')} | ${(j / n).toFixed(3)} | ${((qd / j) * 1e6).toFixed(1)} | ${Math.round(median(cpu))} | ${c.toFixed(3)} |`,
        );
      }
    }
  }
  await spdk.stop();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
