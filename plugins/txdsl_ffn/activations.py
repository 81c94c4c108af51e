"""The activations feed-forward blocks accept (see :mod:`txdsl.sdk.activations`)."""

from txdsl.sdk.activations import Activation, activation

__all__ = ["Activation", "activation"]
