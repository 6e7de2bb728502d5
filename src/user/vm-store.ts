import { lstat, mkdir, readdir, unlink } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { readJsonFile, writeFileAtomic } from '../host/atomic-file';
import { withStateLock } from '../host/state-lock';
import {
  VM_DEFINITION_VERSION, VmDefinitionError, checkVmName, parseVmDefinition, type VmDefinition, type VmDefinitionInput,
} from '../core/vm-definition';

/**
 * The user's VM definitions: one JSON file per VM, `<name>.json`, in a directory of their own (no
 * privileges involved). Every read and write is validated; writes are atomic and serialized by a lock
 * file so that the app and a CLI working at once cannot lose each other's changes.
 */

/** `$XDG_CONFIG_HOME/svirt-manager/vms`, or `~/.config/svirt-manager/vms`. */
export function defaultVmDirectory(env: NodeJS.ProcessEnv = process.env, home: string = os.homedir()): string {
  const configHome = env.XDG_CONFIG_HOME;
  // The XDG spec says a relative XDG_CONFIG_HOME is invalid and must be ignored.
  const base = configHome !== undefined && path.isAbsolute(configHome) ? configHome : path.join(home, '.config');
  return path.join(base, 'svirt-manager', 'vms');
}

export class VmNotFoundError extends Error {
  constructor(readonly vmName: string) {
    super(`no VM named "${vmName}"`);
    this.name = 'VmNotFoundError';
  }
}

export class VmExistsError extends Error {
  constructor(readonly vmName: string) {
    super(`a VM named "${vmName}" already exists`);
    this.name = 'VmExistsError';
  }
}

/** A file in the store that could not be used, with the reason. */
export interface VmFileProblem {
  readonly file: string;
  readonly message: string;
}

/** Every valid definition, and every file that is not one: one bad file never hides the others. */
export interface VmListing {
  readonly definitions: readonly VmDefinition[];
  readonly problems: readonly VmFileProblem[];
}

const DEFINITION_SUFFIX = '.json';

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT';
}

async function fileExists(file: string): Promise<boolean> {
  try {
    await lstat(file);
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}

export class VmStore {
  constructor(
    readonly directory: string,
    /** The clock that stamps createdAt; tests pass a fixed one. */
    private readonly now: () => Date = () => new Date(),
  ) {}

  private fileOf(name: string): string {
    return path.join(this.directory, `${checkVmName(name)}${DEFINITION_SUFFIX}`);
  }

  /** Reads and validates one file; undefined when it does not exist. */
  private async read(file: string, expectedName: string): Promise<VmDefinition | undefined> {
    const value = await readJsonFile(file);
    if (value === undefined) return undefined;
    const def = parseVmDefinition(value, file);
    // The file name is the lookup key: a definition saved under another name would be found twice or never.
    if (def.name !== expectedName) throw new VmDefinitionError([`name "${def.name}" does not match the file name ${expectedName}${DEFINITION_SUFFIX}`], file);
    return def;
  }

  private async write(def: VmDefinition): Promise<void> {
    await writeFileAtomic(this.fileOf(def.name), `${JSON.stringify(def, null, 2)}\n`, 0o600);
  }

  private async locked<T>(fn: () => Promise<T>): Promise<T> {
    await mkdir(this.directory, { recursive: true, mode: 0o700 });
    return withStateLock(path.join(this.directory, '.lock'), fn);
  }

  async list(): Promise<VmListing> {
    let entries: string[];
    try {
      entries = await readdir(this.directory);
    } catch (err) {
      if (isNotFound(err)) return { definitions: [], problems: [] };
      throw err;
    }
    // Dot files are the lock and the atomic writer's temp files.
    const files = entries.filter((f) => f.endsWith(DEFINITION_SUFFIX) && !f.startsWith('.')).sort();
    const definitions: VmDefinition[] = [];
    const problems: VmFileProblem[] = [];
    for (const name of files) {
      const file = path.join(this.directory, name);
      try {
        const def = await this.read(file, name.slice(0, -DEFINITION_SUFFIX.length));
        if (def !== undefined) definitions.push(def); // else removed since readdir
      } catch (err) {
        problems.push({ file, message: (err as Error).message });
      }
    }
    return { definitions, problems };
  }

  async get(name: string): Promise<VmDefinition> {
    const def = await this.read(this.fileOf(name), name);
    if (def === undefined) throw new VmNotFoundError(name);
    return def;
  }

  /**
   * A private disk is one VM's alone: refused when another defined VM uses the same image in any way, or
   * when this VM uses another's private image. Said now, when the user picks the disk, rather than at
   * the second VM's start (where the helper would refuse it as "already in use" only while both run).
   */
  private async checkDiskOwnership(def: VmDefinition, operation: string, previousName = def.name): Promise<void> {
    const { definitions } = await this.list();
    const problems: string[] = [];
    def.disks.forEach((disk, i) => {
      for (const other of definitions) {
        if (other.name === def.name || other.name === previousName) continue;
        const used = other.disks.find((d) => d.path === disk.path);
        if (used === undefined || (disk.class !== 'private' && used.class !== 'private')) continue;
        const whose = used.class === 'private' ? 'the private disk' : `a ${used.class} disk`;
        problems.push(`disks[${i}].path ${disk.path} is already ${whose} of VM "${other.name}": a private disk belongs to one VM (copy it with svirt clone, or use a qcow2 overlay over it)`);
      }
    });
    if (problems.length > 0) throw new VmDefinitionError(problems, operation);
  }

  /** Creates a VM; fails if one of that name exists (valid or not). */
  async define(input: VmDefinitionInput): Promise<VmDefinition> {
    const def = parseVmDefinition({ ...input, version: VM_DEFINITION_VERSION, createdAt: this.now().toISOString() }, `defining "${input.name}"`);
    return this.locked(async () => {
      if (await fileExists(this.fileOf(def.name))) throw new VmExistsError(def.name);
      await this.checkDiskOwnership(def, `defining "${def.name}"`);
      await this.write(def);
      return def;
    });
  }

  /**
   * Replaces a VM's definition, keeping its createdAt. A different `input.name` renames it: the new name
   * must be free, and the old file goes once the new one is written.
   */
  async update(name: string, input: VmDefinitionInput): Promise<VmDefinition> {
    checkVmName(name);
    return this.locked(async () => {
      const existing = await this.get(name);
      const def = parseVmDefinition({ ...input, version: VM_DEFINITION_VERSION, createdAt: existing.createdAt }, `updating "${name}"`);
      if (def.name !== name && (await fileExists(this.fileOf(def.name)))) throw new VmExistsError(def.name);
      await this.checkDiskOwnership(def, `updating "${name}"`, name);
      await this.write(def);
      if (def.name !== name) await unlink(this.fileOf(name));
      return def;
    });
  }

  /** Deletes a VM's file, whether or not it is valid (the way out for a file that cannot be read). */
  async remove(name: string): Promise<void> {
    const file = this.fileOf(name);
    await this.locked(async () => {
      try {
        await unlink(file);
      } catch (err) {
        if (isNotFound(err)) throw new VmNotFoundError(name);
        throw err;
      }
    });
  }
}
