#!/usr/bin/env node
/**
 * The `spdk-node` command.
 *
 *   spdk-node target [--rpc-socket PATH] [--cores 0,1] [--engine auto|builtin|libspdk]
 *                    [--polling] [--no-default-bdev] [--nvmf HOST:PORT | --no-nvmf]
 *
 * `target` starts an embedded storage target: an engine serving SPDK's JSON-RPC on a Unix socket
 * (SPDK's default /var/tmp/spdk.sock), so SPDK's scripts/rpc.py drives it unchanged. With no
 * configuration it creates one malloc bdev (Malloc0, 64 MiB, 4 KiB blocks) and exports it over
 * NVMe/TCP as nqn.2016-06.io.spdk:cnode1 on 127.0.0.1:4420. SIGINT/SIGTERM stop it cleanly.
 *
 *   spdk-node setup [--status] [--hugepages N | --hugemem MIB] [--bind BDF] [--unbind BDF] [--reset]
 *
 * `setup` prepares the machine for SPDK (hugepages, NVMe devices on vfio-pci/uio_pci_generic):
 * lib/cli/setup.ts, docs/setup.md.
 */
import { Spdk } from '../spdk';
import { SpdkError } from '../errors';
import type { EngineChoice } from '../engine/load';
import { parseHostPort, RpcHttpEndpointOptions, RpcHttpServer } from '../rpc/http';
import { perf, perfUsage } from './perf';
import { setup } from './setup';

interface TargetArgs {
  rpcSocket: string;
  cores: number[];
  engine: EngineChoice;
  polling: boolean;
  defaultBdev: boolean;
  /** Where the default export listens (HOST:PORT), or undefined for none. */
  nvmf?: string;
  /** The HTTP endpoint (--http and friends), when asked for. */
  http?: RpcHttpEndpointOptions;
  config?: string;
  /** libspdk: --no-huge, -s (MiB), PCI probing. */
  noHuge?: boolean;
  memoryMiB?: number;
  pci?: boolean;
}

const usage = `usage: spdk-node target [options]
       spdk-node perf -q DEPTH -o BYTES -w PATTERN -t SECONDS -r TRID [options]   (--help for its options)
       spdk-node setup [--status] [--hugepages N] [--bind BDF] [--unbind BDF] [--reset] ...   (--help for its options)

spdk-node target options:
  --rpc-socket PATH   JSON-RPC Unix socket (default /var/tmp/spdk.sock)
  --cores LIST        reactor cores, e.g. 0 or 0,1 (default 0)
  --engine NAME       auto | builtin | libspdk (default auto)
  --polling           busy-poll reactors (benchmarks); default sleeps when idle (builtin)
  --no-huge           libspdk: run SPDK without hugepages (default: when there are none free)
  --mem-size MIB, -s  libspdk: SPDK's memory in MiB (default 1024 with --no-huge)
  --pci               libspdk: let DPDK probe PCI devices (NVMe SSDs); default --no-pci
  --no-default-bdev   do not create Malloc0 (nor its NVMe/TCP export)
  --nvmf HOST:PORT    where the default export of Malloc0 (nqn.2016-06.io.spdk:cnode1) listens
                      (default 127.0.0.1:4420)
  --no-nvmf           do not export Malloc0 over NVMe/TCP
  --http HOST:PORT    also serve JSON-RPC over HTTP, as SPDK's rpc_http_proxy.py does
                      (Cinder, spdk-csi); port 0 picks one. Needs --user and a password
  --user U            HTTP basic-auth user
  --password P        HTTP basic-auth password (visible in ps; prefer --password-file)
  --password-file F   read the password from F (one trailing newline ignored)
  --http-credentials F  more HTTP users, from a JSON file, each optionally with its own view of
                      the NVMe-oF subsystems (an NQN prefix), e.g. for Cinder and a CSI driver
                      on one target: {"credentials": [{"user": "cinder", "password_file":
                      "cinder.pw", "nqn_prefix": "nqn.2014-08.org.spdk:cnode"}, ...]}
  --tls-cert F        serve HTTPS with this PEM certificate (it may also hold the key)
  --tls-key F         PEM private key for --tls-cert
  --config FILE       start from an SPDK JSON config (SPDK's --json; also what save_config
                      writes); implies --no-default-bdev`;

