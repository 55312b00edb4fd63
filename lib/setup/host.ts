/**
 * The machine `spdk-node setup` works on: where /sys, /proc, /dev, /lib/modules and the state
 * file are, how a sysfs/procfs file is written and how a command (mount, modprobe) is run.
 *
 * Every path in lib/setup is written as the kernel names it ('/sys/bus/pci/drivers_probe') and
 * resolved under `root` here, so tests build a fake tree in a temporary directory and point
 * `root` at it. Writes and commands go through injectable functions: writing a plain file in a
 * fake tree rebinds nothing, so a test supplies a writer that plays the kernel's part.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFile } from 'node:child_process';
import { SpdkError } from '../errors';

export interface CommandResult {
  /** Exit status; null when the command could not be started or was killed. */
  status: number | null;
  stdout: string;
  stderr: string;
  /** Set when the command could not be started (ENOENT: not installed). */
  error?: NodeJS.ErrnoException;
}

/** Writes `data` to the file at `file` (a path already resolved under the root). */
export type FileWriter = (file: string, data: string) => void;
/** Runs a command (mount, umount, modprobe) and reports how it ended; never rejects. */
export type CommandRunner = (cmd: string, args: string[]) => Promise<CommandResult>;

/** One change to the machine, as `--dry-run` prints it. */
export type SetupAction =
  | { op: 'write'; path: string; data: string }
  | { op: 'run'; cmd: string; args: string[] }
  | { op: 'mkdir'; path: string }
  | { op: 'rmdir'; path: string }
  | { op: 'state'; path: string; remove: boolean };

export interface SetupOptions {
  /**
   * Test-only: the directory every absolute path is resolved under (default '/'). The CLI takes
   * it from SPDK_NODE_SETUP_ROOT.
   */
  root?: string;
  /** The state file (default /var/lib/spdk-node/setup.json), resolved under `root`. */
  stateFile?: string;
  /** Print (through onAction) and record every change instead of making it. */
  dryRun?: boolean;
  /** Called for every change, made or (dry run) not. */
  onAction?: (action: SetupAction) => void;
  /** Test-only: the effective uid (default process.getuid()). */
  uid?: number;
  /** Test-only: `uname -r` (default os.release()), for /lib/modules/<release>. */
  kernelRelease?: string;
  /** Test-only: how sysfs/procfs files are written (default one write(2) of the whole string). */
  writeFile?: FileWriter;
  /** Test-only: how mount, umount and modprobe are run (default the real commands). */
  run?: CommandRunner;
  /** How long to wait for the kernel to bind a driver after drivers_probe (default 5000 ms). */
  probeTimeoutMs?: number;
}

export const DEFAULT_STATE_FILE = '/var/lib/spdk-node/setup.json';

/**
 * One write(2) of the whole value: sysfs takes a store as one call, and a short write would
 * hand the kernel half a BDF.
 */
export const writeSysfs: FileWriter = (file, data) => {
  const fd = fs.openSync(file, 'w');
  try {
    const buf = Buffer.from(data);
    const n = fs.writeSync(fd, buf, 0, buf.length);
    if (n !== buf.length) throw Object.assign(new Error(`short write (${n} of ${buf.length} bytes)`), { code: 'EIO' });
  } finally {
    fs.closeSync(fd);
  }
};

export const runCommand: CommandRunner = (cmd, args) =>
  new Promise((resolve) => {
    execFile(cmd, args, { timeout: 60000 }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: unknown }) | null;
      if (e && typeof e.code === 'string') resolve({ status: null, stdout, stderr, error: e });
      else resolve({ status: e ? (typeof e.code === 'number' ? e.code : null) : 0, stdout, stderr });
    });
  });

/** Reads and, through the injected functions, changes one (real or fake) machine. */
export class Host {
  readonly root: string;
  readonly stateFile: string;
  readonly dryRun: boolean;
  readonly uid: number;
  readonly kernelRelease: string;
  readonly probeTimeoutMs: number;
  /** Every change made (or, dry run, that would have been made), in order. */
  readonly actions: SetupAction[] = [];
  private readonly writer: FileWriter;
  private readonly runner: CommandRunner;
  private readonly onAction?: (a: SetupAction) => void;

  constructor(o: SetupOptions = {}) {
    this.root = path.resolve(o.root ?? '/');
    this.stateFile = o.stateFile ?? DEFAULT_STATE_FILE;
    this.dryRun = o.dryRun ?? false;
    this.uid = o.uid ?? (process.getuid ? process.getuid() : 0);
    this.kernelRelease = o.kernelRelease ?? os.release();
    this.probeTimeoutMs = o.probeTimeoutMs ?? 5000;
    this.writer = o.writeFile ?? writeSysfs;
    this.runner = o.run ?? runCommand;
    this.onAction = o.onAction;
  }

