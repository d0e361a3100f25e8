/**
 * The `rpc_method` label: a gRPC call's `package.Service/Method`, never more
 * names than a budget, as `http_route` is bounded. The first `maxMethods`
 * well-formed methods keep their name; later new ones, and anything not shaped
 * like a gRPC method (a scanner's path, an over-long name), are `_OTHER`,
 * OpenTelemetry's value for a method the instrumentation does not recognise.
 * Only the calls refused by a full budget are reported (`onOverflow`): a
 * malformed method is noise, as a path outside the API prefix is for routes.
 */
import { InvalidValueError } from '../errors.js';

export const OTHER_RPC_METHOD = '_OTHER';

/** Longer names are `_OTHER`: a real service and method name is far shorter. */
const MAX_METHOD_LENGTH = 256;
const IDENTIFIER = '[A-Za-z_][A-Za-z0-9_]*';
/** gRPC's `:path` without its slash: `{package}.{Service}/{Method}`, the package optional and dotted, all protobuf identifiers. */
const GRPC_METHOD = new RegExp(`^${IDENTIFIER}(?:\\.${IDENTIFIER})*/${IDENTIFIER}$`);

export interface RpcMethodTableOptions {
  /** How many distinct methods may be named (--max-routes). */
  readonly maxMethods: number;
  /** Called on every call whose new method did not fit the budget. */
  readonly onOverflow?: () => void;
}

export interface RpcMethodTable {
  /** The bounded rpc_method label of a method (`package.Service/Method`, unvalidated). */
  resolve(method: string): string;
  /** Distinct methods named so far (≤ maxMethods). */
  readonly size: number;
}

export function isGrpcMethodName(method: string): boolean {
  return method.length <= MAX_METHOD_LENGTH && GRPC_METHOD.test(method);
}

export function createRpcMethodTable(options: RpcMethodTableOptions): RpcMethodTable {
  const { maxMethods, onOverflow } = options;
  if (!Number.isSafeInteger(maxMethods) || maxMethods < 0) {
    throw new InvalidValueError('maxMethods', maxMethods, 'expected a whole number, 0 or more');
  }
  /** Method → the one string instance handed out for it (a flat copy, not a slice of the request's path). */
  const known = new Map<string, string>();
  return {
    resolve(method) {
      const label = known.get(method);
      if (label !== undefined) return label;
      if (!isGrpcMethodName(method)) return OTHER_RPC_METHOD;
      if (known.size >= maxMethods) {
        onOverflow?.();
        return OTHER_RPC_METHOD;
      }
      const kept = Buffer.from(method, 'latin1').toString('latin1');
      known.set(kept, kept);
      return kept;
    },
    get size() {
      return known.size;
    },
  };
}
