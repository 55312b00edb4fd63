import * as os from 'node:os';

/**
 * The one error class of spdk-node. Native code creates it (through the addon's error helper),
 * TypeScript creates it for validation failures; both carry the same fields.
 *
 * - `errno`: a positive POSIX errno (ENODEV = 19, ...) when the failure has one, else 0.
 * - `code`: the errno's symbolic name (`'ENODEV'`) or a spdk-node code (`'ERR_INVALID_ARG'`).
 * - `op`: what was being done (`'bdev.read'`, `'bdev_malloc_create'`, ...).
 */
export class SpdkError extends Error {
  readonly code: string;
  readonly errno: number;
  readonly op: string;

  constructor(message: string, opts: { code?: string; errno?: number; op?: string } = {}) {
    super(message);
    this.name = 'SpdkError';
    this.errno = opts.errno ?? 0;
    this.code = opts.code ?? (this.errno ? errnoName(this.errno) : 'ERR_SPDK');
    this.op = opts.op ?? '';
  }

  /** An error for a POSIX errno with strerror-style text, as SPDK's spdk_strerror gives it. */
  static fromErrno(errno: number, op: string, message?: string): SpdkError {
    const e = Math.abs(errno);
    return new SpdkError(message ?? strerror(e), { errno: e, op });
  }

  static invalidArg(op: string, message: string): SpdkError {
    return new SpdkError(message, { code: 'ERR_INVALID_ARG', errno: 22, op });
  }
}

const errnoNames: Map<number, string> = new Map(
  Object.entries(os.constants.errno).map(([name, n]) => [n as number, name]),
);

export function errnoName(errno: number): string {
  return errnoNames.get(Math.abs(errno)) ?? `E${Math.abs(errno)}`;
}

// glibc's strerror texts (what SPDK's spdk_strerror returns) for the errnos the RPC layer
// reports; clients such as spdk-csi match these as substrings.
const strerrorTexts: Record<number, string> = {
  1: 'Operation not permitted',
  2: 'No such file or directory',
  5: 'Input/output error',
  9: 'Bad file descriptor',
  11: 'Resource temporarily unavailable',
  12: 'Cannot allocate memory',
  13: 'Permission denied',
  14: 'Bad address',
  16: 'Device or resource busy',
  17: 'File exists',
  19: 'No such device',
  20: 'Not a directory',
  21: 'Is a directory',
  22: 'Invalid argument',
  24: 'Too many open files',
  27: 'File too large',
  28: 'No space left on device',
  30: 'Read-only file system',
  34: 'Numerical result out of range',
  38: 'Function not implemented',
  61: 'No data available',
  71: 'Protocol error',
  75: 'Value too large for defined data type',
  95: 'Operation not supported',
  98: 'Address already in use',
  103: 'Software caused connection abort',
  104: 'Connection reset by peer',
  107: 'Transport endpoint is not connected',
  110: 'Connection timed out',
  111: 'Connection refused',
  114: 'Operation already in progress',
  115: 'Operation now in progress',
  125: 'Operation canceled',
};

/** glibc's strerror(errno) text for a positive or negative errno. */
export function strerror(errno: number): string {
  const e = Math.abs(errno);
  return strerrorTexts[e] ?? `Unknown error ${e}`;
}
