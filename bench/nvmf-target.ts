/**
 * The builtin engine's NVMe/TCP target against SPDK's own nvmf_tgt, both driven by SPDK's
 * spdk_nvme_perf over loopback TCP.
 *
 *   npm run bench                  # or: node dist/bench/nvmf-target.js [--seconds 3] [--rounds 3] [--only TEXT]
 *
 * Each target serves the same kind of bdev (a 128 MiB malloc bdev, 4 KiB blocks) on one core:
 *  - builtin: `spdk-node target --engine builtin --cores 1 --polling` run under `taskset -c 1`
 *    (the reactor busy-polls core 1; the process's JS thread sleeps on the same core);
 *  - SPDK:    `nvmf_tgt -m 0x2` (its reactor polls core 1) run under `taskset -c 1`;
 * both configured through the same JSON-RPC calls with SPDK's default TCP transport options.
 * spdk_nvme_perf runs under `taskset -c 0` with `-c 0x1` (one initiator core, one I/O queue).
 * This script pins itself to core 0 too; it sleeps while perf runs.
 *
 * Workloads: 4 KiB randread and randwrite at QD 1, 32 and 128; 128 KiB sequential read and write
 * at QD 32. Only one target runs at a time (both busy-poll core 1): both are started once, and
 * the one not being measured is frozen with SIGSTOP (no host is connected to it then). Each
 * workload runs on one target then on the other, the order flipping from run to run, `rounds`
 * times; so the two sides of a ratio are measured seconds apart.
 * Reported per workload: medians over the rounds of IOPS, MiB/s and average latency (spdk_nvme_perf's
 * "Total" line) and the ratios builtin/SPDK (IOPS: higher is better; latency: lower is better).
 * Any I/O error reported by perf fails the run.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { findSpdkBinary } from '../test/helpers/spdk-install';
import { arg, benchChildren, BenchTarget, median, pinToCore0, startBenchTarget } from './common';

const NQN = 'nqn.2016-06.io.spdk:bench1';
const BLOCK = 4096;
const BDEV_BYTES = 128 << 20;

interface Workload {
  name: string;
  rw: 'randread' | 'randwrite' | 'read' | 'write';
  bs: number;
  qd: number;
}

const ALL_WORKLOADS: Workload[] = [
  ...[1, 32, 128].map((qd) => ({ name: '4 KiB randread', rw: 'randread' as const, bs: 4096, qd })),
  ...[1, 32, 128].map((qd) => ({ name: '4 KiB randwrite', rw: 'randwrite' as const, bs: 4096, qd })),
  { name: '128 KiB seq read', rw: 'read', bs: 131072, qd: 32 },
  { name: '128 KiB seq write', rw: 'write', bs: 131072, qd: 32 },
];
/** `--only TEXT`: the workloads whose "name QD n" contains TEXT (e.g. --only "seq read"). */
const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : undefined;
const WORKLOADS = ALL_WORKLOADS.filter((w) => only === undefined || `${w.name} QD ${w.qd}`.includes(only));

type Side = 'builtin' | 'spdk';

interface Sample {
  iops: number;
  mibs: number;
  avgUs: number;
}

type Target = BenchTarget;

const children = benchChildren;

function startTarget(side: Side, nvmfTgt: string): Promise<Target> {
  return startBenchTarget({ side, nvmfTgt, tag: 'nvmf', nqn: NQN, serialNumber: 'BENCH0000000001', modelNumber: 'nvmf-target bench', bdevBytes: BDEV_BYTES, blockSize: BLOCK });
}

/**
 * `--profile DIR`: `perf record` samples both cores (-C 0,1, 999 Hz, no call graphs: perf itself
 * runs on these two cores) during every run into DIR/<side>-<workload>-<round>.data, and the end of the benchmark prints, per
 * workload and side, the CPU time per I/O on each core split by the top symbols (from
 * `perf report --sort cpu,comm,dso,sym`). Both cores are busy-polled, so cost per I/O is what
 * differs between the targets: samples / (IOPS x seconds sampled).
 */
const profileDir = process.argv.includes('--profile') ? process.argv[process.argv.indexOf('--profile') + 1] : undefined;
const PROFILE_HZ = 999;

/** Resolves when the recording ends (after `seconds`). */
function startProfile(file: string, seconds: number): Promise<void> {
  const p = spawn('perf', ['record', '-q', '-F', String(PROFILE_HZ), '-C', '0,1', '-o', file, '--', 'sleep', String(seconds)], { stdio: 'ignore' });
  return new Promise((resolve) => p.once('exit', () => resolve()));
}

