"""Analysis of results.jsonl and the report built from it (`python -m experiments.report OUTPUT_DIR`).

Numbers: `analysis` is the one import for callers, gathering loading (results files, row schema,
scored rows), policies, stats (paired bootstrap CIs), summary (summary.csv), timing (no-leak gains and
the common-set curve, step 1 vs step K, counterfactuals), versus (guided vs `always`, paired) and
answer_checks (leakage, leak-free rows, exemplar copying). Two policies are compared only by their
paired difference on the same (seed, problem) units.
Report: `writer` writes summary.csv, counterfactuals.csv, the figures (`plots`) and report.md
(`markdown`, assembled from the sections_* modules); `outputs` names the files they share.
"""
