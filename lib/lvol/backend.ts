import type { NativeEngine } from '../engine/native';
import type { LvolBackend, LvolBdevInfo, LvolClearMethod, LvstoreInfo } from '../engine/types';
import { SpdkError } from '../errors';

const EOPNOTSUPP = 95;

type LvolMethod =
  | 'createLvstore'
  | 'listLvstores'
  | 'deleteLvstore'
  | 'renameLvstore'
  | 'growLvstore'
  | 'createLvol'
  | 'deleteLvol'
  | 'resizeLvol'
  | 'setLvolReadOnly'
  | 'renameLvol'
  | 'snapshotLvol'
  | 'cloneLvol'
  | 'inflateLvol'
  | 'decoupleLvolParent';

/**
 * The control plane's view of the builtin engine's lvol stores (see LvolBackend). A native
 * method the addon does not have (yet) rejects with EOPNOTSUPP, which the RPC layer answers as
 * `-95 "Operation not supported"`; listing then reports no stores.
 */
export class BuiltinLvolBackend implements LvolBackend {
  constructor(private readonly native: NativeEngine) {}

  /** The native method, bound, or an EOPNOTSUPP SpdkError thrown when the addon lacks it. */
  private fn<K extends LvolMethod>(name: K, op: string): NonNullable<NativeEngine[K]> {
    const f = this.native[name];
    if (typeof f !== 'function') throw SpdkError.fromErrno(EOPNOTSUPP, op);
    return (f as (...args: unknown[]) => unknown).bind(this.native) as NonNullable<NativeEngine[K]>;
  }

  /** True when the addon implements `name` (tests and the RPC layer's "not yet" answers). */
  has(name: LvolMethod): boolean {
    return typeof this.native[name] === 'function';
  }

  async createLvstore(p: { bdevName: string; lvsName: string; clusterSize: number; clearMethod: LvolClearMethod }): Promise<LvstoreInfo> {
    return this.fn('createLvstore', 'bdev_lvol_create_lvstore')(p.bdevName, p.lvsName, p.clusterSize, p.clearMethod);
  }

  listLvstores(): LvstoreInfo[] {
    return this.has('listLvstores') ? this.fn('listLvstores', 'bdev_lvol_get_lvstores')() : [];
  }

  async deleteLvstore(uuid: string): Promise<void> {
    await this.fn('deleteLvstore', 'bdev_lvol_delete_lvstore')(uuid);
  }

  async renameLvstore(uuid: string, newName: string): Promise<void> {
    await this.fn('renameLvstore', 'bdev_lvol_rename_lvstore')(uuid, newName);
  }

  async growLvstore(uuid: string): Promise<void> {
    await this.fn('growLvstore', 'bdev_lvol_grow_lvstore')(uuid);
  }

  async createLvol(p: { lvsUuid: string; name: string; sizeBytes: number; thin: boolean; clearMethod: LvolClearMethod }): Promise<LvolBdevInfo> {
    return this.fn('createLvol', 'bdev_lvol_create')(p.lvsUuid, p.name, p.sizeBytes, p.thin, p.clearMethod, undefined);
  }

  listLvols(): LvolBdevInfo[] {
    return this.native.listBdevs().filter((b): b is LvolBdevInfo => b.driver === 'lvol');
  }

  findLvol(nameOrAlias: string): LvolBdevInfo | undefined {
    const b = this.native.findBdev(nameOrAlias);
    return b !== undefined && b.driver === 'lvol' ? (b as LvolBdevInfo) : undefined;
  }

  async deleteLvol(bdevName: string): Promise<void> {
    await this.fn('deleteLvol', 'bdev_lvol_delete')(bdevName);
  }

  async resizeLvol(bdevName: string, sizeBytes: number): Promise<void> {
    await this.fn('resizeLvol', 'bdev_lvol_resize')(bdevName, sizeBytes);
  }

  async setLvolReadOnly(bdevName: string): Promise<void> {
    await this.fn('setLvolReadOnly', 'bdev_lvol_set_read_only')(bdevName);
  }

  async renameLvol(bdevName: string, newName: string): Promise<void> {
    await this.fn('renameLvol', 'bdev_lvol_rename')(bdevName, newName);
  }

  async snapshotLvol(bdevName: string, snapshotName: string): Promise<LvolBdevInfo> {
    return this.fn('snapshotLvol', 'bdev_lvol_snapshot')(bdevName, snapshotName);
  }

  async cloneLvol(snapshotBdevName: string, cloneName: string): Promise<LvolBdevInfo> {
    return this.fn('cloneLvol', 'bdev_lvol_clone')(snapshotBdevName, cloneName);
  }

  async inflateLvol(bdevName: string): Promise<void> {
    await this.fn('inflateLvol', 'bdev_lvol_inflate')(bdevName);
  }

  async decoupleLvolParent(bdevName: string): Promise<void> {
    await this.fn('decoupleLvolParent', 'bdev_lvol_decouple_parent')(bdevName);
  }
}