export function parseTargetArgs(argv: string[]): TargetArgs {
  const a: TargetArgs = { rpcSocket: '/var/tmp/spdk.sock', cores: [0], engine: 'auto', polling: false, defaultBdev: true, nvmf: '127.0.0.1:4420' };
  const http: Partial<Record<HttpFlag, string>> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new SpdkError(`${arg} needs a value\n${usage}`, { code: 'ERR_USAGE' });
      return v;
    };
    switch (arg) {
      case '--rpc-socket':
      case '-r':
        a.rpcSocket = value();
        break;
      case '--cores':
        a.cores = value().split(',').map((s) => {
          const n = Number(s);
          if (!Number.isSafeInteger(n) || n < 0) throw new SpdkError(`invalid core '${s}'`, { code: 'ERR_USAGE' });
          return n;
        });
        break;
      case '--engine': {
        const e = value();
        if (e !== 'auto' && e !== 'builtin' && e !== 'libspdk') throw new SpdkError(`unknown engine '${e}'\n${usage}`, { code: 'ERR_USAGE' });
        a.engine = e;
        break;
      }
      case '--polling':
        a.polling = true;
        break;
      case '--no-huge':
        a.noHuge = true;
        break;
      case '--mem-size':
      case '-s': {
        const v = value();
        const n = Number(v);
        if (!Number.isSafeInteger(n) || n < 1) throw new SpdkError(`invalid --mem-size '${v}' (MiB)`, { code: 'ERR_USAGE' });
        a.memoryMiB = n;
        break;
      }
      case '--pci':
        a.pci = true;
        break;
      case '--nvmf':
        a.nvmf = value();
        try {
          parseHostPort(a.nvmf);
        } catch {
          throw new SpdkError(`invalid --nvmf address '${a.nvmf}' (want HOST:PORT)\n${usage}`, { code: 'ERR_USAGE' });
        }
        break;
      case '--no-nvmf':
        a.nvmf = undefined;
        break;
      case '--no-default-bdev':
        a.defaultBdev = false;
        break;
      case '--config':
      case '--json':
        a.config = value();
        a.defaultBdev = false;
        break;
      case '--http':
        http.listen = value();
        break;
      case '--user':
        http.user = value();
        break;
      case '--password':
        http.password = value();
        break;
      case '--password-file':
        http.passwordFile = value();
        break;
      case '--http-credentials':
        http.credentialsFile = value();
        break;
      case '--tls-cert':
        http.tlsCert = value();
        break;
      case '--tls-key':
        http.tlsKey = value();
        break;
      case '--help':
      case '-h':
        console.log(usage);
        process.exit(0);
        break;
      default:
        throw new SpdkError(`unknown option '${arg}'\n${usage}`, { code: 'ERR_USAGE' });
    }
  }
  a.http = httpArgs(http);
  return a;
}

type HttpFlag = 'listen' | 'user' | 'password' | 'passwordFile' | 'credentialsFile' | 'tlsCert' | 'tlsKey';

/**
 * Checks the HTTP endpoint flags together (rpc_http_proxy.py, too, requires a user and a
 * password): a --user with its password, or --http-credentials, or both.
 */
function httpArgs(h: Partial<Record<HttpFlag, string>>): RpcHttpEndpointOptions | undefined {
  const usageError = (msg: string): SpdkError => new SpdkError(`${msg}\n${usage}`, { code: 'ERR_USAGE' });
  if (h.listen === undefined) {
    if (Object.keys(h).length > 0) throw usageError('--user, --password, --password-file, --http-credentials, --tls-cert and --tls-key need --http');
    return undefined;
  }
  try {
    parseHostPort(h.listen);
  } catch (e) {
    throw usageError((e as Error).message);
  }
  if (!h.user && h.credentialsFile === undefined) throw usageError('--http needs --user (or --http-credentials)');
  if (!h.user && (h.password !== undefined || h.passwordFile !== undefined)) throw usageError('--password and --password-file need --user');
  if (h.user && h.password === undefined && h.passwordFile === undefined) throw usageError('--http needs --password or --password-file');
  if (h.password !== undefined && h.passwordFile !== undefined) throw usageError('give --password or --password-file, not both');
  if (h.tlsKey !== undefined && h.tlsCert === undefined) throw usageError('--tls-key needs --tls-cert');
  return {
    listen: h.listen,
    user: h.user,
    password: h.password,
    passwordFile: h.passwordFile,
    credentialsFile: h.credentialsFile,
    tlsCert: h.tlsCert,
    tlsKey: h.tlsKey,
  };
}

