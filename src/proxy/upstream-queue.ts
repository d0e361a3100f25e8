/**
 * The HTTP/1.1 leg's wait for a connection, in front of undici's pool. undici queues what it cannot
 * send at once, but a request in its queue leaves only when it is handed a connection; so a request
 * goes to undici only when one of the bound's connections is free for it (undici queues it at most
 * for the moment a connection takes to come back to its pool), and otherwise waits here, where a
 * request given up (its client left, or the response timeout answered) leaves at once: no
 * connection is touched for it, and it holds nothing while the others wait.
 *
 * - A slot is taken when a request is handed to undici and freed on the last thing undici tells its
 *   handler (onComplete or onError: exactly one of them ends every request undici took).
 * - The queue is linked through the handlers themselves: no allocation per waiting request, and
 *   nothing at all when a connection is free.
 */
import type { UpstreamHandler, UpstreamRequest } from './upstream-pool.js';

/** Where a request whose slot frees comes from: `release` is what the handler calls, once. */
export interface SlotOwner {
  release(): void;
}

/** The pool's bookkeeping on each handler: the links of the wait queue, and the slot it holds. */
export interface QueueLinks {
  /** The request, while the handler waits in the queue (undefined otherwise). */
  waitingRequest: UpstreamRequest | undefined;
  waitingPrev: UpstreamHandler | undefined;
  waitingNext: UpstreamHandler | undefined;
  /** The pool whose slot the request holds, from its dispatch to undici until undici is done with it. */
  slotOwner: SlotOwner | undefined;
}

export class ConnectionSlots implements SlotOwner {
  private busy = 0;
  private head: UpstreamHandler | undefined = undefined;
  private tail: UpstreamHandler | undefined = undefined;
  private pumping = false;
  private closed = false;

  constructor(
    private readonly bound: number,
    /** Hands a request to undici (it may call the handler back before returning). */
    private readonly send: (request: UpstreamRequest, handler: UpstreamHandler) => void,
  ) {}

  /** Sends now when a connection is free for it, else queues it, oldest first. */
  dispatch(request: UpstreamRequest, handler: UpstreamHandler): void {
    if (this.busy < this.bound && this.head === undefined) this.take(request, handler);
    else if (this.closed) this.send(request, handler); // undici fails it as closed
    else this.push(request, handler);
  }

  /** Takes a waiting request out of the queue; false when it is not in it (already sent, or never queued). */
  withdraw(handler: UpstreamHandler): boolean {
    if (handler.waitingRequest === undefined) return false;
    const { waitingPrev: prev, waitingNext: next } = handler;
    if (prev === undefined) this.head = next;
    else prev.waitingNext = next;
    if (next === undefined) this.tail = prev;
    else next.waitingPrev = prev;
    handler.waitingRequest = handler.waitingPrev = handler.waitingNext = undefined;
    return true;
  }

  release(): void {
    this.busy--;
    if (this.head !== undefined) this.pump();
  }

  /** Everything still waiting goes to undici, which is closed by now and fails each request as closed. */
  close(): void {
    this.closed = true;
    for (let handler = this.head; handler !== undefined; handler = this.head) this.send(this.unqueue(handler), handler);
  }

  private take(request: UpstreamRequest, handler: UpstreamHandler): void {
    this.busy++;
    handler.slotOwner = this;
    this.send(request, handler);
  }

  /** Sends waiting requests while connections are free; a release during a send (undici failing it at once) loops here. */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      for (let handler = this.head; handler !== undefined && this.busy < this.bound && !this.closed; handler = this.head) {
        this.take(this.unqueue(handler), handler);
      }
    } finally {
      this.pumping = false;
    }
  }

  private push(request: UpstreamRequest, handler: UpstreamHandler): void {
    handler.waitingRequest = request;
    handler.waitingPrev = this.tail;
    handler.waitingNext = undefined;
    if (this.tail === undefined) this.head = handler;
    else this.tail.waitingNext = handler;
    this.tail = handler;
  }

  /** Takes a queued handler out, and gives its request. */
  private unqueue(handler: UpstreamHandler): UpstreamRequest {
    const request = handler.waitingRequest as UpstreamRequest;
    this.withdraw(handler);
    return request;
  }
}
