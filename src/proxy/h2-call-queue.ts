/** The HTTP/2 leg's wait for a stream slot: calls in arrival order, those no longer queued skipped when reached. */
import type { H2Call } from './h2-call.js';

/** Calls waiting for a stream slot, first come first served; aborted ones are dropped when reached. */
export class CallQueue {
  private items: Array<H2Call | undefined> = [];
  private head = 0;

  push(call: H2Call): void {
    this.items.push(call);
  }

  /** The first call still waiting, taken off the queue. */
  shift(): H2Call | undefined {
    const call = this.peek();
    if (call === undefined) return undefined;
    this.items[this.head++] = undefined;
    // A queue that never empties (a steady backlog) is compacted now and then, not left to grow.
    if (this.head >= 1_024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return call;
  }

  /** The first call still waiting, left on the queue. */
  peek(): H2Call | undefined {
    while (this.head < this.items.length) {
      const call = this.items[this.head];
      if (call !== undefined && call.phase === 'queued') return call;
      this.items[this.head++] = undefined;
    }
    if (this.head > 0) {
      this.items = [];
      this.head = 0;
    }
    return undefined;
  }
}
