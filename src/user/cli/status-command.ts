import type { Command } from 'commander';
import type { ActiveModel, ConfinementDescription, LabelPart } from '../../contracts/ipc-contract';
import { describeStopped } from '../services/vm-views';
import { withSession } from './vm-commands';

/**
 * `svirt status` and `svirt show NAME`: the security model that confines this host's VMs (as the helper
 * probed it) and how one VM is confined, printed from the confinement description's fields and labelled
 * parts as they are. Nothing here knows a model's label syntax: the same lines serve SELinux, AppArmor and
 * a host without either.
 */

/** "SELinux (enforcing), over DAC": the model, its state now, and the layers stacked under it. */
export function activeModelText(active: ActiveModel): string {
  const under = active.layers.filter((layer) => layer !== active.model);
  return `${active.modelName} (${active.state})${under.length > 0 ? `, over ${under.map((l) => l.toUpperCase()).join(', ')}` : ''}`;
}

const partsText = (parts: readonly LabelPart[]) => parts.map((p) => `${p.name} ${p.value}${p.meaning ? ` (${p.meaning})` : ''}`).join(' · ');

/** A VM's confinement in lines: its model, the sentence, its labels part by part, and the layers under it. */
export function describeLines(security: ConfinementDescription): string[] {
  return [
    `model: ${security.modelName}`,
    `confinement: ${security.summary}`,
    ...(security.processLabel === null ? [] : [`process: ${security.processLabel}`, ...(security.processParts.length > 0 ? [`  ${partsText(security.processParts)}`] : [])]),
    ...(security.imageLabel === null ? [] : [`images: ${security.imageLabel}`, ...(security.imageParts.length > 0 ? [`  ${partsText(security.imageParts)}`] : [])]),
    ...security.layers.map((layer) => `under it, ${layer.modelName}: ${layer.summary}${layer.parts.length > 0 ? ` (${partsText(layer.parts)})` : ''}`),
  ];
}

export function registerStatusCommands(program: Command): void {
  program
    .command('status')
    .description("the host as the helper sees it: the security model that confines the VMs and its state, the models stacked under it, the accelerator")
    .option('--json', 'JSON output')
    .action((opts: { json?: boolean }) => withSession(async (session) => {
      const status = await session.helper().request('status');
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ version: status.version, security: status.security, accel: status.accel }, null, 2)}\n`);
        return;
      }
      process.stdout.write(`security model: ${activeModelText(status.security)}\naccelerator: ${status.accel.kind} (${status.accel.reason})\nhelper: ${status.version}\n`);
    }));

  program
    .command('show')
    .description('how one VM is confined: its security model, its labels part by part (running: as the helper describes them; stopped: as this host would start it)')
    .argument('<name>')
    .option('--json', 'JSON output')
    .action((name: string, opts: { json?: boolean }) => withSession(async (session) => {
      const { vms } = await session.service.list();
      const vm = vms.find((v) => v.name === name);
      if (!vm) throw new Error(`no VM named ${name}`);
      const security = vm.state !== 'stopped' && vm.security ? vm.security : describeStopped((await session.helper().request('status')).security, vm.seclabel);
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ name: vm.name, state: vm.state, confinement: vm.confinement, security }, null, 2)}\n`);
        return;
      }
      process.stdout.write(`${[`${vm.name}: ${vm.state}${vm.confinement ? `, ${vm.confinement}` : ''}`, ...describeLines(security)].join('\n')}\n`);
    }));
}
