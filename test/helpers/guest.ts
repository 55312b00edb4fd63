import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * The QEMU guest that long tests boot to use the Linux kernel's NVMe/TCP initiator against the
 * builtin target (this machine's own kernel has no nvme-tcp). scripts/guest/build-guest.sh makes
 * it from Debian packages into a cache directory outside the repository; nothing here downloads
 * or installs anything.
 */

export const REPO = path.resolve(__dirname, '..', '..', '..');
export const GUEST_SCRIPTS = path.join(REPO, 'scripts', 'guest');
export const GUEST_DIR = process.env.SPDK_NODE_GUEST_DIR ?? '/var/cache/spdk-node/guest';
/** The first line of the guest's answer on its serial console. */
export const RESULT_TAG = 'SPDK-NODE-GUEST-RESULT ';

export interface GuestImage {
  qemu: string;
  kernel: string;
  initrd: string;
  root: string;
  /** What build-guest.sh recorded (kernel and nvme-cli versions). */
  info: string;
}

function onPath(name: string): string | undefined {
  for (const d of (process.env.PATH ?? '').split(':').filter(Boolean).concat(['/usr/bin', '/usr/local/bin'])) {
    const p = path.join(d, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

/** The guest and QEMU, or why they are not here (one line, with how to get them). */
export function findGuest(): GuestImage | string {
  const how = 'run scripts/guest/build-guest.sh --install-tools (as root; .ci/run does)';
  const qemu = onPath('qemu-system-x86_64');
  if (!qemu) return `skipped: qemu-system-x86_64 not found: ${how}`;
  const files = { kernel: 'vmlinuz', initrd: 'initrd.img', root: 'root.img', stamp: 'stamp' };
  for (const f of Object.values(files)) {
    if (!fs.existsSync(path.join(GUEST_DIR, f))) return `skipped: no guest image in ${GUEST_DIR} (${f} missing): ${how}`;
  }
  let info = '';
  try {
    info = fs.readFileSync(path.join(GUEST_DIR, 'info'), 'utf8').trim();
  } catch {
    // older image without info
  }
  return { qemu, kernel: path.join(GUEST_DIR, files.kernel), initrd: path.join(GUEST_DIR, files.initrd), root: path.join(GUEST_DIR, files.root), info };
}

/**
 * TCG (software emulation) unless SPDK_NODE_GUEST_ACCEL=kvm and /dev/kvm opens. TCG is the
 * default because it boots this guest in about 10 s and works everywhere, while nested KVM (as on
 * the VMs this project runs on) can hang the guest's early boot or fail on CPU MSRs.
 */
export function guestAccel(): 'kvm' | 'tcg' {
  if (process.env.SPDK_NODE_GUEST_ACCEL !== 'kvm') return 'tcg';
  try {
    fs.closeSync(fs.openSync('/dev/kvm', 'r+'));
    return 'kvm';
  } catch {
    return 'tcg';
  }
}

export interface GuestRun {
  /** Everything the guest printed on its serial console (and QEMU on stderr). */
  console: string;
  /** The JSON of the result line, or undefined when the guest printed none. */
  result?: Record<string, unknown>;
  exitCode: number | null;
  timedOut: boolean;
  seconds: number;
  accel: 'kvm' | 'tcg';
}

/**
 * Boots the guest with `share` as its 9p share (tag spdknode): the guest's init runs the share's
 * run.sh and powers off. The root image is used with snapshot=on, so nothing in the cache
 * changes. Resolves when QEMU exits, or kills it (by pid) after timeoutMs.
 */
export function bootGuest(img: GuestImage, share: string, timeoutMs: number, onLine?: (line: string) => void): Promise<GuestRun> {
  const accel = guestAccel();
  const args = [
    '-nodefaults',
    '-no-user-config',
    '-display', 'none',
    '-serial', 'stdio',
    '-monitor', 'none',
    '-no-reboot',
    '-accel', accel,
    '-cpu', accel === 'kvm' ? 'host' : 'max',
    '-m', '1024',
    '-smp', '1',
    '-kernel', img.kernel,
    '-initrd', img.initrd,
    '-append', 'console=ttyS0 root=/dev/vda rw init=/sbin/spdk-node-guest-init panic=-1 loglevel=4 net.ifnames=0',
    '-drive', `file=${img.root},format=raw,if=virtio,snapshot=on`,
    '-netdev', 'user,id=n0',
    '-device', 'virtio-net-pci,netdev=n0',
    '-virtfs', `local,path=${share},mount_tag=spdknode,security_model=none,id=share0`,
  ];
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const proc = spawn(img.qemu, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let pending = '';
    let timedOut = false;
    const take = (d: Buffer): void => {
      const s = d.toString('utf8');
      out += s;
      if (!onLine) return;
      pending += s;
      const lines = pending.split(/\r?\n/);
      pending = lines.pop() ?? '';
      for (const l of lines) onLine(l);
    };
    proc.stdout.on('data', take);
    proc.stderr.on('data', take);
    const timer = setTimeout(() => {
      timedOut = true;
      proc.kill('SIGKILL');
    }, timeoutMs);
    proc.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    proc.once('close', (code) => {
      clearTimeout(timer);
      const console = out.replace(/\r/g, '');
      const line = console.split('\n').find((l) => l.startsWith(RESULT_TAG));
      let result: Record<string, unknown> | undefined;
      if (line) {
        try {
          result = JSON.parse(line.slice(RESULT_TAG.length)) as Record<string, unknown>;
        } catch {
          result = { ok: false, step: 'parse', detail: `unparsable result line: ${line}` };
        }
      }
      resolve({ console, result, exitCode: code, timedOut, seconds: (Date.now() - started) / 1000, accel });
    });
  });
}

/** The version of the QEMU binary (for the test's log line). */
export function qemuVersion(qemu: string): string {
  try {
    return execFileSync(qemu, ['--version']).toString().split('\n')[0].trim();
  } catch {
    return 'unknown';
  }
}
