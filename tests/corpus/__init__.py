"""Table-driven corpora for the type-string parser and the value semantics (DESIGN section 4)."""
