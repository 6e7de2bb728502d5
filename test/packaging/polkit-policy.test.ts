import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INSTALLED_HELPER_PATH, POLKIT_ACTION_ID } from '../../src/user/helper-client';
import { INSTALLED_POLICY_PATH, POLICY_FILE_NAME } from '../../src/user/helper-install';
import { POLKIT_DTD_SYSTEM_ID, polkitDtd, validatePolicy } from './polkit-dtd';
import { repoPath } from './support';

const POLICY = repoPath('assets/polkit', POLICY_FILE_NAME);
let scratch: string;

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'svirt-polkit-'));
  await polkitDtd();
}, 600_000);
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

interface Action {
  '@_id': string;
  description: string;
  message: string;
  defaults: { allow_any: string; allow_inactive: string; allow_active: string };
  annotate: { '@_key': string; '#text': string }[];
}

async function parsePolicy(): Promise<{ vendor?: string; icon_name?: string; action: Action[] }> {
  const parser = new XMLParser({ ignoreAttributes: false, processEntities: false, isArray: (name) => name === 'action' || name === 'annotate' });
  return (parser.parse(await readFile(POLICY, 'utf8')) as { policyconfig: { vendor?: string; icon_name?: string; action: Action[] } }).policyconfig;
}

describe('polkit policy', () => {
  it('is valid against polkit\'s policyconfig-1.dtd (xmllint, DTD from Debian\'s polkitd), with no warning', async () => {
    const result = await validatePolicy(POLICY);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    // Its DOCTYPE names polkit's DTD, so polkit's own tools read it the same way.
    expect(await readFile(POLICY, 'utf8')).toContain(`"${POLKIT_DTD_SYSTEM_ID}"`);
  });

  it('an invalid policy fails the same check (the validation is real)', async () => {
    const broken = path.join(scratch, 'broken.policy');
    // defaults before message: out of the DTD's order.
    await writeFile(broken, (await readFile(POLICY, 'utf8')).replace(/(<message>[^<]*<\/message>)(\s*)(<defaults>[\s\S]*?<\/defaults>)/, '$3$2$1'));
    const result = await validatePolicy(broken);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/does not follow the DTD|failed to validate/);
  });

  it('defines the one action the client asks for, naming the installed helper', async () => {
    const policy = await parsePolicy();
    expect(policy.action.map((a) => a['@_id'])).toEqual([POLKIT_ACTION_ID]);
    const action = policy.action[0] as Action;
    const exec = action.annotate.find((a) => a['@_key'] === 'org.freedesktop.policykit.exec.path');
    expect(exec?.['#text']).toBe(INSTALLED_HELPER_PATH);
    expect(INSTALLED_POLICY_PATH).toBe(`/usr/share/polkit-1/actions/${POLKIT_ACTION_ID}.policy`);
  });

  it('asks an administrator once per active session (auth_admin_keep), every time otherwise (auth_admin)', async () => {
    const action = (await parsePolicy()).action[0] as Action;
    expect(action.defaults).toEqual({ allow_any: 'auth_admin', allow_inactive: 'auth_admin', allow_active: 'auth_admin_keep' });
  });

  it('says what the helper does, with a vendor and an icon', async () => {
    const policy = await parsePolicy();
    const action = policy.action[0] as Action;
    expect(action.message).toMatch(/label/i);
    expect(action.message).toMatch(/SELinux/);
    expect(action.message).toMatch(/confined/);
    expect(policy.vendor).toBe('sVirt Manager');
    expect(policy.icon_name).toBe('svirt-manager');
  });

  it('install-helper.sh writes the same paths and action id the TypeScript side uses', async () => {
    const script = await readFile(repoPath('assets/linux/install-helper.sh'), 'utf8');
    const vars = Object.fromEntries([...script.matchAll(/^([A-Z_]+)=(\S+)$/gm)].map((m) => [m[1], m[2]]));
    expect(vars.ACTION_ID).toBe(POLKIT_ACTION_ID);
    expect(`${vars.LIBEXEC}/svirt-helper`).toBe(INSTALLED_HELPER_PATH);
    expect(`${vars.ACTIONS}/${vars.ACTION_ID}.policy`).toBe(INSTALLED_POLICY_PATH);
  });
});
