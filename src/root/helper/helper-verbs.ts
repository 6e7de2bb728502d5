import { randomUUID } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { connectConsole, type ConsoleViewer } from '../console/console-viewer';
import type { SelinuxMode } from '../../security/selinux/host-selinux';
import { labelContentTree, labelFile, restoreContent, LabelConflictError } from '../labels/relabeler';
import { WalkCancelledError } from '../labels/label-tree-tool';
import { listDeviceChoices } from '../../host/block-devices';
import { PathRefusedError, type Requester } from '../../host/path-policy';
import { connectUnixLow } from '../../security/selinux/socket-context';
import type { AccelChoice } from '../qemu/accel';
import type { PolicyProfile } from '../../core/selinux/policy-profile';
import type { SecurityStack } from '../../security/security-stack';
import { labelsOfRecord } from '../state/helper-state';
import { PRODUCT_VERSION } from '../../core/version';
import type { VerbContext, VerbHandler, VerbTable } from './helper-server';
import type { HelperConfig } from './helper-config';
import { ajv, HelperError, type Args, type HelperVerb, type Result } from '../../contracts/helper-protocol';
import { vmId, type VmLifecycle } from './vm-lifecycle';
import { SNAPSHOT_NAME_PATTERN } from '../../core/vm-definition';
import { vncSocketPath } from '../qemu/launch';
import { probeAppArmor, processConfinement, vmProfileDir, VmProfileStore } from '../../security/apparmor/apparmor-host';
import { vmProfileName } from '../../core/apparmor/vm-profile';

/**
 * The helper's verbs: each with a strict schema (checked before it runs) and a handler that calls the
 * lifecycle, the relabeler or the console keeper. Requests act for the session's requester only.
 */
export interface VerbDeps {
  readonly lifecycle: VmLifecycle;
  readonly config: HelperConfig;
  readonly profile: PolicyProfile;
  readonly requester: Requester;
  readonly selinux: () => Promise<SelinuxMode>;
  /** The host's security models (MAC over DAC): the status names the active one. */
  readonly security: SecurityStack;
  readonly accel: () => Promise<AccelChoice>;
  /** The VMs' AppArmor profiles and the kernel's view of AppArmor (tests pass their own; default: the host's). */
  readonly apparmor?: { store: VmProfileStore; enabled: () => Promise<boolean>; procRoot?: string };
}

const PATH = { type: 'string', minLength: 1, maxLength: 4096 } as const;
const VM_REF = { type: 'string', minLength: 1, maxLength: 128, pattern: '^([0-9]{1,10}/)?[A-Za-z0-9][A-Za-z0-9._-]*$' } as const;
const SESSION = { type: 'string', minLength: 1, maxLength: 64 } as const;
/** A relabel's job id, chosen by the requester so that it can cancel the walk while it runs. */
const JOB = { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } as const;
// Never starts with "-" (it reaches qemu-img's argv on the user side) and never looks like a numeric id.
const SNAPSHOT_NAME = { type: 'string', pattern: SNAPSHOT_NAME_PATTERN } as const;

/** A handler known to serve verb K (the phantom field ties a table entry to its key). */
export interface TypedVerb<K extends HelperVerb> extends VerbHandler {
  readonly verb?: K;
}

/** Every verb of the protocol map, each under its own name: a missing or extra verb fails the build. */
export type HelperVerbTable = { readonly [K in HelperVerb]: TypedVerb<K> };

/** A verb's schema and handler; its args and result types are the protocol map's (K is taken from the table's key). */
function verb<K extends HelperVerb>(schema: object, run: (args: Args<K>, context: VerbContext) => Promise<Result<K>>): TypedVerb<K> {
  return { validate: ajv.compile<Args<K>>({ type: 'object', additionalProperties: false, ...schema }), run };
}

/** Wraps refusals from the file layer into protocol errors with the right code. */
async function asProtocolError<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof PathRefusedError) throw new HelperError('refused', err.message);
    if (err instanceof LabelConflictError) throw new HelperError('conflict', err.message);
    throw err;
  }
}

