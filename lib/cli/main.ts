#!/usr/bin/env node
/**
 * The `spdk-node` command.
 *
 *   spdk-node target [--rpc-socket PATH] [--cores 0,1] [--engine auto|builtin|libspdk]
 *                    [--polling] [--no-default-bdev]
 *
 * `target` starts an embedded storage target: an engine serving SPDK's JSON-RPC on a Unix socket
 * (SPDK's default /var/tmp/spdk.sock), so SPDK's scripts/rpc.py drives it unchanged. With no
 * configuration it creates one malloc bdev (Malloc0, 64 MiB, 4 KiB blocks). SIGINT/SIGTERM stop
 * it cleanly.
 */
import { Spdk } from '../spdk';
import { SpdkError } from '../errors';
import type { EngineChoice } from '../engine/load';

interface TargetArgs {
  rpcSocket: string;
  cores: number[];
  engine: EngineChoice;
  polling: boolean;
  defaultBdev: boolean;
}

const usage = `usage: spdk-node target [options]
  --rpc-socket PATH   JSON-RPC Unix socket (default /var/tmp/spdk.sock)
  --cores LIST        reactor cores, e.g. 0 or 0,1 (default 0)
  --engine NAME       auto | builtin | libspdk (default auto)
  --polling           busy-poll reactors (benchmarks); default sleeps when idle
  --no-default-bdev   do not create Malloc0`;

export function parseTargetArgs(argv: string[]): TargetArgs {
  const a: TargetArgs = { rpcSocket: '/var/tmp/spdk.sock', cores: [0], engine: 'auto', polling: false, defaultBdev: true };
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
      case '--no-default-bdev':
        a.defaultBdev = false;
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
  return a;
}

async function target(argv: string[]): Promise<void> {
  const args = parseTargetArgs(argv);
  const spdk = await Spdk.start({ engine: args.engine, cores: args.cores, polling: args.polling, rpcSocket: args.rpcSocket });
  log(`engine ${spdk.engine} (${spdk.engineReason}), reactors on cores ${spdk.cores.join(',')}${args.polling ? ', polling' : ''}`);
  if (args.defaultBdev) {
    await spdk.rpc.call('bdev_malloc_create', { name: 'Malloc0', num_blocks: 16384, block_size: 4096 });
  }
  for (const b of (await spdk.rpc.call('bdev_get_bdevs')) as Array<{ name: string; product_name: string; num_blocks: number; block_size: number }>) {
    log(`bdev ${b.name}: ${b.product_name}, ${b.num_blocks} x ${b.block_size} B`);
  }
  log(`serving SPDK JSON-RPC on ${spdk.rpcSocket} (try: scripts/rpc.py -s ${spdk.rpcSocket} bdev_get_bdevs)`);
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

function log(msg: string): void {
  console.log(`[${new Date().toISOString()}] spdk-node: ${msg}`);
}

async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'target':
      await target(rest);
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
