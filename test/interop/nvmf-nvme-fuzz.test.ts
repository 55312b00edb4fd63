/**
 * SPDK's own nvme_fuzz (random admin and I/O commands from SPDK's NVMe/TCP initiator) against the
 * builtin target, then a witness host's verified I/O: the target must keep serving. Skipped with
 * one line where SPDK's nvme_fuzz is not installed.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { Spdk } from '../../lib';
import { fillPattern } from '../helpers/env';
import { freePort, NvmeTcpController } from '../helpers/nvme-tcp-host';
import { findSpdkBinary, skipLine } from '../helpers/spdk-install';

const NQN = 'nqn.2016-06.io.spdk:nvme-fuzz';
const fuzzer = findSpdkBinary('nvme_fuzz');

describe('interop: SPDK nvme_fuzz against the builtin NVMe/TCP target', function () {
  this.timeout(120000);

  it('30 s of nvme_fuzz (admin and I/O queues, seeded), then verified I/O from another host', async function () {
    if (!fuzzer) {
      console.log(`      ${skipLine('nvme_fuzz')}`);
      this.skip();
    }
    const spdk = await Spdk.start({ engine: 'builtin', cores: [1] });
    try {
      const port = await freePort();
      await spdk.rpc.call('bdev_malloc_create', { name: 'Z0', num_blocks: 65536, block_size: 512 });
      await spdk.rpc.call('nvmf_create_transport', { trtype: 'TCP' });
      await spdk.rpc.call('nvmf_create_subsystem', { nqn: NQN, allow_any_host: true, serial_number: 'FUZZ0002', model_number: 'nvme_fuzz' });
      await spdk.rpc.call('nvmf_subsystem_add_ns', { nqn: NQN, namespace: { bdev_name: 'Z0' } });
      await spdk.rpc.call('nvmf_subsystem_add_listener', { nqn: NQN, listen_address: { trtype: 'TCP', adrfam: 'IPv4', traddr: '127.0.0.1', trsvcid: String(port) } });
      const trid = `trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:${port} subnqn:${NQN}`;
      // -U: no IOMMU check (this VM has none); -N: no namespace restrictions; -a: admin too.
      const child = spawn('taskset', ['-c', '0', fuzzer as string, '-m', '0x1', '--no-huge', '-s', '1024', '-u', '-U', '-t', '30', '-S', '20261123', '-F', trid, '-N', '-a'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (out += d));
      const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
      expect(out, out.slice(-2000)).to.match(/Fuzzing completed/);
      expect(code).to.equal(0);
      const completed = [...out.matchAll(/Total commands completed: (\d+)/g)].map((m) => Number(m[1]));
      expect(completed.length).to.equal(2); // the admin and the I/O queue pair both ran
      console.log(`      nvme_fuzz: ${completed.join(' + ')} commands completed`);
      const c = await NvmeTcpController.connect({ host: '127.0.0.1', port, subnqn: NQN } as never);
      try {
        await c.identifyNamespace(1);
        const data = Buffer.alloc(64 * 1024);
        fillPattern(data, 77);
        expect((await c.write(1, 4096, data)).cqe.status).to.equal(0);
        expect((await c.read(1, 4096, 128)).equals(data)).to.equal(true);
      } finally {
        await c.close();
      }
    } finally {
      await spdk.stop();
    }
  });
});
