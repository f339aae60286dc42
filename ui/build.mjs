// Builds each view into one self-contained HTML file (script and style inlined, nothing fetched at run time)
// inside the Python package: ../server/ui/<view>.html. `node build.mjs <dir>` writes them elsewhere; the
// freshness test builds them with check.mjs, which imports buildViews, into a temporary directory and compares.
import { mkdtemp, readFile, rm, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "vite";
import { viteSingleFile } from "vite-plugin-singlefile";

const here = dirname(fileURLToPath(import.meta.url));
export const VIEWS = ["review-card", "report", "proposal"];

/** Builds every view into outDir; returns each view's size in bytes, in VIEWS' order. */
export async function buildViews(outDir) {
  await mkdir(outDir, { recursive: true });
  // The views build concurrently: each is its own Rollup graph, and the machine's cores are otherwise idle.
  return Promise.all(VIEWS.map((view) => buildView(view, outDir)));
}

async function buildView(view, outDir) {
  const scratch = await mkdtemp(join(tmpdir(), `cekura-ui-${view}-`));
  try {
    await build({
      root: join(here, "src", view),
      configFile: false,
      logLevel: "warn",
      plugins: [viteSingleFile({ removeViteModuleLoader: true })],
      build: {
        outDir: scratch, emptyOutDir: true, target: "es2022", reportCompressedSize: false,
        rollupOptions: {
          // zod's sources carry comments Rollup cannot place; harmless, and not ours to fix.
          onwarn(warning, warn) {
            if (warning.code !== "INVALID_ANNOTATION") warn(warning);
          },
        },
      },
    });
    const html = await readFile(join(scratch, "index.html"), "utf8");
    await writeFile(join(outDir, `${view}.html`), html);
    return Buffer.byteLength(html);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const sizes = await buildViews(resolve(process.argv[2] ?? join(here, "..", "server", "ui")));
  for (const [i, view] of VIEWS.entries()) console.log(`${view}.html ${sizes[i]} bytes`);
}
