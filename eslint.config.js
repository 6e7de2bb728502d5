import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

export default tseslint.config(
  { ignores: ['dist/', 'dist-renderer/', 'release/', 'node_modules/', 'test/guest/cache/', 'test/e2e/screenshots/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node, ...globals.browser } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // A `let` set once after an event listener that reads it is the normal shape of async set-up code.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
    },
  },
  {
    // Only electron/ may load the electron module: it cannot be downloaded on CI, and src/ must stay testable.
    files: ['src/**', 'renderer/**', 'test/**', 'bench/**'],
    rules: {
      'no-restricted-imports': ['error', { paths: [{ name: 'electron', message: 'electron is only imported under electron/' }] }],
    },
  },
  {
    // src/labeling is pure: callers pass file contents and command output in.
    files: ['src/labeling/**'],
    ignores: ['src/labeling/**/*.test.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [{ regex: '^(node:)?(fs|fs/promises|child_process|net|os|path|process)$', message: 'src/labeling does no I/O' }],
        paths: [{ name: 'electron', message: 'electron is only imported under electron/' }],
      }],
    },
  },
);
