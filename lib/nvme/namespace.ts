import type { NamespaceData } from './identify';

/**
 * An active namespace of a controller, as Identify Namespace described it when the controller
 * was connected (or last reset).
 *
 * @example
 * const ns = ctrlr.namespace(1);
 * console.log(ns.sectorSize, ns.numSectors, ns.uuid);
 */
export class NvmeNamespace {
  /** The namespace ID (NSID). */
  readonly id: number;
  /** Bytes per logical block of the format in use. */
  readonly sectorSize: number;
  /** Size in logical blocks (NSZE). */
  readonly numSectors: number;
  /** Size in bytes (exact up to 2^53). */
  readonly size: number;
  readonly uuid: string | undefined;
  readonly nguid: string | undefined;
  readonly eui64: string | undefined;
  /** Identify Namespace, decoded. */
  readonly data: NamespaceData;

  /** @internal */
  constructor(data: NamespaceData) {
    this.id = data.nsid;
    this.data = data;
    this.sectorSize = data.sectorSize;
    this.numSectors = data.nsze;
    this.size = data.nsze * data.sectorSize;
    this.uuid = data.uuid;
    this.nguid = data.nguid;
    this.eui64 = data.eui64;
  }

  /** Same as `id`. */
  get nsid(): number {
    return this.id;
  }
}
