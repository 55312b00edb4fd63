import { expect } from 'chai';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';

const child = path.join(__dirname, 'helpers', 'exit-child.js');

function run(mode: string, nodeArgs: string[] = []): Promise<{ code: number | null; signal: string | null; ms: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const p = spawn(process.execPath, [...nodeArgs, child, mode], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), 15000);
    p.on('error', reject);
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, ms: Date.now() - t0, stderr });
    });
  });
}

describe('process exit (child processes)', function () {
  this.timeout(30000);

  const cases: Array<[string, number, string[]?]> = [
    ['stop', 0],
    ['exit', 0],
    ['exit-inflight', 0],
    ['unref', 0],
    ['throw', 1],
    ['gc-after-stop', 0, ['--expose-gc']],
  ];
  for (const [mode, code, args] of cases) {
    it(`${mode}: exits promptly with code ${code}, no crash`, async () => {
      const r = await run(mode, args);
      expect(r.signal, r.stderr).to.equal(null);
      expect(r.code, r.stderr).to.equal(code);
      expect(r.ms).to.be.below(10000);
      if (code === 0) expect(r.stderr).to.equal('');
    });
  }
});

describe('worker_threads', function () {
  this.timeout(30000);
  const script = path.join(__dirname, 'helpers', 'worker-child.js');

  it('two workers run engines side by side; one stops, one is terminated while running', async () => {
    const run = (core: number, stop: boolean): Promise<unknown> =>
      new Promise((resolve, reject) => {
        const w = new Worker(script, { workerData: { core, stop } });
        w.once('message', async (m) => {
          if (!stop) await w.terminate();
          resolve(m);
        });
        w.once('error', reject);
      });
    const [a, b] = await Promise.all([run(0, true), run(1, false)]);
    expect(a).to.equal(-1); // stopped: the buffer was released
    expect(b).to.equal(2); // read back what it wrote, then was terminated with the engine running
  });
});
