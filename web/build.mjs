// The page's build: the esbuild bundles of the page and the vectors runner, then the service
// worker (src/sw.js -> dist/sw.js, served as /sw.js) with the list of the shell's files and a
// version made from their contents, so that any change to the shell makes a new worker, whose
// install caches the new shell under a new name and whose activation deletes the old caches.

import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { build } from "esbuild";

const COMMON = { bundle: true, target: "chrome120", sourcemap: true, logLevel: "warning" };

/** The page's shell, relative to the page's root: what opens with no network. */
export const SHELL = [
  "./",
  "index.html",
  "style.css",
  "manifest.webmanifest",
  "dist/main.js",
  "icons/icon-192.png",
  "icons/icon-512.png",
  "icons/icon-maskable-512.png",
  "icons/apple-touch-icon.png",
];

await build({
  ...COMMON,
  entryPoints: ["src/main.js", "test/vectors.js"],
  format: "esm",
  outdir: "dist",
  entryNames: "[name]",
});

const hash = createHash("sha256");
for (const file of SHELL) {
  if (file === "./") continue; // the same bytes as index.html
  hash.update(`${file}\n`);
  hash.update(await readFile(file));
}
const version = hash.digest("hex").slice(0, 16);

await build({
  ...COMMON,
  entryPoints: ["src/sw.js"],
  format: "iife", // a classic worker script: every browser with service workers runs it
  outfile: "dist/sw.js",
  define: { SHELL_VERSION: JSON.stringify(version), SHELL_FILES: JSON.stringify(SHELL) },
});
