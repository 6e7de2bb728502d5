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
}

interface HelperConfigFile {
  pools?: string[];
  allowedBlockDevices?: string[];
  categoryRange?: string;
  qemuUser?: string;
  shutdownTimeoutSeconds?: number;
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

/**
 * Whom this helper session acts for: pkexec's PKEXEC_UID, the test launcher's SUDO_UID, or the uid
 * that started it directly (root). Decided once at start; requests cannot change it.
 */
export async function resolveRequester(env: NodeJS.ProcessEnv = process.env): Promise<Requester> {
  const raw = env.PKEXEC_UID ?? env.SUDO_UID;
  const uid = raw !== undefined && /^\d+$/.test(raw) ? Number(raw) : (process.getuid?.() ?? 0);
  const home = await homeOf(uid);
  return home === undefined ? { uid } : { uid, home };
}
