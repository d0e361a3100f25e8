/** Readings of another process from /proc (Linux): what a sidecar's operator would watch. */
import { readFileSync, readdirSync } from 'node:fs';

export function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

export function rssBytes(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (match === null) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]) * 1024;
}
