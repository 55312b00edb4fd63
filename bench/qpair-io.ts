/**
 * NVMe queue-pair I/O from TypeScript against C: `spdk-node perf` (every I/O chosen and submitted
 * by TypeScript through NvmeQpair's batch API, queue pairs owned by the JS thread) side by side
 * with SPDK's `spdk_nvme_perf`, against the same target.
 *
 *   npm run build && node dist/bench/qpair-io.js [--seconds 3] [--rounds 3] [--only TEXT] [--targets spdk,builtin] [--owner js|reactor] [--engine builtin|libspdk]
 *
 * `--engine libspdk`: the JS side is `spdk-node perf --engine libspdk`, i.e. TypeScript driving
 * SPDK's own NVMe driver (queue pairs polled by the JS thread; SPDK's reactor in interrupt mode on
 * the same core), against spdk_nvme_perf: the same driver driven by C.
 *
 * Cores: the initiator (either one) runs under `taskset -c 0` (spdk_nvme_perf with `-c 0x1`),
 * the target under `taskset -c 1`: SPDK's `nvmf_tgt -m 0x2`, or the builtin target in its own
 * process (`spdk-node target --cores 1 --polling`). Both targets serve a 128 MiB malloc bdev of
 * 4 KiB blocks with SPDK's default TCP transport options; only one runs at a time (the other is
 * SIGSTOPped: both busy-poll core 1). Workloads: 4 KiB randread and randwrite at QD 1, 32 and
 * 128. Each workload runs with one initiator then the other, the order flipping every run,
 * `rounds` times, so the two sides of a ratio are measured seconds apart. Reported per target and
 * workload: medians of IOPS and average latency ("Total" line) and the ratios JS/C (IOPS: higher
 * is better; latency: lower is better), the same ratios between each side's best run, plus the
 * N-API calls per I/O of the JS side. An I/O error
 * on either side fails the run.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { findSpdkBinary } from '../test/helpers/spdk-install';
import { arg, benchChildren, BenchTarget, median, pinToCore0, startBenchTarget } from './common';

const NQN = 'nqn.2016-06.io.spdk:qpairbench';
const BLOCK = 4096;
const BDEV_BYTES = 128 << 20;

type TargetSide = 'spdk' | 'builtin';
type Initiator = 'js' | 'c';

interface Workload {
  name: string;
  rw: 'randread' | 'randwrite';
  qd: number;
}

const ALL: Workload[] = [
  ...[1, 32, 128].map((qd) => ({ name: '4 KiB randread', rw: 'randread' as const, qd })),
  ...[1, 32, 128].map((qd) => ({ name: '4 KiB randwrite', rw: 'randwrite' as const, qd })),
];
const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : undefined;
const WORKLOADS = ALL.filter((w) => only === undefined || `${w.name} QD ${w.qd}`.includes(only));
const targetsArg = process.argv.includes('--targets') ? process.argv[process.argv.indexOf('--targets') + 1] : 'spdk,builtin';
const TARGETS = targetsArg.split(',').filter((t): t is TargetSide => t === 'spdk' || t === 'builtin');
const owner = process.argv.includes('--owner') ? process.argv[process.argv.indexOf('--owner') + 1] : 'js';
const engine = process.argv.includes('--engine') ? process.argv[process.argv.indexOf('--engine') + 1] : 'builtin';

interface Sample {
  iops: number;
  avgUs: number;
  callsPerIo?: number;
}

type Target = BenchTarget;

const children = benchChildren;

function startTarget(side: TargetSide, nvmfTgt: string): Promise<Target> {
  return startBenchTarget({ side, nvmfTgt, tag: 'qpair', nqn: NQN, serialNumber: 'QPAIRBENCH00001', modelNumber: 'qpair-io bench', bdevBytes: BDEV_BYTES, blockSize: BLOCK });
}

/** One run of either initiator on core 0; throws on any error it reports. */
function runInitiator(who: Initiator, perfBin: string, port: number, w: Workload, seconds: number): Sample {
  const trid = `trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:${port} subnqn:${NQN}`;
  const common = ['-q', String(w.qd), '-o', String(BLOCK), '-w', w.rw, '-t', String(seconds), '-r', trid];
  const args =
    who === 'c'
      ? ['-c', '0', perfBin, '--no-huge', '-s', '1024', '-c', '0x1', ...common]
      : ['-c', '0', process.execPath, path.join(__dirname, '..', 'lib', 'cli', 'main.js'), 'perf', ...common, '--owner', owner, '--engine', engine, '--no-progress'];
  const r = spawnSync('taskset', args, { encoding: 'utf8', timeout: (seconds + 30) * 1000, killSignal: 'SIGKILL' });
  const all = `${r.stdout}\n${r.stderr}`;
  const m = /^Total\s*:\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)/m.exec(r.stdout ?? '');
  if (r.status !== 0 || !m || /completed with error|starting I\/O failed/.test(all)) {
    throw new Error(`taskset ${args.join(' ')} -> status ${r.status} signal ${r.signal}\n${all.slice(-3000)}`);
  }
  const calls = /^N-API calls per I\/O: ([\d.]+)/m.exec(r.stdout);
  return { iops: Number(m[1]), avgUs: Number(m[3]), callsPerIo: calls ? Number(calls[1]) : undefined };
}

