import { lazy, Suspense } from 'react';
import type { VmDetails } from '../../../src/contracts/ipc-contract';
import { useApi, useSvirtEvent } from '../api';
import { CONFINEMENT_TEXT, confinementOf, UnconfinedWarning } from '../common/confinement';
import { Notice } from '../common/Notice';
import { StateBadge } from '../common/StateBadge';
import { useAsync } from '../common/use-async';
import { ContextText } from '../mcs/ContextText';
import { McsChip } from '../mcs/McsChip';
import type { VmTab } from '../navigation';
import { formatMemory } from '../vms/VmList';
import { DisksPanel } from './DisksPanel';
import { ResourceTable } from './ResourceTable';
import { SeclabelPanel } from './SeclabelPanel';
import { VmActions } from './VmActions';

// xterm.js is half the bundle; it loads when a console is first opened.
const ConsoleView = lazy(() => import('../console/ConsoleView').then((module) => ({ default: module.ConsoleView })));

// noVNC loads when a display is first opened, like xterm.js.
const DisplayView = lazy(() => import('../display/DisplayView').then((module) => ({ default: module.DisplayView })));

const TABS: readonly { id: VmTab; label: string }[] = [
  { id: 'overview', label: 'Overview' },
  { id: 'console', label: 'Console' },
  { id: 'display', label: 'Display' },
  { id: 'seclabel', label: 'Security label' },
  { id: 'disks', label: 'Disks & snapshots' },
];

function bootText(details: VmDetails): string {
  const { boot } = details.definition;
  if (boot.kind === 'disk') return 'first disk';
  if (boot.kind === 'iso') return `ISO ${boot.iso}`;
  return `kernel ${boot.kernel}${boot.initrd ? ` + initrd` : ''}`;
}

/** The seclabel in plain words first; the libvirt terms follow, for those who know them. */
export function labelInWords(seclabel: VmDetails['summary']['seclabel']): { words: string; exact: string } {
  const files = seclabel.relabel ? 'files relabeled' : 'files left as they are';
  const words =
    seclabel.mode === 'dynamic'
      ? `a fresh pair at each start; ${files}`
      : seclabel.mode === 'static'
        ? `always the same pair; ${files}`
        : 'none: qemu runs unconfined; files left as they are';
  return { words, exact: `seclabel ${seclabel.mode}, ${seclabel.relabel ? 'relabel' : 'no relabel'}` };
}

function Overview({ details, reload }: { details: VmDetails; reload: () => void }) {
  const { summary } = details;
  return (
    <>
      <section className="card" aria-label="Confinement">
        <h2 className="card__title">Confinement</h2>
        {confinementOf(summary) === 'unconfined' && summary.state === 'stopped' && (
          <Notice tone="warning" title="Will run unconfined">
            {summary.notConfinedReason ?? 'qemu runs without an sVirt label.'}
          </Notice>
        )}
        <dl className="facts">
          <dt>{summary.state === 'stopped' ? 'At start' : 'Now'}</dt>
          <dd data-testid="confinement-state">
            {CONFINEMENT_TEXT[confinementOf(summary)]}
            {summary.notConfinedReason && <span className="facts__exact">{summary.notConfinedReason}</span>}
          </dd>
          <dt>Model</dt>
          <dd data-testid="security-model">
            {summary.security.modelName}
            <span className="facts__exact">{summary.security.summary}</span>
            {summary.security.layers.map((layer) => (
              <span key={layer.model} className="facts__exact" data-testid={`security-layer-${layer.model}`}>
                under it, {layer.modelName}: {layer.summary}
              </span>
            ))}
          </dd>
          <dt>Process</dt>
          <dd className="label-cell">
            <McsChip mark={summary.processLevel} />
            <ContextText label={summary.processLabel} parts={summary.security.processParts} empty={summary.seclabel.mode === 'dynamic' ? 'a fresh pair is assigned at start' : '—'} />
          </dd>
          <dt>Private images</dt>
          <dd className="label-cell">
            <McsChip mark={summary.imageLevel} />
            <ContextText label={summary.imageLabel} parts={summary.security.imageParts} empty={summary.seclabel.mode === 'dynamic' ? 'follows the pair at start' : '—'} />
          </dd>
          <dt>Label</dt>
          <dd data-testid="label-words">
            {labelInWords(summary.seclabel).words}
            <span className="facts__exact">{labelInWords(summary.seclabel).exact}</span>
          </dd>
          <dt>Machine</dt>
          <dd>
            {summary.vcpus} vCPU · {formatMemory(summary.memoryMiB)} · boots from {bootText(details)}
            {summary.pid !== null && ` · qemu pid ${summary.pid}`}
          </dd>
        </dl>
      </section>
      <section className="card" aria-label="Files">
        <h2 className="card__title">Files and their labels</h2>
        <ResourceTable vm={summary.name} state={summary.state} resources={details.resources} onChanged={reload} />
      </section>
    </>
  );
}

