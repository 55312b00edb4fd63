import { RpcClient } from './client';
import { dispatchRequest, JsonRpcResponse, RpcContext, RpcTarget } from './dispatcher';
import { JsonRpcError } from './errors';
import { inView } from './methods/nvmf-common';

/**
 * The libspdk engine's RpcTarget: every call goes to SPDK's own JSON-RPC server over its Unix
 * socket (one persistent connection, calls pipelined by id) and SPDK's answer comes back
 * unchanged: its result, or its error object as a JsonRpcError with SPDK's code and message.
 *
 * The one thing added on the way is the HTTP endpoint's per-credential view (RpcContext.view, an
 * NQN prefix), which SPDK does not have. It is applied as the builtin engine's nvmf methods apply
 * it (docs/differences.md, "nvmf methods"): nvmf_get_subsystems lists the discovery subsystem
 * first, then the view's subsystems; a method naming a subsystem outside the view answers as SPDK
 * answers for one that does not exist (-19 from nvmf_get_subsystems, -32602 "Invalid parameters"
 * from the others) without reaching SPDK; nvmf_create_subsystem outside the view answers as for
 * an invalid NQN.
 *
 * The other: the legacy `size` (bytes) of bdev_lvol_create and bdev_lvol_resize, which SPDK
 * removed in v24.05 but OpenStack Cinder and spdk-csi still send (the builtin engine takes it:
 * docs/differences.md), goes to SPDK as `size_in_mib`, rounded up to a whole MiB (SPDK rounds to
 * clusters anyway); with `size_in_mib` too, as the builtin engine answers (both must agree).
 *
 * And two calls that crash SPDK v25.09 — in this engine, the whole Node process — never reach it
 * as they are (docs/differences.md): nvmf_create_transport for TCP with `max_io_size: 0` (a
 * division by zero) is answered as the builtin engine answers it, -32603 "Failed to create
 * transport."; nvmf_subsystem_add_listener with `sock_impl` for an address a listener already
 * has open (SPDK compares the new sock_impl with the open listener's, NULL when it was opened
 * without one) goes without `sock_impl`, which only chooses how a new listening socket is made.
 */
export class RpcForwarder implements RpcTarget {
  constructor(readonly client: RpcClient) {}

  async call(method: string, params?: unknown, ctx: Partial<RpcContext> = {}): Promise<unknown> {
    const p = await this.withoutCrashes(method, legacySize(method, params === null ? undefined : params));
    if (ctx.view !== undefined && method.startsWith('nvmf_')) return this.callInView(method, p, ctx);
    const result = await this.client.call(method, p);
    return result === undefined ? null : result;
  }

  dispatch(request: unknown, ctx: Partial<RpcContext> = {}): Promise<JsonRpcResponse | null> {
    return dispatchRequest(this, request, ctx);
  }

  close(): Promise<void> {
    return this.client.close();
  }

  private async withoutCrashes(method: string, params: unknown): Promise<unknown> {
    if (params === null || typeof params !== 'object' || Array.isArray(params)) return params;
    const o = params as Record<string, unknown>;
    if (method === 'nvmf_create_transport' && o.max_io_size === 0 && typeof o.trtype === 'string' && o.trtype.toUpperCase() === 'TCP') {
      throw JsonRpcError.internal('Failed to create transport.');
    }
    if (method === 'nvmf_subsystem_add_listener' && o.sock_impl !== undefined && o.listen_address !== null && typeof o.listen_address === 'object') {
      const want = o.listen_address as Record<string, unknown>;
      const subsystems = (await this.client.call('nvmf_get_subsystems')) as Array<{ listen_addresses?: Array<Record<string, unknown>> }>;
      const open = Array.isArray(subsystems) && subsystems.some((s) => (s.listen_addresses ?? []).some((l) => sameAddress(l, want)));
      if (open) {
        const { sock_impl: _dropped, ...rest } = o;
        return rest;
      }
    }
    return params;
  }

  private async callInView(method: string, params: unknown, ctx: Partial<RpcContext>): Promise<unknown> {
    const nqn = nqnParam(params);
    if (method === 'nvmf_get_subsystems') {
      if (nqn !== undefined && !inView(ctx, nqn)) throw JsonRpcError.fromErrno(19);
      const all = (await this.client.call(method, params)) as Array<{ nqn: string; subtype?: string }>;
      if (nqn !== undefined || !Array.isArray(all)) return all;
      const discovery = all.filter((s) => s.subtype === 'Discovery');
      return [...discovery, ...all.filter((s) => s.subtype !== 'Discovery' && inView(ctx, s.nqn))];
    }
    if (nqn !== undefined && !inView(ctx, nqn)) {
      if (method === 'nvmf_create_subsystem') throw JsonRpcError.internal(`Unable to create subsystem ${nqn}`);
      throw JsonRpcError.invalidParams();
    }
    const result = await this.client.call(method, params);
    return result === undefined ? null : result;
  }
}

/** The same transport address, as SPDK compares listeners (trtype without case, the service as a port). */
function sameAddress(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  const text = (v: unknown): string => (typeof v === 'string' ? v.trim() : String(v ?? ''));
  const port = (v: unknown): string => (/^\+?\d+$/.test(text(v)) ? String(Number(text(v))) : text(v));
  return text(a.trtype).toUpperCase() === text(b.trtype).toUpperCase() && text(a.traddr) === text(b.traddr) && port(a.trsvcid) === port(b.trsvcid);
}

function nqnParam(params: unknown): string | undefined {
  if (params === null || typeof params !== 'object' || Array.isArray(params)) return undefined;
  const nqn = (params as { nqn?: unknown }).nqn;
  return typeof nqn === 'string' ? nqn : undefined;
}

const MIB = 1024 * 1024;

/**
 * bdev_lvol_create/resize with `size` (bytes): the same call in MiB. With both keys, as the
 * builtin engine answers: the MiB alone when they agree, -32602 when they do not.
 */
function legacySize(method: string, params: unknown): unknown {
  if (method !== 'bdev_lvol_create' && method !== 'bdev_lvol_resize') return params;
  if (params === null || typeof params !== 'object' || Array.isArray(params)) return params;
  const { size, ...rest } = params as { size?: unknown; size_in_mib?: unknown };
  // A size that is not a byte count goes to SPDK as it is, for its answer.
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) return params;
  const mib = rest.size_in_mib;
  if (mib === undefined) return { ...rest, size_in_mib: Math.ceil(size / MIB) };
  if (typeof mib !== 'number') return params;
  if (mib * MIB !== size) {
    throw JsonRpcError.invalidParams(`Invalid parameters: size (${size} bytes) and size_in_mib (${mib} MiB) disagree; give one of them`);
  }
  return rest;
}
