"""Loaded by tests/openapi.rs (SCHEMATHESIS_HOOKS) into schemathesis.

Why: on CPython 3.11 (the interpreter of tools/setup.sh's venv here),
`ast.parse` of a large file can raise "SystemError: AST constructor
recursion depth mismatch" (CPython gh-106905, fixed in later releases).
hypothesis parses schemathesis' own source only to *describe* a filter
lambda in a strategy's repr, and the error then aborts a whole operation's
coverage phase at random. The description is cosmetic: fall back to the
placeholder hypothesis itself uses when it cannot find the source.
"""

import hypothesis.internal.lambda_sources as _lambda_sources

_describe = _lambda_sources._lambda_description


def _describe_or_placeholder(f):
    try:
        return _describe(f)
    except SystemError:
        return "lambda: <unknown>"


_lambda_sources._lambda_description = _describe_or_placeholder
