// Run by test/nvme-host-exit.test.ts in a child process: an engine that is both an NVMe/TCP target
// and a host connected to it, with reads in flight on a queue pair owned by argv[3] ('js' or
// 'reactor'), leaves in the way argv[2] names. The parent checks the exit code, signal and time.
import { Spdk } from '../../lib';

async function main(mode: string, owner: 'js' | 'reactor'): Promise<void> {
  const spdk = await Spdk.start({ engine: 'builtin', cores: [0, 1] });
  const port = 20000 + Math.floor(Math.random() * 30000);
  const nqn = 'nqn.2016-06.io.spdk:exit';
  await spdk.rpc.call('nvmf_create_transport', { trtype: 'TCP' });
  await spdk.rpc.call('bdev_malloc_create', { name: 'Malloc0', num_blocks: 8192, block_size: 512 });
  await spdk.rpc.call('nvmf_create_subsystem', { nqn, allow_any_host: true });
  await spdk.rpc.call('nvmf_subsystem_add_ns', { nqn, namespace: { bdev_name: 'Malloc0' } });
  await spdk.rpc.call('nvmf_subsystem_add_listener', { nqn, listen_address: { trtype: 'TCP', adrfam: 'IPv4', traddr: '127.0.0.1', trsvcid: String(port) } });
  const ctrlr = await spdk.nvme.connect(`trtype:TCP traddr:127.0.0.1 trsvcid:${port} subnqn:${nqn}`);
  const qp = await ctrlr.allocQpair({ depth: 32, owner });
  const ns = ctrlr.namespace(1);
  const bufs = Array.from({ length: 32 }, () => spdk.allocBuffer(4096));
  let done = 0;
  for (const [i, b] of bufs.entries()) {
    void (async () => {
      for (;;) {
        try {
          await qp.read(ns, b, i * 8, 8);
          done++;
        } catch {
          return;
        }
      }
    })();
  }
  while (done < 1000) await new Promise((r) => setTimeout(r, 5));
  switch (mode) {
    case 'exit':
      process.exit(0);
      break;
    case 'throw':
      // Uncaught, from a timer: not through main()'s catch.
      setTimeout(() => {
        throw new Error('thrown with I/O in flight');
      }, 0);
      break;
    case 'stop':
      // stop() detaches the controller (its commands in flight fail) and stops; the loop must empty.
      await spdk.stop();
      break;
    case 'gc-after-stop':
      await spdk.stop();
      for (let i = 0; i < 5; i++) {
        (global as { gc?: () => void }).gc?.();
        await new Promise((r) => setTimeout(r, 20));
      }
      break;
    default:
      throw new Error(`unknown mode ${mode}`);
  }
}

main(process.argv[2], process.argv[3] as 'js' | 'reactor').catch((e) => {
  console.error(e);
  process.exit(1);
});
