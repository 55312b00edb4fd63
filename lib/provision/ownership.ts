/**
 * The single-writer rule, kept in the storage: each managed pool holds one thin, never-written
 * lvol `__spdk_node_provisioner.<owner>.<epoch>` naming the provisioner that may change it.
 *
 * - A provisioner claims a pool with no marker by creating its own.
 * - A marker of the same owner (an earlier run of the same provisioner, another epoch) is taken
 *   over by renaming it to this run's epoch; the earlier run, if it still runs, then finds its
 *   marker gone and fails every change loudly.
 * - A marker of another owner is a second writer: FailedPrecondition, unless `takeOver`.
 * - Before every change the provisioner checks its marker is still there (one lookup by alias).
 *   Between that check and the change a take-over can slip in: the fence is one call wide.
 */
import { FailedPrecondition, isNoDevice } from './errors';
import { markerLvolName, MARKER_PREFIX, parseLvolName } from './names';
import type { PoolInfo, StorageNode } from './node';

export interface Owner {
  id: string;
  epoch: string;
  takeOver: boolean;
}

/** Claims one pool for `owner` (see the file comment). */
export async function claimPool(node: StorageNode, op: string, pool: PoolInfo, owner: Owner): Promise<void> {
  const mine = markerLvolName(owner.id, owner.epoch);
  const markers = await markersOf(node, op, pool);
  const others = markers.filter((m) => m.name !== mine);
  const foreign = others.filter((m) => m.owner !== owner.id);
  if (foreign.length > 0 && !owner.takeOver) {
    throw new FailedPrecondition(
      op,
      `pool ${pool.name} on node ${node.name} is owned by provisioner '${foreign[0].owner}' (lvol ${pool.name}/${foreign[0].name}); ` +
        `one provisioner may change a pool at a time. Stop the other one, or start this one (owner '${owner.id}') with takeOver`,
    );
  }
  if (!markers.some((m) => m.name === mine)) {
    if (others.length > 0) {
      await node.call(op, 'bdev_lvol_rename', { old_name: others[0].uuid, new_name: mine });
      others.shift();
    } else {
      await node.call(op, 'bdev_lvol_create', { lvs_name: pool.name, lvol_name: mine, size_in_mib: 1, thin_provision: true });
    }
  }
  for (const m of others) await node.call(op, 'bdev_lvol_delete', { name: m.uuid }).catch((e) => (isNoDevice(e) ? undefined : Promise.reject(e)));
  // Two provisioners that claimed an empty pool at the same moment both see two markers now:
  // both give up, loudly, rather than both writing.
  const after = await markersOf(node, op, pool);
  const rival = after.find((m) => m.name !== mine);
  if (rival !== undefined) {
    await node.call(op, 'bdev_lvol_delete', { name: `${pool.name}/${mine}` }).catch(() => undefined);
    throw new FailedPrecondition(op, `pool ${pool.name} on node ${node.name} was claimed by provisioner '${rival.owner}' at the same time; try again`);
  }
}

/** Throws FailedPrecondition unless this run's marker is still in the pool. */
export async function checkOwner(node: StorageNode, op: string, pool: PoolInfo, owner: Owner): Promise<void> {
  const mine = markerLvolName(owner.id, owner.epoch);
  try {
    await node.call(op, 'bdev_get_bdevs', { name: `${pool.name}/${mine}` });
  } catch (e) {
    if (!isNoDevice(e)) throw e;
    node.ready = false;
    const now = await markersOf(node, op, pool).catch(() => []);
    const by = now.length > 0 ? ` by provisioner '${now[0].owner}'` : '';
    throw new FailedPrecondition(op, `this provisioner (owner '${owner.id}') no longer owns pool ${pool.name} on node ${node.name}: it was taken over${by}`);
  }
}

async function markersOf(node: StorageNode, op: string, pool: PoolInfo): Promise<Array<{ uuid: string; name: string; owner: string }>> {
  const list = await node.call<Array<{ uuid: string; name: string; is_snapshot: boolean }>>(op, 'bdev_lvol_get_lvols', { lvs_uuid: pool.uuid });
  const out: Array<{ uuid: string; name: string; owner: string }> = [];
  for (const l of list) {
    if (!l.name.startsWith(MARKER_PREFIX)) continue;
    const p = parseLvolName(l.name, l.is_snapshot);
    if (p.kind === 'marker') out.push({ uuid: l.uuid, name: l.name, owner: p.owner });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : 1));
}
