// Imports run only downward. Every import (static, `export ... from`, dynamic `import()`, `import('x').T` types) in the
// repository's .ts files is parsed with the TypeScript compiler and checked against the layer table in README.md:
//
//   contract → api-client → dispatch → functions → worker-agent → cli → testkit → simulator → local → bench → web
//
// (lowest first: a folder may import its own layer and any layer to its left). Tests (test/, *.test.ts) and root-level
// tool files may import anything. Inside functions/: adapters → core → triggers (host-setup.ts sits with the
// triggers); core builds on adapters (services.ts makes the SDK clients), so adapters may name core only in
// `import type` (the Config type), never at run time.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));

export const LAYERS = ['contract', 'api-client', 'dispatch', 'functions', 'worker-agent', 'cli', 'testkit', 'simulator', 'local', 'bench', 'web'] as const;
const FUNCTIONS_PARTS = ['adapters', 'core', 'triggers'] as const;

export interface Import {
  /** Importing file, repository-relative. */
  from: string;
  /** Imported file, repository-relative (the .ts source of a `.js` specifier). */
  to: string;
  /** `import type` / `export type` / a type-only binding list / `import('x').T`: erased at run time. */
  typeOnly: boolean;
}

/** Every relative import of one source file. Package imports (zod, @azure/...) are not layers and are skipped. */
export function importsOf(file: string, text: string): Import[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const out: Import[] = [];
  const add = (spec: string, typeOnly: boolean) => {
    if (!spec.startsWith('.')) return;
    const to = normalize(join(dirname(file), spec)).replace(/\.js$/, '.ts');
    out.push({ from: file, to, typeOnly });
  };
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.importClause;
      const bindings = clause?.namedBindings;
      const allNamedAreTypes =
        !!clause && !clause.name && !!bindings && ts.isNamedImports(bindings) && bindings.elements.length > 0 && bindings.elements.every((e) => e.isTypeOnly);
      add(node.moduleSpecifier.text, !!clause && (clause.isTypeOnly || allNamedAreTypes));
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.exportClause;
      const allNamedAreTypes = !!clause && ts.isNamedExports(clause) && clause.elements.length > 0 && clause.elements.every((e) => e.isTypeOnly);
      add(node.moduleSpecifier.text, node.isTypeOnly || allNamedAreTypes);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const arg = node.arguments[0];
      if (arg && ts.isStringLiteralLike(arg)) add(arg.text, false);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      add(node.argument.literal.text, true);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return out;
}

const isTestFile = (file: string) => file.startsWith('test/') || file.endsWith('.test.ts');

function layerOf(file: string): number {
  return LAYERS.indexOf(file.split('/')[0] as (typeof LAYERS)[number]);
}

function functionsPart(file: string): number {
  const part = file.split('/')[1] ?? '';
  if (part === 'host-setup.ts') return FUNCTIONS_PARTS.indexOf('triggers');
  return FUNCTIONS_PARTS.indexOf(part as (typeof FUNCTIONS_PARTS)[number]);
}

/** Why this import breaks the layering, or null when it is fine. */
export function violation(imp: Import): string | null {
  if (isTestFile(imp.from)) return null;
  if (!imp.from.includes('/')) return null; // root-level tool files (vitest.config.ts)
  const from = layerOf(imp.from);
  const to = layerOf(imp.to);
  if (from < 0) return `${imp.from} is in no layer: add its folder to the table in README.md and in test/layering.test.ts`;
  if (isTestFile(imp.to)) return `${imp.from} imports test code ${imp.to}`;
  if (to < 0) return `${imp.from} imports ${imp.to}, which is in no layer`;
  if (to > from) return `${imp.from} (${LAYERS[from]}) imports ${imp.to} (${LAYERS[to]}), a higher layer`;
  if (from === to && LAYERS[from] === 'functions') {
    const a = functionsPart(imp.from);
    const b = functionsPart(imp.to);
    if (a < 0 || b < 0) return `${imp.from} → ${imp.to}: functions/ files live in adapters/, core/ or triggers/`;
    if (b > a && !(FUNCTIONS_PARTS[a] === 'adapters' && FUNCTIONS_PARTS[b] === 'core' && imp.typeOnly)) {
      return `${imp.from} (functions/${FUNCTIONS_PARTS[a]}) imports ${imp.to} (functions/${FUNCTIONS_PARTS[b]}), a higher layer`;
    }
  }
  return null;
}

function sourceFiles(): string[] {
  const list = (args: string[]) => execFileSync('git', ['ls-files', ...args, '--', '*.ts'], { cwd: repoRoot, encoding: 'utf8' }).split('\n');
  // Tracked files plus new ones not yet committed (so a fresh upward import fails before it lands).
  const files = new Set([...list([]), ...list(['--others', '--exclude-standard'])]);
  return [...files].filter((f) => f && !f.startsWith('node_modules/') && !f.startsWith('dist/') && existsSync(join(repoRoot, f)));
}

describe('layering', () => {
  const files = sourceFiles();
  const imports = files.flatMap((f) => importsOf(f, readFileSync(join(repoRoot, f), 'utf8')));

  it('finds the source files and their imports', () => {
    // A parser that sees nothing passes every rule: make sure it sees the tree (well over 100 files and imports).
    expect(files.length).toBeGreaterThan(100);
    expect(imports.length).toBeGreaterThan(500);
    expect(files).toContain('functions/core/http.ts');
  });

  it('every import resolves to a file in the tree', () => {
    const missing = imports.filter((i) => !existsSync(join(repoRoot, i.to))).map((i) => `${i.from} → ${relative('.', i.to)}`);
    expect(missing).toEqual([]);
  });

  it('no import runs from a lower layer to a higher one', () => {
    const bad = imports.map(violation).filter((v): v is string => v !== null);
    expect(bad).toEqual([]);
  });

  it('the rules catch upward imports', () => {
    expect(importsOf('dispatch/index.ts', "import type { AzureClients } from '../functions/adapters/azure-clients.js';")).toEqual([
      { from: 'dispatch/index.ts', to: 'functions/adapters/azure-clients.ts', typeOnly: true },
    ]);
    const up = (from: string, code: string) => importsOf(from, code).map(violation);
    expect(up('dispatch/index.ts', "import type { AzureClients } from '../functions/adapters/azure-clients.js';")[0]).toMatch(/higher layer/);
    expect(up('worker-agent/src/api.ts', "export { ApiClient } from '../../cli/index.js';")[0]).toMatch(/higher layer/);
    expect(up('functions/core/x.ts', "const m = await import('../../local/stack.js');")[0]).toMatch(/higher layer/);
    expect(up('contract/x.ts', "type T = import('../dispatch/types.js').DispatchSender;")[0]).toMatch(/higher layer/);
    expect(up('functions/core/x.ts', "import { route } from '../triggers/health.js';")[0]).toMatch(/functions\/triggers/);
    expect(up('functions/adapters/x.ts', "import { getConfig } from '../core/config.js';")[0]).toMatch(/functions\/core/);
    expect(up('functions/adapters/x.ts', "import { type Config } from '../core/config.js';")).toEqual([null]);
    expect(up('functions/triggers/x.ts', "import { route } from '../core/http.js';")).toEqual([null]);
    expect(up('local/x.ts', "import { x } from '../test/support/stack.js';")[0]).toMatch(/test code/);
    expect(up('test/x.test.ts', "import { x } from '../bench/upload.js';")).toEqual([null]);
  });
});
