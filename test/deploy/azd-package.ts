// The Functions deployment package as `azd deploy` builds it, for test/deploy/package-fidelity.test.ts. Ported from
// azd's own source (github.com/Azure/azure-dev, commit ae35809f, 2026-08-21):
//   - cli/azd/pkg/project/project_utils.go createDeployableZip: walk the service folder (the repo root: azure.yaml
//     `project: .`), skip `.azure/`, the ignore file itself and (function apps) `local.settings.json`, then every
//     path the `.funcignore` matches; symlinks are followed (rzip.go onSymlink, up to 40 levels);
//   - cli/azd/pkg/project/service_target_functionapp.go resolveFunctionAppRemoteBuild: `remoteBuild: true` is refused
//     unless the ignore file matches `node_modules` (as a directory);
//   - the matcher is github.com/denormal/go-gitignore (pattern.go), whose rules differ from git's in one way that
//     matters: an anchored pattern without a slash inside (`/*`, `/dist`) is matched with fnmatch against the WHOLE
//     relative path, and without FNM_PATHNAME, so `/*` matches `functions/core/x.ts` too.
import { lstatSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { zipSync } from 'fflate';

type Kind = 'name' | 'path' | 'any';
export interface IgnorePattern {
  source: string;
  negated: boolean;
  anchored: boolean;
  directory: boolean;
  kind: Kind;
  /** name/path: one fnmatch glob; any: the non-separator segments (`**` kept as is). */
  glob: string;
  segments: string[];
}

/** fnmatch (danwakefield/fnmatch) as a RegExp: `*`, `?`, `[...]`, `\` escapes; FNM_PATHNAME keeps them off `/`. */
function fnmatchRegExp(glob: string, pathname: boolean): RegExp {
  const any = pathname ? '[^/]' : '.';
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '\\' && i + 1 < glob.length) re += escapeRe(glob[++i]!);
    else if (c === '*') re += `${any}*`;
    else if (c === '?') re += any;
    else if (c === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end < 0) re += '\\[';
      else {
        let cls = glob.slice(i + 1, end);
        if (cls.startsWith('!')) cls = `^${cls.slice(1)}`;
        re += `[${cls.replace(/\\/g, '\\\\')}]`;
        i = end;
      }
    } else re += escapeRe(c);
  }
  return new RegExp(`^${re}$`, 's');
}
const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
const fnmatch = (glob: string, s: string, pathname: boolean) => fnmatchRegExp(glob, pathname).test(s);

/** Parses an ignore file the way go-gitignore's lexer/parser does for the forms a .funcignore uses. */
export function parseIgnoreFile(text: string): IgnorePattern[] {
  const out: IgnorePattern[] = [];
  for (const rawLine of text.replace(/^\uFEFF/, '').split(/\r?\n/)) {
    let line = rawLine.replace(/\s+$/, '');
    if (!line || line.startsWith('#')) continue;
    const negated = line.startsWith('!');
    if (negated) line = line.slice(1);
    const anchored = line.startsWith('/');
    if (anchored) line = line.replace(/^\/+/, '');
    const directory = line.endsWith('/');
    if (directory) line = line.replace(/\/+$/, '');
    if (!line) continue;
    const segments = line.split('/').filter(Boolean);
    const kind: Kind = segments.includes('**') ? 'any' : segments.length > 1 ? 'path' : 'name';
    out.push({ source: rawLine, negated, anchored, directory, kind, glob: line, segments });
  }
  return out;
}

function patternMatches(p: IgnorePattern, rel: string, isDir: boolean): boolean {
  if (p.directory && !isDir) return false;
  if (p.kind === 'name') return p.anchored ? fnmatch(p.glob, rel, false) : fnmatch(p.glob, rel.split('/').pop()!, false);
  if (p.kind === 'path') return fnmatch(p.glob, rel, true);
  const parts = rel.split('/');
  const match = (path: string[], tokens: string[]): boolean => {
    if (tokens.length === 0) return path.length === 0;
    const [t, ...rest] = tokens;
    if (t === '**') return match(path, rest) || (path.length > 0 && match(path.slice(1), tokens));
    return path.length > 0 && fnmatch(t!, path[0]!, true) && match(path.slice(1), rest);
  };
  return match(parts, p.segments);
}

