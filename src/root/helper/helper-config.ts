import { readFile } from 'node:fs/promises';
import { parseCategoryRange, DEFAULT_CATEGORY_RANGE, type CategoryRange } from '../../core/selinux/policy-profile';
import { checkPathSyntax, DEFAULT_PATH_POLICY, type PathPolicyConfig, type Requester } from '../../host/path-policy';
import { DEFAULT_STATE_DIR } from '../state/helper-state';
import { checkIdRangeFree, DEFAULT_VM_ID_RANGE, parseIdRange, type IdRange } from '../state/vm-ids';
import { ajv, describeAjvError } from '../../contracts/helper-protocol';

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
  /** The uids/gids given to running VMs, one each (see state/vm-ids.ts). */
  readonly vmIdRange: IdRange;
  /** Seconds an ACPI shutdown may take before the VM is forced off. */
  readonly shutdownTimeoutSeconds: number;
  /** Whether requesters may start VMs with `seclabel none` (qemu unconfined, in the helper's domain). */
  readonly allowSeclabelNone: boolean;
  /** The file these settings came from, for messages that tell an administrator what to change. */
  readonly configPath: string;
}

interface PoolConfigFile {
  path: string;
  users?: string[];
  groups?: string[];
  shared?: boolean;
}

interface DeviceConfigFile {
  device?: string;
  volumeGroup?: string;
  users?: string[];
  groups?: string[];
}

interface HelperConfigFile {
  pools?: PoolConfigFile[];
  devices?: DeviceConfigFile[];
  /** The old setting: refused with a pointer to `devices` (it named paths and nobody in particular). */
  allowedBlockDevices?: string[];
  categoryRange?: string;
  /** Ignored: qemu no longer runs as one shared account (each VM gets an id from vmIdRange). */
  qemuUser?: string;
  vmIdRange?: string;
  shutdownTimeoutSeconds?: number;
  allowSeclabelNone?: boolean;
}

const NAME_LIST = { type: 'array', items: { type: 'string', pattern: '^[A-Za-z0-9_.][A-Za-z0-9_.-]*[$]?$' } } as const;

const validateConfigFile = ajv.compile<HelperConfigFile>({
  type: 'object',
  additionalProperties: false,
  properties: {
    pools: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['path'],
        properties: {
          path: { type: 'string', pattern: '^/' },
          users: NAME_LIST,
          groups: NAME_LIST,
          shared: { type: 'boolean' },
        },
      },
    },
    devices: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        properties: {
          device: { type: 'string', pattern: '^/dev/' },
          // LVM's own rule for VG names.
          volumeGroup: { type: 'string', pattern: '^[A-Za-z0-9+_.][A-Za-z0-9+_.-]*$', maxLength: 127 },
          users: NAME_LIST,
          groups: NAME_LIST,
        },
      },
    },
    allowedBlockDevices: { type: 'array', items: { type: 'string' } },
    categoryRange: { type: 'string' },
    qemuUser: { type: 'string', pattern: '^[a-z_][a-z0-9_-]*$' },
    vmIdRange: { type: 'string' },
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
    const pools = (value as { pools?: unknown } | null)?.pools;
    const plain = Array.isArray(pools) ? pools.findIndex((p) => typeof p === 'string') : -1;
    if (plain >= 0) {
      throw new Error(`${file}: pools[${plain}] is a plain path; a pool is now {"path": …, "users": […], "groups": […], "shared": false} and names who may use it (see the README)`);
    }
    if (!validateConfigFile(value)) throw new Error(`${file}: ${describeAjvError(validateConfigFile)}`);
    if (value.allowedBlockDevices !== undefined) {
      throw new Error(`${file}: allowedBlockDevices is replaced by devices, which names who may use each device: [{"device": "/dev/sdb", "users": […], "groups": […]}] or [{"volumeGroup": "vg0", …}] (see the README)`);
    }
    for (const [i, grant] of (value.devices ?? []).entries()) {
      if ((grant.device === undefined) === (grant.volumeGroup === undefined)) {
        throw new Error(`${file}: devices[${i}] names one "device" or one "volumeGroup"`);
      }
      try {
        if (grant.device !== undefined) checkPathSyntax(grant.device);
      } catch (err) {
        throw new Error(`${file}: devices[${i}].device: ${(err as Error).message}`, { cause: err });
      }
    }
    for (const [i, pool] of (value.pools ?? []).entries()) {
      try {
        checkPathSyntax(pool.path);
      } catch (err) {
        throw new Error(`${file}: pools[${i}].path: ${(err as Error).message}`, { cause: err });
      }
    }
    parsed = value;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  let vmIdRange = DEFAULT_VM_ID_RANGE;
  try {
    if (parsed.vmIdRange !== undefined) vmIdRange = parseIdRange(parsed.vmIdRange);
    await checkIdRangeFree(vmIdRange);
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message}`, { cause: err });
  }
  return {
    stateDir: (trustEnv && env.SVIRT_STATE_DIR) || DEFAULT_STATE_DIR,
    pathPolicy: {
      pools: parsed.pools?.map((p) => ({ path: p.path.replace(/(.)\/+$/, '$1'), users: p.users ?? [], groups: p.groups ?? [], shared: p.shared ?? false })) ?? DEFAULT_PATH_POLICY.pools,
      devices: parsed.devices?.map((d) => ({ ...(d.device ? { device: d.device } : { volumeGroup: d.volumeGroup }), users: d.users ?? [], groups: d.groups ?? [] })) ?? DEFAULT_PATH_POLICY.devices,
    },
    categoryRange: parsed.categoryRange ? parseCategoryRange(parsed.categoryRange) : DEFAULT_CATEGORY_RANGE,
    vmIdRange,
    shutdownTimeoutSeconds: parsed.shutdownTimeoutSeconds ?? 60,
    allowSeclabelNone: parsed.allowSeclabelNone ?? false,
    configPath: file,
  };
}

/** A uid's passwd entry (name, primary gid, home), from /etc/passwd. */
async function passwdEntry(uid: number): Promise<{ name: string; gid: string; home: string } | undefined> {
  const passwd = await readFile('/etc/passwd', 'utf8').catch(() => '');
  for (const line of passwd.split('\n')) {
    const f = line.split(':');
    if (f[2] === String(uid)) return { name: f[0] ?? '', gid: f[3] ?? '', home: f[5] ?? '' };
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

/** The names of a user's groups: the primary group (by gid) and every group listing the user, from /etc/group. */
async function groupNamesOf(name: string, gid: string): Promise<string[]> {
  const group = await readFile('/etc/group', 'utf8').catch(() => '');
  const names: string[] = [];
  for (const line of group.split('\n')) {
    const [groupName, , groupGid, members] = line.split(':');
    if (!groupName) continue;
    if (groupGid === gid || (members ?? '').split(',').includes(name)) names.push(groupName);
  }
  return names;
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
  const entry = await passwdEntry(uid);
  if (entry === undefined) return { uid };
  return { uid, home: entry.home, name: entry.name, groups: await groupNamesOf(entry.name, entry.gid) };
}
