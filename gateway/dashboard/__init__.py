"""The marketing dashboard: static HTML/JS/CSS served by the gateway, reading /api/stats with a session cookie."""
