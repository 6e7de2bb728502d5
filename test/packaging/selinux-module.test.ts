import { cp, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INSTALLED_HELPER_PATH } from '../../src/user/helper-client';
import { fakePackageTree, repoPath, run, runOk, writeExpandedScripts } from './support';

// The SELinux policy module (assets/selinux) and the install scripts' SELinux branch, on this host
// without SELinux: the module is compiled by Debian's policy development Makefile, and after-install
// installs it into a scratch root that holds a copy of the host's policy store (DESTDIR), where semodule
// builds a real kernel policy from it (no kernel load). setools then reads what that policy allows.
const HOST_POLICY = '/etc/selinux/default/policy/policy.33';
const DEVEL_MAKEFILE = '/usr/share/selinux/devel/Makefile';
let scratch: string;

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'svirt-semodule-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

const sesearch = async (policy: string, args: string[]) => (await runOk('sesearch', [...args, policy])).stdout.split('\n').filter(Boolean);

describe('the SELinux policy module', () => {
  it('compiles with the distribution\'s policy development Makefile, without warnings', async () => {
    const dir = path.join(scratch, 'build');
    await cp(repoPath('assets/selinux'), dir, { recursive: true });
    const result = await run('make', ['-f', DEVEL_MAKEFILE, 'svirt_manager.pp'], { cwd: dir });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect((await readFile(path.join(dir, 'svirt_manager.pp'))).length).toBeGreaterThan(1000);
  });

  it('after-install puts it into the root\'s policy store, the VM domain gains only what the helper hands it, and after-remove takes it out', async () => {
    const root = path.join(scratch, 'root');
    await mkdir(path.join(root, 'var/lib/selinux'), { recursive: true, mode: 0o755 });
    await mkdir(path.join(root, 'etc/selinux'), { recursive: true, mode: 0o755 });
    await runOk('chmod', ['755', root, path.join(root, 'var'), path.join(root, 'var/lib'), path.join(root, 'etc')]);
    await cp('/var/lib/selinux/default', path.join(root, 'var/lib/selinux/default'), { recursive: true });
    await cp('/etc/selinux/default', path.join(root, 'etc/selinux/default'), { recursive: true });
    await cp('/etc/selinux/config', path.join(root, 'etc/selinux/config'));
    await fakePackageTree(root);
    const scripts = await writeExpandedScripts(scratch);
    const env = { ...process.env, DESTDIR: root };

    const installed = await run('/bin/sh', [scripts.afterInstall, 'configure'], { env, timeoutMs: 300_000 });
    expect(installed.code, installed.stderr).toBe(0);
    expect(installed.stdout).toContain('installed the SELinux module svirt_manager');
    const policy = path.join(root, 'etc/selinux/default/policy/policy.33');
    expect((await runOk('semodule', ['-p', root, '-l'])).stdout.split('\n')).toContain('svirt_manager');
    // pkexec's exec of the wrapper enters the helper domain; the wrapper's file context says which file.
    expect(await sesearch(policy, ['-T', '-s', 'unconfined_t', '-t', 'svirt_manager_exec_t', '-c', 'process']))
      .toEqual(['type_transition unconfined_t svirt_manager_exec_t:process svirt_manager_t;']);
    expect(await readFile(path.join(root, 'etc/selinux/default/contexts/files/file_contexts'), 'utf8'))
      .toMatch(new RegExp(`^${INSTALLED_HELPER_PATH}\\s+--\\s+system_u:object_r:svirt_manager_exec_t:s0$`, 'm'));
    // The helper may start qemu in the VM domain, and needs no execmem (it runs Node with --jitless).
    expect((await sesearch(policy, ['-A', '-s', 'svirt_manager_t', '-t', 'svirt_t', '-c', 'process', '-p', 'transition'])).length).toBeGreaterThan(0);
    expect(await sesearch(policy, ['-A', '-s', 'svirt_manager_t', '-c', 'process', '-p', 'execmem'])).toEqual([]);

    // Every rule the module adds for the VM domain, exactly: what it inherits from the helper, mapping
    // the kernel it reads (content, or its private copy: `map` joins refpolicy's rule on svirt_image_t),
    // reading vm.overcommit_memory (the interface searches /proc and /proc/sys on the way), and execmem for TCG under the module's boolean. Nothing on devices or on
    // anyone else's files.
    const before = new Set(await sesearch(HOST_POLICY, ['-A', '-s', 'svirt_t']));
    const added = (await sesearch(policy, ['-A', '-s', 'svirt_t'])).filter((rule) => !before.has(rule)).sort();
    expect(added).toEqual([
      'allow svirt_t proc_t:dir { getattr open search };',
      'allow svirt_t svirt_image_t:file { append create getattr ioctl link lock map open read rename setattr unlink write };',
      'allow svirt_t svirt_manager_log_t:file { append getattr };',
      'allow svirt_t svirt_manager_t:fd use;',
      'allow svirt_t svirt_manager_t:process sigchld;',
      'allow svirt_t svirt_manager_var_lib_t:dir search;',
      'allow svirt_t svirt_t:process execmem; [ svirt_manager_tcg_execmem ]:True',
      'allow svirt_t sysctl_t:dir { getattr open search };',
      'allow svirt_t sysctl_vm_overcommit_t:file { getattr ioctl lock open read };',
      'allow svirt_t sysctl_vm_t:dir { getattr open search };',
      'allow svirt_t virt_content_t:file { getattr ioctl lock map open read };',
      'allow virt_domain svirt_manager_t:fd use;',
      'allow virt_domain svirt_manager_t:fifo_file { append getattr ioctl lock open read write };',
      'allow virt_domain svirt_manager_t:process sigchld;',
    ]);
    for (const device of ['fixed_disk_device_t', 'removable_device_t', 'device_t', 'memory_device_t']) {
      expect(await sesearch(policy, ['-A', '-s', 'svirt_t', '-t', device]), device).toEqual(await sesearch(HOST_POLICY, ['-A', '-s', 'svirt_t', '-t', device]));
    }

    // Block devices are the helper's alone: every rule the module adds on a device type (the device_node
    // attribute: fixed_disk_device_t, removable_device_t, device_t, …) has the helper's domain as its source,
    // never a VM domain nor an attribute one is in. The image types are device_node too (a VM's image may be a
    // device node) and keep the VM domain's rules above. The helper may relabel a host disk node to a VM's
    // image label and back.
    const imageTypes = new Set((await runOk('seinfo', ['-a', 'virt_image_type', '-x', policy])).stdout.split('\n').map((l) => l.trim()));
    expect(imageTypes).toContain('svirt_image_t');
    const onDeviceTypes = async (p: string) => (await sesearch(p, ['-A', '-t', 'device_node'])).filter((rule) => !imageTypes.has(/^allow \S+ (\S+):/.exec(rule)?.[1] ?? ''));
    const stockOnDevices = new Set(await onDeviceTypes(HOST_POLICY));
    const addedOnDevices = (await onDeviceTypes(policy)).filter((rule) => !stockOnDevices.has(rule));
    expect(addedOnDevices.filter((rule) => !rule.startsWith('allow svirt_manager_t '))).toEqual([]);
    expect(addedOnDevices.some((rule) => rule.startsWith('allow svirt_manager_t fixed_disk_device_t:blk_file '))).toBe(true);
    for (const [type, perm] of [['fixed_disk_device_t', 'relabelfrom'], ['fixed_disk_device_t', 'relabelto'], ['svirt_image_t', 'relabelto'], ['virt_content_t', 'relabelto']] as const) {
      expect(await sesearch(policy, ['-A', '-s', 'svirt_manager_t', '-t', type, '-c', 'blk_file', '-p', perm]), `${type} ${perm}`).not.toEqual([]);
    }

    const removed = await run('/bin/sh', [scripts.afterRemove, 'remove'], { env, timeoutMs: 300_000 });
    expect(removed.code, removed.stderr).toBe(0);
    expect(removed.stdout).toContain('removed the SELinux module svirt_manager');
    expect((await runOk('semodule', ['-p', root, '-l'])).stdout.split('\n')).not.toContain('svirt_manager');
    expect((await runOk('seinfo', ['-t', 'svirt_manager_t', policy])).stdout).toMatch(/Types:\s+0/);
  }, 600_000);
});
