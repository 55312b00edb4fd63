/**
 * The provisioning layer's operations per second and their latency, with 1 000 volumes on one
 * node.
 *
 *   node dist/bench/provision.js [--volumes 1000] [--concurrency 1]
 *
 * One builtin engine in this process (one reactor on core 1, interrupt mode: this is the control
 * plane), a 2 GiB malloc lvstore with 256 KiB clusters, one provisioner over `spdk.rpc` with an
 * over-commit of 100 (thin volumes of 64 MiB). Phases, in this order, each over every volume,
 * `concurrency` operations in flight (1: one request at a time, as a CSI controller's sidecars
 * mostly send them):
 *
 *   create     createVolume (thin, 64 MiB)
 *   snapshot   createSnapshot of each volume
 *   clone      createVolume from each volume (hidden snapshot, clone, rename)
 *   export     exportVolume of each clone (subsystem, namespace, listener; any host)
 *   unexport   unexportVolume of each clone
 *   delete     deleteVolume of each clone (and its hidden snapshot), deleteSnapshot of each
 *              snapshot, deleteVolume of each volume: three rows
 *
 * Reported per phase: operations per second (count / wall time), p50 and p99 latency, and the
 * number of lvols the engine held at the end of the phase together with the p50 latency of one
 * `bdev_get_bdevs {name}` then (the engine's own lookup, a floor under every operation).
 * No reference is run: there is nothing to compare a provisioning layer with here.
 */
import { execFileSync } from 'node:child_process';
import * as net from 'node:net';
import { Spdk } from '../lib';
import { Provisioner } from '../lib/provision';
import { arg } from './common';

const MIB = 1024 * 1024;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Runs `op` for every item, `concurrency` at a time; latencies in ms, wall time in s. */
async function phase<T>(items: T[], concurrency: number, op: (item: T, i: number) => Promise<unknown>): Promise<{ lat: number[]; seconds: number }> {
  const lat: number[] = new Array(items.length);
  let next = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) {
        const i = next++;
        const s = process.hrtime.bigint();
        await op(items[i], i);
        lat[i] = Number(process.hrtime.bigint() - s) / 1e6;
      }
    }),
  );
  return { lat: lat.sort((a, b) => a - b), seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
}

async function main(): Promise<void> {
  const n = arg('volumes', 1000);
  const concurrency = arg('concurrency', 1);
  const spdk = await Spdk.start({ engine: 'builtin', cores: [1] });
  try {
    await spdk.rpc.call('bdev_malloc_create', { name: 'Malloc0', num_blocks: (2048 * MIB) / 4096, block_size: 4096 });
    await spdk.rpc.call('bdev_lvol_create_lvstore', { bdev_name: 'Malloc0', lvs_name: 'lvs0', cluster_sz: 256 * 1024 });
    const port = await freePort();
    const prov = await Provisioner.start({
      owner: 'bench',
      overcommit: 100,
      nodes: [{ name: 'local', rpc: spdk.rpc, listen: [{ traddr: '127.0.0.1', trsvcid: port }] }],
    });

    const lookupMs = async (name: string): Promise<number> => {
      const xs: number[] = [];
      for (let i = 0; i < 21; i++) {
        const s = process.hrtime.bigint();
        await spdk.rpc.call('bdev_get_bdevs', { name });
        xs.push(Number(process.hrtime.bigint() - s) / 1e6);
      }
      return xs.sort((a, b) => a - b)[10];
    };
    const lvolCount = async (): Promise<number> => ((await spdk.rpc.call('bdev_lvol_get_lvols')) as unknown[]).length;

    console.log(`# provision: ${n} thin 64 MiB volumes on one in-process builtin engine (reactor core 1, interrupt mode), 2 GiB malloc lvstore, 256 KiB clusters, ${concurrency} operation(s) in flight`);
    console.log(`# ${new Date().toISOString()} node ${process.version} ${execFileSync('uname', ['-r']).toString().trim()} load average ${execFileSync('cat', ['/proc/loadavg']).toString().trim()}`);
    console.log('');
    console.log('| phase | operations | ops/s | p50 (ms) | p99 (ms) | lvols after | bdev_get_bdevs {name} p50 (ms) |');
    console.log('|---|---|---|---|---|---|---|');
    const row = async (name: string, r: { lat: number[]; seconds: number }, probe: string): Promise<void> => {
      const lvols = await lvolCount();
      const look = await lookupMs(probe);
      console.log(
        `| ${name} | ${r.lat.length} | ${(r.lat.length / r.seconds).toFixed(1)} | ${percentile(r.lat, 50).toFixed(2)} | ${percentile(r.lat, 99).toFixed(2)} | ${lvols} | ${look.toFixed(2)} |`,
      );
    };

    const idx = Array.from({ length: n }, (_, i) => i);
    const vols: string[] = new Array(n);
    const snaps: string[] = new Array(n);
    const clones: string[] = new Array(n);
    const marker = 'lvs0/' + ((await spdk.rpc.call('bdev_lvol_get_lvols')) as Array<{ name: string }>)[0].name;

    await row('create', await phase(idx, concurrency, async (i) => (vols[i] = (await prov.createVolume({ name: `pvc-${i}`, sizeBytes: 64 * MIB })).id)), marker);
    await row('snapshot', await phase(idx, concurrency, async (i) => (snaps[i] = (await prov.createSnapshot({ name: `snap-${i}`, volumeId: vols[i] })).id)), marker);
    await row('clone', await phase(idx, concurrency, async (i) => (clones[i] = (await prov.createVolume({ name: `clone-${i}`, sizeBytes: 64 * MIB, source: { volumeId: vols[i] } })).id)), marker);
    await row('export', await phase(idx, concurrency, (i) => prov.exportVolume(clones[i])), marker);
    await row('unexport', await phase(idx, concurrency, (i) => prov.unexportVolume(clones[i])), marker);
    await row('delete clone', await phase(idx, concurrency, (i) => prov.deleteVolume(clones[i])), marker);
    await row('delete snapshot', await phase(idx, concurrency, (i) => prov.deleteSnapshot(snaps[i])), marker);
    await row('delete volume', await phase(idx, concurrency, (i) => prov.deleteVolume(vols[i])), marker);
    await prov.close();
  } finally {
    await spdk.stop();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
