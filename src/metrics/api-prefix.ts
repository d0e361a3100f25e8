/** The API prefix rule, in one place: a path is under the prefix on whole segments only. */

/**
 * A test for "at or below `apiPrefix`": `/api` and `/api/x` are, `/apix` is not; with the prefix `/`,
 * every path is. Built once per prefix, so the request path pays one comparison and no allocation.
 */
export function prefixMatcher(apiPrefix: string): (path: string) => boolean {
  if (apiPrefix === '/') return () => true;
  const under = `${apiPrefix}/`;
  return (path) => path === apiPrefix || path.startsWith(under);
}
