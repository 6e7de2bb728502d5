import { copyFile, mkdir, mkdtemp, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { repoPath, run, runOk } from './support';

// polkit's policyconfig-1.dtd from Debian's polkitd package, fetched once into the git-ignored test cache.
const CACHE = repoPath('test/guest/cache/polkit-dtd');
const DTD_IN_PACKAGE = './usr/share/polkit-1/policyconfig-1.dtd';
/** The system identifier polkit's own policy files name in their DOCTYPE. */
export const POLKIT_DTD_SYSTEM_ID = 'http://www.freedesktop.org/software/polkit/policyconfig-1.dtd';

async function exists(p: string): Promise<boolean> {
  return stat(p).then(() => true, () => false);
}

async function aptDownload(dir: string, pkg: string): Promise<string> {
  // As root apt drops to _apt for downloads, which cannot write into the checkout: stay root here.
  const args = ['-q', '-o', 'APT::Sandbox::User=root', 'download', pkg];
  let result = await run('apt-get', args, { cwd: dir, timeoutMs: 300_000 });
  if (result.code !== 0 && /Unable to locate package|Can't select|has no installation candidate/.test(result.stderr)) {
    await runOk('apt-get', ['-q', 'update'], { timeoutMs: 300_000 });
    result = await run('apt-get', args, { cwd: dir, timeoutMs: 300_000 });
  }
  if (result.code !== 0) throw new Error(`apt-get download ${pkg} failed: ${result.stderr.trim()}`);
  const deb = (await readdir(dir)).find((n) => n.startsWith(`${pkg}_`) && n.endsWith('.deb'));
  if (!deb) throw new Error(`apt-get download ${pkg} left no .deb in ${dir}`);
  return path.join(dir, deb);
}

/** Paths of the DTD and of an XML catalog that maps polkit's system identifier onto it. */
export async function polkitDtd(): Promise<{ dtd: string; catalog: string }> {
  const dtd = path.join(CACHE, 'policyconfig-1.dtd');
  const catalog = path.join(CACHE, 'catalog.xml');
  if (!(await exists(dtd))) {
    await mkdir(CACHE, { recursive: true });
    const work = await mkdtemp(path.join(CACHE, 'download-'));
    try {
      const deb = await aptDownload(work, 'polkitd');
      const listing = (await runOk('dpkg-deb', ['-c', deb])).stdout;
      if (!listing.split('\n').some((line) => line.endsWith(` ${DTD_IN_PACKAGE}`))) throw new Error(`${path.basename(deb)} does not contain ${DTD_IN_PACKAGE}`);
      await runOk('dpkg-deb', ['-x', deb, path.join(work, 'root')]);
      await copyFile(path.join(work, 'root', DTD_IN_PACKAGE), path.join(work, 'policyconfig-1.dtd'));
      // Another test process may have finished first; either copy is the same file.
      await rename(path.join(work, 'policyconfig-1.dtd'), dtd);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }
  if (!(await exists(catalog))) {
    const tmp = `${catalog}.${process.pid}`;
    await writeFile(tmp, `<?xml version="1.0"?>
<catalog xmlns="urn:oasis:names:tc:entity:xmlns:xml:catalog">
  <system systemId="${POLKIT_DTD_SYSTEM_ID}" uri="policyconfig-1.dtd"/>
</catalog>
`);
    await rename(tmp, catalog);
  }
  return { dtd, catalog };
}

/** xmllint's verdict on a policy file against the DTD; --nonet: nothing is fetched from the network. */
export async function validatePolicy(file: string): Promise<{ code: number | null; stderr: string }> {
  const { dtd, catalog } = await polkitDtd();
  const result = await run('xmllint', ['--nonet', '--noout', '--dtdvalid', dtd, file], { env: { ...process.env, XML_CATALOG_FILES: catalog } });
  return { code: result.code, stderr: result.stderr };
}
