import { access, readFile, stat } from 'node:fs/promises';
import { Ajv } from 'ajv';
import { getConfig, validateConfiguration } from 'app-builder-lib/out/util/config/config';
import { DebugLogger } from 'builder-util';
import { beforeAll, describe, expect, it } from 'vitest';
import { resolveHelperSources } from '../../src/user/helper-install';
import { BUILDER_MACRO, EXECUTABLE, PRODUCT_DIR, repoPath, REPO, run } from './support';

// electron-builder.yml, read the way electron-builder reads it, against electron-builder's own schema.
type Config = Awaited<ReturnType<typeof getConfig>>;
interface FpmOptions { depends?: string[]; recommends?: string[]; afterInstall?: string; afterRemove?: string }
let config: Config;

beforeAll(async () => {
  config = await getConfig(REPO, null, null);
});

async function schemaValidator() {
  const schema = JSON.parse(await readFile(repoPath('node_modules/app-builder-lib/scheme.json'), 'utf8')) as { $schema: string };
  expect(schema.$schema).toBe('http://json-schema.org/draft-07/schema#'); // Ajv's default draft
  // strict off: the schema carries annotations Ajv does not know (markdownDescription and the like).
  return new Ajv({ strict: false, allErrors: true }).compile(schema);
}

describe('electron-builder.yml', () => {
  it('validates against app-builder-lib/scheme.json with ajv', async () => {
    const validate = await schemaValidator();
    const ok = validate(config);
    expect(validate.errors ?? [], JSON.stringify(validate.errors, null, 2)).toEqual([]);
    expect(ok).toBe(true);
  });

  it('a misspelt option fails that schema (the check is real)', async () => {
    const validate = await schemaValidator();
    expect(validate({ ...config, deb: { ...(config.deb as object), dependz: ['qemu'] } })).toBe(false);
    expect(validate({ ...config, linux: { ...(config.linux as object), target: 42 } })).toBe(false);
  });

  it('passes electron-builder\'s own configuration check', async () => {
    await expect(validateConfiguration(config, new DebugLogger(false))).resolves.toBeUndefined();
  });

  it('builds AppImage, deb and rpm with the app\'s identity and icon', async () => {
    expect(config.appId).toBe('org.svirtmanager.app');
    expect(config.productName).toBe(PRODUCT_DIR);
    const linux = config.linux as { target: string[]; category: string; icon: string; executableName: string };
    expect(linux.target).toEqual(['AppImage', 'deb', 'rpm']);
    expect(['System', 'Utility']).toContain(linux.category);
    expect(linux.executableName).toBe(EXECUTABLE);
    // A PNG whose IHDR says 512x512, in the icon set directory electron-builder reads.
    const png = await readFile(repoPath(linux.icon, '512x512.png'));
    expect(png.subarray(1, 4).toString('latin1')).toBe('PNG');
    expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([512, 512]);
    await access(repoPath('assets/icon.svg'));
  });

  it('ships dist/ in the app and the helper, its policy and its installer as resources under the names the app looks for', async () => {
    // getConfig normalizes `files` into file sets.
    const files = (config.files as ({ filter?: string[] } | string)[]).flatMap((f) => (typeof f === 'string' ? [f] : (f.filter ?? [])));
    expect(files).toContain('dist/**/*');
    const extra = config.extraResources as { from: string; to: string }[];
    const shipped = new Map(extra.map((e) => [e.to, e.from]));
    expect(shipped.get('svirt-helper.js')).toBe('dist/svirt-helper.js');
    expect(shipped.get('svirt-label-tree')).toBe('dist/svirt-label-tree'); // install-helper.sh wants it beside the helper
    expect(shipped.get('org.svirtmanager.helper.policy')).toBe('assets/polkit/org.svirtmanager.helper.policy');
    expect(shipped.get('install-helper.sh')).toBe('assets/linux/install-helper.sh');
    expect(shipped.get('selinux')).toBe('assets/selinux');
    expect(shipped.get('apparmor')).toBe('assets/apparmor');
    for (const from of shipped.values()) if (!from.startsWith('dist/')) await access(repoPath(from));
    // helper-install.ts's packaged paths are exactly those resources.
    const sources = await resolveHelperSources({ packaged: true, resourcesPath: '/r', execPath: process.execPath });
    for (const p of [sources.installScript, sources.helperScript, sources.policy, sources.selinuxDir, sources.apparmorDir]) expect(shipped.has(p.replace('/r/', ''))).toBe(true);
  });

  it('deb and rpm run our after-install/after-remove and depend on qemu and the SELinux tools under each distribution\'s names', async () => {
    const deb = config.deb as FpmOptions;
    const rpm = config.rpm as FpmOptions;
    for (const target of [deb, rpm]) {
      expect(target.afterInstall).toBe('assets/linux/after-install.sh');
      expect(target.afterRemove).toBe('assets/linux/after-remove.sh');
      expect((await stat(repoPath(target.afterInstall as string))).isFile()).toBe(true);
      expect((await stat(repoPath(target.afterRemove as string))).isFile()).toBe(true);
    }
    expect(deb.depends).toEqual(expect.arrayContaining(['qemu-system-x86', 'qemu-utils', 'selinux-utils', 'policycoreutils', 'attr', 'setools']));
    expect(rpm.depends).toEqual(expect.arrayContaining(['(qemu-kvm or qemu-system-x86)', 'qemu-img', 'libselinux-utils', 'policycoreutils', 'attr', 'setools-console', 'polkit']));
    // Listing depends replaces electron-builder's defaults: Electron's own libraries must still be there.
    expect(deb.depends).toEqual(expect.arrayContaining(['libnss3', 'xdg-utils']));
    expect(rpm.depends).toEqual(expect.arrayContaining(['nss', 'gtk3']));
  });

  it('every deb dependency names a package Debian knows (one of each alternative)', async () => {
    const deb = config.deb as FpmOptions;
    const groups = [...(deb.depends ?? []), ...(deb.recommends ?? [])].map((g) => g.split('|').map((s) => s.trim()));
    // apt-cache policy lists the packages it knows, with a candidate version; unknown names are left out.
    const policy = await run('apt-cache', ['policy', ...groups.flat()]);
    expect(policy.code).toBe(0);
    const known = new Set([...policy.stdout.matchAll(/^(\S+):\n\s+Installed: .*\n\s+Candidate: (?!\(none\))/gm)].map((m) => m[1]));
    for (const group of groups) expect(group.filter((n) => known.has(n)), `none of ${group.join(' | ')} is known to apt (apt-get update?)`).not.toEqual([]);
  });

  it('the scripts use only macros electron-builder defines, and its template step still works as mirrored in support.ts', async () => {
    const fpm = await readFile(repoPath('node_modules/app-builder-lib/out/targets/FpmTarget.js'), 'utf8');
    expect(fpm).toContain(`.replace(/${BUILDER_MACRO.source}/g, replacer)`);
    for (const script of ['assets/linux/after-install.sh', 'assets/linux/after-remove.sh']) {
      const macros = [...(await readFile(repoPath(script), 'utf8')).matchAll(BUILDER_MACRO)].map((m) => m[1]);
      expect(new Set(macros)).toEqual(new Set(['sanitizedProductName', 'executable']));
    }
  });
});
