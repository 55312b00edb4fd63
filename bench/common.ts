/** Pieces every benchmark script shares: arguments, pinning, JS-thread CPU time, the batch I/O loop. */
import { spawn, spawnSync, ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { BdevHandle, SpdkBuffer } from '../lib';
import { RpcClient } from '../lib/rpc';

export function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

export function jsThreadCpuNs(): number {
  // First field: time on CPU in ns, for the main thread only (tid == pid).
  return Number(fs.readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]);
}

export interface RunResult {
  ios: number;
  seconds: number;
  jsCpuNs: number;
  nativeCalls: number;
}

/** Uniform random block numbers in [0, blocks), deterministic per seed (xorshift32). */
export function rng(seed: number, blocks: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % blocks;
  };
}

/**
 * The batch path at queue depth `qd` for `ms` milliseconds: each completion re-prepares its slot
 * with a new I/O (`next()` picks the block), one submit per batch of completions.
 */
export async function runBatch(bdev: BdevHandle, buf: SpdkBuffer, write: boolean, qd: number, ms: number, reactor: 0 | 'js', next: () => number, bs = 4096): Promise<RunResult> {
  const q = await bdev.openQueue({ depth: qd, reactor });
  let ios = 0;
  let stopping = false;
  const cpu0 = jsThreadCpuNs();
  const t0 = process.hrtime.bigint();
  await new Promise<void>((resolve) => {
    // One JS call per completion, no allocation: re-prepare the slot's I/O, submit per batch.
    q.onComplete = (tag) => {
      ios++;
      if (!stopping) {
        if (write) q.prepWrite(buf, next(), 1, tag * bs);
        else q.prepRead(buf, next(), 1, tag * bs);
      }
    };
    q.onBatchEnd = () => {
      if (!stopping) q.submit();
      else if (q.inFlight === 0) resolve();
    };
    setTimeout(() => {
      stopping = true;
    }, ms);
    for (let i = 0; i < qd; i++) {
      if (write) q.prepWrite(buf, next(), 1, i * bs);
      else q.prepRead(buf, next(), 1, i * bs);
    }
    q.submit();
  });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const r = { ios, seconds, jsCpuNs: jsThreadCpuNs() - cpu0, nativeCalls: q.nativeCalls };
  await q.close();
  return r;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Re-runs this script under `taskset -c 0` (JS thread and Node's threads on core 0) once. */
export function pinToCore0(): void {
  if (process.env.SPDK_NODE_BENCH_PINNED) return;
  const r = spawnSync('taskset', ['-c', '0', process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, SPDK_NODE_BENCH_PINNED: '1' },
  });
  process.exit(r.status ?? 1);
}

/** A TCP port nobody listens on now (bind 127.0.0.1:0, read, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = (s.address() as net.AddressInfo);
      s.close(() => resolve(port));
    });
  });
}

/** An NVMe/TCP target a benchmark drives: its process, port, and how to stop it. */
export interface BenchTarget {
  proc: ChildProcess;
  port: number;
  stop(): Promise<void>;
}

/** Target processes still running, for the benchmarks' signal handlers. */
export const benchChildren = new Set<ChildProcess>();

export interface BenchTargetOptions {
  /** builtin: `spdk-node target`; spdk: SPDK's nvmf_tgt at `nvmfTgt`. */
  side: 'builtin' | 'spdk';
  nvmfTgt: string;
  /** Names the socket and log files. */
  tag: string;
  nqn: string;
  serialNumber: string;
  modelNumber: string;
  bdevBytes: number;
  blockSize: number;
}

/**
 * Starts a target under `taskset -c 1` (busy-polling core 1), waits for its JSON-RPC socket and
 * exports a malloc bdev as namespace 1 of `nqn` on 127.0.0.1 with SPDK's default TCP transport.
 */
export async function startBenchTarget(o: BenchTargetOptions): Promise<BenchTarget> {
  const socket = path.join(os.tmpdir(), `spdk-node-bench-${o.tag}-${o.side}-${process.pid}.sock`);
  fs.rmSync(socket, { force: true });
  const argv =
    o.side === 'builtin'
      ? [process.execPath, path.join(__dirname, '..', 'lib', 'cli', 'main.js'), 'target', '--engine', 'builtin', '--cores', '1', '--polling', '--no-default-bdev', '--rpc-socket', socket]
      : // -u: no PCI probing (Debian's DPDK would probe the VM's NIC); no lock file, so another
        // SPDK app on this machine holding core 1's lock does not stop the benchmark.
        [o.nvmfTgt, '--no-huge', '-s', '1024', '-m', '0x2', '-u', '--disable-cpumask-locks', '-r', socket];
  // Output to a file, not a pipe: the initiators run synchronously, and a full pipe would stall the target.
  const logPath = `${socket}.log`;
  const logFd = fs.openSync(logPath, 'w');
  const proc = spawn('taskset', ['-c', '1', ...argv], { stdio: ['ignore', logFd, logFd] });
  fs.closeSync(logFd);
  benchChildren.add(proc);
  const log = (): string => fs.readFileSync(logPath, 'utf8');
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGCONT'); // it may be frozen between runs
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
    benchChildren.delete(proc);
    fs.rmSync(socket, { force: true });
    fs.rmSync(logPath, { force: true });
  };
  const deadline = Date.now() + 30000;
  let client: RpcClient | undefined;
  while (!client) {
    if (proc.exitCode !== null) throw new Error(`${o.side} target exited early (${proc.exitCode}):\n${log()}`);
    try {
      const c = await RpcClient.connect(socket);
      await c.call('spdk_get_version');
      client = c;
    } catch {
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`${o.side} target did not answer on ${socket} within 30 s:\n${log()}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const port = await freePort();
  try {
    await client.call('bdev_malloc_create', { name: 'Malloc0', num_blocks: o.bdevBytes / o.blockSize, block_size: o.blockSize });
    await client.call('nvmf_create_transport', { trtype: 'TCP' });
    await client.call('nvmf_create_subsystem', { nqn: o.nqn, allow_any_host: true, serial_number: o.serialNumber, model_number: o.modelNumber });
    await client.call('nvmf_subsystem_add_ns', { nqn: o.nqn, namespace: { bdev_name: 'Malloc0' } });
    await client.call('nvmf_subsystem_add_listener', { nqn: o.nqn, listen_address: { trtype: 'TCP', adrfam: 'IPv4', traddr: '127.0.0.1', trsvcid: String(port) } });
  } catch (e) {
    await client.close();
    const text = log();
    await stop();
    throw new Error(`${o.side} target: configuration failed: ${(e as Error).message}\n${text}`);
  }
  await client.close();
  return { proc, port, stop };
}