async function target(argv: string[]): Promise<void> {
  const args = parseTargetArgs(argv);
  const spdk = await Spdk.start({
    engine: args.engine,
    cores: args.cores,
    polling: args.polling,
    rpcSocket: args.rpcSocket,
    config: args.config,
    noHuge: args.noHuge,
    memoryMiB: args.memoryMiB,
    pci: args.pci,
  });
  log(`engine ${spdk.engine} (${spdk.engineReason}), reactors on cores ${spdk.cores.join(',')}${args.polling ? ', polling' : ''}`);
  if (args.defaultBdev) {
    await spdk.rpc.call('bdev_malloc_create', { name: 'Malloc0', num_blocks: 16384, block_size: 4096 });
    if (args.nvmf !== undefined) await exportDefault(spdk, args.nvmf);
  }
  for (const b of (await spdk.rpc.call('bdev_get_bdevs')) as Array<{ name: string; product_name: string; num_blocks: number; block_size: number }>) {
    log(`bdev ${b.name}: ${b.product_name}, ${b.num_blocks} x ${b.block_size} B`);
  }
  log(`serving SPDK JSON-RPC on ${spdk.rpcSocket} (try: scripts/rpc.py -s ${spdk.rpcSocket} bdev_get_bdevs)`);
  if (args.http) {
    let httpServer: RpcHttpServer;
    try {
      httpServer = await spdk.serveRpcHttp(args.http);
    } catch (e) {
      await spdk.stop();
      throw e;
    }
    // The bound address (the real port when 0 was given); never the credentials.
    log(`serving SPDK JSON-RPC over ${httpServer.secure ? 'HTTPS' : 'HTTP'} on ${httpServer.url} (basic auth)`);
    for (const u of httpServer.users) {
      log(`HTTP user '${u.user}': ${u.view === undefined ? 'sees every NVMe-oF subsystem' : `sees the NVMe-oF subsystems named ${u.view}*`}`);
    }
  }
  let stopping = false;
  const stop = (sig: string): void => {
    if (stopping) return;
    stopping = true;
    log(`${sig}: stopping`);
    spdk.stop().then(
      () => {
        log('stopped');
        process.exitCode = 0;
      },
      (e) => {
        console.error(e);
        process.exitCode = 1;
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

/** Exports Malloc0 over NVMe/TCP, as an nvmf_tgt configured by hand would (a busy port is a warning). */
async function exportDefault(spdk: Spdk, listen: string): Promise<void> {
  const { host, port } = parseHostPort(listen);
  const nqn = 'nqn.2016-06.io.spdk:cnode1';
  try {
    await spdk.rpc.call('nvmf_create_transport', { trtype: 'TCP' });
    await spdk.rpc.call('nvmf_create_subsystem', { nqn, allow_any_host: true, serial_number: 'SPDK00000000000001', model_number: 'SPDK bdev Controller' });
    await spdk.rpc.call('nvmf_subsystem_add_ns', { nqn, namespace: { bdev_name: 'Malloc0' } });
    await spdk.rpc.call('nvmf_subsystem_add_listener', {
      nqn,
      listen_address: { trtype: 'TCP', adrfam: host.includes(':') ? 'IPv6' : 'IPv4', traddr: host, trsvcid: String(port) },
    });
    log(`NVMe/TCP: ${nqn} (Malloc0) on ${host}:${port} (try: nvme discover -t tcp -a ${host} -s ${port})`);
  } catch (e) {
    log(`NVMe/TCP export of Malloc0 not started: ${(e as Error).message}`);
  }
}

function log(msg: string): void {
  console.log(`[${new Date().toISOString()}] spdk-node: ${msg}`);
}

async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'target':
      await target(rest);
      break;
    case 'perf':
      try {
        process.exitCode = await perf(rest);
      } catch (e) {
        if (e instanceof SpdkError && e.code === 'ERR_HELP') {
          console.log(perfUsage);
          return;
        }
        throw e;
      }
      break;
    case 'setup':
      process.exitCode = await setup(rest);
      break;
    case undefined:
    case '--help':
    case '-h':
      console.log(usage);
      break;
    default:
      throw new SpdkError(`unknown command '${cmd}'\n${usage}`, { code: 'ERR_USAGE' });
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    console.error(`spdk-node: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(e instanceof SpdkError && e.code === 'ERR_USAGE' ? 2 : 1);
  });
}
