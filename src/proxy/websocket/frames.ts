/**
 * The two WebSocket frames the proxy itself ever writes: a close frame to
 * each side (RFC 6455 §5.5.1), and the handshake check (§4.2.2) that tells a
 * real upgrade from an upstream that merely answered 101.
 */
import { createHash, randomBytes } from 'node:crypto';

const HANDSHAKE_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** The Sec-WebSocket-Accept a server must answer to this Sec-WebSocket-Key. */
export function expectedAccept(key: string): string {
  return createHash('sha1').update(key + HANDSHAKE_GUID).digest('base64');
}

/** A close frame with a status code; masked when it goes to a server, as clients' frames must be. */
export function closeFrame(code: number, toServer: boolean): Buffer {
  const payload = Buffer.alloc(2);
  payload.writeUInt16BE(code);
  if (!toServer) return Buffer.concat([Buffer.from([0x88, payload.length]), payload]);
  const mask = randomBytes(4);
  const masked = Buffer.from(payload.map((byte, i) => byte ^ (mask[i % 4] as number)));
  return Buffer.concat([Buffer.from([0x88, 0x80 | payload.length]), mask, masked]);
}

export const GOING_AWAY = 1001;
