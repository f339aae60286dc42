// The freshness checks' one Node process (tests/test_apps_build.py, tests/test_browser_host_build.py):
// `node check.mjs <dir>` type-checks ui/src as `tsc -p .` does (the first step of `npm run build`; Vite itself strips
// types unchecked), builds the views into <dir>/views and the browser tests' host bridge into <dir>/test-host.
// Node, TypeScript and Vite start once for the three instead of once each. A part that fails writes
// <dir>/<part>.error (typecheck, views, test-host) and the others still run; the tests read those files.
import { mkdir, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { buildTestHost } from "./build-test-host.mjs";
import { buildViews } from "./build.mjs";

const here = dirname(fileURLToPath(import.meta.url));
// TypeScript is one 9 MB CommonJS file: `import ts from "typescript"` has Node scan all of it for its named exports
// (cjs-module-lexer) and sniff its format first, about 0.9 s of CPU more than require() (1.3 s against 0.4 s to load).
const ts = createRequire(import.meta.url)("typescript");
const outDir = process.argv[2];
if (!outDir) {
  console.error("usage: node check.mjs <output dir>");
  process.exit(2);
}
const out = resolve(outDir);
await mkdir(out, { recursive: true });

/** Every diagnostic `tsc -p .` would report for tsconfig.json (it emits nothing: noEmit), as tsc prints them. */
function typeCheck() {
  const config = ts.getParsedCommandLineOfConfigFile(join(here, "tsconfig.json"), {}, {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (diagnostic) => { throw new Error(ts.flattenDiagnosticMessageText(
      diagnostic.messageText, "\n")); },
  });
  const program = ts.createProgram({ rootNames: config.fileNames, options: config.options,
                                     projectReferences: config.projectReferences });
  const diagnostics = [...config.errors, ...ts.getPreEmitDiagnostics(program)];
  return ts.formatDiagnostics(diagnostics, {
    getCanonicalFileName: (name) => name, getCurrentDirectory: () => here, getNewLine: () => "\n",
  });
}

async function part(name, run) {
  try {
    const problems = await run();
    if (problems) await writeFile(join(out, `${name}.error`), problems);
  } catch (error) {
    await writeFile(join(out, `${name}.error`), error instanceof Error ? error.stack ?? error.message : String(error));
  }
}

await part("typecheck", typeCheck);
await Promise.all([
  part("views", () => buildViews(join(out, "views")).then(() => "")),
  part("test-host", () => buildTestHost(join(out, "test-host")).then(() => "")),
]);
console.log(`checked and built into ${out}`);
