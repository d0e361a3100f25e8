/**
 * The WebSocket families of the standard family: open sessions, their
 * lifetime by close code, and messages and payload bytes by direction.
 * Messages are the WebSocket hot path: their series are found once per route.
 */
import type { Registry } from 'prom-client';
import type { NativeHistogramSettings } from './native-histogram.js';
import { CounterFamily, type CounterSeries, GaugeFamily, HistogramFamily } from './families.js';

const SESSION_BUCKETS_SECONDS = [1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400];

export type Direction = 'upstream' | 'downstream';

export interface WebSocketMetrics {
  sessionOpened(route: string): void;
  sessionClosed(route: string, closeCode: string, durationSeconds: number): void;
  sessionMessage(route: string, direction: Direction, payloadBytes: number): void;
}

interface MessageCounters {
  readonly messages: CounterSeries;
  readonly bytes: CounterSeries;
}

function createFamilies(registry: Registry, native: NativeHistogramSettings | undefined) {
  const byDirection = (name: string, help: string): CounterFamily =>
    new CounterFamily({ name, help, labelNames: ['http_route', 'direction'], registry });
  return {
    sessions: new GaugeFamily({
      name: 'metrics_proxy_websocket_sessions_active',
      help: 'Open WebSocket sessions.',
      labelNames: ['http_route'],
      registry,
    }),
    sessionDuration: new HistogramFamily({
      name: 'metrics_proxy_websocket_session_duration_seconds',
      help: 'Lifetime of WebSocket sessions, from the 101 to the close, by close code (1006: no close frame).',
      labelNames: ['http_route', 'close_code'],
      buckets: SESSION_BUCKETS_SECONDS,
      native,
      registry,
    }),
    messages: byDirection('metrics_proxy_websocket_messages_total', 'WebSocket data messages relayed, by direction (upstream: client to service).'),
    messageBytes: byDirection(
      'metrics_proxy_websocket_bytes_total',
      'WebSocket message payload bytes relayed, by direction (upstream: client to service).',
    ),
  };
}

export function createWebSocketMetrics(registry: Registry, native: NativeHistogramSettings | undefined): WebSocketMetrics {
  const { sessions, sessionDuration, messages, messageBytes } = createFamilies(registry, native);
  const messageSlots = new Map<string, Record<Direction, MessageCounters>>();
  const countersOf = (route: string, direction: Direction): MessageCounters => ({
    messages: messages.series(route, direction),
    bytes: messageBytes.series(route, direction),
  });

  return {
    sessionOpened(route) {
      sessions.series(route).value += 1;
    },
    sessionClosed(route, closeCode, durationSeconds) {
      sessions.series(route).value -= 1;
      sessionDuration.observe(sessionDuration.series(route, closeCode), durationSeconds);
    },
    sessionMessage(route, direction, payloadBytes) {
      let slot = messageSlots.get(route);
      if (slot === undefined) {
        slot = { upstream: countersOf(route, 'upstream'), downstream: countersOf(route, 'downstream') };
        messageSlots.set(route, slot);
      }
      const counters = slot[direction];
      counters.messages.value += 1;
      counters.bytes.value += payloadBytes;
    },
  };
}
