import { expect } from 'chai';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Spdk } from '../../lib';
import { fillPattern, tempDir } from './env';

type Model = Record<string, { mib: number; thin: boolean }>;
type Write = { alias: string; offset: number; blocks: number; pat: number };

/**
 * One crash round: run the child on `file` for a random time, SIGKILL it, reopen the store in
 * this process and check it: the state is the last answered one or the one the operation in
 * flight was heading to; clusters add up; flushed data of lvols that still exist (and were not
 * resized smaller since; renamed ones keep it) reads back. A block that the write in flight at the
 * kill (announced, not yet flushed) covers may hold either its flushed data or the new pattern.
 */
export async function crashRound(file: string, seed: number, maxMs: number): Promise<void> {
  const child = spawn(process.execPath, [path.join(__dirname, 'lvol-crash-child.js'), file, String(seed)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // Kill at a random moment once it is ready.
  const start = Date.now();
  while (!out.includes('"ready"') && Date.now() - start < 20000 && child.exitCode === null) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, Math.floor(Math.random() * maxMs)));
  child.kill('SIGKILL');
  await exited;
  const lines = out.split('\n').filter((l) => l.trim().startsWith('{')).map((l) => {
    try {
      return JSON.parse(l) as Record<string, unknown>;
    } catch {
      return {}; // the kill cut this line
    }
  });
  const failure = lines.find((l) => 'error' in l);
  expect(failure, `child failed: ${JSON.stringify(failure)}\n${err}`).to.equal(undefined);
  let acked: Model = {};
  let inFlight: Model | undefined;
  let renaming: { from: string; to: string } | undefined;
  let writing: Write | undefined;
  const data = new Map<string, Write[]>();
  for (const l of lines) {
    if ('ready' in l) acked = l.ready as Model;
    if ('begin' in l) {
      inFlight = l.after as Model;
      renaming = l.begin === 'rename' ? { from: l.from as string, to: l.to as string } : undefined;
    }
    if ('write' in l) writing = l.write as Write;
    if ('ack' in l) {
      const next = l.ack as Model;
      if (renaming && data.has(renaming.from)) {
        data.set(renaming.to, data.get(renaming.from)!);
        data.delete(renaming.from);
      }
      // An lvol resized smaller or deleted loses the promise about its data; renamed keeps it.
      for (const alias of [...data.keys()]) if (!(alias in next) || next[alias].mib < (acked[alias]?.mib ?? 0)) data.delete(alias);
      acked = next;
      inFlight = undefined;
      renaming = undefined;
    }
    if ('data' in l) {
      const d = l.data as Write;
      writing = undefined;
      data.set(d.alias, [...(data.get(d.alias) ?? []).filter((x) => x.offset + x.blocks <= d.offset || x.offset >= d.offset + d.blocks), d]);
    }
  }
  const spdk = await Spdk.start({ engine: 'builtin', cores: [0] });
  try {
    await spdk.rpc.call('bdev_aio_create', { name: 'base', filename: file, block_size: 4096 });
    const stores = (await spdk.rpc.call('bdev_lvol_get_lvstores')) as Array<{ uuid: string; free_clusters: number; total_data_clusters: number }>;
    if (stores.length === 0) {
      // Killed before the store creation was answered.
      expect(lines.some((l) => 'ready' in l), 'store missing after it was created').to.equal(false);
      return;
    }
    const lvols = (await spdk.rpc.call('bdev_lvol_get_lvols', { lvs_uuid: stores[0].uuid })) as Array<{ alias: string; uuid: string; is_thin_provisioned: boolean; num_allocated_clusters: number }>;
    const bdevs = (await spdk.rpc.call('bdev_get_bdevs')) as Array<{ name: string; num_blocks: number; block_size: number }>;
    const seen: Model = {};
    for (const l of lvols) {
      const b = bdevs.find((z) => z.name === l.uuid);
      seen[l.alias] = { mib: b ? (b.num_blocks * b.block_size) / 2 ** 20 : -1, thin: l.is_thin_provisioned };
    }
    const norm = (m: Model): string => JSON.stringify(Object.keys(m).sort().map((k) => [k, m[k].mib, m[k].thin]));
    const allowed = [norm(acked), ...(inFlight ? [norm(inFlight)] : [])];
    expect(allowed, `seed ${seed}: store after SIGKILL`).to.include(norm(seen));
    const allocated = lvols.reduce((s, l) => s + l.num_allocated_clusters, 0);
    expect(allocated + stores[0].free_clusters, `seed ${seed}: clusters`).to.equal(stores[0].total_data_clusters);
    // The write in flight at the kill, as whole blocks of its pattern.
    const newer = writing ? new Uint8Array(writing.blocks * 4096) : undefined;
    if (writing && newer) fillPattern(newer, writing.pat);
    for (const [promised, writes] of data) {
      // A rename in flight may or may not have happened.
      const alias = !(promised in seen) && renaming?.from === promised && renaming.to in seen ? renaming.to : promised;
      if (!(alias in seen)) continue;
      const bdev = await spdk.bdev.open(alias);
      for (const w of writes) {
        if (w.offset + w.blocks > bdev.numBlocks) continue;
        const buf = spdk.allocBuffer(w.blocks * 4096);
        await bdev.read(buf, { offsetBlocks: w.offset, numBlocks: w.blocks });
        const want = new Uint8Array(w.blocks * 4096);
        fillPattern(want, w.pat);
        // Per block: the flushed pattern, or (under the write in flight) the newer one.
        let firstBad = -1;
        for (let b = 0; b < w.blocks && firstBad < 0; b++) {
          const got = buf.bytes.subarray(b * 4096, (b + 1) * 4096);
          if (Buffer.compare(got, want.subarray(b * 4096, (b + 1) * 4096)) === 0) continue;
          const nb = w.offset + b - (writing?.offset ?? 0);
          const under = writing !== undefined && newer !== undefined && writing.alias === promised && nb >= 0 && nb < writing.blocks;
          if (under && Buffer.compare(got, newer.subarray(nb * 4096, (nb + 1) * 4096)) === 0) continue;
          firstBad = b * 4096;
          while (buf.bytes[firstBad] === want[firstBad]) firstBad++;
        }
        if (firstBad >= 0) {
          const trail = lines.filter((l) => JSON.stringify(l).includes(promised) || JSON.stringify(l).includes(alias) || 'begin' in l).slice(-12).map((l) => JSON.stringify(l).slice(0, 200));
          expect.fail(`seed ${seed}: flushed data of ${alias} at block ${w.offset}+${w.blocks} differs from byte ${firstBad} (block ${w.offset + Math.floor(firstBad / 4096)}); read ${buf.bytes[firstBad]} want ${want[firstBad]}; lvol now ${JSON.stringify(seen[alias])}; last lines:\n${trail.join('\n')}`);
        }
      }
    }
  } finally {
    await spdk.stop();
  }
}

export async function crashCampaign(rounds: number, maxMs: number): Promise<void> {
  const tmp = tempDir();
  try {
    const file = path.join(tmp.dir, 'crash.img');
    fs.writeFileSync(file, Buffer.alloc(0));
    fs.truncateSync(file, 64 << 20);
    for (let i = 0; i < rounds; i++) await crashRound(file, 1 + i + Math.floor(Math.random() * 1e6), maxMs);
  } finally {
    tmp.cleanup();
  }
}
