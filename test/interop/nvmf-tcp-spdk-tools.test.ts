/**
 * SPDK's own NVMe/TCP tools against the builtin engine's target (issue 5, "Interop"):
 * spdk_nvme_discover, spdk_nvme_identify, spdk_nvme_perf and bdevperf -w verify, with and without
 * header/data digests, at several queue depths and I/O sizes.
 *
 * The target (in this process, reactor on core 1) exports one subsystem with three namespaces —
 * a malloc bdev (512 B blocks), a file bdev through io_uring (4 KiB blocks) and an lvol — and a
 * second subsystem with one malloc bdev, so the discovery log has more than one entry. The
 * transport's max_io_size is 1 MiB: 1 MiB commands then reach the target whole (MDTS 1 MiB), and
 * their writes arrive through an R2T answered with several H2CData PDUs (MAXH2CDATA is 128 KiB).
 *
 * The SPDK tools run under `taskset -c 0` without hugepages (`--no-huge -s 1024`), except
 * spdk_nvme_discover, which has no --no-huge option: its test runs only where hugepages are
 * mounted and free, and says so in one line otherwise (the discovery log is then still checked
 * through spdk_nvme_identify against the discovery subsystem). Every SPDK process polls its core:
 * each is killed by pid when its run ends, and again in teardown if still alive.
 */
import { expect } from 'chai';
import { spawn, ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Spdk } from '../../lib';
import { findSpdkBinary, skipLine } from '../helpers/spdk-install';
import { freePort } from '../helpers/nvme-tcp-host';

const CNODE1 = 'nqn.2016-06.io.spdk:interop-tools1';
const CNODE2 = 'nqn.2016-06.io.spdk:interop-tools2';
const DISCOVERY = 'nqn.2014-08.org.nvmexpress.discovery';
const SERIAL = 'SPDKNODE00000042';
const MODEL = 'spdk-node interop model';
const MiB = 1 << 20;

interface RunOut {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  err: string;
  ms: number;
}

const live = new Set<ChildProcess>();

/**
 * Runs `bin args` pinned to core 0 and collects its output. Killed by pid (SIGKILL) after
 * `timeoutMs`; with `until`, stopped by SIGTERM (then SIGKILL) as soon as stdout satisfies it
 * (spdk_nvme_discover waits for AERs until signalled), its stdout line-buffered by stdbuf.
 */
function run(bin: string, args: string[], timeoutMs: number, until?: (stdout: string) => boolean): Promise<RunOut> {
  const t0 = Date.now();
  // With `until`, stdout must arrive line by line: stdio would otherwise hold it until exit.
  const cmd = until ? ['stdbuf', '-oL', bin, ...args] : [bin, ...args];
  const p = spawn('taskset', ['-c', '0', ...cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(p);
  let out = '';
  let err = '';
  let termTimer: NodeJS.Timeout | undefined;
  const stop = (): void => {
    if (p.exitCode !== null || p.signalCode !== null || termTimer) return;
    p.kill('SIGTERM');
    termTimer = setTimeout(() => p.kill('SIGKILL'), 3000);
  };
  p.stdout?.on('data', (d) => {
    out += d;
    if (until?.(out)) stop();
  });
  p.stderr?.on('data', (d) => (err += d));
  const killTimer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve, reject) => {
    p.once('error', reject);
    p.once('close', (code, signal) => {
      clearTimeout(killTimer);
      if (termTimer) clearTimeout(termTimer);
      live.delete(p);
      resolve({ code, signal, out, err, ms: Date.now() - t0 });
    });
  });
}

function describeRun(bin: string, args: string[], r: RunOut): string {
  return `${path.basename(bin)} ${args.join(' ')} -> code ${r.code} signal ${r.signal}\n--- stdout\n${r.out.slice(-4000)}\n--- stderr\n${r.err.slice(-4000)}`;
}

