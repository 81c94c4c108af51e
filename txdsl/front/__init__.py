"""The front end: ``.tx`` text to a resolved, validated model IR.

In pipeline order: ``source`` (read a file safely) -> ``parser`` (Lark tree)
-> ``lower`` (surface AST, ``syntax``) -> ``loader`` (imports) -> ``merge``
(extends) -> ``expr``/``values``/``patterns`` (expressions, components,
layer selectors) -> ``resolve`` (the IR) -> ``validate`` (with ``dims``);
``estimate`` sizes a model from its IR alone; ``fmt``/``unparse`` print
text back.
"""
