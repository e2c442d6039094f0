import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { findUnsafeCharacter, internalName, namePrefix, prefixRangeEnd, RESERVED_NAME_PREFIX, validateName } from '../../lib/etcd/keys.js';
import { InvalidNameError } from '../../lib/errors/coordination.errors.js';
import { MAX_NAME_LENGTH } from '../../lib/coordination.constants.js';

const refuses = (name: unknown, pattern: RegExp) =>
  assert.throws(() => validateName('lock', name), (err: unknown) => {
    assert.ok(err instanceof InvalidNameError, String(err));
    assert.equal(err.code, 'INVALID_NAME');
    assert.equal(err.kind, 'lock');
    assert.match(err.message, pattern);
    return true;
  });

describe('validateName', () => {
  it('accepts ordinary names, including non-ASCII text, emoji (surrogate pairs) and U+FFFD itself', () => {
    for (const name of ['job', 'billing:nightly', 'a.b-c_d', 'Zürich', '日本語', 'rocket\u{1F680}', 'job\ufffd', 'x'.repeat(MAX_NAME_LENGTH)]) {
      assert.doesNotThrow(() => validateName('lock', name), name);
    }
  });

  it('refuses lone surrogates (they would alias "job\\ufffd" in etcd), naming the code point and index', () => {
    // Why: Buffer.from writes a lone surrogate as U+FFFD, so these three would be ONE key.
    assert.deepEqual(Buffer.from('job\ud800'), Buffer.from('job\ufffd'));
    assert.deepEqual(Buffer.from('job\udbff'), Buffer.from('job\ufffd'));
    refuses('job\ud800', /lone surrogate U\+D800 at index 3/);
    refuses('job\udbff', /lone surrogate U\+DBFF at index 3/);
    refuses('\udc00job', /lone surrogate U\+DC00 at index 0/);
    refuses('a\ud83d', /lone surrogate U\+D83D at index 1/); // a pair cut in half
    assert.doesNotThrow(() => validateName('lock', 'job\ufffd'));
  });

  it('refuses names in the library\'s reserved prefix, and builds internal names inside it', () => {
    refuses('_coordination:members', /must not start with "_coordination:"/);
    refuses('_coordination:', /reserved for the library/);
    assert.doesNotThrow(() => validateName('lock', '_coordination')); // only the prefix with ':' is reserved
    assert.equal(internalName('jobs', 'nightly'), RESERVED_NAME_PREFIX + 'jobs:nightly');
    assert.throws(() => internalName('a/b'), /invalid part/);
  });

  it('refuses C0 controls and DEL (as before)', () => {
    refuses('a\u0000b', /U\+0000 \(control character\) at index 1/);
    refuses('job\n', /U\+000A \(control character\) at index 3/);
    refuses('a\u007f', /U\+007F \(control character\) at index 1/);
  });

  it('refuses C1 controls U+0080..U+009F', () => {
    refuses('a\u0080', /U\+0080 \(control character\) at index 1/);
    refuses('a\u0085b', /U\+0085 \(control character\)/);
    refuses('\u009fz', /U\+009F \(control character\) at index 0/);
    assert.doesNotThrow(() => validateName('lock', 'a\u00a1')); // first printable after C1
  });

  it('refuses format characters (Cf): zero-width, bidi controls, BOM, soft hyphen, tag characters', () => {
    const cases: Array<[string, string]> = [
      ['job\u200b', 'U+200B'], ['a\u200cb', 'U+200C'], ['a\u200db', 'U+200D'], ['a\u00adb', 'U+00AD'],
      ['\ufeffjob', 'U+FEFF'], ['a\u061cb', 'U+061C'], ['a\u2060b', 'U+2060'],
      ...['\u202a', '\u202b', '\u202c', '\u202d', '\u202e', '\u2066', '\u2067', '\u2068', '\u2069'].map(
        (c) => [`ab${c}`, `U+${c.charCodeAt(0).toString(16).toUpperCase()}`] as [string, string],
      ),
      ['a\u{E0041}', 'U+E0041'], // tag character, outside the BMP
    ];
    for (const [name, label] of cases) refuses(name, new RegExp(`${label.replace('+', '\\+')} \\(format character\\)`));
  });

  it('says exactly where: "contains U+200B (format character) at index 3"', () => {
    refuses('job\u200bx', /contains U\+200B \(format character\) at index 3/);
  });

  it('refuses line and paragraph separators', () => {
    refuses('a\u2028b', /U\+2028 \(line separator\) at index 1/);
    refuses('a\u2029b', /U\+2029 \(line separator\)/);
  });

  it('shows invisible characters of the refused name as <U+XXXX> in the message', () => {
    assert.throws(() => validateName('lock', 'pay\u202eroll'), (err: Error) => {
      assert.ok(err.message.includes('"pay<U+202E>roll"'), err.message);
      assert.ok(!err.message.includes('\u202e'), 'the raw bidi override must not reach logs');
      return true;
    });
  });

  it('keeps the older rules: type, empty, length, "/", surrounding white space', () => {
    refuses(42, /must be a string/);
    refuses('', /must not be empty/);
    refuses('x'.repeat(MAX_NAME_LENGTH + 1), new RegExp(`at most ${MAX_NAME_LENGTH} characters \\(got ${MAX_NAME_LENGTH + 1}\\)`));
    refuses('a/b', /must not contain "\/"/);
    refuses(' a', /white space/);
    refuses('a\u00a0', /white space/);
  });

  it('passes the problem to a custom onError instead of throwing InvalidNameError', () => {
    const problems: string[] = [];
    assert.throws(() => validateName('election', 'x\u200b', (problem) => {
      problems.push(problem);
      throw new Error('custom');
    }), /custom/);
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /U\+200B \(format character\) at index 1/);
  });
});

describe('findUnsafeCharacter', () => {
  it('returns undefined for clean text and the first offender otherwise', () => {
    assert.equal(findUnsafeCharacter('clean-text/with:separators'), undefined);
    assert.equal(findUnsafeCharacter('\u{1F680}\u{1F680}'), undefined);
    assert.deepEqual(findUnsafeCharacter('ab\u200b\u0001'), { index: 2, codePoint: 0x200b, kind: 'format character' });
    assert.deepEqual(findUnsafeCharacter('\u{1F680}\ud800'), { index: 2, codePoint: 0xd800, kind: 'lone surrogate' });
    assert.deepEqual(findUnsafeCharacter('\u{1F680}\u{E0001}'), { index: 2, codePoint: 0xe0001, kind: 'format character' });
  });
});

describe('key helpers', () => {
  it('namePrefix and prefixRangeEnd bound exactly one name\'s keys', () => {
    const prefix = namePrefix('app/', 'job');
    assert.equal(prefix.toString(), 'app/job/');
    assert.equal(prefixRangeEnd(prefix).toString(), 'app/job0');
    assert.deepEqual(prefixRangeEnd(Buffer.from([0x61, 0xff])), Buffer.from([0x62]));
    assert.deepEqual(prefixRangeEnd(Buffer.from([0xff, 0xff])), Buffer.from([0]));
  });
});
