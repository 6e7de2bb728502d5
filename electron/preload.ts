import { contextBridge, ipcRenderer } from 'electron';
import { CALL_NAMES, channelOf, type SvirtApi } from '../src/main/ipc-contract';

const api = Object.fromEntries(
  CALL_NAMES.map((name) => [name, (request: unknown) => ipcRenderer.invoke(channelOf(name), request)]),
) as SvirtApi;

contextBridge.exposeInMainWorld('svirt', api);
