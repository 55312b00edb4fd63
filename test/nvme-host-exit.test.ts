/**
 * Process exit with NVMe controllers connected and commands in flight, on queue pairs owned by
 * the JS thread and by a reactor: process.exit(), an uncaught exception, stop(), GC after stop().
 * Each child must exit promptly with the right code and no crash (test/helpers/nvme-exit-child.ts).
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import * as path from 'node:path';

const child = path.join(__dirname, 'helpers', 'nvme-exit-child.js');

function run(mode: string, owner: string, nodeArgs: string[] = []): Promise<{ code: number | null; signal: string | null; ms: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const p = spawn(process.execPath, [...nodeArgs, child, mode, owner], { stdio: ['ignore', 'ignore', 'pipe'] });
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

describe('process exit with the NVMe host busy (child processes)', function () {
  this.timeout(30000);
  for (const owner of ['js', 'reactor']) {
    for (const [mode, code, args] of [
      ['exit', 0],
      ['throw', 1],
      ['stop', 0],
      ['gc-after-stop', 0, ['--expose-gc']],
    ] as Array<[string, number, string[]?]>) {
      it(`${mode}, owner ${owner}: exits promptly with code ${code}, no crash`, async () => {
        const r = await run(mode, owner, args);
        expect(r.signal, r.stderr).to.equal(null);
        expect(r.code, r.stderr).to.equal(code);
        expect(r.ms).to.be.below(10000);
        if (code === 0) expect(r.stderr).to.equal('');
        else expect(r.stderr).to.match(/thrown with I\/O in flight/);
      });
    }
  }
});
