/**
 * A child process running an SPDK (test/helpers/libspdk-child.ts): DPDK's environment starts once
 * per process and SPDK's reactors spin at 100 %, so every libspdk start is a child that the test
 * stops, or kills by pid at the end. Used by test/libspdk-engine.test.ts and test/libspdk-nvme.test.ts.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';
import * as readline from 'node:readline';
import type { SpdkOptions } from '../../lib';

const CHILD = path.join(__dirname, 'libspdk-child.js');

export type Report = Record<string, unknown> & { id?: number; error?: { name: string; code: unknown; message: string } | null };

/** One child process running an SPDK; reports are the "@@" lines it prints. */
export class SpdkChild {
  readonly proc: ChildProcess;
  readonly reports: Report[] = [];
  output = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }>;
  private readonly t0 = Date.now();
  private waiters: Array<() => void> = [];
  private nextId = 1;

  constructor(mode: string, start: SpdkOptions) {
    this.proc = spawn(process.execPath, [CHILD, JSON.stringify({ mode, start })], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, signal) => resolve({ code, signal, ms: Date.now() - this.t0 })));
    this.proc.stderr?.on('data', (d) => (this.output += d));
    readline.createInterface({ input: this.proc.stdout! }).on('line', (line) => {
      this.output += `${line}\n`;
      if (!line.startsWith('@@')) return;
      this.reports.push(JSON.parse(line.slice(2)) as Report);
      for (const w of this.waiters.splice(0)) w();
    });
    this.proc.on('exit', () => {
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** The first report matching `pred`; rejects with the child's output if it exits or stalls first. */
  async report(pred: (r: Report) => boolean, ms = 30000): Promise<Report> {
    const end = Date.now() + ms;
    for (;;) {
      const r = this.reports.find(pred);
      if (r) return r;
      const fatal = this.reports.find((x) => x.fatal);
      if (fatal || this.proc.exitCode !== null || this.proc.signalCode !== null || Date.now() > end) {
        throw new Error(`child gave no such report (exit ${this.proc.exitCode}, ${this.proc.signalCode}):\n${this.output}`);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(0, end - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  started(): Promise<Report> {
    return this.report((r) => r.started === true);
  }

  /** Runs an async function body in the child (`spdk` and a shared `ctx` in scope); resolves with its JSON result. */
  async run(code: string): Promise<unknown> {
    const id = this.nextId++;
    this.proc.stdin!.write(`${JSON.stringify({ id, code })}\n`);
    const r = await this.report((x) => x.id === id, 60000);
    if (r.error) throw Object.assign(new Error(r.error.message), r.error);
    return r.result;
  }

  /** Ends stdin (the child stops SPDK and exits by itself); resolves with the exit. */
  async finish(): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }> {
    this.proc.stdin!.end();
    return this.exited;
  }

  /** Last resort: the reactors spin at 100% until the process is gone. */
  kill(): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null && this.proc.pid !== undefined) {
      try {
        process.kill(this.proc.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