/** Hugepages spdk_nvme_discover's DPDK can use: a hugetlbfs mount and some free 2 MiB pages. */
function hugepagesUsable(): boolean {
  const free = /HugePages_Free:\s+(\d+)/.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
  const mounted = fs.readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[2] === 'hugetlbfs');
  return mounted && free !== null && Number(free[1]) >= 32;
}

interface DiscoveryEntry {
  trtype: string;
  adrfam: string;
  subtype: string;
  trsvcid: string;
  subnqn: string;
  traddr: string;
}

/** The "Discovery Log Entry N" blocks spdk_nvme_discover and spdk_nvme_identify print. */
function parseDiscoveryLog(text: string): { records: number; entries: DiscoveryEntry[] } {
  const records = /Number of Records:\s+(\d+)/.exec(text);
  const field = (block: string, name: string): string => (new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(block)?.[1] ?? '').trim();
  const entries = text
    .split(/^Discovery Log Entry \d+$/m)
    .slice(1)
    .map((b) => ({
      trtype: field(b, 'Transport Type'),
      adrfam: field(b, 'Address Family'),
      subtype: field(b, 'Subsystem Type'),
      trsvcid: field(b, 'Transport Service Identifier'),
      subnqn: field(b, 'NVM Subsystem Qualified Name'),
      traddr: field(b, 'Transport Address'),
    }));
  return { records: records ? Number(records[1]) : -1, entries };
}

interface PerfTotal {
  iops: number;
  mibs: number;
  avgUs: number;
}

/** spdk_nvme_perf's "Total : IOPS MiB/s Average min max" line. */
function parsePerfTotal(out: string): PerfTotal | undefined {
  const m = /^Total\s*:\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)/m.exec(out);
  return m ? { iops: Number(m[1]), mibs: Number(m[2]), avgUs: Number(m[3]) } : undefined;
}

interface BdevperfJob {
  name: string;
  iops: number;
  failPerSec: number;
  toPerSec: number;
}

/** bdevperf's per-job result lines: "<bdev> : runtime IOPS MiB/s Fail/s TO/s Average min max". */
function parseBdevperfJobs(out: string): BdevperfJob[] {
  const jobs: BdevperfJob[] = [];
  const re = /^\s*(\S+)\s*:\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$/gm;
  for (let m = re.exec(out); m; m = re.exec(out)) {
    jobs.push({ name: m[1], iops: Number(m[3]), failPerSec: Number(m[5]), toPerSec: Number(m[6]) });
  }
  return jobs;
}

