/** In-app navigation: which screen is shown. No router: the app has one window and no URLs to share. */
export type VmTab = 'overview' | 'console' | 'display' | 'seclabel' | 'disks';

export type Route = { view: 'vms' } | { view: 'vm'; name: string; tab: VmTab } | { view: 'create' } | { view: 'audit' };
