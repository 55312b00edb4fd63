/**
 * The NVMe host when its target dies: the builtin target (`spdk-node target` in a child
 * process) and SPDK's nvmf_tgt (where installed) are SIGKILLed with commands in flight on queue
 * pairs owned by the JS thread and by a reactor. Every command in flight must fail promptly with
 * a clear SpdkError, the controller must say it failed, reset() must fail cleanly while the
 * target is down and reconnect everything once a target listens again.
 */
import { expect } from 'chai';
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NvmeQpair, Spdk, SpdkBuffer, SpdkError } from '../lib';
import { RpcClient } from '../lib/rpc';
import { fillPattern, uniqueSocketPath } from './helpers/env';
import { freePort } from './helpers/nvme-tcp-host';
import { findSpdkBinary, skipLine } from './helpers/spdk-install';

const NQN = 'nqn.2016-06.io.spdk:failover';
const nvmfTgt = findSpdkBinary('nvmf_tgt');

interface Child {
  proc: ChildProcess;
  kill(signal: NodeJS.Signals): Promise<void>;
}

/** Starts a target process, waits for its RPC socket and configures one malloc namespace on `port`. */
async function startTarget(kind: 'builtin' | 'spdk', port: number): Promise<Child> {
  const sock = uniqueSocketPath(`failover-${kind}`);
  const argv =
    kind === 'builtin'
      ? [process.execPath, [path.join(__dirname, '..', 'lib', 'cli', 'main.js'), 'target', '--engine', 'builtin', '--cores', '1', '--no-default-bdev', '--rpc-socket', sock]]
      : [nvmfTgt as string, ['--no-huge', '-s', '1024', '-m', '0x2', '-u', '--disable-cpumask-locks', '-r', sock]];
  const proc = spawn(argv[0] as string, argv[1] as string[], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout?.on('data', (d) => (out += d));
  proc.stderr?.on('data', (d) => (out += d));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const kill = async (signal: NodeJS.Signals): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    await exited;
    fs.rmSync(sock, { force: true });
  };
  const deadline = Date.now() + 20000;
  let client: RpcClient | undefined;
  while (!client) {
    if (proc.exitCode !== null) throw new Error(`${kind} target exited early:\n${out}`);
    try {
      const c = await RpcClient.connect(sock);
      await c.call('spdk_get_version');
      client = c;
    } catch {
      if (Date.now() > deadline) {
        await kill('SIGKILL');
        throw new Error(`${kind} target did not answer within 20 s:\n${out}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  try {
    await client.call('nvmf_create_transport', { trtype: 'TCP' });
    await client.call('bdev_malloc_create', { name: 'Malloc0', num_blocks: 65536, block_size: 512 });
    await client.call('nvmf_create_subsystem', { nqn: NQN, allow_any_host: true, serial_number: 'FAILOVER0001' });
    await client.call('nvmf_subsystem_add_ns', { nqn: NQN, namespace: { bdev_name: 'Malloc0' } });
    await client.call('nvmf_subsystem_add_listener', { nqn: NQN, listen_address: { trtype: 'TCP', adrfam: 'IPv4', traddr: '127.0.0.1', trsvcid: String(port) } });
  } catch (e) {
    await kill('SIGKILL');
    throw e;
  } finally {
    await client.close().catch(() => undefined);
  }
  return { proc, kill };
}

for (const kind of ['builtin', 'spdk'] as const) {
  describe(`NVMe host failover: ${kind === 'builtin' ? 'the builtin target' : "SPDK's nvmf_tgt"} killed mid-I/O and restarted`, function () {
    this.timeout(60000);
    let spdk: Spdk;
    let target: Child | undefined;

    before(async function () {
      if (kind === 'spdk' && !nvmfTgt) {
        console.log(`      ${skipLine('nvmf_tgt')}`);
        this.skip();
      }
      spdk = await Spdk.start({ engine: 'builtin', cores: [0] });
    });

    after(async () => {
      await spdk?.stop();
      await target?.kill('SIGKILL');
    });

    it('in-flight commands fail promptly, reset() fails while it is down and reconnects everything after', async () => {
      const port = await freePort();
      target = await startTarget(kind, port);
      const ctrlr = await spdk.nvme.connect(`trtype:TCP traddr:127.0.0.1 trsvcid:${port} subnqn:${NQN}`, { keepAliveTimeoutMs: 5000 });
      const ns = ctrlr.namespace(1);
      const qps: NvmeQpair[] = [await ctrlr.allocQpair({ depth: 32, owner: 'js' }), await ctrlr.allocQpair({ depth: 32, owner: 'reactor' })];
      const bufs: SpdkBuffer[] = [];
      // Keep 32 verified-size reads of 64 KiB in flight on each queue pair until the target dies.
      let killedAt = 0;
      const failures: Array<{ err: Error; after: number }> = [];
      let completed = 0;
      const loops = qps.map(async (qp, k) => {
        const mine = Array.from({ length: 32 }, () => spdk.allocBuffer(64 * 1024));
        bufs.push(...mine);
        await Promise.all(
          mine.map(async (b, i) => {
            for (;;) {
              try {
                await qp.read(ns, b, (k * 32 + i) * 128, 128);
                completed++;
              } catch (e) {
                failures.push({ err: e as Error, after: Date.now() - killedAt });
                return;
              }
            }
          }),
        );
      });
      while (completed < 2000) await new Promise((r) => setTimeout(r, 10));
      killedAt = Date.now();
      await target.kill('SIGKILL');
      target = undefined;
      await Promise.all(loops);
      expect(failures.length).to.equal(64);
      for (const f of failures) {
        expect(f.err).to.be.instanceOf(SpdkError);
        expect(f.err.name).to.equal('SpdkError'); // not an NvmeError: the command got no completion
        expect((f.err as SpdkError).errno, f.err.message).to.be.oneOf([104, 32, 107]);
        // In flight at the kill: no completion. Or submitted by its loop right after its previous
        // read completed, once the failure was known: refused as disconnected (ENOTCONN).
        expect(f.err.message).to.match(/^(READ \(nsid 1, lba \d+, 128 blocks, qid \d\) got no completion: |the qpair is disconnected ).*\(.*(closed the connection|reset|Broken pipe)/);
        expect(f.after, 'ms after the kill').to.be.below(2000);
      }
      for (const b of bufs) expect(b.inFlight).to.equal(0);
      for (const qp of qps) {
        expect(qp.state).to.equal('failed');
        expect(qp.failure).to.be.a('string');
      }
      const deadline = Date.now() + 2000;
      while (!ctrlr.failed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(ctrlr.failed, 'the admin connection is seen gone').to.equal(true);
      expect(ctrlr.failure).to.match(/closed the connection|reset|Broken pipe/);
      // New work is refused with a clear error.
      let e1: Error | undefined;
      await qps[0].read(ns, bufs[0], 0, 1).catch((e: Error) => (e1 = e));
      expect(e1?.message).to.match(/disconnected .*reset\(\) reconnects/);
      await ctrlr.admin.identify(1).catch((e: Error) => (e1 = e));
      expect(e1?.message).to.match(/not usable .*reset\(\) reconnects/);

      // reset() while nothing listens: a clear error, nothing breaks.
      let e2: Error | undefined;
      await ctrlr.reset().catch((e: Error) => (e2 = e));
      expect((e2 as SpdkError).code).to.equal('ECONNREFUSED');
      expect(e2?.message).to.match(/cannot reconnect to 127.0.0.1|cannot connect/);

      // A target again on the same port: reset() reconnects the controller and both queue pairs.
      target = await startTarget(kind, port);
      await ctrlr.reset();
      expect(ctrlr.failed).to.equal(false);
      for (const qp of qps) expect(qp.state).to.equal('ready');
      for (const [k, qp] of qps.entries()) {
        const w = spdk.allocBuffer(32 * 1024);
        const r = spdk.allocBuffer(32 * 1024);
        fillPattern(w.bytes, 40 + k);
        await qp.write(ns, w, 5000 + k * 64, 64);
        await qp.read(ns, r, 5000 + k * 64, 64);
        expect(Buffer.from(r.bytes).equals(Buffer.from(w.bytes))).to.equal(true);
        w.free();
        r.free();
      }
      for (const b of bufs) b.free();
      await ctrlr.detach();
    });
  });
}
