/** Checking requests (InvalidArgument before anything is touched) and mapping nodes' errors. */
import { JsonRpcError } from '../rpc/errors';
import type { Cluster } from './cluster';
import { AlreadyExists, InternalError, InvalidArgument, OutOfCapacity } from './errors';
import { nameProblem } from './names';
import type { StorageNode } from './node';
import type { CreateVolumeRequest } from './types';

export interface CheckedCreate {
  name: string;
  sizeBytes: number;
  limitBytes: number | undefined;
  thin: boolean;
  source: { kind: 'snapshot' | 'volume'; node: StorageNode; uuid: string; id: string } | undefined;
  node: string | undefined;
  pool: string | undefined;
  topology: Array<Record<string, string>> | undefined;
}

export function checkCreate(op: string, req: CreateVolumeRequest, cluster: Cluster): CheckedCreate {
  if (req === null || typeof req !== 'object') throw new InvalidArgument(op, 'request must be an object');
  const p = nameProblem('volume name', req.name);
  if (p !== undefined) throw new InvalidArgument(op, p);
  checkSize(op, 'sizeBytes', req.sizeBytes);
  if (req.limitBytes !== undefined) {
    checkSize(op, 'limitBytes', req.limitBytes);
    if (req.limitBytes < req.sizeBytes) throw new InvalidArgument(op, 'limitBytes is below sizeBytes');
  }
  if (req.thin !== undefined && typeof req.thin !== 'boolean') throw new InvalidArgument(op, 'thin must be a boolean');
  if (req.node !== undefined) cluster.nodesOf(op, req.node);
  if (req.pool !== undefined && typeof req.pool !== 'string') throw new InvalidArgument(op, 'pool must be an lvstore name');
  const topology = checkTopology(op, req.topology);
  let source: CheckedCreate['source'];
  if (req.source !== undefined) {
    const s = req.source as { snapshotId?: unknown; volumeId?: unknown } | null;
    if (s === null || typeof s !== 'object' || (s.snapshotId === undefined) === (s.volumeId === undefined)) {
      throw new InvalidArgument(op, 'source must be { snapshotId } or { volumeId }');
    }
    const kind = s.snapshotId !== undefined ? 'snapshot' : 'volume';
    const id = (s.snapshotId ?? s.volumeId) as string;
    source = { kind, id, ...cluster.parseId(op, id, kind === 'snapshot' ? 'snapshotId' : 'volumeId') };
  }
  return { name: req.name, sizeBytes: req.sizeBytes, limitBytes: req.limitBytes, thin: req.thin ?? true, source, node: req.node, pool: req.pool, topology };
}

export function checkSize(op: string, what: string, v: unknown): asserts v is number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw new InvalidArgument(op, `${what} must be a positive integer number of bytes`);
}

export function checkTopology(op: string, t: unknown): Array<Record<string, string>> | undefined {
  if (t === undefined) return undefined;
  if (!Array.isArray(t) || t.some((s) => s === null || typeof s !== 'object' || Object.values(s).some((v) => typeof v !== 'string'))) {
    throw new InvalidArgument(op, 'topology must be a list of label maps (name → string)');
  }
  return t as Array<Record<string, string>>;
}

/** A node's JSON-RPC error as the provisioner's: ENOSPC is OutOfCapacity, EEXIST AlreadyExists, others Internal. */
export function mapRpcError(op: string, e: unknown): unknown {
  if (!(e instanceof JsonRpcError)) return e;
  if (e.code === -28 || /No space left/i.test(e.message)) return new OutOfCapacity(op, `the node has no space left: ${e.message}`, { cause: e });
  if (e.code === -17 || /File exists/i.test(e.message)) return new AlreadyExists(op, `the name is taken on the node by an lvol the provisioner did not make: ${e.message}`, { cause: e });
  return new InternalError(op, `a storage node answered ${e.code} "${e.message}"`, { cause: e });
}
