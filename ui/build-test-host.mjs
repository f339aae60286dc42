// Builds the browser tests' host bridge (test-host/host-bridge.ts: ext-apps' AppBridge + PostMessageTransport)
// into one classic script, ../tests/browser/host-bridge.js, that sets `window.ExtAppsHost`. Test-only: it is not in
// the wheel. `node build-test-host.mjs <dir>` writes it elsewhere (to compare a fresh build with the committed one).
import { mkdir } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "vite";

const here = dirname(fileURLToPath(import.meta.url));
const outDir = resolve(process.argv[2] ?? join(here, "..", "tests", "browser"));

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
console.log(`host-bridge.js written to ${outDir}`);
