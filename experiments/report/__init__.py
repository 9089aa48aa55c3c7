"""Analysis of results.jsonl: tables (analysis), figures (plots), summary.csv + report.md (writer)."""
