/**
 * What the lvols' parent/clone links say: where a volume's content came from, which hidden
 * snapshots nothing needs any more, and the sweep that removes what an interrupted operation
 * left behind.
 *
 * SPDK's lineage: a snapshot of V becomes V's parent (V its clone); a volume restored from
 * snapshot S is another clone of S; cloning volume V into C takes a hidden snapshot H of V
 * (V and C are both clones of H). A hidden snapshot is needed while it has a clone that is not
 * on its source volume's own line (V itself, or snapshots taken of V).
 */
import { isNoDevice } from './errors';
import type { LvolInfo, PoolInfo, StorageNode } from './node';

export type Lookup = (lvolName: string) => Promise<LvolInfo | undefined>;

export type DerivedSource = { kind: 'none' } | { kind: 'snapshot'; uuid: string } | { kind: 'volume'; uuid: string } | { kind: 'unknown' };

/**
 * Where `vol`'s content came from: up its parents, past its own snapshots (and hidden
 * snapshots taken of it for clones), the first snapshot of another volume is the snapshot it
 * was restored from, and the first hidden snapshot of another volume names the volume it was
 * cloned from. A parent the provisioner did not make ends the walk as 'unknown'.
 */
export async function deriveSource(vol: LvolInfo, lookup: Lookup): Promise<DerivedSource> {
  let cur = vol;
  for (let depth = 0; cur.parent !== undefined && depth < 10000; depth++) {
    const p = await lookup(cur.parent);
    if (p === undefined) return { kind: 'unknown' };
    if (p.parsed.kind === 'snapshot') {
      if (p.parsed.source !== vol.uuid) return { kind: 'snapshot', uuid: p.uuid };
    } else if (p.parsed.kind === 'hidden') {
      if (p.parsed.source !== vol.uuid) return { kind: 'volume', uuid: p.parsed.source };
    } else {
      return { kind: 'unknown' };
    }
    cur = p;
  }
  return { kind: 'none' };
}

/** Whether clone `c` of a hidden snapshot of `source` is on the source's own line. */
function ownLine(source: string, c: LvolInfo): boolean {
  if (c.uuid === source) return true;
  return (c.parsed.kind === 'snapshot' || c.parsed.kind === 'hidden') && c.parsed.source === source;
}

/** Whether hidden snapshot `h` still has a clone that needs it (an unreadable clone counts). */
export async function hiddenNeeded(h: LvolInfo, lookup: Lookup): Promise<boolean> {
  if (h.parsed.kind !== 'hidden') return true;
  const source = h.parsed.source;
  for (const name of h.clones) {
    const c = await lookup(name);
    if (c === undefined || !ownLine(source, c)) return true;
  }
  return false;
}

/** bdev_lvol_delete by UUID; an lvol already gone is fine. */
export async function deleteLvol(node: StorageNode, op: string, uuid: string): Promise<void> {
  try {
    await node.call(op, 'bdev_lvol_delete', { name: uuid });
  } catch (e) {
    if (!isNoDevice(e)) throw e;
  }
}

/** Looks lvol names of one pool up on the node. */
export function poolLookup(node: StorageNode, op: string, pool: PoolInfo): Lookup {
  return (name) => node.lvol(op, `${pool.name}/${name}`, [pool]);
}

/**
 * Deletes hidden snapshots up the chain from lvol `name` (in `pool`) while nothing needs them.
 * Deleting one with a single clone merges it into that clone (SPDK), which keeps the clone's
 * data; the walk goes on to its parent.
 */
export async function collectHiddenChain(node: StorageNode, op: string, pool: PoolInfo, name: string | undefined): Promise<number> {
  const lookup = poolLookup(node, op, pool);
  let deleted = 0;
  while (name !== undefined) {
    const h = await lookup(name);
    if (h === undefined || h.parsed.kind !== 'hidden' || (await hiddenNeeded(h, lookup))) break;
    await deleteLvol(node, op, h.uuid);
    deleted++;
    name = h.parent;
  }
  return deleted;
}

/**
 * Removes what interrupted operations left on a node: volumes being built (`__tmp-*`, never
 * renamed to their name) and hidden snapshots nothing needs. Run with the node's lock held and
 * nothing of this process in flight on it.
 */
export async function sweep(node: StorageNode, op: string): Promise<{ temps: number; hidden: number }> {
  const out = { temps: 0, hidden: 0 };
  let { lvols } = await node.scan(op);
  for (const l of lvols) {
    if (l.parsed.kind === 'temp') {
      await deleteLvol(node, op, l.uuid);
      out.temps++;
    }
  }
  // Each deletion changes the links of what remains: read again until nothing more goes.
  for (;;) {
    if (out.temps > 0 || out.hidden > 0) lvols = (await node.scan(op)).lvols;
    const byName = new Map(lvols.map((l) => [`${l.pool.uuid}/${l.lvolName}`, l]));
    let progress = false;
    for (const h of lvols) {
      if (h.parsed.kind !== 'hidden') continue;
      const lookup: Lookup = async (n) => byName.get(`${h.pool.uuid}/${n}`);
      if (await hiddenNeeded(h, lookup)) continue;
      await deleteLvol(node, op, h.uuid);
      out.hidden++;
      progress = true;
      break;
    }
    if (!progress) return out;
  }
}
