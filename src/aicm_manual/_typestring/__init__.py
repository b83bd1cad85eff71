"""The type-string language: ``Dict[str, List[int]]`` parsed (never evaluated) into a tree
of immutable nodes, checked against values, and compiled into one fast function.

``nodes`` (the tree) <- ``parser`` (text -> tree, errors with positions) and
``from_typing`` (typing objects -> tree) <- ``semantics`` (the reference meaning of each
node, and error wording) <- ``compiler`` (the fast path, checked against ``semantics``)
<- ``validator`` (``TypeValidator``, the public face).

Pure logic: imports only ``aicm_manual.errors`` and the standard library (plus
typing-inspect and cachetools); no I/O, no other part of the package.
"""
