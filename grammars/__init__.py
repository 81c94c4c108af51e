"""The .tx grammar, shipped inside the wheel as ``txdsl.grammars``.

The file lives at the repository root (``grammars/tx.lark``) so it reads as
part of the language, not of the implementation; ``txdsl.parser`` loads it
through :data:`txdsl.parser.GRAMMAR_PATH` from the installed copy.
"""
