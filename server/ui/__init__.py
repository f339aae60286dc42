"""The MCP Apps views, built by `ui/` (npm run build) into one self-contained HTML file each: data, not code."""
