import { chmod, mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * A stand-in securityfs and apparmor_parser for unit tests (this host's kernel has no AppArmor): the
 * parser records its arguments and loads or removes the profile named by the file it is given, as the
 * real one does. The real kernel is exercised by `npm run test:apparmor`.
 */
export interface FakeAppArmor {
  readonly dir: string;
  readonly host: { securityfs: string; enabledParameter: string };
  readonly parser: string;
  readonly parserLog: string;
  readonly profilesFile: string;
}

export async function fakeAppArmor(): Promise<FakeAppArmor> {
  const dir = await mkdtemp(path.join(tmpdir(), 'svirt-aa-'));
  const host = { securityfs: path.join(dir, 'securityfs'), enabledParameter: path.join(dir, 'enabled') };
  await mkdir(host.securityfs);
  await writeFile(host.enabledParameter, 'Y\n');
  const profilesFile = path.join(host.securityfs, 'profiles');
  await writeFile(profilesFile, '/usr/bin/man (enforce)\nlsb_release (complain)\n');
  const parser = path.join(dir, 'parser');
  await writeFile(parser, `#!/bin/sh
echo "$*" >> "${dir}/parser.log"
profiles="${profilesFile}"
case "$1" in
  -r) n=$(basename "$4"); grep -q "^$n " "$profiles" || echo "$n (enforce)" >> "$profiles" ;;
  -R) n=$(basename "$3"); grep -v "^$n " "$profiles" > "$profiles.new"; mv "$profiles.new" "$profiles" ;;
esac
`);
  await chmod(parser, 0o755);
  return { dir, host, parser, parserLog: path.join(dir, 'parser.log'), profilesFile };
}