  /** The real location of a kernel path. */
  p(kernelPath: string): string {
    return this.root === '/' ? kernelPath : path.join(this.root, kernelPath);
  }

  /** The kernel path of a real location (the inverse of p()). */
  unroot(real: string): string {
    if (this.root === '/') return real;
    const rel = path.relative(this.root, real);
    return rel.startsWith('..') ? real : `/${rel}`;
  }

  exists(kernelPath: string): boolean {
    return fs.existsSync(this.p(kernelPath));
  }

  /** The file's text without its trailing newline, or undefined when it cannot be read. */
  read(kernelPath: string): string | undefined {
    try {
      return fs.readFileSync(this.p(kernelPath), 'utf8').replace(/\n$/, '');
    } catch {
      return undefined;
    }
  }

  /** The file's value as an integer, or undefined. */
  readInt(kernelPath: string): number | undefined {
    const t = this.read(kernelPath)?.trim();
    if (t === undefined || !/^-?(0x[0-9a-fA-F]+|\d+)$/.test(t)) return undefined;
    return Number(t);
  }

  /** Directory entries, sorted; [] when it does not exist. */
  list(kernelPath: string): string[] {
    try {
      return fs.readdirSync(this.p(kernelPath)).sort();
    } catch {
      return [];
    }
  }

  /** The last component of a symlink's target (a driver's or a group's name), or undefined. */
  linkName(kernelPath: string): string | undefined {
    try {
      return path.basename(fs.readlinkSync(this.p(kernelPath)));
    } catch {
      return undefined;
    }
  }

  /** The kernel path with every symlink resolved, or undefined when it does not exist. */
  realpath(kernelPath: string): string | undefined {
    try {
      return this.unroot(fs.realpathSync(this.p(kernelPath)));
    } catch {
      return undefined;
    }
  }

  private act(a: SetupAction): boolean {
    this.actions.push(a);
    this.onAction?.(a);
    return !this.dryRun;
  }

  /** Writes a sysfs/procfs file; an error names the file and what the kernel said. */
  write(kernelPath: string, data: string, op: string): void {
    if (!this.act({ op: 'write', path: kernelPath, data })) return;
    try {
      this.writer(this.p(kernelPath), data);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new SpdkError(`writing ${JSON.stringify(data)} to ${kernelPath} failed: ${err.message}`, { code: err.code, errno: typeof err.errno === 'number' ? -err.errno : 0, op });
    }
  }

  async run(cmd: string, args: string[]): Promise<CommandResult> {
    if (!this.act({ op: 'run', cmd, args })) return { status: 0, stdout: '', stderr: '' };
    return this.runner(cmd, args);
  }

  mkdir(kernelPath: string): void {
    if (!this.act({ op: 'mkdir', path: kernelPath })) return;
    fs.mkdirSync(this.p(kernelPath), { recursive: true });
  }

  rmdir(kernelPath: string): void {
    if (!this.act({ op: 'rmdir', path: kernelPath })) return;
    fs.rmdirSync(this.p(kernelPath));
  }

  /** Replaces the state file atomically (temporary file + rename), or removes it. */
  writeState(text: string | undefined): void {
    if (!this.act({ op: 'state', path: this.stateFile, remove: text === undefined })) return;
    const file = this.p(this.stateFile);
    if (text === undefined) {
      fs.rmSync(file, { force: true });
      return;
    }
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, text);
    fs.renameSync(tmp, file);
  }

  readState(): string | undefined {
    try {
      return fs.readFileSync(this.p(this.stateFile), 'utf8');
    } catch {
      return undefined;
    }
  }

  /** Refuses to change the machine without root (a dry run changes nothing, so it may). */
  requireRoot(what: string): void {
    if (this.dryRun || this.uid === 0) return;
    throw new SpdkError(`${what} needs root: run it as root (sudo spdk-node setup ...); --status and --dry-run do not`, { code: 'EPERM', errno: 1, op: 'setup' });
  }
}

/** How an action reads in `--dry-run` output (and in the log of a real run). */
export function formatAction(a: SetupAction): string {
  switch (a.op) {
    case 'write':
      return `write ${JSON.stringify(a.data)} > ${a.path}`;
    case 'run':
      return `run ${[a.cmd, ...a.args].join(' ')}`;
    case 'mkdir':
      return `mkdir -p ${a.path}`;
    case 'rmdir':
      return `rmdir ${a.path}`;
    case 'state':
      return a.remove ? `remove state file ${a.path}` : `record state in ${a.path}`;
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
