// Custom node:test reporter: counts leaf tests and emits one line, "N passed, N failed"
// (plus ", N skipped" when any were skipped or todo).
//
// Only leaf tests count: describe() suites (details.type === 'suite') and tests that ran
// subtests (t.test) are containers, not tests. Node reports a test's subtests before the
// test itself and in declaration order (even with concurrency), so "did any test one level
// deeper finish since my parent's previous child?" tells whether a test had children.
// State is kept per file because files run in parallel processes and interleave.
//
// A file that fails on its own (import error, crash, failing top-level hook) is reported
// as a test:fail named after the file with no children, so it counts as one failure, which
// is what we want: it must never look green.

export default async function* countReporter(source) {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  /** file -> completed children per nesting level since that level's parent last completed */
  const childrenSeen = new Map();

  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    const { data } = event;
    const key = data.file ?? '<no file>';
    let levels = childrenSeen.get(key);
    if (!levels) childrenSeen.set(key, (levels = []));

    const nesting = data.nesting ?? 0;
    const hadChildren = (levels[nesting + 1] ?? 0) > 0;
    levels[nesting + 1] = 0;
    levels[nesting] = (levels[nesting] ?? 0) + 1;

    const isSuite = data.details?.type === 'suite';
    if (isSuite || hadChildren) continue;
    if (data.skip !== undefined || data.todo !== undefined) skipped++;
    else if (event.type === 'test:pass') passed++;
    else failed++;
  }

  yield `${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}\n`;
}
