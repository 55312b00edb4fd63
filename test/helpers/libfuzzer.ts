/**
 * Runs test/fuzz/run.sh (the libFuzzer campaign on the NVMe/TCP codec and the builtin target)
 * for the test suites: a short pass in `npm test`, a longer one in `npm run test:long`.
 * clang is a test-only tool: without it the suites skip with one line, except under CI=true
 * (.ci/run installs it), where its absence is a failure.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '../../..');

/** Why the fuzz targets cannot be built here, or undefined. */
export function libFuzzerUnavailable(): string | undefined {
  const found = ['clang++', 'clang++-14'].some((c) => spawnSync('sh', ['-c', `command -v ${c}`]).status === 0);
  if (found) return undefined;
  return 'clang++ not found: the libFuzzer pass needs Debian\'s clang and libclang-rt-14-dev (test-only; .ci/run installs them)';
}

/** Skips the suite (or fails it under CI=true) when clang is missing. */
export function requireLibFuzzer(ctx: Mocha.Context): void {
  const why = libFuzzerUnavailable();
  if (!why) return;
  if (process.env.CI === 'true') throw new Error(`CI=true: ${why}`);
  console.log(`      skipped: ${why}`);
  ctx.skip();
}

export interface CampaignResult {
  /** Per target: executions and the coverage at start and end. */
  targets: Map<string, { runs: number; covStart: number; covEnd: number }>;
  output: string;
}

/** Runs both targets for `seconds` each in a fresh directory; throws with the log on a finding. */
export function runCampaign(seconds: number): CampaignResult {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spdk-node-fuzz-'));
  try {
    const r = spawnSync('bash', ['test/fuzz/run.sh', '--seconds', String(seconds), '--dir', dir], { cwd: ROOT, encoding: 'utf8', timeout: (seconds * 2 + 240) * 1000 });
    const output = `${r.stdout}${r.stderr}`;
    if (r.status !== 0) {
      const logs = ['nvme_tcp_codec_fuzz', 'nvmf_target_fuzz'].map((n) => path.join(dir, `${n}.log`)).filter((f) => fs.existsSync(f)).map((f) => fs.readFileSync(f, 'utf8').split('\n').slice(-60).join('\n'));
      throw new Error(`test/fuzz/run.sh exited ${r.status ?? r.signal}:\n${output}\n${logs.join('\n----\n')}`);
    }
    const targets = new Map<string, { runs: number; covStart: number; covEnd: number }>();
    for (const name of ['nvme_tcp_codec_fuzz', 'nvmf_target_fuzz']) {
      const log = fs.readFileSync(path.join(dir, `${name}.log`), 'utf8');
      const inited = /INITED cov: (\d+)/.exec(log);
      const covs = [...log.matchAll(/cov: (\d+)/g)];
      const runs = /stat::number_of_executed_units: (\d+)/.exec(log);
      expect(inited, `${name}: libFuzzer started`).to.not.equal(null);
      targets.set(name, { runs: Number(runs?.[1] ?? 0), covStart: Number(inited![1]), covEnd: Number(covs[covs.length - 1][1]) });
    }
    return { targets, output };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
