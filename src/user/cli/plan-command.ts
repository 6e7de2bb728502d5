import { existsSync, readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { ContextSyntaxError, parseLevel, type Level } from '../../core/selinux/context';
import { LabelPlanError, planStart, type StartPlan } from '../../core/selinux/label-planner';
import { McsAllocator } from '../../core/selinux/mcs-allocator';
import type { PolicyProfile } from '../../core/selinux/policy-profile';
import type { VmSpec } from '../../core/vm-spec';
import { LibvirtXmlError, parseLibvirtDomainXml } from '../../core/libvirt-xml';
import { loadPolicyProfile } from '../../security/selinux/selinux-files';
import { CliError, EXIT } from './exit-codes';
import { textTable } from './text-table';

/** `svirt plan`: the labels a libvirt domain would get at start, with this host's policy. */

/** What the command reads from the host; tests pass their own. */
export interface PlanCommandDeps {
  readonly loadProfile: () => PolicyProfile | Promise<PolicyProfile>;
  readonly readFile: (path: string) => string;
  readonly pathExists: (path: string) => boolean;
  readonly write: (text: string) => void;
  readonly warn: (text: string) => void;
}

const HOST_DEPS: PlanCommandDeps = {
  loadProfile: () => loadPolicyProfile(),
  readFile: (path) => readFileSync(path, 'utf8'),
  pathExists: (path) => existsSync(path),
  write: (text) => process.stdout.write(text),
  warn: (text) => process.stderr.write(text),
};

/** Where the dynamic pair shown comes from, so the output can say how far to trust it. */
type PairSource = 'live' | 'given' | 'preview' | 'none';

const HELP_AFTER = `
Which MCS pair is shown for a dynamic seclabel:
  - a running domain's XML (virsh dumpxml) carries its <label>: that pair is used, as libvirt does;
  - --level s0:cA,cB uses the pair given;
  - otherwise a preview pair is drawn with the same allocator a start uses. It is real and concrete, but
    each start draws its own, so the categories you see will differ from the VM's when it runs.
Static and none seclabels have no pair to draw.

--json prints an array of {"path", "label", "remember"}; label null means the path is left alone,
remember true means its original label is put back at stop.
Exit codes: 0 planned, 2 unreadable or unsupported XML or labels, 3 the policy profile could not be read.`;

async function readProfile(deps: PlanCommandDeps): Promise<PolicyProfile> {
  try {
    return await deps.loadProfile();
  } catch (e) {
    throw new CliError(`cannot read the SELinux policy profile: ${(e as Error).message}`, EXIT.unknown);
  }
}

function readSpec(file: string, deps: PlanCommandDeps): VmSpec {
  let xml: string;
  try {
    xml = deps.readFile(file);
  } catch (e) {
    throw new CliError(`cannot read ${file}: ${(e as Error).message}`);
  }
  try {
    return parseLibvirtDomainXml(xml);
  } catch (e) {
    if (e instanceof LibvirtXmlError) throw new CliError(`${file}: ${e.message}`);
    throw e;
  }
}

function parseLevelOption(text: string): Level {
  try {
    return parseLevel(text);
  } catch (e) {
    if (e instanceof ContextSyntaxError) throw new CliError(`--level: ${e.message}`);
    throw e;
  }
}

function choosePair(spec: VmSpec, profile: PolicyProfile, given: string | undefined): { level?: Level; source: PairSource } {
  if (spec.seclabel.mode !== 'dynamic') {
    if (given !== undefined) throw new CliError(`--level applies to dynamic seclabels; "${spec.name}" has a ${spec.seclabel.mode} one`);
    return { source: 'none' };
  }
  if (spec.live) {
    // The planner checks that a given level matches the live pair.
    return given === undefined ? { source: 'live' } : { level: parseLevelOption(given), source: 'live' };
  }
  if (given !== undefined) return { level: parseLevelOption(given), source: 'given' };
  const allocator = new McsAllocator({ range: profile.categoryRange });
  return { level: allocator.allocate(`plan preview of ${spec.name}`), source: 'preview' };
}

const PAIR_NOTE: Record<PairSource, string> = {
  live: 'the running domain\'s pair',
  given: 'the pair given with --level',
  preview: 'a preview pair: each start draws its own',
  none: '',
};

function humanOutput(spec: VmSpec, profile: PolicyProfile, plan: StartPlan, source: PairSource): string {
  const lines: string[] = [];
  lines.push(`VM ${spec.name} (${spec.accel}, seclabel ${plan.seclabel}) with policy ${profile.policyType}${profile.fallback ? ' (built-in fallback)' : ''}`);
  const processLabel = plan.process.context ?? 'unconfined';
  lines.push(`process: ${processLabel}${source === 'none' ? '' : `  (${PAIR_NOTE[source]})`}`);
  lines.push('');
  if (plan.actions.length === 0) {
    lines.push('No files to label.');
  } else {
    const rows = [['PATH', 'DEVICE', 'CLASS', 'LABEL', 'AT STOP']];
    for (const a of plan.actions) {
      rows.push([a.path, a.device, a.class, a.label ?? '(left alone)', a.label === null ? '-' : a.remember ? 'restore' : 'keep']);
    }
    lines.push(textTable(rows));
  }
  const notes = [...plan.notes, ...(profile.fallback ? profile.notes : [])];
  if (notes.length > 0) lines.push('', 'Notes:', ...notes.map((n) => `  - ${n}`));
  return `${lines.join('\n')}\n`;
}

export async function runPlan(file: string, options: { json?: boolean; level?: string }, deps: PlanCommandDeps = HOST_DEPS): Promise<void> {
  const spec = readSpec(file, deps);
  const profile = await readProfile(deps);
  const { level, source } = choosePair(spec, profile, options.level);
  let plan: StartPlan;
  try {
    plan = planStart(spec, profile, level, { pathExists: deps.pathExists });
  } catch (e) {
    if (e instanceof LabelPlanError) throw new CliError(`${file}: ${e.message}`);
    throw e;
  }
  if (options.json) {
    const rows = plan.actions.map((a) => ({ path: a.path, label: a.label, remember: a.remember }));
    deps.write(`${JSON.stringify(rows, null, 2)}\n`);
    // stdout stays pure JSON; what the table would have said goes to stderr.
    for (const note of plan.notes) deps.warn(`svirt: note: ${note}\n`);
    if (source === 'preview') deps.warn(`svirt: note: ${plan.range ?? ''} is ${PAIR_NOTE.preview}\n`);
    return;
  }
  deps.write(humanOutput(spec, profile, plan, source));
}

export function registerPlanCommand(program: Command, deps: PlanCommandDeps = HOST_DEPS): void {
  program
    .command('plan')
    .description("show the SELinux labels a libvirt domain's files and qemu process get at start")
    .requiredOption('--libvirt-xml <file>', 'libvirt domain XML (virsh dumpxml or an inactive definition)')
    .option('--json', 'print the label actions as JSON')
    .option('--level <level>', 'the MCS pair to plan a dynamic VM with (e.g. s0:c12,c345) instead of a preview draw')
    .addHelpText('after', HELP_AFTER)
    .action(async (options: { libvirtXml: string; json?: boolean; level?: string }) => {
      await runPlan(options.libvirtXml, options, deps);
    });
}
