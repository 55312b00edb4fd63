// Run by test/libspdk-engine.test.ts in a child process (one SPDK per process: DPDK's environment
// cannot start twice). argv[2] is JSON: { mode, start } where `start` are the Spdk.start options.
// Every report is one stdout line "@@<json>" (SPDK and DPDK print their own lines too).
//
// Modes:
//   serve     start, report { started }, then run the async function bodies the parent sends on
//             stdin (one JSON { id, code } per line, `spdk` in scope), reporting { id, result } or
//             { id, error }; at the end of stdin stop and report { stopped }, and let the loop end.
//   exit      start, then process.exit(0) with SPDK running.
//   unref     start, spdk.unref(), and let the loop end with SPDK running.
//   sigterm   start with a SIGTERM handler that reports { sigterm }, stops, reports { stopped }.
//   restart   start, stop, start again: report the second start's error.
//   fail      start (expected to fail): report the error, SPDK's threads and CPU use after it.
import * as fs from 'node:fs';
import * as readline from 'node:readline';
import { Spdk, SpdkOptions } from '../../lib';

function emit(o: unknown): void {
  process.stdout.write(`@@${JSON.stringify(o)}\n`);
}

function errorJson(e: unknown): Record<string, unknown> {
  const err = e as { name?: string; code?: unknown; errno?: unknown; message?: string };
  return { name: err.name, code: err.code, errno: err.errno, message: err.message };
}

/** The names of this process's threads (/proc/self/task/<tid>/comm). */
export function threadNames(): string[] {
  return fs.readdirSync('/proc/self/task').map((t) => {
    try {
      return fs.readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim();
    } catch {
      return '';
    }
  });
}

/** CPU time of this process (user + system), in clock ticks. */
function cpuTicks(): number {
  const f = fs.readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ');
  return Number(f[11]) + Number(f[12]);
}

async function started(opts: SpdkOptions): Promise<Spdk> {
  const spdk = await Spdk.start(opts);
  emit({ started: true, engine: spdk.engine, reason: spdk.engineReason, rpcSocket: spdk.rpcSocket, pid: process.pid, threads: threadNames() });
  return spdk;
}

const AsyncFunction = Object.getPrototypeOf(async () => undefined).constructor as new (...args: string[]) => (...a: unknown[]) => Promise<unknown>;

async function main(): Promise<void> {
  const { mode, start } = JSON.parse(process.argv[2]) as { mode: string; start: SpdkOptions };
  switch (mode) {
    case 'serve': {
      const spdk = await started(start);
      const ctx: Record<string, unknown> = {};
      const rl = readline.createInterface({ input: process.stdin });
      for await (const line of rl) {
        const { id, code } = JSON.parse(line) as { id: number; code: string };
        try {
          const result = await new AsyncFunction('spdk', 'ctx', 'require', code)(spdk, ctx, require);
          emit({ id, result: result === undefined ? null : result });
        } catch (e) {
          emit({ id, error: errorJson(e) });
        }
      }
      await spdk.stop();
      emit({ stopped: true, threads: threadNames() });
      break;
    }
    case 'exit':
      await started(start);
      process.exit(0);
      break;
    case 'unref':
      (await started(start)).unref();
      break;
    case 'sigterm': {
      // The handler is in place before SPDK starts (and stays: the parent may signal at once).
      let spdk: Spdk | undefined;
      process.on('SIGTERM', () => {
        emit({ sigterm: true });
        void spdk?.stop().then(() => {
          emit({ stopped: true });
          process.removeAllListeners('SIGTERM');
        });
      });
      spdk = await started(start);
      break;
    }
    case 'restart': {
      const spdk = await started(start);
      await spdk.stop();
      try {
        await Spdk.start(start);
        emit({ error: null });
      } catch (e) {
        emit({ error: errorJson(e) });
      }
      break;
    }
    case 'fail': {
      try {
        await Spdk.start(start);
        emit({ error: null });
      } catch (e) {
        const t0 = cpuTicks();
        await new Promise((r) => setTimeout(r, 1000));
        emit({ error: errorJson(e), threads: threadNames(), cpuTicksPerSecond: cpuTicks() - t0 });
      }
      break;
    }
    default:
      throw new Error(`unknown mode ${mode}`);
  }
}

main().catch((e) => {
  emit({ fatal: errorJson(e) });
  process.exit(3);
});
