// The root helper program (dist/svirt-helper.js; installed as /usr/libexec/svirt-manager/svirt-helper).
// Started once per app session through pkexec; speaks JSON Lines on stdin/stdout until stdin closes.
// With --console-keeper as its first argument it runs a VM's console keeper instead (see console/).
import * as path from 'node:path';

const RECONCILE_INTERVAL_MS = 1000;

function memo<T>(fn: () => Promise<T>): () => Promise<T> {
  let value: Promise<T> | undefined;
  return () => (value ??= fn());
}

async function runHelper(): Promise<number> {
  if (process.getuid?.() !== 0) {
    process.stderr.write('svirt-helper: must run as root; the app starts it through pkexec (polkit action org.svirtmanager.helper)\n');
    return 1;
  }
  // Loaded here, not at the top: a console keeper (the other mode of this program) starts with every VM
  // and must not pay for compiling the helper's schemas.
  const [
    { loadPolicyProfile }, { selinuxMode }, { probeAccelerator }, { HelperStateStore },
    { loadHelperConfig, resolveRequester }, { serveHelperProtocol }, { createVerbs }, { VmLifecycle }, { loadVmTypeSets }, { createSecurityStack },
  ] = await Promise.all([
    import('../../security/selinux/selinux-files'), import('../../security/selinux/host-selinux'), import('../qemu/accel'), import('../state/helper-state'),
    import('./helper-config'), import('./helper-server'), import('./helper-verbs'), import('./vm-lifecycle'), import('../../security/selinux/policy-vm-types'),
    import('../../security/drivers'),
  ]);
  // The flags live with the code that starts the helper, so helper and keepers run alike.
  const { HELPER_NODE_FLAGS } = await import('../../user/helper-client');
  // One-file labels and the serial lines' FIFOs through one long-lived svirt-label-tree instead of a
  // getfattr/setfattr/mkfifo process per call (several per VM start). Without the tool, the attr tools serve.
  const { enableLabelServer } = await import('../labels/label-server');
  try {
    enableLabelServer();
  } catch (err) {
    process.stderr.write(`svirt-helper: one-file labels go through getfattr/setfattr: ${(err as Error).message}\n`);
  }
  const config = await loadHelperConfig();
  const requester = await resolveRequester();
  const profile = await loadPolicyProfile(undefined, config.categoryRange);
  const store = new HelperStateStore(config.stateDir);
  await store.init();
  // Read at each use (a file read): a host switched with setenforce is reported as it is now.
  const selinux = () => selinuxMode();
  const accel = memo(() => probeAccelerator());
  // seinfo takes seconds: asked on the first start only, not by sessions that never start a VM, and
  // remembered for the same policy file across sessions.
  const vmTypes = memo(() => loadVmTypeSets(profile, { cacheFile: path.join(config.stateDir, 'policy-vm-types.json') }));
  // The host's MAC model over DAC, picked once: a host changes model only by rebooting.
  const security = await createSecurityStack({ config, profile, vmTypes });
  const script = process.argv[1];
  if (!script) throw new Error('cannot tell the helper script path');
  const keeperCommand = { command: process.execPath, argsPrefix: [...HELPER_NODE_FLAGS, script] };
  // Keepers started ahead: a VM start hands its keeper's arguments to a loaded one (keeper-process.ts).
  const { enableSpareKeepers } = await import('../console/keeper-process');
  enableSpareKeepers(keeperCommand);
  const lifecycle = new VmLifecycle({
    store, config, requester, security, accel,
    // The keeper runs in the helper's domain too: the same flags (no JIT, see HELPER_NODE_FLAGS).
    keeperCommand,
  });
  // Whatever died while no helper was running is cleaned up before the first request.
  await lifecycle.reconcile();
  const verbs = createVerbs({ lifecycle, config, profile, requester, selinux, security, accel });

  let broadcast: ((event: string, data: unknown) => void) | undefined;
  // VMs that end on their own (guest poweroff, crash) get their labels restored promptly.
  const timer = setInterval(() => {
    lifecycle.anyEnded()
      .then((ended) => (ended ? lifecycle.reconcile() : { cleanedUp: [], restoredFiles: 0 }))
      .then((report) => {
        for (const id of report.cleanedUp) broadcast?.('vm-stopped', { id });
      }, (err: Error) => process.stderr.write(`svirt-helper: reconcile failed: ${err.message}\n`));
  }, RECONCILE_INTERVAL_MS);
  timer.unref();

  await serveHelperProtocol(process.stdin, process.stdout, verbs, (emit) => (broadcast = emit));
  clearInterval(timer);
  return 0;
}

if (process.argv[2] === '--console-keeper') {
  // Keeper mode writes a pid file where told: only the helper itself may ask for it, never a pkexec
  // caller (pkexec passes the caller's arguments through). The helper starts keepers without PKEXEC_UID.
  if (process.env.PKEXEC_UID !== undefined) {
    process.stderr.write('svirt-helper: --console-keeper is internal\n');
    process.exit(2);
  }
  await import('../console/keeper-main');
} else {
  runHelper().then(
    (code) => process.exit(code),
    (err: Error) => {
      process.stderr.write(`svirt-helper: ${err.message}\n`);
      process.exit(1);
    },
  );
}
