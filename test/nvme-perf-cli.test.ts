/**
 * `spdk-node perf` (lib/cli/perf.ts): short runs against the builtin target in this process,
 * with spdk_nvme_perf's flags; its output parsed the way bench/ parses spdk_nvme_perf's; usage
 * errors. No speed thresholds: the numbers are only checked to be consistent.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { Spdk } from '../lib';
import { parseCoreMask, parsePerfArgs } from '../lib/cli/perf';
import { freePort } from './helpers/nvme-tcp-host';

const NQN = 'nqn.2016-06.io.spdk:perf-cli';
const MAIN = path.join(__dirname, '..', 'lib', 'cli', 'main.js');

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [MAIN, 'perf', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The numbers of a `NAME : IOPS MiB/s avg min max` line. */
function numbers(line: string): number[] {
  return line.split(':').pop()!.trim().split(/\s+/).map(Number);
}

describe('spdk-node perf', function () {
  this.timeout(60000);
  let spdk: Spdk;
  let trid = '';

  before(async () => {
    spdk = await Spdk.start({ engine: 'builtin', cores: [1] });
    const port = await freePort();
    await spdk.rpc.call('nvmf_create_transport', { trtype: 'TCP' });
    await spdk.rpc.call('bdev_malloc_create', { name: 'Malloc0', num_blocks: 16384, block_size: 4096 });
    await spdk.rpc.call('bdev_malloc_create', { name: 'Malloc1', num_blocks: 65536, block_size: 512 });
    await spdk.rpc.call('nvmf_create_subsystem', { nqn: NQN, allow_any_host: true });
    await spdk.rpc.call('nvmf_subsystem_add_ns', { nqn: NQN, namespace: { bdev_name: 'Malloc0' } });
    await spdk.rpc.call('nvmf_subsystem_add_ns', { nqn: NQN, namespace: { bdev_name: 'Malloc1' } });
    await spdk.rpc.call('nvmf_subsystem_add_listener', { nqn: NQN, listen_address: { trtype: 'TCP', adrfam: 'IPv4', traddr: '127.0.0.1', trsvcid: String(port) } });
    trid = `trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:${port} subnqn:${NQN}`;
  });

  after(async () => {
    await spdk?.stop();
  });

  for (const owner of ['js', 'reactor']) {
    it(`randrw -M 70 on every namespace, owner ${owner}: spdk_nvme_perf's output, consistent numbers, N-API calls per I/O`, async () => {
      const r = await run(['-q', '16', '-o', '4096', '-w', 'randrw', '-M', '70', '-t', '2', '-r', trid, '--owner', owner]);
      expect(r.code, r.stderr).to.equal(0);
      const lines = r.stdout.split('\n');
      expect(lines[0]).to.equal('Initializing NVMe Controllers');
      expect(lines).to.include(`Attached to NVMe-oF Controller at TCP (addr:127.0.0.1 subnqn:${NQN})`);
      expect(lines).to.include('Initialization complete. Launching workers.');
      const dev = lines.filter((l) => / from core +\d+: /.test(l));
      expect(dev.map((l) => l.split(' from core')[0].trim())).to.deep.equal([`TCP (addr:127.0.0.1 subnqn:${NQN}) NSID 1`, `TCP (addr:127.0.0.1 subnqn:${NQN}) NSID 2`]);
      // bench/nvmf-target.ts's parser for spdk_nvme_perf's Total line.
      const m = /^Total\s*:\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)/m.exec(r.stdout);
      expect(m, r.stdout).to.not.equal(null);
      const [iops, mibs, avg, min, max] = (m as RegExpExecArray).slice(1).map(Number);
      const per = dev.map(numbers);
      expect(iops).to.be.greaterThan(0);
      expect(iops).to.be.closeTo(per[0][0] + per[1][0], 0.02);
      expect(mibs).to.be.closeTo((iops * 4096) / 1048576, 0.02);
      expect(min).to.be.at.most(avg);
      expect(avg).to.be.at.most(max);
      // Column alignment: the header's colon sits where every row's does.
      const header = lines.find((l) => l.startsWith('Device Information')) as string;
      expect(header.indexOf(': ')).to.equal(dev[0].indexOf(': '));
      expect(lines.find((l) => l.startsWith('Total'))?.indexOf(': ')).to.equal(header.indexOf(': '));
      const n = /^N-API calls per I\/O: ([\d.]+) \(JS->native (\d+), native->JS wake-ups (\d+), (\d+) I\/Os; owner (\w+)\)$/m.exec(r.stdout);
      expect(n, r.stdout).to.not.equal(null);
      expect(Number(n?.[1])).to.be.greaterThan(0).and.below(1);
      expect(n?.[5]).to.equal(owner);
      // Progress on stderr, once a second.
      expect(r.stderr).to.match(/^\[1\/2 s\] \d+ IOPS, [\d.]+ MiB\/s$/m);
    });
  }

  it('-r with ns:N runs one namespace; a size that does not divide the sector size is skipped with a warning', async () => {
    const r = await run(['-q', '4', '-o', '1024', '-w', 'write', '-t', '1', '-r', `${trid} ns:1`, '-r', `${trid} ns:2`, '--no-progress']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stderr).to.match(/WARNING: .* ns 1 has invalid ns size .* block size 4096 for I\/O size 1024/);
    const dev = r.stdout.split('\n').filter((l) => / from core +\d+: /.test(l));
    expect(dev).to.have.length(1);
    expect(dev[0]).to.match(/NSID 2 from core  0:/);
    expect(r.stderr).to.not.match(/IOPS/);
  });

  it('usage errors exit with 2 and say what is wrong', async () => {
    for (const [args, msg] of [
      [['-o', '4096', '-w', 'read', '-t', '1', '-r', trid], /missing -q/],
      [['-q', '1', '-o', '4096', '-w', 'rw', '-t', '1', '-r', trid], /-M \(--rwmixread\) must be specified/],
      [['-q', '1', '-o', '4096', '-w', 'scan', '-t', '1', '-r', trid], /io pattern type must be one of/],
      [['-q', '1', '-o', '4096', '-w', 'read', '-t', '1', '-r', 'traddr:1.2.3.4 foo:1'], /unknown key 'foo'/],
      [['-q', 'x', '-o', '4096', '-w', 'read', '-t', '1', '-r', trid], /-q needs an integer/],
      [['-q', '1', '-o', '4096', '-w', 'read', '-t', '1', '-r', trid, '--owner', 'gpu'], /--owner must be js or reactor/],
    ] as Array<[string[], RegExp]>) {
      const r = await run(args);
      expect(r.code, args.join(' ')).to.equal(2);
      expect(r.stderr).to.match(msg);
    }
  });

  it('a controller that is not there: exit 1 with the connection error', async () => {
    const port = await freePort();
    const r = await run(['-q', '1', '-o', '4096', '-w', 'read', '-t', '1', '-r', `trtype:TCP traddr:127.0.0.1 trsvcid:${port} subnqn:${NQN}`]);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/cannot connect to 127.0.0.1:\d+ .*Connection refused/);
  });

  it('parses core masks and workloads as spdk_nvme_perf does', () => {
    expect(parseCoreMask('0x5')).to.deep.equal([0, 2]);
    expect(parseCoreMask('3')).to.deep.equal([0, 1]);
    expect(parseCoreMask('[0,2-3]')).to.deep.equal([0, 2, 3]);
    const a = parsePerfArgs(['-q', '8', '-o', '512', '-w', 'randread', '-t', '1', '-r', 'traddr:127.0.0.1 subnqn:nqn.a:b']);
    expect(a).to.include({ depth: 8, ioSize: 512, pattern: 'read', random: true, readPct: 100, seconds: 1, owner: 'js' });
    expect(parsePerfArgs(['-q', '8', '-o', '512', '-w', 'rw', '-M', '30', '-t', '1', '-r', 'traddr:127.0.0.1 subnqn:nqn.a:b'])).to.include({ random: false, readPct: 30 });
  });
});
