// The host side of MCP Apps for the browser tests (tests/browser/host.html): the official AppBridge and its
// postMessage transport, bundled by build-test-host.mjs into tests/browser/host-bridge.js, which sets
// `window.ExtAppsHost`. The same SDK version as the views, so the tests exercise the protocol the views speak.
export { AppBridge, PostMessageTransport } from "@modelcontextprotocol/ext-apps/app-bridge";