describe('interop: SPDK NVMe/TCP tools against the builtin target', function () {
  this.timeout(240000);
  const identify = findSpdkBinary('spdk_nvme_identify');
  const perf = findSpdkBinary('spdk_nvme_perf');
  const bdevperf = findSpdkBinary('bdevperf');
  const discover = findSpdkBinary('spdk_nvme_discover');
  let spdk: Spdk | undefined;
  let port = 0;
  let dir = '';
  const trid = (subnqn: string): string => `trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:${port} subnqn:${subnqn}`;
  // nsid -> what the target says the namespace is
  const expected = new Map<number, { bdev: string; blocks: number; blockSize: number; uuid: string; nguid: string }>();
  const results: string[] = [];

  before(async function () {
    const missing = (['spdk_nvme_identify', 'spdk_nvme_perf', 'bdevperf'] as const).filter((n) => !findSpdkBinary(n));
    if (missing.length > 0) {
      console.log(`      ${skipLine(missing.join(', '))}`);
      this.skip();
    }
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spdk-node-interop-tools-'));
    const file = path.join(dir, 'uring.img');
    fs.writeFileSync(file, '');
    fs.truncateSync(file, 64 * MiB);

    spdk = await Spdk.start({ engine: 'builtin', cores: [1] });
    port = await freePort();
    const rpc = spdk.rpc;
    await rpc.call('bdev_malloc_create', { name: 'ToolsMalloc0', num_blocks: (64 * MiB) / 512, block_size: 512 });
    await rpc.call('bdev_uring_create', { name: 'ToolsUring0', filename: file, block_size: 4096 });
    await rpc.call('bdev_malloc_create', { name: 'ToolsLvsBase', num_blocks: (96 * MiB) / 4096, block_size: 4096 });
    await rpc.call('bdev_lvol_create_lvstore', { bdev_name: 'ToolsLvsBase', lvs_name: 'tools_lvs', cluster_sz: 4 * MiB });
    const lvol = (await rpc.call('bdev_lvol_create', { lvs_name: 'tools_lvs', lvol_name: 'lvol0', size_in_mib: 64 })) as string;
    await rpc.call('bdev_malloc_create', { name: 'ToolsMalloc1', num_blocks: (16 * MiB) / 4096, block_size: 4096 });

    // max_io_size 1 MiB: 1 MiB commands are not split by the host (MDTS), and their writes need
    // an R2T answered with several H2CData PDUs of at most MAXH2CDATA (128 KiB).
    await rpc.call('nvmf_create_transport', { trtype: 'TCP', max_io_size: MiB, io_unit_size: 131072 });
    await rpc.call('nvmf_create_subsystem', { nqn: CNODE1, allow_any_host: true, serial_number: SERIAL, model_number: MODEL });
    await rpc.call('nvmf_create_subsystem', { nqn: CNODE2, allow_any_host: true, serial_number: 'SPDKNODE00000043', model_number: 'second' });
    for (const bdev of ['ToolsMalloc0', 'ToolsUring0', lvol]) {
      await rpc.call('nvmf_subsystem_add_ns', { nqn: CNODE1, namespace: { bdev_name: bdev } });
    }
    await rpc.call('nvmf_subsystem_add_ns', { nqn: CNODE2, namespace: { bdev_name: 'ToolsMalloc1' } });
    const listen = { trtype: 'TCP', adrfam: 'IPv4', traddr: '127.0.0.1', trsvcid: String(port) };
    for (const nqn of [CNODE1, CNODE2, DISCOVERY]) await rpc.call('nvmf_subsystem_add_listener', { nqn, listen_address: listen });

    const subs = (await rpc.call('nvmf_get_subsystems')) as Array<{ nqn: string; namespaces?: Array<{ nsid: number; bdev_name: string; uuid: string; nguid: string }> }>;
    const bdevs = (await rpc.call('bdev_get_bdevs')) as Array<{ name: string; num_blocks: number; block_size: number }>;
    for (const ns of subs.find((s) => s.nqn === CNODE1)?.namespaces ?? []) {
      const b = bdevs.find((x) => x.name === ns.bdev_name);
      expect(b, ns.bdev_name).to.not.equal(undefined);
      expected.set(ns.nsid, { bdev: ns.bdev_name, blocks: b!.num_blocks, blockSize: b!.block_size, uuid: ns.uuid, nguid: ns.nguid });
    }
    expect([...expected.keys()]).to.deep.equal([1, 2, 3]);
  });

  after(async () => {
    for (const p of live) p.kill('SIGKILL');
    await spdk?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    if (results.length > 0) console.log(results.map((l) => `      ${l}`).join('\n'));
  });

  function checkDiscoveryLog(text: string, what: string): void {
    const log = parseDiscoveryLog(text);
    const nvm = log.entries.filter((e) => e.subtype.startsWith('2 '));
    expect(log.records, `${what}: Number of Records`).to.equal(log.entries.length);
    expect(nvm.map((e) => e.subnqn).sort(), `${what}: NVM subsystems listed`).to.deep.equal([CNODE1, CNODE2]);
    for (const e of log.entries) {
      expect(e.trtype, what).to.equal('3 (TCP)');
      expect(e.adrfam, what).to.equal('1 (IPv4)');
      expect(e.traddr, what).to.equal('127.0.0.1');
      expect(e.trsvcid, what).to.equal(String(port));
    }
  }

  it('spdk_nvme_discover: the discovery log lists each subsystem and its listener', async function () {
    if (!discover) {
      console.log(`      ${skipLine('spdk_nvme_discover')}`);
      this.skip();
    }
    if (!hugepagesUsable()) {
      console.log('      skipped: spdk_nvme_discover needs hugepages (no --no-huge option) and none are mounted and free');
      this.skip();
    }
    const args = ['-r', `trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:${port}`];
    // It prints the log, then waits for discovery AERs until signalled.
    const done = (s: string): boolean => {
      const n = /Number of Records:\s+(\d+)/.exec(s);
      return n !== null && (s.match(/^Transport Address:/gm)?.length ?? 0) >= Number(n[1]);
    };
    const r = await run(discover as string, args, 30000, done);
    expect(done(r.out), describeRun(discover as string, args, r)).to.equal(true);
    checkDiscoveryLog(r.out, 'spdk_nvme_discover');
  });

  it('spdk_nvme_identify of the discovery subsystem: the discovery log', async () => {
    const args = ['--no-huge', '-s', '1024', '-r', trid(DISCOVERY)];
    const r = await run(identify as string, args, 30000);
    expect(r.code, describeRun(identify as string, args, r)).to.equal(0);
    expect(r.out).to.match(/^Discovery Log Page$/m);
    checkDiscoveryLog(r.out, 'spdk_nvme_identify (discovery)');
  });

  it('spdk_nvme_identify: serial and model number as configured, MDTS, each namespace size, format, UUID and NGUID', async () => {
    const args = ['--no-huge', '-s', '1024', '-r', trid(CNODE1)];
    const r = await run(identify as string, args, 30000);
    const where = describeRun(identify as string, args, r);
    expect(r.code, where).to.equal(0);
    const field = (name: string, text = r.out): string => (new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(text)?.[1] ?? '<absent>').trim();
    expect(field('Serial Number'), where).to.equal(SERIAL);
    expect(field('Model Number'), where).to.equal(MODEL);
    expect(field('Subsystem NQN'), where).to.equal(CNODE1);
    expect(field('Max Data Transfer Size'), where).to.equal(String(MiB));
    const active = r.out.split(/^Active Namespaces$/m)[1] ?? '';
    const blocks = active.split(/^Namespace ID:/m).slice(1);
    expect(blocks.length, where).to.equal(3);
    for (const b of blocks) {
      const nsid = Number(/^(\d+)/.exec(b)?.[1]);
      const want = expected.get(nsid);
      expect(want, `namespace ${nsid}`).to.not.equal(undefined);
      const what = `nsid ${nsid} (${want!.bdev})`;
      expect(field('Size \\(in LBAs\\)', b), what).to.match(new RegExp(`^${want!.blocks} `));
      expect(field('Capacity \\(in LBAs\\)', b), what).to.match(new RegExp(`^${want!.blocks} `));
      expect(field('UUID', b).toLowerCase(), what).to.equal(want!.uuid.toLowerCase());
      expect(field('NGUID', b).toUpperCase(), what).to.equal(want!.nguid.toUpperCase());
      const fmt = /LBA Format #00: Data Size:\s+(\d+)\s+Metadata Size:\s+(\d+)/.exec(b);
      expect(fmt?.slice(1).map(Number), what).to.deep.equal([want!.blockSize, 0]);
      results.push(`identify ${what}: ${want!.blocks} x ${want!.blockSize} B, uuid ${want!.uuid}`);
    }
  });

  it('spdk_nvme_perf randrw 50/50 on all three namespaces: QD 1/32/128, 4 KiB and 128 KiB, without and with -H -I digests; no errors', async () => {
    results.push('| spdk_nvme_perf randrw | digests | QD | IOPS | MiB/s | avg lat (us) |', '|---|---|---|---|---|---|');
    for (const digests of [false, true]) {
      for (const bs of [4096, 131072]) {
        for (const qd of [1, 32, 128]) {
          const args = ['--no-huge', '-s', '1024', '-c', '0x1', '-q', String(qd), '-o', String(bs), '-w', 'randrw', '-M', '50', '-t', '1', ...(digests ? ['-H', '-I'] : []), '-r', trid(CNODE1)];
          const r = await run(perf as string, args, 30000);
          const where = describeRun(perf as string, args, r);
          expect(r.code, where).to.equal(0);
          expect(r.out + r.err, where).to.not.match(/completed with error|starting I\/O failed|ERROR/);
          // One result line per namespace, all from core 0.
          expect(r.out.match(/NSID \d from core\s+0:/g)?.length, where).to.equal(3);
          const t = parsePerfTotal(r.out);
          expect(t, where).to.not.equal(undefined);
          expect(t!.iops, where).to.be.above(0);
          results.push(`| ${bs / 1024} KiB | ${digests ? 'hdgst+ddgst' : 'none'} | ${qd} | ${Math.round(t!.iops)} | ${t!.mibs.toFixed(1)} | ${t!.avgUs.toFixed(1)} |`);
        }
      }
    }
  });

  it('bdevperf -w verify on the three namespaces: several QDs and I/O sizes up to 1 MiB (R2T, several H2CData), without and with digests; no failed or miscompared I/O', async () => {
    const cases: Array<[number, number]> = [
      [1, 4096],
      [32, 4096],
      [128, 4096],
      [16, 131072],
      [4, MiB],
      [16, MiB],
    ];
    results.push('| bdevperf verify | digests | QD | IOPS (3 namespaces) |', '|---|---|---|---|');
    for (const digests of [false, true]) {
      const conf = path.join(dir, `bdevperf-${digests ? 'dg' : 'plain'}.json`);
      fs.writeFileSync(
        conf,
        JSON.stringify({
          subsystems: [
            {
              subsystem: 'bdev',
              config: [
                {
                  method: 'bdev_nvme_attach_controller',
                  params: { name: 'Tgt', trtype: 'tcp', adrfam: 'ipv4', traddr: '127.0.0.1', trsvcid: String(port), subnqn: CNODE1, hdgst: digests, ddgst: digests },
                },
                { method: 'bdev_wait_for_examine' },
              ],
            },
          ],
        }),
      );
      for (const [qd, bs] of cases) {
        // --disable-cpumask-locks: another SPDK app (another suite, another user of this
        // machine) may hold core 0's lock file; sharing the core is harmless for correctness.
        const args = ['--no-huge', '-s', '1024', '-u', '-m', '0x1', '--disable-cpumask-locks', '--json', conf, '-q', String(qd), '-o', String(bs), '-w', 'verify', '-t', '2'];
        const r = await run(bdevperf as string, args, 60000);
        const where = describeRun(bdevperf as string, args, r);
        expect(r.code, where).to.equal(0);
        expect(r.out + r.err, where).to.not.match(/Buffer mismatch|miscompare|completed with error/i);
        const jobs = parseBdevperfJobs(r.out);
        const perNs = jobs.filter((j) => /^Tgtn[123]$/.test(j.name));
        expect(perNs.map((j) => j.name).sort(), where).to.deep.equal(['Tgtn1', 'Tgtn2', 'Tgtn3']);
        for (const j of perNs) {
          expect(j.failPerSec, `${j.name} Fail/s\n${where}`).to.equal(0);
          expect(j.toPerSec, `${j.name} TO/s\n${where}`).to.equal(0);
          expect(j.iops, `${j.name} IOPS\n${where}`).to.be.above(0);
        }
        const total = perNs.reduce((s, j) => s + j.iops, 0);
        results.push(`| ${bs >= MiB ? `${bs / MiB} MiB` : `${bs / 1024} KiB`} | ${digests ? 'hdgst+ddgst' : 'none'} | ${qd} | ${Math.round(total)} |`);
      }
    }
  });
});
