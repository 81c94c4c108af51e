"""The back end: a model IR to a kernel plan, a module, a lowered model and an artifact.

In pipeline order: ``select`` (one implementation per op for the target)
-> ``construct`` (IR + plan -> :mod:`txdsl.runtime` modules) -> ``backends``
(lowering) -> ``builder`` (:func:`txdsl.build`, the whole path) ->
``artifact`` (the on-disk format) and ``load`` (an artifact back to a model).
"""
