/** Bearer-token check for the metrics path: constant-time, so the token cannot be guessed byte by byte. */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

export type RequestCheck = (req: IncomingMessage) => boolean;

const digest = (text: string): Buffer => createHash('sha256').update(text).digest();

/** Hashing both sides first gives equal lengths, so timingSafeEqual leaks neither content nor length. */
export function createBearerCheck(token: string): RequestCheck {
  const expected = digest(token);
  return (req) => {
    const header = req.headers.authorization ?? '';
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    return timingSafeEqual(digest(match?.[1] ?? ''), expected) && match !== null;
  };
}
