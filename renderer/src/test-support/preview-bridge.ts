import { createFakeApi, type FakeApi } from './fake-api';
import { sampleHandlers } from './sample-data';

/**
 * Injected before the page loads (test/renderer-preview): stands in for the preload, answering from the
 * sample host so that every screen can be looked at in a plain browser.
 */
const api: FakeApi = createFakeApi(sampleHandlers(() => api));
window.svirt = api;
