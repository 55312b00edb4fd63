import * as net from 'node:net';
import { byteLength, parseTcpPort, TRADDR_MAX_LEN, TRSTRING_MAX_LEN, TRSVCID_MAX_LEN } from '../../nvmf/names';
import { AnaState, ListenerState, sameListener, SubsystemState } from '../../nvmf/target';
import type { Dispatcher, RpcContext } from '../dispatcher';
import { checkTarget, decodeNvmf, engine, inView, internal, invalidParams, NvmfContext } from './nvmf-common';
import { listenerToJson } from './nvmf-json';

/*
 * nvmf_subsystem_add_listener, _remove_listener and _get_listeners (lib/nvmf/nvmf_rpc.c,
 * subsystem.c, transport.c and tcp.c of SPDK v25.09). Every failure but two is -32602
 * "Invalid parameters".
 */

const LISTEN_ADDRESS = {
  trtype: { type: 'string', optional: true },
  adrfam: { type: 'string', optional: true },
  traddr: { type: 'string' },
  trsvcid: { type: 'string', optional: true },
} as const;

const LISTENER = {
  nqn: { type: 'string' },
  listen_address: { type: 'object' },
  tgt_name: { type: 'string', optional: true },
  secure_channel: { type: 'bool', optional: true },
  ana_state: { type: 'string', optional: true },
  sock_impl: { type: 'string', optional: true },
} as const;

const QUERY = {
  nqn: { type: 'string' },
  tgt_name: { type: 'string', optional: true },
} as const;

/** An address as rpc_listen_address_to_trid reads it: trtype upper-cased, adrfam IPv4 by default. */
interface Trid {
  trstring: string;
  adrfam: string;
  traddr: string;
  trsvcid: string;
}

type Address = ReturnType<typeof decodeAddress>;

/** decode_rpc_listen_address (strict, inside the method's decode). */
function decodeAddress(v: Record<string, unknown>): { trtype?: string; adrfam?: string; traddr: string; trsvcid?: string } {
  return decodeNvmf(v, LISTEN_ADDRESS);
}

/** rpc_listen_address_to_trid. */
function toTrid(a: Address): Trid {
  // spdk_nvme_transport_id_populate_trstring: a missing trtype fails, so does one of 32 bytes or more.
  if (a.trtype === undefined || byteLength(a.trtype) >= TRSTRING_MAX_LEN) throw invalidParams();
  let adrfam = 'IPv4';
  if (a.adrfam !== undefined) {
    // spdk_nvme_transport_id_parse_adrfam.
    const f = ['IPv4', 'IPv6', 'IB', 'FC'].find((x) => x.toLowerCase() === (a.adrfam as string).toLowerCase());
    if (f === undefined) throw invalidParams();
    adrfam = f;
  }
  if (byteLength(a.traddr) > TRADDR_MAX_LEN) throw invalidParams();
  const trsvcid = a.trsvcid ?? '';
  if (byteLength(trsvcid) > TRSVCID_MAX_LEN) throw invalidParams();
  return { trstring: a.trtype.toUpperCase(), adrfam, traddr: a.traddr, trsvcid };
}

/** rpc_ana_state_parse. */
function parseAnaState(s: string): AnaState | undefined {
  const v = s.toLowerCase();
  return v === 'optimized' || v === 'non_optimized' || v === 'inaccessible' ? v : undefined;
}

/**
 * nvmf_tcp_listen's checks, as a listener: a port in 1..65535, and a socket address of the family
 * adrfam names. The traddr must be an IP literal: SPDK also resolves host names, and then
 * listens on whatever getaddrinfo returns first (docs/differences.md).
 */
function tcpListener(t: Trid): ListenerState {
  const port = parseTcpPort(t.trsvcid);
  if (port < 0) throw invalidParams();
  const family = net.isIPv4(t.traddr) ? 'IPv4' : net.isIPv6(t.traddr) ? 'IPv6' : undefined;
  if (family === undefined || family !== t.adrfam) throw invalidParams();
  return { trtype: 'TCP', adrfam: family, traddr: t.traddr, trsvcid: t.trsvcid, port, secureChannel: false, anaState: 'optimized' };
}

/**
 * The subsystem a listener/query method names: missing, or outside the caller's view, is -32602
 * "Invalid parameters".
 */
function subsystemOf(ctx: NvmfContext, nqn: string, call: RpcContext): SubsystemState {
  const s = ctx.target.find(nqn);
  if (s === undefined || !inView(call, nqn)) throw invalidParams();
  return s;
}

export function registerNvmfListenerMethods(dispatcher: Dispatcher, ctx: NvmfContext): void {
  const { target } = ctx;

  dispatcher.register('nvmf_subsystem_add_listener', (params, call) =>
    target.serial(() => {
      const req = decodeNvmf(params, LISTENER, true);
      const decoded = decodeAddress(req.listen_address);
      checkTarget(req.tgt_name);
      const s = subsystemOf(ctx, req.nqn, call);
      const address = toTrid(decoded);
      // Then a secure channel against allow_any_host, then the ANA state.
      if (s.allowAnyHost && req.secure_channel === true) {
        throw internal("Cannot establish secure channel, when 'allow_any_host' is set");
      }
      let anaState: AnaState = 'optimized';
      if (req.ana_state !== undefined) {
        const a = parseAnaState(req.ana_state);
        if (a === undefined) throw invalidParams();
        anaState = a;
      }
      // spdk_nvmf_tgt_listen_ext needs the transport; TCP's listen opens the socket. TLS (a
      // secure channel, the "ssl" socket) is not part of the builtin target.
      if (address.trstring !== 'TCP' || target.transport === undefined) throw invalidParams();
      const l = tcpListener(address);
      if (s.listeners.some((x) => sameListener(x, l))) throw invalidParams();
      if (req.secure_channel === true) throw invalidParams();
      if (req.sock_impl !== undefined && req.sock_impl !== 'posix') throw invalidParams();
      l.anaState = anaState;
      if (req.sock_impl !== undefined) l.sockImpl = req.sock_impl;
      engine(() => target.addListener(s, l));
      return true;
    }),
  );

  dispatcher.register('nvmf_subsystem_remove_listener', (params, call) =>
    target.serial(() => {
      const req = decodeNvmf(params, LISTENER);
      const decoded = decodeAddress(req.listen_address);
      checkTarget(req.tgt_name);
      const s = subsystemOf(ctx, req.nqn, call);
      const address = toTrid(decoded);
      if (address.trstring !== 'TCP' || target.transport === undefined) throw invalidParams();
      const probe: ListenerState = {
        trtype: 'TCP',
        adrfam: address.adrfam as ListenerState['adrfam'],
        traddr: address.traddr,
        trsvcid: address.trsvcid,
        port: 0,
        secureChannel: false,
        anaState: 'optimized',
      };
      const l = s.listeners.find((x) => sameListener(x, probe));
      if (l === undefined) throw invalidParams();
      engine(() => target.removeListener(s, l));
      return true;
    }),
  );

  dispatcher.register('nvmf_subsystem_get_listeners', (params, call) => {
    const req = decodeNvmf(params, QUERY);
    checkTarget(req.tgt_name, 'Unable to find a target');
    const s = subsystemOf(ctx, req.nqn, call);
    return s.listeners.map((l) => listenerToJson(s, l));
  });
}
