import { expect } from 'chai';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Spdk } from '../../lib';
import { fillPattern, rng, tempDir } from './env';

/**
 * Rebuilding what a disk holds after a simulated power cut, from the write/flush log of the
 * test-only recording bdev (native/builtin/bdev/record.*).
 *
 * Model: a write is durable once a flush has completed after it. At a cut after event N, the
 * disk holds every write that a flush before N made durable, plus, for each write still
 * volatile, one of: nothing (dropped), all of it, or a torn prefix of its 512-byte sectors.
 */
export interface RecordedEvent {
  kind: 'write' | 'flush' | 'zero';
  offset: number;
  length: number;
  data?: Uint8Array;
}

export type VolatileFate = 'drop' | 'keep' | 'tear';

function apply(image: Uint8Array, e: RecordedEvent, bytes = e.length): void {
  if (e.kind === 'write') image.set((e.data as Uint8Array).subarray(0, bytes), e.offset);
  else if (e.kind === 'zero') image.fill(0, e.offset, e.offset + bytes);
}

export { rng };

/**
 * The image after a cut following the first `n` events of `log`, starting from `initial`.
 * `fate` decides what happens to each write that no flush had covered.
 */
export function imageAfterCut(initial: Uint8Array, log: RecordedEvent[], n: number, fate: (i: number) => VolatileFate, random: () => number): Uint8Array {
  const image = Uint8Array.from(initial);
  let lastFlush = -1;
  for (let i = 0; i < n; i++) if (log[i].kind === 'flush') lastFlush = i;
  for (let i = 0; i < n; i++) {
    const e = log[i];
    if (e.kind === 'flush') continue;
    if (i < lastFlush) {
      apply(image, e);
      continue;
    }
    const f = fate(i);
    if (f === 'keep') apply(image, e);
    else if (f === 'tear') {
      const sectors = Math.floor(e.length / 512);
      apply(image, e, Math.floor(random() * sectors) * 512);
    }
  }
  return image;
}

/** What the store looks like through the RPCs: the part every operation must change atomically. */
interface StoreState {
  present: boolean;
  lvols: string[]; // "alias thin size read-only base_snapshot" per lvol, sorted
  free?: number;
  total?: number;
  data?: string[]; // "alias sha1" per lvol, sorted: what reading each whole lvol returns
}

const CLUSTER = 64 * 1024;
const BLOCKS = 4096; // 16 MiB of 4 KiB blocks

async function observe(spdk: Spdk): Promise<StoreState> {
  const stores = (await spdk.rpc.call('bdev_lvol_get_lvstores')) as Array<{ uuid: string; free_clusters: number; total_data_clusters: number }>;
  if (stores.length === 0) return { present: false, lvols: [] };
  const lvols = (await spdk.rpc.call('bdev_lvol_get_lvols', { lvs_uuid: stores[0].uuid })) as Array<{ name: string; num_allocated_clusters: number; is_thin_provisioned: boolean; is_read_only?: boolean; alias: string }>;
  const bdevs = (await spdk.rpc.call('bdev_get_bdevs')) as Array<{
    name: string;
    aliases: string[];
    num_blocks: number;
    block_size: number;
    supported_io_types?: { write?: boolean };
    driver_specific?: { lvol?: { base_snapshot?: string } };
  }>;
  const bdev = (alias: string): (typeof bdevs)[number] | undefined => bdevs.find((x) => x.aliases.includes(alias));
  const describe = (alias: string): string => {
    const b = bdev(alias);
    if (!b) return '-1';
    // Not driver_specific.lvol.snapshot: as SPDK's, it says whether the lvol has had a clone
    // since the store was loaded, so the recorded run and a reloaded store differ there.
    return `${b.num_blocks * b.block_size} ${b.supported_io_types?.write === false ? 'ro' : 'rw'} ${b.driver_specific?.lvol?.base_snapshot ?? '-'}`;
  };
  const data: string[] = [];
  for (const l of lvols) {
    const h = await spdk.bdev.open(l.alias);
    const buf = spdk.allocBuffer(h.numBlocks * h.blockSize);
    await h.read(buf, { offsetBlocks: 0, numBlocks: h.numBlocks });
    data.push(`${l.alias} ${crypto.createHash('sha1').update(buf.bytes).digest('hex')}`);
    await h.close();
    buf.free();
  }
  return {
    present: true,
    lvols: lvols.map((l) => `${l.alias} ${l.is_thin_provisioned} ${describe(l.alias)}`).sort(),
    free: stores[0].free_clusters,
    total: stores[0].total_data_clusters,
    data: data.sort(),
  };
}

