import type { NvmfTransportOpts } from '../../engine/native';
import type { TransportState } from '../../nvmf/target';
import { tryDecodeObject } from '../decode';
import type { Dispatcher } from '../dispatcher';
import { JsonRpcError } from '../errors';
import { checkTarget, decodeNvmf, engine, internal, NvmfContext } from './nvmf-common';
import { transportToJson } from './nvmf-json';

/*
 * nvmf_create_transport and nvmf_get_transports (lib/nvmf/nvmf_rpc.c, transport.c and tcp.c of
 * SPDK v25.09). Only TCP exists here; any other trtype is answered as SPDK answers a transport it
 * was not built with.
 */

const CREATE = {
  trtype: { type: 'string' },
  max_queue_depth: { type: 'uint16', optional: true },
  max_io_qpairs_per_ctrlr: { type: 'uint16', optional: true },
  in_capsule_data_size: { type: 'uint32', optional: true },
  max_io_size: { type: 'uint32', optional: true },
  io_unit_size: { type: 'uint32', optional: true },
  max_aq_depth: { type: 'uint32', optional: true },
  num_shared_buffers: { type: 'uint32', optional: true },
  buf_cache_size: { type: 'uint32', optional: true },
  dif_insert_or_strip: { type: 'bool', optional: true },
  abort_timeout_sec: { type: 'uint32', optional: true },
  zcopy: { type: 'bool', optional: true },
  tgt_name: { type: 'string', optional: true },
  acceptor_poll_rate: { type: 'uint32', optional: true },
  ack_timeout: { type: 'uint32', optional: true },
  data_wr_pool_size: { type: 'uint32', optional: true },
  disable_command_passthru: { type: 'bool', optional: true },
  kas: { type: 'uint16', optional: true },
  min_kato: { type: 'uint32', optional: true },
} as const;

/** tcp_transport_opts_decoder: TCP's own options, decoded (relaxed) from the same params. */
const TCP_OPTS = {
  c2h_success: { type: 'bool', optional: true },
  control_msg_num: { type: 'uint16', optional: true },
  sock_priority: { type: 'uint32', optional: true },
  // spdk-node's own (SPDK's relaxed decoders ignore it): TCP connections open at once.
  max_connections: { type: 'uint32', optional: true },
} as const;

const GET = {
  trtype: { type: 'string', optional: true },
  tgt_name: { type: 'string', optional: true },
} as const;

/** SPDK_NVMF_MIN_ADMIN_MAX_SQ_SIZE. */
const MIN_ADMIN_MAX_SQ_SIZE = 32;
/** NVMF_KAS_TIME_UNIT_IN_MS. */
const KAS_TIME_UNIT_MS = 100;
/** The iobuf pool's default large buffer size (IOBUF_DEFAULT_LARGE_BUFSIZE). */
const IOBUF_LARGE_BUFSIZE = 132 * 1024;
/** SPDK_NVMF_MAX_SGL_ENTRIES. */
const MAX_SGL_ENTRIES = 16;
/** SPDK_NVMF_TCP_DEFAULT_MAX_SOCK_PRIORITY. */
const MAX_SOCK_PRIORITY = 16;
/** SPDK_NVME_TCP_IN_CAPSULE_DATA_MAX_SIZE. */
const TCP_ICD_MAX = 8192;
const UINT32_MAX = 0xffffffff;
/** spdk-node's default max_connections (SPDK has no such limit; see docs/nvmf-target.md). */
export const DEFAULT_MAX_CONNECTIONS = 1024;

/** spdk_nvmf_transport_opts_init for TCP (generic defaults, then nvmf_tcp_opts_init). */
function tcpDefaults(): TransportState {
  return {
    trtype: 'TCP',
    max_queue_depth: 128,
    max_qpairs_per_ctrlr: 128,
    in_capsule_data_size: 4096,
    max_io_size: 131072,
    io_unit_size: 131072,
    max_aq_depth: 128,
    num_shared_buffers: 511,
    buf_cache_size: UINT32_MAX,
    dif_insert_or_strip: false,
    zcopy: false,
    c2h_success: true,
    sock_priority: 0,
    control_msg_num: 32,
    abort_timeout_sec: 1,
    ack_timeout: 0,
    data_wr_pool_size: 0,
    acceptor_poll_rate: 10000,
    disable_command_passthru: false,
    kas: 100,
    min_kato: 10000,
  };
}

const isPow2 = (v: number): boolean => v > 0 && (v & (v - 1)) === 0;

/**
 * nvmf_transport_create and nvmf_tcp_create on the decoded options: the adjusted options, or the
 * failure SPDK answers ("Transport type '<t>' create failed" from the generic checks, "Failed to
 * create transport." from TCP's).
 */
