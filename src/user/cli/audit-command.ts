import type { Command } from 'commander';
import { auditedVms, auditHost, compareWithOffline, idleContent } from '../audit-service';
import { cellsOf } from '../../core/selinux/audit-report';
import { selinuxMode } from '../../security/selinux/host-selinux';
import { CliError, EXIT } from './exit-codes';
import { textTable } from './text-table';
import { withSession } from './vm-commands';

/**
 * `svirt audit`: the live access matrix of the requester's running VMs (each VM against every file a
 * running VM uses, and the content trees of stopped ones), the problems found, and each VM's confinement,
 * in the host's security model (SELinux, or the loaded AppArmor profiles), which it names. With --compare-offline, on a kernel with
 * SELinux on, every permission is also asked of the offline evaluator on the kernel's loaded policy, and
 * the differences are listed (exit 1 when there are any): the check an enforcing test host runs.
 */
export function registerAuditCommand(program: Command): void {
  program
    .command('audit')
    .description('who can read or write which file among the running VMs, as the host\'s security model (SELinux or AppArmor) decides it; exit 1 on a critical problem (with --compare-offline: on a disagreement)')
    .option('--json', 'JSON output (one object)')
    .option('--compare-offline', 'also ask the offline policy evaluator (on the kernel\'s loaded policy) and list where it differs from the kernel')
    .option('--policy <file>', 'with --compare-offline: evaluate this binary policy instead of the loaded one')
    .action((opts: { json?: boolean; compareOffline?: boolean; policy?: string }) => withSession(async ({ service }) => {
      if (opts.policy !== undefined && !opts.compareOffline) throw new CliError('--policy goes with --compare-offline');
      const mode = await selinuxMode();
      if (opts.compareOffline && mode === 'disabled') throw new CliError('--compare-offline needs a kernel with SELinux on (enforcing or permissive): there is no kernel to compare with');
      const vms = await auditedVms(service);
      const matrix = await auditHost(mode, vms, () => service.vmProfiles(), { idle: await idleContent(service.store, vms) });
      const comparison = opts.compareOffline ? await compareWithOffline(vms, opts.policy === undefined ? {} : { policyPath: opts.policy }) : undefined;

      if (opts.json) {
        // Scripts get one object per cell, not the packed grid the app's renderer reads.
        const { verdicts: _v, runs: _r, ...rest } = matrix;
        process.stdout.write(`${JSON.stringify({ model: matrix.source.model, mode, ...rest, cells: cellsOf(matrix), ...(comparison ? { comparison } : {}) })}\n`);
      } else {
        process.stdout.write(`${matrix.source.model === 'selinux' ? `SELinux ${mode}` : matrix.source.modelName}: ${matrix.source.why}\n`);
        const held = new Map(vms.map((vm) => [vm.name, vm.confinement ?? (vm.confined ? 'confined' : 'unconfined')]));
        const rows = [['VM', 'CONFINEMENT', 'FILE', 'ACCESS', 'WHY']];
        for (const cell of cellsOf(matrix)) rows.push([cell.vm, held.get(cell.vm) ?? '-', cell.path, cell.access, cell.reason]);
        process.stdout.write(`${textTable(rows)}\n`);
        for (const p of matrix.problems) process.stdout.write(`${p.severity}: ${p.message}\n`);
        if (comparison) {
          process.stdout.write(`compared with the evaluator on ${comparison.policyPath}: ${comparison.checks} checks, ${comparison.disagreements.length} disagreement(s)\n`);
          for (const d of comparison.disagreements) {
            process.stdout.write(`  ${d.vm} ${d.path} ${d.tclass} ${d.perm}: kernel ${d.kernel.decision} (${d.kernel.reason}); evaluator ${d.evaluator.decision} (${d.evaluator.reason})\n`);
          }
        }
      }
      // Compared: the answer is whether kernel and evaluator agree. Otherwise: whether the host is sound.
      if (comparison) {
        if (comparison.disagreements.length > 0) process.exitCode = EXIT.negative;
      } else if (matrix.problems.some((p) => p.severity === 'critical')) {
        process.exitCode = EXIT.negative;
      } else if (cellsOf(matrix).some((c) => c.access === 'error')) {
        process.exitCode = EXIT.unknown;
      }
    }));
}
