"""The conformance suite a vendor runs on their hardware: ``sglang-fl conformance``.

One command checks a platform bundle end to end: every op of its vendor backend against the
reference backend (ops.py, on the cases of cases.py), then two real SGLang runs through the
plugin, their dispatch logs and greedy ids (serving.py). It prints a pass/fail table, writes a
JSON report on request and exits non-zero on any failure. A bundle without a vendor backend
(the CPU reference bundle) gets the checks that apply to it, and the report says which did not.

Kept free of torch and SGLang imports at package level: the CLI imports it to build its parser.
"""
