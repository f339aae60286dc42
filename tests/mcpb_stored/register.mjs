// `node --import tests/mcpb_stored/register.mjs <mcpb cli>`: the real mcpb CLI, whose `pack` stores the bundle's files
// instead of deflating them. Used by tests/test_installs.py's bundle test only; `python mcpb/build.py pack` (what a
// person runs) uses the plain mcpb. Why: mcpb 2.1.2 deflates every file at level 9 with fflate, in JavaScript, about
// 7.5 s of CPU for the 55 MB the vendored dependencies weigh (level 6 gives the same 15.1 MiB in half that time; mcpb
// has no option). Everything else about the bundle is mcpb's own work: its manifest validation, the files it selects,
// their paths and Unix modes, the zip's layout; the test then unpacks that zip and starts the server from it.
import { register } from "node:module";

register("./hooks.mjs", import.meta.url);
