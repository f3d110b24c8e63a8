// The layout of docs/architecture.md, enforced: each folder imports only the folders below it, so
// the composition root (gateway/) is imported by nothing but the bench and the tests, and the
// ground (core/) by everything. Reads the TypeScript sources, static and dynamic imports alike.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { projectRoot } from '../core/project-root.js';

/** What each top-level folder may import besides itself. */
const MAY_IMPORT: Record<string, readonly string[]> = {
  core: [],
  proto: ['core'],
  drivers: ['core', 'proto'],
  sync: ['core', 'proto', 'drivers'],
  provisioning: ['core', 'proto', 'sync'],
  receiver: ['core', 'proto'],
  gateway: ['core', 'proto', 'drivers', 'sync', 'provisioning', 'receiver'],
  bench: ['core', 'proto', 'drivers', 'sync', 'provisioning', 'receiver', 'gateway'],
  test: ['core', 'proto', 'drivers', 'sync', 'provisioning', 'receiver', 'gateway', 'bench'],
};
/** The one sanctioned exception: the CLI's `demo` command runs the bench rig (a lazy import). */
const EXCEPTIONS = new Set(['gateway/cli.ts -> bench']);

const root = projectRoot();
const IMPORT = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)['"](\.{1,2}\/[^'"]+)['"]/g;

function sources(folder: string): string[] {
  return readdirSync(join(root, folder), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts'))
    .map((e) => relative(root, join(e.parentPath, e.name)));
}

/** Every import of one folder that leaves it, as "file -> folder". */
function importsOut(file: string, text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(IMPORT)) {
    const target = normalize(join(dirname(file), m[1] as string)).split('/')[0] as string;
    if (target !== file.split('/')[0]) out.push(target);
  }
  return out;
}

t.test('the import checker sees static, type-only and dynamic imports', async (t) => {
  const text =
    "import { a } from '../sync/x.js';\nimport type { B } from '../gateway/y.js';\nconst c = await import('../bench/z.js');\nimport './local.js';";
  t.same(importsOut('proto/p.ts', text), ['sync', 'gateway', 'bench']);
});

t.test('imports point down the layout of docs/architecture.md', async (t) => {
  const violations: string[] = [];
  let files = 0;
  for (const [folder, allowed] of Object.entries(MAY_IMPORT)) {
    for (const file of sources(folder)) {
      files++;
      for (const target of new Set(importsOut(file, readFileSync(join(root, file), 'utf8')))) {
        if (!allowed.includes(target) && !EXCEPTIONS.has(`${file} -> ${target}`))
          violations.push(
            `${file} imports ${target}/ (${folder}/ may import ${allowed.join(', ') || 'nothing of ours'})`,
          );
      }
    }
  }
  t.ok(files > 100, `${files} source files checked`);
  t.same(violations, [], 'no import points up');
  const documented = readFileSync(join(root, 'docs', 'architecture.md'), 'utf8');
  t.same(
    Object.keys(MAY_IMPORT).filter((f) => !documented.includes(`\`${f}/\``)),
    [],
    'every folder is in docs/architecture.md',
  );
});
