/**
 * The live status page and its data: where they are mounted, and the data endpoint. The data's
 * shape is in status-snapshot.ts, its collection in status-collector.ts, the page in status-page.ts.
 */
import { prefixMatcher } from '../metrics/api-prefix.js';
import { type StatusOptions, createStatusCollector } from './status-collector.js';
import { createStatusPageHandler } from './status-page.js';
import { type Handler, allowGetOrHead, errorBody, sendJson } from '../respond.js';

export type { StatusOptions } from './status-collector.js';
export type { Latency, RouteStatus, StatusSnapshot } from './status-snapshot.js';

export const STATUS_PAGE_PATH = '/status';
export const STATUS_DATA_PATH = '/status.json';

const NO_STORE = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' };

export function createStatusDataEndpoint(options: StatusOptions): Handler {
  const collect = createStatusCollector(options);
  return (req, res) => {
    if (!allowGetOrHead(req, res)) return;
    collect().then(
      (snapshot) => sendJson(res, 200, snapshot, NO_STORE),
      (err: unknown) => {
        options.log.error({ err }, 'collecting status failed');
        sendJson(res, 500, errorBody('collecting status failed'));
      },
    );
  };
}

export interface StatusRouteOptions extends StatusOptions {
  readonly apiPrefix: string;
  readonly metricsPath: string;
  /** True on the separate admin listener (--metrics-port), which forwards nothing. */
  readonly adminListener: boolean;
  /** Wraps the data endpoint in the metrics token check, when there is one. */
  readonly protect: (handler: Handler) => Handler;
}



/**
 * Where the page and its data live. On the admin listener: `/` and `/status`, data `/status.json`. On the
 * main listener: `/status` and `/status.json`, unless the API prefix covers them (`--api-prefix /`): the
 * service's own `/status` then keeps being forwarded, and the page moves next to the metrics path
 * (`/metrics/status`, `/metrics/status.json`), as `/metrics/routes` does. The page fetches `status.json`
 * relative to itself, so every placement works.
 */
export function statusPaths(apiPrefix: string, metricsPath: string, adminListener: boolean): { pages: string[]; data: string } {
  if (adminListener) return { pages: ['/', STATUS_PAGE_PATH], data: STATUS_DATA_PATH };
  const underPrefix = prefixMatcher(apiPrefix);
  if (!underPrefix(STATUS_PAGE_PATH) && !underPrefix(STATUS_DATA_PATH)) {
    return { pages: [STATUS_PAGE_PATH], data: STATUS_DATA_PATH };
  }
  const base = metricsPath === '/' ? '' : metricsPath;
  return { pages: [`${base}${STATUS_PAGE_PATH}`], data: `${base}${STATUS_DATA_PATH}` };
}

/** The status routes to add to the listener's own paths (a path already taken, such as the metrics path, wins). */
export function createStatusRoutes(options: StatusRouteOptions): Array<[string, Handler]> {
  const { pages, data } = statusPaths(options.apiPrefix, options.metricsPath, options.adminListener);
  const page = createStatusPageHandler(options.log);
  return [...pages.map((path): [string, Handler] => [path, page]), [data, options.protect(createStatusDataEndpoint(options))]];
}
