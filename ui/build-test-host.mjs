// Builds the browser tests' host bridge (test-host/host-bridge.ts: ext-apps' AppBridge + PostMessageTransport)
// into one classic script, ../tests/browser/host-bridge.js, that sets `window.ExtAppsHost`. Test-only: it is not in
// the wheel. `node build-test-host.mjs <dir>` writes it elsewhere; the freshness test builds it with check.mjs, which
// imports buildTestHost, and compares it with the committed one.
import { mkdir } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "vite";

const here = dirname(fileURLToPath(import.meta.url));

/** Writes host-bridge.js into outDir. */
export async function buildTestHost(outDir) {
  await mkdir(outDir, { recursive: true });
  await build({
    root: here,
    configFile: false,
    logLevel: "warn",
    build: {
      outDir, emptyOutDir: false, target: "es2022", reportCompressedSize: false, copyPublicDir: false,
      lib: {
        entry: join(here, "test-host", "host-bridge.ts"),
        formats: ["iife"],
        name: "ExtAppsHost",
        fileName: () => "host-bridge.js",
      },
      rollupOptions: {
        // zod's sources carry comments Rollup cannot place; harmless, and not ours to fix.
        onwarn(warning, warn) {
          if (warning.code !== "INVALID_ANNOTATION") warn(warning);
        },
      },
    },
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const outDir = resolve(process.argv[2] ?? join(here, "..", "tests", "browser"));
  await buildTestHost(outDir);
  console.log(`host-bridge.js written to ${outDir}`);
}
