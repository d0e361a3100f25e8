/**
 * gRPC status codes as the metrics see them: a code's name (OpenTelemetry's
 * `rpc.status_code` is the code's string form) and whether it is the server's
 * fault. Pure, so the exchange (which counts `apiErrorCount{type="api"}`) and
 * the RPC family (`error_type`) classify a call the same way.
 */

/** The names of gRPC's status codes, indexed by code (0–16). */
export const GRPC_STATUS_NAMES = Object.freeze([
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
] as const);

const UNKNOWN = 2;
/**
 * The codes OpenTelemetry's gRPC conventions (docs/rpc/grpc.md, server spans) say a server SHOULD
 * count as errors: UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
 * The others (CANCELLED, INVALID_ARGUMENT, NOT_FOUND…) are the client's doing, not the service's.
 */
const SERVER_ERRORS: ReadonlySet<number> = new Set([2, 4, 12, 13, 14, 15]);

/** The code itself for 0–16; any other number is no code gRPC defines and reads as UNKNOWN, so labels stay bounded. */
function knownCode(status: number): number {
  return Number.isInteger(status) && status >= 0 && status < GRPC_STATUS_NAMES.length ? status : UNKNOWN;
}

/** `OK`, `CANCELLED`… for a status code; '' when there is none. */
export function grpcStatusName(status: number | undefined): string {
  return status === undefined ? '' : (GRPC_STATUS_NAMES[knownCode(status)] as string);
}

/** Whether a call that ended with `status` failed on the server's side (2, 4, 12, 13, 14, 15; any unknown code too). */
export function isGrpcServerError(status: number | undefined): boolean {
  return status !== undefined && SERVER_ERRORS.has(knownCode(status));
}
