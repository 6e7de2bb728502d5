/**
 * The app's own page is one file: dist/renderer/index.html. Navigation, permissions and IPC are allowed
 * for that page only, so a frame that ends up showing anything else (a link, a redirect, an injected
 * iframe) gets none of them.
 */
export function isAppPageUrl(candidate: string | null | undefined, appUrl: string): boolean {
  if (!candidate) return false;
  let url: URL;
  let app: URL;
  try {
    url = new URL(candidate);
    app = new URL(appUrl);
  } catch {
    return false;
  }
  // Hash changes stay on the page; the query is ignored because the app never uses one.
  return url.protocol === 'file:' && app.protocol === 'file:' && url.host === app.host && decodeURIComponent(url.pathname) === decodeURIComponent(app.pathname);
}
