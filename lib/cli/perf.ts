/**
 * `spdk-node perf`: SPDK's spdk_nvme_perf, with its flags and its output, driven by TypeScript.
 *
 *   spdk-node perf -q 32 -o 4096 -w randread -t 10 -r 'trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:4420 subnqn:nqn.2016-06.io.spdk:cnode1'
 *
 * Every I/O is chosen (offset, read or write) and submitted by this file through the public
 * batch API of NvmeQpair (submitRead/submitWrite, reap into a preallocated ring): there is no
 * native workload loop, so the numbers are what a JavaScript application gets. Like
 * spdk_nvme_perf: one queue pair per namespace (`-P` for more), one buffer per outstanding I/O,
 * uniform random offsets (xorshift) or sequential ones wrapping at the end, `-M` percent reads
 * for rw/randrw, latency from submission to completion. Latencies are taken once per batch (the
 * time the batch was submitted and the time its completions were seen), which is when this
 * thread could act on them.
 */
import { performance } from 'node:perf_hooks';
import { spawnSync } from 'node:child_process';
import { Spdk } from '../spdk';
import { SpdkError } from '../errors';
import type { SpdkBuffer } from '../buffer';
import { NvmeController, NvmeNamespace, NvmeQpair, QpairOwner, normalizeTransportId, ResolvedTransportId, statusName } from '../nvme';

export const perfUsage = `usage: spdk-node perf -q DEPTH -o BYTES -w PATTERN -t SECONDS -r TRID [options]
  -q, --io-depth N        commands outstanding per queue pair
  -o, --io-size BYTES     bytes per I/O (a multiple of the sector size)
  -w, --io-pattern P      read | write | randread | randwrite | rw | randrw
  -M, --rwmixread PCT     reads in percent for rw and randrw (0-100)
  -t, --time SECONDS      how long to run
  -r, --transport TRID    a controller, in SPDK's transport ID form; repeatable; add ns:N for one
                          namespace, else every active namespace is used
  -c, --core-mask MASK    cores: 0x3 or [0,1]. With owner js the process is pinned to the first
                          (taskset); with owner reactor the queue pairs go round robin over reactors
                          on these cores
  -P, --num-qpairs N      queue pairs per namespace (default 1)
  -H, --enable-tcp-hdgst  NVMe/TCP header digest
  -I, --enable-tcp-ddgst  NVMe/TCP data digest
      --owner js|reactor  who owns the queue pairs (default js: the JS thread polls its sockets)
      --engine builtin|libspdk  the NVMe host: the builtin engine's NVMe/TCP host (default), or SPDK's
                          own NVMe driver (TCP, RDMA, PCIe) with the installed SPDK; owner js only
      --hostnqn NQN       host NQN
      --no-progress       no per-second progress lines on stderr`;

export interface PerfArgs {
  depth: number;
  ioSize: number;
  pattern: 'read' | 'write' | 'rw';
  random: boolean;
  /** Reads in percent. */
  readPct: number;
  seconds: number;
  trids: ResolvedTransportId[];
  cores: number[];
  coresGiven: boolean;
  qpairsPerNs: number;
  headerDigest: boolean;
  dataDigest: boolean;
  owner: QpairOwner;
  engine: 'builtin' | 'libspdk';
  hostnqn?: string;
  progress: boolean;
}

function usageError(msg: string): SpdkError {
  return new SpdkError(`${msg}\n${perfUsage}`, { code: 'ERR_USAGE' });
}

function parseIntArg(flag: string, v: string, min: number, max: number): number {
  if (!/^\d+$/.test(v)) throw usageError(`${flag} needs an integer, not '${v}'`);
  const n = Number(v);
  if (n < min || n > max) throw usageError(`${flag} must be ${min}..${max}`);
  return n;
}

