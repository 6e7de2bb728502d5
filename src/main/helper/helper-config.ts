import { readFile } from 'node:fs/promises';
import { parseCategoryRange, DEFAULT_CATEGORY_RANGE, type CategoryRange } from '../../labeling/policy-profile';
import { DEFAULT_PATH_POLICY, type PathPolicyConfig, type Requester } from '../labels/path-policy';
import { DEFAULT_STATE_DIR } from '../state/helper-state';
import { ajv, describeAjvError } from './protocol';

/**
 * The helper's settings: root-owned `/etc/svirt-manager/helper.json` on installed systems. The
 * environment may override the file's path and the state dir only when the helper was not started by
 * pkexec (pkexec clears the environment anyway; this keeps a user's env from steering a root process).
 */
export const HELPER_CONFIG_PATH = '/etc/svirt-manager/helper.json';

export interface HelperConfig {
  readonly stateDir: string;
  readonly pathPolicy: PathPolicyConfig;
  readonly categoryRange: CategoryRange;
  /** The unprivileged account qemu runs as (created on first use). */
  readonly qemuUser: string;
  /** Seconds an ACPI shutdown may take before the VM is forced off. */
  readonly shutdownTimeoutSeconds: number;
  /** Whether requesters may start VMs with `seclabel none` (qemu unconfined, in the helper's domain). */
  readonly allowSeclabelNone: boolean;
  /** The file these settings came from, for messages that tell an administrator what to change. */
  readonly configPath: string;
}

interface HelperConfigFile {
  pools?: string[];
  allowedBlockDevices?: string[];
  categoryRange?: string;
  qemuUser?: string;
  shutdownTimeoutSeconds?: number;
  allowSeclabelNone?: boolean;
}

const validateConfigFile = ajv.compile<HelperConfigFile>({
  type: 'object',
  additionalProperties: false,
  properties: {
    pools: { type: 'array', items: { type: 'string', pattern: '^/' } },
    allowedBlockDevices: { type: 'array', items: { type: 'string', pattern: '^/dev/' } },
    categoryRange: { type: 'string' },
    qemuUser: { type: 'string', pattern: '^[a-z_][a-z0-9_-]*$' },
    shutdownTimeoutSeconds: { type: 'integer', minimum: 1, maximum: 3600 },
    allowSeclabelNone: { type: 'boolean' },
  },
});

export async function loadHelperConfig(env: NodeJS.ProcessEnv = process.env): Promise<HelperConfig> {
  const trustEnv = env.PKEXEC_UID === undefined;
  const file = (trustEnv && env.SVIRT_HELPER_CONFIG) || HELPER_CONFIG_PATH;
  let parsed: HelperConfigFile = {};
  try {
    const value: unknown = JSON.parse(await readFile(file, 'utf8'));
    if (!validateConfigFile(value)) throw new Error(`${file}: ${describeAjvError(validateConfigFile)}`);
    parsed = value;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  return {
    stateDir: (trustEnv && env.SVIRT_STATE_DIR) || DEFAULT_STATE_DIR,
    pathPolicy: {
      pools: parsed.pools ?? DEFAULT_PATH_POLICY.pools,
      allowedBlockDevices: parsed.allowedBlockDevices ?? DEFAULT_PATH_POLICY.allowedBlockDevices,
    },
    categoryRange: parsed.categoryRange ? parseCategoryRange(parsed.categoryRange) : DEFAULT_CATEGORY_RANGE,
    qemuUser: parsed.qemuUser ?? 'svirt-qemu',
    shutdownTimeoutSeconds: parsed.shutdownTimeoutSeconds ?? 60,
    allowSeclabelNone: parsed.allowSeclabelNone ?? false,
    configPath: file,
  };
}

/** The home directory of a uid, from /etc/passwd. */
async function homeOf(uid: number): Promise<string | undefined> {
  const passwd = await readFile('/etc/passwd', 'utf8').catch(() => '');
  for (const line of passwd.split('\n')) {
    const f = line.split(':');
    if (f[2] === String(uid)) return f[5];
  }
  return undefined;
}

/** The helper was started in a way that names no requester it can trust: it must not run. */
export class RequesterError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RequesterError';
  }
}

/**
 * Whom this helper session acts for: pkexec's PKEXEC_UID, else the test launcher's SUDO_UID, else root
 * itself when root started it directly (neither variable set). Decided once at start; requests cannot
 * change it. A variable that is set but is not a uid fails closed: guessing root would hand a user's
 * session root's rights.
 */
export async function resolveRequester(env: NodeJS.ProcessEnv = process.env, processUid: number | undefined = process.getuid?.()): Promise<Requester> {
  let uid: number;
  const [name, raw] = env.PKEXEC_UID !== undefined ? ['PKEXEC_UID', env.PKEXEC_UID] : ['SUDO_UID', env.SUDO_UID];
  if (raw !== undefined) {
    if (!/^(0|[1-9][0-9]{0,9})$/.test(raw) || Number(raw) > 0xfffffffe) {
      throw new RequesterError(`${name} is ${JSON.stringify(raw)}, not a uid: refusing to guess whom to act for`);
    }
    uid = Number(raw);
  } else if (processUid === 0) {
    uid = 0;
  } else {
    throw new RequesterError('neither PKEXEC_UID nor SUDO_UID is set and this process is not root: refusing to guess whom to act for');
  }
  const home = await homeOf(uid);
  return home === undefined ? { uid } : { uid, home };
}
