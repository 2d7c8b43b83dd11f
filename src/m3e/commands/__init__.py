"""The CLI's command groups, one module per capability; `m3e.cli` puts them together."""