/** SPDK's core mask forms: hexadecimal (0x3, 3) or a list ([0,1], [0-3]). */
export function parseCoreMask(v: string): number[] {
  const cores: number[] = [];
  const list = /^\[([\d,\-\s]+)\]$/.exec(v);
  if (list) {
    for (const part of list[1].split(',')) {
      const m = /^\s*(\d+)\s*(?:-\s*(\d+))?\s*$/.exec(part);
      if (!m) throw usageError(`invalid core list '${v}'`);
      const a = Number(m[1]);
      const b = m[2] === undefined ? a : Number(m[2]);
      if (b < a || b > 1023) throw usageError(`invalid core range '${part.trim()}'`);
      for (let c = a; c <= b; c++) if (!cores.includes(c)) cores.push(c);
    }
  } else {
    const m = /^(?:0x)?([0-9a-fA-F]+)$/.exec(v);
    if (!m) throw usageError(`invalid core mask '${v}' (0x3 or [0,1])`);
    const mask = BigInt(`0x${m[1]}`);
    for (let c = 0; c < 1024; c++) if ((mask >> BigInt(c)) & 1n) cores.push(c);
  }
  if (cores.length === 0) throw usageError(`core mask '${v}' selects no core`);
  return cores;
}

export function parsePerfArgs(argv: string[]): PerfArgs {
  let depth: number | undefined;
  let ioSize: number | undefined;
  let pattern: string | undefined;
  let mix: number | undefined;
  let seconds: number | undefined;
  const trids: ResolvedTransportId[] = [];
  let cores = [0];
  let coresGiven = false;
  let qpairsPerNs = 1;
  let headerDigest = false;
  let dataDigest = false;
  let owner: QpairOwner = 'js';
  let engine: 'builtin' | 'libspdk' = 'builtin';
  let hostnqn: string | undefined;
  let progress = true;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw usageError(`${a} needs a value`);
      return v;
    };
    switch (a) {
      case '-q':
      case '--io-depth':
        depth = parseIntArg(a, value(), 1, 65535);
        break;
      case '-o':
      case '--io-size':
        ioSize = parseIntArg(a, value(), 1, 1 << 30);
        break;
      case '-w':
      case '--io-pattern':
        pattern = value();
        break;
      case '-M':
      case '--rwmixread':
        mix = parseIntArg(a, value(), 0, 100);
        break;
      case '-t':
      case '--time':
        seconds = parseIntArg(a, value(), 1, 86400);
        break;
      case '-r':
      case '--transport': {
        const v = value();
        try {
          trids.push(normalizeTransportId(v, { anyTransport: true }));
        } catch (e) {
          throw usageError(`-r '${v}': ${(e as Error).message}`);
        }
        break;
      }
      case '-c':
      case '--core-mask':
        cores = parseCoreMask(value());
        coresGiven = true;
        break;
      case '-P':
      case '--num-qpairs':
        qpairsPerNs = parseIntArg(a, value(), 1, 256);
        break;
      case '-H':
      case '--enable-tcp-hdgst':
        headerDigest = true;
        break;
      case '-I':
      case '--enable-tcp-ddgst':
        dataDigest = true;
        break;
      case '--owner': {
        const v = value();
        if (v !== 'js' && v !== 'reactor') throw usageError(`--owner must be js or reactor, not '${v}'`);
        owner = v;
        break;
      }
      case '--engine': {
        const v = value();
        if (v !== 'builtin' && v !== 'libspdk') throw usageError(`--engine must be builtin or libspdk, not '${v}'`);
        engine = v;
        break;
      }
      case '--hostnqn':
        hostnqn = value();
        break;
      case '--no-progress':
        progress = false;
        break;
      case '-h':
      case '--help':
        throw new SpdkError(perfUsage, { code: 'ERR_HELP' });
      default:
        throw usageError(`unknown option '${a}'`);
    }
  }
  if (depth === undefined) throw usageError('missing -q (queue depth)');
  if (ioSize === undefined) throw usageError('missing -o (I/O size)');
  if (pattern === undefined) throw usageError('missing -w (I/O pattern)');
  if (seconds === undefined) throw usageError('missing -t (time in seconds)');
  if (trids.length === 0) throw usageError('missing -r (transport ID)');
  let random = false;
  let base = pattern;
  if (base.startsWith('rand')) {
    random = true;
    base = base.slice(4);
  }
  let readPct: number;
  if (base === 'read' || base === 'write') {
    if (mix !== undefined) process.stderr.write('Ignoring -M (--rwmixread) option... Please use -M option only when using rw or randrw.\n');
    readPct = base === 'read' ? 100 : 0;
  } else if (base === 'rw') {
    if (mix === undefined) throw usageError('-M (--rwmixread) must be specified to value from 0 to 100 for rw or randrw.');
    readPct = mix;
  } else {
    throw usageError('-w (--io-pattern) io pattern type must be one of\n(read, write, randread, randwrite, rw, randrw)');
  }
  if (engine === 'builtin' && trids.some((t) => t.trtype !== 'TCP')) throw usageError("PCIe and RDMA controllers need --engine libspdk (the builtin host speaks NVMe/TCP)");
  return { depth, ioSize, pattern: base as 'read' | 'write' | 'rw', random, readPct, seconds, trids, cores, coresGiven, qpairsPerNs, headerDigest, dataDigest, owner, engine, hostnqn, progress };
}

