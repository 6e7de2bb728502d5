import type { SvirtCalls } from '../../contracts/ipc-contract';
import type { ServiceContext } from './service-context';

type ConsoleCallName = 'consoleAttach' | 'consoleInput' | 'consoleResize' | 'consoleDetach' | 'displayAttach' | 'displayInput' | 'displayDetach';

/** The serial console and the VNC display: byte pipes the helper relays; the app only keeps which VM a console is of. */
export function consoleCalls({ connection }: ServiceContext): Pick<SvirtCalls, ConsoleCallName> {
  const { helper, consoleVm } = connection;
  return {
    consoleAttach: async ({ vm }) => {
      const attached = await helper().request('consoleAttach', { vm });
      consoleVm.set(attached.session, vm);
      return { session: attached.session, replayedBytes: attached.replayedBytes };
    },
    consoleInput: async ({ session, data }) => {
      await helper().request('consoleInput', { session, data });
    },
    consoleResize: async ({ session, cols, rows }) => {
      await helper().request('consoleResize', { session, cols, rows });
    },
    consoleDetach: async ({ session }) => {
      consoleVm.delete(session);
      await helper().request('consoleDetach', { session });
    },
    displayAttach: async ({ vm }) => {
      const attached = await helper().request('displayAttach', { vm });
      return { session: attached.session };
    },
    displayInput: async ({ session, data }) => {
      await helper().request('displayInput', { session, data });
    },
    displayDetach: async ({ session }) => {
      await helper().request('displayDetach', { session });
    },
  };
}