/** ns per I/O by (cpu, symbol), from one perf data file. */
function profileCosts(file: string, ios: number): Array<{ cpu: string; comm: string; sym: string; nsPerIo: number }> {
  const r = spawnSync('perf', ['report', '-i', file, '--stdio', '--no-children', '-g', 'none', '--sort', 'cpu,comm,dso,sym', '-F', 'sample,cpu,comm,dso,sym', '--percent-limit', '0.5'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const out: Array<{ cpu: string; comm: string; sym: string; nsPerIo: number }> = [];
  for (const line of r.stdout.split('\n')) {
    const m = /^\s*(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s+\[.\]\s+(.*)$/.exec(line);
    if (!m) continue;
    const samples = Number(m[1]);
    out.push({ cpu: m[2], comm: m[3], sym: `${m[5].trim()} (${m[4]})`, nsPerIo: (samples / PROFILE_HZ) * 1e9 / ios });
  }
  return out;
}

/** One spdk_nvme_perf run on core 0; throws on any error it reports. */
function perf(bin: string, port: number, w: Workload, seconds: number): Sample {
  const args = ['-c', '0', bin, '--no-huge', '-s', '1024', '-c', '0x1', '-q', String(w.qd), '-o', String(w.bs), '-w', w.rw, '-t', String(seconds), '-r', `trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:${port} subnqn:${NQN}`];
  const r = spawnSync('taskset', args, { encoding: 'utf8', timeout: (seconds + 30) * 1000, killSignal: 'SIGKILL' });
  const all = `${r.stdout}\n${r.stderr}`;
  const m = /^Total\s*:\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)/m.exec(r.stdout ?? '');
  if (r.status !== 0 || !m || /completed with error|starting I\/O failed/.test(all)) {
    throw new Error(`taskset ${args.join(' ')} -> status ${r.status} signal ${r.signal}\n${all.slice(-3000)}`);
  }
  return { iops: Number(m[1]), mibs: Number(m[2]), avgUs: Number(m[3]) };
}

function buildsRunning(): string[] {
  const running = (args: string[]): boolean => spawnSync('pgrep', args).status === 0;
  return (
    [
      ['node-gyp', ['-f', 'node-gyp']],
      ['make', ['-x', 'make']],
      ['cc1plus', ['-x', 'cc1plus']],
    ] as Array<[string, string[]]>
  )
    .filter(([, a]) => running(a))
    .map(([n]) => n);
}

function busyNote(): string {
  const builds = buildsRunning();
  const spdkApps = spawnSync('pgrep', ['-a', '-f', 'nvmf_tgt|spdk_tgt|bdevperf|nvme_fuzz|spdk_nvme_perf|spdk_nvme_identify'], { encoding: 'utf8' })
    .stdout.split('\n')
    .filter(Boolean);
  const apps = spdkApps.map((l) => path.basename(l.split(' ')[1] ?? '')).join(',');
  return `loadavg ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}; builds running: ${builds.join(',') || 'none'}; other SPDK processes: ${apps || 'none'}`;
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en');

async function main(): Promise<void> {
  const nvmfTgt = findSpdkBinary('nvmf_tgt');
  const perfBin = findSpdkBinary('spdk_nvme_perf');
  if (!nvmfTgt || !perfBin) {
    console.log('# nvmf-target: skipped: SPDK nvmf_tgt / spdk_nvme_perf not found (build SPDK v25.09 and install it where pkg-config finds it, or set SPDK_DIR)');
    return;
  }
  pinToCore0(); // this script sleeps on core 0 while perf runs there
  const seconds = arg('seconds', 3);
  const rounds = arg('rounds', 3);
  const samples: Record<Side, Sample[][]> = { builtin: WORKLOADS.map(() => []), spdk: WORKLOADS.map(() => []) };
  const profiles: Array<{ side: Side; w: number; file: string; ios: number }> = [];
  if (profileDir) fs.mkdirSync(profileDir, { recursive: true });

  console.log(`# nvmf-target: spdk_nvme_perf (core 0) -> NVMe/TCP loopback -> target (one core, 1, polling), malloc ${BDEV_BYTES >> 20} MiB ${BLOCK} B blocks; ${seconds}s x ${rounds} rounds, the two targets alternating per workload (the idle one SIGSTOPped)`);
  console.log(`# ${new Date().toISOString()} node ${process.version} ${execFileSync('uname', ['-r']).toString().trim()}; start: ${busyNote()}`);
  // Both targets stay up; the one not measured is frozen with SIGSTOP (both would otherwise
  // busy-poll core 1), so the two sides alternate per workload, seconds apart.
  const targets: Record<Side, Target> = { builtin: await startTarget('builtin', nvmfTgt), spdk: undefined as unknown as Target };
  targets.builtin.proc.kill('SIGSTOP');
  let busyRuns = 0;
  let runs = 0;
  try {
    targets.spdk = await startTarget('spdk', nvmfTgt);
    targets.spdk.proc.kill('SIGSTOP');
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < WORKLOADS.length; i++) {
        const order: Side[] = (r + i) % 2 === 0 ? ['builtin', 'spdk'] : ['spdk', 'builtin'];
        for (const side of order) {
          const t = targets[side];
          t.proc.kill('SIGCONT');
          await new Promise((res) => setTimeout(res, 200));
          if (buildsRunning().length > 0) busyRuns++;
          runs++;
          try {
            const pfile = profileDir ? path.join(profileDir, `${side}-${WORKLOADS[i].name.replace(/\W+/g, '_')}-qd${WORKLOADS[i].qd}-${r + 1}.data`) : undefined;
            const recording = pfile ? startProfile(pfile, Math.max(1, seconds - 1)) : undefined;
            const s = perf(perfBin, t.port, WORKLOADS[i], seconds);
            await recording;
            if (pfile) profiles.push({ side, w: i, file: pfile, ios: s.iops * Math.max(1, seconds - 1) });
            samples[side][i].push(s);
            process.stderr.write(`round ${r + 1} ${side} ${WORKLOADS[i].name} QD ${WORKLOADS[i].qd}: ${fmt(s.iops)} IOPS, ${s.avgUs.toFixed(1)} us\n`);
          } finally {
            t.proc.kill('SIGSTOP');
          }
        }
      }
    }
  } finally {
    for (const t of Object.values(targets)) {
      if (!t) continue;
      t.proc.kill('SIGCONT');
      await t.stop();
    }
  }
  console.log(`# runs during a build (node-gyp/make/cc1plus seen when the run started): ${busyRuns} of ${runs}`);
  console.log(`# end: ${busyNote()}`);
  console.log('| workload | QD | builtin IOPS | SPDK IOPS | IOPS builtin/SPDK | builtin MiB/s | SPDK MiB/s | builtin avg lat (us) | SPDK avg lat (us) | lat builtin/SPDK |');
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  WORKLOADS.forEach((w, i) => {
    const m = (side: Side, k: keyof Sample): number => median(samples[side][i].map((s) => s[k]));
    const [bi, si] = [m('builtin', 'iops'), m('spdk', 'iops')];
    const [bl, sl] = [m('builtin', 'avgUs'), m('spdk', 'avgUs')];
    console.log(
      `| ${w.name} | ${w.qd} | ${fmt(bi)} | ${fmt(si)} | ${(bi / si).toFixed(3)} | ${m('builtin', 'mibs').toFixed(1)} | ${m('spdk', 'mibs').toFixed(1)} | ${bl.toFixed(1)} | ${sl.toFixed(1)} | ${(bl / sl).toFixed(3)} |`,
    );
  });
  if (profileDir) printProfiles(profiles);
}

/** CPU time per I/O on each core, total and by top symbol, averaged over the rounds. */
function printProfiles(profiles: Array<{ side: Side; w: number; file: string; ios: number }>): void {
  WORKLOADS.forEach((w, i) => {
    console.log(`\n## profile: ${w.name} QD ${w.qd} (ns of CPU per I/O; core 0 = spdk_nvme_perf, core 1 = the target)`);
    for (const side of ['builtin', 'spdk'] as Side[]) {
      const runs = profiles.filter((p) => p.side === side && p.w === i);
      const acc = new Map<string, number>();
      const perCpu = new Map<string, number>();
      for (const p of runs) {
        for (const c of profileCosts(p.file, p.ios)) {
          const key = `${c.cpu}\t${c.comm}\t${c.sym}`;
          acc.set(key, (acc.get(key) ?? 0) + c.nsPerIo / runs.length);
          perCpu.set(c.cpu, (perCpu.get(c.cpu) ?? 0) + c.nsPerIo / runs.length);
        }
      }
      for (const cpu of [...perCpu.keys()].sort()) {
        console.log(`${side} core ${cpu}: ${perCpu.get(cpu)!.toFixed(0)} ns/IO in symbols >= 0.5 %`);
        const top = [...acc.entries()].filter(([k]) => k.startsWith(`${cpu}\t`)).sort((a, b) => b[1] - a[1]).slice(0, 12);
        for (const [k, v] of top) console.log(`    ${v.toFixed(0).padStart(6)}  ${k.split('\t').slice(1).join('  ')}`);
      }
    }
  });
}

const cleanup = (): void => {
  for (const c of children) c.kill('SIGKILL');
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
