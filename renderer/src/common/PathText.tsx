import { Fragment } from 'react';

/**
 * A file path that wraps only before its slashes, never inside a name: not at a hyphen or a dot
 * ("web-server.qcow2" stays whole), not "svi rt". Each name is one unbreakable piece with a <wbr>
 * between pieces; a single name wider than its cell is cut with an ellipsis rather than broken. The
 * whole path is shown on hover, and one click selects all of it for copying (the DOM text is the path,
 * even where it is drawn cut).
 */
export function PathText({ path, className = '' }: { path: string; className?: string }) {
  const parts = path.split('/');
  return (
    <code className={`path ${className}`.trim()} title={path}>
      {parts.map((part, i) => (
        <Fragment key={i}>
          {i > 0 && <wbr />}
          {(i > 0 || part !== '') && <span className="path__part">{i > 0 ? `/${part}` : part}</span>}
        </Fragment>
      ))}
    </code>
  );
}
