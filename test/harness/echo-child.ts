// Child script for the harness self-test (test/harness.test.ts): echoes messages back.
import { emit, onMessage } from './child.js';

console.log('plain text is not a message');
emit({ type: 'ready', pid: process.pid, args: process.argv.slice(2), env: process.env.ECHO_CHILD_ENV ?? null });
onMessage((message) => {
  if (message.type === 'exit') process.exit(Number(message.code ?? 0));
  emit({ ...message, echoed: true });
});
process.on('SIGTERM', () => {
  emit({ type: 'bye' });
  process.exit(0);
});
