import { describe, expect, it } from 'vitest';
import { HELPER_VERBS, type HelperVerbs, type RunInfo } from './helper-protocol';
import { createVerbs, type HelperVerbTable, type TypedVerb, type VerbDeps } from '../root/helper/helper-verbs';
import type { HelperClient } from '../user/helper-client';

// Only what createVerbs reads while building its table; no verb runs here.
const deps = { lifecycle: {}, profile: {}, config: {}, requester: { uid: 1000 } } as unknown as VerbDeps;

describe('the helper protocol map', () => {
  it('names exactly the verbs the helper serves', () => {
    expect(Object.keys(createVerbs(deps)).sort()).toEqual([...HELPER_VERBS].sort());
  });

  it('refuses at compile time a verb table that misses a verb, a request for an unknown verb, and wrong args or result types', () => {
    // Never run: these lines are checked by `tsc`, which fails on an @ts-expect-error that finds no error.
    const compileOnly = async (client: HelperClient, table: HelperVerbTable) => {
      const { status: _dropped, ...rest } = table;
      // @ts-expect-error a table without `status` is not the helper's verb table
      const incomplete: HelperVerbTable = rest;
      // @ts-expect-error `list` is served by a handler typed for `status`
      const swapped: HelperVerbTable = { ...table, list: table.status as TypedVerb<'status'> };
      // @ts-expect-error no verb of that name in the map
      await client.request('format-disk', {});
      // @ts-expect-error `stop` needs the VM
      await client.request('stop', { force: true });
      // @ts-expect-error `status` answers the host's status, not a list of VMs
      const vms: RunInfo[] = await client.request('status');
      const running: HelperVerbs['list']['result'] = await client.request('list');
      return [incomplete, swapped, vms, running];
    };
    expect(typeof compileOnly).toBe('function');
  });
});
