"""edge.report: one page per run (report.html, report.md, report.json) from the manifest and its artifacts."""
