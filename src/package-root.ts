// Locates files shipped with the package (proto/, ...) whether the code runs from src/
// (ts sources) or from dist/src/ (compiled): both sit somewhere below package.json.

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

/** The directory holding Drover's package.json, found by walking up from this module. */
export function packageRoot(): string {
  if (root !== undefined) return root;
  const start = dirname(fileURLToPath(import.meta.url));
  for (let dir = start; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return (root = dir);
    if (dirname(dir) === dir) throw new Error(`no package.json found above ${start}`);
  }
}

/** A path inside the package, e.g. packagePath('proto', 'bbs.proto'). */
export function packagePath(...parts: string[]): string {
  return join(packageRoot(), ...parts);
}
