"""Analysis of results.jsonl and the report built from it (`python -m experiments.report OUTPUT_DIR`).

Numbers: `analysis` is the one import for callers, gathering loading (results files, row schema),
policies, stats (paired bootstrap CIs), summary (summary.csv), timing (no-leak gains, step 1 vs
step K, counterfactuals) and answer_checks (leakage, exemplar copying).
Report: `writer` writes summary.csv, counterfactuals.csv, the figures (`plots`) and report.md
(`markdown`, assembled from the sections_* modules); `outputs` names the files they share.
"""
