import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as crypto from 'node:crypto';

/** A fresh directory under the OS temp dir, removed by the returned cleanup. */
export function tempDir(prefix = 'spdk-node-test-'): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** A Unix socket path no other test uses. */
export function uniqueSocketPath(tag = 'rpc'): string {
  return path.join(os.tmpdir(), `spdk-node-${tag}-${process.pid}-${crypto.randomBytes(4).toString('hex')}.sock`);
}

/** Deterministic xorshift32 numbers in [0, 1), so a failing case can be replayed from its seed. */
export function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

/** Deterministic pseudo-random bytes (xorshift32) so a failing pattern can be reproduced. */
export function fillPattern(bytes: Uint8Array, seed: number): void {
  let x = seed >>> 0 || 1;
  for (let i = 0; i < bytes.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
}

export function randomInt(max: number): number {
  return Math.floor(Math.random() * max);
}
