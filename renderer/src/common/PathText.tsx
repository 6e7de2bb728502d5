import { Fragment } from 'react';

/**
 * A file path that wraps only at its slashes (never "svi rt" mid-name), whole on hover, and selected
 * whole by one click so it can be copied.
 */
export function PathText({ path, className = '' }: { path: string; className?: string }) {
  const parts = path.split('/');
  return (
    <code className={`path ${className}`.trim()} title={path}>
      {parts.map((part, i) => (
        // Text nodes straight in the <code>, so the path reads (and is found) as one string.
        <Fragment key={i}>
          {i > 0 && <wbr />}
          {i > 0 ? `/${part}` : part}
        </Fragment>
      ))}
    </code>
  );
}