/** spdk_nvme_build_name: `TCP (addr:127.0.0.1 subnqn:nqn...)`, plus ` NSID n` for a namespace. */
function deviceName(tr: ResolvedTransportId, nsid?: number): string {
  return `TCP (addr:${tr.traddr} subnqn:${tr.subnqn})${nsid === undefined ? '' : ` NSID ${nsid}`}`;
}

/** One queue pair's workload: its own buffers, offsets and statistics. */
class Job {
  ios = 0;
  errors = 0;
  firstError = 0;
  totalUs = 0;
  minUs = Infinity;
  maxUs = 0;
  private readonly ring: Int32Array;
  private readonly submitted: Float64Array;
  private readonly isRead: Uint8Array;
  private readonly bufs: SpdkBuffer[];
  private readonly blocks: number;
  private readonly sizeInIos: number;
  private seq = 0;
  private x: number;
  private running = true;
  private now = 0;
  private windowEnd = Infinity;

  constructor(
    readonly name: string,
    readonly core: number,
    readonly qp: NvmeQpair,
    readonly ns: NvmeNamespace,
    private readonly a: PerfArgs,
    bufs: SpdkBuffer[],
    seed: number,
  ) {
    this.bufs = bufs;
    this.ring = new Int32Array(2 * a.depth);
    this.submitted = new Float64Array(a.depth);
    this.isRead = new Uint8Array(a.depth);
    this.blocks = a.ioSize / ns.sectorSize;
    this.sizeInIos = Math.floor(ns.numSectors / this.blocks);
    this.x = seed >>> 0 || 1;
  }

  /** xorshift32 */
  private rand(): number {
    let x = this.x;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.x = x;
    return x >>> 0;
  }

  private submit(tag: number): void {
    let off: number;
    if (this.a.random) {
      off = this.sizeInIos > 4294967296 ? ((this.rand() & 0x1fffff) * 4294967296 + this.rand()) % this.sizeInIos : this.rand() % this.sizeInIos;
    } else {
      off = this.seq++;
      if (this.seq === this.sizeInIos) this.seq = 0;
    }
    const pct = this.a.readPct;
    const read = pct === 100 || (pct !== 0 && this.rand() % 100 < pct);
    this.isRead[tag] = read ? 1 : 0;
    this.submitted[tag] = this.now;
    if (read) this.qp.submitRead(this.ns, this.bufs[tag], off * this.blocks, this.blocks, tag);
    else this.qp.submitWrite(this.ns, this.bufs[tag], off * this.blocks, this.blocks, tag);
  }

  stop(at: number): void {
    this.running = false;
    this.windowEnd = at;
  }

  async run(): Promise<void> {
    const depth = this.a.depth;
    const ring = this.ring;
    this.now = performance.now();
    for (let t = 0; t < depth; t++) this.submit(t);
    while (this.running || this.qp.outstanding > 0 || this.qp.prepared > 0) {
      const n = await this.qp.reap(ring);
      const now = performance.now();
      this.now = now;
      const counted = now <= this.windowEnd;
      for (let i = 0; i < n; i++) {
        const tag = ring[2 * i];
        const status = ring[2 * i + 1];
        if (status !== 0) {
          if (this.errors++ === 0) this.firstError = status;
        } else if (counted) {
          const us = (now - this.submitted[tag]) * 1000;
          this.ios++;
          this.totalUs += us;
          if (us < this.minUs) this.minUs = us;
          if (us > this.maxUs) this.maxUs = us;
        }
        if (this.running && status === 0) this.submit(tag);
      }
      if (n === 0 && this.qp.outstanding === 0 && this.qp.prepared === 0) break;
    }
  }
}

