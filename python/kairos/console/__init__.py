"""The operator console: one page in the browser, fed only by the services' own APIs (ADR 0090)."""
