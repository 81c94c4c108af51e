"""Built-in output heads: lm, mlm, pooler, classifier, token_classifier, rtd, pooled_classifier.

Every head is called the same way, ``head(hidden, attention_mask=None)``
with the final hidden states ``(B, T, d_model)``, and ignores the mask where
it has no use for it.
"""

from __future__ import annotations

from txdsl.hookspecs import hookimpl

from .classifier import Classifier, ClassifierArgs, TokenClassifier, TokenClassifierArgs
from .lm import LMHead, LMHeadArgs
from .mlm import MLMHead, MLMHeadArgs
from .pooler import Pooler, PoolerArgs
from .pooled_classifier import PooledClassifier, PooledClassifierArgs
from .rtd import RTDArgs, RTDHead

__all__ = [
    "Classifier", "ClassifierArgs", "LMHead", "LMHeadArgs", "MLMHead", "MLMHeadArgs", "Pooler",
    "PoolerArgs", "RTDArgs", "RTDHead", "TokenClassifier", "TokenClassifierArgs",
    "PooledClassifier", "PooledClassifierArgs",
]


@hookimpl
def register_heads(register):
    register(name="lm", args=LMHeadArgs, build=LMHead.from_args)
    register(name="mlm", args=MLMHeadArgs, build=MLMHead.from_args)
    register(name="pooler", args=PoolerArgs, build=Pooler.from_args)
    register(name="classifier", args=ClassifierArgs, build=Classifier.from_args)
    register(name="token_classifier", args=TokenClassifierArgs, build=TokenClassifier.from_args)
    register(name="rtd", args=RTDArgs, build=RTDHead.from_args)
    register(name="pooled_classifier", args=PooledClassifierArgs,
             build=PooledClassifier.from_args)