interface VmDetailsScreenProps {
  name: string;
  tab: VmTab;
  onTab: (tab: VmTab) => void;
  onBack: () => void;
  onDeleted: () => void;
}

export function VmDetailsScreen({ name, tab, onTab, onBack, onDeleted }: VmDetailsScreenProps) {
  const api = useApi();
  const details = useAsync(() => api.getVm({ name }), [api, name]);
  useSvirtEvent('vmStateChanged', (change) => change.vm === name && details.reload());

  const vm = details.data;
  return (
    <div className="screen">
      <button type="button" className="link back" onClick={onBack}>
        ← Virtual machines
      </button>
      {details.error && !vm && (
        <Notice tone="error" title={`Could not load ${name}`}>
          {details.error}
        </Notice>
      )}
      {vm && (
        <>
          <header className="screen__header">
            <div className="title-row">
              <h1>{vm.summary.name}</h1>
              <StateBadge state={vm.summary.state} />
              <McsChip mark={vm.summary.processLevel} unenforced={!vm.summary.confined} />
            </div>
            <VmActions
              vm={vm.summary}
              onChanged={details.reload}
              onDeleted={() => {
                void import('../console/console-registry').then((registry) => registry.forgetConsole(name));
                onDeleted();
              }}
            />
          </header>
          {details.error && <Notice tone="error">{details.error}</Notice>}
          {confinementOf(vm.summary) === 'unconfined' && vm.summary.state !== 'stopped' && <UnconfinedWarning vm={vm.summary.name} reason={vm.summary.notConfinedReason} />}
          <div className="tabs" role="tablist" aria-label={`${name} views`}>
            {TABS.filter((t) => t.id !== 'display' || vm.definition.display === 'vnc').map((t) => (
              <button
                key={t.id}
                type="button"
                role="tab"
                id={`tab-${t.id}`}
                aria-selected={tab === t.id}
                aria-controls={`panel-${t.id}`}
                className="tabs__tab"
                onClick={() => onTab(t.id)}
              >
                {t.label}
              </button>
            ))}
          </div>
          <div role="tabpanel" id={`panel-${tab}`} aria-labelledby={`tab-${tab}`} className="tabs__panel">
            {tab === 'overview' && <Overview details={vm} reload={details.reload} />}
            {tab === 'console' && (
              <Suspense fallback={<p className="empty">Loading the console…</p>}>
                <ConsoleView vm={name} state={vm.summary.state} unconfinedReason={confinementOf(vm.summary) === 'unconfined' ? (vm.summary.notConfinedReason ?? 'no confining label') : undefined} />
              </Suspense>
            )}
            {tab === 'display' && (
              <Suspense fallback={<p className="empty">Loading the display…</p>}>
                <DisplayView vm={name} state={vm.summary.state} />
              </Suspense>
            )}
            {tab === 'disks' && <DisksPanel key={vm.summary.name} details={vm} onChanged={details.reload} onRenamed={onBack} />}
            {tab === 'seclabel' && <SeclabelPanel key={JSON.stringify(vm.definition.seclabel)} details={vm} onSaved={details.reload} />}
          </div>
        </>
      )}
      {!vm && !details.error && <p className="empty">Loading…</p>}
    </div>
  );
}
