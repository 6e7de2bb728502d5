import { useLayoutEffect, useMemo, useRef, useState } from 'react';
import { useVirtualizer } from '@tanstack/react-virtual';
import type { VmState, VmSummary } from '../../../src/contracts/ipc-contract';
import { CONFINEMENT_TEXT, confinementOf } from '../common/confinement';
import { StateBadge } from '../common/StateBadge';
import { ContextText } from '../mcs/ContextText';
import { observeRectOrWindow } from '../common/virtual';
import { McsChip } from '../mcs/McsChip';
import { findPairConflicts } from './pair-conflicts';

const STATES: readonly VmState[] = ['running', 'starting', 'stopping', 'stopped'];

export function formatMemory(mib: number): string {
  return mib >= 1024 && mib % 1024 === 0 ? `${mib / 1024} GiB` : `${mib} MiB`;
}

const ROW_ESTIMATE = 96;
const COLUMNS = 6;

/**
 * The VM table: who runs, whether confined, with which pair; conflicts between pairs are outlined.
 * Windowed in the screen's scroll area: with 1,000 VMs only the rows in view (and a few beyond, so Tab
 * always has a next row to go to) are in the DOM, each measured as it renders; the table keeps its
 * full row count for assistive technology.
 */
export function VmList({ vms, onOpen }: { vms: readonly VmSummary[]; onOpen: (name: string) => void }) {
  const [nameFilter, setNameFilter] = useState('');
  const [stateFilter, setStateFilter] = useState<VmState | 'all'>('all');
  // Conflicts are found over every VM, not the filtered ones: a hidden VM can still hold the same pair.
  const conflicts = useMemo(() => findPairConflicts(vms), [vms]);
  const shown = useMemo(() => {
    const needle = nameFilter.trim().toLowerCase();
    return vms.filter((vm) => vm.name.toLowerCase().includes(needle) && (stateFilter === 'all' || vm.state === stateFilter));
  }, [vms, nameFilter, stateFilter]);
  const bodyRef = useRef<HTMLTableSectionElement>(null);
  const [scrollMargin, setScrollMargin] = useState(0);
  // The app's content pane scrolls; alone on a page (tests), the document does.
  const scrollArea = () => (bodyRef.current?.closest('.content') as HTMLElement | null) ?? (document.scrollingElement as HTMLElement | null);
  const rows = useVirtualizer({
    count: shown.length, getScrollElement: scrollArea, estimateSize: () => ROW_ESTIMATE, overscan: 6, scrollMargin,
    observeElementRect: observeRectOrWindow, getItemKey: (index) => shown[index]?.name ?? index,
  });
  // Where the rows start in the scroll area (below the header, the toolbar and the table head).
  useLayoutEffect(() => {
    const body = bodyRef.current;
    const area = scrollArea();
    if (!body || !area) return;
    setScrollMargin(body.getBoundingClientRect().top - area.getBoundingClientRect().top + area.scrollTop);
  });
  const items = rows.getVirtualItems();
  const padTop = items.length > 0 ? (items[0]?.start ?? 0) - scrollMargin : 0;
  const padBottom = items.length > 0 ? rows.getTotalSize() - ((items[items.length - 1]?.end ?? 0) - scrollMargin) : 0;

  return (
    <section className="vm-list" aria-label="Virtual machines">
      <div className="toolbar">
        <input
          type="search"
          className="input toolbar__search"
          placeholder="Filter by name"
          aria-label="Filter by name"
          value={nameFilter}
          onChange={(e) => setNameFilter(e.target.value)}
        />
        <select className="input" aria-label="Filter by state" value={stateFilter} onChange={(e) => setStateFilter(e.target.value as VmState | 'all')}>
          <option value="all">All states</option>
          {STATES.map((state) => (
            <option key={state} value={state}>
              {state[0]?.toUpperCase() + state.slice(1)}
            </option>
          ))}
        </select>
        <span className="toolbar__count" aria-live="polite">
          {shown.length === vms.length ? `${vms.length} ${vms.length === 1 ? 'VM' : 'VMs'}` : `${shown.length} of ${vms.length} VMs`}
        </span>
      </div>

      {shown.length === 0 ? (
        <p className="empty">{vms.length === 0 ? 'No VMs yet. Create one to get started.' : 'No VM matches the filter.'}</p>
      ) : (
        <table className="table vm-table" aria-rowcount={shown.length + 1}>
          <thead>
            <tr aria-rowindex={1}>
              <th scope="col">Name</th>
              <th scope="col">State</th>
              <th scope="col">Confinement</th>
              <th scope="col">Labels</th>
              <th scope="col" className="num">
                vCPU
              </th>
              <th scope="col" className="num">
                Memory
              </th>
            </tr>
          </thead>
          <tbody ref={bodyRef}>
            {padTop > 0 && (
              <tr aria-hidden="true" className="vm-table__pad">
                <td colSpan={COLUMNS} style={{ height: padTop }} />
              </tr>
            )}
            {items.map((item) => {
              const vm = shown[item.index] as VmSummary;
              const conflict = conflicts.get(vm.name);
              const sharedWarning = conflict && conflict.sharesPairWith.length > 0 ? `same MCS pair as ${conflict.sharesPairWith.join(', ')}` : null;
              const imageWarning = conflict?.imagePairDiffers ? `image pair differs from the VM's ${vm.processLevel?.level ?? ''}` : null;
              const confinement = confinementOf(vm);
              const unconfined = confinement === 'unconfined';
              const rowClass = unconfined ? 'row--danger' : sharedWarning || imageWarning ? 'row--warning' : undefined;
              return (
                <tr key={vm.name} data-testid={`vm-row-${vm.name}`} className={rowClass} data-index={item.index} ref={rows.measureElement} aria-rowindex={item.index + 2}>
                  <th scope="row">
                    <button type="button" className="link vm-name" title={vm.name} onClick={() => onOpen(vm.name)}>
                      {vm.name}
                    </button>
                    {sharedWarning && <div className="row-warning">⚠ Same MCS pair as {conflict?.sharesPairWith.join(', ')}: they can open each other's images</div>}
                    {imageWarning && <div className="row-warning">⚠ Image pair differs from the process pair</div>}
                  </th>
                  <td>
                    <StateBadge state={vm.state} />
                  </td>
                  <td data-testid="confinement">
                    {confinement === 'unconfined' ? (
                      <span className="confined confined--no" title={vm.notConfinedReason ?? undefined}>
                        ⚠ {CONFINEMENT_TEXT.unconfined}
                        {vm.notConfinedReason && <span className="confined__reason">{vm.notConfinedReason}</span>}
                      </span>
                    ) : (
                      <span className={`confined confined--${confinement === 'confined' ? 'yes' : 'permissive'}`}>
                        {CONFINEMENT_TEXT[confinement]}{' '}
                        <span className="confined__reason" data-testid="vm-model">
                          by {vm.security.modelName}
                        </span>
                      </span>
                    )}
                  </td>
                  {/* qemu's label over its images' in one column: two context columns do not fit a 960 px window. */}
                  <td className="labels-cell">
                    <div className="label-cell" data-testid="process-context">
                      <span className="label-cell__role">qemu</span>
                      <McsChip mark={vm.processLevel} warning={sharedWarning} unenforced={unconfined} />
                      <ContextText label={vm.processLabel} parts={vm.security.processParts} empty={vm.seclabel.mode === 'dynamic' ? 'assigned at start' : '—'} />
                    </div>
                    <div className="label-cell" data-testid="image-context">
                      <span className="label-cell__role">images</span>
                      <McsChip mark={vm.imageLevel} warning={imageWarning} unenforced={unconfined} />
                      <ContextText label={vm.imageLabel} parts={vm.security.imageParts} empty={vm.seclabel.mode === 'dynamic' ? 'assigned at start' : '—'} />
                    </div>
                  </td>
                  <td className="num">{vm.vcpus}</td>
                  <td className="num">{formatMemory(vm.memoryMiB)}</td>
                </tr>
              );
            })}
            {padBottom > 0 && (
              <tr aria-hidden="true" className="vm-table__pad">
                <td colSpan={COLUMNS} style={{ height: padBottom }} />
              </tr>
            )}
          </tbody>
        </table>
      )}
    </section>
  );
}