function busyNote(): string {
  const running = (args: string[]): boolean => spawnSync('pgrep', args).status === 0;
  const builds = (
    [
      ['node-gyp', ['-f', 'node-gyp']],
      ['make', ['-x', 'make']],
      ['cc1plus', ['-x', 'cc1plus']],
    ] as Array<[string, string[]]>
  )
    .filter(([, a]) => running(a))
    .map(([n]) => n);
  const top = spawnSync('ps', ['-eo', 'pcpu,comm,args', '--sort=-pcpu', '--no-headers'], { encoding: 'utf8' })
    .stdout.split('\n')
    .filter(Boolean)
    .slice(0, 3)
    .map((l) => l.trim().replace(/\s+/g, ' ').slice(0, 70))
    .join(' | ');
  return `loadavg ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}; builds running: ${builds.join(',') || 'none'}; top: ${top}`;
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en');

async function main(): Promise<void> {
  const nvmfTgt = findSpdkBinary('nvmf_tgt');
  const perfBin = findSpdkBinary('spdk_nvme_perf');
  if (!nvmfTgt || !perfBin) {
    console.log('# qpair-io: skipped: SPDK nvmf_tgt / spdk_nvme_perf not found (build SPDK v25.09 and install it where pkg-config finds it, or set SPDK_DIR)');
    return;
  }
  pinToCore0();
  const seconds = arg('seconds', 3);
  const rounds = arg('rounds', 3);
  const samples = new Map<string, Sample[]>();
  const key = (t: TargetSide, i: Initiator, w: number): string => `${t}/${i}/${w}`;
  console.log(`# qpair-io: spdk-node perf (TypeScript, owner ${owner}, engine ${engine}) vs spdk_nvme_perf (C), each on core 0, against a target on core 1 (polling); malloc ${BDEV_BYTES >> 20} MiB, ${BLOCK} B blocks; ${seconds}s x ${rounds} rounds, the initiators alternating per workload, the idle target SIGSTOPped`);
  console.log(`# ${new Date().toISOString()} node ${process.version} ${execFileSync('uname', ['-r']).toString().trim()}; start: ${busyNote()}`);
  const targets = new Map<TargetSide, Target>();
  try {
    for (const side of TARGETS) {
      const t = await startTarget(side, nvmfTgt);
      t.proc.kill('SIGSTOP');
      targets.set(side, t);
    }
    for (let r = 0; r < rounds; r++) {
      for (const side of TARGETS) {
        const t = targets.get(side) as Target;
        t.proc.kill('SIGCONT');
        await new Promise((res) => setTimeout(res, 200));
        try {
          for (let i = 0; i < WORKLOADS.length; i++) {
            const order: Initiator[] = (r + i) % 2 === 0 ? ['js', 'c'] : ['c', 'js'];
            for (const who of order) {
              const s = runInitiator(who, perfBin, t.port, WORKLOADS[i], seconds);
              const k = key(side, who, i);
              samples.set(k, [...(samples.get(k) ?? []), s]);
              process.stderr.write(`round ${r + 1} target ${side} ${who === 'js' ? 'spdk-node perf' : 'spdk_nvme_perf'} ${WORKLOADS[i].name} QD ${WORKLOADS[i].qd}: ${fmt(s.iops)} IOPS, ${s.avgUs.toFixed(1)} us${s.callsPerIo !== undefined ? `, ${s.callsPerIo} N-API calls/IO` : ''}\n`);
            }
          }
        } finally {
          t.proc.kill('SIGSTOP');
        }
      }
    }
  } finally {
    for (const t of targets.values()) await t.stop();
  }
  console.log(`# end: ${busyNote()}`);
  // Medians, and the best run of each side: this VM's throughput jumps between two levels from
  // one run to the next (both initiators, either target), and interference only ever slows a
  // run, so the best of N runs compares the two sides' undisturbed speed.
  console.log('| target | workload | QD | JS IOPS | C IOPS | IOPS JS/C | JS avg lat (us) | C avg lat (us) | lat JS/C | best IOPS JS/C | best lat JS/C | N-API calls/IO |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const side of TARGETS) {
    WORKLOADS.forEach((w, i) => {
      const js = samples.get(key(side, 'js', i)) ?? [];
      const c = samples.get(key(side, 'c', i)) ?? [];
      const [ji, ci] = [median(js.map((s) => s.iops)), median(c.map((s) => s.iops))];
      const [jl, cl] = [median(js.map((s) => s.avgUs)), median(c.map((s) => s.avgUs))];
      const calls = median(js.map((s) => s.callsPerIo ?? NaN));
      const bestIops = Math.max(...js.map((s) => s.iops)) / Math.max(...c.map((s) => s.iops));
      const bestLat = Math.min(...js.map((s) => s.avgUs)) / Math.min(...c.map((s) => s.avgUs));
      console.log(`| ${side === 'spdk' ? 'nvmf_tgt' : 'builtin'} | ${w.name} | ${w.qd} | ${fmt(ji)} | ${fmt(ci)} | ${(ji / ci).toFixed(3)} | ${jl.toFixed(1)} | ${cl.toFixed(1)} | ${(jl / cl).toFixed(3)} | ${bestIops.toFixed(3)} | ${bestLat.toFixed(3)} | ${calls.toFixed(3)} |`);
    });
  }
}

const cleanup = (): void => {
  for (const c of children) {
    c.kill('SIGCONT');
    c.kill('SIGKILL');
  }
};
process.on('SIGINT', () => {
  cleanup();
  process.exit(130);
});
process.on('SIGTERM', () => {
  cleanup();
  process.exit(143);
});

main().catch((e) => {
  console.error(e);
  cleanup();
  process.exit(1);
});
