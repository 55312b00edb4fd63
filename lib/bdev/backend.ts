import type { NativeEngine } from '../engine/native';
import type { BdevBackend, BdevInfo, BdevStats, FileBdevParams, MallocBdevParams } from '../engine/types';
import { SpdkError } from '../errors';

/** The control plane's view of the builtin engine's bdevs (see BdevBackend). */
export class BuiltinBdevBackend implements BdevBackend {
  /** aio bdevs' `fallocate` flag by UUID: a reporting detail the native layer does not keep. */
  private readonly fallocate = new Map<string, boolean>();

  constructor(private readonly native: NativeEngine) {}

  createMallocBdev(p: MallocBdevParams): BdevInfo {
    return this.native.createMallocBdev(p.name, p.numBlocks, p.blockSize, p.uuid);
  }

  createFileBdev(p: FileBdevParams): BdevInfo {
    const info = this.native.createFileBdev(p.name, p.filename, p.blockSize, p.readOnly, p.driver, p.uuid);
    if (p.driver === 'aio') this.fallocate.set(info.uuid, p.fallocate ?? false);
    return this.withReporting(info);
  }

  async deleteBdev(name: string, driver: string): Promise<void> {
    this.native.deleteBdev(name, driver);
  }

  rescanFileBdev(name: string, driver: 'aio' | 'uring'): void {
    this.native.rescanFileBdev(name, driver);
  }

  listBdevs(): BdevInfo[] {
    return this.native.listBdevs().map((b) => this.withReporting(b));
  }

  findBdev(nameOrAlias: string): BdevInfo | undefined {
    const b = this.native.findBdev(nameOrAlias);
    return b === undefined ? undefined : this.withReporting(b);
  }

  removals(): number {
    return this.native.bdevRemovals();
  }

  bdevStats(name: string): BdevStats {
    try {
      return this.native.bdevStats(name);
    } catch (e) {
      throw e instanceof SpdkError ? e : SpdkError.fromErrno(19, 'bdev_get_iostat');
    }
  }

  private withReporting(b: BdevInfo): BdevInfo {
    if (b.driver === 'aio') b.driverSpecific.fallocate = this.fallocate.get(b.uuid) ?? false;
    return b;
  }

  tickRate(): number {
    // Latency counters are in nanoseconds (CLOCK_MONOTONIC).
    return 1_000_000_000;
  }
}