function tcpCreate(trtype: string, o: TransportState, params: unknown, cores: number): TransportState {
  const genericFailure = (): JsonRpcError => internal(`Transport type '${trtype}' create failed`);
  const tcpFailure = (): JsonRpcError => internal('Failed to create transport.');
  const t = { ...o };
  // nvmf_transport_create.
  if (t.max_io_size !== 0 && (!isPow2(t.max_io_size) || t.max_io_size < 8192)) throw genericFailure();
  if (t.max_aq_depth < MIN_ADMIN_MAX_SQ_SIZE) t.max_aq_depth = MIN_ADMIN_MAX_SQ_SIZE;
  if (t.kas === 0 || t.min_kato === 0) throw genericFailure();
  const kasMs = t.kas * KAS_TIME_UNIT_MS;
  t.min_kato = Math.ceil(t.min_kato / kasMs) * kasMs;
  if (t.io_unit_size === 0 || t.io_unit_size > IOBUF_LARGE_BUFSIZE) throw genericFailure();
  // nvmf_tcp_create.
  const tcp = tryDecodeObject(params, TCP_OPTS, { relaxed: true });
  if (tcp === undefined) throw tcpFailure();
  if (tcp.c2h_success !== undefined) t.c2h_success = tcp.c2h_success;
  if (tcp.control_msg_num !== undefined) t.control_msg_num = tcp.control_msg_num;
  if (tcp.sock_priority !== undefined) t.sock_priority = tcp.sock_priority;
  if (tcp.max_connections !== undefined) {
    if (tcp.max_connections === 0) throw tcpFailure();
    t.max_connections = tcp.max_connections;
  }
  if (t.sock_priority > MAX_SOCK_PRIORITY) throw tcpFailure();
  if (t.control_msg_num === 0 && t.in_capsule_data_size < TCP_ICD_MAX) t.control_msg_num = 32;
  if (t.io_unit_size > t.max_io_size) t.io_unit_size = t.max_io_size;
  if (t.in_capsule_data_size > t.max_io_size) t.in_capsule_data_size = t.max_io_size;
  if (t.max_queue_depth < 2) t.max_queue_depth = 128;
  if (t.max_aq_depth < 2 || t.max_aq_depth > 4096) t.max_aq_depth = 128;
  // max_io_size 0 makes io_unit_size 0 here, and SPDK then divides by zero (SIGFPE); refused
  // instead (docs/differences.md).
  if (t.io_unit_size === 0) throw tcpFailure();
  if (Math.floor(t.max_io_size / t.io_unit_size) > MAX_SGL_ENTRIES) throw tcpFailure();
  if (t.buf_cache_size < UINT32_MAX && Math.imul(cores, t.buf_cache_size) >>> 0 > t.num_shared_buffers) throw tcpFailure();
  return t;
}

/** What the engine's transport gets. */
export function nativeTransportOpts(t: TransportState): NvmfTransportOpts {
  return {
    maxQueueDepth: t.max_queue_depth,
    maxIoQpairsPerCtrlr: Math.max(0, t.max_qpairs_per_ctrlr - 1),
    inCapsuleDataSize: t.in_capsule_data_size,
    maxIoSize: t.max_io_size,
    ioUnitSize: t.io_unit_size,
    numSharedBuffers: t.num_shared_buffers,
    c2hSuccess: t.c2h_success,
    maxAqDepth: t.max_aq_depth,
    maxConnections: t.max_connections ?? DEFAULT_MAX_CONNECTIONS,
  };
}

/** True when SPDK's nvmf_get_transport_ops would find the transport (TCP only here). */
const isTcp = (trtype: string): boolean => trtype.toUpperCase() === 'TCP';

export function registerNvmfTransportMethods(dispatcher: Dispatcher, ctx: NvmfContext): void {
  const { target } = ctx;

  dispatcher.register('nvmf_create_transport', (params) =>
    target.serial(() => {
      // Decoded once to learn the type, and again over its defaults (rpc_nvmf_create_transport).
      const req = decodeNvmf(params, CREATE, true);
      checkTarget(req.tgt_name);
      if (!isTcp(req.trtype)) throw JsonRpcError.invalidParams(`Invalid transport type '${req.trtype}'`);
      if (target.transport !== undefined) throw internal(`Transport type '${req.trtype}' already exists`);
      const o = tcpDefaults();
      if (req.max_queue_depth !== undefined) o.max_queue_depth = req.max_queue_depth;
      // nvmf_rpc_decode_max_io_qpairs: a uint16 + 1 (the admin queue), wrapping as SPDK's does.
      if (req.max_io_qpairs_per_ctrlr !== undefined) o.max_qpairs_per_ctrlr = (req.max_io_qpairs_per_ctrlr + 1) & 0xffff;
      if (req.in_capsule_data_size !== undefined) o.in_capsule_data_size = req.in_capsule_data_size;
      if (req.max_io_size !== undefined) o.max_io_size = req.max_io_size;
      if (req.io_unit_size !== undefined) o.io_unit_size = req.io_unit_size;
      if (req.max_aq_depth !== undefined) o.max_aq_depth = req.max_aq_depth;
      if (req.num_shared_buffers !== undefined) o.num_shared_buffers = req.num_shared_buffers;
      if (req.buf_cache_size !== undefined) o.buf_cache_size = req.buf_cache_size;
      if (req.dif_insert_or_strip !== undefined) o.dif_insert_or_strip = req.dif_insert_or_strip;
      if (req.abort_timeout_sec !== undefined) o.abort_timeout_sec = req.abort_timeout_sec;
      if (req.zcopy !== undefined) o.zcopy = req.zcopy;
      if (req.acceptor_poll_rate !== undefined) o.acceptor_poll_rate = req.acceptor_poll_rate;
      if (req.ack_timeout !== undefined) o.ack_timeout = req.ack_timeout;
      if (req.data_wr_pool_size !== undefined) o.data_wr_pool_size = req.data_wr_pool_size;
      if (req.disable_command_passthru !== undefined) o.disable_command_passthru = req.disable_command_passthru;
      if (req.kas !== undefined) o.kas = req.kas;
      if (req.min_kato !== undefined) o.min_kato = req.min_kato;
      const t = tcpCreate(req.trtype, o, params, ctx.cores.length);
      engine(() => target.createTransport(t, nativeTransportOpts(t)), () => internal('Failed to create transport.'));
      return true;
    }),
  );

  dispatcher.register('nvmf_get_transports', (params) => {
    const req = params === undefined ? {} : decodeNvmf(params, GET);
    checkTarget(req.tgt_name);
    const t = target.transport;
    if (req.trtype !== undefined) {
      if (t === undefined || !isTcp(req.trtype)) throw JsonRpcError.fromErrno(19);
    }
    return t ? [transportToJson(t)] : [];
  });

}
