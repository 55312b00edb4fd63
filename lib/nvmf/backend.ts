import type {
  NativeEngine,
  NvmfControllerInfo,
  NvmfQpairInfo,
  NvmfStats,
  NvmfSubsystemDesc,
  NvmfTransportOpts,
} from '../engine/native';
import { SpdkError } from '../errors';

const EOPNOTSUPP = 95;

/**
 * What the NVMe-oF control plane needs from an engine's target: the data path mirrors the
 * configuration the RPC layer keeps (lib/nvmf/target.ts). Every method throws an SpdkError with
 * a positive errno on failure, having changed nothing.
 */
export interface NvmfBackend {
  createTransport(opts: NvmfTransportOpts): void;
  /** Creates a subsystem or replaces its whole configuration (see NativeEngine.nvmfSetSubsystem). */
  setSubsystem(desc: NvmfSubsystemDesc): void;
  deleteSubsystem(nqn: string): Promise<void>;
  listen(traddr: string, trsvcid: string): void;
  stopListen(traddr: string, trsvcid: string): void;
  controllers(nqn: string): NvmfControllerInfo[];
  qpairs(nqn: string): NvmfQpairInfo[];
  stats(): NvmfStats;
}

type NvmfMethod =
  | 'nvmfCreateTransport'
  | 'nvmfSetSubsystem'
  | 'nvmfDeleteSubsystem'
  | 'nvmfListen'
  | 'nvmfStopListen'
  | 'nvmfControllers'
  | 'nvmfQpairs'
  | 'nvmfStats';

/**
 * The builtin engine's NVMe/TCP target (native/builtin/nvmf). A native method the addon does not
 * have (yet) throws EOPNOTSUPP, which the RPC layer answers as `-95 "Operation not supported"`.
 */
export class BuiltinNvmfBackend implements NvmfBackend {
  constructor(private readonly native: NativeEngine) {}

  private fn<K extends NvmfMethod>(name: K, op: string): NativeEngine[K] {
    const f = (this.native as Partial<NativeEngine>)[name];
    if (typeof f !== 'function') throw SpdkError.fromErrno(EOPNOTSUPP, op, 'the engine has no NVMe-oF target');
    return (f as (...args: unknown[]) => unknown).bind(this.native) as NativeEngine[K];
  }

  /** True when the addon has the NVMe-oF target. */
  get available(): boolean {
    return typeof (this.native as Partial<NativeEngine>).nvmfSetSubsystem === 'function';
  }

  createTransport(opts: NvmfTransportOpts): void {
    this.fn('nvmfCreateTransport', 'nvmf_create_transport')(opts);
  }

  setSubsystem(desc: NvmfSubsystemDesc): void {
    this.fn('nvmfSetSubsystem', 'nvmf.setSubsystem')(desc);
  }

  async deleteSubsystem(nqn: string): Promise<void> {
    await this.fn('nvmfDeleteSubsystem', 'nvmf_delete_subsystem')(nqn);
  }

  listen(traddr: string, trsvcid: string): void {
    this.fn('nvmfListen', 'nvmf.listen')(traddr, trsvcid);
  }

  stopListen(traddr: string, trsvcid: string): void {
    this.fn('nvmfStopListen', 'nvmf.stopListen')(traddr, trsvcid);
  }

  controllers(nqn: string): NvmfControllerInfo[] {
    return this.fn('nvmfControllers', 'nvmf_subsystem_get_controllers')(nqn);
  }

  qpairs(nqn: string): NvmfQpairInfo[] {
    return this.fn('nvmfQpairs', 'nvmf_subsystem_get_qpairs')(nqn);
  }

  stats(): NvmfStats {
    return this.fn('nvmfStats', 'nvmf_get_stats')();
  }
}
