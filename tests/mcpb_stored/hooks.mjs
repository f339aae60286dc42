// Module resolution hook (see register.mjs): mcpb's pack.js gets ./fflate.mjs for `fflate`; everything else, fflate
// itself included, resolves as usual.
const PACK = "/@anthropic-ai/mcpb/dist/cli/pack.js";

export async function resolve(specifier, context, nextResolve) {
  if (specifier === "fflate" && context.parentURL?.endsWith(PACK)) {
    const real = await nextResolve(specifier, context);
    const shim = new URL("./fflate.mjs", import.meta.url);
    shim.searchParams.set("real", real.url);
    return { url: shim.href, shortCircuit: true };
  }
  return nextResolve(specifier, context);
}
