import { useState } from 'react';
import type { LabelPart, McsLevel, RelabelTarget, ResourceClass, VmResource, VmState } from '../../../src/contracts/ipc-contract';
import { ContextText } from '../mcs/ContextText';
import { McsChip } from '../mcs/McsChip';
import { RelabelDialog } from './RelabelDialog';
import { RELABEL_TARGETS } from './relabel-targets';
import { PathText } from '../common/PathText';

const CLASS_TEXT: Record<ResourceClass, string> = {
  private: 'private',
  shared: 'shared read-write',
  readonly: 'shared read-only',
  content: 'read-only content',
  char: 'character device',
};

function LabelWithChip({ label, parts, mark, empty }: { label: string | null; parts: readonly LabelPart[]; mark: McsLevel | null; empty: string }) {
  return (
    <div className="label-cell">
      {label !== null && <McsChip mark={mark} />}
      <ContextText label={label} parts={parts} empty={empty} />
    </div>
  );
}

const DISK_CLASSES: readonly ResourceClass[] = ['private', 'shared', 'readonly'];

function Status({ resource, state, onFix }: { resource: VmResource; state: VmState; onFix: (() => void) | null }) {
  if (resource.problem) return <span className="badge badge--error">{resource.problem}</span>;
  if (resource.expectedLabel === null) {
    // Nothing is expected of a file that is never relabeled, or of one whose own label is back while the VM is off.
    return <span className="badge badge--muted">{!resource.relabel ? 'left alone' : state === 'stopped' ? 'labeled at start' : 'left alone'}</span>;
  }
  if (resource.match) return <span className="badge badge--ok">matches</span>;
  return (
    <span className="status-cell">
      <span className="badge badge--warning" data-testid="mismatch-badge">
        mismatch
      </span>
      {onFix && (
        <button type="button" className="button button--small" aria-label={`Fix the label of ${resource.path}`} onClick={onFix}>
          Fix
        </button>
      )}
    </span>
  );
}

interface ResourceTableProps {
  vm: string;
  state: VmState;
  resources: readonly VmResource[];
  /** After a relabel, so the table shows the labels as they are now. */
  onChanged: () => void;
}

/** Every file the VM uses: how it is shared, the label it should have, the label it has, and one-click sharing changes. */
export function ResourceTable({ vm, state, resources, onChanged }: ResourceTableProps) {
  const [relabel, setRelabel] = useState<{ resource: VmResource; to: RelabelTarget } | null>(null);
  // A running qemu holds its images open with the labels it started with; change them between runs.
  const canRelabel = state === 'stopped';

  if (resources.length === 0) return <p className="empty">This VM uses no files.</p>;
  return (
    <>
      <table className="table resource-table" aria-label="Resources">
        <thead>
          <tr>
            <th scope="col">Resource</th>
            <th scope="col">Class</th>
            <th scope="col">Should have</th>
            <th scope="col">On disk</th>
            <th scope="col">Status</th>
            <th scope="col">Sharing</th>
          </tr>
        </thead>
        <tbody>
          {resources.map((resource) => (
            <tr key={resource.path} data-testid={`resource-${resource.path}`} className={!resource.match ? 'row--warning' : undefined}>
              <th scope="row">
                <div className="resource-name">
                  <span className="resource-kind">
                    {resource.kind}
                    {resource.target && ` ${resource.target}`}
                    {resource.isTree && ' (tree)'}
                  </span>
                  <PathText path={resource.path} />
                  {resource.hostDevice && (
                    <span className="muted" data-testid="host-device">
                      block device {resource.hostDevice.node}
                      {' · '}
                      {resource.hostDevice.inUse.length === 0 ? 'not used by the host' : `in use on the host: ${resource.hostDevice.inUse.join('; ')}`}
                    </span>
                  )}
                </div>
              </th>
              <td>{CLASS_TEXT[resource.class]}</td>
              <td>
                <LabelWithChip label={resource.expectedLabel} parts={resource.expectedParts} mark={resource.expectedLevel} empty={!resource.relabel ? 'not relabeled' : resource.freshPair ? 'a fresh pair at start' : '—'} />
              </td>
              <td>
                <LabelWithChip label={resource.actualLabel} parts={resource.actualParts} mark={resource.actualLevel} empty={resource.problem ? 'unreadable' : 'no label'} />
              </td>
              <td>
                <Status
                  resource={resource}
                  state={state}
                  // Relabeling to its own class puts back the label it should have.
                  onFix={canRelabel && DISK_CLASSES.includes(resource.class) ? () => setRelabel({ resource, to: resource.class as RelabelTarget }) : null}
                />
              </td>
              <td>
                {resource.kind === 'disk' ? (
                  <div className="segmented" role="group" aria-label={`Sharing of ${resource.path}`}>
                    {RELABEL_TARGETS.map(({ target, button }) => (
                      <button
                        key={target}
                        type="button"
                        className="segmented__option"
                        aria-pressed={resource.class === target}
                        disabled={!canRelabel || resource.class === target}
                        title={canRelabel ? undefined : 'Stop the VM to change how its files are shared'}
                        onClick={() => setRelabel({ resource, to: target })}
                      >
                        {button}
                      </button>
                    ))}
                  </div>
                ) : (
                  <span className="muted">{resource.class === 'content' ? 'always read-only' : 'follows the VM'}</span>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {relabel && <RelabelDialog vm={vm} resource={relabel.resource} to={relabel.to} onClose={() => setRelabel(null)} onApplied={onChanged} />}
    </>
  );
}