/**
 * Power cut after every event of a run of metadata operations: the store reopens to the state
 * before or after each operation in flight, never between, and every acknowledged operation is
 * there. `rounds` random fates per cut point (drop / keep / tear of each volatile write).
 */
export async function powerCutCampaign(rounds: number, seed: number, log: (s: string) => void = () => {}): Promise<{ cuts: number; events: number }> {
  const tmp = tempDir();
  const spdk = await Spdk.start({ engine: 'builtin', cores: [0], warn: () => {} });
  try {
    const native = spdk.nativeEngine as unknown as {
      createRecordBdev(name: string, numBlocks: number, blockSize: number): unknown;
      takeRecordLog(name: string): RecordedEvent[];
    };
    native.createRecordBdev('R0', BLOCKS, 4096);
    const events: RecordedEvent[] = [];
    // acks[i] = number of events when operation i was answered; states[i] = the state after it;
    // mixed[i] = the lvol operation i writes data to (a cut may leave any mix of old and new
    // blocks there, so its content is not compared while that operation is in flight).
    const acks: number[] = [];
    const states: StoreState[] = [{ present: false, lvols: [] }];
    const mixed: Array<string | undefined> = [];
    const step = async (what: string, fn: () => Promise<unknown>, writesTo?: string): Promise<void> => {
      await fn();
      events.push(...native.takeRecordLog('R0'));
      acks.push(events.length);
      mixed.push(writesTo);
      states.push(await observe(spdk));
      log(`${what}: ${events.length} events`);
    };
    // Writes a pattern over blocks [offset, offset + blocks) of an lvol, then flushes it.
    const write = async (alias: string, offset: number, blocks: number, seed: number): Promise<void> => {
      const bdev = await spdk.bdev.open(alias);
      const buf = spdk.allocBuffer(blocks * 4096);
      fillPattern(buf.bytes, seed);
      await bdev.write(buf, { offsetBlocks: offset, numBlocks: blocks });
      await bdev.flush();
      await bdev.close();
      buf.free();
    };
    await step('create store', () => spdk.rpc.call('bdev_lvol_create_lvstore', { bdev_name: 'R0', lvs_name: 'lvs', cluster_sz: CLUSTER }));
    await step('thin a', () => spdk.rpc.call('bdev_lvol_create', { lvs_name: 'lvs', lvol_name: 'a', size_in_mib: 2, thin_provision: true }));
    await step('thick b', () => spdk.rpc.call('bdev_lvol_create', { lvs_name: 'lvs', lvol_name: 'b', size_in_mib: 1 }));
    await step('resize a', () => spdk.rpc.call('bdev_lvol_resize', { name: 'lvs/a', size_in_mib: 3 }));
    await step('rename b', () => spdk.rpc.call('bdev_lvol_rename', { old_name: 'lvs/b', new_name: 'c' }));
    await step('thin d', () => spdk.rpc.call('bdev_lvol_create', { lvs_name: 'lvs', lvol_name: 'd', size_in_mib: 1, thin_provision: true }));
    await step('delete c', () => spdk.rpc.call('bdev_lvol_delete', { name: 'lvs/c' }));
    await step('shrink a', () => spdk.rpc.call('bdev_lvol_resize', { name: 'lvs/a', size_in_mib: 1 }));
    await step('read-only d', () => spdk.rpc.call('bdev_lvol_set_read_only', { name: 'lvs/d' }));
    // Writes that allocate clusters of a thin lvol (across a cluster boundary), then a flush:
    // the allocation reaches disk with the flush's commit, so free_clusters changes atomically.
    await step('allocating writes + flush on a', () => write('lvs/a', CLUSTER / 4096 - 4, 8, 0xa5), 'lvs/a');
    await step('delete a', () => spdk.rpc.call('bdev_lvol_delete', { name: 'lvs/a' }));
    // Snapshots and clones, then decouple and inflate, which copy cluster by cluster: each copy
    // must be durable before the one commit that switches the lvol's map and parent, so a cut
    // leaves the lvol either still a clone or no longer one, reading the same data either way.
    const B = CLUSTER / 4096; // blocks per cluster
    await step('thin e', () => spdk.rpc.call('bdev_lvol_create', { lvs_name: 'lvs', lvol_name: 'e', size_in_mib: 1, thin_provision: true }));
    await step('writes on e', () => write('lvs/e', 0, 2 * B + 8, 1), 'lvs/e');
    await step('snapshot e -> s1', () => spdk.rpc.call('bdev_lvol_snapshot', { lvol_name: 'lvs/e', snapshot_name: 's1' }));
    await step('writes on e (copy-on-write from s1)', () => write('lvs/e', 2 * B - 2, B + 6, 2), 'lvs/e');
    await step('snapshot e -> s2', () => spdk.rpc.call('bdev_lvol_snapshot', { lvol_name: 'lvs/e', snapshot_name: 's2' }));
    await step('writes on e', () => write('lvs/e', 5 * B + 3, 4, 3), 'lvs/e');
    await step('clone s1 -> f', () => spdk.rpc.call('bdev_lvol_clone', { snapshot_name: 'lvs/s1', clone_name: 'f' }));
    await step('writes on f', () => write('lvs/f', B - 1, 2, 4), 'lvs/f');
    await step('decouple e from s2', () => spdk.rpc.call('bdev_lvol_decouple_parent', { name: 'lvs/e' }));
    await step('inflate e', () => spdk.rpc.call('bdev_lvol_inflate', { name: 'lvs/e' }));
    await step('decouple f from s1', () => spdk.rpc.call('bdev_lvol_decouple_parent', { name: 'lvs/f' }));
    await step('delete s2', () => spdk.rpc.call('bdev_lvol_delete', { name: 'lvs/s2' }));

    // Unload the recorded store (deleting its base bdev writes nothing) so each rebuilt image
    // tastes as the only store with that name and UUID.
    (spdk.nativeEngine as unknown as { deleteBdev(n: string, d: string): void }).deleteBdev('R0', 'test_record');
    const random = rng(seed);
    const fates: VolatileFate[] = ['drop', 'keep', 'tear'];
    const initial = new Uint8Array(BLOCKS * 4096);
    const image = path.join(tmp.dir, 'cut.img');
    let cuts = 0;
    for (let n = 0; n <= events.length; n++) {
      // Operation k is the last one answered before the cut; k+1 may or may not have landed.
      let k = 0;
      while (k < acks.length && acks[k] <= n) k++;
      // Operation k is in flight; the data of the lvol it writes to is not compared.
      const comparable = (st: StoreState): string =>
        JSON.stringify(mixed[k] === undefined || !st.data ? st : { ...st, data: st.data.filter((d) => !d.startsWith(`${mixed[k]} `)) });
      const allowed = [states[k], states[Math.min(k + 1, states.length - 1)]].map(comparable);
      for (let r = 0; r < rounds; r++) {
        const fateOf = (): VolatileFate => fates[Math.floor(random() * 3)];
        fs.writeFileSync(image, imageAfterCut(initial, events, n, fateOf, random));
        await spdk.rpc.call('bdev_aio_create', { name: 'cut', filename: image, block_size: 4096 });
        const seen = comparable(await observe(spdk));
        await spdk.rpc.call('bdev_aio_delete', { name: 'cut' });
        expect(allowed, `cut after event ${n}/${events.length} (round ${r}, seed ${seed})`).to.include(seen);
        cuts++;
      }
    }
    return { cuts, events: events.length };
  } finally {
    await spdk.stop();
    tmp.cleanup();
  }
}