const fmt = (n: number): string => n.toFixed(2).padStart(10);

/** Re-runs this command under `taskset -c CORES` once (owner js: the JS thread runs there). */
function pinned(a: PerfArgs): boolean {
  if (!a.coresGiven || a.owner !== 'js' || process.env.SPDK_NODE_PERF_PINNED) return false;
  const r = spawnSync('taskset', ['-c', String(a.cores[0]), process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, SPDK_NODE_PERF_PINNED: '1' },
  });
  if (r.error) throw new SpdkError(`cannot pin to core ${a.cores[0]} with taskset: ${r.error.message}`, { errno: 2, op: 'perf' });
  process.exitCode = r.status ?? 1;
  return true;
}

export async function perf(argv: string[], out: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): Promise<number> {
  const a = parsePerfArgs(argv);
  if (pinned(a)) return process.exitCode as number;
  if (a.owner === 'js' && a.cores.length > 1) process.stderr.write(`owner js: one JS thread drives every queue pair; it runs on core ${a.cores[0]}\n`);
  // libspdk with owner js: SPDK's reactor shares the JS thread's core, so it runs in interrupt mode
  // (it sleeps: nothing is scheduled on it; the JS thread polls the queue pairs). With owner
  // reactor its reactors poll the queue pairs on their cores, as spdk_nvme_perf's threads do.
  const cores = a.owner === 'reactor' ? a.cores : [a.cores[0]];
  const spdk =
    a.engine === 'libspdk'
      ? await Spdk.start({ engine: 'libspdk', cores, interruptMode: a.owner === 'js', logLevel: 'error' })
      : await Spdk.start({ engine: 'builtin', cores });
  const ctrlrs: NvmeController[] = [];
  const jobs: Job[] = [];
  try {
    out('Initializing NVMe Controllers');
    for (const tr of a.trids) {
      const c = await spdk.nvme.connect(tr, { headerDigest: a.headerDigest, dataDigest: a.dataDigest, hostnqn: a.hostnqn, ioQueues: 1024 });
      ctrlrs.push(c);
      out(`Attached to NVMe-oF Controller at ${deviceName(tr)}`);
      const nss = tr.ns !== undefined ? [c.namespace(tr.ns)] : c.namespaces();
      for (const ns of nss) {
        if (a.ioSize % ns.sectorSize !== 0) {
          process.stderr.write(`WARNING: controller ${deviceName(tr)} ns ${ns.id} has invalid ns size ${ns.size} / block size ${ns.sectorSize} for I/O size ${a.ioSize}\n`);
          continue;
        }
        if (c.maxTransferSize !== 0 && a.ioSize > c.maxTransferSize) {
          process.stderr.write(`WARNING: I/O size ${a.ioSize} is above the controller's maximum transfer size ${c.maxTransferSize}; skipping ${deviceName(tr, ns.id)}\n`);
          continue;
        }
        if (Math.floor(ns.numSectors / (a.ioSize / ns.sectorSize)) === 0) {
          process.stderr.write(`WARNING: ${deviceName(tr, ns.id)} is smaller than one I/O; skipping\n`);
          continue;
        }
        for (let p = 0; p < a.qpairsPerNs; p++) {
          const reactor = a.owner === 'reactor' ? jobs.length % a.cores.length : undefined;
          const qp = await c.allocQpair({ depth: a.depth, owner: a.owner, reactor });
          const bufs = Array.from({ length: a.depth }, () => spdk.allocBuffer(a.ioSize));
          for (const b of bufs) b.bytes.fill(0x5a);
          const core = a.owner === 'reactor' ? a.cores[reactor as number] : a.cores[0];
          const name = deviceName(tr, ns.id);
          out(`Associating ${name} with lcore ${core}`);
          jobs.push(new Job(name, core, qp, ns, a, bufs, 0x9e3779b9 ^ (jobs.length * 7919 + 1)));
        }
      }
    }
    if (jobs.length === 0) throw new SpdkError('no valid NVMe namespaces to run the workload on', { errno: 19, op: 'perf' });
    out('Initialization complete. Launching workers.');

    const start = performance.now();
    const runs = jobs.map((j) => j.run());
    const end = start + a.seconds * 1000;
    let progressTimer: NodeJS.Timeout | undefined;
    if (a.progress) {
      let lastIos = 0;
      let lastT = start;
      progressTimer = setInterval(() => {
        const t = performance.now();
        const ios = jobs.reduce((s, j) => s + j.ios, 0);
        const iops = ((ios - lastIos) * 1000) / (t - lastT);
        process.stderr.write(`[${((t - start) / 1000).toFixed(0).padStart(String(a.seconds).length)}/${a.seconds} s] ${iops.toFixed(0)} IOPS, ${((iops * a.ioSize) / 1048576).toFixed(2)} MiB/s\n`);
        lastIos = ios;
        lastT = t;
      }, 1000);
    }
    await new Promise((r) => setTimeout(r, Math.max(0, end - performance.now())));
    const stopAt = performance.now();
    for (const j of jobs) j.stop(stopAt);
    if (progressTimer) clearInterval(progressTimer);
    await Promise.all(runs);
    const elapsedUs = (stopAt - start) * 1000;

    const names = jobs.map((j) => j.name);
    const w = Math.max(...names.map((n) => n.length));
    out('========================================================');
    out(`${' '.repeat(Math.max(0, w + 60 - 'Latency(us)'.length))}Latency(us)`);
    out(`${'Device Information'.padEnd(w + 13)}: ${['IOPS', 'MiB/s', 'Average', 'min', 'max'].map((s) => s.padStart(10)).join(' ')}`);
    let tIops = 0;
    let tMib = 0;
    let tIos = 0;
    let tUs = 0;
    let tMin = Infinity;
    let tMax = 0;
    for (const j of jobs) {
      if (j.ios === 0) continue;
      const iops = (j.ios * 1e6) / elapsedUs;
      const mib = (iops * a.ioSize) / 1048576;
      out(`${j.name.padEnd(w)} from core ${String(j.core).padStart(2)}: ${fmt(iops)} ${fmt(mib)} ${fmt(j.totalUs / j.ios)} ${fmt(j.minUs)} ${fmt(j.maxUs)}`);
      tIops += iops;
      tMib += mib;
      tIos += j.ios;
      tUs += j.totalUs;
      tMin = Math.min(tMin, j.minUs);
      tMax = Math.max(tMax, j.maxUs);
    }
    if (tIos > 0) {
      out('========================================================');
      out(`${'Total'.padEnd(w + 13)}: ${fmt(tIops)} ${fmt(tMib)} ${fmt(tUs / tIos)} ${fmt(tMin)} ${fmt(tMax)}`);
      out('');
    }
    const calls = jobs.reduce((s, j) => s + j.qp.nativeCalls, 0);
    const wakes = jobs.reduce((s, j) => s + j.qp.wakeups, 0);
    const all = jobs.reduce((s, j) => s + j.ios + j.errors, 0);
    out(`N-API calls per I/O: ${((calls + wakes) / Math.max(1, all)).toFixed(4)} (JS->native ${calls}, native->JS wake-ups ${wakes}, ${all} I/Os; owner ${a.owner})`);
    const errors = jobs.reduce((s, j) => s + j.errors, 0);
    if (errors > 0) {
      const first = jobs.find((j) => j.errors > 0) as Job;
      process.stderr.write(`${errors} I/O(s) completed with error; first: ${statusName(first.firstError)} (status ${first.firstError})\n`);
      return 1;
    }
    return 0;
  } finally {
    await Promise.all(ctrlrs.map((c) => c.detach().catch(() => undefined)));
    await spdk.stop();
  }
}
