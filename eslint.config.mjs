// Lint (npm run lint): typescript-eslint's type-aware recommended rules, chiefly so that no promise
// is dropped (no-floating-promises) or passed where a callback's result is ignored
// (no-misused-promises). Formatting is Prettier's (.prettierrc.json), checked by `npm run lint` too.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'build/', 'node_modules/', '.ci/', '**/*.mjs', '**/*.py'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      // `const { _meta, ...record } = doc` is how a field is left out.
      '@typescript-eslint/no-unused-vars': ['error', { ignoreRestSiblings: true }],
      // A storage passes on whatever its driver threw (better-sqlite3 throws Errors).
      '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingUnknown: true }],
    },
  },
  {
    // tap runs every `t.test(...)` it is given; awaiting them would serialise the file's tests.
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: '@tapjs/test', name: ['test'] }] },
      ],
      // A tap callback is async by convention, whether or not it awaits.
      '@typescript-eslint/require-await': 'off',
    },
  },
);
