"""Table-driven corpora for the type-string parser and the value semantics (docs/type-strings)."""
