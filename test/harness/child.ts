// For scripts started with spawnNodeScript(): the child side of the JSON-lines protocol.
//
//   import { emit, onMessage } from '../harness/child.js';
//   emit({ type: 'ready' });
//   onMessage((msg) => { if (msg.type === 'stop') process.exit(0); });
//
// Anything else the script (or NestJS's logger) prints to stdout is fine: the parent only
// treats lines that parse as JSON objects as messages.
import { createInterface } from 'node:readline';

export type JsonMessage = Record<string, unknown>;

/** Sends one message to the parent (one JSON line on stdout). */
export function emit(message: JsonMessage): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

/** Calls `handler` for every JSON line the parent send()s. Non-JSON lines are ignored. */
export function onMessage(handler: (message: JsonMessage) => void): void {
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    const message = parseJsonObject(line);
    if (message) handler(message);
  });
}

export function parseJsonObject(line: string): JsonMessage | undefined {
  const trimmed = line.trim();
  if (!trimmed.startsWith('{')) return undefined;
  try {
    const value: unknown = JSON.parse(trimmed);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as JsonMessage) : undefined;
  } catch {
    return undefined;
  }
}
