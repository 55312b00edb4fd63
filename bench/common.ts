/** Pieces every benchmark script shares: arguments, pinning, JS-thread CPU time, the batch I/O loop. */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import type { BdevHandle, SpdkBuffer } from '../lib';

export function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

export function jsThreadCpuNs(): number {
  // First field: time on CPU in ns, for the main thread only (tid == pid).
  return Number(fs.readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]);
}

export interface RunResult {
  ios: number;
  seconds: number;
  jsCpuNs: number;
  nativeCalls: number;
}

/** Uniform random block numbers in [0, blocks), deterministic per seed (xorshift32). */
export function rng(seed: number, blocks: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % blocks;
  };
}

/**
 * The batch path at queue depth `qd` for `ms` milliseconds: each completion re-prepares its slot
 * with a new I/O (`next()` picks the block), one submit per batch of completions.
 */
export async function runBatch(bdev: BdevHandle, buf: SpdkBuffer, write: boolean, qd: number, ms: number, reactor: 0 | 'js', next: () => number, bs = 4096): Promise<RunResult> {
  const q = await bdev.openQueue({ depth: qd, reactor });
  let ios = 0;
  let stopping = false;
  const cpu0 = jsThreadCpuNs();
  const t0 = process.hrtime.bigint();
  await new Promise<void>((resolve) => {
    // One JS call per completion, no allocation: re-prepare the slot's I/O, submit per batch.
    q.onComplete = (tag) => {
      ios++;
      if (!stopping) {
        if (write) q.prepWrite(buf, next(), 1, tag * bs);
        else q.prepRead(buf, next(), 1, tag * bs);
      }
    };
    q.onBatchEnd = () => {
      if (!stopping) q.submit();
      else if (q.inFlight === 0) resolve();
    };
    setTimeout(() => {
      stopping = true;
    }, ms);
    for (let i = 0; i < qd; i++) {
      if (write) q.prepWrite(buf, next(), 1, i * bs);
      else q.prepRead(buf, next(), 1, i * bs);
    }
    q.submit();
  });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const r = { ios, seconds, jsCpuNs: jsThreadCpuNs() - cpu0, nativeCalls: q.nativeCalls };
  await q.close();
  return r;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Re-runs this script under `taskset -c 0` (JS thread and Node's threads on core 0) once. */
export function pinToCore0(): void {
  if (process.env.SPDK_NODE_BENCH_PINNED) return;
  const r = spawnSync('taskset', ['-c', '0', process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, SPDK_NODE_BENCH_PINNED: '1' },
  });
  process.exit(r.status ?? 1);
}
