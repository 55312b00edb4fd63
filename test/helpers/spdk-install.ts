import { execFileSync, spawn, ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { libspdkUnavailableReason } from '../../lib/engine/load';
import { RpcClient } from '../../lib/rpc';

/**
 * Finding an SPDK installed on this machine for interop and differential tests (never part of
 * the project: SPDK is built by hand, see README "What is verified where"). Looks in SPDK_DIR
 * (build/bin, bin, build/examples), then the prefix pkg-config reports for spdk_nvme, then PATH.
 */
export function findSpdkBinary(name: string): string | undefined {
  const dirs: string[] = [];
  if (process.env.SPDK_DIR) dirs.push(...['build/bin', 'bin', 'build/examples'].map((d) => path.join(process.env.SPDK_DIR as string, d)));
  try {
    const prefix = execFileSync('pkg-config', ['--variable=prefix', 'spdk_nvme'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
    if (prefix) dirs.push(path.join(prefix, 'bin'));
  } catch {
    // no SPDK known to pkg-config
  }
  dirs.push(...(process.env.PATH ?? '').split(':').filter(Boolean));
  for (const d of dirs) {
    const p = path.join(d, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

/** The line a skipped interop suite prints. */
export function skipLine(what: string): string {
  return `skipped: ${what} not found (build SPDK v25.09 and install it where pkg-config finds it, or set SPDK_DIR)`;
}

export interface SpdkProcess {
  proc: ChildProcess;
  socket: string;
  client: RpcClient;
  log: () => string;
  stop: () => Promise<void>;
}

/**
 * Starts an SPDK app (spdk_tgt, nvmf_tgt) on its own socket, without hugepages, on one core, and
 * waits until its RPC server answers. stop() kills it by pid and waits for it to exit: an SPDK
 * reactor polls its core at 100 %.
 */
export async function startSpdkApp(binary: string, socket: string, args: string[] = []): Promise<SpdkProcess> {
  // -u (no PCI): Debian's DPDK would otherwise probe this machine's own virtio NIC. No core lock
  // files: another SPDK on this machine (another suite, a benchmark) may be using core 1 too.
  const lockless = args.includes('--disable-cpumask-locks') ? [] : ['--disable-cpumask-locks'];
  const proc = spawn(binary, ['--no-huge', '-s', '1024', '-m', '0x2', '-u', ...lockless, '-r', socket, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout?.on('data', (d) => (out += d));
  proc.stderr?.on('data', (d) => (out += d));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
    fs.rmSync(socket, { force: true });
  };
  const deadline = Date.now() + 20000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`${binary} exited early (${proc.exitCode}):\n${out}`);
    try {
      const client = await RpcClient.connect(socket);
      await client.call('spdk_get_version');
      return { proc, socket, client, log: () => out, stop };
    } catch {
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`${binary} did not answer on ${socket} within 20 s:\n${out}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/**
 * In a suite's before(): skips it with one line where the libspdk engine is unavailable; with
 * CI=true and an SPDK installed, that is a failure instead (the engine should have been built).
 */
export function requireLibspdk(ctx: Mocha.Context, suite: string): void {
  const why = libspdkUnavailableReason();
  if (why === undefined) return;
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const probe = require(path.join(__dirname, '..', '..', '..', 'spdk', 'probe.js')) as { probe: () => { found: boolean } };
  if (process.env.CI === 'true' && probe.probe().found) throw new Error(`CI: SPDK is installed but the libspdk engine is unavailable: ${why}`);
  console.log(`    ${suite} skipped: ${why}`);
  ctx.skip();
}
