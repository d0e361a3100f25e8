/** The bounded method label: standard methods keep their name, anything else is `OTHER`, so clients cannot mint series. */
export const STANDARD_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'] as const;
export const OTHER_METHOD = 'OTHER';

const KNOWN = new Set<string>(STANDARD_METHODS);

export function methodLabel(method: string | undefined): string {
  return method !== undefined && KNOWN.has(method) ? method : OTHER_METHOD;
}
