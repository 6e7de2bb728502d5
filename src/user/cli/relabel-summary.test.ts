import { describe, expect, it } from 'vitest';
import { describeRelabel } from './relabel-summary';

describe('svirt relabel summary', () => {
  it('says how many files were labeled, as what, and how to undo it', () => {
    expect(describeRelabel('/srv/iso', 'readonly', { labeled: 1, skippedSymlinksAndSpecial: [] })).toBe(
      'labeled 1 file under /srv/iso as read-only VM content (every VM may read it); `svirt relabel /srv/iso --restore` puts the old labels back',
    );
    const shared = describeRelabel('/srv/data', 'shared', { labeled: 12, skippedSymlinksAndSpecial: ['/srv/data/a', '/srv/data/b', '/srv/data/c', '/srv/data/d'] });
    expect(shared).toMatch(/^labeled 12 files under \/srv\/data as shared read-write VM content/);
    expect(shared).toContain('skipped 4 symlink(s) and special file(s): /srv/data/a; /srv/data/b; /srv/data/c; and 1 more');
  });

  it('says so when a restore finds nothing to restore', () => {
    expect(describeRelabel('/srv/none', 'restore', { restored: 0, skipped: [] })).toBe(
      'nothing to restore under /srv/none: the app has no original labels recorded there',
    );
  });

  it('counts restored files and names the ones left alone, with the reason', () => {
    const text = describeRelabel('/srv/iso', 'restore', { restored: 2, skipped: [{ path: '/srv/iso/x', reason: 'inode changed' }] });
    expect(text).toBe('restored the original labels of 2 files under /srv/iso\nleft 1 file alone (changed or gone since they were labeled): /srv/iso/x (inode changed)');
  });
});
