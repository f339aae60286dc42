// fflate as mcpb's pack.js sees it under register.mjs (it imports zipSync only): zipSync with level 0, stored entries.
const real = await import(new URL(import.meta.url).searchParams.get("real"));

export function zipSync(files, options) {
  process.stderr.write("mcpb pack: entries stored, not deflated (tests/mcpb_stored)\n");
  return real.zipSync(files, { ...options, level: 0 });
}