export function createVerbs(deps: VerbDeps): VerbTable {
  const { lifecycle, profile } = deps;
  const sessions = new Map<string, ConsoleViewer>();
  // A name means the requester's own VM; `uid/name` is accepted for root (and for one's own uid).
  const resolveVm = (vm: string) => (vm.includes('/') ? vm : vmId(deps.requester.uid, vm));
  const session = (id: string) => {
    const viewer = sessions.get(id);
    if (!viewer) throw new HelperError('not-found', `no console session ${id}`);
    return viewer;
  };

  // Display relays: a byte pipe between the requester and qemu's VNC socket, which only root and the qemu uid
  // can reach. The VNC protocol itself runs end to end between the viewer (noVNC) and qemu.
  const displays = new Map<string, net.Socket>();
  // Tree relabels running for this session's requester, by job id: a cancel finds only its own
  // requester's jobs (another user's helper session has a map of its own).
  const relabelJobs = new Map<string, AbortController>();
  const display = (id: string) => {
    const socket = displays.get(id);
    if (!socket) throw new HelperError('not-found', `no display session ${id}`);
    return socket;
  };

  // Made at first use: a session that never audits reads nothing of AppArmor.
  let apparmor = deps.apparmor;
  const apparmorHost = () => (apparmor ??= {
    store: new VmProfileStore({ dir: vmProfileDir(deps.config.stateDir) }),
    // AppArmor is the model the helper confines VMs with, and the kernel runs it now.
    enabled: async () => deps.security.model === 'apparmor' && (await probeAppArmor()).enabled,
  });

  const verbs: HelperVerbTable = {
    status: verb({ properties: {} }, async () => ({
      version: PRODUCT_VERSION,
      security: { model: deps.security.model, modelName: deps.security.modelName, state: await deps.security.state(), layers: deps.security.layers.map((d) => d.model) },
      selinux: await deps.selinux(),
      policy: {
        type: profile.policyType,
        fallback: profile.fallback,
        processType: profile.processContext.type,
        tcgProcessType: profile.tcgProcessType ?? null,
        imageType: profile.imageContext.type,
        contentType: profile.contentContext.type,
        notes: profile.notes,
      },
      accel: await deps.accel().then((a) => ({ kind: a.accel, reason: a.reason })),
      requesterUid: deps.requester.uid,
      stateDir: deps.config.stateDir,
    })),

    list: verb({ properties: {} }, () => lifecycle.list()),

    reconcile: verb({ properties: {} }, () => lifecycle.reconcile()),

    start: verb({
      required: ['definition'],
      properties: {
        definition: { type: 'object' },
        allowUnconfined: { type: 'boolean' },
        reservedLevels: { type: 'array', maxItems: 4096, items: { type: 'string', maxLength: 512 } },
      },
    }, (args) => asProtocolError(() => lifecycle.start(args.definition, {
      ...(args.allowUnconfined === undefined ? {} : { allowUnconfined: args.allowUnconfined }),
      ...(args.reservedLevels === undefined ? {} : { reservedLevels: args.reservedLevels }),
    }))),

    stop: verb({
      required: ['vm'],
      properties: { vm: VM_REF, force: { type: 'boolean' }, timeoutMs: { type: 'integer', minimum: 0, maximum: 3_600_000 } },
    }, (args) => lifecycle.stop(resolveVm(args.vm), {
      ...(args.force === undefined ? {} : { force: args.force }),
      ...(args.timeoutMs === undefined ? {} : { timeoutMs: args.timeoutMs }),
    })),

    forceOff: verb({ required: ['vm'], properties: { vm: VM_REF } },
      (args) => lifecycle.stop(resolveVm(args.vm), { force: true })),

    control: verb({
      required: ['vm', 'action'],
      properties: { vm: VM_REF, action: { type: 'string', enum: ['pause', 'resume', 'reboot'] } },
    }, (args) => lifecycle.control(resolveVm(args.vm), args.action)),

    snapshot: verb({
      required: ['vm', 'op'],
      properties: { vm: VM_REF, op: { type: 'string', enum: ['list', 'take', 'delete', 'revert'] }, name: SNAPSHOT_NAME },
    }, (args) => lifecycle.snapshot(resolveVm(args.vm), args.op, args.name)),

    relabel: verb({
      required: ['path', 'mode'],
      properties: { path: PATH, mode: { type: 'string', enum: ['shared', 'readonly', 'private', 'restore'] }, vm: VM_REF, job: JOB },
    }, (args, context) => asProtocolError(async () => {
      const onProgress = (done: number, total: number) => context.emit('relabel-progress', { path: args.path, done, total });
      // Tree walks hold the state lock only to record intent and results (see labelContentTree).
      if (args.mode === 'restore') return restoreContent(lifecycle.relabelTransact(), args.path);
      if (args.mode === 'private') {
        if (!args.vm) throw new HelperError('bad-request', 'relabel private needs the VM whose image label to use');
        const vm = args.vm;
        return lifecycle.withRelabelContext(async (ctx) => {
          const record = await lifecycle.find(resolveVm(vm));
          const image = deps.security.macLabel(labelsOfRecord(record))?.image;
          if (!image) throw new HelperError('refused', `VM ${record.id} has no image label (seclabel none or relabel no)`);
          return labelFile(ctx, record.id, 'private', args.path, image);
        });
      }
      const label = deps.security.sharedLabel(args.mode);
      if (label === null) throw new HelperError('refused', `${deps.security.modelName} labels no files: there is no ${args.mode} content label to give ${args.path}`);
      if (args.job === undefined) return labelContentTree(lifecycle.relabelTransact(), args.path, args.mode, label, onProgress);
      const job = args.job;
      if (relabelJobs.has(job)) throw new HelperError('bad-request', `job ${job} is already running: give each relabel its own job id`);
      const controller = new AbortController();
      relabelJobs.set(job, controller);
      try {
        return await labelContentTree(lifecycle.relabelTransact(), args.path, args.mode, label, onProgress, controller.signal);
      } catch (err) {
        if (err instanceof WalkCancelledError) throw new HelperError('failed', `relabel of ${args.path} cancelled: every label it changed is back`);
        throw err;
      } finally {
        relabelJobs.delete(job);
      }
    })),

    // Stops a tree relabel of this requester's; the walk rolls back, and the relabel request answers that.
    cancelRelabel: verb({ required: ['job'], properties: { job: JOB } }, async (args) => {
      const controller = relabelJobs.get(args.job);
      if (!controller) throw new HelperError('not-found', `no relabel job ${args.job} of yours is running`);
      controller.abort();
      return { cancelled: args.job };
    }),

    checkDevice: verb({
      required: ['path'],
      properties: { path: PATH, class: { type: 'string', enum: ['private', 'shared', 'readonly'] } },
    }, (args) => lifecycle.checkDevice(args.path, args.class ?? 'private', 'path')),

    listDevices: verb({ properties: {} }, () => listDeviceChoices(deps.config.pathPolicy, deps.requester)),

    consoleAttach: verb({
      required: ['vm'],
      properties: { vm: VM_REF, resumeFrom: { type: ['integer', 'null'], minimum: 0 } },
    }, async (args, context) => {
      const record = await lifecycle.find(resolveVm(args.vm));
      const id = randomUUID();
      // Listeners go on before the keeper's replay can arrive, and hold events back until the attach
      // response has gone out, so a client never sees data for a session it does not know yet.
      let held: (() => void)[] | null = [];
      const emit = (event: string, data: object) => {
        const send = () => context.emit(event, { session: id, ...data });
        if (held) held.push(send);
        else send();
      };
      const viewer = connectConsole(lifecycle.consoleSocket(record), { resumeFrom: args.resumeFrom ?? null });
      viewer.on('data', (data) => emit('console-data', { data: data.toString('base64') }));
      viewer.on('resize', (size) => emit('console-resize', size));
      viewer.on('end', (end) => {
        sessions.delete(id);
        emit('console-end', { reason: end.reason, offset: end.offset });
      });
      const info = await viewer.ready.catch((err: Error) => {
        throw new HelperError('failed', `console of ${record.id} is not available: ${err.message}`);
      });
      sessions.set(id, viewer);
      setImmediate(() => {
        const pending = held ?? [];
        held = null;
        for (const send of pending) send();
      });
      return { session: id, vm: record.id, offset: info.offset, replayedBytes: info.end - info.offset, dropped: info.dropped, size: info.size };
    }),

    consoleInput: verb({
      required: ['session', 'data'],
      properties: { session: SESSION, data: { type: 'string', maxLength: 256 * 1024 }, encoding: { type: 'string', enum: ['utf8', 'base64'] } },
    }, async (args) => {
      session(args.session).write(Buffer.from(args.data, args.encoding ?? 'utf8'));
      return null;
    }),

    consoleResize: verb({
      required: ['session', 'cols', 'rows'],
      properties: { session: SESSION, cols: { type: 'integer', minimum: 1, maximum: 10000 }, rows: { type: 'integer', minimum: 1, maximum: 10000 } },
    }, async (args) => {
      session(args.session).resize(args.cols, args.rows);
      return null;
    }),

    displayAttach: verb({ required: ['vm'], properties: { vm: VM_REF } }, async (args, context) => {
      const record = await lifecycle.find(resolveVm(args.vm));
      const definition = record.definition as { display?: string };
      if (definition.display !== 'vnc') throw new HelperError('not-found', `VM ${record.id} has no display`);
      const socketPath = vncSocketPath(lifecycle.displayDir(record.ownerUid, record.name));
      const id = randomUUID();
      // At s0 where SELinux is on: qemu may use its end of the connection (socket-context.ts).
      const socket = connectUnixLow(path.resolve(socketPath));
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', (err) => reject(new HelperError('failed', `display of ${record.id} is not available: ${err.message}`)));
      });
      // Data events wait for the attach response, so a client never sees bytes of a session it does not know yet.
      socket.pause();
      displays.set(id, socket);
      socket.on('data', (data) => context.emit('display-data', { session: id, data: data.toString('base64') }));
      socket.on('error', () => undefined);
      socket.on('close', () => {
        displays.delete(id);
        context.emit('display-end', { session: id, reason: 'closed' });
      });
      setImmediate(() => socket.resume());
      return { session: id, vm: record.id };
    }),

    displayInput: verb({
      required: ['session', 'data'],
      properties: { session: SESSION, data: { type: 'string', maxLength: 256 * 1024, pattern: '^[A-Za-z0-9+/]*={0,2}$' } },
    }, async (args) => {
      display(args.session).write(Buffer.from(args.data, 'base64'));
      return null;
    }),

    displayDetach: verb({ required: ['session'], properties: { session: SESSION } }, async (args) => {
      display(args.session).destroy();
      displays.delete(args.session);
      return null;
    }),

    // The profiles the helper loaded for the requester's VMs only (lifecycle.list: root sees all): a
    // profile names a VM's files, which are its owner's business. The text is the file apparmor_parser
    // loaded, listed only while the kernel holds it or when the kernel's list cannot be read.
    vmProfiles: verb({ properties: {} }, async () => {
      const host = apparmorHost();
      const enabled = await host.enabled();
      const vms = await Promise.all((await lifecycle.list()).map(async (vm) => {
        const name = vmProfileName(vm.ownerUid, vm.name);
        const found = enabled ? await host.store.loadedText(name) : { text: null, loaded: false, mode: null };
        const held = found.loaded !== false && found.text !== null;
        const qemu = vm.pid === null ? undefined : await processConfinement(vm.pid, host.procRoot);
        return {
          vm: vm.id, name: vm.name, ownerUid: vm.ownerUid, profile: held ? name : null, loaded: found.loaded, mode: found.mode,
          qemu: qemu === undefined ? null : qemu.mode === 'unconfined' ? 'unconfined' : `${qemu.profile} (${qemu.mode})`,
          text: held ? found.text : null,
        };
      }));
      return { enabled, vms };
    }),

    consoleDetach: verb({ required: ['session'], properties: { session: SESSION } }, async (args) => {
      await session(args.session).close();
      sessions.delete(args.session);
      return null;
    }),
  };
  return verbs;
}
