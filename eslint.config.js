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
    // The pure core computes; callers pass file contents and command output in.
    files: ['src/core/**'],
    ignores: ['src/core/**/*.test.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          // node:path is string arithmetic; everything that touches the host is refused.
          { regex: '^(node:)?(fs|fs/promises|child_process|net|os|process|crypto)$', message: 'src/core does no I/O' },
          { regex: '/(root|user|host|security)/', message: 'src/core depends on nothing but itself' },
        ],
        paths: [{ name: 'electron', message: 'electron is only imported under electron/' }],
      }],
    },
  },
  {
    // The root/user boundary: what runs as the user reaches the root side only through the contracts
    // (src/contracts), so a user-side module can never call a root-side mechanism directly.
    files: ['src/user/**', 'src/contracts/**', 'src/host/**', 'renderer/**'],
    ignores: ['**/*.test.ts', '**/*.test.tsx'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [{ regex: '(^|/)root/', message: 'the user side reaches the root side only through src/contracts' }],
        paths: [{ name: 'electron', message: 'electron is only imported under electron/' }],
      }],
    },
  },
  {
    // The lifecycle names no security model: it goes through the security
    // stack (src/security/security-stack.ts), so a model added later changes nothing here.
    files: ['src/root/helper/vm-lifecycle.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [{ regex: '/(selinux|apparmor)/', message: 'the lifecycle goes through the security stack (src/security/security-stack.ts), never a model directly' }],
        paths: [{ name: 'electron', message: 'electron is only imported under electron/' }],
      }],
    },
  },
);
