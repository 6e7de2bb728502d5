import { useEffect, useState } from 'react';

/**
 * Light or dark. "system" follows prefers-color-scheme live; a chosen theme is kept in localStorage
 * (a per-user display preference of this page, nothing the main process needs to know). The resolved
 * theme lands on <html data-theme>, which is all the stylesheet reads.
 */
export type ThemeSetting = 'system' | 'light' | 'dark';

export const THEME_KEY = 'svirt.theme';
const SETTINGS: readonly ThemeSetting[] = ['system', 'light', 'dark'];

export function readThemeSetting(): ThemeSetting {
  try {
    const stored = window.localStorage.getItem(THEME_KEY);
    return SETTINGS.includes(stored as ThemeSetting) ? (stored as ThemeSetting) : 'system';
  } catch {
    return 'system';
  }
}

const darkQuery = () => (typeof window.matchMedia === 'function' ? window.matchMedia('(prefers-color-scheme: dark)') : null);

export function useTheme(): [ThemeSetting, (setting: ThemeSetting) => void] {
  const [setting, setSetting] = useState<ThemeSetting>(readThemeSetting);
  useEffect(() => {
    const query = darkQuery();
    const apply = () => {
      const dark = setting === 'dark' || (setting === 'system' && query?.matches === true);
      document.documentElement.dataset.theme = dark ? 'dark' : 'light';
    };
    apply();
    if (setting !== 'system' || !query) return;
    query.addEventListener('change', apply);
    return () => query.removeEventListener('change', apply);
  }, [setting]);
  const choose = (next: ThemeSetting) => {
    setSetting(next);
    try {
      window.localStorage.setItem(THEME_KEY, next);
    } catch {
      // Storage refused (private mode): the choice still holds for this session.
    }
  };
  return [setting, choose];
}
