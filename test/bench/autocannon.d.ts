/** The part of autocannon 8's programmatic API the bench uses (the package ships no types). */
declare module 'autocannon' {
  import type { EventEmitter } from 'node:events';

  export interface Options {
    url: string;
    connections?: number;
    /** Seconds. */
    duration?: number;
    method?: string;
    body?: string | Buffer;
    headers?: Record<string, string>;
    /** Seconds. */
    timeout?: number;
    pipelining?: number;
    overallRate?: number;
  }

  export interface Histogram {
    readonly average: number;
    readonly p50: number;
    readonly p99: number;
    readonly p99_9: number;
    readonly total: number;
  }

  export interface Result {
    /** Seconds, to 10 ms. */
    readonly duration: number;
    readonly errors: number;
    readonly timeouts: number;
    readonly non2xx: number;
    readonly requests: Histogram;
    readonly latency: Histogram;
    readonly throughput: Histogram;
  }

  export interface Instance extends EventEmitter, PromiseLike<Result> {
    /** `responseTime` in ms with sub-ms precision (process.hrtime). */
    on(event: 'response', listener: (client: unknown, statusCode: number, resBytes: number, responseTime: number) => void): this;
    on(event: 'reqError', listener: (err: Error) => void): this;
    on(event: string, listener: (...args: unknown[]) => void): this;
    stop(): void;
  }

  function autocannon(options: Options): Instance;
  export default autocannon;
}
