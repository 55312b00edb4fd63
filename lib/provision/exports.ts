/**
 * NVMe-oF/TCP export of a volume: one subsystem per volume, NQN `<prefix><lvol UUID>`, model
 * number = the lvol UUID (how spdk-csi-style hosts find the device), a stable serial number, the
 * volume as namespace 1 (the lowest free), a listener per node address, and the host allow-list.
 * Each step reads what is there first, so an interrupted export completes when repeated.
 */
import { JsonRpcError } from '../rpc/errors';
import type { SubsystemJson } from '../nvmf/types';
import { FailedPrecondition, isNoDevice } from './errors';
import { serialNumberOf } from './names';
import type { StorageNode } from './node';
import type { VolumeExportAddress, VolumeExport } from './types';

/** The node's subsystem of that NQN, or undefined. */
export async function subsystemOf(node: StorageNode, op: string, nqn: string): Promise<SubsystemJson | undefined> {
  try {
    const [s] = await node.call<SubsystemJson[]>(op, 'nvmf_get_subsystems', { nqn });
    return s;
  } catch (e) {
    if (isNoDevice(e)) return undefined;
    throw e;
  }
}

/** Creates the TCP transport unless there is one ("already exists" is what SPDK answers then). */
async function ensureTransport(node: StorageNode, op: string): Promise<void> {
  try {
    await node.call(op, 'nvmf_create_transport', { trtype: 'TCP' });
  } catch (e) {
    if (!(e instanceof JsonRpcError && /already exists/i.test(e.message))) throw e;
  }
}

const sameAddress = (a: { traddr: string; trsvcid: string; adrfam: string }, b: { traddr: string; trsvcid: string; adrfam: string }): boolean =>
  a.traddr.toLowerCase() === b.traddr.toLowerCase() && a.trsvcid === b.trsvcid && a.adrfam.toLowerCase() === b.adrfam.toLowerCase();

/**
 * Makes the export what is asked: subsystem, namespace, exactly the node's listeners and exactly
 * `hosts` (allow_any_host when there are none).
 */
export async function ensureExport(node: StorageNode, op: string, nqn: string, volumeId: string, uuid: string, hosts: string[]): Promise<VolumeExport> {
  if (node.listen.length === 0) {
    throw new FailedPrecondition(op, `node ${node.name} has no NVMe/TCP address to export on (its 'listen' option is empty)`);
  }
  await ensureTransport(node, op);
  let s = await subsystemOf(node, op, nqn);
  if (s === undefined) {
    await node.call(op, 'nvmf_create_subsystem', {
      nqn,
      serial_number: serialNumberOf(uuid),
      model_number: uuid,
      allow_any_host: hosts.length === 0,
    });
    s = (await subsystemOf(node, op, nqn)) as SubsystemJson;
  }
  if (!(s.namespaces ?? []).some((n) => n.bdev_name === uuid || n.uuid === uuid)) {
    await node.call(op, 'nvmf_subsystem_add_ns', { nqn, namespace: { bdev_name: uuid } });
  }
  for (const a of node.listen) {
    if (!s.listen_addresses.some((l) => sameAddress(l, a))) {
      await node.call(op, 'nvmf_subsystem_add_listener', { nqn, listen_address: { ...a } });
    }
  }
  for (const l of s.listen_addresses) {
    if (!node.listen.some((a) => sameAddress(l, a))) {
      await node.call(op, 'nvmf_subsystem_remove_listener', { nqn, listen_address: { trtype: l.trtype, adrfam: l.adrfam, traddr: l.traddr, trsvcid: l.trsvcid } });
    }
  }
  // Allow the new hosts before closing the subsystem to others, and open it before removing hosts.
  const current = new Set(s.hosts.map((h) => h.nqn));
  for (const h of hosts) if (!current.has(h)) await node.call(op, 'nvmf_subsystem_add_host', { nqn, host: h });
  const anyHost = hosts.length === 0;
  if (s.allow_any_host !== anyHost) await node.call(op, 'nvmf_subsystem_allow_any_host', { nqn, allow_any_host: anyHost });
  for (const h of current) if (!hosts.includes(h)) await node.call(op, 'nvmf_subsystem_remove_host', { nqn, host: h });
  return exportInfo(node, volumeId, uuid, (await subsystemOf(node, op, nqn)) as SubsystemJson);
}

/** Deletes the subsystem (its hosts are disconnected); none there is fine. */
export async function removeExport(node: StorageNode, op: string, nqn: string): Promise<boolean> {
  if ((await subsystemOf(node, op, nqn)) === undefined) return false;
  try {
    await node.call(op, 'nvmf_delete_subsystem', { nqn });
  } catch (e) {
    // Deleted meanwhile: SPDK answers a missing subsystem with "Invalid parameters".
    if (!(e instanceof JsonRpcError && (await subsystemOf(node, op, nqn)) === undefined)) throw e;
  }
  return true;
}

/** What a host needs to connect, from the subsystem as the node reports it. */
export function exportInfo(node: StorageNode, volumeId: string, uuid: string, s: SubsystemJson): VolumeExport {
  const ns = (s.namespaces ?? []).find((n) => n.bdev_name === uuid || n.uuid === uuid);
  const addresses: VolumeExportAddress[] = s.listen_addresses
    .filter((l) => l.trtype.toUpperCase() === 'TCP')
    .map((l) => {
      const adrfam = l.adrfam.toLowerCase() === 'ipv6' ? 'IPv6' : 'IPv4';
      return {
        trtype: 'TCP' as const,
        adrfam,
        traddr: l.traddr,
        trsvcid: l.trsvcid,
        transportId: `trtype:TCP adrfam:${adrfam} traddr:${l.traddr} trsvcid:${l.trsvcid} subnqn:${s.nqn}`,
        nvmeConnectArgs: ['-t', 'tcp', '-a', l.traddr, '-s', l.trsvcid, '-n', s.nqn],
      };
    });
  return {
    volumeId,
    nqn: s.nqn,
    nsid: ns?.nsid,
    modelNumber: s.model_number ?? '',
    serialNumber: s.serial_number ?? '',
    allowAnyHost: s.allow_any_host,
    hosts: s.hosts.map((h) => h.nqn).sort(),
    addresses,
  };
}
