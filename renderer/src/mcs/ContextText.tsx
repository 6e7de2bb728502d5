import { parseContext } from '../../../src/core/selinux/context';

/**
 * A security context in monospace with its type emphasised, since the type and the level are what the
 * policy decides on; malformed text is shown as it is.
 */
export function ContextText({ context, empty = '—' }: { context: string | null; empty?: string }) {
  if (context === null) return <span className="context context--empty">{empty}</span>;
  let parts: { user: string; role: string; type: string; level: string | null } | null;
  try {
    const parsed = parseContext(context);
    const fields = context.split(':');
    parts = { user: parsed.user, role: parsed.role, type: parsed.type, level: fields.length > 3 ? fields.slice(3).join(':') : null };
  } catch {
    parts = null;
  }
  if (!parts) return <code className="context">{context}</code>;
  // Lines may break after a colon (<wbr>), never inside a type or a level.
  return (
    <code className="context" title={context}>
      <span className="context__dim">
        {parts.user}:<wbr />
        {parts.role}:<wbr />
      </span>
      <span className="context__type">{parts.type}</span>
      {parts.level !== null && (
        <>
          <span className="context__dim">:</span>
          <wbr />
          <span className="context__level">{parts.level}</span>
        </>
      )}
    </code>
  );
}