/** go-gitignore Relative(): the last pattern that matches decides; undefined when none does. */
export function ignoreMatch(patterns: IgnorePattern[], rel: string, isDir: boolean): IgnorePattern | undefined {
  for (let i = patterns.length - 1; i >= 0; i--) if (patternMatches(patterns[i]!, rel, isDir)) return patterns[i];
  return undefined;
}
export const isIgnored = (patterns: IgnorePattern[], rel: string, isDir: boolean): boolean => {
  const m = ignoreMatch(patterns, rel, isDir);
  return m !== undefined && !m.negated;
};

export interface PackageEntry {
  /** Path inside the zip (forward slashes). */
  path: string;
  /** File on disk (after following symlinks). */
  source: string;
  bytes: number;
}
export interface AzdPackage {
  files: PackageEntry[];
  /** Symlinks azd would have followed into the zip (each one a bug: e.g. node_modules/<self> -> ..). */
  followedSymlinks: string[];
  /** resolveFunctionAppRemoteBuild's verdict for `remoteBuild: true`. */
  remoteBuildAccepted: boolean;
}

/**
 * The files `azd deploy` zips for a Functions service rooted at `root`, with `.funcignore` applied. Like azd, it refuses
 * first (before walking anything) when `remoteBuild: true` meets an ignore file that keeps node_modules.
 */
export function assembleAzdPackage(root: string, ignoreFile = '.funcignore'): AzdPackage {
  const patterns = parseIgnoreFile(readFileSync(join(root, ignoreFile), 'utf8'));
  if (!remoteBuildAccepted(patterns)) {
    throw new Error(`'remoteBuild: true' requires '${ignoreFile}' to exclude node_modules (azd: resolveFunctionAppRemoteBuild)`);
  }
  const files: PackageEntry[] = [];
  const followedSymlinks: string[] = [];
  const walk = (dir: string, zipDir: string, depth: number) => {
    if (depth > 40) return;
    for (const name of readdirSync(dir).sort()) {
      const src = join(dir, name);
      const info = lstatSync(src);
      const isLink = info.isSymbolicLink();
      let isDir = info.isDirectory();
      if (isLink) isDir = statSync(src).isDirectory();
      if (name === '.azure' && isDir) continue;
      if (name === ignoreFile && !isDir) continue;
      if (name === 'local.settings.json' && !isDir) continue;
      // azd matches the path as found under the root (ignorer.Absolute(src)), not the symlink target.
      const rel = relative(root, src).split(sep).join('/');
      if (isIgnored(patterns, rel, isDir)) continue;
      const zipPath = zipDir ? `${zipDir}/${name}` : name;
      if (isLink) followedSymlinks.push(zipPath);
      if (isDir) walk(src, zipPath, isLink ? depth + 1 : depth);
      else files.push({ path: zipPath, source: src, bytes: statSync(src).size });
    }
  };
  walk(root, '', 0);
  return { files, followedSymlinks, remoteBuildAccepted: true };
}

/** resolveFunctionAppRemoteBuild: `ignore.Relative("node_modules", true)` must match and ignore. */
export const remoteBuildAccepted = (patterns: IgnorePattern[]): boolean => isIgnored(patterns, 'node_modules', true);

/** The zip azd would upload (Deflate, like rzip's addFile), for its size. */
export function zipPackage(pkg: AzdPackage): Uint8Array {
  const entries: Record<string, Uint8Array> = {};
  for (const f of pkg.files) entries[f.path] = readFileSync(f.source);
  return zipSync(entries, { level: 6 });
}
