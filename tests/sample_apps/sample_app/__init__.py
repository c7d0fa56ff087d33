"""An app the test benches install: scheduled jobs, hooks and on-demand jobs that record their calls."""
