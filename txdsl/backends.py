"""The backend contract, as backend plugins import it (``from txdsl.backends import ...``).

The implementation lives in :mod:`txdsl.back.backends`, beside the other
back-end stages; this public path stays stable for third-party backends.
"""

from .back.backends import (  # noqa: F401
    BATCH,
    DECODER_SEQUENCE,
    DTYPES,
    SEQUENCE,
    Backend,
    BackendError,
    BackendOptions,
    BuildError,
    InputSpec,
    Lowered,
    Outputs,
    availability,
    backend_info,
    check_available,
    get_backend,
    input_axes,
    input_spec,
    make_target,
    output_tensors,
    parse_option_strings,
    parse_options,
    saved_inputs,
    tensor_outputs,
)

__all__ = [
    "DTYPES", "Backend", "BackendError", "BackendOptions", "BuildError", "Lowered", "Outputs",
    "availability", "backend_info", "check_available", "get_backend", "input_spec",
    "make_target", "output_tensors", "parse_option_strings", "parse_options", "tensor_outputs",
    "BATCH", "DECODER_SEQUENCE", "SEQUENCE", "InputSpec", "input_axes",
    "saved_inputs",
]
